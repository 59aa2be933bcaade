//! The control plane's domain state: the node registry (with each node's latest heartbeat and peer
//! report), the slot -> master map, epochs, settings and the topology version. Every method is a
//! plain, synchronous state transition with the clock passed in; locking, persistence and
//! publication live in `controller`.

use std::collections::HashMap;

use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{Node, NodeId, Role, Settings, Topology};

use crate::error::{Error, StoreError};
use crate::failure::{self, NodeView, PeerReport};
use crate::placement;
use crate::settings::SettingChange;
use crate::store::{PersistedNode, PersistedRange, PersistedSettings, PersistedState, FORMAT};

/// Whether a transition changed anything watchers see (then the version was bumped, and the state
/// must be saved and published).
pub type Changed = bool;

/// A registered node: what is persisted plus what its heartbeats last said.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub bus_port: u16,
    pub role: Role,
    pub master_id: Option<NodeId>,
    pub config_epoch: u64,
    pub pfail: bool,
    pub fail: bool,
    /// Unix ms of the last heartbeat or registration (reset to "now" at load).
    pub last_heartbeat_ms: u64,
    pub key_count: u64,
    /// The topology version the node last reported holding.
    pub topology_version: u64,
    pub report: Option<PeerReport>,
}

/// What a node says when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub bus_port: u16,
}

/// What a node says in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub id: NodeId,
    /// Each peer and whether the sender can reach it.
    pub peers: Vec<(NodeId, bool)>,
    pub key_count: u64,
    pub topology_version: u64,
}

/// The whole cluster as the control plane holds it.
#[derive(Debug, Clone)]
pub struct ClusterState {
    version: u64,
    current_epoch: u64,
    created: bool,
    settings: Settings,
    nodes: Vec<NodeRecord>,
    /// For each slot, the index in `nodes` of its master.
    slots: Box<[Option<u16>]>,
}

impl ClusterState {
    /// An empty cluster: no nodes, no slots, version 0.
    pub fn new(settings: Settings) -> ClusterState {
        ClusterState {
            version: 0,
            current_epoch: 0,
            created: false,
            settings,
            nodes: Vec::new(),
            slots: vec![None; usize::from(SLOT_COUNT)].into_boxed_slice(),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    pub fn nodes(&self) -> &[NodeRecord] {
        &self.nodes
    }

    pub fn is_created(&self) -> bool {
        self.created
    }

    fn bump(&mut self) -> Changed {
        self.version += 1;
        true
    }

    fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| &n.id == id)
    }

    /// A node announces itself: a new id joins as a master without slots; a known id keeps its
    /// slots and takes the (possibly new) address.
    ///
    /// Registration keeps a PFAIL/FAIL flag: only the node's first heartbeat clears it. The node
    /// learns its slots from this call's answer and heartbeats only after taking it, so clients
    /// routed to it by the healed topology never reach a node that does not know it serves them
    /// yet (it would answer `CLUSTERDOWN Hash slot not served`).
    pub fn register(&mut self, reg: Registration, now_ms: u64) -> Changed {
        match self.index_of(&reg.id) {
            Some(i) => {
                let node = &mut self.nodes[i];
                let changed =
                    node.host != reg.host || node.port != reg.port || node.bus_port != reg.bus_port;
                node.host = reg.host;
                node.port = reg.port;
                node.bus_port = reg.bus_port;
                node.last_heartbeat_ms = now_ms;
                changed && self.bump()
            }
            None => {
                self.forget_slotless_at(&reg.host, reg.port);
                self.nodes.push(NodeRecord {
                    id: reg.id,
                    host: reg.host,
                    port: reg.port,
                    bus_port: reg.bus_port,
                    role: Role::Master,
                    master_id: None,
                    config_epoch: 0,
                    pfail: false,
                    fail: false,
                    last_heartbeat_ms: now_ms,
                    key_count: 0,
                    topology_version: 0,
                    report: None,
                });
                self.bump()
            }
        }
    }

    /// Forgets nodes announced at `host:port` that own no slots: a new id there means the old
    /// process is gone for good (its data directory was wiped), and keeping it would leave a
    /// phantom that `CreateCluster` could match. A node that owns slots is kept: its slots
    /// need an operator's decision.
    fn forget_slotless_at(&mut self, host: &str, port: u16) {
        let owners = self.slot_owners();
        while let Some(stale) = self
            .nodes
            .iter()
            .enumerate()
            .position(|(i, n)| n.host == host && n.port == port && !owners.contains(&i))
        {
            let gone = self.nodes.remove(stale);
            tracing::info!(node = %gone.id, address = %format_args!("{host}:{port}"), "forgot a slotless node replaced by a new id");
            for owner in self.slots.iter_mut().flatten() {
                if usize::from(*owner) > stale {
                    *owner -= 1;
                }
            }
            for node in &mut self.nodes {
                if node.master_id.as_ref() == Some(&gone.id) {
                    node.master_id = None;
                }
            }
        }
    }

    /// Records a heartbeat. Clearing a PFAIL/FAIL flag is a change watchers see; the timestamp,
    /// key count and peer report are not (they reach the snapshot at the next version bump).
    pub fn heartbeat(&mut self, beat: Beat, now_ms: u64) -> Result<Changed, Error> {
        let i = self
            .index_of(&beat.id)
            .ok_or_else(|| Error::UnknownNode(beat.id.to_string()))?;
        let node = &mut self.nodes[i];
        let was_flagged = node.pfail || node.fail;
        node.pfail = false;
        node.fail = false;
        node.last_heartbeat_ms = now_ms;
        node.key_count = beat.key_count;
        node.topology_version = beat.topology_version;
        node.report = Some(PeerReport {
            received_ms: now_ms,
            unreachable: beat
                .peers
                .into_iter()
                .filter(|(_, reachable)| !reachable)
                .map(|(id, _)| id)
                .collect(),
        });
        Ok(was_flagged && self.bump())
    }

    /// Runs the failure detector at `now_ms` and applies its verdict.
    pub fn detect_failures(&mut self, now_ms: u64) -> Changed {
        let owning = self.slot_owners();
        let views: Vec<NodeView> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeView {
                id: n.id.clone(),
                voter: n.role == Role::Master && (!self.created || owning.contains(&i)),
                last_heartbeat_ms: n.last_heartbeat_ms,
                pfail: n.pfail,
                fail: n.fail,
                report: n.report.clone(),
            })
            .collect();
        let verdict = failure::evaluate(&views, now_ms, self.settings.node_timeout_ms);
        let mut changed = false;
        for (node, flags) in self.nodes.iter_mut().zip(verdict) {
            if node.pfail != flags.pfail || node.fail != flags.fail {
                if flags.fail && !node.fail {
                    tracing::warn!(node = %node.id, address = %format_args!("{}:{}", node.host, node.port), "node marked FAIL");
                } else if flags.pfail && !node.pfail {
                    tracing::info!(node = %node.id, "node marked PFAIL");
                }
                node.pfail = flags.pfail;
                node.fail = flags.fail;
                changed = true;
            }
        }
        changed && self.bump()
    }

    /// Indexes of nodes that own at least one slot.
    fn slot_owners(&self) -> std::collections::HashSet<usize> {
        self.slots
            .iter()
            .flatten()
            .map(|&i| usize::from(i))
            .collect()
    }

    /// Checks what `CreateCluster` checks before looking at addresses, in redis-cli's order.
    pub fn check_create(&self, addresses: usize, replicas: u32) -> Result<(), Error> {
        if self.created {
            return Err(Error::AlreadyCreated);
        }
        let masters = addresses / (replicas as usize + 1);
        if masters < 3 {
            return Err(Error::TooFewMasters {
                nodes: addresses,
                replicas,
                needed: 3 * (replicas as usize + 1),
            });
        }
        if replicas > 0 {
            return Err(Error::ReplicasUnsupported);
        }
        Ok(())
    }

    /// Assigns the slots over `masters` (in order) as redis-cli does, with config epochs 1..=n.
    /// `dry_run` leaves `self` untouched and returns the planned topology.
    pub fn create(
        &mut self,
        masters: &[NodeId],
        dry_run: bool,
        now_ms: u64,
    ) -> Result<(Topology, Changed), Error> {
        self.check_create(masters.len(), 0)?;
        let mut indexes = Vec::with_capacity(masters.len());
        for id in masters {
            let i = self
                .index_of(id)
                .ok_or_else(|| Error::UnknownNode(id.to_string()))?;
            if indexes.contains(&i) {
                return Err(Error::DuplicateAddress(format!(
                    "{}:{}",
                    self.nodes[i].host, self.nodes[i].port
                )));
            }
            indexes.push(i);
        }
        let mut next = self.clone();
        for (epoch, (&i, (first, last))) in
            (1u64..).zip(indexes.iter().zip(placement::split_slots(indexes.len())))
        {
            let index = u16::try_from(i).map_err(|_| Error::UnknownNode(masters[0].to_string()))?;
            for slot in first..=last {
                next.slots[usize::from(slot)] = Some(index);
            }
            next.nodes[i].config_epoch = epoch;
            next.nodes[i].role = Role::Master;
            next.current_epoch = next.current_epoch.max(epoch);
        }
        next.created = true;
        next.bump();
        let topology = next.snapshot(now_ms);
        if !dry_run {
            *self = next;
        }
        Ok((topology, !dry_run))
    }

    /// Applies a validated settings change.
    pub fn set_setting(&mut self, change: SettingChange) -> Changed {
        let next = change.apply(self.settings);
        if next == self.settings {
            return false;
        }
        self.settings = next;
        self.bump()
    }

    /// The topology as services see it, with heartbeat-derived fields as of now.
    pub fn snapshot(&self, _now_ms: u64) -> Topology {
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node {
                id: n.id.clone(),
                host: n.host.clone(),
                port: n.port,
                bus_port: n.bus_port,
                role: n.role,
                master_id: n.master_id.clone(),
                config_epoch: n.config_epoch,
                pfail: n.pfail,
                fail: n.fail,
                last_heartbeat_ms: n.last_heartbeat_ms,
                // A ping is "outstanding" only for a node we are waiting on.
                ping_sent_ms: if n.pfail || n.fail {
                    n.last_heartbeat_ms
                } else {
                    0
                },
                key_count: n.key_count,
            })
            .collect();
        Topology {
            version: self.version,
            current_epoch: self.current_epoch,
            nodes,
            slots: self.slots.clone(),
            settings: self.settings,
            created: self.created,
        }
    }

    /// The topology version each node last reported holding, by node id.
    pub fn reported_versions(&self) -> HashMap<String, u64> {
        self.nodes
            .iter()
            .map(|n| (n.id.to_string(), n.topology_version))
            .collect()
    }

    /// The persisted form.
    pub fn to_persisted(&self) -> PersistedState {
        let mut slots = Vec::new();
        let mut slot = 0usize;
        while slot < self.slots.len() {
            let Some(owner) = self.slots[slot] else {
                slot += 1;
                continue;
            };
            let start = slot;
            while slot + 1 < self.slots.len() && self.slots[slot + 1] == Some(owner) {
                slot += 1;
            }
            if let Some(node) = self.nodes.get(usize::from(owner)) {
                slots.push(PersistedRange {
                    start: start as u16,
                    end: slot as u16,
                    node_id: node.id.to_string(),
                });
            }
            slot += 1;
        }
        PersistedState {
            format: FORMAT,
            version: self.version,
            current_epoch: self.current_epoch,
            created: self.created,
            settings: PersistedSettings {
                require_full_coverage: self.settings.require_full_coverage,
                allow_reads_when_down: self.settings.allow_reads_when_down,
                node_timeout_ms: self.settings.node_timeout_ms,
            },
            nodes: self
                .nodes
                .iter()
                .map(|n| PersistedNode {
                    id: n.id.to_string(),
                    host: n.host.clone(),
                    port: n.port,
                    bus_port: n.bus_port,
                    role: match n.role {
                        Role::Master => "master".into(),
                        Role::Replica => "replica".into(),
                    },
                    master_id: n.master_id.as_ref().map(|id| id.to_string()),
                    config_epoch: n.config_epoch,
                    pfail: n.pfail,
                    fail: n.fail,
                })
                .collect(),
            slots,
        }
    }

    /// Rebuilds the state from its persisted form. Every node's last heartbeat is set to `now_ms`,
    /// so a control-plane restart does not fail every node at once; flags are kept until the node
    /// speaks.
    pub fn from_persisted(p: PersistedState, now_ms: u64) -> Result<ClusterState, StoreError> {
        let bad = |what: String| StoreError::Inconsistent(what);
        if p.format != FORMAT {
            return Err(bad(format!("unknown format {}", p.format)));
        }
        let mut state = ClusterState::new(Settings {
            require_full_coverage: p.settings.require_full_coverage,
            allow_reads_when_down: p.settings.allow_reads_when_down,
            node_timeout_ms: p.settings.node_timeout_ms,
        });
        state.version = p.version;
        state.current_epoch = p.current_epoch;
        state.created = p.created;
        for n in p.nodes {
            let id = NodeId::parse(&n.id).map_err(|e| bad(e.to_string()))?;
            let master_id = n
                .master_id
                .as_deref()
                .map(NodeId::parse)
                .transpose()
                .map_err(|e| bad(e.to_string()))?;
            let role = match n.role.as_str() {
                "master" => Role::Master,
                "replica" => Role::Replica,
                other => return Err(bad(format!("unknown role {other:?}"))),
            };
            if state.index_of(&id).is_some() {
                return Err(bad(format!("node {id} listed twice")));
            }
            state.nodes.push(NodeRecord {
                id,
                host: n.host,
                port: n.port,
                bus_port: n.bus_port,
                role,
                master_id,
                config_epoch: n.config_epoch,
                pfail: n.pfail,
                fail: n.fail,
                last_heartbeat_ms: now_ms,
                key_count: 0,
                topology_version: 0,
                report: None,
            });
        }
        for range in p.slots {
            if range.start > range.end || range.end >= SLOT_COUNT {
                return Err(bad(format!("slot range {}-{}", range.start, range.end)));
            }
            let owner = NodeId::parse(&range.node_id)
                .ok()
                .and_then(|id| state.index_of(&id))
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| bad(format!("slot range names unknown node {}", range.node_id)))?;
            for slot in range.start..=range.end {
                state.slots[usize::from(slot)] = Some(owner);
            }
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_random_bytes([n; 20])
    }

    fn reg(n: u8, port: u16) -> Registration {
        Registration {
            id: id(n),
            host: "127.0.0.1".into(),
            port,
            bus_port: port + 10000,
        }
    }

    fn three() -> ClusterState {
        let mut state = ClusterState::new(Settings {
            node_timeout_ms: 1_000,
            ..Settings::default()
        });
        for n in 1..=3 {
            assert!(state.register(reg(n, 7000 + u16::from(n) - 1), 0));
        }
        state
    }

    #[test]
    fn register_new_then_known() {
        let mut state = three();
        assert_eq!(state.version(), 3);
        assert!(!state.register(reg(1, 7000), 10), "same address: no change");
        assert!(state.register(reg(1, 7100), 20), "new address");
        assert_eq!(state.nodes()[0].port, 7100);
        assert_eq!(state.version(), 4);
    }

    #[test]
    fn a_new_id_at_a_slotless_address_replaces_the_old_one() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], false, 0)
            .expect("create");
        assert!(state.register(reg(4, 7003), 0));
        assert!(state.register(reg(5, 7003), 0), "new id at 7003");
        assert_eq!(state.nodes().len(), 4);
        assert_eq!(state.nodes()[3].id, id(5));
        // A node owning slots is never forgotten.
        assert!(state.register(reg(6, 7000), 0));
        assert_eq!(state.nodes().len(), 5);
        let snapshot = state.snapshot(0);
        assert_eq!(snapshot.owner(0).map(|n| n.id.clone()), Some(id(1)));
        assert_eq!(snapshot.owner(16383).map(|n| n.id.clone()), Some(id(3)));
    }

    #[test]
    fn forgetting_reindexes_the_slot_map() {
        let mut state = ClusterState::new(Settings::default());
        assert!(state.register(reg(9, 6999), 0));
        for n in 1..=3 {
            assert!(state.register(reg(n, 7000 + u16::from(n) - 1), 0));
        }
        state
            .create(&[id(1), id(2), id(3)], false, 0)
            .expect("create");
        assert!(
            state.register(reg(8, 6999), 0),
            "replaces node 9 at index 0"
        );
        let snapshot = state.snapshot(0);
        assert_eq!(snapshot.owner(0).map(|n| n.id.clone()), Some(id(1)));
        assert_eq!(snapshot.owner(5461).map(|n| n.id.clone()), Some(id(2)));
        assert_eq!(snapshot.owner(16383).map(|n| n.id.clone()), Some(id(3)));
        assert_eq!(snapshot.nodes.last().map(|n| n.id.clone()), Some(id(8)));
    }

    #[test]
    fn create_assigns_like_redis_cli_and_dry_run_changes_nothing() {
        let mut state = three();
        let ids = [id(1), id(2), id(3)];
        let (plan, changed) = state.create(&ids, true, 0).expect("dry run");
        assert!(!changed);
        assert!(!state.is_created());
        assert_eq!(plan.owner(5460).map(|n| n.id.clone()), Some(id(1)));
        let (applied, changed) = state.create(&ids, false, 0).expect("create");
        assert!(changed);
        assert_eq!(applied.current_epoch, 3);
        assert_eq!(applied.owner(0).map(|n| n.config_epoch), Some(1));
        assert_eq!(applied.owner(5461).map(|n| n.id.clone()), Some(id(2)));
        assert_eq!(applied.owner(16383).map(|n| n.id.clone()), Some(id(3)));
        assert!(matches!(
            state.create(&ids, false, 0),
            Err(Error::AlreadyCreated)
        ));
    }

    #[test]
    fn create_checks() {
        let state = three();
        let err = state.check_create(2, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Redis Cluster requires at least 3 master nodes. This is not possible with 2 nodes and 0 replicas per node. At least 3 nodes are required."
        );
        assert!(matches!(
            state.check_create(6, 1),
            Err(Error::ReplicasUnsupported)
        ));
        let mut state = three();
        assert!(matches!(
            state.create(&[id(1), id(1), id(2)], false, 0),
            Err(Error::DuplicateAddress(_))
        ));
    }

    #[test]
    fn heartbeat_unknown_and_clearing_flags() {
        let mut state = three();
        let beat = |n| Beat {
            id: id(n),
            peers: vec![],
            key_count: 5,
            topology_version: 1,
        };
        assert!(matches!(
            state.heartbeat(beat(9), 0),
            Err(Error::UnknownNode(_))
        ));
        assert!(!state.heartbeat(beat(1), 10).expect("beat"));
        assert!(state.detect_failures(5_000), "everybody silent");
        assert!(state.nodes().iter().all(|n| n.pfail));
        let before = state.version();
        assert!(
            !state.register(reg(1, 7000), 5_001),
            "a registration keeps the flags"
        );
        assert!(state.nodes()[0].pfail);
        assert_eq!(state.version(), before);
        assert!(state.heartbeat(beat(1), 5_002).expect("beat"));
        assert!(!state.nodes()[0].pfail && !state.nodes()[0].fail);
        assert_eq!(state.version(), before + 1);
    }

    #[test]
    fn persisted_round_trip_keeps_what_matters() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], false, 0)
            .expect("create");
        state.set_setting(SettingChange::RequireFullCoverage(false));
        let persisted = state.to_persisted();
        assert_eq!(persisted.slots.len(), 3);
        let loaded = ClusterState::from_persisted(persisted.clone(), 99).expect("load");
        assert_eq!(loaded.to_persisted(), persisted);
        assert!(loaded.nodes().iter().all(|n| n.last_heartbeat_ms == 99));
        assert_eq!(loaded.snapshot(99).slots, state.snapshot(0).slots);
    }
}
