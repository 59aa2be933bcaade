//! The doing half of the control plane: holds the `ClusterState` behind one lock, runs each change
//! on a copy, saves the copy before it becomes the truth (an RPC answers only after its change is
//! durable), and publishes every new version on a `watch` channel for WatchTopology.
//!
//! With an election (the etcd store), only the leader changes anything: a follower answers reads
//! from the state it last loaded and refuses changes with `Error::NotLeader`. A leader reloads
//! the stored state once at the start of each term before its first change, and whenever a save
//! finds that someone else wrote (`StoreError::Conflict`), so it never decides on a stale copy.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tessera_proto::topology::{NodeId, Settings, Stamp, Topology};
use tokio::sync::{watch, Mutex};

use crate::error::{Error, FailoverRefused, StoreError};
use crate::failover::{lease_expiry_ms, MANUAL_TIMEOUT};
use crate::failure::Probe;
use crate::leader::Leader;
use crate::moves::PlannedMove;
use crate::resolve::{self, Announced};
use crate::settings::SettingChange;
use crate::state::{Beat, ClusterState, FailoverMode, Registration, SetSlot};
use crate::store::{Revision, StateStore};

/// The cluster's single writer.
pub struct Controller {
    inner: Mutex<Inner>,
    store: Arc<dyn StateStore>,
    /// The election this control plane takes part in; `None`: it is the only one, always leader.
    leader: Option<Leader>,
    published: watch::Sender<Arc<Topology>>,
}

/// What the lock guards: the state, the store revision it was loaded or saved at, and the term
/// it was loaded in.
struct Inner {
    state: ClusterState,
    revision: Revision,
    /// The leader key's create_revision of the term this state was (re)loaded in: a new term
    /// reloads before its first change.
    term: Option<i64>,
}

/// Unix time in ms, read once, then advanced by the monotonic clock: the control plane's one
/// clock. Fencing waits are measured on it, so a wall clock stepped forward (NTP, an operator)
/// can never cut a lease wait short; it stays close to Unix time for what operators read.
pub fn now_ms() -> u64 {
    static ORIGIN: OnceLock<(u64, Instant)> = OnceLock::new();
    let (wall, start) = ORIGIN.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (wall, Instant::now())
    });
    wall + start.elapsed().as_millis() as u64
}

/// How long a store health check waits for a read.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the control plane waits for a connect probe: longer means hung, not refused.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// One connect probe of `address`: whether it was refused. A connection accepted is closed at
/// once; a timeout or any other error is "not refused" (a hung or unreachable host).
async fn probe_refused(address: &str) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

impl Controller {
    /// Loads the persisted state, or starts empty with `defaults` when nothing was saved yet.
    /// With `leader`, changes are made only while it holds a term.
    pub async fn open(
        store: Arc<dyn StateStore>,
        defaults: Settings,
        leader: Option<Leader>,
    ) -> Result<Controller, Error> {
        let now = now_ms();
        let loaded = store.load().await?;
        let state = match loaded.state {
            Some(persisted) => {
                let state = ClusterState::from_persisted(persisted, now)?;
                tracing::info!(
                    version = state.version(),
                    nodes = state.nodes().len(),
                    created = state.is_created(),
                    revision = %loaded.revision,
                    "loaded persisted state"
                );
                state
            }
            None => {
                // With an election, a control plane that has not led yet must not invent a
                // history: its placeholder (generation 0) is superseded by whatever the leader
                // saves, and the leader takes a real identity at its first change (`apply`).
                let mut identity = ClusterState::fresh_identity(now);
                if leader.is_some() {
                    identity.generation = 0;
                }
                tracing::info!(
                    cluster_id = %identity.cluster_id,
                    generation = identity.generation,
                    "no persisted state: starting an empty cluster"
                );
                ClusterState::new(defaults, identity)
            }
        };
        let (published, _) = watch::channel(Arc::new(state.snapshot(now)));
        Ok(Controller {
            inner: Mutex::new(Inner {
                state,
                revision: loaded.revision,
                term: None,
            }),
            store,
            leader,
            published,
        })
    }

    /// Whether this control plane may change the state now (always, without an election).
    pub fn is_leader(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| l.term().is_some())
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader {
            leader: self.leader.as_ref().and_then(|l| l.leadership().leader),
        }
    }

    /// Replaces the state with the stored one (kept as it is when nothing is stored), and
    /// publishes it when it supersedes what was published.
    async fn reload(&self, inner: &mut Inner, now: u64) -> Result<(), Error> {
        let loaded = self.store.load().await?;
        if let Some(persisted) = loaded.state {
            inner.state = ClusterState::from_persisted(persisted, now)?;
        }
        inner.revision = loaded.revision;
        tracing::info!(
            version = inner.state.version(),
            revision = %inner.revision,
            "reloaded the stored state"
        );
        let snapshot = Arc::new(inner.state.snapshot(now));
        self.published.send_if_modified(|current| {
            let newer = snapshot.stamp().supersedes(&current.stamp());
            if newer {
                *current = snapshot;
            }
            newer
        });
        Ok(())
    }

    /// A follower's refresh: loads the stored state, so its reads follow the leader's changes
    /// (as often as it is called). A leader's own state is the newest: left alone.
    pub async fn refresh(&self) -> Result<(), Error> {
        if self.is_leader() {
            return Ok(());
        }
        let mut inner = self.inner.lock().await;
        self.reload(&mut inner, now_ms()).await
    }

    /// The published topology: the current one, then every newer version.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Topology>> {
        self.published.subscribe()
    }

    /// Runs `change` on a copy of the state; when it reports a change, saves and publishes the copy
    /// before making it the truth. On error nothing is applied. Refused unless this control plane
    /// leads; the first change of a term reloads the stored state first.
    async fn apply<T>(
        &self,
        change: impl FnOnce(&mut ClusterState, u64) -> Result<(T, bool), Error>,
    ) -> Result<T, Error> {
        let term = match &self.leader {
            None => None,
            Some(leader) => Some(leader.term().ok_or_else(|| self.not_leader())?),
        };
        let now = now_ms();
        let mut inner = self.inner.lock().await;
        if let Some(term) = &term {
            if inner.term != Some(term.create_revision) {
                self.reload(&mut inner, now).await?;
                inner.term = Some(term.create_revision);
            }
            if inner.revision == Revision::NONE && inner.state.identity().generation == 0 {
                // Nothing stored yet: the first leader starts the history.
                let identity = ClusterState::fresh_identity(now);
                inner.state = ClusterState::new(inner.state.settings(), identity);
            }
        }
        let mut next = inner.state.clone();
        let (out, changed) = change(&mut next, now)?;
        if changed {
            match self.store.save(&next.to_persisted(), inner.revision).await {
                Ok(revision) => inner.revision = revision,
                Err(StoreError::NotLeader) => return Err(self.not_leader()),
                Err(conflict @ StoreError::Conflict { .. }) => {
                    // Someone else wrote: decide nothing more on this copy.
                    self.reload(&mut inner, now).await?;
                    return Err(conflict.into());
                }
                Err(e) => return Err(e.into()),
            }
            self.published.send_replace(Arc::new(next.snapshot(now)));
            tracing::debug!(version = next.version(), revision = %inner.revision, "published topology");
        }
        inner.state = next;
        Ok(out)
    }

    /// RegisterNode: returns the topology the node should start from.
    pub async fn register(&self, reg: Registration) -> Result<Arc<Topology>, Error> {
        tracing::info!(node = %reg.id, address = %format_args!("{}:{}", reg.host, reg.port), "node registered");
        self.apply(|state, now| {
            if state.is_removed(&reg.id) {
                return Err(Error::Removed(reg.id.to_string()));
            }
            let changed = state.register(reg, now);
            Ok((Arc::new(state.snapshot(now)), changed))
        })
        .await
    }

    /// Heartbeat: returns the stamp of the topology the control plane holds, and whether the
    /// node's write lease is renewed (`ClusterState::grant_lease`). A manual failover waiting on
    /// this heartbeat's offset completes here, without waiting for the next tick.
    pub async fn heartbeat(&self, beat: Beat) -> Result<(Stamp, bool), Error> {
        let (id, holds) = (beat.id.clone(), beat.holds.clone());
        self.apply(|state, now| {
            let mut changed = state.heartbeat(beat, now)?;
            changed |= state.advance_failovers(now);
            let granted = state.grant_lease(&id, &holds, now);
            Ok(((state.stamp(), granted), changed))
        })
        .await
    }

    /// Failover: starts it, then waits until the replica is master in the published topology
    /// (answering that topology), or until it cannot be (the handover was withdrawn, or the
    /// bound ran out: an error, and a FORCE request is dropped).
    pub async fn failover(
        &self,
        replica: NodeId,
        mode: FailoverMode,
    ) -> Result<Arc<Topology>, Error> {
        let mut published = self.subscribe();
        let node_timeout = self
            .apply(|state, now| {
                let changed = state.start_failover(&replica, mode, now)?;
                Ok((state.settings().node_timeout_ms, changed))
            })
            .await?;
        tracing::info!(replica = %replica, ?mode, "failover requested");
        // DEFAULT ends by itself within MANUAL_TIMEOUT; FORCE within one lease from now.
        let bound = match mode {
            FailoverMode::Default => MANUAL_TIMEOUT + Duration::from_secs(1),
            _ => Duration::from_millis(lease_expiry_ms(0, node_timeout) + 1_000),
        };
        let wait = async {
            loop {
                let topology = published.borrow_and_update().clone();
                if let Some(node) = topology.node(&replica) {
                    if node.role == tessera_proto::topology::Role::Master {
                        return Ok(topology);
                    }
                    if mode == FailoverMode::Default
                        && topology
                            .intent
                            .handover
                            .as_ref()
                            .is_none_or(|h| h.replica != replica)
                    {
                        return Err(FailoverRefused::TimedOut.into());
                    }
                }
                if published.changed().await.is_err() {
                    return Err(FailoverRefused::NotCompleted.into());
                }
            }
        };
        match tokio::time::timeout(bound, wait).await {
            Ok(result) => result,
            Err(_) => {
                self.inner.lock().await.state.cancel_forced(&replica);
                Err(FailoverRefused::NotCompleted.into())
            }
        }
    }

    /// The registered nodes' announced addresses, for matching operator-given addresses.
    async fn announced(&self) -> Vec<Announced> {
        let inner = self.inner.lock().await;
        inner
            .state
            .nodes()
            .iter()
            .map(|n| Announced {
                id: n.id.clone(),
                host: n.host.clone(),
                port: n.port,
            })
            .collect()
    }

    /// CreateCluster: matches addresses to nodes, then assigns slots and replicas (or only plans,
    /// on dry run). Returns the topology and the node each address named, in order.
    pub async fn create(
        &self,
        addresses: Vec<String>,
        replicas: u32,
        dry_run: bool,
    ) -> Result<(Topology, Vec<NodeId>), Error> {
        self.inner
            .lock()
            .await
            .state
            .check_create(addresses.len(), replicas)?;
        // Name resolution happens without the lock held.
        let ids = resolve::match_addresses(&addresses, &self.announced().await).await?;
        let plan = self
            .apply(|state, now| state.create(&ids, replicas, dry_run, now))
            .await?;
        if !dry_run {
            tracing::info!(
                nodes = ids.len(),
                replicas,
                version = plan.version,
                "cluster created"
            );
        }
        Ok((plan, ids))
    }

    /// AddReplica: the node at `address` becomes a replica of `master`. Returns the topology and
    /// the replica's id.
    pub async fn add_replica(
        &self,
        address: String,
        master: NodeId,
    ) -> Result<(Topology, NodeId), Error> {
        let ids = resolve::match_addresses(std::slice::from_ref(&address), &self.announced().await)
            .await?;
        let replica = ids
            .into_iter()
            .next()
            .ok_or(Error::UnknownAddress(address))?;
        let topology = self
            .apply(|state, now| {
                let changed = state.add_replica(&replica, &master)?;
                Ok((state.snapshot(now), changed))
            })
            .await?;
        tracing::info!(replica = %replica, master = %master, version = topology.version, "replica added");
        Ok((topology, replica))
    }

    /// RemoveNode: returns the topology without the node.
    pub async fn remove_node(&self, id: NodeId) -> Result<Topology, Error> {
        let topology = self
            .apply(|state, now| {
                let changed = state.remove(&id)?;
                Ok((state.snapshot(now), changed))
            })
            .await?;
        tracing::info!(node = %id, version = topology.version, "node removed");
        Ok(topology)
    }

    /// MoveSlots: records the moves; returns the topology that carries them.
    pub async fn move_slots(&self, slots: Vec<u16>, target: NodeId) -> Result<Topology, Error> {
        let topology = self
            .apply(|state, now| {
                let changed = state.move_slots(&slots, &target)?;
                Ok((state.snapshot(now), changed))
            })
            .await?;
        tracing::info!(slots = slots.len(), target = %target, version = topology.version, "slot moves started");
        Ok(topology)
    }

    /// Reshard / Rebalance: makes `plan` on the current topology and, unless `dry_run`, starts
    /// every move of it in one change (as MoveSlots would, target by target). Returns the plan and
    /// the topology it was made on (carrying the moves unless `dry_run`).
    pub async fn plan_moves<P: AsRef<[PlannedMove]>>(
        &self,
        dry_run: bool,
        plan: impl FnOnce(&Topology) -> Result<P, Error>,
    ) -> Result<(P, Topology), Error> {
        if dry_run {
            let topology = self.topology().await;
            return Ok((plan(&topology)?, topology));
        }
        let (planned, topology) = self
            .apply(|state, now| {
                let before = state.snapshot(now);
                let planned = plan(&before)?;
                let mut targets: Vec<usize> = Vec::new();
                for m in planned.as_ref() {
                    if !targets.contains(&m.target) {
                        targets.push(m.target);
                    }
                }
                let mut changed = false;
                for target in targets {
                    let slots: Vec<u16> = planned
                        .as_ref()
                        .iter()
                        .filter(|m| m.target == target)
                        .map(|m| m.slot)
                        .collect();
                    changed |= state.move_slots(&slots, &before.nodes()[target].id)?;
                }
                Ok(((planned, state.snapshot(now)), changed))
            })
            .await?;
        tracing::info!(
            slots = planned.as_ref().len(),
            version = topology.version,
            "planned slot moves started"
        );
        Ok((planned, topology))
    }

    /// SetSlot (CLUSTER SETSLOT at the node `at`): the topology with the change published.
    pub async fn set_slot(
        &self,
        at: NodeId,
        slot: u16,
        action: SetSlot,
    ) -> Result<Topology, Error> {
        let topology = self
            .apply(|state, now| {
                let changed = state.set_slot(&at, slot, &action)?;
                Ok((state.snapshot(now), changed))
            })
            .await?;
        tracing::info!(node = %at, slot, ?action, version = topology.version, "CLUSTER SETSLOT applied");
        Ok(topology)
    }

    /// AssignSlots (CLUSTER ADDSLOTS / DELSLOTS at the node `at`): the topology with the change
    /// published.
    pub async fn assign_slots(
        &self,
        at: NodeId,
        slots: Vec<u32>,
        delete: bool,
    ) -> Result<Topology, Error> {
        let topology = self
            .apply(|state, now| {
                let changed = state.assign_slots(&at, &slots, delete)?;
                Ok((state.snapshot(now), changed))
            })
            .await?;
        tracing::info!(node = %at, slots = slots.len(), delete, version = topology.version, "slots assigned");
        Ok(topology)
    }

    /// SetSetting: returns the settings now in force.
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<Settings, Error> {
        let change = SettingChange::parse(name, value)?;
        let settings = self
            .apply(|state, _| {
                let changed = state.set_setting(change);
                Ok((state.settings(), changed))
            })
            .await?;
        tracing::info!(name, value, "setting changed");
        Ok(settings)
    }

    /// The election this control plane takes part in (`None`: the only control plane).
    pub fn leader(&self) -> Option<&Leader> {
        self.leader.as_ref()
    }

    /// Whether the store answers a read within `STORE_CHECK_TIMEOUT` (GetControlPlaneStatus).
    pub async fn check_store(&self) -> Result<(), String> {
        match tokio::time::timeout(STORE_CHECK_TIMEOUT, self.store.load()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {STORE_CHECK_TIMEOUT:?}")),
        }
    }

    /// GetTopology: the current topology with fresh heartbeat fields.
    pub async fn topology(&self) -> Topology {
        self.inner.lock().await.state.snapshot(now_ms())
    }

    /// One failure-detector round; run every ~100 ms. Probes the suspect nodes first (without
    /// the lock; at most `PROBE_TIMEOUT`), so that a process that is gone is failed over in this
    /// round. A follower detects nothing: its verdicts could not be saved.
    pub async fn tick(&self) -> Result<(), Error> {
        if !self.is_leader() {
            return Ok(());
        }
        let targets = self.inner.lock().await.state.probe_targets(now_ms());
        let probes =
            futures::future::join_all(targets.into_iter().map(|(id, address)| async move {
                let sent_ms = now_ms();
                let refused = probe_refused(&address).await;
                (id, Probe { sent_ms, refused })
            }))
            .await;
        self.apply(|state, now| {
            for (id, probe) in probes {
                state.record_probe(&id, probe);
            }
            Ok(((), state.detect_failures(now)))
        })
        .await
    }
}
