//! The shard node's error types: one enum per concern, all typed with thiserror, so `main` can
//! print a clear cause chain and tests can match on the kind.

use std::io;
use std::path::PathBuf;

/// A configuration that cannot work, found once at start-up before anything is bound or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Service(#[from] tessera_proto::service_flags::ServiceFlagsError),
    #[error("--data-dir must not be empty")]
    EmptyDataDir,
}

/// The node id file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    #[error("cannot {action} node id file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("node id file {path} does not hold a node id (want 40 lowercase hex characters); fix or delete it")]
    Invalid { path: PathBuf },
}

/// The append-only file could not be loaded, written or synced.
#[derive(Debug, thiserror::Error)]
pub enum AofError {
    #[error("cannot {action} append-only file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A malformed record that is not the file's last one: the file is damaged, and loading
    /// stops rather than silently dropping the writes after it (Redis's "Bad file format").
    #[error(
        "bad file format reading the append-only file {path} at byte {offset}: {reason}; \
         the file is damaged before its end: repair it (or move it away) and restart"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    /// The record could be read but not applied.
    #[error("cannot replay the record at byte {offset} of append-only file {path}: {reason}")]
    Replay {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The writer has stopped after an I/O failure; carries its message.
    #[error("append-only file writer failed: {0}")]
    Writer(String),
}

/// Why the node stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    NodeId(#[from] NodeIdError),
    #[error(transparent)]
    Aof(#[from] AofError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("cannot read the listener's address: {0}")]
    Listener(#[source] io::Error),
}

/// The cluster tasks could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Endpoint(#[from] tessera_proto::control_plane::InvalidUrl),
}

/// Replication could not keep its state file.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("cannot {action} replication state file {path}: {source}")]
    StateFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("replication state file {path} is damaged (want `replid <40 hex>`, `offset <n>`, `aof-size <n|->` lines); fix or delete it")]
    InvalidStateFile { path: PathBuf },
}
