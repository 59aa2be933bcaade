//! The writer thread: the only code that touches the open file. It takes whatever `append` has
//! buffered, writes it in one go (so bursts of writes become one system call), and fsyncs by the
//! policy. A dedicated thread rather than a tokio task, because every step here blocks.
//!
//! On a write or fsync failure it keeps the unwritten bytes, cuts any partial write off the file,
//! publishes the error and retries every second; it never drops a write it was given.
//! A finished rewrite is switched to here, as the owner of the file (`switch`): in one step under
//! the buffer's lock it takes both the batch for the old file and the rewrite's copy of the same
//! recent writes, so the new file ends exactly where the old one does.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{FsyncPolicy, Shared};

/// How often `everysec` fsyncs, and how often a failed write is retried.
const PERIOD: Duration = Duration::from_secs(1);
/// Failed attempts at shutdown before giving up on the unwritten bytes.
const CLOSE_ATTEMPTS: u32 = 3;
/// A batch buffer larger than this is freed after use instead of kept for the next batch.
const KEEP_CAPACITY: usize = 8 * 1024 * 1024;

pub(super) fn run(shared: Arc<Shared>, mut file: File, path: PathBuf, start: u64) {
    let mut batch = BytesMut::with_capacity(64 * 1024);
    let mut written = start;
    let mut synced = start;
    let mut last_sync = Instant::now();
    // Bytes in the file: equals the logical offsets until a rewrite shortens the file.
    let mut file_len = start;
    let mut error: Option<Arc<str>> = None;
    let mut close_failures = 0;
    loop {
        // Read afresh each batch: CONFIG SET appendfsync changes it (`Aof::set_policy`).
        let policy = shared.policy();
        let (batch_end, sync_wanted, closing, switch) = {
            let mut pending = shared.pending.lock();
            while pending.buf.is_empty()
                && !pending.sync_wanted
                && !pending.closing
                && pending.switch.is_none()
            {
                // Idle, or a failure to retry: wake once a period. Unsynced bytes under
                // everysec: wake when their fsync is due.
                let wait = if error.is_none() && policy == FsyncPolicy::Everysec && synced < written
                {
                    PERIOD.saturating_sub(last_sync.elapsed())
                } else {
                    PERIOD
                };
                if shared.wake.wait_for(&mut pending, wait).timed_out() {
                    break;
                }
            }
            if batch.is_empty() {
                std::mem::swap(&mut batch, &mut pending.buf);
            } else {
                batch.extend_from_slice(&pending.buf);
                pending.buf.clear();
            }
            let sync_wanted = std::mem::take(&mut pending.sync_wanted);
            // The rewrite's buffer holds copies of exactly the writes appended since its slots
            // were snapshotted, up to this instant: the new file's tail.
            let switch = pending
                .switch
                .take()
                .map(|switch| (switch, pending.rewrite.take()));
            if pending.closing {
                // A rewrite still running will find its buffer gone and give up.
                pending.rewrite = None;
            }
            (pending.end_offset, sync_wanted, pending.closing, switch)
        };

        if !batch.is_empty() {
            match file.write_all(&batch) {
                Ok(()) => {
                    written = batch_end;
                    file_len += batch.len() as u64;
                    batch.clear();
                    if batch.capacity() > KEEP_CAPACITY {
                        batch = BytesMut::with_capacity(64 * 1024);
                    }
                    error = None;
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the append-only file; retrying");
                    // A partial write would leave a torn record before the retried one.
                    if let Err(e) = file.set_len(file_len) {
                        tracing::error!(path = %path.display(), error = %e, "cannot cut a partial write off the append-only file");
                    }
                    error = Some(format!("write {}: {e}", path.display()).into());
                }
            }
        }

        if let Some((mut switch, tail)) = switch {
            // Only when the old file holds everything: unwritten bytes are also in the tail and
            // would otherwise reach the new file twice.
            let outcome = match tail {
                Some(_) if !batch.is_empty() => {
                    Err("the append-only file has unwritten bytes".to_string())
                }
                Some(tail) => switch.install(tail.bytes()),
                None => Err("the rewrite was cancelled".to_string()),
            };
            match outcome {
                Ok(new_file) => {
                    file = new_file.file;
                    file_len = new_file.len;
                    synced = written;
                    last_sync = Instant::now();
                    switch.finish(Ok(file_len));
                }
                Err(reason) => switch.finish(Err(reason)),
            }
        }

        let due = match policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Everysec => last_sync.elapsed() >= PERIOD,
            FsyncPolicy::No => false,
        };
        if synced < written && (due || sync_wanted || closing) {
            match file.sync_data() {
                Ok(()) => {
                    synced = written;
                    last_sync = Instant::now();
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot fsync the append-only file");
                    error = Some(format!("fsync {}: {e}", path.display()).into());
                }
            }
        } else if synced == written && due {
            last_sync = Instant::now();
        }

        let done = closing
            && (error.is_none() || {
                close_failures += 1;
                close_failures >= CLOSE_ATTEMPTS
            });
        shared.progress.send_if_modified(|progress| {
            let changed = progress.written != written
                || progress.synced != synced
                || progress.error.is_some() != error.is_some()
                || progress.closed != done
                || progress.file_size != file_len
                || sync_wanted;
            *progress = super::Progress {
                written,
                synced,
                error: error.clone(),
                closed: done,
                file_size: file_len,
            };
            changed
        });
        if done {
            // A rewrite waiting for a switch must not wait for ever.
            if let Some(switch) = shared.pending.lock().switch.take() {
                switch.finish(Err("the append-only file was closed".to_string()));
            }
            if error.is_some() {
                tracing::error!(path = %path.display(), lost_bytes = batch.len(), "giving up on the append-only file at shutdown");
            }
            return;
        }
        if error.is_some() && closing {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
