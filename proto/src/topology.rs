//! The cluster as every service sees it: nodes, the slot -> master map, epochs, settings, and the one
//! cluster-state rule (`Topology::route`) that nodes and the proxy both apply. `render` turns a
//! topology into Redis's CLUSTER INFO / NODES / SLOTS / SHARDS replies.
//!
//! These are the domain types; `pb` types cross into them with `TryFrom` at the gRPC boundary.

pub mod render;

use std::fmt;
use std::sync::Arc;

use crate::pb;
use crate::slot::SLOT_COUNT;

/// A node's id: 40 lowercase hex characters, made once and kept in the node's data directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("invalid node id {0:?}: want 40 lowercase hex characters")]
    InvalidNodeId(String),
    #[error("invalid slot range {start}-{end}")]
    InvalidSlotRange { start: u32, end: u32 },
    #[error("slot range names unknown node {0}")]
    UnknownNode(String),
    #[error("invalid port {0}")]
    InvalidPort(u32),
}

impl NodeId {
    pub fn parse(text: &str) -> Result<NodeId, TopologyError> {
        if text.len() == 40 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(NodeId(text.into()))
        } else {
            Err(TopologyError::InvalidNodeId(text.to_string()))
        }
    }

    /// A fresh random id, from 20 random bytes.
    pub fn from_random_bytes(bytes: [u8; 20]) -> NodeId {
        use std::fmt::Write;
        let mut text = String::with_capacity(40);
        for b in bytes {
            let _ = write!(text, "{b:02x}");
        }
        NodeId(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

/// One member of the cluster, as the control plane last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    /// Announced address: what clients and peers connect to (not the bind address).
    pub host: String,
    pub port: u16,
    pub bus_port: u16,
    pub role: Role,
    pub master_id: Option<NodeId>,
    pub config_epoch: u64,
    /// Silent for longer than node-timeout (`fail?`).
    pub pfail: bool,
    /// A majority of masters agreed on pfail (`fail`).
    pub fail: bool,
    /// Unix ms of the last heartbeat the control plane got; 0 if never.
    pub last_heartbeat_ms: u64,
    pub ping_sent_ms: u64,
    pub key_count: u64,
}

impl Node {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Cluster settings changeable at runtime (`clusterctl set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub require_full_coverage: bool,
    pub allow_reads_when_down: bool,
    pub node_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            require_full_coverage: true,
            allow_reads_when_down: false,
            node_timeout_ms: 15_000,
        }
    }
}

/// Whether a command only reads or may write; `allow-reads-when-down` lets reads through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a slot cannot be served now; `message` is Redis's error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterDown {
    /// The cluster is in state fail.
    Down,
    /// The cluster is in state fail and allow-reads-when-down is on, but this is a write.
    DownReadOnly,
    /// The slot has no serving master (unassigned, or its master is FAIL).
    Unbound,
}

impl ClusterDown {
    /// The error reply text, prefix included.
    pub fn message(self) -> &'static str {
        match self {
            ClusterDown::Down => "CLUSTERDOWN The cluster is down",
            ClusterDown::DownReadOnly => {
                "CLUSTERDOWN The cluster is down and only accepts read commands"
            }
            ClusterDown::Unbound => "CLUSTERDOWN Hash slot not served",
        }
    }
}

/// Counts CLUSTER INFO reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    pub ok: bool,
    pub slots_assigned: u32,
    pub slots_ok: u32,
    pub slots_pfail: u32,
    pub slots_fail: u32,
    pub known_nodes: u32,
    /// Masters serving at least one slot.
    pub size: u32,
}

/// A versioned snapshot of the whole cluster. Services hold it as `Arc<Topology>` and replace it
/// only with a higher `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Raised by every change; receivers take only newer versions.
    pub version: u64,
    /// Redis's cluster_current_epoch.
    pub current_epoch: u64,
    pub nodes: Vec<Node>,
    /// For each of the 16384 slots, the index in `nodes` of its master.
    pub slots: Box<[Option<u16>]>,
    pub settings: Settings,
    /// False until the cluster has been created.
    pub created: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            version: 0,
            current_epoch: 0,
            nodes: Vec::new(),
            slots: vec![None; SLOT_COUNT as usize].into_boxed_slice(),
            settings: Settings::default(),
            created: false,
        }
    }
}

impl Topology {
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// The master assigned `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        let index = (*self.slots.get(slot as usize)?)?;
        self.nodes.get(index as usize)
    }

    /// The inclusive slot ranges served by the node at `index`, ascending.
    pub fn ranges_of(&self, index: usize) -> Vec<(u16, u16)> {
        let _ = index;
        todo!("implemented in the proto work")
    }

    /// Slot counts and the cluster state, by Redis's rule: fail while any slot is unassigned or
    /// served by a FAIL master and require-full-coverage is on.
    pub fn health(&self) -> Health {
        todo!("implemented in the proto work")
    }

    /// The one cluster-state rule: who serves `slot` for an access of this kind, or why nobody
    /// does. Nodes and the proxy both call this, so they answer alike.
    pub fn route(&self, slot: u16, access: Access) -> Result<&Node, ClusterDown> {
        let _ = (slot, access);
        todo!("implemented in the proto work")
    }

    /// A view of this cluster as one node at `host:port` serving every slot: what the proxy shows
    /// cluster-aware clients in CLUSTER SLOTS / NODES / SHARDS so they keep talking to it.
    pub fn as_single_node(&self, id: NodeId, host: &str, port: u16) -> Topology {
        let _ = (id, host, port);
        todo!("implemented in the proto work")
    }
}

impl TryFrom<pb::Topology> for Topology {
    type Error = TopologyError;

    fn try_from(value: pb::Topology) -> Result<Self, Self::Error> {
        let _ = value;
        todo!("implemented in the proto work")
    }
}

impl From<&Topology> for pb::Topology {
    fn from(value: &Topology) -> Self {
        let _ = value;
        todo!("implemented in the proto work")
    }
}

impl From<pb::Settings> for Settings {
    fn from(value: pb::Settings) -> Self {
        Settings {
            require_full_coverage: value.require_full_coverage,
            allow_reads_when_down: value.allow_reads_when_down,
            node_timeout_ms: value.node_timeout_ms,
        }
    }
}

impl From<Settings> for pb::Settings {
    fn from(value: Settings) -> Self {
        pb::Settings {
            require_full_coverage: value.require_full_coverage,
            allow_reads_when_down: value.allow_reads_when_down,
            node_timeout_ms: value.node_timeout_ms,
        }
    }
}
