//! An estimate of the bytes a key and its value occupy in our structures, for MEMORY USAGE and
//! `redis-cli --memkeys`.
//!
//! The model follows what is really allocated, type by type, rather than Redis's figures (which
//! describe Redis's encodings, not ours):
//! - every heap block is rounded up as glibc's malloc does (16-byte steps, an 8-byte header, a
//!   32-byte minimum chunk), since that is what the process really pays;
//! - a key is one pointer-sized bucket of its slot's `HashTable` (plus a control byte, at the
//!   7/8 load factor hashbrown keeps at most), a 40-byte record, and one block holding the key and,
//!   for a string, the value (see the layout in `keyspace`);
//! - a collection adds its own block behind the record: a packed hash is one buffer; a
//!   `ScanTable` is a bucket array of pointers and one node block per element; a list is a ring of
//!   `Bytes`; a sorted set adds a treap node per member.
//!
//! Collections larger than the sample count are estimated from the average of their first
//! `samples` elements times their length, as Redis's objectComputeSize samples, so MEMORY USAGE
//! stays cheap on a million-member hash.

use std::collections::VecDeque;
use std::mem::size_of;

use bytes::Bytes;

use super::{EntryRef, HashValue, SetValue, SortedSet, Stream, ValueRef};

/// What MEMORY USAGE samples when not told otherwise (Redis's OBJ_COMPUTE_SIZE_DEF_SAMPLES).
pub const DEFAULT_SAMPLES: usize = 5;

/// The size of one sorted-set treap node (`zset::Node`): the member's score and `Bytes`, its
/// priority, its subtree size and its two child links. Kept in step with that private struct.
const ZSET_NODE: usize =
    size_of::<f64>() + size_of::<Bytes>() + size_of::<u64>() + size_of::<usize>() + 2 * 8;

/// The header a cloned `Bytes` shares (buffer pointer, capacity, reference count).
const SHARED_HEADER: usize = 3 * size_of::<usize>();

/// A key's record (`keyspace::Record`): expiry, access word, key length, buffer, collection.
const RECORD: usize = 40;

/// The block behind a collection's record pointer (`keyspace::Collection`).
const COLLECTION: usize = 40;

/// A `ScanTable` node: the element and the next link.
const fn node_size(element: usize) -> usize {
    element + size_of::<usize>()
}

/// The block glibc's malloc really hands out for a request of `n` bytes (0 for no allocation).
pub fn malloc_size(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((n + 8 + 15) & !15).max(32)
}

/// The heap block behind a `Bytes` that owns its buffer.
fn bytes_heap(b: &Bytes) -> usize {
    malloc_size(b.len())
}

/// A `ScanTable`'s bucket array of `buckets` pointers.
fn scan_table_bytes(buckets: usize) -> usize {
    malloc_size(buckets * size_of::<usize>())
}

/// The estimate for `key` and its entry: its bucket, record and buffer, and the value with
/// everything it owns. `samples` = 0 means look at every element.
pub fn entry_usage(key: &[u8], entry: EntryRef<'_>, samples: usize) -> usize {
    // One pointer bucket and its control byte, at the average 7/8 load factor.
    let bucket = (size_of::<usize>() + 1) * 8 / 7;
    let inline = match entry.value {
        ValueRef::String(s) => s.len(),
        _ => 0,
    };
    bucket
        + malloc_size(RECORD)
        + malloc_size(key.len() + inline)
        + value_usage(entry.value, samples)
}

/// The heap a value owns beyond its record and key buffer.
pub fn value_usage(value: ValueRef<'_>, samples: usize) -> usize {
    match value {
        ValueRef::String(_) => 0,
        ValueRef::Hash(hash) => malloc_size(COLLECTION) + hash_usage(hash, samples),
        ValueRef::List(list) => {
            malloc_size(COLLECTION)
                + malloc_size(size_of::<VecDeque<Bytes>>())
                + list_usage(list, samples)
        }
        ValueRef::Set(set) => malloc_size(COLLECTION) + set_usage(set, samples),
        ValueRef::ZSet(zset) => {
            malloc_size(COLLECTION)
                + malloc_size(size_of::<SortedSet>())
                + zset_usage(zset, samples)
        }
        ValueRef::Stream(stream) => {
            malloc_size(COLLECTION)
                + malloc_size(size_of::<Stream>())
                + stream_usage(stream, samples)
        }
    }
}

/// A stream's entries: per entry its B-tree slot (ID and buffer pointer, with the node's share
/// of its header) and its packed fields block, sampled; plus the groups' PEL and consumers.
fn stream_usage(stream: &Stream, samples: usize) -> usize {
    // A B-tree leaf holds 11 slots of 16 + 16 bytes behind a small header: about 36 per slot.
    const SLOT: usize = 36;
    // A PEL entry: its slot in the group's map (ID, consumer name, time, count) and in the
    // consumer's set.
    const PENDING: usize = 16 + size_of::<Bytes>() + 16 + 20;
    let (seen, bytes) = stream.sampled_entry_bytes(samples);
    let entries = if seen == 0 {
        0
    } else {
        let per = (seen * SLOT + bytes) as u128;
        (per * stream.len() as u128 / seen as u128) as usize
    };
    let groups: usize = stream
        .groups
        .iter()
        .map(|(name, g)| {
            64 + malloc_size(name.len())
                + g.pel.len() * PENDING
                + g.consumers
                    .keys()
                    .map(|c| 64 + malloc_size(c.len()))
                    .sum::<usize>()
        })
        .sum();
    entries + groups
}

/// The average of `f` over the first `samples` items (all when 0) times `len`.
fn sampled<I: Iterator>(
    items: I,
    len: usize,
    samples: usize,
    f: impl Fn(I::Item) -> usize,
) -> usize {
    let limit = if samples == 0 { usize::MAX } else { samples };
    let (mut seen, mut total) = (0usize, 0usize);
    for item in items.take(limit) {
        seen += 1;
        total += f(item);
    }
    if seen == 0 {
        return 0;
    }
    // Integer arithmetic in u128 so a huge collection cannot overflow the product.
    ((total as u128 * len as u128) / seen as u128) as usize
}

fn hash_usage(hash: &HashValue, samples: usize) -> usize {
    if let Some(bytes) = hash.packed_bytes() {
        return malloc_size(bytes);
    }
    let node = node_size(2 * size_of::<Box<[u8]>>());
    scan_table_bytes(hash.table_buckets())
        + sampled(hash.iter(), hash.len(), samples, |(f, v)| {
            malloc_size(node) + malloc_size(f.len()) + malloc_size(v.len())
        })
}

fn list_usage(list: &VecDeque<Bytes>, samples: usize) -> usize {
    let ring = malloc_size(list.capacity() * size_of::<Bytes>());
    ring + sampled(list.iter(), list.len(), samples, bytes_heap)
}

fn set_usage(set: &SetValue, samples: usize) -> usize {
    let node = malloc_size(node_size(size_of::<Bytes>()));
    scan_table_bytes(set.buckets())
        + sampled(set.iter(), set.len(), samples, |m| node + bytes_heap(m))
}

fn zset_usage(zset: &SortedSet, samples: usize) -> usize {
    // Per member: a table node with its `(Bytes, f64)`, its bytes once, the header the two
    // `Bytes` handles then share, and a boxed treap node.
    let table_node = malloc_size(node_size(size_of::<(Bytes, f64)>()));
    let per_member = |(member, _): (&Bytes, f64)| {
        table_node + bytes_heap(member) + malloc_size(SHARED_HEADER) + malloc_size(ZSET_NODE)
    };
    scan_table_bytes(zset.table_buckets()) + sampled(zset.iter(), zset.len(), samples, per_member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{Entry, Value};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn malloc_rounds_like_glibc() {
        assert_eq!(malloc_size(0), 0);
        assert_eq!(malloc_size(1), 32);
        assert_eq!(malloc_size(24), 32);
        assert_eq!(malloc_size(25), 48);
        assert_eq!(malloc_size(100), 112);
    }

    #[test]
    fn sizes_grow_with_content_and_sampling_extrapolates() {
        let small = Value::String(b("v"));
        let big = Value::String(Bytes::from(vec![b'x'; 1000]));
        let usage = |v: &Value| entry_usage(b"k", Entry::new(v.clone(), None).as_ref(), 5);
        assert!(usage(&big) > usage(&small) + 900);
        let list: VecDeque<Bytes> = (0..100).map(|_| Bytes::from(vec![b'y'; 50])).collect();
        let list = Value::List(Box::new(list));
        assert_eq!(value_usage(list.as_ref(), 5), value_usage(list.as_ref(), 0));
        let mut z = SortedSet::default();
        for i in 0..10 {
            z.insert(b(&format!("m{i}")), f64::from(i));
        }
        let z = Value::ZSet(Box::new(z));
        assert!(value_usage(z.as_ref(), 0) > 10 * (ZSET_NODE + 32));
    }
}
