//! The control plane's typed errors; `service` is the one place that turns them into `tonic::Status`.

use tessera_proto::topology::TopologyError;

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
    #[error("replicas arrive with failover; use --replicas 0")]
    ReplicasUnsupported,
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot serve gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
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
    #[error("state file {path} is not valid state: {source}")]
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
}
