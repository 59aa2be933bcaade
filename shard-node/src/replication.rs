//! Replication, as Redis's: a master's writes form one ordered log with byte offsets (`log`), kept
//! in an in-memory backlog (`backlog`) whether or not the AOF is on; a replica takes a snapshot,
//! then the stream of writes from an offset, and after a short break continues from its offset
//! (PSYNC `+CONTINUE`) instead of taking a new snapshot (`+FULLRESYNC`). The replication id and
//! offset survive restarts (`ids`).
//!
//! - `master`: serving a replica on the cluster bus (REPLCONF, PSYNC, the snapshot, the stream,
//!   the replica's ACKs), with `snapshot` building the full-resync payload and `capture` keeping
//!   the writes made meanwhile;
//! - `replica`: following a master (connect, PSYNC, load, apply, ack, reconnect);
//! - `report`: ROLE and INFO replication, in Redis 7.0's formats.
//!
//! The cluster layer decides roles (the control plane's topology) and calls `follow` / `promote`;
//! REPLICAOF on the client port is refused, as on a Redis cluster node. A replica refuses client
//! writes (READONLY), never expires keys itself (its master's DELs remove them) and never evicts.

pub mod backlog;
pub mod capture;
pub mod ids;
pub mod log;
pub(crate) mod master;
pub mod replica;
pub mod report;
mod snapshot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use ids::ReplIds;
pub use log::WriteLog;
pub(crate) use master::serve_replica;

use crate::cluster::AssignedRole;
use crate::state::NodeState;

/// How often the replication state file is rewritten while the node runs (when it changed).
const SAVE_PERIOD: Duration = Duration::from_secs(1);
/// How often a master with replicas PINGs them through the stream (Redis's
/// repl-ping-replica-period), so a replica can tell a silent master from a dead link.
const PING_PERIOD: Duration = Duration::from_secs(10);

/// Where a replica's master is: its client address (what ROLE and INFO show, as Redis shows the
/// address REPLICAOF named) and its cluster bus port (where replication traffic goes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddress {
    pub host: String,
    pub port: u16,
    pub bus_port: u16,
}

impl MasterAddress {
    /// `host:bus_port`, what the replica connects to.
    pub fn bus_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.bus_port)
        } else {
            format!("{}:{}", self.host, self.bus_port)
        }
    }
}

/// This node's role, as the cluster layer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica(MasterAddress),
}

/// A replica's link to its master: Redis's repl_state as ROLE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Waiting to (re)connect.
    Connect = 0,
    /// Connecting and handshaking.
    Connecting = 1,
    /// Receiving the snapshot.
    Sync = 2,
    /// Following the stream.
    Connected = 3,
}

impl LinkState {
    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connecting,
            2 => LinkState::Sync,
            3 => LinkState::Connected,
            _ => LinkState::Connect,
        }
    }

    /// ROLE's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// What a replica knows about its link, for ROLE and INFO.
#[derive(Debug)]
pub struct LinkStatus {
    state: AtomicU8,
    /// Last time anything came from the master.
    last_io: Mutex<Option<Instant>>,
    /// Since when the link is down (`None`: never up yet, or up).
    down_since: Mutex<Option<Instant>>,
    /// Full resyncs and partial ones done by this link (tests and logs tell them apart).
    pub full_syncs: AtomicU64,
    pub partial_syncs: AtomicU64,
}

impl LinkStatus {
    fn new() -> LinkStatus {
        LinkStatus {
            state: AtomicU8::new(LinkState::Connect as u8),
            last_io: Mutex::new(None),
            down_since: Mutex::new(None),
            full_syncs: AtomicU64::new(0),
            partial_syncs: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, state: LinkState) {
        let was = LinkState::from_u8(self.state.swap(state as u8, Ordering::AcqRel));
        if was == LinkState::Connected && state != LinkState::Connected {
            *self.down_since.lock() = Some(Instant::now());
        }
        if state == LinkState::Connected {
            *self.down_since.lock() = None;
        }
    }

    fn touch(&self) {
        *self.last_io.lock() = Some(Instant::now());
    }

    pub fn last_io(&self) -> Option<Instant> {
        *self.last_io.lock()
    }

    pub fn down_since(&self) -> Option<Instant> {
        *self.down_since.lock()
    }
}

/// Where a replica served by this node stands (Redis's slave replstate, as INFO names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    WaitBgsave = 0,
    SendBulk = 1,
    Online = 2,
}

/// A replica this node serves.
#[derive(Debug)]
pub struct ReplicaLink {
    pub id: u64,
    /// The replica's address as seen from here.
    pub ip: String,
    /// Its client port (REPLCONF listening-port).
    pub port: u16,
    state: AtomicU8,
    /// The offset it acknowledged (REPLCONF ACK).
    ack: AtomicU64,
    last_ack: Mutex<Instant>,
}

impl ReplicaLink {
    pub fn state(&self) -> ReplicaState {
        match self.state.load(Ordering::Acquire) {
            0 => ReplicaState::WaitBgsave,
            1 => ReplicaState::SendBulk,
            _ => ReplicaState::Online,
        }
    }

    fn set_state(&self, state: ReplicaState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub fn acked(&self) -> u64 {
        self.ack.load(Ordering::Acquire)
    }

    pub fn last_ack(&self) -> Instant {
        *self.last_ack.lock()
    }
}

enum RoleState {
    Master,
    Replica {
        master: MasterAddress,
        link: Arc<LinkStatus>,
        stop: CancellationToken,
    },
}

/// A client's WAIT, awaited by its connection (`cmd::replication::wait`).
#[derive(Debug, Clone, Copy)]
pub struct WaitFor {
    pub offset: u64,
    pub replicas: usize,
    /// `None`: wait for ever (timeout 0).
    pub deadline: Option<tokio::time::Instant>,
}

/// The node's replication: its write log, its history (ids), its role, and the replicas it
/// serves. Shared through `NodeState`.
pub struct Replication {
    pub log: WriteLog,
    ids: Mutex<ReplIds>,
    role: Mutex<RoleState>,
    /// `role` is Replica: read on every lookup and write, so an atomic rather than the lock.
    replica: AtomicBool,
    replicas: Mutex<BTreeMap<u64, Arc<ReplicaLink>>>,
    next_link: AtomicU64,
    /// Notified on every ACK (WAIT waits on it).
    acks: Notify,
    /// Cancels the replica links this node serves: `follow` replaces it, dropping them all.
    serving: Mutex<CancellationToken>,
    /// Stops everything replication runs (shutdown).
    stop: CancellationToken,
    tasks: TaskTracker,
    data_dir: Option<PathBuf>,
    /// This node's client port, sent to a master as REPLCONF listening-port.
    announce_port: AtomicU16,
    /// Bytes a full resync may keep for one replica while it is sent the snapshot.
    pub capture_limit: usize,
}

impl Default for Replication {
    fn default() -> Self {
        Replication::new(log::DEFAULT_BACKLOG_SIZE, None)
    }
}

/// Redis's client-output-buffer-limit for replicas (hard limit, 256mb).
pub const REPLICA_OUTPUT_LIMIT: usize = 256 * 1024 * 1024;

impl Replication {
    /// A master with a fresh history at offset 0; `data_dir` keeps the state file (and temporary
    /// snapshots) when there is one.
    pub fn new(backlog_size: u64, data_dir: Option<PathBuf>) -> Replication {
        let stop = CancellationToken::new();
        Replication {
            log: WriteLog::new(backlog_size, 0),
            ids: Mutex::new(ReplIds::fresh()),
            role: Mutex::new(RoleState::Master),
            replica: AtomicBool::new(false),
            replicas: Mutex::new(BTreeMap::new()),
            next_link: AtomicU64::new(1),
            acks: Notify::new(),
            serving: Mutex::new(stop.child_token()),
            stop,
            tasks: TaskTracker::new(),
            data_dir,
            announce_port: AtomicU16::new(0),
            capture_limit: REPLICA_OUTPUT_LIMIT,
        }
    }

    /// A standalone master whose writes go to `aof` (tests that build a `NodeState` by hand).
    pub fn with_aof(aof: Option<Arc<crate::aof::Aof>>) -> Replication {
        let replication = Replication::default();
        if let Some(aof) = aof {
            replication.log.attach_aof(aof);
        }
        replication
    }

    /// Takes the history read back at start (`ids::Saved::resume`).
    pub fn resume(&self, ids: ReplIds, offset: u64) {
        *self.ids.lock() = ids;
        self.log.reset(offset);
    }

    /// Starts the periodic save of the state file; `announce_port` is this node's client port.
    pub fn start(&self, state: &Arc<NodeState>, announce_port: u16) {
        self.announce_port.store(announce_port, Ordering::Relaxed);
        self.tasks
            .spawn(ping_replicas(Arc::clone(state), self.stop.clone()));
        self.tasks.spawn(follow_assigned_role(
            Arc::clone(state),
            state.cluster.watch_assigned_role(),
            self.stop.clone(),
        ));
        if self.data_dir.is_some() {
            self.tasks
                .spawn(save_periodically(Arc::clone(state), self.stop.clone()));
        }
    }

    /// Stops following, serving replicas and saving, and waits for those tasks. Call after the
    /// clients have drained and before the AOF's last flush, so nothing writes after it.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Writes the state file with the AOF's final size (clean shutdown; see `ids`).
    pub fn save_final(&self, aof_size: Option<u64>) -> Result<(), crate::error::ReplicationError> {
        let Some(dir) = &self.data_dir else {
            return Ok(());
        };
        ids::save(dir, &self.saved(aof_size))
    }

    fn saved(&self, aof_size: Option<u64>) -> ids::Saved {
        ids::Saved {
            replid: self.ids.lock().replid.clone(),
            offset: self.log.offset(),
            aof_size,
        }
    }

    /// Whether this node is a replica (one atomic load: the data path reads it).
    pub fn is_replica(&self) -> bool {
        self.replica.load(Ordering::Acquire)
    }

    pub fn role(&self) -> Role {
        match &*self.role.lock() {
            RoleState::Master => Role::Master,
            RoleState::Replica { master, .. } => Role::Replica(master.clone()),
        }
    }

    /// The replica's link to its master (`None` on a master).
    pub fn link(&self) -> Option<Arc<LinkStatus>> {
        match &*self.role.lock() {
            RoleState::Master => None,
            RoleState::Replica { link, .. } => Some(Arc::clone(link)),
        }
    }

    /// master_repl_offset: on a master its log's end, on a replica the offset of the master's
    /// stream it has applied.
    pub fn offset(&self) -> u64 {
        self.log.offset()
    }

    pub fn ids(&self) -> ReplIds {
        self.ids.lock().clone()
    }

    /// The replicas this node serves.
    pub fn replicas(&self) -> Vec<Arc<ReplicaLink>> {
        self.replicas.lock().values().cloned().collect()
    }

    /// Follows `master` (the cluster layer calls it when the topology makes this node a replica):
    /// drops the replicas this node served, refuses client writes, and starts the link, which
    /// first tries to continue this node's own history (so a node switched to a sibling promoted
    /// from the same master continues without a full resync, as Redis's PSYNC after a failover).
    /// Following the master already followed does nothing.
    pub fn follow(&self, state: &Arc<NodeState>, master: MasterAddress) {
        let mut role = self.role.lock();
        if let RoleState::Replica {
            master: current, ..
        } = &*role
        {
            if *current == master {
                return;
            }
        }
        if let RoleState::Replica { stop, .. } = &*role {
            stop.cancel();
        }
        let link = Arc::new(LinkStatus::new());
        let stop = self.stop.child_token();
        *role = RoleState::Replica {
            master: master.clone(),
            link: Arc::clone(&link),
            stop: stop.clone(),
        };
        self.replica.store(true, Ordering::Release);
        drop(role);
        // Our replicas must follow the new history from its start, as Redis disconnects them.
        let old = std::mem::replace(&mut *self.serving.lock(), self.stop.child_token());
        old.cancel();
        tracing::info!(master = %master.bus_addr(), "following a master");
        self.tasks
            .spawn(replica::run(Arc::clone(state), master, link, stop));
    }

    /// Becomes a master (REPLICAOF NO ONE, a failover): stops following and starts a new history
    /// that continues the old one (replid2), so the old master's other replicas can continue from
    /// their offsets once they follow this node. A master stays as it is.
    pub fn promote(&self) {
        let mut role = self.role.lock();
        let RoleState::Replica { stop, .. } = &*role else {
            return;
        };
        stop.cancel();
        *role = RoleState::Master;
        self.replica.store(false, Ordering::Release);
        drop(role);
        let offset = self.log.offset();
        let mut ids = self.ids.lock();
        if ids.valid {
            ids.shift(offset);
        } else {
            // Promoted in the middle of a snapshot: its data is no history at all.
            *ids = ReplIds::fresh();
        }
        tracing::info!(replid = %ids.replid, offset, "promoted to master");
    }

    /// Replicas whose acknowledged offset reached `offset` (Redis's replicationCountAcksByOffset:
    /// online ones only).
    pub fn count_acked(&self, offset: u64) -> usize {
        self.replicas
            .lock()
            .values()
            .filter(|r| r.state() == ReplicaState::Online && r.acked() >= offset)
            .count()
    }

    /// Asks every replica for an ACK now (REPLCONF GETACK * in the stream), as Redis does for
    /// a WAIT that is not satisfied yet.
    pub fn request_acks(&self) {
        if self.replicas.lock().is_empty() {
            return;
        }
        self.log.append_stream_only(&[
            Bytes::from_static(b"REPLCONF"),
            Bytes::from_static(b"GETACK"),
            Bytes::from_static(b"*"),
        ]);
    }

    /// WAIT: until `wait.replicas` replicas acknowledged `wait.offset`, or the deadline; returns
    /// how many did.
    pub async fn wait_for_acks(&self, wait: WaitFor) -> usize {
        loop {
            let notified = self.acks.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let acked = self.count_acked(wait.offset);
            if acked >= wait.replicas {
                return acked;
            }
            match wait.deadline {
                Some(deadline) => tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(deadline) => return self.count_acked(wait.offset),
                },
                None => notified.await,
            }
        }
    }

    fn register_replica(&self, ip: String, port: u16) -> Arc<ReplicaLink> {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(ReplicaLink {
            id,
            ip,
            port,
            state: AtomicU8::new(ReplicaState::WaitBgsave as u8),
            ack: AtomicU64::new(0),
            last_ack: Mutex::new(Instant::now()),
        });
        self.replicas.lock().insert(id, Arc::clone(&link));
        link
    }

    fn unregister_replica(&self, id: u64) {
        self.replicas.lock().remove(&id);
        self.acks.notify_waiters();
    }

    fn acked(&self, link: &ReplicaLink, offset: u64) {
        link.ack.fetch_max(offset, Ordering::AcqRel);
        *link.last_ack.lock() = Instant::now();
        self.acks.notify_waiters();
    }

    fn set_ids(&self, ids: ReplIds) {
        *self.ids.lock() = ids;
    }

    fn update_ids(&self, change: impl FnOnce(&mut ReplIds)) {
        change(&mut self.ids.lock());
    }

    fn scratch_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// PINGs the replicas every `PING_PERIOD` through the stream, as Redis's replicationCron (a PING
/// is part of the stream: it moves the offset).
async fn ping_replicas(state: Arc<NodeState>, stop: CancellationToken) {
    let repl = &state.replication;
    let mut ticker = tokio::time::interval(PING_PERIOD);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !repl.is_replica() && !repl.replicas.lock().is_empty() {
            repl.log.append_stream_only(&[Bytes::from_static(b"PING")]);
        }
    }
}

/// Rewrites the state file every `SAVE_PERIOD` when the replid or offset changed, so a crash
/// loses little of the offset (the history itself is then renewed, see `ids`).
async fn save_periodically(state: Arc<NodeState>, stop: CancellationToken) {
    let repl = &state.replication;
    let Some(dir) = repl.data_dir.clone() else {
        return;
    };
    let mut last: Option<ids::Saved> = None;
    let mut ticker = tokio::time::interval(SAVE_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = repl.saved(None);
        if last.as_ref() == Some(&now) {
            continue;
        }
        let (dir, saving) = (dir.clone(), now.clone());
        match tokio::task::spawn_blocking(move || ids::save(&dir, &saving)).await {
            Ok(Ok(())) => last = Some(now),
            Ok(Err(error)) => tracing::warn!(%error, "cannot save the replication state"),
            Err(error) => tracing::warn!(%error, "the replication state save stopped"),
        }
    }
}

/// Makes replication follow the role the topology assigns (`ClusterView::watch_assigned_role`):
/// a replica follows its master's bus; a replica made master (a failover) is promoted. A node
/// that starts as a master is left as it is, so harnesses may drive `follow` themselves.
async fn follow_assigned_role(
    state: Arc<NodeState>,
    mut assigned: tokio::sync::watch::Receiver<AssignedRole>,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        let role = assigned.borrow_and_update().clone();
        match role {
            AssignedRole::Replica {
                address: Some(master),
                ..
            } => state.replication.follow(&state, master),
            AssignedRole::Replica {
                address: None,
                master,
            } => {
                tracing::warn!(%master, "the topology names a master it does not list");
            }
            AssignedRole::Master if !first => state.replication.promote(),
            AssignedRole::Master => {}
        }
        first = false;
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = assigned.changed() => if changed.is_err() { return },
        }
    }
}
