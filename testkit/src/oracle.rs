//! The compatibility oracle: a real redis-server of our own, on a free port, with no persistence.
//! `scripts/ensure-tools.sh` installs it; a missing redis-server fails the test rather than
//! skipping it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::{free_port, temp_dir, wait};

/// A redis-server child process, killed (by its own handle) when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// A plain (non-cluster) redis-server, once it answers PING.
    pub fn start() -> anyhow::Result<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// `start` with `extra` command-line settings (`["--requirepass", "x", ...]`).
    ///
    /// Blocking on purpose: it waits for a separate process, so it works the same from a sync
    /// test and from inside a tokio test.
    pub fn start_with(extra: &[&str]) -> anyhow::Result<RedisServer> {
        let dir = temp_dir("redis-oracle");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start redis-server (scripts/ensure-tools.sh installs it)")?;
        let server = RedisServer {
            port,
            child,
            _dir: dir,
        };
        wait::until("redis-server to answer", Duration::from_secs(20), || {
            answers(port).then_some(())
        });
        Ok(server)
    }

    /// 127.0.0.1:`port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's process id (for signals in fault tests).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// True when something on `port` answers a PING with a reply (any reply: a server started with
/// `--requirepass` answers NOAUTH, and is up).
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut byte = [0u8; 1];
    stream.write_all(b"PING\r\n").is_ok() && matches!(stream.read(&mut byte), Ok(1))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
