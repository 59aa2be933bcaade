//! The compose story with real containers: build the FROM-scratch image, `docker-compose up -d`,
//! load the cluster through the proxy, stop / start a node, cut one off the network, SIGKILL one,
//! and `down -v`. Uses a compose project and host ports of its own, so it cannot touch other stacks,
//! and tears the stack down even when it fails.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tessera_e2e::resp::RespClient;
use tessera_e2e::{free_port, redis, repo_root, wait};

/// Compose's node-timeout (docker-compose.yml) plus a margin for detection and propagation.
const FAIL_LIMIT: Duration = Duration::from_secs(5 + 10);

/// The node secret this stack's nodes and proxy share.
const NODE_SECRET: &str = "e2e-compose-secret";

struct Stack {
    project: String,
    proxy: u16,
    nodes: [u16; 3],
    cp: u16,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Output {
        let output = Command::new("docker-compose")
            .current_dir(repo_root())
            .arg("-p")
            .arg(&self.project)
            .args(args)
            .env("TESSERA_PROXY_PORT", self.proxy.to_string())
            .env("TESSERA_NODE1_PORT", self.nodes[0].to_string())
            .env("TESSERA_NODE2_PORT", self.nodes[1].to_string())
            .env("TESSERA_NODE3_PORT", self.nodes[2].to_string())
            .env("TESSERA_CP_PORT", self.cp.to_string())
            .env("TESSERA_NODE_SECRET", NODE_SECRET)
            .stdin(Stdio::null())
            .output()
            .expect("run docker-compose");
        assert!(
            output.status.success(),
            "docker-compose {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn docker(&self, args: &[&str]) -> String {
        let output = redis::run("docker", args);
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn container(&self, service: &str) -> String {
        self.docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
    }

    /// redis-cli on `port`, with the node secret when it is a node's.
    fn cli(&self, port: u16, args: &[&str]) -> String {
        let port_text = port.to_string();
        let auth: &[&str] = if self.nodes.contains(&port) {
            &["-a", NODE_SECRET, "--no-auth-warning"]
        } else {
            &[]
        };
        redis::cli(&[&["-p", port_text.as_str()], auth, args].concat())
    }

    fn info(&self, port: u16, field: &str) -> Option<String> {
        self.cli(port, &["cluster", "info"]).lines().find_map(|l| {
            l.trim_end()
                .strip_prefix(&format!("{field}:"))
                .map(String::from)
        })
    }

    fn wait_state(&self, port: u16, state: &str) {
        wait::until(
            &format!("cluster_state:{state} on {port}"),
            FAIL_LIMIT,
            || (self.info(port, "cluster_state").as_deref() == Some(state)).then_some(()),
        );
    }

    fn dbsize(&self, port: u16) -> u64 {
        let text = self.cli(port, &["dbsize"]);
        text.trim()
            .trim_start_matches("(integer) ")
            .parse()
            .unwrap_or_else(|_| panic!("DBSIZE on {port}: {text}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .current_dir(repo_root())
            .args(["-p", &self.project, "down", "-v", "--remove-orphans"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn compose_story() {
    let build = Command::new(repo_root().join("deploy/build-images.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("run deploy/build-images.sh (needs docker)");
    assert!(
        build.status.success(),
        "image build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    println!("{}", String::from_utf8_lossy(&build.stdout));

    let stack = Stack {
        project: format!("tessera-e2e-{}", std::process::id()),
        proxy: free_port(),
        nodes: [free_port(), free_port(), free_port()],
        cp: free_port(),
    };

    // 1. Up; the init step creates the cluster.
    stack.compose(&["up", "-d"]);
    stack.wait_state(stack.proxy, "ok");
    assert_eq!(
        stack.info(stack.proxy, "cluster_slots_assigned").as_deref(),
        Some("16384")
    );
    assert_eq!(
        stack.info(stack.proxy, "cluster_known_nodes").as_deref(),
        Some("3")
    );
    let nodes = stack.cli(stack.nodes[0], &["cluster", "nodes"]);
    for name in ["node1:7000@", "node2:7001@", "node3:7002@"] {
        assert!(
            nodes.contains(name),
            "CLUSTER NODES announces service names:\n{nodes}"
        );
    }
    // Non-root, as the image says.
    let user = stack.docker(&[
        "inspect",
        "--format",
        "{{.Config.User}}",
        &stack.container("node1"),
    ]);
    assert_eq!(user, "10001:10001");

    // 2. Load through the proxy.
    let proxy = stack.proxy.to_string();
    let bench = redis::run(
        "redis-benchmark",
        &[
            "-p", &proxy, "-t", "set", "-n", "50000", "-c", "10", "-d", "100", "-r", "100000", "-q",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bench.stdout),
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(
        bench.status.success() && !text.to_lowercase().contains("error"),
        "{text}"
    );
    let sum: u64 = stack.nodes.iter().map(|&p| stack.dbsize(p)).sum();
    assert_eq!(stack.dbsize(stack.proxy), sum);
    let mut client = RespClient::connect(stack.proxy).expect("connect to the proxy");
    let keys: Vec<String> = (0..200).map(|i| format!("compose:{i}")).collect();
    for key in &keys {
        assert_eq!(client.call_str(&["SET", key, key]), "+OK\r\n");
    }
    let check_keys = || {
        let mut client = RespClient::connect(stack.proxy).expect("connect to the proxy");
        for key in &keys {
            assert_eq!(
                client.call_str(&["GET", key]),
                format!("${}\r\n{key}\r\n", key.len()),
                "GET {key}"
            );
        }
    };

    // 3-4. Stop node1, see the failure, start it, see it heal with its id and keys.
    let node1_id = stack
        .cli(stack.nodes[0], &["cluster", "myid"])
        .trim()
        .to_string();
    stack.compose(&["stop", "node1"]);
    stack.wait_state(stack.proxy, "fail");
    stack.wait_state(stack.nodes[1], "fail");
    let mut client = RespClient::connect(stack.proxy).expect("connect to the proxy");
    assert_eq!(
        client.call_str(&["GET", "compose:1"]),
        "-CLUSTERDOWN The cluster is down\r\n"
    );
    stack.compose(&["start", "node1"]);
    stack.wait_state(stack.proxy, "ok");
    assert_eq!(
        stack.cli(stack.nodes[0], &["cluster", "myid"]).trim(),
        node1_id
    );
    check_keys();

    // 5. Cut node2 off the network, then reconnect it.
    let network = format!("{}_default", stack.project);
    let node2 = stack.container("node2");
    stack.docker(&["network", "disconnect", &network, &node2]);
    stack.wait_state(stack.proxy, "fail");
    stack.docker(&["network", "connect", "--alias", "node2", &network, &node2]);
    stack.wait_state(stack.proxy, "ok");
    check_keys();

    // 6. SIGKILL node3: keys acknowledged more than a second before are kept (appendfsync everysec).
    std::thread::sleep(Duration::from_millis(1500));
    stack.compose(&["kill", "node3"]);
    stack.wait_state(stack.proxy, "fail");
    stack.compose(&["start", "node3"]);
    stack.wait_state(stack.proxy, "ok");
    check_keys();

    // 7. down -v leaves nothing.
    stack.compose(&["down", "-v"]);
    let label = format!("label=com.docker.compose.project={}", stack.project);
    assert_eq!(stack.docker(&["ps", "-aq", "--filter", &label]), "");
    assert_eq!(
        stack.docker(&["volume", "ls", "-q", "--filter", &label]),
        ""
    );
}
