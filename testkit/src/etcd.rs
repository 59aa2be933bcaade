//! A real etcd cluster for the control plane's store and election tests: three members (or any
//! number) on free 127.0.0.1 ports, each with its own data directory, started and waited for
//! (every member answers `/health` with a leader elected), with faults by PID: SIGKILL, SIGSTOP /
//! SIGCONT, and a restart on the same data. `scripts/ensure-tools.sh` installs Debian's
//! etcd-server; a missing `etcd` fails the test rather than skipping it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::{free_port, temp_dir, wait};

/// How long a start or restart may take before the test fails: a cold etcd elects a leader in
/// about a second, more on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// An etcd cluster of child processes, every one killed (by its own handle) when dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Three members, once each one answers healthy.
    pub fn start() -> anyhow::Result<EtcdCluster> {
        EtcdCluster::start_with(3)
    }

    /// `size` members, once each one answers healthy. Blocking on purpose, as
    /// `RedisServer::start`: it waits for separate processes.
    pub fn start_with(size: usize) -> anyhow::Result<EtcdCluster> {
        let dir = temp_dir("etcd");
        let members = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            members,
            token: format!("tessera-{}", dir.path().display()),
            dir,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let initial = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let member = &self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .context("create the etcd log")?;
        // etcd creates its data directory itself, with the 0700 it wants.
        let child = Command::new("etcd")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&member.name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start etcd (scripts/ensure-tools.sh installs Debian's etcd-server)")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until member `i` answers `/health` with `true` (it has a leader and serves).
    pub fn wait_healthy(&self, i: usize) {
        let port = self.members[i].client_port;
        let what = format!("etcd member {i} (port {port}) to be healthy");
        wait::until(&what, READY_WITHIN, || healthy(port).then_some(()));
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Member `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Member `i`'s log (stderr), for a failing test to show.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// SIGKILL of member `i`, reaped before this returns.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP of member `i`: it keeps its sockets open and answers nothing (a hung host).
    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-STOP")
    }

    /// SIGCONT of member `i`.
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-CONT")
    }

    fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid(i).context("the member is not running")?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .context("run kill")?;
        anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
        Ok(())
    }

    /// Starts a killed member `i` again on its data directory, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(i);
        Ok(())
    }
}

/// True when etcd on `port` answers `GET /health` with `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.contains("\"health\":\"true\"")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // SIGKILL ends a stopped process too.
            self.kill(i);
        }
    }
}
