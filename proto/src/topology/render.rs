//! Redis's renderings of a topology: CLUSTER INFO, NODES, SLOTS and SHARDS, byte for byte as
//! redis-server 7.0 prints them, so cluster-aware clients parse ours unchanged.

use crate::resp::Frame;

use super::{NodeId, Topology};

/// Message counters CLUSTER INFO reports; the caller counts them.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageStats {
    pub ping_sent: u64,
    pub pong_sent: u64,
    pub ping_received: u64,
    pub pong_received: u64,
}

/// CLUSTER INFO text (lines ending in `\r\n`), as seen by `myself` (for cluster_my_epoch; `None`
/// reports 0).
pub fn cluster_info(topology: &Topology, myself: Option<&NodeId>, stats: &MessageStats) -> String {
    let _ = (topology, myself, stats);
    todo!("implemented in the proto work")
}

/// CLUSTER NODES text (lines ending in `\n`), with `myself` flagged; `now_ms` is the Unix time in
/// ms used for the pong-received column.
pub fn cluster_nodes(topology: &Topology, myself: Option<&NodeId>, now_ms: u64) -> String {
    let _ = (topology, myself, now_ms);
    todo!("implemented in the proto work")
}

/// CLUSTER SLOTS reply.
pub fn cluster_slots(topology: &Topology) -> Frame {
    let _ = topology;
    todo!("implemented in the proto work")
}

/// CLUSTER SHARDS reply.
pub fn cluster_shards(topology: &Topology) -> Frame {
    let _ = topology;
    todo!("implemented in the proto work")
}
