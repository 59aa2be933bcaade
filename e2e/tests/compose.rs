//! The compose story with real containers: build the FROM-scratch image, `docker-compose up -d`,
//! load the cluster through the proxy, stop / start a node, cut one off the network, SIGKILL one,
//! and `down -v`. Uses a compose project and host ports of its own, so it cannot touch other stacks,
//! and tears the stack down even when it fails.

use std::time::Duration;

use tessera_e2e::compose::{build_image, Stack};
use tessera_e2e::redis;
use tessera_e2e::resp::RespClient;

#[test]
fn compose_story() {
    build_image();
    let stack = Stack::new("story", false);

    // 1. Up; the init step creates the cluster.
    stack.up();
    assert_eq!(
        stack
            .info(stack.proxy_port, "cluster_slots_assigned")
            .as_deref(),
        Some("16384")
    );
    assert_eq!(
        stack
            .info(stack.proxy_port, "cluster_known_nodes")
            .as_deref(),
        Some("3")
    );
    let nodes = stack.cli(stack.node_ports[0], &["cluster", "nodes"]);
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
    let proxy = stack.proxy_port.to_string();
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
    let sum: u64 = stack.node_ports.iter().map(|&p| stack.dbsize(p)).sum();
    assert_eq!(stack.dbsize(stack.proxy_port), sum);
    let mut client = RespClient::connect(stack.proxy_port).expect("connect to the proxy");
    let keys: Vec<String> = (0..200).map(|i| format!("compose:{i}")).collect();
    for key in &keys {
        assert_eq!(client.call_str(&["SET", key, key]), "+OK\r\n");
    }
    let check_keys = || {
        let mut client = RespClient::connect(stack.proxy_port).expect("connect to the proxy");
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
        .cli(stack.node_ports[0], &["cluster", "myid"])
        .trim()
        .to_string();
    stack.compose(&["stop", "node1"]);
    stack.wait_state(stack.proxy_port, "fail");
    stack.wait_state(stack.node_ports[1], "fail");
    let mut client = RespClient::connect(stack.proxy_port).expect("connect to the proxy");
    assert_eq!(
        client.call_str(&["GET", "compose:1"]),
        "-CLUSTERDOWN The cluster is down\r\n"
    );
    stack.compose(&["start", "node1"]);
    stack.wait_state(stack.proxy_port, "ok");
    assert_eq!(
        stack.cli(stack.node_ports[0], &["cluster", "myid"]).trim(),
        node1_id
    );
    check_keys();

    // 5. Cut node2 off the network, then reconnect it.
    let network = format!("{}_default", stack.project);
    let node2 = stack.container("node2");
    stack.docker(&["network", "disconnect", &network, &node2]);
    stack.wait_state(stack.proxy_port, "fail");
    stack.docker(&["network", "connect", "--alias", "node2", &network, &node2]);
    stack.wait_state(stack.proxy_port, "ok");
    check_keys();

    // 6. SIGKILL node3: keys acknowledged more than a second before are kept (appendfsync everysec).
    std::thread::sleep(Duration::from_millis(1500));
    stack.compose(&["kill", "node3"]);
    stack.wait_state(stack.proxy_port, "fail");
    stack.compose(&["start", "node3"]);
    stack.wait_state(stack.proxy_port, "ok");
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
