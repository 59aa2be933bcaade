//! The compose deployment as tests drive it: the image built by `deploy/build-images.sh`, a stack
//! started with `docker-compose up -d` under a project name and host ports of its own (so it
//! cannot touch a developer's stack or another test's), in the three-node layout
//! (`docker-compose.yml`) or the six-node one (`+ docker-compose.replicas.yml`, as
//! `TESSERA_REPLICAS=1 deploy/compose.sh` runs it), and torn down with `down -v` when dropped,
//! even when the test fails.
//!
//! `TESSERA_IMAGE` (default `tessera:local`, as the compose files) names the image that is built
//! and run, so a checkout can test its own build beside another's.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::endpoints::Endpoints;
use crate::{free_port, redis, repo_root, wait};

/// The node secret the test stacks' nodes and proxy share.
pub const NODE_SECRET: &str = "e2e-compose-secret";

/// The compose files' node-timeout (`--node-timeout 5s` in docker-compose.yml).
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a state change may take: node-timeout plus detection and propagation.
pub const STATE_LIMIT: Duration = Duration::from_secs(5 + 10);

/// Builds the image the stacks run (`deploy/build-images.sh`: static binaries, FROM scratch).
pub fn build_image() {
    let build = Command::new(repo_root().join("deploy/build-images.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("run deploy/build-images.sh (needs docker)");
    assert!(
        build.status.success(),
        "image build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    println!("{}", String::from_utf8_lossy(&build.stdout).trim_end());
}

/// One compose project: its name and the host ports its services are published on.
pub struct Stack {
    pub project: String,
    /// `docker-compose.yml`, plus `docker-compose.replicas.yml` for six nodes.
    files: Vec<&'static str>,
    endpoints: Endpoints,
}

impl std::ops::Deref for Stack {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

impl Stack {
    /// A stack not started yet: three masters, or with `replicas` the six-node layout (three
    /// masters, one replica each). `name` keeps two stacks of one test process apart.
    pub fn new(name: &str, replicas: bool) -> Stack {
        let nodes = if replicas { 6 } else { 3 };
        let mut files = vec!["docker-compose.yml"];
        if replicas {
            files.push("docker-compose.replicas.yml");
        }
        Stack {
            project: format!("tessera-e2e-{name}-{}", std::process::id()),
            files,
            endpoints: Endpoints {
                proxy_port: free_port(),
                node_ports: (0..nodes).map(|_| free_port()).collect(),
                cp_port: free_port(),
                node_secret: NODE_SECRET.to_string(),
            },
        }
    }

    /// `docker-compose up -d`, then waits until the proxy reports `cluster_state:ok` (the init
    /// service has created the cluster).
    pub fn up(&self) {
        self.compose(&["up", "-d"]);
        wait::until(
            "the stack's cluster is created and ok",
            Duration::from_secs(120),
            || (self.info(self.proxy_port, "cluster_state").as_deref() == Some("ok")).then_some(()),
        );
    }

    /// The compose service of the node at `index` in `node_ports`.
    pub fn node_service(&self, index: usize) -> String {
        format!("node{}", index + 1)
    }

    /// Runs `docker-compose ARGS` in this project; panics with its output when it fails.
    pub fn compose(&self, args: &[&str]) -> Output {
        let mut command = Command::new("docker-compose");
        command.current_dir(repo_root());
        for file in &self.files {
            command.args(["-f", file]);
        }
        command
            .arg("-p")
            .arg(&self.project)
            .args(args)
            .env("TESSERA_PROXY_PORT", self.proxy_port.to_string())
            .env("TESSERA_CP_PORT", self.cp_port.to_string())
            .env("TESSERA_NODE_SECRET", NODE_SECRET)
            .stdin(Stdio::null());
        for (i, port) in self.node_ports.iter().enumerate() {
            command.env(format!("TESSERA_NODE{}_PORT", i + 1), port.to_string());
        }
        let output = command.output().expect("run docker-compose");
        assert!(
            output.status.success(),
            "docker-compose {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `docker ARGS`; its trimmed stdout, or a panic with its stderr.
    pub fn docker(&self, args: &[&str]) -> String {
        let output = redis::run("docker", args);
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The container id of `service`.
    pub fn container(&self, service: &str) -> String {
        self.docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
    }

    /// The project's network (compose v1 names it `<project>_default`).
    pub fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// `CLUSTER INFO`'s `field` on `port`, through redis-cli (with the node secret for a node).
    pub fn info(&self, port: u16, field: &str) -> Option<String> {
        self.cli(port, &["cluster", "info"]).lines().find_map(|l| {
            l.trim_end()
                .strip_prefix(&format!("{field}:"))
                .map(String::from)
        })
    }

    /// Waits until `port` reports `cluster_state:STATE`.
    pub fn wait_state(&self, port: u16, state: &str) {
        wait::until(
            &format!("cluster_state:{state} on {port}"),
            STATE_LIMIT,
            || (self.info(port, "cluster_state").as_deref() == Some(state)).then_some(()),
        );
    }

    /// DBSIZE on `port`.
    pub fn dbsize(&self, port: u16) -> u64 {
        let text = self.cli(port, &["dbsize"]);
        text.trim()
            .trim_start_matches("(integer) ")
            .parse()
            .unwrap_or_else(|_| panic!("DBSIZE on {port}: {text}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Best effort, also after a failure: a paused or stopped container does not block `down`.
        let mut command = Command::new("docker-compose");
        command.current_dir(repo_root());
        for file in &self.files {
            command.args(["-f", file]);
        }
        let _ = command
            .args(["-p", &self.project, "down", "-v", "--remove-orphans"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
