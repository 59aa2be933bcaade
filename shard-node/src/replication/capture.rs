//! What a full resync needs from the write log while its snapshot is taken: the snapshot is made
//! slot by slot without stopping clients (as the AOF rewrite does, `aof::rewrite`), so the log
//! keeps, for that replica, a copy of every write to a slot already snapshotted (and of every
//! keyless entry: FLUSHALL, MULTI/EXEC, REPLCONF). The payload is then "writes kept since the
//! previous slot, then this slot" for every slot, which is the keyspace at the log offset where
//! the last slot was taken (the rewrite's ordering argument). From that point on every write is
//! kept, until the replica has received the snapshot and reads the backlog instead: so a long
//! transfer does not depend on the backlog's size. The copy is bounded (`limit`, as Redis's
//! client-output-buffer-limit for replicas); past it the sync fails and the replica retries.

use bytes::{Bytes, BytesMut};
use tessera_proto::slot::SLOT_COUNT;

use crate::aof::rewrite::record_slot;

#[derive(Debug)]
pub struct Capture {
    pub id: u64,
    /// One bit per slot: snapshotted.
    done: Box<[u64]>,
    /// Every slot is done: keep every write.
    all: bool,
    buf: BytesMut,
    limit: usize,
    pub overflowed: bool,
}

impl Capture {
    pub fn new(id: u64, limit: usize) -> Capture {
        Capture {
            id,
            done: vec![0u64; SLOT_COUNT as usize / 64].into_boxed_slice(),
            all: false,
            buf: BytesMut::new(),
            limit,
            overflowed: false,
        }
    }

    /// Keeps `encoded` (the log entry of `args`) when the snapshot already holds its slot.
    pub fn record(&mut self, args: Option<&[Bytes]>, encoded: &[u8]) {
        if self.overflowed {
            return;
        }
        let wanted = self.all
            || match args.and_then(record_slot) {
                Some(slot) => self.done[slot as usize / 64] & (1 << (slot % 64)) != 0,
                None => true,
            };
        if !wanted {
            return;
        }
        if self.buf.len() + encoded.len() > self.limit {
            self.overflowed = true;
            self.buf = BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(encoded);
    }

    /// Marks `slot` snapshotted and takes what was kept so far (which goes before the slot's
    /// snapshot in the payload).
    pub fn mark(&mut self, slot: u16) -> BytesMut {
        self.done[slot as usize / 64] |= 1 << (slot % 64);
        self.buf.split()
    }

    /// Every slot is snapshotted: keep every write from now on; takes what was kept so far.
    pub fn all_done(&mut self) -> BytesMut {
        self.all = true;
        self.buf.split()
    }

    pub fn take(&mut self) -> BytesMut {
        self.buf.split()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::slot::key_hash_slot;

    fn args(items: &[&str]) -> Vec<Bytes> {
        items.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn keeps_writes_of_snapshotted_slots_then_everything() {
        let mut capture = Capture::new(1, 10);
        let set = args(&["SET", "foo", "1"]);
        capture.record(Some(&set), b"a");
        assert!(capture.mark(key_hash_slot(b"foo")).is_empty());
        capture.record(Some(&set), b"b");
        capture.record(Some(&args(&["SET", "bar", "1"])), b"c");
        capture.record(None, b"d");
        assert_eq!(&capture.all_done()[..], b"bd");
        capture.record(Some(&args(&["SET", "bar", "1"])), b"e");
        assert_eq!(&capture.take()[..], b"e");
        capture.record(None, b"0123456789x");
        assert!(capture.overflowed);
    }
}
