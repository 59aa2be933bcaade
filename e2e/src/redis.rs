//! The real Redis programs: `redis-cli` and `redis-benchmark` as users run them, and a real
//! `redis-server` as the oracle of differential tests.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::resp::RespClient;
use crate::{free_port, wait};

/// Runs `redis-cli` with `args` and returns its stdout; panics when it cannot be started.
pub fn cli(args: &[&str]) -> String {
    let output = run("redis-cli", args);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a program to completion, capturing its output.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (scripts/ensure-tools.sh installs it): {e}")
        })
}

/// A redis-server of our own on a free port, stopped (by its pid) on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts a plain (non-cluster) redis-server with no persistence and waits until it answers.
    pub fn start() -> RedisServer {
        let dir = TempDir::new("redis-oracle");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(&dir.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/ensure-tools.sh installs it)");
        wait::until("redis-server to answer", Duration::from_secs(20), || {
            RespClient::connect(port).ok()
        });
        RedisServer {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A folder under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let unique = format!(
            "tessera-{prefix}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
