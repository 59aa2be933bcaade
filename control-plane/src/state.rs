//! The control plane's domain state, kept as the topology is: what the cluster should be
//! (`Intent`: nodes, roles, slot owners, slot moves, epochs, settings) apart from what was observed
//! of each node (`NodeObservation`: heartbeat times, flags, key counts, offsets, peer reports),
//! plus the identity of this state's history and its version. Every method is a plain, synchronous
//! state transition with the clock passed in; locking, persistence and publication live in
//! `controller`.

use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{
    ClusterId, Handover, Identity, Intent, NodeId, NodeSpec, NodeStatus, Observation, Role,
    Settings, SlotMigration, Stamp, Topology,
};

use crate::error::FailoverRefused;
use crate::error::{Error, StoreError};
use crate::failover::{self, Lease};
use crate::failure::{self, NodeView, PeerReport, Probe, Streak};
use crate::placement;
use crate::settings::SettingChange;
use crate::store::{
    PersistedHandover, PersistedMigration, PersistedNode, PersistedRange, PersistedSettings,
    PersistedState, FORMAT,
};

/// Whether a transition changed anything watchers see (then the version was bumped, and the state
/// must be saved and published).
pub type Changed = bool;

/// What the control plane observed of one node; `status` is what watchers see of it.
#[derive(Debug, Clone, Default)]
pub struct NodeObservation {
    pub status: NodeStatus,
    /// The node's latest report about its peers, for the failure detector only.
    pub report: Option<PeerReport>,
    /// When the node's write lease was last granted (or the node registered, or this control
    /// plane started): the origin of the fencing wait (`failover`).
    pub lease_granted_ms: u64,
    /// The control plane's latest connect probe of the node.
    pub probe: Option<Probe>,
    /// The failure detector's latest verdict that the node's process is gone.
    pub gone: bool,
    /// The run of heartbeats of a FAIL node that is returning.
    pub streak: Option<Streak>,
    /// What the node may write on its own as of the latest version (`Authority`).
    authority: Authority,
    /// The version that last took some of that authority away: the node's lease is renewed only
    /// while it holds this version or a newer one.
    fenced_version: u64,
}

/// What a master may write on its own: its role (and master), the slots it serves that are not
/// moving away, and the node-timeout its lease is measured by. A lease is renewed only for a node
/// that holds every change that took some of this away; changes that only add to it (slots given
/// to it, a slot it drained going to its target, other nodes' changes) need not reach it first,
/// which is what lets leases be renewed while slot moves publish many versions a second.
#[derive(Debug, Clone, Default, PartialEq)]
struct Authority {
    role: Option<Role>,
    master: Option<NodeId>,
    node_timeout_ms: u64,
    /// One bit per slot.
    slots: Vec<u64>,
}

impl Authority {
    /// Whether `self` lacks something `before` had.
    fn lost_any_of(&self, before: &Authority) -> bool {
        self.role != before.role
            || self.master != before.master
            || self.node_timeout_ms != before.node_timeout_ms
            || before
                .slots
                .iter()
                .enumerate()
                .any(|(i, &had)| had & !self.slots.get(i).copied().unwrap_or(0) != 0)
    }
}

impl NodeObservation {
    /// A node first heard of (or reloaded) at `now_ms`: counted as heard and as granted a lease
    /// then, the conservative assumption.
    fn heard_at(status: NodeStatus, now_ms: u64) -> NodeObservation {
        NodeObservation {
            status: NodeStatus {
                last_heartbeat_ms: now_ms,
                ..status
            },
            report: None,
            lease_granted_ms: now_ms,
            probe: None,
            gone: false,
            streak: None,
            authority: Authority::default(),
            fenced_version: 0,
        }
    }
}

/// How a failover was asked for (the Failover RPC's mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// CLUSTER FAILOVER: a handover with a healthy master.
    Default,
    /// CLUSTER FAILOVER FORCE.
    Force,
    /// CLUSTER FAILOVER TAKEOVER: as FORCE; fencing is never skipped.
    Takeover,
}

/// What a node says when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub bus_port: u16,
    /// The topology the node holds.
    pub holds: Stamp,
}

/// What a node says in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub id: NodeId,
    /// Each peer and whether the sender can reach it.
    pub peers: Vec<(NodeId, bool)>,
    /// The peers whose port refused the sender's last connection attempt.
    pub refused: Vec<NodeId>,
    pub key_count: u64,
    /// The topology the node holds.
    pub holds: Stamp,
    pub replication_offset: u64,
    /// Slots the node was moving away whose keys are all on their target now.
    pub drained_slots: Vec<u16>,
}

/// The whole cluster as the control plane holds it.
#[derive(Debug, Clone)]
pub struct ClusterState {
    identity: Identity,
    version: u64,
    intent: Intent,
    /// `observed[i]` is of `intent.nodes[i]`.
    observed: Vec<NodeObservation>,
    /// The version that first published `intent.handover`: the master has stopped writes once
    /// it reports holding this version or a newer one.
    handover_version: u64,
    /// Pending FORCE/TAKEOVER requests: the replica's id and when it was asked. Not persisted: a
    /// control plane that restarts has failed the RPC that asked.
    forced: Vec<(NodeId, u64)>,
    /// Ids removed with `del-node`: a process still running under one of them must not come
    /// back as a member by registering again.
    removed: Vec<NodeId>,
}

impl ClusterState {
    /// An empty cluster of a new history: no nodes, no slots, version 0.
    pub fn new(settings: Settings, identity: Identity) -> ClusterState {
        ClusterState {
            identity,
            version: 0,
            intent: Intent {
                settings,
                ..Intent::default()
            },
            observed: Vec::new(),
            handover_version: 0,
            removed: Vec::new(),
            forced: Vec::new(),
        }
    }

    /// A new history's identity: a random cluster id, and the time as the generation, so that a
    /// control plane that lost its state starts above what it had (and `register` raises it past
    /// anything a node reports).
    pub fn fresh_identity(now_ms: u64) -> Identity {
        Identity {
            cluster_id: ClusterId::from_random_bytes(rand::random()),
            generation: now_ms.max(1),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Where the current topology stands in the order receivers keep.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            identity: self.identity.clone(),
            version: self.version,
        }
    }

    pub fn settings(&self) -> Settings {
        self.intent.settings
    }

    pub fn nodes(&self) -> &[NodeSpec] {
        &self.intent.nodes
    }

    /// What was observed of the node at `index`.
    pub fn observed(&self, index: usize) -> &NodeStatus {
        self.observed
            .get(index)
            .map_or(&NodeStatus::UNKNOWN, |o| &o.status)
    }

    pub fn is_created(&self) -> bool {
        self.intent.created
    }

    fn bump(&mut self) -> Changed {
        self.version += 1;
        self.fence(false);
        true
    }

    /// Records each node's authority as of this version; a node that lost some of it (or every
    /// node, with `all`) must hold this version before its lease is renewed again.
    fn fence(&mut self, all: bool) {
        let words = usize::from(SLOT_COUNT).div_ceil(64);
        let mut now: Vec<Authority> = self
            .intent
            .nodes
            .iter()
            .map(|n| Authority {
                role: Some(n.role),
                master: n.master_id.clone(),
                node_timeout_ms: self.intent.settings.node_timeout_ms,
                slots: vec![0; words],
            })
            .collect();
        for (slot, owner) in self.intent.slots.iter().enumerate() {
            if let Some(authority) = owner.and_then(|o| now.get_mut(usize::from(o))) {
                authority.slots[slot / 64] |= 1 << (slot % 64);
            }
        }
        for m in &self.intent.migrations {
            if let Some(authority) = now.get_mut(usize::from(m.source)) {
                let slot = usize::from(m.slot);
                authority.slots[slot / 64] &= !(1 << (slot % 64));
            }
        }
        for (observation, authority) in self.observed.iter_mut().zip(now) {
            if all || authority.lost_any_of(&observation.authority) {
                observation.fenced_version = self.version;
            }
            observation.authority = authority;
        }
    }

    fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.intent.nodes.iter().position(|n| &n.id == id)
    }

    /// A node announces itself: a new id joins as a master without slots; a known id keeps its
    /// slots and takes the (possibly new) address.
    ///
    /// A node that holds a topology of a generation not below this state's has followed another
    /// history of the control plane (this one lost its state, or never had it): this state then
    /// moves to a generation above the node's, so the node takes its topologies instead of
    /// ignoring their lower versions forever.
    ///
    /// Registration keeps a PFAIL/FAIL flag: only the node's first heartbeat clears it. The node
    /// learns its slots from this call's answer and heartbeats only after taking it, so clients
    /// routed to it by the healed topology never reach a node that does not know it serves them
    /// yet (it would answer `CLUSTERDOWN Hash slot not served`).
    pub fn register(&mut self, reg: Registration, now_ms: u64) -> Changed {
        let mut changed = false;
        if reg.holds.identity.generation >= self.identity.generation
            && reg.holds.identity.cluster_id != self.identity.cluster_id
        {
            tracing::warn!(
                node = %reg.id,
                node_cluster = %reg.holds.identity.cluster_id,
                node_generation = reg.holds.identity.generation,
                cluster = %self.identity.cluster_id,
                "a node follows a newer control-plane history than this state's; moving past it"
            );
            self.identity.generation = reg.holds.identity.generation + 1;
            changed = true;
        }
        match self.index_of(&reg.id) {
            Some(i) => {
                let node = &mut self.intent.nodes[i];
                let moved =
                    node.host != reg.host || node.port != reg.port || node.bus_port != reg.bus_port;
                node.host = reg.host;
                node.port = reg.port;
                node.bus_port = reg.bus_port;
                let observed = &mut self.observed[i];
                observed.status.last_heartbeat_ms = now_ms;
                // The node may count its lease from a registration: so do we (it also ends any
                // "process gone" verdict, which a live process disproves).
                observed.lease_granted_ms = now_ms;
                observed.gone = false;
                observed.probe = None;
                changed |= moved;
            }
            None => {
                self.forget_slotless_at(&reg.host, reg.port);
                self.intent.nodes.push(NodeSpec {
                    bus_port: reg.bus_port,
                    ..NodeSpec::master(reg.id, &reg.host, reg.port)
                });
                self.observed
                    .push(NodeObservation::heard_at(NodeStatus::UNKNOWN, now_ms));
                changed = true;
            }
        }
        changed && self.bump()
    }

    /// Forgets nodes announced at `host:port` that own no slots: a new id there means the old
    /// process is gone for good (its data directory was wiped), and keeping it would leave a
    /// phantom that `CreateCluster` could match. A node that owns slots is kept: its slots
    /// need an operator's decision.
    fn forget_slotless_at(&mut self, host: &str, port: u16) {
        let owners = self.slot_owners();
        while let Some(stale) = self
            .intent
            .nodes
            .iter()
            .enumerate()
            .position(|(i, n)| n.host == host && n.port == port && !owners.contains(&i))
        {
            let gone = self.remove_node(stale);
            tracing::info!(node = %gone.id, address = %format_args!("{host}:{port}"), "forgot a slotless node replaced by a new id");
        }
    }

    /// Removes the node at `index`, which owns no slot, shifting the indexes that follow it.
    fn remove_node(&mut self, index: usize) -> NodeSpec {
        let gone = self.intent.nodes.remove(index);
        self.observed.remove(index);
        let shift = |i: &mut u16| {
            if usize::from(*i) > index {
                *i -= 1;
            }
        };
        self.intent.slots.iter_mut().flatten().for_each(shift);
        for migration in &mut self.intent.migrations {
            shift(&mut migration.source);
            shift(&mut migration.target);
        }
        // Replicas of a forgotten master have nothing to follow: they become empty masters.
        for node in &mut self.intent.nodes {
            if node.master_id.as_ref() == Some(&gone.id) {
                node.master_id = None;
                node.role = Role::Master;
            }
        }
        gone
    }

    /// Removes a node from the cluster, as `redis-cli --cluster del-node` does: refused while it
    /// serves slots, takes part in a slot's move, or has replicas. Its id may not register again.
    pub fn remove(&mut self, id: &NodeId) -> Result<Changed, Error> {
        let i = self
            .index_of(id)
            .ok_or_else(|| Error::UnknownNode(id.to_string()))?;
        let busy = self.slot_owners().contains(&i)
            || self
                .intent
                .migrations
                .iter()
                .any(|m| usize::from(m.source) == i || usize::from(m.target) == i);
        if busy {
            return Err(Error::NodeNotEmpty(self.intent.nodes[i].address()));
        }
        let has_replicas = self
            .intent
            .nodes
            .iter()
            .any(|n| n.role == Role::Replica && n.master_id.as_ref() == Some(id));
        if has_replicas {
            return Err(Error::HasReplicas(id.to_string()));
        }
        let gone = self.remove_node(i);
        self.removed.push(gone.id);
        Ok(self.bump())
    }

    /// Whether `id` was removed with `remove`.
    pub fn is_removed(&self, id: &NodeId) -> bool {
        self.removed.contains(id)
    }

    /// Records a heartbeat. Clearing a PFAIL/FAIL flag is a change watchers see; the timestamp,
    /// key count, offset and peer report are not (they reach the snapshot at the next version
    /// bump). A heartbeat clears PFAIL at once, FAIL only when it completes a stable return
    /// (`failure::stable_return`).
    pub fn heartbeat(&mut self, beat: Beat, now_ms: u64) -> Result<Changed, Error> {
        let node_timeout_ms = self.intent.settings.node_timeout_ms;
        let i = self
            .index_of(&beat.id)
            .ok_or_else(|| Error::UnknownNode(beat.id.to_string()))?;
        // A version is comparable only within this state's history.
        let held_version = if beat.holds.identity == self.identity {
            beat.holds.version
        } else {
            0
        };
        let observation = &mut self.observed[i];
        let status = &mut observation.status;
        let was_flagged = status.failing();
        if status.fail {
            let streak = failure::extend_streak(observation.streak, now_ms, node_timeout_ms);
            if failure::stable_return(&streak, node_timeout_ms) {
                status.pfail = false;
                status.fail = false;
                observation.streak = None;
            } else {
                observation.streak = Some(streak);
            }
        } else {
            status.pfail = false;
        }
        let cleared = was_flagged && !status.failing();
        observation.gone = false;
        status.last_heartbeat_ms = now_ms;
        status.key_count = beat.key_count;
        status.topology_version = held_version;
        // A replica that starts or stops having applied its master's stream changes what
        // CLUSTER SHARDS shows of it (`loading` / `online`): publish that; other offset moves ride
        // along with the next change.
        let loading_changed = self.intent.nodes[i].role == Role::Replica
            && (status.replication_offset == 0) != (beat.replication_offset == 0);
        status.replication_offset = beat.replication_offset;
        observation.report = Some(PeerReport {
            received_ms: now_ms,
            unreachable: beat
                .peers
                .into_iter()
                .filter(|(_, reachable)| !reachable)
                .map(|(id, _)| id)
                .collect(),
            refused: beat.refused,
        });
        let moved = self.finish_moves(i, &beat.drained_slots);
        Ok((cleared || loading_changed || moved) && self.bump())
    }

    /// Gives each slot the node at `source` reports drained to the target of its move, and drops
    /// the move: the ownership flips in this one topology change (Redis's CLUSTER SETSLOT NODE,
    /// with the target's epoch raised as Redis's clusterBumpConfigEpochWithoutConsensus does, so
    /// its claim wins everywhere). Returns whether anything changed.
    fn finish_moves(&mut self, source: usize, drained: &[u16]) -> bool {
        let intent = &mut self.intent;
        let mut raised: Vec<u16> = Vec::new();
        intent.migrations.retain(|m| {
            // A client's move (CLUSTER SETSLOT) ends with its SETSLOT NODE, not a report.
            let done = !m.by_client && usize::from(m.source) == source && drained.contains(&m.slot);
            if done {
                intent.slots[usize::from(m.slot)] = Some(m.target);
                if !raised.contains(&m.target) {
                    raised.push(m.target);
                }
            }
            !done
        });
        for target in &raised {
            raise_epoch(intent, *target);
        }
        !raised.is_empty()
    }

    /// Starts moving `slots` to the master `target` (Redis's CLUSTER SETSLOT IMPORTING /
    /// MIGRATING pair, as one plan): each slot's owner becomes its source. A slot owned by
    /// `target` or already moving to it is left as it is; the request is refused whole when a
    /// slot has no owner or is moving elsewhere.
    pub fn move_slots(&mut self, slots: &[u16], target: &NodeId) -> Result<Changed, Error> {
        if !self.intent.created {
            return Err(Error::NotCreated);
        }
        let t = self
            .index_of(target)
            .ok_or_else(|| Error::UnknownNode(target.to_string()))?;
        if self.intent.nodes[t].role != Role::Master {
            return Err(Error::NotAMaster(target.to_string()));
        }
        let t = t as u16;
        let mut moves = Vec::new();
        for &slot in slots {
            let owner = self
                .intent
                .slots
                .get(usize::from(slot))
                .copied()
                .flatten()
                .ok_or(Error::SlotUnassigned(slot))?;
            match self.intent.migrations.iter().find(|m| m.slot == slot) {
                Some(m) if m.target == t => continue,
                Some(_) => return Err(Error::SlotMoving(slot)),
                None if owner == t => continue,
                None => {}
            }
            if !moves.iter().any(|m: &SlotMigration| m.slot == slot) {
                moves.push(SlotMigration {
                    slot,
                    source: owner,
                    target: t,
                    by_client: false,
                });
            }
        }
        if moves.is_empty() {
            return Ok(false);
        }
        self.intent.migrations.extend(moves);
        self.intent.migrations.sort_by_key(|m| m.slot);
        Ok(self.bump())
    }

    /// Redis's CLUSTER SETSLOT received by the master `at`, checked as Redis checks it against
    /// this state (its texts): IMPORTING / MIGRATING record one move whose keys the client sends
    /// (the second of the pair finds it recorded); NODE gives the slot to a master with its epoch
    /// raised, ending any move of it; STABLE drops a move `at` takes part in.
    pub fn set_slot(&mut self, at: &NodeId, slot: u16, action: &SetSlot) -> Result<Changed, Error> {
        let me = self
            .index_of(at)
            .ok_or_else(|| Error::UnknownNode(at.to_string()))?;
        if self.intent.nodes[me].role != Role::Master {
            return Err(refused("ERR Please use SETSLOT only with masters."));
        }
        if slot >= SLOT_COUNT {
            return Err(Error::InvalidSlot(u32::from(slot)));
        }
        let owner = self.intent.slots[usize::from(slot)].map(usize::from);
        let changed = match action {
            SetSlot::Importing(source) => {
                if owner == Some(me) {
                    return Err(refused(format!(
                        "ERR I'm already the owner of hash slot {slot}"
                    )));
                }
                let source = self.master_named(source, false)?;
                if owner != Some(source) {
                    return Err(refused(format!(
                        "ERR Node {} does not own hash slot {slot}",
                        self.intent.nodes[source].id
                    )));
                }
                self.record_client_move(slot, source, me)?
            }
            SetSlot::Migrating(target) => {
                if owner != Some(me) {
                    return Err(refused(format!(
                        "ERR I'm not the owner of hash slot {slot}"
                    )));
                }
                let target = self.master_named(target, false)?;
                self.record_client_move(slot, me, target)?
            }
            SetSlot::Node(new_owner) => {
                let new_owner = self.master_named(new_owner, true)?;
                let before = self.intent.migrations.len();
                self.intent.migrations.retain(|m| m.slot != slot);
                let ended = self.intent.migrations.len() != before;
                if owner == Some(new_owner) {
                    ended
                } else {
                    self.intent.slots[usize::from(slot)] = Some(new_owner as u16);
                    raise_epoch(&mut self.intent, new_owner as u16);
                    true
                }
            }
            SetSlot::Stable => {
                let before = self.intent.migrations.len();
                self.intent.migrations.retain(|m| {
                    m.slot != slot || (usize::from(m.source) != me && usize::from(m.target) != me)
                });
                self.intent.migrations.len() != before
            }
        };
        Ok(changed && self.bump())
    }

    /// The master whose id is `text`, with Redis's SETSLOT errors otherwise (NODE words an
    /// unknown node differently).
    fn master_named(&self, text: &str, node_action: bool) -> Result<usize, Error> {
        let unknown = if node_action {
            format!("ERR Unknown node {text}")
        } else {
            format!("ERR I don't know about node {text}")
        };
        let i = self
            .intent
            .nodes
            .iter()
            .position(|n| n.id.as_str() == text)
            .ok_or_else(|| refused(unknown))?;
        if self.intent.nodes[i].role != Role::Master {
            return Err(refused("ERR Target node is not a master"));
        }
        Ok(i)
    }

    /// Records `slot` moving from `source` (its owner) to `target`, keys sent by the client; a
    /// move of it recorded already between the same two is kept. Returns whether it is new.
    fn record_client_move(
        &mut self,
        slot: u16,
        source: usize,
        target: usize,
    ) -> Result<bool, Error> {
        let (source, target) = (source as u16, target as u16);
        if source == target {
            return Err(refused(format!(
                "ERR I'm already the owner of hash slot {slot}"
            )));
        }
        match self.intent.migrations.iter_mut().find(|m| m.slot == slot) {
            Some(m) if m.source == source && m.target == target => {
                // A MoveSlots move taken over by the client: its keys now go with MIGRATE.
                let changed = !m.by_client;
                m.by_client = true;
                Ok(changed)
            }
            Some(_) => Err(Error::SlotMoving(slot)),
            None => {
                self.intent.migrations.push(SlotMigration {
                    slot,
                    source,
                    target,
                    by_client: true,
                });
                self.intent.migrations.sort_by_key(|m| m.slot);
                Ok(true)
            }
        }
    }

    /// Redis's CLUSTER ADDSLOTS / ADDSLOTSRANGE (`delete` false: each slot, unowned, goes to the
    /// master `at`) and DELSLOTS / DELSLOTSRANGE (each slot, owned, is left without an owner and
    /// any move of it ends), checked in the order given with Redis's texts, all or nothing.
    pub fn assign_slots(
        &mut self,
        at: &NodeId,
        slots: &[u32],
        delete: bool,
    ) -> Result<Changed, Error> {
        let me = self
            .index_of(at)
            .ok_or_else(|| Error::UnknownNode(at.to_string()))?;
        if !delete && self.intent.nodes[me].role != Role::Master {
            return Err(refused("ERR Please use ADDSLOTS only with masters."));
        }
        let mut seen = vec![false; usize::from(SLOT_COUNT)];
        for &slot in slots {
            let index = usize::try_from(slot)
                .ok()
                .filter(|&s| s < usize::from(SLOT_COUNT))
                .ok_or(Error::InvalidSlot(slot))?;
            let owned = self.intent.slots[index].is_some();
            if delete && !owned {
                return Err(refused(format!("ERR Slot {slot} is already unassigned")));
            }
            if !delete && owned {
                return Err(refused(format!("ERR Slot {slot} is already busy")));
            }
            if std::mem::replace(&mut seen[index], true) {
                return Err(refused(format!("ERR Slot {slot} specified multiple times")));
            }
        }
        if slots.is_empty() {
            return Ok(false);
        }
        let owner = (!delete).then_some(me as u16);
        for &slot in slots {
            self.intent.slots[slot as usize] = owner;
        }
        self.intent
            .migrations
            .retain(|m| !seen[usize::from(m.slot)]);
        Ok(self.bump())
    }

    /// Whether the heartbeat `id` sent holding `holds` renews its write lease, recording the grant
    /// at `now_ms`; called after the heartbeat and any failover it completed were applied. Only a
    /// node holding the newest topology of this history is granted, and never a master being
    /// failed over: PFAIL or FAIL, named in the handover, or the master of a FORCE request
    /// (see `failover` for why this is what fencing rests on).
    pub fn grant_lease(&mut self, id: &NodeId, holds: &Stamp, now_ms: u64) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        let current =
            holds.identity == self.identity && holds.version >= self.observed[i].fenced_version;
        let forced_master = self.forced.iter().any(|(replica, _)| {
            self.index_of(replica)
                .and_then(|r| self.intent.nodes[r].master_id.as_ref())
                == Some(id)
        });
        let handing_over = self
            .intent
            .handover
            .as_ref()
            .is_some_and(|h| &h.master == id);
        let observation = &mut self.observed[i];
        let granted = current && !observation.status.failing() && !handing_over && !forced_master;
        if granted {
            observation.lease_granted_ms = now_ms;
        }
        granted
    }

    /// The control plane's connect probe of `id`, sent at `probe.sent_ms`.
    pub fn record_probe(&mut self, id: &NodeId, probe: Probe) {
        if let Some(i) = self.index_of(id) {
            let observation = &mut self.observed[i];
            // A heartbeat that arrived after the probe left is newer evidence.
            if probe.sent_ms >= observation.status.last_heartbeat_ms {
                observation.probe = Some(probe);
            }
        }
    }

    /// The nodes the control plane should probe now (`failure::suspects`): id and the address
    /// its peers probe (the cluster bus).
    pub fn probe_targets(&self, now_ms: u64) -> Vec<(NodeId, String)> {
        let views = self.detector_views();
        failure::suspects(&views, now_ms, self.intent.settings.node_timeout_ms)
            .into_iter()
            .zip(&self.intent.nodes)
            .filter(|(suspect, _)| *suspect)
            .map(|(_, n)| (n.id.clone(), n.bus_address()))
            .collect()
    }

    /// Starts a failover of `replica`'s master, checked in Redis's order. DEFAULT publishes a
    /// handover (a change); FORCE/TAKEOVER records the request (no visible change until the
    /// promotion). Either may complete at once (`advance_failovers`).
    pub fn start_failover(
        &mut self,
        replica: &NodeId,
        mode: FailoverMode,
        now_ms: u64,
    ) -> Result<Changed, Error> {
        let r = self
            .index_of(replica)
            .ok_or_else(|| Error::UnknownNode(replica.to_string()))?;
        let node = &self.intent.nodes[r];
        if node.role == Role::Master {
            return Err(FailoverRefused::NotAReplica.into());
        }
        let master = node
            .master_id
            .as_ref()
            .and_then(|m| self.index_of(m))
            .ok_or(FailoverRefused::MasterUnknown)?;
        let master_id = self.intent.nodes[master].id.clone();
        let mut changed = false;
        match mode {
            FailoverMode::Default => {
                if self.observed(master).failing() {
                    return Err(FailoverRefused::MasterDown.into());
                }
                match &self.intent.handover {
                    Some(h) if &h.replica == replica => {}
                    Some(_) => return Err(FailoverRefused::InProgress.into()),
                    None => {
                        self.intent.handover = Some(Handover {
                            master: master_id,
                            replica: replica.clone(),
                            started_ms: now_ms,
                        });
                        changed = self.bump();
                        self.handover_version = self.version;
                    }
                }
            }
            FailoverMode::Force | FailoverMode::Takeover => {
                if !self.forced.iter().any(|(id, _)| id == replica) {
                    self.forced.push((replica.clone(), now_ms));
                }
            }
        }
        Ok(self.advance_failovers(now_ms) || changed)
    }

    /// Drops a pending FORCE/TAKEOVER request (its RPC gave up).
    pub fn cancel_forced(&mut self, replica: &NodeId) {
        self.forced.retain(|(id, _)| id != replica);
    }

    /// Applies `failover::decide` at `now_ms`: every due promotion, in one version.
    pub fn advance_failovers(&mut self, now_ms: u64) -> Changed {
        if self.intent.handover.is_none() && self.forced.is_empty() && !self.any_fail() {
            return false;
        }
        let topology = self.snapshot(now_ms);
        let leases: Vec<Lease> = self
            .observed
            .iter()
            .map(|o| Lease {
                granted_ms: o.lease_granted_ms,
                gone: o.gone,
            })
            .collect();
        let forced: Vec<NodeId> = self.forced.iter().map(|(id, _)| id.clone()).collect();
        let started = self.intent.handover.as_ref().map_or(0, |h| h.started_ms);
        let decision = failover::decide(
            &topology,
            &leases,
            &forced,
            self.handover_version,
            started,
            now_ms,
        );
        let mut changed = false;
        if decision.withdraw_handover {
            if let Some(h) = self.intent.handover.take() {
                tracing::warn!(master = %h.master, replica = %h.replica, "manual failover timed out; the master takes writes again");
                changed = true;
            }
        }
        for p in &decision.promotions {
            let (old, new) = (&self.intent.nodes[p.master], &self.intent.nodes[p.replica]);
            tracing::warn!(
                master = %old.id,
                replica = %new.id,
                address = %new.address(),
                reason = ?p.reason,
                epoch = self.intent.current_epoch + 1,
                "failing over: replica promoted"
            );
            let replica = new.id.clone();
            failover::promote(&mut self.intent, p.master, p.replica);
            self.forced.retain(|(id, _)| id != &replica);
            changed = true;
        }
        // Requests whose node is no longer a replica have nothing left to do.
        let nodes = &self.intent.nodes;
        self.forced
            .retain(|(id, _)| nodes.iter().any(|n| &n.id == id && n.role == Role::Replica));
        changed && self.bump()
    }

    fn any_fail(&self) -> bool {
        self.observed.iter().any(|o| o.status.fail)
    }

    /// What the failure detector sees of each node.
    fn detector_views(&self) -> Vec<NodeView> {
        let owning = self.slot_owners();
        let created = self.intent.created;
        self.intent
            .nodes
            .iter()
            .zip(&self.observed)
            .enumerate()
            .map(|(i, (n, o))| NodeView {
                id: n.id.clone(),
                voter: n.role == Role::Master && (!created || owning.contains(&i)),
                last_heartbeat_ms: o.status.last_heartbeat_ms,
                pfail: o.status.pfail,
                fail: o.status.fail,
                report: o.report.clone(),
                probe: o.probe,
            })
            .collect()
    }

    /// Runs the failure detector at `now_ms` and applies its verdict, then any failover due.
    pub fn detect_failures(&mut self, now_ms: u64) -> Changed {
        let views = self.detector_views();
        let verdict = failure::evaluate(&views, now_ms, self.intent.settings.node_timeout_ms);
        let mut changed = false;
        for ((node, observation), flags) in self
            .intent
            .nodes
            .iter()
            .zip(&mut self.observed)
            .zip(verdict)
        {
            observation.gone = flags.gone;
            let status = &mut observation.status;
            if status.pfail != flags.pfail || status.fail != flags.fail {
                if flags.gone && !status.fail {
                    tracing::warn!(node = %node.id, address = %node.address(), "node marked FAIL: its process is gone (port refused for every observer)");
                } else if flags.fail && !status.fail {
                    tracing::warn!(node = %node.id, address = %node.address(), "node marked FAIL");
                } else if flags.pfail && !status.pfail {
                    tracing::info!(node = %node.id, "node marked PFAIL");
                }
                status.pfail = flags.pfail;
                status.fail = flags.fail;
                changed = true;
            }
        }
        let changed = changed && self.bump();
        self.advance_failovers(now_ms) || changed
    }

    /// Indexes of nodes that own at least one slot.
    fn slot_owners(&self) -> std::collections::HashSet<usize> {
        self.intent
            .slots
            .iter()
            .flatten()
            .map(|&i| usize::from(i))
            .collect()
    }

    /// Checks what `CreateCluster` checks before looking at addresses, in redis-cli's order.
    pub fn check_create(&self, addresses: usize, replicas: u32) -> Result<(), Error> {
        if self.intent.created {
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
        Ok(())
    }

    /// Lays the given nodes out as redis-cli does (`placement::arrange`): masters get the slots
    /// split as redis-cli splits them, the others become their replicas. Every given node gets a
    /// config epoch, 1..=n in the order given (as redis-cli's SET-CONFIG-EPOCH round), so the
    /// current epoch becomes n. `dry_run` leaves `self` untouched and returns the planned topology.
    pub fn create(
        &mut self,
        nodes: &[NodeId],
        replicas: u32,
        dry_run: bool,
        now_ms: u64,
    ) -> Result<(Topology, Changed), Error> {
        self.check_create(nodes.len(), replicas)?;
        let mut indexes = Vec::with_capacity(nodes.len());
        for id in nodes {
            let i = self
                .index_of(id)
                .ok_or_else(|| Error::UnknownNode(id.to_string()))?;
            if indexes.contains(&i) {
                return Err(Error::DuplicateAddress(self.intent.nodes[i].address()));
            }
            indexes.push(i);
        }
        let index16 = |i: usize| {
            u16::try_from(i).map_err(|_| Error::UnknownNode(self.intent.nodes[i].id.to_string()))
        };
        let hosts: Vec<&str> = indexes
            .iter()
            .map(|&i| self.intent.nodes[i].host.as_str())
            .collect();
        let arrangement = placement::arrange(&hosts, replicas as usize);
        let mut next = self.clone();
        for (&m, (first, last)) in arrangement
            .masters
            .iter()
            .zip(placement::split_slots(arrangement.masters.len()))
        {
            let owner = index16(indexes[m])?;
            next.intent.slots[usize::from(first)..=usize::from(last)].fill(Some(owner));
        }
        for (epoch, (k, &i)) in (1u64..).zip(indexes.iter().enumerate()) {
            let master_id =
                arrangement.master_of[k].map(|m| self.intent.nodes[indexes[m]].id.clone());
            let node = &mut next.intent.nodes[i];
            node.config_epoch = epoch;
            node.role = if master_id.is_some() {
                Role::Replica
            } else {
                Role::Master
            };
            node.master_id = master_id;
            next.intent.current_epoch = next.intent.current_epoch.max(epoch);
        }
        next.intent.created = true;
        next.bump();
        let topology = next.snapshot(now_ms);
        if !dry_run {
            *self = next;
        }
        Ok((topology, !dry_run))
    }

    /// Makes `replica` (a registered node owning no slots and holding no keys) a replica of
    /// `master`, as Redis's CLUSTER REPLICATE, checked in Redis's order. A replica may move to
    /// another master; naming its current master again changes nothing.
    pub fn add_replica(&mut self, replica: &NodeId, master: &NodeId) -> Result<Changed, Error> {
        if !self.intent.created {
            return Err(Error::NotCreated);
        }
        let r = self
            .index_of(replica)
            .ok_or_else(|| Error::UnknownNode(replica.to_string()))?;
        let m = self
            .index_of(master)
            .ok_or_else(|| Error::NoSuchMaster(master.to_string()))?;
        if r == m {
            return Err(Error::ReplicateItself);
        }
        if self.intent.nodes[m].role != Role::Master {
            return Err(Error::NotAMaster(master.to_string()));
        }
        let node = &self.intent.nodes[r];
        if node.role == Role::Replica && node.master_id.as_ref() == Some(master) {
            return Ok(false);
        }
        let owns_slots = self
            .intent
            .slots
            .iter()
            .flatten()
            .any(|&o| usize::from(o) == r);
        if owns_slots || self.observed(r).key_count > 0 {
            return Err(Error::NotEmpty(node.address()));
        }
        let has_replicas = self
            .intent
            .nodes
            .iter()
            .any(|n| n.role == Role::Replica && n.master_id.as_ref() == Some(&node.id));
        if has_replicas {
            return Err(Error::HasReplicas(node.id.to_string()));
        }
        let node = &mut self.intent.nodes[r];
        node.role = Role::Replica;
        node.master_id = Some(master.clone());
        Ok(self.bump())
    }

    /// Applies a validated settings change.
    pub fn set_setting(&mut self, change: SettingChange) -> Changed {
        let next = change.apply(self.intent.settings);
        if next == self.intent.settings {
            return false;
        }
        self.intent.settings = next;
        self.bump()
    }

    /// The topology as services see it, with heartbeat-derived fields as of now.
    pub fn snapshot(&self, _now_ms: u64) -> Topology {
        let statuses = self
            .observed
            .iter()
            .map(|o| NodeStatus {
                // A ping is "outstanding" only for a node we are waiting on.
                ping_sent_ms: if o.status.failing() {
                    o.status.last_heartbeat_ms
                } else {
                    0
                },
                ..o.status
            })
            .collect();
        Topology {
            identity: self.identity.clone(),
            version: self.version,
            intent: self.intent.clone(),
            observed: Observation { nodes: statuses },
        }
    }

    /// The persisted form: the identity, the version and the intent, with the failure verdicts
    /// (a node FAIL before a restart stays FAIL until it speaks). Other observations are
    /// refreshed by the nodes within a heartbeat.
    pub fn to_persisted(&self) -> PersistedState {
        let topology = self.snapshot(0);
        let id_of = |index: u16| self.intent.nodes[usize::from(index)].id.to_string();
        let slots = topology
            .runs()
            .filter_map(|(start, end, owner)| {
                Some(PersistedRange {
                    start,
                    end,
                    node_id: id_of(owner?),
                })
            })
            .collect();
        PersistedState {
            format: FORMAT,
            cluster_id: self.identity.cluster_id.to_string(),
            generation: self.identity.generation,
            version: self.version,
            current_epoch: self.intent.current_epoch,
            created: self.intent.created,
            settings: PersistedSettings {
                require_full_coverage: self.intent.settings.require_full_coverage,
                allow_reads_when_down: self.intent.settings.allow_reads_when_down,
                node_timeout_ms: self.intent.settings.node_timeout_ms,
            },
            nodes: topology
                .members()
                .map(|(n, status)| PersistedNode {
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
                    pfail: status.pfail,
                    fail: status.fail,
                })
                .collect(),
            slots,
            migrations: self
                .intent
                .migrations
                .iter()
                .map(|m| PersistedMigration {
                    slot: m.slot,
                    source_id: id_of(m.source),
                    target_id: id_of(m.target),
                    by_client: m.by_client,
                })
                .collect(),
            handover: self.intent.handover.as_ref().map(|h| PersistedHandover {
                master_id: h.master.to_string(),
                replica_id: h.replica.to_string(),
                started_ms: h.started_ms,
                version: self.handover_version,
            }),
            removed: self.removed.iter().map(NodeId::to_string).collect(),
        }
    }

    /// Rebuilds the state from its persisted form. Every node's last heartbeat is set to `now_ms`,
    /// so a control-plane restart does not fail every node at once; flags are kept until the node
    /// speaks. A state saved before identities existed (format 1) gets a fresh one.
    pub fn from_persisted(p: PersistedState, now_ms: u64) -> Result<ClusterState, StoreError> {
        let bad = |what: String| StoreError::Inconsistent(what);
        if p.format != FORMAT && p.format != 1 {
            return Err(bad(format!("unknown format {}", p.format)));
        }
        let identity = if p.format == 1 {
            ClusterState::fresh_identity(now_ms)
        } else {
            Identity {
                cluster_id: ClusterId::parse(&p.cluster_id).map_err(|e| bad(e.to_string()))?,
                generation: p.generation,
            }
        };
        let mut state = ClusterState::new(
            Settings {
                require_full_coverage: p.settings.require_full_coverage,
                allow_reads_when_down: p.settings.allow_reads_when_down,
                node_timeout_ms: p.settings.node_timeout_ms,
            },
            identity,
        );
        state.version = p.version;
        state.intent.current_epoch = p.current_epoch;
        state.intent.created = p.created;
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
            state.intent.nodes.push(NodeSpec {
                id,
                host: n.host,
                port: n.port,
                bus_port: n.bus_port,
                role,
                master_id,
                config_epoch: n.config_epoch,
            });
            // Every node may hold a lease granted just before this control plane stopped: count
            // one granted now, so fencing waits a whole lease from the restart.
            state.observed.push(NodeObservation::heard_at(
                NodeStatus {
                    pfail: n.pfail,
                    fail: n.fail,
                    ..NodeStatus::UNKNOWN
                },
                now_ms,
            ));
        }
        let index_of = |state: &ClusterState, id: &str| {
            NodeId::parse(id)
                .ok()
                .and_then(|id| state.index_of(&id))
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| bad(format!("names unknown node {id}")))
        };
        for range in p.slots {
            if range.start > range.end || range.end >= SLOT_COUNT {
                return Err(bad(format!("slot range {}-{}", range.start, range.end)));
            }
            let owner = index_of(&state, &range.node_id)?;
            state.intent.slots[usize::from(range.start)..=usize::from(range.end)].fill(Some(owner));
        }
        for m in p.migrations {
            let source = index_of(&state, &m.source_id)?;
            let target = index_of(&state, &m.target_id)?;
            if m.slot >= SLOT_COUNT || state.intent.slots[usize::from(m.slot)] != Some(source) {
                return Err(bad(format!(
                    "slot {} moves from a node not owning it",
                    m.slot
                )));
            }
            state.intent.migrations.push(SlotMigration {
                slot: m.slot,
                source,
                target,
                by_client: m.by_client,
            });
        }
        state.intent.migrations.sort_by_key(|m| m.slot);
        state.removed = p
            .removed
            .iter()
            .map(|id| NodeId::parse(id).map_err(|e| bad(e.to_string())))
            .collect::<Result<_, _>>()?;
        if let Some(h) = p.handover {
            let parse = |id: &str| {
                NodeId::parse(id)
                    .ok()
                    .filter(|id| state.index_of(id).is_some())
                    .ok_or_else(|| bad(format!("handover names unknown node {id}")))
            };
            state.intent.handover = Some(Handover {
                master: parse(&h.master_id)?,
                replica: parse(&h.replica_id)?,
                started_ms: h.started_ms,
            });
            state.handover_version = h.version;
        }
        // What a node holds is not known here: each must hold this version first.
        state.fence(true);
        Ok(state)
    }
}

/// Redis's CLUSTER SETSLOT action, the slot's other node as the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetSlot {
    /// IMPORTING <source>, at the target.
    Importing(String),
    /// MIGRATING <target>, at the source.
    Migrating(String),
    /// NODE <owner>.
    Node(String),
    Stable,
}

fn refused(text: impl Into<String>) -> Error {
    Error::Refused(text.into())
}

/// Gives `node` a config epoch above every other, as Redis's
/// clusterBumpConfigEpochWithoutConsensus does for a node taking a slot: its claim wins.
fn raise_epoch(intent: &mut Intent, node: u16) {
    intent.current_epoch += 1;
    intent.nodes[usize::from(node)].config_epoch = intent.current_epoch;
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
            holds: Stamp::default(),
        }
    }

    fn identity() -> Identity {
        Identity {
            cluster_id: ClusterId::from_random_bytes([0xcc; 20]),
            generation: 1_000,
        }
    }

    /// Node `n`'s heartbeat holding `holds` and reporting `slots` drained, nothing else.
    fn drained(n: u8, holds: Stamp, slots: Vec<u16>) -> Beat {
        Beat {
            id: id(n),
            peers: vec![],
            key_count: 0,
            holds,
            replication_offset: 0,
            refused: vec![],
            drained_slots: slots,
        }
    }

    fn three() -> ClusterState {
        let mut state = ClusterState::new(
            Settings {
                node_timeout_ms: 1_000,
                ..Settings::default()
            },
            identity(),
        );
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
            .create(&[id(1), id(2), id(3)], 0, false, 0)
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

    /// A slotless node 9 at index 0 (127.0.0.1:6999), then nodes 1-3 created as the masters.
    fn created_after_a_slotless_node() -> ClusterState {
        let mut state = ClusterState::new(Settings::default(), identity());
        assert!(state.register(reg(9, 6999), 0));
        for n in 1..=3 {
            assert!(state.register(reg(n, 7000 + u16::from(n) - 1), 0));
        }
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        state
    }

    #[test]
    fn forgetting_reindexes_the_slot_map() {
        let mut state = created_after_a_slotless_node();
        assert!(
            state.register(reg(8, 6999), 0),
            "replaces node 9 at index 0"
        );
        let snapshot = state.snapshot(0);
        assert_eq!(snapshot.owner(0).map(|n| n.id.clone()), Some(id(1)));
        assert_eq!(snapshot.owner(5461).map(|n| n.id.clone()), Some(id(2)));
        assert_eq!(snapshot.owner(16383).map(|n| n.id.clone()), Some(id(3)));
        assert_eq!(snapshot.nodes().last().map(|n| n.id.clone()), Some(id(8)));
    }

    #[test]
    fn create_assigns_like_redis_cli_and_dry_run_changes_nothing() {
        let mut state = three();
        let ids = [id(1), id(2), id(3)];
        let (plan, changed) = state.create(&ids, 0, true, 0).expect("dry run");
        assert!(!changed);
        assert!(!state.is_created());
        assert_eq!(plan.owner(5460).map(|n| n.id.clone()), Some(id(1)));
        let (applied, changed) = state.create(&ids, 0, false, 0).expect("create");
        assert!(changed);
        assert_eq!(applied.intent.current_epoch, 3);
        assert_eq!(applied.owner(0).map(|n| n.config_epoch), Some(1));
        assert_eq!(applied.owner(5461).map(|n| n.id.clone()), Some(id(2)));
        assert_eq!(applied.owner(16383).map(|n| n.id.clone()), Some(id(3)));
        assert!(matches!(
            state.create(&ids, 0, false, 0),
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
        assert!(state.check_create(6, 1).is_ok());
        assert_eq!(
            state.check_create(5, 1).unwrap_err().to_string(),
            "Redis Cluster requires at least 3 master nodes. This is not possible with 5 nodes and 1 replicas per node. At least 6 nodes are required."
        );
        let mut state = three();
        assert!(matches!(
            state.create(&[id(1), id(1), id(2)], 0, false, 0),
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
            holds: Stamp::default(),
            replication_offset: 0,
            refused: vec![],
            drained_slots: vec![],
        };
        assert!(matches!(
            state.heartbeat(beat(9), 0),
            Err(Error::UnknownNode(_))
        ));
        assert!(!state.heartbeat(beat(1), 10).expect("beat"));
        assert!(state.detect_failures(5_000), "everybody silent");
        assert!((0..3).all(|i| state.observed(i).pfail));
        let before = state.version();
        assert!(
            !state.register(reg(1, 7000), 5_001),
            "a registration keeps the flags"
        );
        assert!(state.observed(0).pfail);
        assert_eq!(state.version(), before);
        assert!(state.heartbeat(beat(1), 5_002).expect("beat"));
        assert!(!state.observed(0).failing());
        assert_eq!(state.version(), before + 1);
    }

    #[test]
    fn persisted_round_trip_keeps_what_matters() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        state.set_setting(SettingChange::RequireFullCoverage(false));
        let persisted = state.to_persisted();
        assert_eq!(persisted.slots.len(), 3);
        let loaded = ClusterState::from_persisted(persisted.clone(), 99).expect("load");
        assert_eq!(loaded.to_persisted(), persisted);
        assert!((0..3).all(|i| loaded.observed(i).last_heartbeat_ms == 99));
        assert_eq!(loaded.snapshot(99).intent, state.snapshot(0).intent);
        assert_eq!(loaded.identity(), state.identity());
    }

    #[test]
    fn a_node_of_a_newer_history_moves_the_generation_past_it() {
        let mut state = three();
        let before = state.version();
        let mut from_elsewhere = reg(1, 7000);
        from_elsewhere.holds = Stamp {
            identity: Identity {
                cluster_id: ClusterId::from_random_bytes([0xdd; 20]),
                generation: 5_000,
            },
            version: 400,
        };
        assert!(state.register(from_elsewhere.clone(), 10));
        assert_eq!(state.identity().generation, 5_001);
        assert_eq!(state.identity().cluster_id, identity().cluster_id);
        assert_eq!(state.version(), before + 1);
        let snapshot = state.snapshot(10);
        assert!(snapshot.stamp().supersedes(&from_elsewhere.holds));
        // A node of this history, or of an older one, changes nothing.
        let mut own = reg(2, 7001);
        own.holds = state.stamp();
        assert!(!state.register(own, 11));
        let mut older = reg(3, 7002);
        older.holds.identity.generation = 3;
        assert!(!state.register(older, 12));
        assert_eq!(state.identity().generation, 5_001);
    }

    #[test]
    fn reported_versions_count_only_within_this_history() {
        let mut state = three();
        let mut beat = Beat {
            id: id(1),
            peers: vec![],
            key_count: 0,
            holds: state.stamp(),
            replication_offset: 77,
            refused: vec![],
            drained_slots: vec![],
        };
        state.heartbeat(beat.clone(), 1).expect("beat");
        assert_eq!(state.observed(0).topology_version, 3);
        assert_eq!(state.observed(0).replication_offset, 77);
        beat.holds.identity.generation += 1;
        state.heartbeat(beat, 2).expect("beat");
        assert_eq!(state.observed(0).topology_version, 0);
    }

    #[test]
    fn migrations_persist_and_follow_reindexing() {
        let mut state = created_after_a_slotless_node();
        state.intent.migrations.push(SlotMigration {
            slot: 100,
            source: 1,
            target: 2,
            by_client: false,
        });
        let persisted = state.to_persisted();
        let loaded = ClusterState::from_persisted(persisted.clone(), 5).expect("load");
        assert_eq!(loaded.to_persisted(), persisted);
        // Node 9 (index 0) is forgotten: the move's indexes shift with the nodes.
        assert!(state.register(reg(8, 6999), 0));
        let topology = state.snapshot(0);
        let migration = topology.migration(100).expect("still moving");
        assert_eq!(topology.nodes()[usize::from(migration.source)].id, id(1));
        assert_eq!(topology.nodes()[usize::from(migration.target)].id, id(2));
    }

    #[test]
    fn format_one_loads_with_a_fresh_identity() {
        let mut persisted = three().to_persisted();
        persisted.format = 1;
        persisted.cluster_id = String::new();
        persisted.generation = 0;
        let loaded = ClusterState::from_persisted(persisted, 1_234).expect("load");
        assert_eq!(loaded.identity().generation, 1_234);
        assert_ne!(loaded.identity().cluster_id, ClusterId::none());
    }

    /// Six nodes on one host, 7000-7005, created with one replica per master.
    fn six_with_replicas() -> ClusterState {
        let mut state = ClusterState::new(
            Settings {
                node_timeout_ms: 1_000,
                ..Settings::default()
            },
            identity(),
        );
        for n in 1..=6 {
            assert!(state.register(reg(n, 7000 + u16::from(n) - 1), 0));
        }
        let ids: Vec<NodeId> = (1..=6).map(id).collect();
        state.create(&ids, 1, false, 0).expect("create");
        state
    }

    #[test]
    fn create_with_replicas_places_them_as_redis_cli() {
        let state = six_with_replicas();
        let t = state.snapshot(0);
        // Masters 7000-7002 with redis-cli's split; "Adding replica 7004 to 7000, 7005 to 7001,
        // 7003 to 7002".
        assert_eq!(t.owner(0).map(|n| n.id.clone()), Some(id(1)));
        assert_eq!(t.owner(5461).map(|n| n.id.clone()), Some(id(2)));
        assert_eq!(t.owner(16383).map(|n| n.id.clone()), Some(id(3)));
        let master_of = |n: u8| t.node(&id(n)).and_then(|s| s.master_id.clone());
        assert_eq!(master_of(5), Some(id(1)));
        assert_eq!(master_of(6), Some(id(2)));
        assert_eq!(master_of(4), Some(id(3)));
        assert!((4..=6).all(|n| t.node(&id(n)).map(|s| s.role) == Some(Role::Replica)));
        assert!((4..=6).all(|n| t.ranges_of(t.index_of(&id(n)).unwrap()).is_empty()));
        // Every node an epoch in the given order, as redis-cli's SET-CONFIG-EPOCH round.
        assert_eq!(t.intent.current_epoch, 6);
        assert_eq!(t.node(&id(4)).map(|n| n.config_epoch), Some(4));
        let health = t.health();
        assert_eq!((health.known_nodes, health.size), (6, 3));
        // Replicas survive a restart of the control plane.
        let loaded = ClusterState::from_persisted(state.to_persisted(), 1).expect("load");
        assert_eq!(loaded.snapshot(1).intent, t.intent);
    }

    #[test]
    fn a_replica_neither_votes_nor_downs_the_cluster() {
        let mut state = six_with_replicas();
        let beat = |n: u8, unreachable: &[u8]| Beat {
            id: id(n),
            peers: unreachable.iter().map(|&p| (id(p), false)).collect(),
            key_count: 0,
            holds: Stamp::default(),
            replication_offset: 0,
            refused: vec![],
            drained_slots: vec![],
        };
        // Replica 4 (of master 3) goes silent; only the replicas report it: PFAIL, not FAIL.
        for n in [1, 2, 3] {
            state.heartbeat(beat(n, &[]), 1_500).expect("beat");
        }
        for n in [5, 6] {
            state.heartbeat(beat(n, &[4]), 1_500).expect("beat");
        }
        state.detect_failures(1_600);
        let i4 = 3;
        assert!(state.observed(i4).pfail && !state.observed(i4).fail);
        // One master agreeing with the control plane is a majority of the three voters.
        state.heartbeat(beat(1, &[4]), 1_700).expect("beat");
        state.detect_failures(1_700);
        assert!(state.observed(i4).fail);
        let t = state.snapshot(1_700);
        assert!(t.health().ok, "a FAIL replica does not fail the cluster");
        assert_eq!(t.health().slots_fail, 0);
    }

    #[test]
    fn add_replica_checks_as_redis() {
        let mut state = three();
        assert!(state.register(reg(4, 7003), 0));
        assert!(matches!(
            state.add_replica(&id(4), &id(1)),
            Err(Error::NotCreated)
        ));
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        assert_eq!(
            state.add_replica(&id(4), &id(9)).unwrap_err().to_string(),
            format!("No such master ID {}", id(9))
        );
        assert_eq!(
            state.add_replica(&id(4), &id(4)).unwrap_err().to_string(),
            "Can't replicate myself"
        );
        assert_eq!(
            state.add_replica(&id(1), &id(2)).unwrap_err().to_string(),
            "To set a master the node must be empty and without assigned slots."
        );
        let before = state.version();
        assert!(state.add_replica(&id(4), &id(1)).expect("add"));
        assert_eq!(state.version(), before + 1);
        assert!(
            !state.add_replica(&id(4), &id(1)).expect("again"),
            "no change"
        );
        let t = state.snapshot(0);
        assert_eq!(t.replicas_of(0).collect::<Vec<_>>(), vec![3]);
        assert_eq!(
            state.add_replica(&id(2), &id(4)).unwrap_err().to_string(),
            "I can only replicate a master, not a replica."
        );
        // A node holding keys is refused: its keys would be overwritten.
        assert!(state.register(reg(5, 7004), 0));
        state
            .heartbeat(
                Beat {
                    id: id(5),
                    peers: vec![],
                    key_count: 3,
                    holds: Stamp::default(),
                    replication_offset: 0,
                    refused: vec![],
                    drained_slots: vec![],
                },
                1,
            )
            .expect("beat");
        assert!(matches!(
            state.add_replica(&id(5), &id(2)),
            Err(Error::NotEmpty(_))
        ));
        // A replica moves to another master.
        assert!(state.add_replica(&id(4), &id(3)).expect("move"));
        assert_eq!(state.snapshot(0).replicas_of(2).count(), 1);
    }

    #[test]
    fn leases_wait_only_for_changes_that_take_authority_away() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        let stamp = |state: &ClusterState| state.stamp();
        let created = stamp(&state);
        assert!(state.grant_lease(&id(1), &created, 1));
        // A move takes slot 0 from node 1's own writes: node 1 must hold it first.
        assert!(state.move_slots(&[0, 1], &id(2)).expect("move"));
        let moving = stamp(&state);
        assert!(!state.grant_lease(&id(1), &created, 2));
        assert!(state.grant_lease(&id(1), &moving, 2));
        // Node 2 only gains; node 3 is not concerned: their older topologies still renew.
        assert!(state.grant_lease(&id(2), &created, 2));
        assert!(state.grant_lease(&id(3), &created, 2));
        // The drained slot going to its target takes nothing more from node 1.
        assert!(state
            .heartbeat(drained(1, moving.clone(), vec![0]), 3)
            .expect("beat"));
        assert!(state.version() > moving.version);
        assert!(state.grant_lease(&id(1), &moving, 3));
        // Another node-timeout changes every lease: every node must hold it.
        let before = stamp(&state);
        assert!(state.set_setting(SettingChange::parse("node-timeout", "3000").expect("setting")));
        assert!(!state.grant_lease(&id(3), &before, 4));
        assert!(state.grant_lease(&id(3), &stamp(&state), 4));
        // A control plane that reloads its state does not know what nodes hold.
        let current = stamp(&state);
        let mut reloaded = ClusterState::from_persisted(state.to_persisted(), 5).expect("reload");
        assert!(!reloaded.grant_lease(&id(2), &before, 5));
        assert!(reloaded.grant_lease(&id(2), &current, 5));
    }

    #[test]
    fn slot_moves_are_planned_then_finished_by_the_sources_reports() {
        let mut state = three();
        assert!(matches!(
            state.move_slots(&[1], &id(2)),
            Err(Error::NotCreated)
        ));
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        assert!(matches!(
            state.move_slots(&[1], &id(9)),
            Err(Error::UnknownNode(_))
        ));
        let before = state.version();
        // Slots 0 and 1 of node 1 (index 0) go to node 2 (index 1); 6000 is node 2's already.
        assert!(state.move_slots(&[1, 0, 1, 6000], &id(2)).expect("move"));
        assert_eq!(state.version(), before + 1);
        let t = state.snapshot(0);
        assert_eq!(t.migration(0).map(|m| (m.source, m.target)), Some((0, 1)));
        assert_eq!(t.migration(1).map(|m| (m.source, m.target)), Some((0, 1)));
        assert!(t.migration(6000).is_none());
        assert_eq!(
            t.owner_index(0),
            Some(0),
            "the source owns it until drained"
        );
        // Asked again: nothing new. Elsewhere: refused.
        assert!(!state.move_slots(&[0], &id(2)).expect("again"));
        assert!(matches!(
            state.move_slots(&[0], &id(3)),
            Err(Error::SlotMoving(0))
        ));
        // The source reports slot 1 drained: it is node 2's, with a raised epoch; 0 still moves.
        let epoch = state.snapshot(0).intent.current_epoch;
        let beat = |slots: Vec<u16>| drained(1, Stamp::default(), slots);
        assert!(state.heartbeat(beat(vec![1]), 1).expect("beat"));
        let t = state.snapshot(1);
        assert_eq!(t.owner_index(1), Some(1));
        assert!(t.migration(1).is_none());
        assert_eq!(t.owner_index(0), Some(0));
        assert_eq!(t.intent.current_epoch, epoch + 1);
        assert_eq!(t.nodes()[1].config_epoch, epoch + 1);
        // A report from a node that is not the source changes nothing.
        let mut other = beat(vec![0]);
        other.id = id(3);
        assert!(!state.heartbeat(other, 2).expect("beat"));
        assert!(state.heartbeat(beat(vec![0, 1]), 3).expect("beat"));
        assert!(state.snapshot(3).intent.migrations.is_empty());
        // Survives a restart of the control plane.
        let reloaded = ClusterState::from_persisted(state.to_persisted(), 4).expect("reload");
        assert_eq!(reloaded.snapshot(4).owner_index(0), Some(1));
    }

    #[test]
    fn a_node_is_removed_only_when_it_serves_nothing_and_never_comes_back() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        assert!(state.register(reg(4, 7003), 0));
        assert!(matches!(
            state.remove(&id(1)),
            Err(Error::NodeNotEmpty(address)) if address == "127.0.0.1:7000"
        ));
        // A replica serves no slot: it may go.
        state.add_replica(&id(4), &id(2)).expect("replica");
        let before = state.version();
        assert!(state.remove(&id(4)).expect("remove"));
        assert_eq!(state.version(), before + 1);
        assert!(state.index_of(&id(4)).is_none());
        assert!(state.is_removed(&id(4)));
        assert!(matches!(state.remove(&id(4)), Err(Error::UnknownNode(_))));
        // The slot map is intact and the removal survives a restart.
        let t = state.snapshot(1);
        assert_eq!(t.owner_index(0), Some(0));
        assert_eq!(t.owner_index(16383), Some(2));
        let reloaded = ClusterState::from_persisted(state.to_persisted(), 2).expect("reload");
        assert!(reloaded.is_removed(&id(4)));
    }

    #[test]
    fn a_replica_that_starts_applying_its_masters_stream_is_published() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        assert!(state.register(reg(4, 7003), 0));
        state.add_replica(&id(4), &id(1)).expect("add");
        let beat = |offset| Beat {
            id: id(4),
            peers: vec![],
            key_count: 0,
            holds: Stamp::default(),
            replication_offset: offset,
            refused: vec![],
            drained_slots: vec![],
        };
        assert!(!state.heartbeat(beat(0), 1).expect("beat"), "still loading");
        assert!(state.heartbeat(beat(10), 2).expect("beat"), "now online");
        assert_eq!(state.snapshot(0).status_at(3).replication_offset, 10);
        assert!(
            !state.heartbeat(beat(20), 3).expect("beat"),
            "offsets ride along"
        );
    }

    #[test]
    fn replicas_of_a_forgotten_master_become_masters() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        assert!(state.register(reg(4, 7003), 0));
        assert!(state.register(reg(5, 7004), 0));
        // 5 follows the slotless master 4, which is then replaced by a new id at its address.
        state.add_replica(&id(5), &id(4)).expect("add");
        assert!(state.register(reg(6, 7003), 0));
        let t = state.snapshot(0);
        let five = t.node(&id(5)).expect("kept");
        assert_eq!((five.role, five.master_id.clone()), (Role::Master, None));
    }

    #[test]
    fn setslot_records_a_clients_move_that_only_setslot_node_ends() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        let text = |r: Result<Changed, Error>| r.unwrap_err().to_string();
        let (one, two) = (id(1).to_string(), id(2).to_string());
        assert_eq!(
            text(state.set_slot(&id(2), 0, &SetSlot::Migrating(one.clone()))),
            "ERR I'm not the owner of hash slot 0"
        );
        assert_eq!(
            text(state.set_slot(&id(1), 0, &SetSlot::Importing(two.clone()))),
            "ERR I'm already the owner of hash slot 0"
        );
        assert_eq!(
            text(state.set_slot(&id(2), 0, &SetSlot::Importing("xyz".into()))),
            "ERR I don't know about node xyz"
        );
        // IMPORTING at the target, then MIGRATING at the source: one move, recorded once.
        assert!(state
            .set_slot(&id(2), 0, &SetSlot::Importing(one.clone()))
            .unwrap());
        assert!(!state
            .set_slot(&id(1), 0, &SetSlot::Migrating(two.clone()))
            .unwrap());
        let m = *state.snapshot(0).migration(0).expect("moving");
        assert_eq!((m.source, m.target, m.by_client), (0, 1, true));
        assert!(matches!(
            state.move_slots(&[0], &id(3)),
            Err(Error::SlotMoving(0))
        ));
        // A drained report does not end it; SETSLOT NODE does, with a raised epoch.
        let beat = drained(1, Stamp::default(), vec![0]);
        assert!(!state.heartbeat(beat, 1).expect("beat"));
        let epoch = state.snapshot(1).intent.current_epoch;
        assert!(state
            .set_slot(&id(1), 0, &SetSlot::Node(two.clone()))
            .unwrap());
        let t = state.snapshot(1);
        assert_eq!(t.owner_index(0), Some(1));
        assert!(t.migration(0).is_none());
        assert_eq!(t.nodes()[1].config_epoch, epoch + 1);
        assert!(
            !state
                .set_slot(&id(3), 0, &SetSlot::Node(two.clone()))
                .unwrap(),
            "again: no change"
        );
        // STABLE drops a move the node takes part in.
        assert!(state
            .set_slot(&id(2), 1, &SetSlot::Importing(one.clone()))
            .unwrap());
        assert!(!state.set_slot(&id(3), 1, &SetSlot::Stable).unwrap());
        assert!(state.set_slot(&id(1), 1, &SetSlot::Stable).unwrap());
        let reloaded = ClusterState::from_persisted(state.to_persisted(), 2).expect("reload");
        assert_eq!(reloaded.snapshot(2).intent, state.snapshot(2).intent);
    }

    #[test]
    fn addslots_and_delslots_check_as_redis() {
        let mut state = three();
        state
            .create(&[id(1), id(2), id(3)], 0, false, 0)
            .expect("create");
        let text = |r: Result<Changed, Error>| r.unwrap_err().to_string();
        assert_eq!(
            text(state.assign_slots(&id(1), &[5], false)),
            "ERR Slot 5 is already busy"
        );
        assert_eq!(
            text(state.assign_slots(&id(1), &[16384], true)),
            "ERR Invalid or out of range slot"
        );
        assert_eq!(
            text(state.assign_slots(&id(1), &[5, 5], true)),
            "ERR Slot 5 specified multiple times"
        );
        assert!(state.assign_slots(&id(2), &[5, 6], true).unwrap());
        assert_eq!(state.snapshot(0).owner_index(5), None);
        assert_eq!(
            text(state.assign_slots(&id(1), &[5], true)),
            "ERR Slot 5 is already unassigned"
        );
        assert!(state.assign_slots(&id(3), &[5, 6], false).unwrap());
        assert_eq!(state.snapshot(0).owner_index(6), Some(2));
    }
}
