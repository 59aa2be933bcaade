//! Helpers the end-to-end tests share: a whole Tessera cluster started as real processes through
//! `deploy/local.sh` (`cluster`), a raw RESP client that returns reply bytes untouched (`resp`),
//! the real Redis tools and a real redis-server as the compatibility oracle (`redis`), and bounded
//! polling in place of sleeps (`wait`).

pub mod cluster;
pub mod redis;
pub mod resp;
pub mod wait;

use std::path::PathBuf;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits inside the repository")
        .to_path_buf()
}

/// Where the binaries of the profile these tests were built with live (`target/release` when run
/// by `scripts/test.sh`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary sits in target/<profile>/deps")
        .to_path_buf()
}

/// A TCP port on 127.0.0.1 that was free a moment ago, and not handed out before in this test
/// process: the kernel may give the same ephemeral port to two binds in a row once the first is
/// released, and a cluster whose two nodes got one port fails to start.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
