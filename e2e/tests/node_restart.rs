//! The in-process cluster's fault hook: a shard node stopped cleanly (as SIGTERM does) takes its
//! slots down, the proxy answers CLUSTERDOWN as Redis Cluster does, and the node started again
//! on its data directory comes back with its id and every key it acknowledged.

use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::RespClient;
use tessera_proto::slot::key_hash_slot;

const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_stopped_node_comes_back_with_its_id_and_keys() {
    let mut cluster = InProcessCluster::up(NODE_TIMEOUT);
    let proxy = cluster.proxy_port;
    let first = cluster.node_ports[0];
    let mut client = RespClient::connect(proxy).expect("connect to the proxy");
    let keys: Vec<String> = (0..300).map(|i| format!("restart:{i}")).collect();
    for key in &keys {
        assert_eq!(client.call_str(&["SET", key, key]), "+OK\r\n");
    }
    // A key node 0 serves (slots 0-5460), to see its slots go down and come back.
    let on_first = keys
        .iter()
        .find(|k| key_hash_slot(k.as_bytes()) <= 5460)
        .expect("some key hashes to node 0");
    let id = cluster.node_client(first).call_str(&["CLUSTER", "MYID"]);

    cluster.stop_node(0).expect("stop node 0");
    cluster.wait_info(proxy, "cluster_state", "fail", LIMIT);
    assert_eq!(
        client.call_str(&["GET", on_first]),
        "-CLUSTERDOWN The cluster is down\r\n"
    );

    cluster.start_node(0).expect("start node 0 again");
    cluster.wait_info(proxy, "cluster_state", "ok", LIMIT);
    assert_eq!(
        cluster.node_client(first).call_str(&["CLUSTER", "MYID"]),
        id
    );
    for key in &keys {
        assert_eq!(
            client.call_str(&["GET", key]),
            format!("${}\r\n{key}\r\n", key.len()),
            "{key} after the restart"
        );
    }
}
