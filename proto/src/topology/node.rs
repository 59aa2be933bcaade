//! Who is in the cluster: node and cluster ids, a node as the cluster should have it (`NodeSpec`)
//! and as it was last seen (`NodeStatus`).

use std::fmt;
use std::sync::Arc;

use super::TopologyError;

/// 40 lowercase hex characters: the form of node ids and cluster ids, as Redis's node ids.
fn is_hex40(text: &str) -> bool {
    text.len() == 40
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex40(bytes: [u8; 20]) -> Arc<str> {
    use std::fmt::Write;
    let mut text = String::with_capacity(40);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text.into()
}

/// A node's id: 40 lowercase hex characters, made once and kept in the node's data directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn parse(text: &str) -> Result<NodeId, TopologyError> {
        if is_hex40(text) {
            Ok(NodeId(text.into()))
        } else {
            Err(TopologyError::InvalidNodeId(text.to_string()))
        }
    }

    /// A fresh random id, from 20 random bytes.
    pub fn from_random_bytes(bytes: [u8; 20]) -> NodeId {
        NodeId(hex40(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Another id made from this one and `salt`: each byte of this id XOR a FNV-1a stream of
    /// `salt`. Deterministic (no randomness, no std hasher whose output may change between Rust
    /// releases), and distinct ids give distinct results for one salt.
    pub fn derive(&self, salt: &str) -> NodeId {
        let mut stream = [0u8; 24];
        for (block, chunk) in stream.chunks_mut(8).enumerate() {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in salt.bytes().chain([block as u8]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            chunk.copy_from_slice(&hash.to_be_bytes());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            _ => c.wrapping_sub(b'a').wrapping_add(10) & 0x0f,
        };
        let mut bytes = [0u8; 20];
        for (i, pair) in self.0.as_bytes().chunks(2).take(20).enumerate() {
            let high = pair.first().copied().map_or(0, nibble);
            let low = pair.get(1).copied().map_or(0, nibble);
            bytes[i] = ((high << 4) | low) ^ stream[i];
        }
        NodeId::from_random_bytes(bytes)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cluster's id: 40 lowercase hex characters, made by a control plane that starts with no
/// state. The all-zero id names no cluster (a node that has not heard from a control plane yet).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterId(Arc<str>);

impl ClusterId {
    pub fn parse(text: &str) -> Result<ClusterId, TopologyError> {
        if is_hex40(text) {
            Ok(ClusterId(text.into()))
        } else {
            Err(TopologyError::InvalidClusterId(text.to_string()))
        }
    }

    pub fn from_random_bytes(bytes: [u8; 20]) -> ClusterId {
        ClusterId(hex40(bytes))
    }

    /// The id of no cluster.
    pub fn none() -> ClusterId {
        ClusterId::from_random_bytes([0; 20])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ClusterId {
    fn default() -> Self {
        ClusterId::none()
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

/// One member as the cluster should have it: where it is, its role, its epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub id: NodeId,
    /// Announced address: what clients and peers connect to (not the bind address).
    pub host: String,
    pub port: u16,
    /// The cluster bus port, where node-to-node traffic goes.
    pub bus_port: u16,
    pub role: Role,
    /// The master a replica follows; `None` for masters.
    pub master_id: Option<NodeId>,
    pub config_epoch: u64,
}

impl NodeSpec {
    /// A master at `host:port` with Redis's bus port (`port + 10000`, 0 if that overflows) and
    /// epoch 0.
    pub fn master(id: NodeId, host: &str, port: u16) -> NodeSpec {
        NodeSpec {
            id,
            host: host.to_string(),
            port,
            bus_port: port.checked_add(10_000).unwrap_or(0),
            role: Role::Master,
            master_id: None,
            config_epoch: 0,
        }
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:bus_port`: where this node takes node-to-node traffic.
    pub fn bus_address(&self) -> String {
        format!("{}:{}", self.host, self.bus_port)
    }
}

/// What was last observed of one node. Nothing here is decided by an operator: the control plane
/// derives it from heartbeats and peer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// Silent for longer than node-timeout (`fail?`).
    pub pfail: bool,
    /// A majority of masters agreed on pfail (`fail`).
    pub fail: bool,
    /// Unix ms of the last heartbeat the control plane got; 0 if never.
    pub last_heartbeat_ms: u64,
    /// Unix ms of the last heartbeat the control plane expected.
    pub ping_sent_ms: u64,
    pub key_count: u64,
    /// The topology version the node last reported holding.
    pub topology_version: u64,
    /// How much of its master's write stream the node has applied (a master's own offset).
    pub replication_offset: u64,
}

impl NodeStatus {
    /// The status of a node nothing is known of yet: healthy, never heard from.
    pub const UNKNOWN: NodeStatus = NodeStatus {
        pfail: false,
        fail: false,
        last_heartbeat_ms: 0,
        ping_sent_ms: 0,
        key_count: 0,
        topology_version: 0,
        replication_offset: 0,
    };

    /// `fail?` or `fail`.
    pub fn failing(&self) -> bool {
        self.pfail || self.fail
    }
}
