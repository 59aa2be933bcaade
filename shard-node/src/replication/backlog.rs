//! The replication backlog: the last `size` bytes of the write log in a ring, by offset, as Redis's
//! repl_backlog. A replica that lost its link asks for the bytes after the offset it reached; the
//! master can continue it (PSYNC `+CONTINUE`) while those bytes are still here, and must send a
//! whole snapshot otherwise.
//!
//! Offsets count bytes of the log since its beginning, as Redis's master_repl_offset: the log's
//! `end` is the offset of its last byte, and a byte's position is 1-based (the first byte ever
//! written is position 1), so the ring holds positions `end - histlen + 1 ..= end`.

/// The ring. Its memory is taken when it is made and stays `size` bytes: unlike Redis, which
/// creates its backlog when the first replica connects, ours exists from the start (a replica
/// may continue from it after any break), so it is a fixed cost counted from the start, in
/// INFO's used_memory and against maxmemory (as Redis counts its backlog), and a limit set over
/// the memory in use already includes it.
#[derive(Debug)]
pub struct Backlog {
    ring: Vec<u8>,
    size: usize,
    /// Index in `ring` where the next byte goes.
    head: usize,
    /// Bytes of history held (at most `size`).
    histlen: usize,
    /// Offset of the log's last byte.
    end: u64,
}

/// The bytes asked for are gone from the ring (or were never written): only a full resync helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {wanted} is not in the backlog (it holds {first}..={end})")]
pub struct NotInBacklog {
    pub wanted: u64,
    pub first: u64,
    pub end: u64,
}

impl Backlog {
    /// An empty backlog of `size` bytes whose log ends at `end`.
    pub fn new(size: usize, end: u64) -> Backlog {
        Backlog {
            ring: vec![0; size],
            size,
            head: 0,
            histlen: 0,
            end,
        }
    }

    /// Offset of the log's last byte (master_repl_offset).
    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn histlen(&self) -> usize {
        self.histlen
    }

    /// Position of the oldest byte held (repl_backlog_first_byte_offset); `end + 1` when empty.
    pub fn first(&self) -> u64 {
        self.end + 1 - self.histlen as u64
    }

    /// Forgets the history and makes the log end at `end` (a replica that loaded a snapshot taken
    /// at its master's offset `end`).
    pub fn reset(&mut self, end: u64) {
        self.head = 0;
        self.histlen = 0;
        self.end = end;
    }

    /// Appends `bytes` to the log, dropping the oldest history past `size`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.end += bytes.len() as u64;
        if self.size == 0 || bytes.is_empty() {
            return;
        }
        // More than the ring holds: only its last `size` bytes can stay.
        let kept = &bytes[bytes.len().saturating_sub(self.size)..];
        let first = kept.len().min(self.size - self.head);
        self.ring[self.head..self.head + first].copy_from_slice(&kept[..first]);
        let rest = &kept[first..];
        self.ring[..rest.len()].copy_from_slice(rest);
        self.head = (self.head + kept.len()) % self.size;
        self.histlen = (self.histlen + kept.len()).min(self.size);
    }

    /// Copies up to `max` bytes starting at position `from` into `out`; returns how many (0 when
    /// `from` is just past the end: nothing new yet). Errs when `from` is no longer (or not yet)
    /// in the ring.
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<u8>) -> Result<usize, NotInBacklog> {
        if from < self.first() || from > self.end + 1 {
            return Err(NotInBacklog {
                wanted: from,
                first: self.first(),
                end: self.end,
            });
        }
        let behind = (self.end + 1 - from) as usize;
        let n = behind.min(max);
        if n == 0 {
            return Ok(0);
        }
        let start = (self.head + self.size - behind) % self.size;
        let first = n.min(self.size - start);
        out.extend_from_slice(&self.ring[start..start + first]);
        out.extend_from_slice(&self.ring[..n - first]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(backlog: &Backlog, from: u64) -> Result<Vec<u8>, NotInBacklog> {
        let mut out = Vec::new();
        backlog.read(from, usize::MAX, &mut out)?;
        Ok(out)
    }

    #[test]
    fn holds_the_last_size_bytes_by_position() {
        let mut backlog = Backlog::new(8, 0);
        assert_eq!(backlog.first(), 1);
        assert_eq!(read_all(&backlog, 1), Ok(Vec::new()));
        backlog.push(b"abcde");
        assert_eq!(
            (backlog.first(), backlog.end(), backlog.histlen()),
            (1, 5, 5)
        );
        assert_eq!(read_all(&backlog, 3).unwrap(), b"cde");
        backlog.push(b"fghij");
        // 10 bytes written into 8: positions 3..=10 remain, across the ring's wrap.
        assert_eq!((backlog.first(), backlog.end()), (3, 10));
        assert_eq!(read_all(&backlog, 3).unwrap(), b"cdefghij");
        assert_eq!(read_all(&backlog, 9).unwrap(), b"ij");
        assert_eq!(read_all(&backlog, 11).unwrap(), b"");
        assert_eq!(
            read_all(&backlog, 2),
            Err(NotInBacklog {
                wanted: 2,
                first: 3,
                end: 10
            })
        );
        assert!(read_all(&backlog, 12).is_err(), "ahead of the log");
        let mut some = Vec::new();
        assert_eq!(backlog.read(4, 3, &mut some), Ok(3));
        assert_eq!(some, b"def");
    }

    #[test]
    fn a_write_longer_than_the_ring_keeps_its_tail() {
        let mut backlog = Backlog::new(4, 100);
        backlog.push(b"xy");
        backlog.push(b"0123456789");
        assert_eq!((backlog.first(), backlog.end()), (109, 112));
        assert_eq!(read_all(&backlog, 109).unwrap(), b"6789");
    }

    #[test]
    fn reset_and_a_zero_size_ring() {
        let mut backlog = Backlog::new(4, 0);
        backlog.push(b"abc");
        backlog.reset(50);
        assert_eq!(
            (backlog.first(), backlog.end(), backlog.histlen()),
            (51, 50, 0)
        );
        backlog.push(b"z");
        assert_eq!(read_all(&backlog, 51).unwrap(), b"z");
        let mut none = Backlog::new(0, 0);
        none.push(b"abc");
        assert_eq!(none.end(), 3);
        assert_eq!(read_all(&none, 4), Ok(Vec::new()));
        assert!(read_all(&none, 3).is_err());
    }
}
