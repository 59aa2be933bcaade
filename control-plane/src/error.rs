//! The control plane's typed errors; `service` is the one place that turns them into `tonic::Status`.

use std::time::Duration;

use tessera_proto::topology::TopologyError;

use crate::store::Revision;

/// Why a control-plane operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request named a node id that is not 40 lowercase hex characters, or a bad port.
    #[error(transparent)]
    InvalidInput(#[from] TopologyError),
    /// A heartbeat from a node the control plane does not know: it must register again.
    #[error("unknown node {0}: register first")]
    UnknownNode(String),
    /// CreateCluster named an address no registered node announces.
    #[error("no registered node at {0}: start it (it registers itself) or check the address")]
    UnknownAddress(String),
    /// CreateCluster named something that is not host:port.
    #[error("invalid address {0:?}: want host:port")]
    InvalidAddress(String),
    /// CreateCluster named the same node twice.
    #[error("node {0} is listed more than once")]
    DuplicateAddress(String),
    #[error("cluster already created")]
    AlreadyCreated,
    /// redis-cli's own words for too few masters.
    #[error(
        "Redis Cluster requires at least 3 master nodes. This is not possible with {nodes} nodes and {replicas} replicas per node. At least {needed} nodes are required."
    )]
    TooFewMasters {
        nodes: usize,
        replicas: u32,
        needed: usize,
    },
    /// AddReplica before CreateCluster: there is no cluster to join yet.
    #[error("the cluster is not created yet: create it first")]
    NotCreated,
    /// AddReplica named a master id no node has (redis-cli's words).
    #[error("No such master ID {0}")]
    NoSuchMaster(String),
    /// AddReplica named a replica as the master (Redis's CLUSTER REPLICATE words).
    #[error("I can only replicate a master, not a replica.")]
    NotAMaster(String),
    /// AddReplica named the same node as replica and master (Redis's words).
    #[error("Can't replicate myself")]
    ReplicateItself,
    /// AddReplica named a node that owns slots or holds keys (Redis's CLUSTER REPLICATE words):
    /// its slots would be lost, its keys overwritten.
    #[error("To set a master the node must be empty and without assigned slots.")]
    NotEmpty(String),
    /// AddReplica named a master that has replicas of its own: they would follow a replica.
    #[error("node {0} has replicas of its own: move them first")]
    HasReplicas(String),
    /// RemoveNode named a node that serves slots (redis-cli's del-node words).
    #[error("Node {0} is not empty! Reshard data away and try again.")]
    NodeNotEmpty(String),
    /// A node removed with del-node tried to register again.
    #[error("node {0} was removed from the cluster (clusterctl del-node): stop it, or start it with an empty data directory to join as a new node")]
    Removed(String),
    /// MoveSlots named a slot outside 0-16383 (Redis's CLUSTER SETSLOT words).
    #[error("ERR Invalid or out of range slot")]
    InvalidSlot(u32),
    /// MoveSlots named a slot no master serves: there is nothing to move it from.
    #[error("slot {0} has no master to move it from")]
    SlotUnassigned(u16),
    /// MoveSlots named a slot already moving to another master.
    #[error("slot {0} is already moving to another master")]
    SlotMoving(u16),
    /// A CLUSTER SETSLOT / ADDSLOTS / DELSLOTS Redis would refuse, in Redis's words (the error
    /// reply without its leading '-').
    #[error("{0}")]
    Refused(String),
    /// A Failover request Redis would refuse, in Redis's words.
    #[error(transparent)]
    Failover(#[from] FailoverRefused),
    /// A Reshard or Rebalance request redis-cli would refuse, in its words.
    #[error(transparent)]
    Plan(#[from] PlanRefused),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A change asked of a control plane that does not lead (etcd store): only the leader
    /// changes the state, so two control planes never decide at once.
    #[error("not the leader; leader is {}", .leader.as_deref().unwrap_or("not known yet (an election is under way)"))]
    NotLeader { leader: Option<String> },
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot serve gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Why a Failover request did not (or could not) complete. The texts are the error replies Redis
/// gives to CLUSTER FAILOVER (without the leading '-'), so a node answers them as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FailoverRefused {
    #[error("ERR You should send CLUSTER FAILOVER to a replica")]
    NotAReplica,
    #[error("ERR I'm a replica but my master is unknown to me")]
    MasterUnknown,
    #[error("ERR Master is down or failed, please use CLUSTER FAILOVER FORCE")]
    MasterDown,
    /// Another replica's manual failover is under way (Redis has one per replica; we run one at
    /// a time, so the handover names one master).
    #[error("ERR Another manual failover is in progress")]
    InProgress,
    /// The handover was withdrawn: the replica did not catch up in time (Redis logs "Manual
    /// failover timed out." and answers nothing; we tell the caller).
    #[error("ERR Manual failover timed out")]
    TimedOut,
    /// A FORCE/TAKEOVER request whose fencing wait outlasted its bound.
    #[error("ERR Failover did not complete in time")]
    NotCompleted,
}

/// Why a Reshard or Rebalance plan cannot be made: redis-cli's words for the same requests.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanRefused {
    #[error("No such node ID {0}")]
    NoSuchNode(String),
    #[error("The specified node is not known or not a master, please retry.")]
    TargetNotMaster,
    #[error("Target node is also listed among the source nodes!")]
    TargetAmongSources,
    #[error("invalid weight {0}: want a number >= 0")]
    InvalidWeight(f64),
}

/// A `SetSetting` request that names an unknown setting or carries a value it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error(
        "unknown setting {0:?}: want require-full-coverage, allow-reads-when-down or node-timeout"
    )]
    UnknownName(String),
    #[error("invalid value {value:?} for {name}: want yes or no")]
    NotYesNo { name: String, value: String },
    #[error("invalid value {0:?} for node-timeout: want a positive number of milliseconds")]
    NotMillis(String),
}

/// Loading or saving the persisted state failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `path` is the file or the etcd key.
    #[error("{path} is not valid state: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode state: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("persisted state is inconsistent: {0}")]
    Inconsistent(String),
    #[error("store task failed: {0}")]
    Task(String),
    /// The stored state moved on since the writer read it (another control plane wrote):
    /// nothing was written, and the writer must load again before it changes anything.
    #[error("the stored state is at revision {found}, not {expected} as this control plane read it: reload")]
    Conflict { expected: Revision, found: Revision },
    /// The write was fenced off: the leader key is no longer the one this control plane's
    /// election created, so it does not lead and must not write.
    #[error("write refused: this control plane does not hold the leadership")]
    NotLeader,
    #[error("etcd: {0}")]
    Etcd(#[from] EtcdError),
    /// etcd did not answer in time (the last attempt within this bound hung); a save may or may
    /// not have happened (a later save finds out: it conflicts if it did).
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
}

/// What went wrong talking to etcd (`store::etcd`).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("no endpoints")]
    NoEndpoints,
    /// The request failed or was refused (`Unavailable` while a member cannot be reached).
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A stream (keepalive, watch) ended before etcd answered.
    #[error("{0} stream ended without an answer")]
    StreamEnded(&'static str),
    /// A keepalive found the lease gone: it expired or was revoked, and its keys with it.
    #[error("lease {0:x} not found")]
    LeaseNotFound(i64),
}
