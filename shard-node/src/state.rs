//! What every connection of a node shares: the keyspace, the node's view of the cluster, the
//! append-only file, replication and the server's counters.

use std::sync::Arc;

use crate::aof::Aof;
use crate::cluster::ClusterView;
use crate::keyspace::Keyspace;

/// Shared by all connections through an `Arc`.
pub struct NodeState {
    pub keyspace: Keyspace,
    pub cluster: ClusterView,
    /// `None` when persistence is off (tests that need no disk). Writes reach it through
    /// `replication.log`, which must have it attached (`WriteLog::attach_aof`).
    pub aof: Option<Arc<Aof>>,
    pub stats: crate::server::ServerStats,
    /// The settings CONFIG SET changes at runtime (maxmemory, policies, fsync, ...).
    pub config: crate::config::Live,
    /// Evicts keys when memory is over maxmemory.
    pub evictor: crate::evict::Evictor,
    /// Who subscribes to what, and the links that carry PUBLISH to the other nodes.
    pub pubsub: crate::pubsub::PubSub,
    /// The ordered write log every write goes through (feeding the AOF and the replication
    /// backlog), the node's role, and the replicas it serves.
    pub replication: crate::replication::Replication,
    /// MIGRATE's cached connections to its targets.
    pub migrate_links: crate::cmd::keys::migrate::Links,
}
