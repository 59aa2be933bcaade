//! Background rewrite (compaction) of the append-only file, without stopping clients.
//!
//! The rewrite snapshots the keyspace one slot at a time (holding only that slot's lock, so no
//! client waits for more than one slot's worth of encoding) into a temporary file, as the shortest
//! commands that recreate each key (`snapshot`). Meanwhile writes keep going to the old file, and
//! `append` also copies into the rewrite's buffer every write to a slot already snapshotted (and
//! every write with no key, such as FLUSHALL). Ordering, the point of the design:
//! - a slot is marked snapshotted, and the buffer taken, under the slot's lock, and writers log
//!   under the same lock: so a write is either in the slot's snapshot or in the buffer after it,
//!   never both (replay never applies a write twice) and never neither;
//! - the buffer taken when slot `s` is marked is written to the new file before `s`'s snapshot, so
//!   the new file is a linearization of the real order: a FLUSHALL that happened before slot `s`
//!   was snapshotted comes before its snapshot, not after (where it would wipe it).
//!
//! At the end the writer thread, which owns the file, takes the old file's last batch and the
//! buffer's tail in one step, appends the tail to the new file, fsyncs it and renames it over the
//! old one (`Switch::install`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tessera_proto::command;
use tessera_proto::slot::{key_hash_slot, SLOT_COUNT};
use tokio_util::sync::CancellationToken;

use super::{snapshot, Aof};
use crate::error::AofError;
use crate::keyspace::Keyspace;
use crate::state::NodeState;

/// How often the rewrite task checks the automatic threshold (Redis checks it in serverCron).
const CHECK_PERIOD: Duration = Duration::from_millis(100);
/// The buffer is drained into the new file until what is left is this small, so the writer's
/// final step (done while appends wait) stays short.
const SMALL_TAIL: usize = 256 * 1024;
/// Most passes at draining the buffer before handing over whatever is left.
const DRAIN_PASSES: usize = 16;
/// Longest wait before retrying an automatic rewrite that failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// What is known about rewrites (INFO persistence and tests read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// A rewrite is running.
    pub in_progress: bool,
    /// BGREWRITEAOF asked for one that has not started yet.
    pub scheduled: bool,
    /// Rewrites finished and switched to.
    pub completed: u64,
    /// Rewrites that failed or were cancelled.
    pub failed: u64,
    /// Whether the last rewrite succeeded (true before any).
    pub last_ok: bool,
    /// The file's size after the last rewrite (or when it was opened): the base the automatic
    /// threshold measures growth against (Redis's aof_base_size).
    pub base_size: u64,
    /// When the rewrite in progress started (INFO's aof_current_rewrite_time_sec).
    pub started_at: Option<Instant>,
    /// How long the last finished rewrite took, in seconds (INFO's aof_last_rewrite_time_sec).
    pub last_duration_secs: Option<u64>,
    /// Failures since the last success (INFO's aof_rewrites_consecutive_failures).
    pub consecutive_failures: u64,
}

impl Status {
    pub(super) fn new(base_size: u64) -> Status {
        Status {
            in_progress: false,
            scheduled: false,
            completed: 0,
            failed: 0,
            last_ok: true,
            base_size,
            started_at: None,
            last_duration_secs: None,
            consecutive_failures: 0,
        }
    }
}

/// Why BGREWRITEAOF was refused; `Display` is Redis's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("ERR Background append only file rewriting already in progress")]
    InProgress,
    #[error("ERR Can't execute an AOF background rewriting. Please check the server logs for more information.")]
    Closed,
}

/// Redis's auto-aof-rewrite-percentage and auto-aof-rewrite-min-size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRewrite {
    /// Growth over the base size, in percent, that triggers a rewrite; 0 turns it off.
    pub percentage: u32,
    /// No automatic rewrite below this file size, in bytes.
    pub min_size: u64,
}

impl AutoRewrite {
    /// Redis's rule: the file is over the minimum and has grown by `percentage` since the base.
    pub fn due(&self, base_size: u64, current_size: u64) -> bool {
        if self.percentage == 0 || current_size <= self.min_size {
            return false;
        }
        let base = u128::from(base_size.max(1));
        let growth = (u128::from(current_size) * 100 / base) as i128 - 100;
        growth >= i128::from(self.percentage)
    }
}

/// The rewrite's copy of writes made to slots it has snapshotted.
pub(super) struct Buffer {
    buf: BytesMut,
    /// One bit per slot: snapshotted.
    done: Box<[u64]>,
}

impl Buffer {
    fn new() -> Buffer {
        Buffer {
            buf: BytesMut::new(),
            done: vec![0u64; SLOT_COUNT as usize / 64].into_boxed_slice(),
        }
    }

    /// Keeps `encoded` (the record of `args`) when its slot is already snapshotted, or when it
    /// has no key (FLUSHALL): a write to a slot not snapshotted yet will be in its snapshot.
    pub(super) fn record(&mut self, args: &[Bytes], encoded: &[u8]) {
        let wanted = match record_slot(args) {
            Some(slot) => self.done[slot as usize / 64] & (1 << (slot % 64)) != 0,
            None => true,
        };
        if wanted {
            self.buf.extend_from_slice(encoded);
        }
    }

    /// The copied writes not taken yet.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn mark(&mut self, slot: u16) {
        self.done[slot as usize / 64] |= 1 << (slot % 64);
    }
}

/// The slot of a logged write: that of its first key (every logged write is single-slot).
pub(crate) fn record_slot(args: &[Bytes]) -> Option<u16> {
    let spec = command::resolve(args).ok()?;
    let index = spec.key_indexes(args).into_iter().next()?;
    Some(key_hash_slot(args.get(index)?))
}

/// A rewritten file handed to the writer thread to switch to.
pub(super) struct Switch {
    file: Option<File>,
    temp_path: PathBuf,
    target: PathBuf,
    done: mpsc::SyncSender<Result<u64, String>>,
}

/// The new file, now in place.
pub(super) struct Installed {
    pub file: File,
    pub len: u64,
}

impl Switch {
    /// Appends `tail`, fsyncs, and renames the new file over the old one (then fsyncs the
    /// directory so the rename survives a crash). Run by the writer thread.
    pub(super) fn install(&mut self, tail: &[u8]) -> Result<Installed, String> {
        let mut file = self.file.take().ok_or("the new file is gone")?;
        let fail =
            |what: &str, e: std::io::Error| format!("{what} {}: {e}", self.temp_path.display());
        file.write_all(tail).map_err(|e| fail("write", e))?;
        file.sync_all().map_err(|e| fail("fsync", e))?;
        let len = file.metadata().map_err(|e| fail("stat", e))?.len();
        std::fs::rename(&self.temp_path, &self.target).map_err(|e| fail("rename", e))?;
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the directory after the AOF rewrite's rename");
            }
        }
        Ok(Installed { file, len })
    }

    /// Tells the rewrite how the switch went.
    pub(super) fn finish(self, outcome: Result<u64, String>) {
        let _ = self.done.send(outcome);
    }
}

impl Aof {
    /// BGREWRITEAOF: asks the rewrite task for a rewrite now.
    pub fn request_rewrite(&self) -> Result<(), Refused> {
        if self.shared.pending.lock().closing {
            return Err(Refused::Closed);
        }
        let mut status = self.shared.rewrites.lock();
        if status.in_progress || status.scheduled {
            return Err(Refused::InProgress);
        }
        status.scheduled = true;
        drop(status);
        self.shared.rewrite_wanted.notify_one();
        Ok(())
    }

    /// Rewrites so far, and whether one runs now.
    pub fn rewrite_status(&self) -> Status {
        self.shared.rewrites.lock().clone()
    }

    /// Starts buffering for a rewrite; false when one is already buffering or the file closes.
    fn begin_rewrite(&self) -> bool {
        let mut pending = self.shared.pending.lock();
        if pending.closing || pending.rewrite.is_some() || pending.switch.is_some() {
            return false;
        }
        pending.rewrite = Some(Buffer::new());
        true
    }

    /// Marks `slot` snapshotted and takes the buffer so far. Call with the slot's lock held.
    /// `None`: the rewrite was cancelled (the file is closing).
    fn mark_snapshotted(&self, slot: u16) -> Option<BytesMut> {
        let mut pending = self.shared.pending.lock();
        let rewrite = pending.rewrite.as_mut()?;
        rewrite.mark(slot);
        Some(rewrite.buf.split())
    }

    /// Takes the buffer so far; `None` when the rewrite was cancelled.
    fn take_rewrite_buffer(&self) -> Option<BytesMut> {
        let mut pending = self.shared.pending.lock();
        Some(pending.rewrite.as_mut()?.buf.split())
    }

    fn abort_rewrite(&self) {
        let mut pending = self.shared.pending.lock();
        pending.rewrite = None;
        pending.switch = None;
    }
}

/// Rewrites the file of `aof` from `keyspace`, blocking (run it on a blocking thread). Returns the
/// new file's size. Clients keep running throughout; each slot is locked only while it is encoded.
pub fn rewrite(aof: &Aof, keyspace: &Keyspace) -> Result<u64, AofError> {
    let temp_path = aof
        .path
        .with_file_name(format!("temp-rewriteaof-bg-{}.aof", std::process::id()));
    if !aof.begin_rewrite() {
        return Err(AofError::Writer(
            "a rewrite is already running or the file is closing".to_string(),
        ));
    }
    let result = write_and_switch(aof, keyspace, &temp_path);
    if result.is_err() {
        aof.abort_rewrite();
        let _ = std::fs::remove_file(&temp_path);
    }
    result
}

fn write_and_switch(aof: &Aof, keyspace: &Keyspace, temp_path: &PathBuf) -> Result<u64, AofError> {
    let io_error = |action: &'static str| {
        move |source| AofError::Io {
            action,
            path: temp_path.clone(),
            source,
        }
    };
    let cancelled =
        || AofError::Writer("the rewrite was cancelled: the file is closing".to_string());
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(temp_path)
        .map_err(io_error("create"))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    snapshot::write_slots(
        keyspace,
        &mut out,
        |slot| aof.mark_snapshotted(slot).ok_or_else(cancelled),
        io_error("write"),
    )?;
    for _ in 0..DRAIN_PASSES {
        let chunk = aof.take_rewrite_buffer().ok_or_else(cancelled)?;
        out.write_all(&chunk).map_err(io_error("write"))?;
        if chunk.len() < SMALL_TAIL {
            break;
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| io_error("write")(e.into_error()))?;
    file.sync_all().map_err(io_error("fsync"))?;

    let (done, outcome) = mpsc::sync_channel(1);
    {
        let mut pending = aof.shared.pending.lock();
        if pending.closing || pending.rewrite.is_none() {
            return Err(cancelled());
        }
        pending.switch = Some(Switch {
            file: Some(file),
            temp_path: temp_path.clone(),
            target: aof.path.clone(),
            done,
        });
    }
    aof.shared.wake.notify_one();
    match outcome.recv() {
        Ok(Ok(len)) => Ok(len),
        Ok(Err(reason)) => Err(AofError::Writer(format!(
            "switching to the rewritten file: {reason}"
        ))),
        Err(_) => Err(cancelled()),
    }
}

/// The rewrite task: runs a rewrite when BGREWRITEAOF asks, or when the file has grown past the
/// automatic threshold, one at a time, until `shutdown`. Does nothing without an AOF.
/// `auto` is the starting threshold; CONFIG SET changes it later (it lives in `state.config`).
pub async fn run(state: Arc<NodeState>, auto: AutoRewrite, shutdown: CancellationToken) {
    let Some(aof) = state.aof.clone() else {
        return;
    };
    state.config.set_auto_rewrite(auto);
    remove_stale_temp_files(aof.path());
    let mut ticker = tokio::time::interval(CHECK_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    let mut retry_at = Instant::now();
    loop {
        let automatic = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = aof.shared.rewrite_wanted.notified() => false,
            _ = ticker.tick() => {
                let base = aof.rewrite_status().base_size;
                let current = aof.progress().file_size;
                let auto = state.config.auto_rewrite();
                if !auto.due(base, current) || Instant::now() < retry_at {
                    continue;
                }
                tracing::info!(base_size = base, current_size = current, "Starting automatic rewriting of AOF on {}% growth", auto.percentage);
                true
            }
        };
        {
            let mut status = aof.shared.rewrites.lock();
            status.scheduled = false;
            status.in_progress = true;
            status.started_at = Some(Instant::now());
        }
        let started = Instant::now();
        let (job_aof, job_state) = (Arc::clone(&aof), Arc::clone(&state));
        let result = tokio::task::spawn_blocking(move || rewrite(&job_aof, &job_state.keyspace))
            .await
            .unwrap_or_else(|e| Err(AofError::Writer(format!("the rewrite thread failed: {e}"))));
        let mut status = aof.shared.rewrites.lock();
        status.in_progress = false;
        status.started_at = None;
        status.last_duration_secs = Some(started.elapsed().as_secs());
        match result {
            Ok(size) => {
                status.consecutive_failures = 0;
                status.completed += 1;
                status.last_ok = true;
                status.base_size = size;
                failures = 0;
                tracing::info!(
                    size,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Background AOF rewrite finished successfully"
                );
            }
            Err(e) => {
                status.failed += 1;
                status.consecutive_failures += 1;
                status.last_ok = false;
                if automatic {
                    failures = failures.saturating_add(1);
                }
                let delay = Duration::from_secs(1u64 << failures.min(6)).min(MAX_RETRY_DELAY);
                retry_at = Instant::now() + delay;
                if shutdown.is_cancelled() {
                    tracing::info!(error = %e, "background AOF rewrite stopped by shutdown");
                } else {
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "background AOF rewrite failed");
                }
            }
        }
    }
}

/// Removes what rewrites cut short by a crash left beside the file (`temp-rewriteaof-bg-*`):
/// nothing reads them, and each crash would leave another.
fn remove_stale_temp_files(path: &std::path::Path) {
    let Some(dir) = path.parent() else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("temp-rewriteaof-bg-") && name.ends_with(".aof") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %name, "removed a rewrite's leftover temporary file")
                }
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove a rewrite's leftover temporary file")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_threshold_follows_redis() {
        let auto = AutoRewrite {
            percentage: 100,
            min_size: 64 * 1024 * 1024,
        };
        let mb = 1024 * 1024;
        assert!(!auto.due(0, 64 * mb), "not over the minimum");
        assert!(
            auto.due(0, 64 * mb + 1),
            "no base: any size over the minimum"
        );
        assert!(!auto.due(40 * mb, 79 * mb));
        assert!(auto.due(40 * mb, 80 * mb));
        let off = AutoRewrite {
            percentage: 0,
            min_size: 0,
        };
        assert!(!off.due(1, u64::MAX));
    }

    #[test]
    fn buffer_keeps_writes_of_snapshotted_slots_and_keyless_ones() {
        let args = |items: &[&str]| -> Vec<Bytes> {
            items.iter().map(|s| Bytes::from(s.to_string())).collect()
        };
        let mut buffer = Buffer::new();
        let set = args(&["SET", "foo", "1"]);
        buffer.record(&set, b"a");
        assert!(buffer.buf.is_empty());
        buffer.mark(key_hash_slot(b"foo"));
        buffer.record(&set, b"b");
        buffer.record(&args(&["SET", "bar", "1"]), b"c");
        buffer.record(&args(&["FLUSHALL"]), b"d");
        assert_eq!(&buffer.buf[..], b"bd");
    }
}
