//! The append-only file: every write, as the RESP command that replays it, fsynced per policy.
//!
//! `append` only encodes into a shared in-memory buffer (it runs under a slot lock and must never
//! wait on the disk); a writer thread (`writer`) drains the buffer to the file as soon as it has
//! bytes, and fsyncs by the policy. `load` reads the file back at start (`load`), and the record
//! format is in `record`.
//!
//! Writes reach the file through the node's one ordered write log (`replication::log`), which
//! also feeds the replication backlog; `offset()` here is the file's own running byte offset,
//! counted from the start of the file (the replication offset is the log's). A rewrite (`rewrite`)
//! compacts the file in the background: it snapshots the keyspace slot by slot into a new file
//! while writes go on to the old one, and the writer (which owns the file) appends what was
//! written meanwhile and renames the new file into place, without resetting the logical offset.

mod load;
mod record;
pub mod rewrite;
pub(crate) mod snapshot;
mod writer;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use crate::error::AofError;

pub use load::{load, LoadSummary};
pub use record::encode as encode_record;

/// File name of the log inside the data directory (Redis's default name).
pub const FILE_NAME: &str = "appendonly.aof";

/// When written bytes are forced to the disk (Redis's `appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncPolicy {
    /// After every batch the writer writes. A write is durable only once `wait_synced` (or
    /// `sync_now`) for its offset returns: the data path must wait for that before replying.
    Always,
    /// Once a second: a crash loses at most about a second of writes.
    Everysec,
    /// Never by the node (the OS flushes when it likes), except at a clean shutdown.
    No,
}

impl FsyncPolicy {
    pub(crate) fn code(self) -> u8 {
        match self {
            FsyncPolicy::Always => 0,
            FsyncPolicy::Everysec => 1,
            FsyncPolicy::No => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> FsyncPolicy {
        match code {
            0 => FsyncPolicy::Always,
            2 => FsyncPolicy::No,
            _ => FsyncPolicy::Everysec,
        }
    }
}

impl Shared {
    fn policy(&self) -> FsyncPolicy {
        FsyncPolicy::from_code(self.policy.load(Ordering::Relaxed))
    }
}

/// How far the writer has got; published on a watch channel so waiters need no polling.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Log offset handed to the OS.
    pub written: u64,
    /// Log offset known to be on disk.
    pub synced: u64,
    /// The last write or fsync failure, while it lasts (the writer retries every second).
    pub error: Option<Arc<str>>,
    /// The writer has stopped (after `flush_and_sync`, or when the `Aof` was dropped).
    pub closed: bool,
    /// Bytes in the file now (differs from `written` after a rewrite).
    pub file_size: u64,
}

/// What `append` and the writer share.
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    /// The fsync policy, changed at runtime by CONFIG SET appendfsync (`FsyncPolicy::code`).
    policy: AtomicU8,
    /// What the rewrite task and INFO know about rewrites.
    rewrites: Mutex<rewrite::Status>,
    /// Pokes the rewrite task (BGREWRITEAOF).
    rewrite_wanted: tokio::sync::Notify,
}

/// Bytes appended but not yet taken by the writer.
struct Pending {
    buf: BytesMut,
    /// Log offset after the last appended byte.
    end_offset: u64,
    /// Someone waits for an fsync regardless of policy.
    sync_wanted: bool,
    /// Write out everything, fsync, and stop.
    closing: bool,
    /// The rewrite in progress: its copy of the writes made to slots it has already snapshotted.
    rewrite: Option<rewrite::Buffer>,
    /// A rewritten file waiting for the writer to switch to it.
    switch: Option<rewrite::Switch>,
}

/// The open append-only file. Shared (`Arc<Aof>`) by every connection of the node.
pub struct Aof {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

impl Aof {
    /// Opens (or creates) the file at `path` for appending and starts its writer. Call after
    /// `load`, which cuts off a torn tail that appending must not follow.
    pub fn open(path: &Path, policy: FsyncPolicy) -> Result<Aof, AofError> {
        let io_error = |action: &'static str| {
            move |source| AofError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let existed = path.exists();
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_error("open"))?;
        if !existed {
            // A new file's directory entry must be durable too, or an fsynced write can vanish.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error("fsync the directory of"))?;
            }
        }
        let start = file.metadata().map_err(io_error("stat"))?.len();
        let (progress, _) = watch::channel(Progress {
            written: start,
            synced: start,
            error: None,
            closed: false,
            file_size: start,
        });
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: BytesMut::with_capacity(64 * 1024),
                end_offset: start,
                sync_wanted: false,
                closing: false,
                rewrite: None,
                switch: None,
            }),
            wake: Condvar::new(),
            progress,
            policy: AtomicU8::new(policy.code()),
            rewrites: Mutex::new(rewrite::Status::new(start)),
            rewrite_wanted: tokio::sync::Notify::new(),
        });
        let handle = {
            let shared = Arc::clone(&shared);
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name("aof-writer".to_string())
                .spawn(move || writer::run(shared, file, path, start))
                .map_err(io_error("start the writer thread for"))?
        };
        Ok(Aof {
            shared,
            writer: Mutex::new(Some(handle)),
            path: path.to_path_buf(),
        })
    }

    /// Queues one write for the file. Called while the slot's lock is held, so the file's order
    /// per key is the order of application; a rewrite relies on it too (a write is in a slot's
    /// snapshot or after it, by that lock). Relative expiries must already be absolute.
    pub fn append(&self, args: &[Bytes]) {
        self.append_with_offset(args);
    }

    /// `append`, returning the log offset just after this record: what a caller under
    /// `appendfsync always` passes to `wait_synced`, and a replica's resume point.
    pub fn append_with_offset(&self, args: &[Bytes]) -> u64 {
        let mut pending = self.shared.pending.lock();
        if pending.closing {
            drop(pending);
            tracing::error!(
                command = %String::from_utf8_lossy(args.first().map(|a| a.as_ref()).unwrap_or_default()),
                "write after the append-only file was closed; it is not persisted"
            );
            return self.offset();
        }
        let before = pending.buf.len();
        record::encode(args, &mut pending.buf);
        pending.end_offset += (pending.buf.len() - before) as u64;
        let Pending { buf, rewrite, .. } = &mut *pending;
        if let Some(rewrite) = rewrite {
            rewrite.record(args, &buf[before..]);
        }
        let end = pending.end_offset;
        drop(pending);
        self.shared.wake.notify_one();
        end
    }

    /// Queues one write already encoded as its record (`encoded` is `record::encode(args)`): the
    /// replication write log (`replication::log`) encodes each write once, under its own lock,
    /// and hands the same bytes to the backlog and here, so both see one order.
    pub fn append_encoded(&self, args: &[Bytes], encoded: &[u8]) {
        let mut pending = self.shared.pending.lock();
        if pending.closing {
            drop(pending);
            tracing::error!(
                command = %String::from_utf8_lossy(args.first().map(|a| a.as_ref()).unwrap_or_default()),
                "write after the append-only file was closed; it is not persisted"
            );
            return;
        }
        let Pending {
            buf,
            rewrite,
            end_offset,
            ..
        } = &mut *pending;
        buf.extend_from_slice(encoded);
        *end_offset += encoded.len() as u64;
        if let Some(rewrite) = rewrite {
            rewrite.record(args, encoded);
        }
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// Queues several writes as one contiguous run (a transaction's MULTI ... EXEC), so no other
    /// client's write lands between them in the file.
    pub fn append_all(&self, records: &[Vec<Bytes>]) {
        let mut pending = self.shared.pending.lock();
        if pending.closing {
            drop(pending);
            tracing::error!(
                "transaction after the append-only file was closed; it is not persisted"
            );
            return;
        }
        for args in records {
            let before = pending.buf.len();
            record::encode(args, &mut pending.buf);
            pending.end_offset += (pending.buf.len() - before) as u64;
            let Pending { buf, rewrite, .. } = &mut *pending;
            if let Some(rewrite) = rewrite {
                rewrite.record(args, &buf[before..]);
            }
        }
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// The log's end offset: bytes appended since the file's start, including those not yet
    /// written out.
    pub fn offset(&self) -> u64 {
        self.shared.pending.lock().end_offset
    }

    /// The writer's progress now.
    pub fn progress(&self) -> Progress {
        self.shared.progress.borrow().clone()
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.shared.policy()
    }

    /// CONFIG SET appendfsync: the writer follows the new policy from its next batch (and fsyncs
    /// what is written at once when the new policy is `always`).
    pub fn set_policy(&self, policy: FsyncPolicy) {
        self.shared.policy.store(policy.code(), Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until the log is on disk up to `offset`. Under `always` the writer fsyncs every
    /// batch by itself; under the other policies this waits for the next periodic fsync, if any
    /// (use `sync_now` to force one).
    pub async fn wait_synced(&self, offset: u64) -> Result<(), AofError> {
        let mut progress = self.shared.progress.subscribe();
        loop {
            {
                let now = progress.borrow_and_update();
                if now.synced >= offset {
                    return Ok(());
                }
                if let Some(error) = &now.error {
                    return Err(AofError::Writer(error.to_string()));
                }
                if now.closed {
                    return Err(AofError::Writer("the writer has stopped".to_string()));
                }
            }
            if progress.changed().await.is_err() {
                return Err(AofError::Writer("the writer has stopped".to_string()));
            }
        }
    }

    /// Writes out and fsyncs everything appended so far, whatever the policy, and waits for it.
    /// Returns the offset now durable. The data path calls this (or `wait_synced`) before
    /// replying to a write under `appendfsync always`.
    pub async fn sync_now(&self) -> Result<u64, AofError> {
        let target = {
            let mut pending = self.shared.pending.lock();
            pending.sync_wanted = true;
            pending.end_offset
        };
        self.shared.wake.notify_one();
        self.wait_synced(target).await?;
        Ok(target)
    }

    /// Shutdown: writes out everything appended, fsyncs, and stops the writer. Later appends are
    /// dropped (and logged). Safe to call twice.
    pub async fn flush_and_sync(&self) -> Result<(), AofError> {
        self.shared.pending.lock().closing = true;
        self.shared.wake.notify_one();
        let mut progress = self.shared.progress.subscribe();
        // The writer publishes `closed` as its last act, so this ends.
        let last = match progress.wait_for(|p| p.closed).await {
            Ok(p) => p.clone(),
            Err(_) => self.progress(),
        };
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            // The thread has published `closed` and is returning; this join is immediate.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        match last.error {
            Some(error) => Err(AofError::Writer(error.to_string())),
            None if last.synced < self.offset() => Err(AofError::Writer(
                "not every write reached the disk".to_string(),
            )),
            None => Ok(()),
        }
    }
}

impl Drop for Aof {
    /// Without `flush_and_sync` (an error path, a test), the writer still writes out what it has
    /// and stops; nobody waits for it.
    fn drop(&mut self) {
        self.shared.pending.lock().closing = true;
        self.shared.wake.notify_one();
    }
}
