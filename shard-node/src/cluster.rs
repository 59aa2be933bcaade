//! The node's view of the cluster, fed by the control plane: the topology (read lock-free on
//! every command), the role it assigns this node (`role`), the write lease, peer observations and
//! message counters (`ClusterView`), and the background tasks that keep them current (`start`):
//! registration and heartbeats (`control`), the topology watch (`control`), and peer probes
//! (`probe`).

mod control;
mod lease;
pub mod probe;
pub mod role;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tessera_proto::control_plane::TopologyHolder;
use tessera_proto::topology::render::MessageStats;
use tessera_proto::topology::{Health, NodeId, Role, Stamp, Topology};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ClusterError;
use crate::state::NodeState;

pub use lease::Lease;
pub use probe::PeerTable;
pub use role::AssignedRole;

pub struct ClusterView {
    myself: NodeId,
    topology: ArcSwap<Snapshot>,
    /// Serialises offers (the watch and registration both offer), so a check-then-store cannot
    /// let an older topology replace a newer one. Readers never take it.
    offer_lock: Mutex<()>,
    lease: Lease,
    peers: PeerTable,
    counters: Counters,
    /// The role the held topology assigns, for the task that makes replication follow it
    /// (`replication::follow_assigned_role`): sending never blocks the offer.
    assigned: tokio::sync::watch::Sender<AssignedRole>,
    /// The held topology's version, for the tasks that follow its changes (shard channels of
    /// slots that moved away: `pubsub::drop_moved_channels`; the mover, `migrate`, starts a move
    /// at once).
    changed: tokio::sync::watch::Sender<u64>,
    /// The held topology names this node the master of a manual failover in progress: it takes
    /// no write (checked again after a write enters its slot gate, see `cmd::execute`). Set
    /// before the topology is stored, so whoever sees the topology sees the flag.
    handing_over: AtomicBool,
    /// The control plane's client, once the cluster tasks start: what CLUSTER FAILOVER and
    /// CLUSTER REPLICATE call.
    control_plane: std::sync::OnceLock<tessera_proto::control_plane::Client>,
    /// Slots this node was moving whose keys are all gone (`migrate`), reported in heartbeats
    /// until the control plane gives them to their targets.
    drained: parking_lot::Mutex<Vec<u16>>,
    /// Asks for a heartbeat now rather than at the next period (the mover has drained every slot
    /// it was given: the control plane can flip them at once).
    heartbeat_soon: tokio::sync::Notify,
}

/// A topology with its health counted once, when it arrives, so the cluster rule applied to every
/// command (`Topology::route_with`) does not recount 16384 slots each time.
pub struct Snapshot {
    pub topology: Arc<Topology>,
    pub health: Health,
    /// What `topology` makes this node.
    pub role: AssignedRole,
}

impl Snapshot {
    /// The node's own reading of `topology`: it never sees itself as PFAIL/FAIL, as a Redis node
    /// never flags `myself` (it is running, so it is not failed). The control plane clears the
    /// flag only at this node's first heartbeat; until then the topology it registered with still
    /// carries it, and the node must serve its slots already when clients are routed to it.
    fn new(mut topology: Topology, myself: &NodeId) -> Snapshot {
        if let Some(me) = topology
            .index_of(myself)
            .and_then(|i| topology.observed.nodes.get_mut(i))
        {
            me.pfail = false;
            me.fail = false;
        }
        let health = topology.health();
        let role = AssignedRole::of(&topology, myself);
        Snapshot {
            topology: Arc::new(topology),
            health,
            role,
        }
    }
}

/// Messages exchanged with peers and the control plane, for CLUSTER INFO.
#[derive(Default)]
struct Counters {
    /// Peer `PING`s and heartbeats sent.
    ping_sent: AtomicU64,
    /// Peer `PONG`s and heartbeat answers received.
    pong_received: AtomicU64,
    /// Topologies received from the control plane.
    ping_received: AtomicU64,
    pong_sent: AtomicU64,
}

impl ClusterView {
    /// A node's view before it has heard from the control plane: the empty default topology
    /// (every keyed command answers CLUSTERDOWN by the rule) and writes refused until the first
    /// registration or heartbeat succeeds.
    pub fn new(myself: NodeId) -> ClusterView {
        ClusterView::with_lease(myself, Topology::default(), Lease::new())
    }

    /// A view with a fixed topology and writes allowed, with no control plane behind it: for tests
    /// of the data path.
    pub fn standalone(myself: NodeId, topology: Topology) -> ClusterView {
        ClusterView::with_lease(myself, topology, Lease::unconditional())
    }

    fn with_lease(myself: NodeId, topology: Topology, lease: Lease) -> ClusterView {
        let snapshot = Snapshot::new(topology, &myself);
        ClusterView {
            assigned: tokio::sync::watch::Sender::new(snapshot.role.clone()),
            changed: tokio::sync::watch::Sender::new(snapshot.topology.version),
            handing_over: AtomicBool::new(snapshot.topology.is_handing_over(&myself)),
            control_plane: std::sync::OnceLock::new(),
            drained: parking_lot::Mutex::new(Vec::new()),
            heartbeat_soon: tokio::sync::Notify::new(),
            topology: ArcSwap::from_pointee(snapshot),
            myself,
            offer_lock: Mutex::new(()),
            lease,
            peers: PeerTable::default(),
            counters: Counters::default(),
        }
    }

    /// Replaces the topology if `topology` supersedes the one held (a higher version, or a newer
    /// control-plane history: see `Stamp::supersedes`).
    pub fn offer_topology(&self, topology: Topology) -> bool {
        let _guard = self.offer_lock.lock();
        let held = self.topology.load();
        if !topology.supersedes(&held.topology) {
            return false;
        }
        if topology.identity != held.topology.identity && held.topology.identity.generation > 0 {
            tracing::warn!(
                cluster_id = %topology.identity.cluster_id,
                generation = topology.identity.generation,
                previous_cluster_id = %held.topology.identity.cluster_id,
                previous_generation = held.topology.identity.generation,
                "the control plane started a new history (it lost its state?): following it"
            );
        }
        tracing::info!(
            version = topology.version,
            previous = held.topology.version,
            current_epoch = topology.intent.current_epoch,
            nodes = topology.nodes().len(),
            created = topology.intent.created,
            "new topology"
        );
        let next = Snapshot::new(topology, &self.myself);
        let handing_over = next.topology.is_handing_over(&self.myself);
        if handing_over != self.handing_over.swap(handing_over, Ordering::AcqRel) {
            tracing::info!(
                handing_over,
                "manual failover: writes {}",
                if handing_over { "stopped" } else { "resumed" }
            );
        }
        if next.role != held.role {
            role::role_changed(&self.myself, &held.role, &next.role);
            self.assigned.send_replace(next.role.clone());
        }
        let version = next.topology.version;
        self.topology.store(Arc::new(next));
        self.changed.send_replace(version);
        true
    }

    /// Follows the topology's changes: the version held, then each one replacing it.
    pub fn watch_topology(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Follows the role the topology assigns: the current one first, then each change.
    pub fn watch_assigned_role(&self) -> tokio::sync::watch::Receiver<AssignedRole> {
        self.assigned.subscribe()
    }

    /// What the topology held makes this node: master, or replica of a master at a bus address.
    pub fn assigned_role(&self) -> AssignedRole {
        self.topology.load().role.clone()
    }

    /// This node's role in the topology held (master until a topology says otherwise).
    pub fn my_role(&self) -> Role {
        self.topology.load().role.role()
    }

    /// The master this node replicates, if the topology held makes it a replica.
    pub fn my_master(&self) -> Option<NodeId> {
        self.topology.load().role.master().cloned()
    }

    /// This node's id.
    pub fn myself(&self) -> &NodeId {
        &self.myself
    }

    /// The newest topology received; cheap (an `Arc` clone, no lock).
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.topology.load().topology)
    }

    /// Where the topology held stands: what registration and heartbeats report.
    pub fn stamp(&self) -> Stamp {
        self.topology.load().topology.stamp()
    }

    /// The newest topology with its health: what the per-command cluster rule reads.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.topology.load_full()
    }

    /// False once the control plane has been unreachable for longer than node-timeout: the node
    /// then refuses writes.
    pub fn writes_allowed(&self) -> bool {
        self.writes_allowed_at(Instant::now())
    }

    /// The newest topology with its health, borrowed without touching the `Arc`'s count (two
    /// atomic operations fewer than `snapshot`): for the cluster rule every command passes. Not
    /// to be held across an await.
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.topology.load()
    }

    /// `writes_allowed` at a given time, with node-timeout from the topology held.
    pub fn writes_allowed_at(&self, now: Instant) -> bool {
        self.writes_allowed_under(&self.topology.load().topology, now)
    }

    /// `writes_allowed_at` with the node-timeout of a topology the caller already holds.
    pub fn writes_allowed_under(&self, topology: &Topology, now: Instant) -> bool {
        self.lease.valid_at(now, node_timeout(topology))
    }

    /// A client of the control plane (`None` for a view with no control plane behind it).
    pub fn control_plane(&self) -> Option<tessera_proto::control_plane::Client> {
        self.control_plane.get().cloned()
    }

    /// Records the slots this node has drained of keys (`migrate`), for the heartbeats.
    pub fn set_drained(&self, slots: Vec<u16>) {
        *self.drained.lock() = slots;
    }

    /// The drained slots to report.
    pub fn drained(&self) -> Vec<u16> {
        self.drained.lock().clone()
    }

    /// Sends the next heartbeat now (the drained slots are worth reporting before the period).
    pub fn heartbeat_soon(&self) {
        self.heartbeat_soon.notify_one();
    }

    /// Until `heartbeat_soon` was called (at once if it was since the last heartbeat).
    pub(crate) async fn heartbeat_wanted(&self) {
        self.heartbeat_soon.notified().await;
    }

    /// Whether this node is the master of a manual failover in progress and must take no write.
    pub fn is_handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Acquire)
    }

    /// Records a successful exchange with the control plane begun at `sent`.
    pub fn renew_lease_at(&self, sent: Instant) {
        self.lease.renew_at(sent);
    }

    /// What this node sees of its peers now: `(peer, reachable)` for every other node in the
    /// topology.
    pub fn peer_observations(&self) -> Vec<probe::PeerSeen> {
        let topology = self.topology();
        self.peers.observations(
            &topology,
            &self.myself,
            Instant::now(),
            node_timeout(&topology),
        )
    }

    /// The peer table, for recording probe results.
    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    /// Heartbeat / probe message counters for CLUSTER INFO: pings are the peer probes and
    /// heartbeats this node sent, pongs the answers it got; received pings count the topology
    /// messages the control plane pushed to it.
    pub fn message_stats(&self) -> MessageStats {
        MessageStats {
            ping_sent: self.counters.ping_sent.load(Ordering::Relaxed),
            pong_sent: self.counters.pong_sent.load(Ordering::Relaxed),
            ping_received: self.counters.ping_received.load(Ordering::Relaxed),
            pong_received: self.counters.pong_received.load(Ordering::Relaxed),
        }
    }
}

impl TopologyHolder for ClusterView {
    fn held(&self) -> Stamp {
        self.stamp()
    }

    fn offer(&self, topology: Topology) {
        self.counters.ping_received.fetch_add(1, Ordering::Relaxed);
        self.offer_topology(topology);
    }
}

/// What the cluster tasks need from the node: its view, and its key count for heartbeats.
/// A trait so the tasks can be tested without a keyspace.
pub trait Member: Send + Sync + 'static {
    fn cluster(&self) -> &ClusterView;
    fn key_count(&self) -> u64;
    /// How much of its master's write stream this node has applied (a master: its own offset),
    /// reported in heartbeats: the control plane promotes the replica that has the most.
    fn replication_offset(&self) -> u64;
}

impl Member for NodeState {
    fn cluster(&self) -> &ClusterView {
        &self.cluster
    }

    fn key_count(&self) -> u64 {
        self.keyspace.len() as u64
    }

    /// While handing over, the offset is read once every write that passed the cluster rule
    /// before the handover arrived has finished (each holds its slot gate): it is final, and the
    /// control plane promotes the replica only once the replica has reached it.
    fn replication_offset(&self) -> u64 {
        if self.cluster.is_handing_over() {
            self.keyspace.gates().wait_for_commands();
        }
        self.replication.offset()
    }
}

/// How this node presents itself to the control plane.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The control plane's gRPC URL.
    pub control_plane: String,
    pub announce_host: String,
    pub announce_port: u16,
    pub announce_bus_port: u16,
}

/// The running cluster tasks.
pub struct ClusterTasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl ClusterTasks {
    /// Stops every task and waits for them to end.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Starts registration and heartbeats, the topology watch and the peer probes. They run until
/// `ClusterTasks::stop`, independently of the server's shutdown, so the node keeps its lease and
/// topology while it drains clients.
pub fn start(
    member: Arc<dyn Member>,
    registration: Registration,
) -> Result<ClusterTasks, ClusterError> {
    let client = tessera_proto::control_plane::connect_lazy(&registration.control_plane)?;
    let _ = member.cluster().control_plane.set(client.clone());
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    tracker.spawn(control::membership(
        Arc::clone(&member),
        client.clone(),
        registration,
        stop.clone(),
    ));
    tracker.spawn(control::watch(Arc::clone(&member), client, stop.clone()));
    tracker.spawn(probe::run(member, stop.clone()));
    Ok(ClusterTasks { tracker, stop })
}

/// The topology's node-timeout; an unset (0) one is read as the default, not as "expire at once".
fn node_timeout(topology: &Topology) -> Duration {
    match topology.settings().node_timeout_ms {
        0 => Duration::from_millis(tessera_proto::topology::Settings::default().node_timeout_ms),
        ms => Duration::from_millis(ms),
    }
}

/// Heartbeat and probe period, node_timeout / 10 within [100 ms, 200 ms], and the timeout of one
/// probe or control plane call, a quarter of node-timeout within [100 ms, 3 s]: short enough that
/// one slow call cannot outlast the lease. The period does not grow with node-timeout: a killed
/// master is failed over as soon as its peers' reports of its refused port arrive, so their
/// cadence bounds that failover (the target: writes resume within 1 s at any
/// node-timeout).
fn intervals(topology: &Topology) -> (Duration, Duration) {
    let node_timeout = node_timeout(topology);
    let period = (node_timeout / 10).clamp(Duration::from_millis(100), Duration::from_millis(200));
    let timeout = (node_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(3));
    (period, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_random_bytes([n; 20])
    }

    fn version(v: u64) -> Topology {
        Topology {
            version: v,
            ..Topology::default()
        }
    }

    #[test]
    fn takes_only_newer_topologies() {
        let view = ClusterView::new(id(1));
        assert_eq!(view.topology().version, 0);
        assert!(!view.offer_topology(version(0)));
        assert!(view.offer_topology(version(3)));
        assert!(!view.offer_topology(version(2)));
        assert!(!view.offer_topology(version(3)));
        assert_eq!(view.topology().version, 3);
        assert!(view.offer_topology(version(4)));
        assert_eq!(view.topology().version, 4);
    }

    #[test]
    fn a_node_never_sees_itself_failed() {
        use tessera_proto::topology::{Access, NodeSpec};
        let node = |n: u8| NodeSpec {
            config_epoch: u64::from(n),
            ..NodeSpec::master(id(n), "127.0.0.1", 7000 + u16::from(n))
        };
        let slots = (0..16384)
            .map(|slot| Some(u16::from(slot >= 8192)))
            .collect();
        let mut topology = Topology::created(vec![node(1), node(2)], slots);
        for status in &mut topology.observed.nodes {
            status.pfail = true;
            status.fail = true;
        }
        let view = ClusterView::new(id(1));
        assert!(view.offer_topology(topology));
        let snapshot = view.snapshot();
        assert!(!snapshot.topology.status(&id(1)).failing());
        assert!(snapshot.topology.status(&id(2)).fail);
        assert!(
            !snapshot.health.ok,
            "the failed peer still downs the cluster"
        );

        let mut healed = snapshot.topology.as_ref().clone();
        healed.version = 2;
        healed.observed.nodes[1].fail = false;
        healed.observed.nodes[1].pfail = false;
        assert!(view.offer_topology(healed));
        let snapshot = view.snapshot();
        assert!(snapshot.health.ok);
        let owner = snapshot
            .topology
            .route_with(&snapshot.health, 0, Access::Write);
        assert_eq!(owner.map(|n| n.id.clone()), Ok(id(1)));
    }

    #[test]
    fn a_control_plane_that_lost_its_state_is_followed() {
        use tessera_proto::topology::{ClusterId, Identity};
        let history = |generation: u64, version: u64| Topology {
            identity: Identity {
                cluster_id: ClusterId::from_random_bytes([generation as u8; 20]),
                generation,
            },
            version,
            ..Topology::default()
        };
        let view = ClusterView::new(id(1));
        assert!(view.offer_topology(history(10, 50)));
        // Its lower versions in the same history are ignored...
        assert!(!view.offer_topology(history(10, 3)));
        // ...but a new history starts over at a low version and is taken.
        assert!(view.offer_topology(history(11, 1)));
        assert_eq!(view.stamp().identity.generation, 11);
        assert_eq!(view.stamp().version, 1);
        assert!(!view.offer_topology(history(10, 99)), "an older history");
    }

    #[test]
    fn lease_follows_the_topology_node_timeout() {
        let view = ClusterView::new(id(1));
        let t0 = Instant::now();
        assert!(!view.writes_allowed_at(t0), "no contact yet");
        view.renew_lease_at(t0);
        assert!(view.writes_allowed_at(t0 + Duration::from_secs(14)));
        assert!(!view.writes_allowed_at(t0 + Duration::from_millis(15_001)));
        let mut short = version(1);
        short.intent.settings.node_timeout_ms = 500;
        view.offer_topology(short);
        assert!(view.writes_allowed_at(t0 + Duration::from_millis(500)));
        assert!(!view.writes_allowed_at(t0 + Duration::from_millis(501)));
    }

    #[test]
    fn standalone_always_allows_writes() {
        let view = ClusterView::standalone(id(1), version(7));
        assert!(view.writes_allowed());
        assert!(view.writes_allowed_at(Instant::now() + Duration::from_secs(3600)));
        assert_eq!(view.myself(), &id(1));
        assert_eq!(view.topology().version, 7);
    }

    #[test]
    fn intervals_follow_node_timeout() {
        let mut topology = Topology::default();
        assert_eq!(
            intervals(&topology),
            (Duration::from_millis(200), Duration::from_secs(3))
        );
        topology.intent.settings.node_timeout_ms = 500;
        assert_eq!(
            intervals(&topology),
            (Duration::from_millis(100), Duration::from_millis(125))
        );
    }

    #[test]
    fn a_node_knows_when_it_is_a_replica() {
        use tessera_proto::topology::NodeSpec;
        let master = NodeSpec {
            config_epoch: 1,
            ..NodeSpec::master(id(1), "127.0.0.1", 7000)
        };
        let mut topology = Topology::created(
            vec![master, NodeSpec::master(id(2), "127.0.0.1", 7001)],
            vec![Some(0); 16384].into(),
        );
        let view = ClusterView::new(id(2));
        assert_eq!(view.my_role(), Role::Master, "a fresh node is a master");
        assert!(view.offer_topology(topology.clone()));
        assert_eq!((view.my_role(), view.my_master()), (Role::Master, None));

        topology.version = 2;
        topology.intent.nodes[1].role = Role::Replica;
        topology.intent.nodes[1].master_id = Some(id(1));
        assert!(view.offer_topology(topology.clone()));
        assert_eq!(view.my_role(), Role::Replica);
        assert_eq!(view.my_master(), Some(id(1)));
        assert_eq!(
            view.assigned_role(),
            AssignedRole::Replica {
                master: id(1),
                address: Some(crate::replication::MasterAddress {
                    host: "127.0.0.1".into(),
                    port: 7000,
                    bus_port: 17000,
                }),
            }
        );
        assert_eq!(
            *view.watch_assigned_role().borrow(),
            view.assigned_role(),
            "the replication task sees the change"
        );
        // The master moving its bus is a change too.
        topology.version = 3;
        topology.intent.nodes[0].bus_port = 17100;
        assert!(view.offer_topology(topology));
        assert!(matches!(
            view.assigned_role(),
            AssignedRole::Replica { address: Some(a), .. } if a.bus_addr() == "127.0.0.1:17100"
        ));
    }
}
