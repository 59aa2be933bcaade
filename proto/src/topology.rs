//! The cluster as every service sees it, in two parts kept apart: what the cluster should be
//! (`Intent`: nodes, roles, the master of each replica, slot owners, slots moving between two
//! masters, epochs, settings), decided by the control plane alone, and what was observed of it
//! (`Observation`: heartbeats, pfail/fail, key counts, replication offsets). A topology also names
//! the control-plane history it comes from (`Identity`), so that a node recognises a control
//! plane that lost its state instead of ignoring its lower versions forever.
//!
//! `Topology::route` is the one cluster-state rule that nodes and the proxy both apply; `render`
//! turns a topology into Redis's CLUSTER INFO / NODES / SLOTS / SHARDS replies. `pb` types cross
//! into these with `TryFrom` at the gRPC boundary (`wire`).

mod node;
pub mod render;
mod wire;

use crate::slot::SLOT_COUNT;

pub use node::{ClusterId, NodeId, NodeSpec, NodeStatus, Role};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("invalid node id {0:?}: want 40 lowercase hex characters")]
    InvalidNodeId(String),
    #[error("invalid cluster id {0:?}: want 40 lowercase hex characters")]
    InvalidClusterId(String),
    #[error("invalid slot range {start}-{end}")]
    InvalidSlotRange { start: u32, end: u32 },
    #[error("invalid slot {0}")]
    InvalidSlot(u32),
    #[error("slot {0} is moving twice")]
    DuplicateMigration(u16),
    #[error("slot {slot} moves from {source_id}, which does not own it")]
    MigrationNotFromOwner { slot: u16, source_id: String },
    #[error("slot range names unknown node {0}")]
    UnknownNode(String),
    #[error("node {0} appears twice")]
    DuplicateNode(String),
    #[error("invalid port {0}")]
    InvalidPort(u32),
    #[error("too many nodes: {0}")]
    TooManyNodes(usize),
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

/// One history of the control plane's state. A control plane that starts with no state begins a
/// new history: a fresh cluster id, and a generation above any a registering node reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub cluster_id: ClusterId,
    pub generation: u64,
}

/// Where a topology stands in the order receivers keep: by generation, then by version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp {
    pub identity: Identity,
    pub version: u64,
}

impl Stamp {
    /// Whether a topology stamped `self` replaces one stamped `held`: a newer generation always
    /// does (the control plane started a new history), within one generation a higher version.
    pub fn supersedes(&self, held: &Stamp) -> bool {
        order(&self.identity, self.version) > order(&held.identity, held.version)
    }
}

/// The order receivers keep topologies in: generation first, then version.
fn order(identity: &Identity, version: u64) -> (u64, u64) {
    (identity.generation, version)
}

/// A slot moving from its owner (`source`, Redis's MIGRATING) to `target` (IMPORTING); indexes
/// into `Intent::nodes`. The owner stays `source` until the move ends with one change of
/// ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMigration {
    pub slot: u16,
    pub source: u16,
    pub target: u16,
    /// Recorded by CLUSTER SETSLOT IMPORTING / MIGRATING: the client moves the keys (MIGRATE) and
    /// ends the move (SETSLOT NODE); the source's mover leaves it alone.
    pub by_client: bool,
}

/// A manual failover in progress (CLUSTER FAILOVER without FORCE). `master` takes no write from
/// the moment it holds a topology naming it here, and keeps reporting its replication offset; the
/// control plane promotes `replica` once the replica has reached that offset (one topology change
/// that also drops the handover), or withdraws the handover after its timeout, and `master` then
/// takes writes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub master: NodeId,
    pub replica: NodeId,
    /// Unix ms when the control plane started it (its clock).
    pub started_ms: u64,
}

/// What the cluster should be: decided by the control plane, persisted, changed only by its
/// operations (create, failover, slot moves, settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    /// Redis's cluster_current_epoch: the highest config epoch handed out.
    pub current_epoch: u64,
    /// False until the cluster has been created.
    pub created: bool,
    pub settings: Settings,
    pub nodes: Vec<NodeSpec>,
    /// For each of the 16384 slots, the index in `nodes` of its master.
    pub slots: Box<[Option<u16>]>,
    /// Slots moving between two masters, ascending by slot, at most one entry per slot.
    pub migrations: Vec<SlotMigration>,
    /// The manual failover in progress, if any: at most one at a time.
    pub handover: Option<Handover>,
}

impl Default for Intent {
    fn default() -> Self {
        Intent {
            current_epoch: 0,
            created: false,
            settings: Settings::default(),
            nodes: Vec::new(),
            slots: vec![None; usize::from(SLOT_COUNT)].into_boxed_slice(),
            migrations: Vec::new(),
            handover: None,
        }
    }
}

/// What was observed of the cluster: `nodes[i]` is the status of `Intent::nodes[i]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub nodes: Vec<NodeStatus>,
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
/// only with one whose stamp supersedes theirs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Topology {
    pub identity: Identity,
    /// Raised by every change within one identity.
    pub version: u64,
    pub intent: Intent,
    pub observed: Observation,
}

impl Topology {
    /// Where this topology stands in the order receivers keep.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            identity: self.identity.clone(),
            version: self.version,
        }
    }

    /// Whether this topology replaces `held` (see `Stamp::supersedes`).
    pub fn supersedes(&self, held: &Topology) -> bool {
        order(&self.identity, self.version) > order(&held.identity, held.version)
    }

    /// A created cluster of `nodes` whose slots are owned as `slots` says (indexes into `nodes`),
    /// at version 1 with `current_epoch` the number of nodes: the shape tests and tools start from.
    pub fn created(nodes: Vec<NodeSpec>, slots: Box<[Option<u16>]>) -> Topology {
        let mut topology = Topology {
            version: 1,
            intent: Intent {
                current_epoch: nodes.len() as u64,
                created: true,
                slots,
                ..Intent::default()
            },
            ..Topology::default()
        };
        for node in nodes {
            topology.push_node(node);
        }
        topology
    }

    /// Adds a node with an unknown status and returns its index: the one way to add a node, so
    /// that the intent and the observation stay aligned.
    pub fn push_node(&mut self, spec: NodeSpec) -> usize {
        self.intent.nodes.push(spec);
        self.observed
            .nodes
            .resize(self.intent.nodes.len(), NodeStatus::UNKNOWN);
        self.intent.nodes.len() - 1
    }

    /// The nodes as the cluster should have them.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.intent.nodes
    }

    pub fn settings(&self) -> Settings {
        self.intent.settings
    }

    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.intent.nodes.iter().position(|n| &n.id == id)
    }

    pub fn node(&self, id: &NodeId) -> Option<&NodeSpec> {
        self.intent.nodes.iter().find(|n| &n.id == id)
    }

    /// What was observed of the node at `index` (unknown when nothing was).
    pub fn status_at(&self, index: usize) -> &NodeStatus {
        self.observed
            .nodes
            .get(index)
            .unwrap_or(&NodeStatus::UNKNOWN)
    }

    /// What was observed of the node `id`.
    pub fn status(&self, id: &NodeId) -> &NodeStatus {
        self.index_of(id)
            .map_or(&NodeStatus::UNKNOWN, |index| self.status_at(index))
    }

    /// Each node with what was observed of it.
    pub fn members(&self) -> impl Iterator<Item = (&NodeSpec, &NodeStatus)> + '_ {
        self.intent
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| (node, self.status_at(index)))
    }

    /// The index in `nodes()` of the master assigned `slot`, if any.
    pub fn owner_index(&self, slot: u16) -> Option<usize> {
        let index = (*self.intent.slots.get(usize::from(slot))?)?;
        Some(usize::from(index)).filter(|&i| i < self.intent.nodes.len())
    }

    /// The master assigned `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&NodeSpec> {
        self.intent.nodes.get(self.owner_index(slot)?)
    }

    /// The lowest slot that has an owner, if any: where keyless commands that must reach some
    /// shard go.
    pub fn first_assigned_slot(&self) -> Option<u16> {
        self.intent
            .slots
            .iter()
            .position(Option::is_some)
            .map(|slot| slot as u16)
    }

    /// Whether `id` is the master of the manual failover in progress: it must take no write.
    pub fn is_handing_over(&self, id: &NodeId) -> bool {
        self.intent
            .handover
            .as_ref()
            .is_some_and(|h| &h.master == id)
    }

    /// The move `slot` is in, if any.
    pub fn migration(&self, slot: u16) -> Option<&SlotMigration> {
        let migrations = &self.intent.migrations;
        migrations
            .binary_search_by_key(&slot, |m| m.slot)
            .ok()
            .map(|i| &migrations[i])
    }

    /// The replicas of the node at `index`, as indexes.
    pub fn replicas_of(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let master = self.intent.nodes.get(index).map(|n| &n.id);
        self.intent
            .nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.role == Role::Replica && n.master_id.as_ref() == master)
            .map(|(i, _)| i)
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
        let slots = &self.intent.slots;
        let mut slot = 0usize;
        std::iter::from_fn(move || {
            let start = slot;
            let owner = *slots.get(start)?;
            while slots.get(slot) == Some(&owner) {
                slot += 1;
            }
            Some((start as u16, (slot - 1) as u16, owner))
        })
    }

    /// Whether the node at `index` is a FAIL master that one of its replicas is about to replace:
    /// it has a replica that is neither PFAIL nor FAIL, which the control plane promotes as soon
    /// as fencing allows (`control-plane`'s failover rules).
    pub fn is_being_replaced(&self, index: usize) -> bool {
        self.status_at(index).fail
            && self
                .replicas_of(index)
                .any(|r| !self.status_at(r).failing())
    }

    /// Slot counts and the cluster state, by Redis's rule: fail while any slot is unassigned or
    /// served by a FAIL master and require-full-coverage is on. Unlike Redis, a FAIL master with
    /// a healthy replica (`is_being_replaced`) does not fail the cluster: only its own slots
    /// answer `CLUSTERDOWN Hash slot not served` until its replica is promoted, so a failover
    /// never takes the other slots down (Redis answers CLUSTERDOWN for every slot meanwhile).
    ///
    /// With require-full-coverage off the state stays ok (as in Redis); the lost slots then fail
    /// one by one in `route`. A topology not yet created is never ok.
    pub fn health(&self) -> Health {
        let nodes = &self.intent.nodes;
        let mut health = Health {
            known_nodes: nodes.len() as u32,
            ..Health::default()
        };
        let mut serving = vec![false; nodes.len()];
        let replaced: Vec<bool> = (0..nodes.len())
            .map(|i| self.is_being_replaced(i))
            .collect();
        // FAIL slots that no replica is about to take over: these fail the cluster.
        let mut lost = 0u32;
        for owner in self.intent.slots.iter().flatten() {
            health.slots_assigned += 1;
            let index = usize::from(*owner);
            if index >= nodes.len() {
                health.slots_fail += 1;
                lost += 1;
                continue;
            }
            serving[index] = true;
            let status = self.status_at(index);
            if status.fail {
                health.slots_fail += 1;
                if !replaced[index] {
                    lost += 1;
                }
            } else if status.pfail {
                health.slots_pfail += 1;
            } else {
                health.slots_ok += 1;
            }
        }
        health.size = nodes
            .iter()
            .zip(&serving)
            .filter(|(node, &serves)| serves && node.role == Role::Master)
            .count() as u32;
        let covered = health.slots_assigned == u32::from(SLOT_COUNT) && lost == 0;
        health.ok = self.intent.created && (covered || !self.intent.settings.require_full_coverage);
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
    pub fn route(&self, slot: u16, access: Access) -> Result<&NodeSpec, ClusterDown> {
        self.route_in_state(self.is_ok(), slot, access)
    }

    /// `route` with the snapshot's `health()` computed once by the caller.
    pub fn route_with(
        &self,
        health: &Health,
        slot: u16,
        access: Access,
    ) -> Result<&NodeSpec, ClusterDown> {
        self.route_in_state(health.ok, slot, access)
    }

    fn route_in_state(
        &self,
        ok: bool,
        slot: u16,
        access: Access,
    ) -> Result<&NodeSpec, ClusterDown> {
        let index = self.owner_index(slot).ok_or(ClusterDown::Unbound)?;
        if !ok {
            if !self.intent.settings.allow_reads_when_down {
                return Err(ClusterDown::Down);
            }
            if access == Access::Write {
                return Err(ClusterDown::DownReadOnly);
            }
        }
        if self.status_at(index).fail {
            return Err(ClusterDown::Unbound);
        }
        Ok(&self.intent.nodes[index])
    }

    /// `health().ok`, computed without counting: what `route` needs on every command.
    pub fn is_ok(&self) -> bool {
        if !self.intent.created {
            return false;
        }
        if !self.intent.settings.require_full_coverage {
            return true;
        }
        let known = self.intent.nodes.len();
        // Branch-free count so the compiler vectorizes it: unassigned or dangling owners.
        let lost = self
            .intent
            .slots
            .iter()
            .filter(|owner| owner.is_none_or(|i| usize::from(i) >= known))
            .count();
        if lost > 0 {
            return false;
        }
        let failed = |i: usize| self.status_at(i).fail && !self.is_being_replaced(i);
        if !(0..known).any(failed) {
            return true;
        }
        !self
            .intent
            .slots
            .iter()
            .flatten()
            .any(|&i| failed(usize::from(i)))
    }

    /// The cluster as the proxy presents it to cluster-aware clients: one virtual master per
    /// master that serves slots, with that master's slot ranges, health and epoch, and one virtual
    /// replica per replica of such a master, all at the proxy's own `host:port`, so a cluster
    /// client keeps talking to the proxy (which routes every command to the masters) while tools
    /// that want the cluster's shape (`redis-benchmark --cluster`, `redis-cli --cluster check`)
    /// see it, replicas included.
    ///
    /// Each virtual node's id is derived from its node's id and the proxy's address
    /// (`NodeId::derive`): stable across proxy restarts, distinct per proxy address, and never the
    /// real node's id (which names another address). Virtual masters come in the order of their
    /// lowest slot, then the virtual replicas in the order of their masters; slot moves are not
    /// shown (the proxy follows them itself). A cluster with no served slot shows the proxy alone
    /// (`proxy_id`), serving nothing. Bus ports are `port + 10000` (0 if that overflows), as Redis
    /// derives them.
    pub fn as_proxy_view(&self, proxy_id: NodeId, host: &str, port: u16) -> Topology {
        let salt = format!("{host}:{port}");
        // Masters in the order of their lowest slot, and each one's index in the view.
        let mut order: Vec<u16> = Vec::new();
        let mut view_index: Vec<Option<u16>> = vec![None; self.intent.nodes.len()];
        for &owner in self.intent.slots.iter().flatten() {
            if let Some(entry @ None) = view_index.get_mut(usize::from(owner)) {
                *entry = Some(order.len() as u16);
                order.push(owner);
            }
        }
        let mut view = Topology {
            identity: self.identity.clone(),
            version: self.version,
            intent: Intent {
                current_epoch: self.intent.current_epoch,
                created: self.intent.created,
                settings: self.intent.settings,
                nodes: Vec::new(),
                slots: self
                    .intent
                    .slots
                    .iter()
                    .map(|owner| {
                        owner.and_then(|o| view_index.get(usize::from(o)).copied().flatten())
                    })
                    .collect(),
                migrations: Vec::new(),
                // Names real nodes; the proxy's clients need none of it.
                handover: None,
            },
            observed: Observation::default(),
        };
        let add = |view: &mut Topology, index: usize, master_id: Option<NodeId>| {
            let node = &self.intent.nodes[index];
            let added = view.push_node(NodeSpec {
                config_epoch: node.config_epoch,
                role: if master_id.is_some() {
                    Role::Replica
                } else {
                    Role::Master
                },
                master_id,
                ..NodeSpec::master(node.id.derive(&salt), host, port)
            });
            view.observed.nodes[added] = *self.status_at(index);
        };
        for &index in &order {
            add(&mut view, usize::from(index), None);
        }
        for &index in &order {
            let master_id = self.intent.nodes[usize::from(index)].id.derive(&salt);
            for replica in self.replicas_of(usize::from(index)) {
                add(&mut view, replica, Some(master_id.clone()));
            }
        }
        if view.intent.nodes.is_empty() {
            view.push_node(NodeSpec {
                config_epoch: self.intent.current_epoch,
                ..NodeSpec::master(proxy_id, host, port)
            });
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeSpec {
        NodeSpec {
            config_epoch: u64::from(n) + 1,
            ..NodeSpec::master(
                NodeId::from_random_bytes([n; 20]),
                "127.0.0.1",
                7000 + u16::from(n),
            )
        }
    }

    /// Three masters with redis-cli's split: 0-5460, 5461-10922, 10923-16383.
    pub(crate) fn three_masters() -> Topology {
        let mut t = Topology {
            version: 1,
            ..Topology::default()
        };
        t.intent.current_epoch = 3;
        t.intent.created = true;
        for n in 0..3 {
            t.push_node(node(n));
        }
        for (slot, owner) in t.intent.slots.iter_mut().enumerate() {
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
        t.intent.slots[100] = None;
        t.intent.slots[16383] = Some(0);
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
        t.observed.nodes[0].pfail = true;
        let h = t.health();
        assert!(h.ok);
        assert_eq!(
            (h.slots_ok, h.slots_pfail, h.slots_fail),
            (16384 - 5461, 5461, 0)
        );
        t.observed.nodes[0].fail = true;
        let h = t.health();
        assert!(!h.ok);
        assert_eq!(
            (h.slots_ok, h.slots_pfail, h.slots_fail),
            (16384 - 5461, 0, 5461)
        );
        t.intent.settings.require_full_coverage = false;
        assert!(t.health().ok);

        let mut t = three_masters();
        t.intent.slots[5] = None;
        let h = t.health();
        assert!(!h.ok);
        assert_eq!(h.slots_assigned, 16383);
        t.intent.created = false;
        t.intent.settings.require_full_coverage = false;
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
            t.intent.settings.require_full_coverage = full;
            t.intent.settings.allow_reads_when_down = reads;
            match state {
                State::Ok => {}
                State::Pfail => t.observed.nodes[0].pfail = true,
                State::Fail => {
                    t.observed.nodes[0].pfail = true;
                    t.observed.nodes[0].fail = true;
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
            |t| t.intent.slots[9] = None,
            |t| t.intent.slots[9] = Some(99),
            |t| t.observed.nodes[1].fail = true,
            |t| t.observed.nodes[1].pfail = true,
            |t| t.intent.created = false,
            |t| {
                t.observed.nodes[2].fail = true;
                t.intent.settings.require_full_coverage = false;
            },
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut t = three_masters();
            change(&mut t);
            assert_eq!(t.is_ok(), t.health().ok, "variant {i}");
        }
        // A FAIL node that owns nothing does not fail the cluster.
        let mut t = three_masters();
        t.push_node(node(3));
        t.observed.nodes[3].fail = true;
        assert!(t.is_ok() && t.health().ok);
    }

    #[test]
    fn a_failed_master_with_a_healthy_replica_does_not_fail_the_cluster() {
        use Access::{Read, Write};
        use ClusterDown::{Down, Unbound};
        // (replica's state: None = no replica, Some((pfail, fail))), slot, access, expected
        type Case = (Option<(bool, bool)>, u16, Access, Result<u16, ClusterDown>);
        let cases: &[Case] = &[
            (None, 6000, Write, Err(Down)),
            (None, 0, Read, Err(Down)),
            (Some((false, false)), 6000, Write, Ok(1)),
            (Some((false, false)), 12000, Read, Ok(2)),
            (Some((false, false)), 0, Write, Err(Unbound)),
            (Some((false, false)), 0, Read, Err(Unbound)),
            (Some((true, false)), 6000, Write, Err(Down)),
            (Some((true, true)), 6000, Write, Err(Down)),
        ];
        for (i, &(replica, slot, access, want)) in cases.iter().enumerate() {
            let mut t = three_masters();
            t.observed.nodes[0].pfail = true;
            t.observed.nodes[0].fail = true;
            if let Some((pfail, fail)) = replica {
                let r = t.push_node(NodeSpec {
                    role: Role::Replica,
                    master_id: Some(t.intent.nodes[0].id.clone()),
                    ..node(4)
                });
                t.observed.nodes[r].pfail = pfail;
                t.observed.nodes[r].fail = fail;
            }
            assert_eq!(
                t.route(slot, access).map(|n| n.port - 7000),
                want,
                "case {i}"
            );
            let health = t.health();
            assert_eq!(health.ok, t.is_ok(), "case {i}");
            assert_eq!(health.ok, replica == Some((false, false)), "case {i}");
            // CLUSTER INFO still counts the lost slots as failed.
            assert_eq!(health.slots_fail, 5461, "case {i}");
        }
        // A replica of a healthy master changes nothing.
        let mut t = three_masters();
        t.push_node(NodeSpec {
            role: Role::Replica,
            master_id: Some(t.intent.nodes[1].id.clone()),
            ..node(4)
        });
        assert!(!t.is_being_replaced(1));
        t.observed.nodes[0].fail = true;
        assert!(!t.is_ok());
    }

    #[test]
    fn unassigned_slot_is_unbound_even_when_down() {
        // Redis 7.0 checks for an unassigned slot before the cluster state.
        let mut t = three_masters();
        t.intent.slots[42] = None;
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
    fn proxy_view() {
        let mut t = three_masters();
        t.observed.nodes[1].key_count = 5;
        t.observed.nodes[2].fail = true;
        // node 2 also serves slot 0: the view orders masters by their lowest slot.
        t.intent.slots[0] = Some(2);
        t.push_node(node(9)); // serves nothing: not shown
        let proxy = NodeId::from_random_bytes([9; 20]);
        let view = t.as_proxy_view(proxy.clone(), "10.0.0.1", 6379);
        assert_eq!(view.intent.nodes.len(), 3);
        assert!(view.intent.nodes.iter().all(|n| n.host == "10.0.0.1"
            && n.port == 6379
            && n.bus_port == 16379
            && n.role == Role::Master
            && n.id != proxy));
        assert_eq!(
            view.intent.nodes[0].id,
            t.intent.nodes[2].id.derive("10.0.0.1:6379")
        );
        assert!(view.observed.nodes[0].fail, "health mirrored");
        assert_eq!(view.intent.nodes[0].config_epoch, 3);
        assert_eq!(view.observed.nodes[2].key_count, 5);
        assert_eq!(view.ranges_of(0), vec![(0, 0), (10923, 16383)]);
        assert_eq!(view.ranges_of(1), vec![(1, 5460)]);
        assert_eq!(view.ranges_of(2), vec![(5461, 10922)]);
        assert_eq!(view.health().slots_fail, t.health().slots_fail);
        assert_eq!(view.intent.current_epoch, 3);
        // Stable for one address, different for another.
        let again = t.as_proxy_view(NodeId::from_random_bytes([1; 20]), "10.0.0.1", 6379);
        assert_eq!(again.intent.nodes, view.intent.nodes);
        let other = t.as_proxy_view(proxy.clone(), "10.0.0.1", 6380);
        assert!(other
            .intent
            .nodes
            .iter()
            .zip(&view.intent.nodes)
            .all(|(a, b)| a.id != b.id));

        // Nothing served: the proxy alone, serving nothing.
        let empty = Topology::default().as_proxy_view(proxy.clone(), "h", 65000);
        assert_eq!(empty.intent.nodes.len(), 1);
        assert_eq!(empty.intent.nodes[0].id, proxy);
        assert_eq!(empty.intent.nodes[0].bus_port, 0);
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
    fn a_new_generation_supersedes_any_version() {
        let stamp = |generation: u64, version: u64| Stamp {
            identity: Identity {
                cluster_id: ClusterId::from_random_bytes([generation as u8; 20]),
                generation,
            },
            version,
        };
        assert!(stamp(1, 5).supersedes(&stamp(1, 4)));
        assert!(!stamp(1, 4).supersedes(&stamp(1, 4)));
        assert!(!stamp(1, 3).supersedes(&stamp(1, 4)));
        // A control plane that lost its state starts over at a low version, in a newer generation.
        assert!(stamp(2, 1).supersedes(&stamp(1, 900)));
        assert!(!stamp(1, 900).supersedes(&stamp(2, 1)));
        // Anything supersedes the default (no control plane heard yet).
        assert!(stamp(1, 1).supersedes(&Stamp::default()));
        let t = three_masters();
        assert_eq!(t.stamp().version, 1);
        assert!(t.supersedes(&Topology::default()));
    }

    #[test]
    fn status_stays_aligned_with_nodes() {
        let mut t = three_masters();
        assert_eq!(t.observed.nodes.len(), 3);
        let added = t.push_node(node(7));
        assert_eq!(added, 3);
        assert_eq!(t.status_at(3), &NodeStatus::UNKNOWN);
        t.observed.nodes.truncate(1);
        // A shorter observation reads as unknown, never panics.
        assert!(!t.status_at(2).fail);
        assert_eq!(t.members().count(), 4);
        assert!(t.health().ok);
    }

    #[test]
    fn migrations_and_replicas() {
        let mut t = three_masters();
        t.intent.migrations = vec![
            SlotMigration {
                slot: 5,
                source: 0,
                target: 1,
                by_client: false,
            },
            SlotMigration {
                slot: 6000,
                source: 1,
                target: 2,
                by_client: false,
            },
        ];
        assert_eq!(t.migration(5).map(|m| m.target), Some(1));
        assert_eq!(t.migration(6000).map(|m| m.source), Some(1));
        assert!(t.migration(6).is_none());
        // The owner stays the source while the slot moves.
        assert_eq!(t.owner_index(5), Some(0));

        let replica = t.push_node(NodeSpec {
            role: Role::Replica,
            master_id: Some(t.intent.nodes[1].id.clone()),
            ..node(4)
        });
        assert_eq!(t.replicas_of(1).collect::<Vec<_>>(), vec![replica]);
        assert_eq!(t.replicas_of(0).count(), 0);
        assert_eq!(
            t.health().size,
            3,
            "a replica is not counted in cluster_size"
        );
    }

    #[test]
    fn proxy_view_shows_replicas_after_their_masters() {
        let mut t = three_masters();
        let replica = t.push_node(NodeSpec {
            role: Role::Replica,
            master_id: Some(t.intent.nodes[1].id.clone()),
            ..node(4)
        });
        t.observed.nodes[replica].replication_offset = 9;
        // A replica of a master serving nothing is not shown, as its master is not.
        let idle = t.push_node(node(5));
        t.push_node(NodeSpec {
            role: Role::Replica,
            master_id: Some(t.intent.nodes[idle].id.clone()),
            ..node(6)
        });
        let view = t.as_proxy_view(NodeId::from_random_bytes([9; 20]), "10.0.0.1", 6379);
        assert_eq!(view.intent.nodes.len(), 4);
        let shown = &view.intent.nodes[3];
        assert_eq!(shown.role, Role::Replica);
        assert_eq!(shown.id, t.intent.nodes[replica].id.derive("10.0.0.1:6379"));
        assert_eq!(shown.master_id.as_ref(), Some(&view.intent.nodes[1].id));
        assert_eq!((shown.host.as_str(), shown.port), ("10.0.0.1", 6379));
        assert_eq!(view.observed.nodes[3].replication_offset, 9);
        assert_eq!(view.replicas_of(1).collect::<Vec<_>>(), vec![3]);
        assert!(view.ranges_of(3).is_empty());
        assert_eq!(view.health().size, 3);
    }
}
