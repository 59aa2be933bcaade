//! Redis's own resharding protocol driven at the nodes of a cluster of real processes:
//! `redis-cli --cluster reshard` and `rebalance` send CLUSTER SETSLOT IMPORTING / MIGRATING,
//! GETKEYSINSLOT, MIGRATE ... KEYS and SETSLOT NODE to the nodes, which turn them into the
//! control plane's plan. Afterwards every key reads back through the proxy and through
//! `redis-cli -c` at the nodes, `redis-cli --cluster check` passes, and the control plane's
//! topology names the new owners.

use std::process::{Command, Output};
use std::time::Duration;

use tessera_e2e::cluster::LocalCluster;
use tessera_e2e::reshard::{assert_loaded, cluster_check, load, node_id, topology};
use tessera_e2e::resp::RespClient;
use tessera_proto::slot::key_hash_slot;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// `redis-cli -a SECRET ARGS` (the node secret is the nodes' requirepass).
fn redis_cli(secret: &str, args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(["-a", secret, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli")
}

/// Runs a `redis-cli --cluster` command; its output, the test failing when it did.
fn cluster_command(secret: &str, args: &[&str]) -> String {
    let output = redis_cli(secret, args);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && !text.contains("[ERR]"),
        "redis-cli {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// Every `step`th key reads back with `redis-cli -c` at the node on `port`, which follows
/// MOVED to the key's owner.
fn assert_readable_at_nodes(secret: &str, port: u16, keys: &[String], step: usize) {
    let port = port.to_string();
    for key in keys.iter().step_by(step) {
        let output = redis_cli(secret, &["-c", "-p", &port, "GET", key]);
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), key);
    }
}

#[test]
fn redis_cli_reshard_at_the_nodes_moves_slots_in_the_control_plane() {
    let cluster = LocalCluster::up(NODE_TIMEOUT);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!("http://127.0.0.1:{}", cluster.cp_port);
    let secret = &cluster.node_secret;
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    let keys = load(&mut proxy, 5_000);
    let ports = &cluster.node_ports;
    let (from, to) = (node_id(ports[0], secret), node_id(ports[1], secret));
    let entry = format!("127.0.0.1:{}", ports[2]);

    let text = cluster_command(
        secret,
        &[
            "--cluster",
            "reshard",
            &entry,
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            "300",
            "--cluster-yes",
        ],
    );
    assert!(text.contains("Moving slot 299 from"), "{text}");

    // The control plane gave the slots to the target, and no move is left open.
    let t = topology(&runtime, &url);
    assert!(t.intent.migrations.is_empty(), "{:?}", t.intent.migrations);
    assert!((0..300).all(|s| t.owner(s).map(|n| n.id.to_string()) == Some(to.clone())));
    assert_eq!(t.owner(300).map(|n| n.id.to_string()), Some(from.clone()));

    let check = cluster_check(&format!("127.0.0.1:{}", ports[0]), secret).expect("check");
    for line in [
        "[OK] All 16384 slots covered.",
        "slots:[300-5460] (5161 slots) master",
        "slots:[0-299],[5461-10922] (5762 slots) master",
    ] {
        assert!(check.contains(line), "{line} in:\n{check}");
    }
    assert_loaded(&mut proxy, &keys);
    assert_eq!(proxy.call_str(&["DBSIZE"]), format!(":{}\r\n", keys.len()));
    let moved: Vec<String> = keys
        .iter()
        .filter(|k| key_hash_slot(k.as_bytes()) < 300)
        .cloned()
        .collect();
    assert!(moved.len() > 50, "{} keys moved", moved.len());
    assert_readable_at_nodes(secret, ports[0], &moved, 1);
    assert_readable_at_nodes(secret, ports[2], &keys, 250);
}

/// `redis-cli --cluster rebalance` at the nodes, by weight: the heavier master takes its share
/// from the others (about 350 slots: every slot costs five control-plane changes, so the test
/// keeps the move small); every key stays readable.
#[test]
fn redis_cli_rebalance_at_the_nodes_follows_weights() {
    let cluster = LocalCluster::up(NODE_TIMEOUT);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!("http://127.0.0.1:{}", cluster.cp_port);
    let secret = &cluster.node_secret;
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    let keys = load(&mut proxy, 3_000);
    let ports = &cluster.node_ports;
    let heavier = node_id(ports[0], secret);
    let entry = format!("127.0.0.1:{}", ports[1]);

    let weight = format!("{heavier}=1.1");
    let text = cluster_command(
        secret,
        &[
            "--cluster",
            "rebalance",
            &entry,
            "--cluster-weight",
            &weight,
        ],
    );
    assert!(
        text.contains(">>> Rebalancing across 3 nodes. Total weight = 3.10"),
        "{text}"
    );
    let t = topology(&runtime, &url);
    assert!(t.intent.migrations.is_empty(), "no move left open");
    let owned = (0..16384u16)
        .filter(|&s| t.owner(s).is_some_and(|n| n.id.as_str() == heavier))
        .count();
    assert!((5700..=5900).contains(&owned), "{owned} slots");
    let check = cluster_check(&entry, secret).expect("check");
    assert!(check.contains("[OK] All 16384 slots covered."), "{check}");
    assert_loaded(&mut proxy, &keys);
    assert_readable_at_nodes(secret, ports[2], &keys, 100);
}
