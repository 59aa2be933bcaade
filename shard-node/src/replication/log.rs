//! The node's one ordered write log. Every write the node applies (a command's write, a lazy or
//! active expiry's DEL, an eviction's DEL, FLUSHALL, a transaction as MULTI ... EXEC) is appended
//! here, under one lock, which gives it its replication offset (bytes of RESP since the log's
//! beginning, Redis's master_repl_offset) and hands the same encoded bytes, in that order, to:
//! - the append-only file, when it is on;
//! - the in-memory backlog (`backlog`), always, which replicas read from (and resume from);
//! - the full resyncs in progress (`capture`).
//!
//! The AOF keeps its own buffer and writer thread (its lock is taken inside this one, so the two
//! orders are one); the cost on a write is this lock, one encoding and two copies. Readers of the
//! offset (WAIT, INFO, the per-client write offset) read an atomic, never the lock.
//!
//! A replica's log is fed with its master's stream verbatim (`append_from_master`), so its offset
//! is its master's and its backlog serves its own replicas (and, once promoted, the old master's
//! other replicas, who continue from the same offsets).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::backlog::{Backlog, NotInBacklog};
use super::capture::Capture;
use crate::aof::{self, Aof};

/// Redis's repl-backlog-size default.
pub const DEFAULT_BACKLOG_SIZE: u64 = 1024 * 1024;

/// Where an entry goes besides the offset.
#[derive(Clone, Copy)]
struct Sinks {
    aof: bool,
    stream: bool,
}

const ALL: Sinks = Sinks {
    aof: true,
    stream: true,
};

struct Core {
    aof: Option<Arc<Aof>>,
    backlog: Backlog,
    /// Reused for encoding, so an append does not allocate.
    scratch: BytesMut,
    captures: Vec<Capture>,
    next_capture: u64,
}

impl Core {
    fn write(&mut self, args: Option<&[Bytes]>, encoded: &[u8], sinks: Sinks) {
        if sinks.aof {
            if let (Some(aof), Some(args)) = (&self.aof, args) {
                aof.append_encoded(args, encoded);
            }
        }
        if sinks.stream {
            self.backlog.push(encoded);
            for capture in &mut self.captures {
                capture.record(args, encoded);
            }
        }
    }

    fn capture(&mut self, id: u64) -> Option<&mut Capture> {
        self.captures.iter_mut().find(|c| c.id == id)
    }
}

/// See the module documentation.
pub struct WriteLog {
    core: Mutex<Core>,
    /// The offset of the log's last byte, published after each append for lock-free readers.
    end: AtomicU64,
    /// Replica streams waiting on `appended`: appends notify only when there is one.
    streaming: AtomicUsize,
    appended: Notify,
}

impl WriteLog {
    /// A log ending at `end` with a backlog of `backlog_size` bytes, without an AOF yet.
    pub fn new(backlog_size: u64, end: u64) -> WriteLog {
        WriteLog {
            core: Mutex::new(Core {
                aof: None,
                backlog: Backlog::new(usize::try_from(backlog_size).unwrap_or(usize::MAX), end),
                scratch: BytesMut::with_capacity(256),
                captures: Vec::new(),
                next_capture: 1,
            }),
            end: AtomicU64::new(end),
            streaming: AtomicUsize::new(0),
            appended: Notify::new(),
        }
    }

    /// From now on writes also go to `aof` (set once the AOF has been replayed and opened).
    pub fn attach_aof(&self, aof: Arc<Aof>) {
        self.core.lock().aof = Some(aof);
    }

    /// Makes the log end at `end` with an empty backlog (the offset kept across a restart, or a
    /// replica's after loading its master's snapshot).
    pub fn reset(&self, end: u64) {
        let mut core = self.core.lock();
        core.backlog.reset(end);
        self.end.store(end, Ordering::Release);
    }

    /// Appends one write (to the AOF and the replication stream).
    pub fn append(&self, args: &[Bytes]) {
        self.append_with(args, ALL);
    }

    /// Appends several writes as one contiguous run (a transaction's MULTI ... EXEC).
    pub fn append_all(&self, records: &[Vec<Bytes>]) {
        let mut core = self.core.lock();
        let mut scratch = std::mem::take(&mut core.scratch);
        for args in records {
            scratch.clear();
            aof::encode_record(args, &mut scratch);
            core.write(Some(args), &scratch, ALL);
        }
        core.scratch = scratch;
        self.published(&core);
    }

    /// Appends an entry for replicas only (REPLCONF GETACK): it is not a write to persist.
    pub fn append_stream_only(&self, args: &[Bytes]) {
        self.append_with(
            args,
            Sinks {
                aof: false,
                stream: true,
            },
        );
    }

    /// Appends a write to the AOF only (a replica loading its master's snapshot: the snapshot's
    /// commands are not part of the stream, whose offset the snapshot already stands for).
    pub fn append_aof_only(&self, args: &[Bytes]) {
        self.append_with(
            args,
            Sinks {
                aof: true,
                stream: false,
            },
        );
    }

    /// A replica: appends one entry of its master's stream as it came (`raw`, one RESP command);
    /// `args` is `Some` for a write, which its AOF keeps too.
    pub fn append_from_master(&self, raw: &[u8], args: Option<&[Bytes]>) {
        let mut core = self.core.lock();
        core.write(
            args,
            raw,
            Sinks {
                aof: args.is_some(),
                stream: true,
            },
        );
        self.published(&core);
    }

    fn append_with(&self, args: &[Bytes], sinks: Sinks) {
        let mut core = self.core.lock();
        let mut scratch = std::mem::take(&mut core.scratch);
        scratch.clear();
        aof::encode_record(args, &mut scratch);
        core.write(Some(args), &scratch, sinks);
        if scratch.capacity() > 64 * 1024 {
            scratch = BytesMut::with_capacity(256);
        }
        core.scratch = scratch;
        self.published(&core);
    }

    /// Publishes the new end (under the lock, so it only grows) and wakes the replica streams.
    fn published(&self, core: &Core) {
        self.end.store(core.backlog.end(), Ordering::Release);
        if self.streaming.load(Ordering::Acquire) > 0 {
            self.appended.notify_waiters();
        }
    }

    /// The offset of the log's last byte (master_repl_offset).
    pub fn offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Copies up to `max` bytes of the log from position `from` (1-based, see `backlog`).
    pub fn read_from(
        &self,
        from: u64,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, NotInBacklog> {
        self.core.lock().backlog.read(from, max, out)
    }

    /// Whether a replica asking for the bytes from position `from` can be continued from the
    /// backlog (Redis's check in masterTryPartialResynchronization).
    pub fn can_continue_from(&self, from: u64) -> bool {
        let core = self.core.lock();
        from >= core.backlog.first() && from <= core.backlog.end() + 1
    }

    /// (repl_backlog_size, repl_backlog_first_byte_offset, repl_backlog_histlen).
    pub fn backlog_info(&self) -> (usize, u64, usize) {
        let core = self.core.lock();
        let b = &core.backlog;
        (b.size(), b.first(), b.histlen())
    }

    /// Registers a replica stream; while the guard lives, appends wake `appended()` waiters.
    pub fn subscribe(&self) -> Subscription<'_> {
        self.streaming.fetch_add(1, Ordering::AcqRel);
        Subscription { log: self }
    }

    /// Notified after appends while someone is subscribed.
    pub fn appended(&self) -> &Notify {
        &self.appended
    }

    /// Starts keeping a copy of writes for a full resync (see `capture`); returns its id.
    pub fn begin_capture(&self, limit: usize) -> u64 {
        let mut core = self.core.lock();
        let id = core.next_capture;
        core.next_capture += 1;
        core.captures.push(Capture::new(id, limit));
        id
    }

    /// Marks `slot` snapshotted for capture `id` (call with the slot's lock held) and takes the
    /// writes kept before it; `None` when the capture overflowed or is gone.
    pub fn capture_mark(&self, id: u64, slot: u16) -> Option<BytesMut> {
        let mut core = self.core.lock();
        let capture = core.capture(id).filter(|c| !c.overflowed)?;
        Some(capture.mark(slot))
    }

    /// Every slot is snapshotted: takes the writes kept since the last slot, and the log offset
    /// the snapshot then stands for. The capture goes on keeping every write.
    pub fn capture_snapshot_point(&self, id: u64) -> Option<(BytesMut, u64)> {
        let mut core = self.core.lock();
        let end = core.backlog.end();
        let capture = core.capture(id).filter(|c| !c.overflowed)?;
        Some((capture.all_done(), end))
    }

    /// Ends capture `id`: the writes kept since the snapshot point, and the offset they end at
    /// (the replica reads the backlog after it). `None` when it overflowed.
    pub fn capture_end(&self, id: u64) -> Option<(BytesMut, u64)> {
        let mut core = self.core.lock();
        let end = core.backlog.end();
        let index = core.captures.iter().position(|c| c.id == id)?;
        let mut capture = core.captures.swap_remove(index);
        (!capture.overflowed).then(|| (capture.take(), end))
    }

    /// Drops capture `id` (the sync failed).
    pub fn capture_abort(&self, id: u64) {
        self.core.lock().captures.retain(|c| c.id != id);
    }
}

/// A registered replica stream (`WriteLog::subscribe`).
pub struct Subscription<'a> {
    log: &'a WriteLog,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.log.streaming.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Vec<Bytes> {
        items.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn offsets_count_resp_bytes_as_redis() {
        let log = WriteLog::new(DEFAULT_BACKLOG_SIZE, 0);
        log.append(&args(&["SET", "a", "1"]));
        // *3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n: 27 bytes
        assert_eq!(log.offset(), 27);
        log.append_all(&[args(&["MULTI"]), args(&["INCR", "a"]), args(&["EXEC"])]);
        let mut out = Vec::new();
        log.read_from(28, usize::MAX, &mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\n*1\r\n$4\r\nEXEC\r\n"
        );
        assert_eq!(log.offset(), 27 + out.len() as u64);
        assert!(log.can_continue_from(1));
        assert!(log.can_continue_from(log.offset() + 1));
        assert!(!log.can_continue_from(log.offset() + 2));
        log.append_aof_only(&args(&["SET", "b", "2"]));
        assert_eq!(log.offset(), 27 + out.len() as u64, "not in the stream");
    }

    #[test]
    fn a_capture_ends_where_the_backlog_takes_over() {
        let log = WriteLog::new(16, 0);
        let id = log.begin_capture(1024);
        log.append(&args(&["SET", "a", "1"]));
        let (before, point) = log.capture_snapshot_point(id).unwrap();
        assert!(
            before.is_empty(),
            "slot of a not snapshotted: in the snapshot"
        );
        assert_eq!(point, 27);
        log.append(&args(&["SET", "a", "2"]));
        let (tail, end) = log.capture_end(id).unwrap();
        assert_eq!(tail.len(), 27);
        assert_eq!(end, 54);
        assert!(log.capture_end(id).is_none());
    }
}
