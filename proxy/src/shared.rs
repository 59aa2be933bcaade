//! State shared by every client connection: the topology view, the proxy's identity and its
//! counters. Read on the per-command path without locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tessera_proto::topology::NodeId;

use crate::acl::Acl;
use crate::backend::follow::Follower;
use crate::backend::ClusterService;
use crate::client_list::ClientList;
use crate::topology::TopologyView;

/// Counters INFO reports.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub connected_clients: AtomicU64,
    pub commands_processed: AtomicU64,
    pub rejected_protocol: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Shared {
    pub view: Arc<TopologyView>,
    /// The assembled request path to the backends (redirects over dispatch).
    pub cluster: ClusterService,
    /// The one redirect follower, for the paths that hold their own backend connections
    /// (blocking commands, transactions, pub/sub); `cluster` follows with it too.
    pub follow: Arc<Follower>,
    /// The proxy's own node id: random, made at start.
    pub id: NodeId,
    pub announce_host: String,
    pub announce_port: u16,
    /// The port actually listened on.
    pub tcp_port: u16,
    pub started: Instant,
    pub stats: Stats,
    pub next_client_id: AtomicU64,
    /// Pipelined connections per backend: a client's lane is its id modulo this.
    pub lanes: usize,
    /// Which virtual master each client is shown as `myself` (CLUSTER NODES / MYID).
    pub myself: crate::local::MyselfPicker,
    /// This proxy's users (requirepass, aclfile, ACL SETUSER).
    pub acl: Acl,
    /// Connected clients (CLIENT LIST / KILL, maxclients).
    pub clients: ClientList,
    pub limits: Limits,
    /// Where single-key reads go (`--read-policy`).
    pub read_policy: crate::read_policy::ReadPolicy,
}

/// Per-client limits, as Redis's maxclients, timeout and client-query-buffer-limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub maxclients: usize,
    /// Idle clients are closed after this; None: never.
    pub idle_timeout: Option<std::time::Duration>,
    pub query_buffer: usize,
}

impl Shared {
    pub fn new_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }
}
