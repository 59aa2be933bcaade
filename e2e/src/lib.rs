//! Where whole clusters are started for tests: inside the test process from the services' own
//! `run` functions (`inprocess`: most stories, no stale binaries), or as real processes through
//! `deploy/local.sh` (`cluster`: signals, the launcher, tools against real processes), or as
//! containers through docker-compose (`compose`); all expose the same `Endpoints`. The failover
//! stories share their writers, checks and report (`failover`, over `shard`). Also a blocking RESP
//! client that returns reply bytes untouched (`resp`) and the real Redis tools (`redis`), and what resharding stories share (`reshard`). Ports,
//! temp dirs, the redis-server oracle, the differential checker and bounded polling come from
//! `tessera_testkit`.

pub mod cluster;
pub mod compose;
pub mod endpoints;
pub mod failover;
pub mod inprocess;
pub mod moves;
pub mod redis;
pub mod reshard;
pub mod resp;
pub mod shard;

pub use tessera_testkit::{free_port, wait};

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
