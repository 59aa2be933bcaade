//! What the resharding stories share: keys loaded through the proxy and read back, a node's id,
//! `redis-cli --cluster check` at a node, and the control plane's topology.

use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::Topology;

use crate::resp::RespClient;
use crate::shard::connect;

/// The control plane's current topology (GetTopology at `url`).
pub fn topology(runtime: &tokio::runtime::Runtime, url: &str) -> Topology {
    runtime.block_on(async {
        let mut client = ControlPlaneClient::connect(url.to_string())
            .await
            .expect("control plane");
        let wire = client
            .get_topology(pb::GetTopologyRequest {})
            .await
            .expect("topology")
            .into_inner();
        Topology::try_from(wire).expect("valid topology")
    })
}

/// Writes `count` keys through the proxy, each holding its own name.
pub fn load(proxy: &mut RespClient, count: usize) -> Vec<String> {
    let keys: Vec<String> = (0..count).map(|i| format!("key:{i}")).collect();
    for key in &keys {
        assert_eq!(proxy.call_str(&["SET", key, key]), "+OK\r\n");
    }
    keys
}

/// Every one of `keys` reads back its own name through the proxy.
pub fn assert_loaded<'a>(proxy: &mut RespClient, keys: impl IntoIterator<Item = &'a String>) {
    for key in keys {
        assert_eq!(
            proxy.call_str(&["GET", key]),
            format!("${}\r\n{key}\r\n", key.len()),
            "{key}"
        );
    }
}

/// `redis-cli --cluster check` at `address`: its output, `Err` with it when the check failed.
pub fn cluster_check(address: &str, secret: &str) -> Result<String, String> {
    let check = std::process::Command::new("redis-cli")
        .args(["-a", secret, "--no-auth-warning"])
        .args(["--cluster", "check", address])
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    if check.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The node id of the node on `port`.
pub fn node_id(port: u16, secret: &str) -> String {
    let reply = connect(port, secret).call_str(&["CLUSTER", "MYID"]);
    reply.lines().nth(1).expect("an id").to_string()
}
