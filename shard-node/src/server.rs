//! The accept loop, the active-expiry task, and server-wide counters and client registry (INFO,
//! CLIENT LIST). Shutdown is ordered: stop accepting, let every connection finish the commands it
//! has read and write their replies, stop expiry, then return, so the wiring can flush the AOF
//! knowing no acknowledged write is still in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::keyspace::expire::{CycleBudget, ExpiryCursor};
use crate::keyspace::now_ms;
use crate::state::NodeState;

/// How often active expiry runs (Redis's default hz is 10).
const EXPIRY_PERIOD: Duration = Duration::from_millis(100);

/// Counters INFO reports, and the connected clients.
pub struct ServerStats {
    pub started: Instant,
    pub next_client_id: AtomicU64,
    pub connections_received: AtomicU64,
    pub connected_clients: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands_processed: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    /// Per-command counters and the ops/sec rate (INFO commandstats, stats).
    pub commands: crate::cmd::server::CommandStats,
    /// By client id, for CLIENT LIST.
    pub clients: Mutex<BTreeMap<u64, Arc<Mutex<ClientInfo>>>>,
    /// The node secret clients must AUTH with (`--node-secret`); None: no AUTH needed.
    pub node_secret: Option<Bytes>,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            started: Instant::now(),
            next_client_id: AtomicU64::new(0),
            connections_received: AtomicU64::new(0),
            connected_clients: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            commands_processed: AtomicU64::new(0),
            keyspace_hits: AtomicU64::new(0),
            keyspace_misses: AtomicU64::new(0),
            commands: Default::default(),
            clients: Mutex::new(BTreeMap::new()),
            node_secret: None,
        }
    }
}

impl ServerStats {
    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for counter in [
            &self.connections_received,
            &self.rejected_connections,
            &self.commands_processed,
            &self.keyspace_hits,
            &self.keyspace_misses,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// A new client id: ids start at 1 and are never reused, as Redis's.
    pub fn new_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// What CLIENT INFO / LIST show about one connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: Bytes,
    pub resp: u8,
    pub created: Instant,
    pub last_active: Instant,
    pub last_cmd: &'static str,
    pub status: ClientStatus,
}

/// What CLIENT LIST shows of a connection's state beyond its identity: its subscriptions, the
/// transaction it has open and whether it waits in a blocking command. The connection publishes
/// it after each command, taking the lock only when it changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStatus {
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// Commands queued since MULTI; `None` outside a transaction (Redis prints -1).
    pub multi: Option<usize>,
    pub blocked: bool,
}

impl ClientStatus {
    /// Redis's CLIENT_PUBSUB: subscribed to anything (CLIENT LIST's TYPE pubsub, flag P).
    pub fn is_pubsub(&self) -> bool {
        self.sub + self.psub + self.ssub > 0
    }
}

impl ClientInfo {
    pub fn new(id: u64, addr: String, laddr: String) -> ClientInfo {
        let now = Instant::now();
        ClientInfo {
            id,
            addr,
            laddr,
            name: Bytes::new(),
            resp: 2,
            created: now,
            last_active: now,
            last_cmd: "NULL",
            status: ClientStatus::default(),
        }
    }

    /// Records a command run at `now` (the clock reading the command's cluster rule uses too).
    pub fn touch(&mut self, command: &'static str, now: Instant) {
        self.last_cmd = command;
        self.last_active = now;
    }

    /// One CLIENT LIST / INFO line.
    pub fn line(&self) -> String {
        let status = &self.status;
        tessera_proto::client::ClientLine {
            id: self.id,
            addr: self.addr.clone(),
            laddr: self.laddr.clone(),
            name: &self.name,
            age_secs: self.created.elapsed().as_secs(),
            idle_secs: self.last_active.elapsed().as_secs(),
            pubsub: status.is_pubsub(),
            multi: status.multi,
            blocked: status.blocked,
            sub: status.sub,
            psub: status.psub,
            ssub: status.ssub,
            cmd: self.last_cmd,
            user: b"default",
            resp: self.resp,
            ..Default::default()
        }
        .render()
    }
}

/// Serves clients on `listener` until `shutdown` is cancelled, then stops accepting, lets every
/// connection finish the commands it has read and write their replies, and returns once all
/// connection tasks have ended. Also runs active expiry for as long as it serves.
pub async fn serve(listener: TcpListener, state: Arc<NodeState>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    tracker.spawn(active_expiry(state.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tracker.spawn(crate::connection::handle(stream, state.clone(), shutdown.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    state.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    tracing::debug!("server stopped: all connections finished");
}

/// Reclaims expired keys nobody reads, logging a DEL for each, until shutdown.
async fn active_expiry(state: Arc<NodeState>, shutdown: CancellationToken) {
    let mut cursor = ExpiryCursor::default();
    let mut ticker = tokio::time::interval(EXPIRY_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        crate::cmd::server::cron(&state);
        if state.replication.is_replica() {
            // A replica never expires keys itself: its master's DELs remove them.
            continue;
        }
        let log = &state.replication.log;
        state
            .keyspace
            .active_expire_cycle(&mut cursor, now_ms(), CycleBudget::default(), |key| {
                state.keyspace.watches().touch(key);
                log.append(&[Bytes::from_static(b"DEL"), key.clone()]);
            });
    }
}
