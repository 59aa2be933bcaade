//! An estimate of the bytes a key and its value occupy in our structures, for MEMORY USAGE and
//! `redis-cli --memkeys`.
//!
//! The model follows what is really allocated, type by type, rather than Redis's figures (which
//! describe Redis's encodings, not ours):
//! - every heap block is rounded up as glibc's malloc does (16-byte steps, an 8-byte header, a
//!   32-byte minimum chunk), since that is what the process really pays;
//! - a `Bytes` made with `copy_from_slice` (as commands store keys and values) owns one block of
//!   its length; a clone of it (a sorted-set member held twice) adds a shared header block;
//! - a `HashMap` is hashbrown's open table: `buckets` slots of the element's size plus one control
//!   byte per bucket and a group's width, buckets a power of two kept at most 7/8 full;
//! - the key's own slot in its slot table is one bucket of `(Bytes, Entry)` at that load factor.
//!
//! Collections larger than the sample count are estimated from the average of their first
//! `samples` elements times their length, as Redis's objectComputeSize samples, so MEMORY USAGE
//! stays cheap on a million-member hash.

use std::collections::{HashMap, HashSet, VecDeque};
use std::mem::size_of;

use bytes::Bytes;

use super::{Entry, SortedSet, Value};

/// What MEMORY USAGE samples when not told otherwise (Redis's OBJ_COMPUTE_SIZE_DEF_SAMPLES).
pub const DEFAULT_SAMPLES: usize = 5;

/// hashbrown's control bytes beyond one per bucket (its SSE2 group width).
const GROUP_WIDTH: usize = 16;

/// The size of one sorted-set treap node (`zset::Node`): the member's score and `Bytes`, its
/// priority, its subtree size and its two child links. Kept in step with that private struct.
const ZSET_NODE: usize =
    size_of::<f64>() + size_of::<Bytes>() + size_of::<u64>() + size_of::<usize>() + 2 * 8;

/// The header a cloned `Bytes` shares (buffer pointer, capacity, reference count).
const SHARED_HEADER: usize = 3 * size_of::<usize>();

/// The block glibc's malloc really hands out for a request of `n` bytes (0 for no allocation).
pub fn malloc_size(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((n + 8 + 15) & !15).max(32)
}

/// The buckets hashbrown allocates for a table of `capacity` (what `HashMap::capacity` reports).
fn buckets_for_capacity(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        c if c < 7 => (c + 1).next_power_of_two(),
        c => (c * 8 / 7).next_power_of_two(),
    }
}

/// The buckets hashbrown grows to for `len` elements inserted one by one.
fn buckets_for_len(len: usize) -> usize {
    match len {
        0 => 0,
        n if n < 4 => 4,
        n if n < 8 => 8,
        n => (n * 8).div_ceil(7).next_power_of_two(),
    }
}

/// The one block a hashbrown table of `buckets` buckets of `slot` bytes allocates.
fn table_bytes(buckets: usize, slot: usize) -> usize {
    if buckets == 0 {
        return 0;
    }
    malloc_size(buckets * slot + buckets + GROUP_WIDTH)
}

/// The heap block behind a `Bytes` that owns its buffer.
fn bytes_heap(b: &Bytes) -> usize {
    malloc_size(b.len())
}

/// The estimate for `key` and its entry: the key's bytes, its share of the slot table, and the
/// value with everything it owns. `samples` = 0 means look at every element.
pub fn entry_usage(key: &Bytes, entry: &Entry, samples: usize) -> usize {
    // One bucket of the slot table (a `(Bytes, Entry)` pair and its control byte), at the average
    // 7/8 load factor hashbrown keeps at most.
    let slot = (size_of::<(Bytes, Entry)>() + 1) * 8 / 7;
    bytes_heap(key) + slot + value_usage(&entry.value, samples)
}

/// The heap a value owns beyond the `Value` held inline in its entry.
pub fn value_usage(value: &Value, samples: usize) -> usize {
    match value {
        Value::String(s) => bytes_heap(s),
        Value::Hash(map) => {
            malloc_size(size_of::<HashMap<Bytes, Bytes>>()) + hash_usage(map, samples)
        }
        Value::List(list) => malloc_size(size_of::<VecDeque<Bytes>>()) + list_usage(list, samples),
        Value::Set(set) => malloc_size(size_of::<HashSet<Bytes>>()) + set_usage(set, samples),
        Value::ZSet(zset) => malloc_size(size_of::<SortedSet>()) + zset_usage(zset, samples),
    }
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

fn hash_usage(map: &HashMap<Bytes, Bytes>, samples: usize) -> usize {
    let table = table_bytes(
        buckets_for_capacity(map.capacity()),
        size_of::<(Bytes, Bytes)>(),
    );
    table
        + sampled(map.iter(), map.len(), samples, |(f, v)| {
            bytes_heap(f) + bytes_heap(v)
        })
}

fn list_usage(list: &VecDeque<Bytes>, samples: usize) -> usize {
    let ring = malloc_size(list.capacity() * size_of::<Bytes>());
    ring + sampled(list.iter(), list.len(), samples, bytes_heap)
}

fn set_usage(set: &HashSet<Bytes>, samples: usize) -> usize {
    let table = table_bytes(buckets_for_capacity(set.capacity()), size_of::<Bytes>());
    table + sampled(set.iter(), set.len(), samples, bytes_heap)
}

fn zset_usage(zset: &SortedSet, samples: usize) -> usize {
    // The by-name table holds `(Bytes, f64)` pairs; its capacity is private, so take the size it
    // grows to for this many members.
    let table = table_bytes(buckets_for_len(zset.len()), size_of::<(Bytes, f64)>());
    // Per member: its bytes once, the header the two `Bytes` handles then share, and a boxed
    // treap node.
    let per_member = |(member, _): (&Bytes, f64)| {
        bytes_heap(member) + malloc_size(SHARED_HEADER) + malloc_size(ZSET_NODE)
    };
    table + sampled(zset.iter(), zset.len(), samples, per_member)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn hashbrown_buckets() {
        assert_eq!(buckets_for_capacity(3), 4);
        assert_eq!(buckets_for_capacity(7), 8);
        assert_eq!(buckets_for_capacity(14), 16);
        assert_eq!(buckets_for_capacity(28), 32);
        let mut m = HashMap::new();
        for i in 0..100u32 {
            m.insert(i, i);
            assert_eq!(
                buckets_for_capacity(m.capacity()),
                buckets_for_len(m.len()),
                "{i}"
            );
        }
    }

    #[test]
    fn sizes_grow_with_content_and_sampling_extrapolates() {
        let small = Entry::new(Value::String(b("v")), None);
        let big = Entry::new(Value::String(Bytes::from(vec![b'x'; 1000])), None);
        assert!(entry_usage(&b("k"), &big, 5) > entry_usage(&b("k"), &small, 5) + 900);
        let list: VecDeque<Bytes> = (0..100).map(|_| Bytes::from(vec![b'y'; 50])).collect();
        let list = Value::List(Box::new(list));
        assert_eq!(value_usage(&list, 5), value_usage(&list, 0));
        let mut z = SortedSet::default();
        for i in 0..10 {
            z.insert(b(&format!("m{i}")), f64::from(i));
        }
        let z = Value::ZSet(Box::new(z));
        assert!(value_usage(&z, 0) > 10 * (ZSET_NODE + 32));
    }
}
