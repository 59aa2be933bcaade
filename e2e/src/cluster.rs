//! A whole Tessera cluster as real processes, started and stopped through `deploy/local.sh` (the
//! launcher users run), on ports of its own so tests can run side by side and beside a developer's
//! cluster on the default ports.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::redis::TempDir;
use crate::resp::RespClient;
use crate::{bin_dir, free_port, repo_root, wait};

/// Services of a local cluster: `control-plane`, `node1`..`node3`, `proxy`.
pub struct LocalCluster {
    pub proxy_port: u16,
    pub node_ports: Vec<u16>,
    pub cp_port: u16,
    /// node-timeout the cluster was created with.
    pub node_timeout: Duration,
    /// The node secret the cluster runs with (random per cluster): the nodes refuse clients
    /// that have not sent `AUTH <secret>`; `node_client` and `cli` send it.
    pub node_secret: String,
    dir: TempDir,
    /// Output of `local.sh up` (includes `clusterctl create`'s).
    pub up_output: String,
}

impl LocalCluster {
    /// `deploy/local.sh up` with fresh ports and a fresh run directory; returns once the launcher
    /// says the cluster is ok.
    pub fn up(node_timeout: Duration) -> LocalCluster {
        let mut cluster = LocalCluster {
            proxy_port: free_port(),
            node_ports: vec![free_port(), free_port(), free_port()],
            cp_port: free_port(),
            node_timeout,
            node_secret: format!("{:032x}", rand_secret()),
            dir: TempDir::new("local-cluster"),
            up_output: String::new(),
        };
        let output = cluster.launcher(&["up"]);
        cluster.up_output = String::from_utf8_lossy(&output.stdout).into_owned();
        cluster
    }

    fn env(&self) -> HashMap<&'static str, String> {
        let ports: Vec<String> = self.node_ports.iter().map(|p| p.to_string()).collect();
        let profile = bin_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "release".into());
        HashMap::from([
            ("TESSERA_RUN_DIR", self.dir.path.display().to_string()),
            ("TESSERA_PROXY_PORT", self.proxy_port.to_string()),
            ("TESSERA_NODE_PORTS", ports.join(" ")),
            ("TESSERA_CP_PORT", self.cp_port.to_string()),
            (
                "TESSERA_NODE_TIMEOUT",
                format!("{}ms", self.node_timeout.as_millis()),
            ),
            ("TESSERA_PROFILE", profile),
            ("TESSERA_SKIP_BUILD", "1".into()),
            ("TESSERA_BIN_DIR", bin_dir().display().to_string()),
            ("TESSERA_NODE_SECRET", self.node_secret.clone()),
        ])
    }

    /// Runs `deploy/local.sh ARGS`; panics with its output when it fails.
    pub fn launcher(&self, args: &[&str]) -> Output {
        let output = Command::new(repo_root().join("deploy/local.sh"))
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .expect("run deploy/local.sh");
        assert!(
            output.status.success(),
            "local.sh {args:?} failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
        output
    }

    /// Runs `clusterctl ARGS` against this cluster's control plane.
    pub fn clusterctl(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("clusterctl"))
            .arg("--control-plane")
            .arg(format!("http://127.0.0.1:{}", self.cp_port))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run clusterctl")
    }

    /// The tail of every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["control-plane", "node1", "node2", "node3", "proxy"] {
            let log = std::fs::read_to_string(self.dir.path.join(format!("{name}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text.push_str(&format!("--- {name}.log (last lines)\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// `redis-cli -p PORT ARGS...` output; with `-a <node secret>` when PORT is a node's.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let port_text = port.to_string();
        let mut all = vec!["-p", port_text.as_str()];
        if self.node_ports.contains(&port) {
            all.extend_from_slice(&["-a", self.node_secret.as_str(), "--no-auth-warning"]);
        }
        all.extend_from_slice(args);
        crate::redis::cli(&all)
    }

    /// A RESP client on a node, authenticated with the node secret.
    pub fn node_client(&self, port: u16) -> RespClient {
        let mut client = RespClient::connect(port).expect("connect to a node");
        assert_eq!(
            client.call_str(&["AUTH", &self.node_secret]),
            "+OK\r\n",
            "AUTH with the node secret on {port}"
        );
        client
    }

    /// One field of `CLUSTER INFO` on `port`.
    pub fn info_field(&self, port: u16, field: &str) -> Option<String> {
        let info = self.cli(port, &["cluster", "info"]);
        info.lines().find_map(|line| {
            line.trim_end()
                .strip_prefix(&format!("{field}:"))
                .map(String::from)
        })
    }

    /// Polls until `CLUSTER INFO` on `port` shows `field:value`, for at most `limit`.
    pub fn wait_info(&self, port: u16, field: &str, value: &str, limit: Duration) {
        wait::until(&format!("{field}:{value} on port {port}"), limit, || {
            (self.info_field(port, field).as_deref() == Some(value)).then_some(())
        });
    }
}

/// 128 random bits for a cluster's node secret, from the OS (no extra crate: std's randomly
/// keyed hasher, fed the time, twice).
fn rand_secret() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.finish()
    };
    (u128::from(half()) << 64) | u128::from(half())
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Best effort: stops every process this cluster started, by the pids local.sh recorded.
        let _ = Command::new(repo_root().join("deploy/local.sh"))
            .arg("down")
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
