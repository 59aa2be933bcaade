//! Where the control plane keeps its state between restarts, and how two control planes sharing it
//! are kept from overwriting each other. `StateStore` is the one storage interface, with two
//! backends chosen by configuration: `FileStore` (one JSON document in the data directory, the
//! default for one machine) and `EtcdStore` (the same document under a key in etcd, for a highly
//! available control plane).
//!
//! Every save names the `Revision` its writer last read or wrote, and the store refuses it with
//! `StoreError::Conflict` when the stored state has moved on since: a control plane whose view is
//! stale cannot overwrite a newer state, it must reload. With etcd the check is part of the write
//! (a transaction comparing the key's mod_revision), so of two control planes that both believe
//! they lead, at most one commits each change, and a topology version is committed (and so
//! published) at most once. A file has one writer, its own process, so `FileStore` has nothing
//! to race with and only counts.

pub(crate) mod etcd;
mod file;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

pub use etcd::{EtcdOptions, EtcdStore};
pub use file::FileStore;

/// The persisted form of the cluster state: what must survive a restart: the history's identity,
/// the intent, and the failure verdicts. Other observations (heartbeat times, key counts, peer
/// reports) are deliberately absent: they are refreshed by the nodes within a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Format of this document, for future migrations.
    pub format: u32,
    /// The history's identity (absent in format 1).
    #[serde(default)]
    pub cluster_id: String,
    #[serde(default)]
    pub generation: u64,
    pub version: u64,
    pub current_epoch: u64,
    pub created: bool,
    pub settings: PersistedSettings,
    pub nodes: Vec<PersistedNode>,
    /// Inclusive slot ranges and their master, ascending.
    pub slots: Vec<PersistedRange>,
    /// Slots moving between two masters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<PersistedMigration>,
    /// The manual failover in progress (absent in older files: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<PersistedHandover>,
    /// Ids removed from the cluster (`del-node`): they may not register again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedHandover {
    pub master_id: String,
    pub replica_id: String,
    pub started_ms: u64,
    /// The version that first published it.
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedSettings {
    pub require_full_coverage: bool,
    pub allow_reads_when_down: bool,
    pub node_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedNode {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub bus_port: u16,
    /// "master" or "replica".
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_id: Option<String>,
    pub config_epoch: u64,
    pub pfail: bool,
    pub fail: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedRange {
    pub start: u16,
    pub end: u16,
    pub node_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedMigration {
    pub slot: u16,
    pub source_id: String,
    pub target_id: String,
    /// Recorded by CLUSTER SETSLOT (the client moves the keys); absent in older states.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_client: bool,
}

/// The current format of `PersistedState`; format 1 (no identity) still loads.
pub const FORMAT: u32 = 2;

/// A boxed future, so the trait stays object-safe for stores that are async inside (etcd).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A point in a store's history of saves: what a writer read or wrote last, handed back to the
/// next save so the store can refuse it when someone else wrote in between. With etcd it is the
/// state key's mod_revision (etcd's own revision, so it only grows and is never reused, even if
/// the key is deleted and made again); with a file, a count of this process's saves. `NONE`
/// means "nothing stored": a save expecting it only creates, never overwrites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl Revision {
    pub const NONE: Revision = Revision(0);
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What `load` found: the state (none when nothing was ever saved) and the revision to expect
/// in the next save.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub state: Option<PersistedState>,
    pub revision: Revision,
}

/// Durable storage for the cluster state. `save` returns only once the state is durable: the
/// control plane answers an RPC only after its change is saved.
pub trait StateStore: Send + Sync + 'static {
    /// The last saved state with its revision; `state` is `None` (and the revision `NONE`) when
    /// nothing was ever saved.
    fn load(&self) -> StoreFuture<'_, Loaded>;

    /// Saves `state` if the stored revision is still `expected` (the one the caller loaded or
    /// last saved), and returns the new revision. Otherwise nothing is written and the answer is
    /// `StoreError::Conflict`: the caller's view is stale and it must `load` again.
    fn save(&self, state: &PersistedState, expected: Revision) -> StoreFuture<'_, Revision>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A state with every part filled in, for round trips.
    pub(crate) fn sample() -> PersistedState {
        PersistedState {
            format: FORMAT,
            cluster_id: "c".repeat(40),
            generation: 42,
            version: 7,
            current_epoch: 3,
            created: true,
            settings: PersistedSettings {
                require_full_coverage: false,
                allow_reads_when_down: true,
                node_timeout_ms: 300,
            },
            nodes: vec![PersistedNode {
                id: "a".repeat(40),
                host: "127.0.0.1".into(),
                port: 7000,
                bus_port: 17000,
                role: "master".into(),
                master_id: None,
                config_epoch: 1,
                pfail: false,
                fail: true,
            }],
            slots: vec![PersistedRange {
                start: 0,
                end: 16383,
                node_id: "a".repeat(40),
            }],
            migrations: vec![PersistedMigration {
                slot: 9,
                source_id: "a".repeat(40),
                target_id: "b".repeat(40),
                by_client: true,
            }],
            handover: Some(PersistedHandover {
                master_id: "a".repeat(40),
                replica_id: "b".repeat(40),
                started_ms: 5,
                version: 6,
            }),
            removed: vec!["c".repeat(40)],
        }
    }

    #[test]
    fn a_file_without_a_handover_loads() {
        let mut json = serde_json::to_value(sample()).expect("encode");
        json.as_object_mut().expect("object").remove("handover");
        let back: PersistedState = serde_json::from_value(json).expect("decode");
        assert_eq!(back.handover, None);
    }
}
