//! The stream: entries in ID order, the ID bookkeeping Redis 7.0 keeps (last generated ID, entries
//! ever added, the largest deleted ID), and consumer groups with their pending entries (PEL).
//!
//! Entries are a `BTreeMap` from ID to the entry's field-value pairs packed in one exact-size
//! buffer (length-prefixed), so an entry costs its map slot (32 bytes) and one small block rather
//! than a `Vec` of `Bytes` pairs (32 bytes of header per string plus their blocks).
//!
//! Beside the entries, `nodes` models how Redis groups them into listpack nodes of at most
//! `stream-node-max-entries` (100) items and `stream-node-max-bytes` (4096) bytes, counting a
//! deleted item until its node goes: approximate trimming (`MAXLEN ~`, `MINID ~`) removes whole
//! nodes only, so matching Redis's replies needs Redis's node boundaries, and XINFO reports how
//! many nodes there are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;

/// Redis's defaults for `stream-node-max-entries` and `stream-node-max-bytes`.
pub const NODE_MAX_ENTRIES: u32 = 100;
pub const NODE_MAX_BYTES: usize = 4096;

/// The "unknown" value of a group's entries-read counter (Redis's SCG_INVALID_ENTRIES_READ).
pub const ENTRIES_READ_UNKNOWN: i64 = -1;

/// A stream entry ID: milliseconds and sequence number, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID, `None` past the last possible one (Redis's streamIncrID).
    pub fn incr(self) -> Option<StreamId> {
        if self.seq == u64::MAX {
            (self.ms != u64::MAX).then(|| StreamId::new(self.ms + 1, 0))
        } else {
            Some(StreamId::new(self.ms, self.seq + 1))
        }
    }

    /// The previous ID, `None` before 0-0 (Redis's streamDecrID).
    pub fn decr(self) -> Option<StreamId> {
        if self.seq == 0 {
            (self.ms != 0).then(|| StreamId::new(self.ms - 1, u64::MAX))
        } else {
            Some(StreamId::new(self.ms, self.seq - 1))
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// `ms-seq` as a reply payload.
    pub fn to_bytes(self) -> Bytes {
        Bytes::from(self.to_string())
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One entry's field-value pairs, packed: each string as a LEB128 length and its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Fields(Box<[u8]>);

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl Fields {
    /// Packs `items` (field, value, field, value, ...).
    pub fn pack<T: AsRef<[u8]>>(items: &[T]) -> Fields {
        let total: usize = items.iter().map(|s| s.as_ref().len() + 2).sum();
        let mut out = Vec::with_capacity(total);
        for item in items {
            let item = item.as_ref();
            put_len(&mut out, item.len());
            out.extend_from_slice(item);
        }
        Fields(out.into_boxed_slice())
    }

    /// The strings, field then value, in order.
    pub fn iter(&self) -> FieldsIter<'_> {
        FieldsIter { rest: &self.0 }
    }

    /// Field-value pairs.
    pub fn count(&self) -> usize {
        self.iter().count() / 2
    }

    /// Bytes of the packed buffer (memory accounting).
    pub fn packed_len(&self) -> usize {
        self.0.len()
    }
}

/// The strings of a `Fields`.
pub struct FieldsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            len |= ((byte & 0x7f) as usize) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let len = len.min(self.rest.len());
        let (item, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(item)
    }
}

/// A delivered, not yet acknowledged entry of a group (Redis's streamNACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub consumer: Bytes,
    /// Unix ms of the last delivery.
    pub delivery_time: u64,
    pub delivery_count: u64,
}

/// A consumer of a group: when it was last seen and the IDs pending for it.
#[derive(Debug, Clone, Default)]
pub struct Consumer {
    pub seen_time: u64,
    pub pel: BTreeSet<StreamId>,
}

/// Consumers are equal by what they hold pending: when one was last seen is bookkeeping that a
/// replay of the log does not reproduce (as keys' access metadata).
impl PartialEq for Consumer {
    fn eq(&self, other: &Consumer) -> bool {
        self.pel == other.pel
    }
}

impl Eq for Consumer {}

/// A consumer group (Redis's streamCG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries the group has read, or `ENTRIES_READ_UNKNOWN`.
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Pending>,
    pub consumers: BTreeMap<Bytes, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group {
            last_id,
            entries_read,
            pel: BTreeMap::new(),
            consumers: BTreeMap::new(),
        }
    }

    /// The consumer `name`, created (seen now) when absent; the bool says it was created.
    pub fn consumer_or_create(&mut self, name: &[u8], now_ms: u64) -> (&mut Consumer, bool) {
        let created = !self.consumers.contains_key(name);
        let consumer = self
            .consumers
            .entry(Bytes::copy_from_slice(name))
            .or_insert_with(|| Consumer {
                seen_time: now_ms,
                pel: BTreeSet::new(),
            });
        (consumer, created)
    }

    /// Drops `id` from the PEL and its consumer's; whether it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        let Some(pending) = self.pel.remove(&id) else {
            return false;
        };
        if let Some(consumer) = self.consumers.get_mut(&pending.consumer) {
            consumer.pel.remove(&id);
        }
        true
    }

    /// Makes `id` pending for `consumer` (moving it from its previous owner).
    pub fn assign(&mut self, id: StreamId, consumer: &Bytes, pending: Pending) {
        if let Some(old) = self.pel.insert(id, pending) {
            if old.consumer != *consumer {
                if let Some(c) = self.consumers.get_mut(&old.consumer) {
                    c.pel.remove(&id);
                }
            }
        }
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }
}

/// One listpack node as Redis would hold it (see the module notes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    live: u32,
    deleted: u32,
    /// The listpack's size in bytes, as Redis would encode it.
    bytes: usize,
    /// The node's last item ever appended (deleted or not).
    last: StreamId,
    /// The master entry's fields, which later items with the same fields omit.
    master_fields: Box<[Bytes]>,
}

/// A stream value.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    entries: BTreeMap<StreamId, Fields>,
    nodes: BTreeMap<StreamId, Node>,
    pub last_id: StreamId,
    pub entries_added: u64,
    pub max_deleted_id: StreamId,
    /// Consumer groups by name (Redis keeps them in a radix tree: name order).
    pub groups: BTreeMap<Bytes, Group>,
}

/// Streams are equal by contents: entries, IDs, counters and groups; node boundaries are
/// bookkeeping a rewrite does not reproduce.
impl PartialEq for Stream {
    fn eq(&self, other: &Stream) -> bool {
        self.entries == other.entries
            && self.last_id == other.last_id
            && self.entries_added == other.entries_added
            && self.max_deleted_id == other.max_deleted_id
            && self.groups == other.groups
    }
}

/// How a trim bounds the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// Bytes of a listpack integer element's encoding plus its back-length.
fn lp_int_size(v: i64) -> usize {
    let l = if (0..=127).contains(&v) {
        1
    } else if (-4096..=4095).contains(&v) {
        2
    } else if (i16::MIN as i64..=i16::MAX as i64).contains(&v) {
        3
    } else if (-(1 << 23)..(1 << 23)).contains(&v) {
        4
    } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
        5
    } else {
        9
    };
    l + lp_backlen(l)
}

fn lp_backlen(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// Bytes of a listpack string element (stored as an integer when it reads as one).
fn lp_str_size(s: &[u8]) -> usize {
    if s.len() <= 20 {
        if let Some(v) = tessera_proto::resp::request::string_to_i64(s) {
            return lp_int_size(v);
        }
    }
    let l = match s.len() {
        0..=63 => 1 + s.len(),
        64..=4095 => 2 + s.len(),
        n => 5 + n,
    };
    l + lp_backlen(l)
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry's ID, 0-0 when empty (XINFO's recorded-first-entry-id).
    pub fn first_id(&self) -> StreamId {
        self.entries.keys().next().copied().unwrap_or_default()
    }

    /// Listpack nodes Redis would hold (XINFO's radix-tree-keys).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, id: StreamId) -> Option<&Fields> {
        self.entries.get(&id)
    }

    /// Entries with IDs in `from..=to`, ascending.
    pub fn range(
        &self,
        from: StreamId,
        to: StreamId,
    ) -> impl DoubleEndedIterator<Item = (&StreamId, &Fields)> {
        // (`BTreeMap::range` panics on a reversed range; an empty half-open one stands in.)
        if from <= to {
            self.entries
                .range((Bound::Included(from), Bound::Included(to)))
        } else {
            self.entries
                .range((Bound::Included(to), Bound::Excluded(to)))
        }
    }

    pub fn first_entry(&self) -> Option<(&StreamId, &Fields)> {
        self.entries.iter().next()
    }

    pub fn last_entry(&self) -> Option<(&StreamId, &Fields)> {
        self.entries.iter().next_back()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&StreamId, &Fields)> {
        self.entries.iter()
    }

    /// Appends an entry with ID `id`, which the caller made greater than `last_id`; `items` are
    /// field, value, ... .
    pub fn append<T: AsRef<[u8]>>(&mut self, id: StreamId, items: &[T]) {
        let fields_total: usize = items.iter().map(|s| s.as_ref().len()).sum();
        let numfields = (items.len() / 2) as i64;
        self.entries.insert(id, Fields::pack(items));
        self.last_id = id;
        self.entries_added += 1;
        let tail = self.nodes.iter().next_back().and_then(|(master, node)| {
            let full = node.bytes + fields_total >= NODE_MAX_BYTES
                || node.live + node.deleted >= NODE_MAX_ENTRIES;
            (!full).then_some(*master)
        });
        let master = match tail {
            Some(master) => master,
            None => {
                let fields: Box<[Bytes]> = items
                    .iter()
                    .step_by(2)
                    .map(|f| Bytes::copy_from_slice(f.as_ref()))
                    .collect();
                // count, deleted, num-fields, the fields, the zero terminator; header and end.
                let bytes = 6
                    + 1
                    + lp_int_size(0) * 3
                    + lp_int_size(numfields)
                    + fields.iter().map(|f| lp_str_size(f)).sum::<usize>();
                self.nodes.insert(
                    id,
                    Node {
                        live: 0,
                        deleted: 0,
                        bytes,
                        last: id,
                        master_fields: fields,
                    },
                );
                id
            }
        };
        let Some(node) = self.nodes.get_mut(&master) else {
            return;
        };
        let same_fields = node.master_fields.len() == items.len() / 2
            && node
                .master_fields
                .iter()
                .zip(items.iter().step_by(2))
                .all(|(m, f)| m[..] == *f.as_ref());
        let ms_diff = id.ms.wrapping_sub(master.ms) as i64;
        let seq_diff = id.seq.wrapping_sub(master.seq) as i64;
        let mut size = lp_int_size(if same_fields { 2 } else { 0 })
            + lp_int_size(ms_diff)
            + lp_int_size(seq_diff);
        let mut lp_count = numfields + 3;
        if !same_fields {
            size += lp_int_size(numfields);
            lp_count += numfields + 1;
        }
        for (i, item) in items.iter().enumerate() {
            if i % 2 == 1 || !same_fields {
                size += lp_str_size(item.as_ref());
            }
        }
        size += lp_int_size(lp_count);
        node.bytes += size;
        node.live += 1;
        node.last = id;
    }

    /// The master ID of the node holding `id`.
    fn node_of(&self, id: StreamId) -> Option<StreamId> {
        self.nodes.range(..=id).next_back().map(|(k, _)| *k)
    }

    /// Deletes entry `id` (XDEL): whether it existed. Updates the largest deleted ID.
    pub fn delete(&mut self, id: StreamId) -> bool {
        if self.entries.remove(&id).is_none() {
            return false;
        }
        self.note_removed(id);
        if id > self.max_deleted_id {
            self.max_deleted_id = id;
        }
        true
    }

    /// Marks `id`'s item deleted in its node, dropping a node left with no live item.
    fn note_removed(&mut self, id: StreamId) {
        if let Some(master) = self.node_of(id) {
            if let Some(node) = self.nodes.get_mut(&master) {
                node.live = node.live.saturating_sub(1);
                node.deleted += 1;
                if node.live == 0 {
                    self.nodes.remove(&master);
                }
            }
        }
    }

    /// Trims as Redis's streamTrim: whole nodes from the head while they can go, then (unless
    /// `approx`) single entries; `limit` (0: none) caps the entries removed by whole nodes.
    /// Returns how many entries were removed.
    pub fn trim(&mut self, trim: Trim, approx: bool, limit: u64) -> u64 {
        let mut removed = 0u64;
        while let Some((&master, node)) = self.nodes.iter().next() {
            let len = self.entries.len() as u64;
            if let Trim::MaxLen(max) = trim {
                if len <= max {
                    break;
                }
            }
            let live = node.live as u64;
            if limit != 0 && removed + live > limit {
                break;
            }
            let whole = match trim {
                Trim::MaxLen(max) => len - live >= max,
                Trim::MinId(min) => node.last < min,
            };
            if whole {
                let end = self.nodes.range(master..).nth(1).map(|(k, _)| *k);
                let doomed: Vec<StreamId> = match end {
                    Some(end) => self.entries.range(master..end).map(|(k, _)| *k).collect(),
                    None => self.entries.range(master..).map(|(k, _)| *k).collect(),
                };
                for id in doomed {
                    self.entries.remove(&id);
                }
                self.nodes.remove(&master);
                removed += live;
                continue;
            }
            if approx {
                break;
            }
            while let Some((&id, _)) = self.entries.iter().next() {
                let stop = match trim {
                    Trim::MaxLen(max) => self.entries.len() as u64 <= max,
                    Trim::MinId(min) => id >= min,
                };
                if stop {
                    break;
                }
                self.entries.remove(&id);
                self.note_removed(id);
                removed += 1;
            }
            break;
        }
        removed
    }

    /// Redis's streamRangeHasTombstones: whether a deleted entry may lie in `start..=MAX`.
    pub fn range_has_tombstones(&self, start: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted_id.is_zero() {
            return false;
        }
        if self.first_id() > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id
    }

    /// Redis's streamEstimateDistanceFromFirstEverEntry: the entries-read counter of `id`, or
    /// `ENTRIES_READ_UNKNOWN`.
    pub fn estimate_entries_read(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        let added = self.entries_added as i64;
        if self.entries.is_empty() && id <= self.last_id {
            return added;
        }
        if id == self.last_id {
            return added;
        } else if id > self.last_id {
            return ENTRIES_READ_UNKNOWN;
        }
        let first = self.first_id();
        if self.max_deleted_id.is_zero() || self.max_deleted_id < first {
            let len = self.entries.len() as i64;
            if id < first {
                return added - len;
            } else if id == first {
                return added - len + 1;
            }
        }
        ENTRIES_READ_UNKNOWN
    }

    /// A group's lag (XINFO GROUPS), `None` when it cannot be known.
    pub fn group_lag(&self, group: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        let added = self.entries_added as i64;
        if group.entries_read != ENTRIES_READ_UNKNOWN && !self.range_has_tombstones(group.last_id) {
            return Some(added - group.entries_read);
        }
        let read = self.estimate_entries_read(group.last_id);
        (read != ENTRIES_READ_UNKNOWN).then_some(added - read)
    }

    /// Bytes of the packed entries (memory accounting), over the first `samples` (0: all)
    /// scaled to the whole stream.
    pub fn sampled_entry_bytes(&self, samples: usize) -> (usize, usize) {
        let limit = if samples == 0 { usize::MAX } else { samples };
        let mut seen = 0;
        let mut total = 0;
        for (_, fields) in self.entries.iter().take(limit) {
            seen += 1;
            total += fields.packed_len();
        }
        (seen, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let long = vec![b'x'; 300];
        let f = Fields::pack(&[&b"a"[..], b"", &long[..], b"v"]);
        let got: Vec<&[u8]> = f.iter().collect();
        assert_eq!(got, vec![&b"a"[..], b"", &long[..], b"v"]);
        assert_eq!(f.count(), 2);
    }

    #[test]
    fn nodes_fill_to_a_hundred_items() {
        let mut s = Stream::default();
        for i in 1..=250u64 {
            s.append(StreamId::new(i, 0), &[&b"f"[..], b"v"]);
        }
        assert_eq!(s.node_count(), 3);
        assert_eq!(s.trim(Trim::MaxLen(120), true, 0), 100);
        assert_eq!(s.len(), 150);
        assert_eq!(s.trim(Trim::MaxLen(120), false, 0), 30);
        assert_eq!(s.first_id(), StreamId::new(131, 0));
        assert!(s.delete(StreamId::new(131, 0)));
        assert_eq!(s.max_deleted_id, StreamId::new(131, 0));
    }

    #[test]
    fn ids_step_across_their_limits() {
        assert_eq!(StreamId::new(1, u64::MAX).incr(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::MAX.incr(), None);
        assert_eq!(StreamId::MIN.decr(), None);
        assert_eq!(StreamId::new(2, 0).decr(), Some(StreamId::new(1, u64::MAX)));
    }
}
