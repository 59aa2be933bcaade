//! The compatibility oracle: a real redis-server of our own, started on a free port for a
//! differential test and killed (by its own handle) when dropped. `scripts/test.sh` installs it;
//! a missing redis-server fails the test rather than skipping it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::RawClient;

/// A redis-server child process.
pub struct Redis {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a plain redis-server with no persistence and waits until it answers PING.
pub async fn start_redis() -> anyhow::Result<Redis> {
    start_redis_with(&[]).await
}

/// `start_redis` with `extra` command-line settings (`["--name", "value", ...]`).
pub async fn start_redis_with(extra: &[&str]) -> anyhow::Result<Redis> {
    // A free port: bind, read it, release it; the race with other processes is harmless here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--loglevel", "warning"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server (scripts/ensure-tools.sh installs it)")?;
    let redis = Redis {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut client) = RawClient::connect(redis.addr).await {
            if client.line("PING").await.is_ok_and(|r| r == "+PONG\r\n") {
                return Ok(redis);
            }
        }
        if Instant::now() > deadline {
            bail!("redis-server did not become ready on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
