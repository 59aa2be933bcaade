//! A whole Tessera cluster as real processes, started and stopped through `deploy/local.sh` (the
//! launcher users run), on ports of its own so tests can run side by side and beside a developer's
//! cluster on the default ports.

use std::collections::HashMap;
use std::ops::Deref;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::endpoints::{random_secret, Endpoints};
use crate::{bin_dir, free_port, repo_root};

/// Services of a local cluster: `control-plane` (or, highly available, `etcd1`..`etcd3` and
/// `cp1`..`cp3`), `node1`..`nodeN`, `proxy`.
pub struct LocalCluster {
    endpoints: Endpoints,
    /// Replicas per master (`TESSERA_REPLICAS`).
    replicas: u32,
    /// The three control planes and their etcd (`TESSERA_CP_HA=1`), if so started.
    pub ha: Option<Ha>,
    /// node-timeout the cluster was created with.
    pub node_timeout: Duration,
    dir: tempfile::TempDir,
    /// Output of `local.sh up` (includes `clusterctl create`'s).
    pub up_output: String,
}

impl LocalCluster {
    /// `deploy/local.sh up` with fresh ports and a fresh run directory; returns once the launcher
    /// says the cluster is ok.
    pub fn up(node_timeout: Duration) -> LocalCluster {
        LocalCluster::up_with_replicas(node_timeout, 0)
    }

    /// `up` with `replicas` replicas per master (`TESSERA_REPLICAS`): three masters and
    /// 3 x `replicas` replicas, placed by `clusterctl create --replicas`.
    pub fn up_with_replicas(node_timeout: Duration, replicas: u32) -> LocalCluster {
        LocalCluster::start(node_timeout, replicas, None)
    }

    /// `up_with_replicas` with three control planes over a three-member etcd
    /// (`TESSERA_CP_HA=1`); `endpoints.cp_port` is the first control plane's.
    pub fn up_ha(node_timeout: Duration, replicas: u32) -> LocalCluster {
        let ports = |n| (0..n).map(|_| free_port()).collect::<Vec<u16>>();
        let ha = Ha {
            cp_ports: ports(3),
            etcd_ports: ports(3),
            etcd_peer_ports: ports(3),
        };
        LocalCluster::start(node_timeout, replicas, Some(ha))
    }

    fn start(node_timeout: Duration, replicas: u32, ha: Option<Ha>) -> LocalCluster {
        let nodes = 3 * (replicas as usize + 1);
        let mut cluster = LocalCluster {
            endpoints: Endpoints {
                proxy_port: free_port(),
                node_ports: (0..nodes).map(|_| free_port()).collect(),
                cp_port: ha.as_ref().map_or_else(free_port, |ha| ha.cp_ports[0]),
                node_secret: random_secret(),
            },
            replicas,
            ha,
            node_timeout,
            dir: tessera_testkit::temp_dir("local-cluster"),
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
        let list = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let ha = self.ha.as_ref().map(|ha| {
            [
                ("TESSERA_CP_HA", "1".to_string()),
                ("TESSERA_CP_PORTS", list(&ha.cp_ports)),
                ("TESSERA_ETCD_PORTS", list(&ha.etcd_ports)),
                ("TESSERA_ETCD_PEER_PORTS", list(&ha.etcd_peer_ports)),
                // etcd's minimum lease with its default timing.
                ("TESSERA_ELECTION_TTL", "2s".to_string()),
            ]
        });
        let mut env = HashMap::from([
            ("TESSERA_RUN_DIR", self.dir.path().display().to_string()),
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
            ("TESSERA_REPLICAS", self.replicas.to_string()),
        ]);
        env.extend(ha.into_iter().flatten());
        env
    }

    /// The control planes' URLs, comma-separated (one, unless highly available).
    pub fn control_plane_list(&self) -> String {
        let ports = match &self.ha {
            Some(ha) => ha.cp_ports.clone(),
            None => vec![self.cp_port],
        };
        ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
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

    /// Runs `clusterctl ARGS` against this cluster's control planes.
    pub fn clusterctl(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("clusterctl"))
            .arg("--control-plane")
            .arg(self.control_plane_list())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run clusterctl")
    }

    /// The pid `deploy/local.sh` recorded for `service` (`node1`, `proxy`, ...).
    pub fn pid(&self, service: &str) -> u32 {
        let file = self.dir.path().join(format!("{service}.pid"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: no pid in {text:?}", file.display()))
    }

    /// Sends SIG`signal` (`KILL`, `STOP`, `CONT`) to the services in one `kill` call, so a fault
    /// meant to hit several at once does.
    pub fn signal(&self, services: &[&str], signal: &str) {
        let pids: Vec<String> = services.iter().map(|s| self.pid(s).to_string()).collect();
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pids:?} ({services:?})");
    }

    /// The tail of every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        let nodes = (1..=self.node_ports.len()).map(|i| format!("node{i}"));
        let control_planes = match &self.ha {
            Some(ha) => (1..=ha.etcd_ports.len())
                .map(|i| format!("etcd{i}"))
                .chain((1..=ha.cp_ports.len()).map(|i| format!("cp{i}")))
                .collect(),
            None => vec!["control-plane".to_string()],
        };
        let names = control_planes
            .into_iter()
            .chain(nodes)
            .chain(["proxy".to_string()]);
        for name in names {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
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
}

/// The ports of a highly available control plane: three control planes, three etcd members.
pub struct Ha {
    pub cp_ports: Vec<u16>,
    pub etcd_ports: Vec<u16>,
    pub etcd_peer_ports: Vec<u16>,
}

impl Deref for LocalCluster {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
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

/// Sends SIGCONT when dropped, so a failing test never leaves a process stopped.
pub struct Resume<'a> {
    pub cluster: &'a LocalCluster,
    pub service: String,
}

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.cluster.pid(&self.service).to_string()])
            .status();
    }
}
