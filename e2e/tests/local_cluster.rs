//! The local-cluster story end to end, as a user types it: `deploy/local.sh up`, the CLUSTER
//! commands, redis-benchmark through the proxy and against the nodes, then losing node1 (SIGTERM in
//! one run, SIGKILL in the other), seeing the cluster fail with CLUSTERDOWN, and getting it back with
//! the same node id and every key.

use std::time::Duration;

use tessera_e2e::cluster::LocalCluster;
use tessera_e2e::redis;
use tessera_e2e::resp::RespClient;
use tessera_e2e::wait;
use tessera_proto::slot::key_hash_slot;

/// node-timeout of the test clusters; failure must show within it plus this margin.
const NODE_TIMEOUT: Duration = Duration::from_millis(2000);
const FAIL_MARGIN: Duration = Duration::from_secs(5);

#[test]
fn story_with_sigterm() {
    story(false);
}

#[test]
fn story_with_sigkill() {
    story(true);
}

fn story(kill: bool) {
    // 1-2. Up, created, ok; clusterctl printed redis-cli's allocation.
    let cluster = LocalCluster::up(NODE_TIMEOUT);
    let up = &cluster.up_output;
    for expected in [
        "Master[0] -> Slots 0 - 5460",
        "Master[1] -> Slots 5461 - 10922",
        "Master[2] -> Slots 10923 - 16383",
        "slots:[0-5460] (5461 slots) master",
        "[OK] All nodes agree about slots configuration.",
        "[OK] All 16384 slots covered.",
    ] {
        assert!(
            up.contains(expected),
            "create output lacks {expected:?}:\n{up}"
        );
    }
    let node1 = cluster.node_ports[0];
    let node2 = cluster.node_ports[1];
    let proxy = cluster.proxy_port;

    // 3. CLUSTER INFO on a node and through the proxy.
    for port in [node1, proxy] {
        let info = cluster.cli(port, &["cluster", "info"]);
        for expected in [
            "cluster_state:ok",
            "cluster_slots_assigned:16384",
            "cluster_slots_ok:16384",
            "cluster_slots_pfail:0",
            "cluster_slots_fail:0",
            "cluster_known_nodes:3",
            "cluster_size:3",
            "cluster_current_epoch:",
            "cluster_my_epoch:",
            "cluster_stats_messages_sent:",
            "cluster_stats_messages_received:",
        ] {
            assert!(
                info.contains(expected),
                "port {port}: CLUSTER INFO lacks {expected}:\n{info}"
            );
        }
    }

    // 4. The other CLUSTER subcommands, in Redis's formats.
    let myid = cluster.cli(node1, &["cluster", "myid"]).trim().to_string();
    assert_eq!(myid.len(), 40, "CLUSTER MYID: {myid:?}");
    let nodes = cluster.cli(node1, &["cluster", "nodes"]);
    let my_line = nodes
        .lines()
        .find(|l| l.starts_with(&myid))
        .unwrap_or_else(|| panic!("CLUSTER NODES lacks myself:\n{nodes}"));
    assert!(
        my_line.contains(&format!("127.0.0.1:{node1}@")),
        "{my_line}"
    );
    assert!(my_line.contains("myself,master"), "{my_line}");
    assert!(my_line.ends_with(" connected 0-5460"), "{my_line}");
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    let slots = cluster.cli(node1, &["cluster", "slots"]);
    assert!(
        slots.contains("5460") && slots.contains("10923") && slots.contains(&myid),
        "{slots}"
    );
    let shards = cluster.cli(node1, &["cluster", "shards"]);
    assert!(
        shards.contains("slots") && shards.contains("nodes") && shards.contains(&myid),
        "{shards}"
    );
    assert_eq!(
        cluster
            .cli(node1, &["cluster", "keyslot", "somekey"])
            .trim(),
        "11058"
    );
    assert_eq!(
        cluster
            .cli(node1, &["cluster", "keyslot", "foo{hash_tag}"])
            .trim(),
        "2515"
    );
    // redis-cli -c follows MOVED: "foo" hashes to 12182, served by node3.
    assert_eq!(
        cluster.cli(node1, &["-c", "set", "foo", "bar"]).trim(),
        "OK"
    );
    assert_eq!(cluster.cli(node1, &["-c", "get", "foo"]).trim(), "bar");
    let moved = cluster.cli(node1, &["get", "foo"]);
    assert!(moved.contains("MOVED 12182 127.0.0.1:"), "{moved}");
    assert_eq!(
        cluster
            .cli(
                cluster.node_ports[2],
                &["cluster", "countkeysinslot", "12182"]
            )
            .trim(),
        "1"
    );
    assert_eq!(
        cluster
            .cli(
                cluster.node_ports[2],
                &["cluster", "getkeysinslot", "12182", "10"]
            )
            .trim(),
        "foo"
    );

    // 5. redis-benchmark through the proxy and against the nodes in cluster mode.
    let bench = |args: &[&str]| {
        let output = redis::run("redis-benchmark", args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "redis-benchmark {args:?} failed:\n{text}"
        );
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("error") && !lower.contains("warning"),
            "redis-benchmark {args:?}:\n{text}"
        );
        assert!(
            text.contains("requests per second"),
            "redis-benchmark {args:?}:\n{text}"
        );
    };
    let proxy_s = proxy.to_string();
    let node1_s = node1.to_string();
    let common = ["-n", "50000", "-c", "10", "-d", "100", "-r", "100000", "-q"];
    bench(&[&["-p", proxy_s.as_str(), "-t", "set,get"], &common[..]].concat());
    bench(
        &[
            &[
                "--cluster",
                "-p",
                node1_s.as_str(),
                "-a",
                cluster.node_secret.as_str(),
                "-t",
                "set",
            ],
            &common[..],
        ]
        .concat(),
    );

    // Keys of our own, on every node, to read back after the failure.
    let mut client = RespClient::connect(proxy).expect("connect to the proxy");
    let keys: Vec<String> = (0..300).map(|i| format!("story:{i}")).collect();
    for key in &keys {
        assert_eq!(
            client.call_str(&["SET", key, &format!("value-of-{key}")]),
            "+OK\r\n"
        );
    }

    // 6. DBSIZE per node and through the proxy.
    let dbsize = |port: u16| -> u64 {
        let text = cluster.cli(port, &["dbsize"]);
        text.trim()
            .trim_start_matches("(integer) ")
            .parse()
            .unwrap_or_else(|_| panic!("DBSIZE on {port}: {text}"))
    };
    let per_node: Vec<u64> = cluster.node_ports.iter().map(|&p| dbsize(p)).collect();
    assert!(
        per_node.iter().all(|&n| n > 0),
        "every node holds keys: {per_node:?}"
    );
    assert_eq!(dbsize(proxy), per_node.iter().sum::<u64>());
    let node1_keys = per_node[0];

    // 7. Lose node1.
    if kill {
        // Under appendfsync everysec, writes acknowledged more than a second ago are on disk.
        std::thread::sleep(Duration::from_millis(1500));
        cluster.launcher(&["stop", "node1", "--kill"]);
    } else {
        cluster.launcher(&["stop", "node1"]);
    }
    let fail_limit = NODE_TIMEOUT + FAIL_MARGIN;
    cluster.wait_info(node2, "cluster_state", "fail", fail_limit);
    cluster.wait_info(proxy, "cluster_state", "fail", fail_limit);
    for port in [node2, proxy] {
        assert_eq!(
            cluster.info_field(port, "cluster_slots_fail").as_deref(),
            Some("5461")
        );
    }
    let nodes = cluster.cli(node2, &["cluster", "nodes"]);
    let node1_line = nodes
        .lines()
        .find(|l| l.starts_with(&myid))
        .expect("node1 still listed");
    assert!(node1_line.contains(" master,fail "), "{node1_line}");
    for port in [node2, proxy] {
        let mut c = if port == node2 {
            cluster.node_client(port)
        } else {
            RespClient::connect(port).expect("connect")
        };
        // A key served by node2 and one served by node1: both refused while the cluster is down.
        for key in ["story:1", "foo"] {
            assert_eq!(
                c.call_str(&["GET", key]),
                "-CLUSTERDOWN The cluster is down\r\n",
                "GET {key} on {port}"
            );
        }
    }
    // SCAN is keyless: as a Redis node answers it while the cluster is down, the proxy's walk
    // goes through the live masters' slots and stops at node1's (FAIL).
    let mut c = RespClient::connect(proxy).expect("connect");
    assert_eq!(
        c.call_str(&["SCAN", "0"]),
        "-CLUSTERDOWN Hash slot not served\r\n"
    );
    let live = c.call_str(&["SCAN", "5461", "COUNT", "1000000"]);
    assert!(live.starts_with("*2\r\n$5\r\n10923\r\n*"), "{live}");

    // Without full coverage, only node1's slots are down.
    let set = cluster.clusterctl(&["set", "require-full-coverage", "no"]);
    assert!(set.status.success(), "{set:?}");
    let node1_key = keys
        .iter()
        .find(|k| key_hash_slot(k.as_bytes()) <= 5460)
        .expect("a key of node1");
    let other_key = keys
        .iter()
        .find(|k| key_hash_slot(k.as_bytes()) > 5460)
        .expect("a key of another node");
    wait::until("partial coverage to apply", fail_limit, || {
        let mut c = RespClient::connect(proxy).ok()?;
        (c.call_str(&["GET", other_key])
            == format!("${}\r\nvalue-of-{other_key}\r\n", other_key.len() + 9))
        .then_some(())
    });
    let mut c = RespClient::connect(proxy).expect("connect");
    assert_eq!(
        c.call_str(&["GET", node1_key]),
        "-CLUSTERDOWN Hash slot not served\r\n"
    );
    let set = cluster.clusterctl(&["set", "require-full-coverage", "yes"]);
    assert!(set.status.success(), "{set:?}");

    // 8. node1 comes back with its id, its slots and its keys.
    cluster.launcher(&["start", "node1"]);
    cluster.wait_info(proxy, "cluster_state", "ok", fail_limit);
    cluster.wait_info(node1, "cluster_state", "ok", fail_limit);
    assert_eq!(cluster.cli(node1, &["cluster", "myid"]).trim(), myid);
    assert_eq!(dbsize(node1), node1_keys, "node1 kept every key");
    let mut c = RespClient::connect(proxy).expect("connect");
    for key in &keys {
        let value = format!("value-of-{key}");
        assert_eq!(
            c.call_str(&["GET", key]),
            format!("${}\r\n{value}\r\n", value.len()),
            "GET {key}"
        );
    }
}
