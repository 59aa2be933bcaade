//! The payload of a full resync: the keyspace as RESP commands (the AOF rewrite's format,
//! `aof::snapshot`: for each key the shortest commands that recreate it, with its TTL as
//! PEXPIREAT), written slot by slot to a temporary file beside the data, interleaved with the
//! writes the capture kept (see `capture` for why the result is the keyspace at one offset).
//!
//! On the wire it is sent as Redis sends an RDB: `$<len>\r\n` then the bytes (no trailing CRLF).
//! A replica applies it command by command, so it never holds the whole payload.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::aof::snapshot::write_slots;
use crate::state::NodeState;

/// A payload ready to send.
pub struct Snapshot {
    /// Opened for reading at its start; the file itself is already unlinked.
    pub file: File,
    pub len: u64,
    /// The log offset the payload stands for (FULLRESYNC's offset).
    pub offset: u64,
}

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot {action} the snapshot file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writes during the snapshot went past the replica output limit")]
    Overflow,
}

/// Writes the payload for capture `capture` (begun by the caller) and returns it. Blocking: run
/// it on a blocking thread. Clients keep running; each slot is locked only while it is encoded.
pub fn build(state: &NodeState, capture: u64) -> Result<Snapshot, SnapshotError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = state.replication.scratch_dir().join(format!(
        "temp-repl-sync-{}-{}.snap",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |action: &'static str| {
        let path = path.clone();
        move |source| SnapshotError::Io {
            action,
            path,
            source,
        }
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io("create"))?;
    // Nobody else needs its name: unlinked now, it cannot be left behind by a crash.
    std::fs::remove_file(&path).map_err(io("remove"))?;
    let log = &state.replication.log;
    let keyspace = &state.keyspace;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_slots(
        keyspace,
        &mut out,
        |slot| {
            log.capture_mark(capture, slot)
                .ok_or(SnapshotError::Overflow)
        },
        |e| io("write")(e),
    )?;
    let (tail, offset) = log
        .capture_snapshot_point(capture)
        .ok_or(SnapshotError::Overflow)?;
    out.write_all(&tail).map_err(io("write"))?;
    let mut file = out.into_inner().map_err(|e| io("write")(e.into_error()))?;
    let len = file.stream_position().map_err(io("seek"))?;
    file.seek(SeekFrom::Start(0)).map_err(io("seek"))?;
    Ok(Snapshot { file, len, offset })
}
