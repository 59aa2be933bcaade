//! What a test talks to in a running cluster, wherever it runs (processes started by
//! `deploy/local.sh`, or services inside the test process): the ports, the node secret, and the
//! clients and probes that use them.

use std::time::Duration;

use tessera_testkit::wait;

use crate::resp::RespClient;

/// The addresses of a cluster on 127.0.0.1 and its node secret.
pub struct Endpoints {
    pub proxy_port: u16,
    pub node_ports: Vec<u16>,
    pub cp_port: u16,
    /// The node secret the cluster runs with (random per cluster): the nodes refuse clients
    /// that have not sent `AUTH <secret>`; `node_client` and `cli` send it.
    pub node_secret: String,
}

impl Endpoints {
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

    /// One field of `CLUSTER INFO` on `port` (a node or the proxy); `None` while it does not
    /// answer.
    pub fn info_field(&self, port: u16, field: &str) -> Option<String> {
        let mut client = RespClient::connect(port).ok()?;
        if self.node_ports.contains(&port) {
            client.call_str(&["AUTH", &self.node_secret]);
        }
        let info = client.call_str(&["CLUSTER", "INFO"]);
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

/// 128 random bits as hex, for a cluster's node secret (from the OS through std's randomly keyed
/// hasher, fed the time, twice: no extra crate).
pub fn random_secret() -> String {
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
    format!("{:016x}{:016x}", half(), half())
}
