//! The default backend: `state.json` in the data directory, written atomically (tmp file, fsync,
//! rename, fsync of the directory), so a crash leaves either the old or the new state, never a
//! torn one.

use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use super::{Loaded, PersistedState, Revision, StateStore, StoreFuture};
use crate::error::StoreError;

/// `state.json` in the data directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// This process's count of saves, the file's `Revision`: 0 before anything exists, 1 for a
    /// file found at load, +1 per save. Only this process writes the directory, so the count is
    /// the whole history it needs; the check in `save` keeps the contract every store keeps.
    revision: Mutex<Revision>,
}

impl FileStore {
    const FILE: &'static str = "state.json";
    const TMP: &'static str = "state.json.tmp";

    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore {
            dir: dir.into(),
            revision: Mutex::new(Revision::NONE),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE)
    }
}

impl StateStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Loaded> {
        let path = self.path();
        Box::pin(async move {
            let state = blocking(move || {
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
            .await?;
            let mut revision = self.revision.lock().await;
            if *revision == Revision::NONE && state.is_some() {
                *revision = Revision(1);
            }
            Ok(Loaded {
                state,
                revision: *revision,
            })
        })
    }

    fn save(&self, state: &PersistedState, expected: Revision) -> StoreFuture<'_, Revision> {
        let encoded = serde_json::to_vec_pretty(state).map_err(StoreError::Encode);
        let dir = self.dir.clone();
        Box::pin(async move {
            let encoded = encoded?;
            // Held across the write, so two saves of one process cannot interleave.
            let mut revision = self.revision.lock().await;
            if *revision != expected {
                return Err(StoreError::Conflict {
                    expected,
                    found: *revision,
                });
            }
            blocking(move || write_atomically(&dir, &encoded)).await?;
            *revision = Revision(revision.0 + 1);
            Ok(*revision)
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
    use crate::store::tests::sample;

    #[tokio::test]
    async fn missing_file_loads_as_none_and_saved_state_loads_back() {
        let dir = tessera_testkit::temp_dir("control-plane");
        let store = FileStore::new(dir.path().join("nested"));
        let empty = store.load().await.expect("load");
        assert_eq!(empty.state, None);
        assert_eq!(empty.revision, Revision::NONE);
        let saved = store.save(&sample(), empty.revision).await.expect("save");
        let loaded = store.load().await.expect("load");
        assert_eq!(loaded.state, Some(sample()));
        assert_eq!(loaded.revision, saved);
        assert!(!dir.path().join("nested").join(FileStore::TMP).exists());
        // A new process finds the file at revision 1.
        let reopened = FileStore::new(dir.path().join("nested"));
        assert_eq!(reopened.load().await.expect("load").revision, Revision(1));
    }

    #[tokio::test]
    async fn a_save_on_a_stale_revision_is_a_conflict() {
        let dir = tessera_testkit::temp_dir("control-plane");
        let store = FileStore::new(dir.path());
        let first = store.save(&sample(), Revision::NONE).await.expect("save");
        let mut newer = sample();
        newer.version += 1;
        store.save(&newer, first).await.expect("save");
        let err = store.save(&sample(), first).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        assert_eq!(store.load().await.expect("load").state, Some(newer));
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error() {
        let dir = tessera_testkit::temp_dir("control-plane");
        std::fs::write(dir.path().join("state.json"), b"{not json").expect("write");
        let err = FileStore::new(dir.path()).load().await.unwrap_err();
        assert!(matches!(err, StoreError::Decode { .. }), "{err}");
    }
}
