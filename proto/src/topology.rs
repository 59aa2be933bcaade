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
    #[error("too many nodes: {0}")]
    TooManyNodes(usize),
}

impl NodeId {
    pub fn parse(text: &str) -> Result<NodeId, TopologyError> {
        if text.len() == 40
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
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
        self.runs()
            .filter(|&(_, _, owner)| owner.map(usize::from) == Some(index))
            .map(|(start, end, _)| (start, end))
            .collect()
    }

    /// Maximal runs of consecutive slots with the same owner: `(first, last, owner index)`.
    pub fn runs(&self) -> impl Iterator<Item = (u16, u16, Option<u16>)> + '_ {
        let mut slot = 0usize;
        std::iter::from_fn(move || {
            let start = slot;
            let owner = *self.slots.get(start)?;
            while self.slots.get(slot) == Some(&owner) {
                slot += 1;
            }
            Some((start as u16, (slot - 1) as u16, owner))
        })
    }

    /// Slot counts and the cluster state, by Redis's rule: fail while any slot is unassigned or
    /// served by a FAIL master and require-full-coverage is on.
    ///
    /// With require-full-coverage off the state stays ok (as in Redis); the lost slots then fail
    /// one by one in `route`. A topology not yet created is never ok.
    pub fn health(&self) -> Health {
        let mut health = Health {
            known_nodes: self.nodes.len() as u32,
            ..Health::default()
        };
        let mut serving = vec![false; self.nodes.len()];
        for owner in self.slots.iter().flatten() {
            health.slots_assigned += 1;
            let Some(node) = self.nodes.get(usize::from(*owner)) else {
                health.slots_fail += 1;
                continue;
            };
            serving[usize::from(*owner)] = true;
            if node.fail {
                health.slots_fail += 1;
            } else if node.pfail {
                health.slots_pfail += 1;
            } else {
                health.slots_ok += 1;
            }
        }
        health.size = self
            .nodes
            .iter()
            .zip(&serving)
            .filter(|(node, &serves)| serves && node.role == Role::Master)
            .count() as u32;
        let covered = health.slots_assigned == u32::from(SLOT_COUNT) && health.slots_fail == 0;
        health.ok = self.created && (covered || !self.settings.require_full_coverage);
        health
    }

    /// The one cluster-state rule: who serves `slot` for an access of this kind, or why nobody
    /// does. Nodes and the proxy both call this, so they answer alike.
    ///
    /// Order of the checks, as Redis 7.0's `getNodeByQuery` (verified against redis-server 7.0.15):
    /// a slot nobody was ever assigned answers `Hash slot not served` even while the cluster is
    /// down; then a down cluster refuses everything (or only writes, with allow-reads-when-down);
    /// then a slot whose master is FAIL is not served (reached only with require-full-coverage off
    /// or reads allowed when down).
    ///
    /// Costs one vectorizable pass over the slot map (`is_ok`); a caller that keeps `health()` per
    /// snapshot can call `route_with` and skip it.
    pub fn route(&self, slot: u16, access: Access) -> Result<&Node, ClusterDown> {
        self.route_in_state(self.is_ok(), slot, access)
    }

    /// `route` with the snapshot's `health()` computed once by the caller.
    pub fn route_with(
        &self,
        health: &Health,
        slot: u16,
        access: Access,
    ) -> Result<&Node, ClusterDown> {
        self.route_in_state(health.ok, slot, access)
    }

    fn route_in_state(&self, ok: bool, slot: u16, access: Access) -> Result<&Node, ClusterDown> {
        let owner = self.owner(slot).ok_or(ClusterDown::Unbound)?;
        if !ok {
            if !self.settings.allow_reads_when_down {
                return Err(ClusterDown::Down);
            }
            if access == Access::Write {
                return Err(ClusterDown::DownReadOnly);
            }
        }
        if owner.fail {
            return Err(ClusterDown::Unbound);
        }
        Ok(owner)
    }

    /// `health().ok`, computed without counting: what `route` needs on every command.
    pub fn is_ok(&self) -> bool {
        if !self.created {
            return false;
        }
        if !self.settings.require_full_coverage {
            return true;
        }
        let known = self.nodes.len();
        // Branch-free count so the compiler vectorizes it: unassigned or dangling owners.
        let lost = self
            .slots
            .iter()
            .filter(|owner| owner.is_none_or(|i| usize::from(i) >= known))
            .count();
        if lost > 0 {
            return false;
        }
        if !self.nodes.iter().any(|n| n.fail) {
            return true;
        }
        !self
            .slots
            .iter()
            .flatten()
            .any(|&i| self.nodes[usize::from(i)].fail)
    }

    /// The cluster as the proxy presents it to cluster-aware clients: one virtual master per
    /// master that serves slots, with that master's slot ranges, health and epoch, but at the
    /// proxy's own `host:port`, so a cluster client keeps talking to the proxy while tools that
    /// want several masters (`redis-benchmark --cluster`) see the real cluster's shape.
    ///
    /// Each virtual master's id is derived from its master's id and the proxy's address
    /// (`NodeId::derive`): stable across proxy restarts, distinct per proxy address, and never the
    /// real node's id (which names another address). Virtual masters come in the order of their
    /// lowest slot; replicas are not shown (the proxy sends everything to masters). A cluster with
    /// no served slot shows the proxy alone (`proxy_id`), serving nothing. Bus ports are `port +
    /// 10000` (0 if that overflows), as Redis derives them.
    pub fn as_virtual_masters(&self, proxy_id: NodeId, host: &str, port: u16) -> Topology {
        let salt = format!("{host}:{port}");
        let bus_port = port.checked_add(10_000).unwrap_or(0);
        // Masters in the order of their lowest slot, and each one's index in the view.
        let mut order: Vec<u16> = Vec::new();
        let mut view_index: Vec<Option<u16>> = vec![None; self.nodes.len()];
        for &owner in self.slots.iter().flatten() {
            if let Some(entry @ None) = view_index.get_mut(usize::from(owner)) {
                *entry = Some(order.len() as u16);
                order.push(owner);
            }
        }
        let mut nodes: Vec<Node> = order
            .iter()
            .map(|&index| {
                let master = &self.nodes[usize::from(index)];
                Node {
                    id: master.id.derive(&salt),
                    host: host.to_string(),
                    port,
                    bus_port,
                    role: Role::Master,
                    master_id: None,
                    ..master.clone()
                }
            })
            .collect();
        let slots = self
            .slots
            .iter()
            .map(|owner| owner.and_then(|o| view_index.get(usize::from(o)).copied().flatten()))
            .collect();
        if nodes.is_empty() {
            nodes.push(Node {
                id: proxy_id,
                host: host.to_string(),
                port,
                bus_port,
                role: Role::Master,
                master_id: None,
                config_epoch: self.current_epoch,
                pfail: false,
                fail: false,
                last_heartbeat_ms: 0,
                ping_sent_ms: 0,
                key_count: 0,
            });
        }
        Topology {
            version: self.version,
            current_epoch: self.current_epoch,
            nodes,
            slots,
            settings: self.settings,
            created: self.created,
        }
    }
}

impl TryFrom<pb::Topology> for Topology {
    type Error = TopologyError;

    fn try_from(value: pb::Topology) -> Result<Self, Self::Error> {
        let nodes = value
            .nodes
            .into_iter()
            .map(Node::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.len() > usize::from(u16::MAX) {
            return Err(TopologyError::TooManyNodes(nodes.len()));
        }
        let mut slots = vec![None; SLOT_COUNT as usize].into_boxed_slice();
        for range in value.slots {
            if range.start > range.end || range.end >= u32::from(SLOT_COUNT) {
                return Err(TopologyError::InvalidSlotRange {
                    start: range.start,
                    end: range.end,
                });
            }
            let index = nodes
                .iter()
                .position(|n| n.id.as_str() == range.node_id)
                .ok_or_else(|| TopologyError::UnknownNode(range.node_id.clone()))?;
            for slot in &mut slots[range.start as usize..=range.end as usize] {
                *slot = Some(index as u16);
            }
        }
        Ok(Topology {
            version: value.version,
            current_epoch: value.current_epoch,
            nodes,
            slots,
            settings: value.settings.map(Settings::from).unwrap_or_default(),
            created: value.created,
        })
    }
}

impl TryFrom<pb::Node> for Node {
    type Error = TopologyError;

    fn try_from(value: pb::Node) -> Result<Self, Self::Error> {
        let port = |p: u32| u16::try_from(p).map_err(|_| TopologyError::InvalidPort(p));
        let role = if value.role == pb::NodeRole::Replica as i32 {
            Role::Replica
        } else {
            Role::Master
        };
        let master_id = match value.master_id.as_str() {
            "" => None,
            id => Some(NodeId::parse(id)?),
        };
        Ok(Node {
            id: NodeId::parse(&value.id)?,
            host: value.host,
            port: port(value.port)?,
            bus_port: port(value.bus_port)?,
            role,
            master_id,
            config_epoch: value.config_epoch,
            pfail: value.pfail,
            fail: value.fail,
            last_heartbeat_ms: value.last_heartbeat_ms,
            ping_sent_ms: value.ping_sent_ms,
            key_count: value.key_count,
        })
    }
}

impl From<&Node> for pb::Node {
    /// `topology_version` is left 0: only the control plane knows what each node reported.
    fn from(node: &Node) -> Self {
        pb::Node {
            id: node.id.to_string(),
            host: node.host.clone(),
            port: u32::from(node.port),
            bus_port: u32::from(node.bus_port),
            role: match node.role {
                Role::Master => pb::NodeRole::Master as i32,
                Role::Replica => pb::NodeRole::Replica as i32,
            },
            master_id: node
                .master_id
                .as_ref()
                .map(NodeId::to_string)
                .unwrap_or_default(),
            config_epoch: node.config_epoch,
            pfail: node.pfail,
            fail: node.fail,
            last_heartbeat_ms: node.last_heartbeat_ms,
            ping_sent_ms: node.ping_sent_ms,
            key_count: node.key_count,
            topology_version: 0,
        }
    }
}

impl From<&Topology> for pb::Topology {
    fn from(value: &Topology) -> Self {
        let slots = value
            .runs()
            .filter_map(|(start, end, owner)| {
                let node = value.nodes.get(usize::from(owner?))?;
                Some(pb::SlotRange {
                    start: u32::from(start),
                    end: u32::from(end),
                    node_id: node.id.to_string(),
                })
            })
            .collect();
        pb::Topology {
            version: value.version,
            current_epoch: value.current_epoch,
            nodes: value.nodes.iter().map(pb::Node::from).collect(),
            slots,
            settings: Some(value.settings.into()),
            created: value.created,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> Node {
        Node {
            id: NodeId::from_random_bytes([n; 20]),
            host: "127.0.0.1".into(),
            port: 7000 + u16::from(n),
            bus_port: 17000 + u16::from(n),
            role: Role::Master,
            master_id: None,
            config_epoch: u64::from(n) + 1,
            pfail: false,
            fail: false,
            last_heartbeat_ms: 0,
            ping_sent_ms: 0,
            key_count: 0,
        }
    }

    /// Three masters with redis-cli's split: 0-5460, 5461-10922, 10923-16383.
    pub(crate) fn three_masters() -> Topology {
        let mut t = Topology {
            version: 1,
            current_epoch: 3,
            nodes: (0..3).map(node).collect(),
            created: true,
            ..Topology::default()
        };
        for (slot, owner) in t.slots.iter_mut().enumerate() {
            *owner = Some(match slot {
                0..=5460 => 0,
                5461..=10922 => 1,
                _ => 2,
            });
        }
        t
    }

    #[test]
    fn ranges_and_runs() {
        let mut t = three_masters();
        assert_eq!(t.ranges_of(0), vec![(0, 5460)]);
        assert_eq!(t.ranges_of(2), vec![(10923, 16383)]);
        t.slots[100] = None;
        t.slots[16383] = Some(0);
        assert_eq!(t.ranges_of(0), vec![(0, 99), (101, 5460), (16383, 16383)]);
        assert_eq!(t.runs().count(), 6);
        assert!(t.ranges_of(7).is_empty());
    }

    #[test]
    fn health_counts() {
        let mut t = three_masters();
        let h = t.health();
        assert_eq!(
            h,
            Health {
                ok: true,
                slots_assigned: 16384,
                slots_ok: 16384,
                slots_pfail: 0,
                slots_fail: 0,
                known_nodes: 3,
                size: 3,
            }
        );
        t.nodes[0].pfail = true;
        let h = t.health();
        assert!(h.ok);
        assert_eq!(
            (h.slots_ok, h.slots_pfail, h.slots_fail),
            (16384 - 5461, 5461, 0)
        );
        t.nodes[0].fail = true;
        let h = t.health();
        assert!(!h.ok);
        assert_eq!(
            (h.slots_ok, h.slots_pfail, h.slots_fail),
            (16384 - 5461, 0, 5461)
        );
        t.settings.require_full_coverage = false;
        assert!(t.health().ok);

        let mut t = three_masters();
        t.slots[5] = None;
        let h = t.health();
        assert!(!h.ok);
        assert_eq!(h.slots_assigned, 16383);
        t.created = false;
        t.settings.require_full_coverage = false;
        assert!(!t.health().ok);

        let empty = Topology::default();
        assert_eq!(empty.health().size, 0);
        assert!(!empty.health().ok);
    }

    #[test]
    fn route_table() {
        use Access::{Read, Write};
        use ClusterDown::{Down, DownReadOnly, Unbound};
        // (require_full_coverage, allow_reads_when_down, node 0 state, slot, access, expected)
        #[derive(Clone, Copy)]
        enum State {
            Ok,
            Pfail,
            Fail,
        }
        type Case = (bool, bool, State, u16, Access, Result<usize, ClusterDown>);
        let cases: &[Case] = &[
            (true, false, State::Ok, 0, Read, Ok(0)),
            (true, false, State::Ok, 6000, Write, Ok(1)),
            (true, false, State::Pfail, 0, Write, Ok(0)),
            (true, false, State::Fail, 0, Read, Err(Down)),
            (true, false, State::Fail, 6000, Read, Err(Down)),
            (true, false, State::Fail, 6000, Write, Err(Down)),
            (true, true, State::Fail, 6000, Read, Ok(1)),
            (true, true, State::Fail, 6000, Write, Err(DownReadOnly)),
            (true, true, State::Fail, 0, Read, Err(Unbound)),
            (true, true, State::Fail, 0, Write, Err(DownReadOnly)),
            (false, false, State::Fail, 0, Read, Err(Unbound)),
            (false, false, State::Fail, 0, Write, Err(Unbound)),
            (false, false, State::Fail, 6000, Write, Ok(1)),
            (false, true, State::Fail, 6000, Write, Ok(1)),
            (false, true, State::Fail, 0, Read, Err(Unbound)),
            (false, false, State::Pfail, 0, Write, Ok(0)),
        ];
        for (i, &(full, reads, state, slot, access, want)) in cases.iter().enumerate() {
            let mut t = three_masters();
            t.settings.require_full_coverage = full;
            t.settings.allow_reads_when_down = reads;
            match state {
                State::Ok => {}
                State::Pfail => t.nodes[0].pfail = true,
                State::Fail => {
                    t.nodes[0].pfail = true;
                    t.nodes[0].fail = true;
                }
            }
            let got = t.route(slot, access).map(|n| n.port - 7000);
            assert_eq!(got, want.map(|i| i as u16), "case {i}");
            let health = t.health();
            assert_eq!(
                t.route_with(&health, slot, access).map(|n| n.port - 7000),
                got
            );
        }
    }

    #[test]
    fn is_ok_agrees_with_health() {
        let variants: [fn(&mut Topology); 7] = [
            |_| {},
            |t| t.slots[9] = None,
            |t| t.slots[9] = Some(99),
            |t| t.nodes[1].fail = true,
            |t| t.nodes[1].pfail = true,
            |t| t.created = false,
            |t| {
                t.nodes[2].fail = true;
                t.settings.require_full_coverage = false;
            },
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut t = three_masters();
            change(&mut t);
            assert_eq!(t.is_ok(), t.health().ok, "variant {i}");
        }
        // A FAIL node that owns nothing does not fail the cluster.
        let mut t = three_masters();
        t.nodes.push(node(3));
        t.nodes[3].fail = true;
        assert!(t.is_ok() && t.health().ok);
    }

    #[test]
    fn unassigned_slot_is_unbound_even_when_down() {
        // Redis 7.0 checks for an unassigned slot before the cluster state.
        let mut t = three_masters();
        t.slots[42] = None;
        assert_eq!(
            t.route(42, Access::Read).map(|n| n.port),
            Err(ClusterDown::Unbound)
        );
        assert_eq!(
            t.route(43, Access::Read).map(|n| n.port),
            Err(ClusterDown::Down)
        );
        let fresh = Topology::default();
        assert_eq!(
            fresh.route(0, Access::Write).map(|n| n.port),
            Err(ClusterDown::Unbound)
        );
    }

    #[test]
    fn messages_are_redis_texts() {
        assert_eq!(
            ClusterDown::Down.message(),
            "CLUSTERDOWN The cluster is down"
        );
        assert_eq!(
            ClusterDown::Unbound.message(),
            "CLUSTERDOWN Hash slot not served"
        );
        assert_eq!(
            ClusterDown::DownReadOnly.message(),
            "CLUSTERDOWN The cluster is down and only accepts read commands"
        );
    }

    #[test]
    fn virtual_masters_view() {
        let mut t = three_masters();
        t.nodes[1].key_count = 5;
        t.nodes[2].fail = true;
        // node 2 also serves slot 0: the view orders masters by their lowest slot.
        t.slots[0] = Some(2);
        t.nodes.push(node(9)); // serves nothing: not shown
        let proxy = NodeId::from_random_bytes([9; 20]);
        let view = t.as_virtual_masters(proxy.clone(), "10.0.0.1", 6379);
        assert_eq!(view.nodes.len(), 3);
        assert!(view.nodes.iter().all(|n| n.host == "10.0.0.1"
            && n.port == 6379
            && n.bus_port == 16379
            && n.role == Role::Master
            && n.id != proxy));
        assert_eq!(view.nodes[0].id, t.nodes[2].id.derive("10.0.0.1:6379"));
        assert!(view.nodes[0].fail, "health mirrored");
        assert_eq!(view.nodes[0].config_epoch, 3);
        assert_eq!(view.nodes[2].key_count, 5);
        assert_eq!(view.ranges_of(0), vec![(0, 0), (10923, 16383)]);
        assert_eq!(view.ranges_of(1), vec![(1, 5460)]);
        assert_eq!(view.ranges_of(2), vec![(5461, 10922)]);
        assert_eq!(view.health().slots_fail, t.health().slots_fail);
        assert_eq!(view.current_epoch, 3);
        // Stable for one address, different for another.
        let again = t.as_virtual_masters(NodeId::from_random_bytes([1; 20]), "10.0.0.1", 6379);
        assert_eq!(again.nodes, view.nodes);
        let other = t.as_virtual_masters(proxy.clone(), "10.0.0.1", 6380);
        assert!(other
            .nodes
            .iter()
            .zip(&view.nodes)
            .all(|(a, b)| a.id != b.id));

        // Nothing served: the proxy alone, serving nothing.
        let empty = Topology::default().as_virtual_masters(proxy.clone(), "h", 65000);
        assert_eq!(empty.nodes.len(), 1);
        assert_eq!(empty.nodes[0].id, proxy);
        assert_eq!(empty.nodes[0].bus_port, 0);
        assert!(empty.ranges_of(0).is_empty());
    }

    #[test]
    fn derived_ids_are_valid_and_distinct() {
        let salt = "127.0.0.1:6379";
        let ids: Vec<NodeId> = (0..=255u8)
            .map(|b| NodeId::from_random_bytes([b; 20]))
            .collect();
        let derived: Vec<NodeId> = ids.iter().map(|id| id.derive(salt)).collect();
        for id in &derived {
            assert_eq!(NodeId::parse(id.as_str()).as_ref(), Ok(id));
        }
        let unique: std::collections::HashSet<_> = derived.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().zip(&derived).all(|(a, b)| a != b));
        assert_eq!(ids[7].derive(salt), ids[7].derive(salt));
    }

    #[test]
    fn pb_round_trip() {
        let mut t = three_masters();
        t.nodes[1].role = Role::Replica;
        t.nodes[1].master_id = Some(t.nodes[0].id.clone());
        t.nodes[2].pfail = true;
        t.slots[7] = None;
        t.settings.allow_reads_when_down = true;
        let wire = pb::Topology::from(&t);
        assert_eq!(wire.slots.len(), 4);
        assert_eq!(Topology::try_from(wire).unwrap(), t);
    }

    #[test]
    fn pb_errors() {
        let good = pb::Topology::from(&three_masters());
        let mut bad = good.clone();
        bad.slots[0].end = 16384;
        assert!(matches!(
            Topology::try_from(bad),
            Err(TopologyError::InvalidSlotRange { .. })
        ));
        let mut bad = good.clone();
        bad.slots[0].node_id = "f".repeat(40);
        assert!(matches!(
            Topology::try_from(bad),
            Err(TopologyError::UnknownNode(_))
        ));
        let mut bad = good.clone();
        bad.nodes[0].port = 70000;
        assert_eq!(
            Topology::try_from(bad),
            Err(TopologyError::InvalidPort(70000))
        );
        let mut bad = good.clone();
        bad.nodes[0].id = "XYZ".into();
        assert!(matches!(
            Topology::try_from(bad),
            Err(TopologyError::InvalidNodeId(_))
        ));
        let mut missing = good;
        missing.settings = None;
        assert_eq!(
            Topology::try_from(missing).unwrap().settings,
            Settings::default()
        );
    }
}
