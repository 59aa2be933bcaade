//! Where the control plane keeps its state between restarts. `StateStore` is the one storage
//! interface (a local file now; etcd later fits behind it); `FileStore` writes one JSON document
//! atomically (tmp file, fsync, rename, fsync of the directory), so a crash leaves either the old
//! or the new state, never a torn one.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

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
}

/// The current format of `PersistedState`; format 1 (no identity) still loads.
pub const FORMAT: u32 = 2;

/// A boxed future, so the trait stays object-safe for stores that are async inside (etcd).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Durable storage for the cluster state. `save` returns only once the state is durable: the
/// control plane answers an RPC only after its change is saved.
pub trait StateStore: Send + Sync + 'static {
    /// The last saved state, or `None` when nothing was ever saved.
    fn load(&self) -> StoreFuture<'_, Option<PersistedState>>;
    fn save(&self, state: &PersistedState) -> StoreFuture<'_, ()>;
}

/// `state.json` in the data directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    const FILE: &'static str = "state.json";
    const TMP: &'static str = "state.json.tmp";

    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE)
    }
}

impl StateStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Option<PersistedState>> {
        let path = self.path();
        Box::pin(async move {
            blocking(move || {
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(io_error(&path, source)),
                };
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Decode {
                        path: path.display().to_string(),
                        source,
                    })
            })
            .await
        })
    }

    fn save(&self, state: &PersistedState) -> StoreFuture<'_, ()> {
        let encoded = serde_json::to_vec_pretty(state).map_err(StoreError::Encode);
        let dir = self.dir.clone();
        Box::pin(async move {
            let encoded = encoded?;
            blocking(move || write_atomically(&dir, &encoded)).await
        })
    }
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let tmp = dir.join(FileStore::TMP);
    let path = dir.join(FileStore::FILE);
    let mut file = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io_error(&tmp, e))?;
    file.sync_all().map_err(|e| io_error(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    // The rename is durable only once the directory entry is.
    let dir_handle = std::fs::File::open(dir).map_err(|e| io_error(dir, e))?;
    dir_handle.sync_all().map_err(|e| io_error(dir, e))?;
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PersistedState {
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
            }],
            handover: Some(PersistedHandover {
                master_id: "a".repeat(40),
                replica_id: "b".repeat(40),
                started_ms: 5,
                version: 6,
            }),
        }
    }

    #[test]
    fn a_file_without_a_handover_loads() {
        let mut json = serde_json::to_value(sample()).expect("encode");
        json.as_object_mut().expect("object").remove("handover");
        let back: PersistedState = serde_json::from_value(json).expect("decode");
        assert_eq!(back.handover, None);
    }

    #[tokio::test]
    async fn missing_file_loads_as_none_and_saved_state_loads_back() {
        let dir = tessera_testkit::temp_dir("control-plane");
        let store = FileStore::new(dir.path().join("nested"));
        assert_eq!(store.load().await.expect("load"), None);
        store.save(&sample()).await.expect("save");
        assert_eq!(store.load().await.expect("load"), Some(sample()));
        assert!(!dir.path().join("nested").join(FileStore::TMP).exists());
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error() {
        let dir = tessera_testkit::temp_dir("control-plane");
        std::fs::write(dir.path().join("state.json"), b"{not json").expect("write");
        let err = FileStore::new(dir.path()).load().await.unwrap_err();
        assert!(matches!(err, StoreError::Decode { .. }), "{err}");
    }
}
