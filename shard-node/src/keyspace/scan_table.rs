//! The large form of hashes, sets and sorted sets' member index: a chained hash table with a
//! power-of-two bucket array, as Redis's `dict`, so HSCAN / SSCAN / ZSCAN can walk it with Redis's
//! reverse-binary cursor.
//!
//! Why not std's `HashMap`: a SCAN cursor must stay valid while the collection changes between
//! calls, and must return every element present for the whole scan at least once. Redis gets that
//! by naming a bucket index in the cursor and incrementing the cursor's *reversed* bits: when the
//! table doubles or halves between two calls, the buckets already visited map onto a prefix of the
//! new order, so nothing present is skipped (some elements may come twice). That needs elements
//! that stay in the bucket their hash names, which open addressing (hashbrown) does not give.
//!
//! Elements are chained per bucket in boxed nodes; the table grows when it holds as many elements
//! as buckets and shrinks below a tenth, as Redis's dict does (all at once rather than
//! incrementally, which the cursor does not need).

use std::hash::BuildHasher;
use std::sync::LazyLock;

use bytes::Bytes;

/// One hasher (a random seed per process) for every table: a table stores no hasher of its own,
/// and its elements stay in their buckets for the table's life.
///
/// foldhash rather than std's SipHash-1-3: a key is hashed two or three times per command (look
/// up, then insert), and SipHash was 17% of a node's instructions under SET. The seed is random
/// per process, so a client cannot precompute colliding keys offline; the `quality` variant
/// mixes the low bits well, which `ScanTable`'s power-of-two buckets rely on.
static HASHER: LazyLock<foldhash::quality::RandomState> =
    LazyLock::new(foldhash::quality::RandomState::default);

/// The hash every keyspace table uses for a key or member.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    HASHER.hash_one(bytes)
}

/// An element stored by its key (a set member, a hash field, a sorted-set member).
pub trait Keyed {
    fn key(&self) -> &[u8];
}

impl Keyed for Bytes {
    fn key(&self) -> &[u8] {
        self
    }
}

impl Keyed for (Box<[u8]>, Box<[u8]>) {
    fn key(&self) -> &[u8] {
        &self.0
    }
}

impl Keyed for (Bytes, f64) {
    fn key(&self) -> &[u8] {
        &self.0
    }
}

type Link<T> = Option<Box<Node<T>>>;

#[derive(Debug, Clone)]
struct Node<T> {
    item: T,
    next: Link<T>,
}

/// The smallest bucket array a non-empty table has (Redis's DICT_HT_INITIAL_SIZE).
const MIN_BUCKETS: usize = 4;

/// A chained hash table of `T`s keyed by `T::key()`.
#[derive(Debug, Clone)]
pub struct ScanTable<T> {
    buckets: Box<[Link<T>]>,
    len: usize,
    /// For a set: Redis has converted it from an intset to a hashtable (a member that is not an
    /// integer, or too many members), which it never undoes however the set shrinks.
    converted: bool,
}

impl<T> Default for ScanTable<T> {
    fn default() -> Self {
        ScanTable {
            buckets: Box::default(),
            len: 0,
            converted: false,
        }
    }
}

impl<T> ScanTable<T> {
    /// Notes that Redis would hold this set as a hashtable from now on (see `converted`).
    pub fn mark_converted(&mut self) {
        self.converted = true;
    }

    pub fn is_converted(&self) -> bool {
        self.converted
    }
}

impl<T: Keyed> ScanTable<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bucket array's length (a power of two, or 0 when nothing was ever stored).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    fn index(&self, key: &[u8]) -> usize {
        (hash_bytes(key) as usize) & (self.buckets.len() - 1)
    }

    pub fn get(&self, key: &[u8]) -> Option<&T> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut link = &self.buckets[self.index(key)];
        while let Some(node) = link {
            if node.item.key() == key {
                return Some(&node.item);
            }
            link = &node.next;
        }
        None
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        if self.buckets.is_empty() {
            return None;
        }
        let index = self.index(key);
        let mut link = &mut self.buckets[index];
        while let Some(node) = link {
            if node.item.key() == key {
                return Some(&mut node.item);
            }
            link = &mut node.next;
        }
        None
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Stores `item`, replacing (and returning) the element with the same key.
    pub fn insert(&mut self, item: T) -> Option<T> {
        if let Some(slot) = self.get_mut(item.key()) {
            return Some(std::mem::replace(slot, item));
        }
        if self.len >= self.buckets.len() {
            self.resize((self.len + 1).next_power_of_two().max(MIN_BUCKETS));
        }
        let index = self.index(item.key());
        let next = self.buckets[index].take();
        self.buckets[index] = Some(Box::new(Node { item, next }));
        self.len += 1;
        None
    }

    /// Removes the element keyed `key`.
    pub fn remove(&mut self, key: &[u8]) -> Option<T> {
        if self.buckets.is_empty() {
            return None;
        }
        let index = self.index(key);
        let mut link = &mut self.buckets[index];
        while link.as_ref().is_some_and(|node| node.item.key() != key) {
            link = &mut link.as_mut()?.next;
        }
        let node = link.take()?;
        *link = node.next;
        self.len -= 1;
        self.shrink_if_sparse();
        Some(node.item)
    }

    /// Halves (or more) the bucket array once under a tenth of it is used, as Redis's
    /// htNeedsResize, so a collection that was large gives its memory back.
    fn shrink_if_sparse(&mut self) {
        let buckets = self.buckets.len();
        if self.len == 0 {
            self.buckets = Box::default();
        } else if buckets > MIN_BUCKETS && self.len * 10 < buckets {
            self.resize(self.len.next_power_of_two().max(MIN_BUCKETS));
        }
    }

    /// Moves every node to a new bucket array of `buckets` (a power of two).
    fn resize(&mut self, buckets: usize) {
        let old = std::mem::replace(
            &mut self.buckets,
            std::iter::repeat_with(|| None).take(buckets).collect(),
        );
        for mut chain in old.into_vec() {
            while let Some(mut node) = chain {
                chain = node.next.take();
                let index = self.index(node.item.key());
                node.next = self.buckets[index].take();
                self.buckets[index] = Some(node);
            }
        }
    }

    /// Every element, in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.buckets.iter().flat_map(|bucket| {
            let mut link = bucket.as_deref();
            std::iter::from_fn(move || {
                let node = link?;
                link = node.next.as_deref();
                Some(&node.item)
            })
        })
    }

    /// Removes and yields every element.
    pub fn drain(&mut self) -> impl Iterator<Item = T> {
        let buckets = std::mem::take(&mut self.buckets);
        self.len = 0;
        buckets.into_vec().into_iter().flat_map(|mut chain| {
            std::iter::from_fn(move || {
                let mut node = chain.take()?;
                chain = node.next.take();
                Some(node.item)
            })
        })
    }

    /// Visits the bucket `cursor` names and returns the next cursor (0: the scan is complete),
    /// Redis's dictScan on a table that is not rehashing: the cursor's high bits are set beyond the
    /// mask and its reversed bits incremented, so buckets are visited in reverse-binary order and
    /// a resize between two calls never skips a bucket that was not visited yet.
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&T)) -> u64 {
        if self.buckets.is_empty() {
            return 0;
        }
        let mask = (self.buckets.len() - 1) as u64;
        let mut link = &self.buckets[(cursor & mask) as usize];
        while let Some(node) = link {
            visit(&node.item);
            link = &node.next;
        }
        let cursor = cursor | !mask;
        cursor.reverse_bits().wrapping_add(1).reverse_bits()
    }
}

impl<T: Keyed + PartialEq> PartialEq for ScanTable<T> {
    /// Same elements, whatever the bucket layout.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|item| other.get(item.key()) == Some(item))
    }
}

impl<T: Keyed> FromIterator<T> for ScanTable<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut table = ScanTable::default();
        table.extend(items);
        table
    }
}

impl<T: Keyed> Extend<T> for ScanTable<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.insert(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn member(i: u32) -> Bytes {
        Bytes::from(format!("m{i}"))
    }

    /// A whole scan, calling `between` after each step (to change the table under the cursor).
    fn full_scan(
        table: &mut ScanTable<Bytes>,
        mut between: impl FnMut(&mut ScanTable<Bytes>, usize),
    ) -> Vec<Bytes> {
        let mut seen = Vec::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = table.scan(cursor, |m| seen.push(m.clone()));
            if cursor == 0 {
                return seen;
            }
            between(table, step);
            step += 1;
            assert!(step < 1_000_000, "scan does not end");
        }
    }

    #[test]
    fn insert_get_remove_and_shrink() {
        let mut t: ScanTable<Bytes> = (0..1000).map(member).collect();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.buckets(), 1024);
        assert!(t.contains(b"m999"));
        assert_eq!(t.insert(member(5)), Some(member(5)));
        for i in 0..990 {
            assert_eq!(t.remove(&member(i)), Some(member(i)));
        }
        assert_eq!(t.remove(b"m0"), None);
        assert_eq!(t.len(), 10);
        assert!(t.buckets() <= 16, "{}", t.buckets());
        let rest: HashSet<Bytes> = t.drain().collect();
        assert_eq!(rest.len(), 10);
        assert!(t.is_empty());
    }

    #[test]
    fn a_scan_returns_everything_once_on_a_stable_table() {
        let mut t: ScanTable<Bytes> = (0..5000).map(member).collect();
        let seen = full_scan(&mut t, |_, _| {});
        assert_eq!(seen.len(), 5000);
        assert_eq!(seen.into_iter().collect::<HashSet<_>>().len(), 5000);
    }

    #[test]
    fn a_scan_survives_growth_and_shrinking_between_calls() {
        // Members 0..300 stay for the whole scan; others come and go, growing the table to 8192
        // buckets and shrinking it back below a tenth, while the cursor walks it.
        let mut t: ScanTable<Bytes> = (0..300).map(member).collect();
        let mut sizes = HashSet::new();
        let seen = full_scan(&mut t, |t, step| {
            sizes.insert(t.buckets());
            if step % 50 < 25 {
                for i in 0..200 {
                    t.insert(member(100_000 + step as u32 * 200 + i));
                }
            } else {
                let doomed: Vec<Bytes> = t
                    .iter()
                    .filter(|m| m.len() > 6)
                    .take(400)
                    .cloned()
                    .collect();
                for m in doomed {
                    t.remove(&m);
                }
            }
        });
        assert!(sizes.len() >= 4, "the table never resized: {sizes:?}");
        assert!(
            sizes.contains(&512),
            "the table never shrank back: {sizes:?}"
        );
        let seen: HashSet<Bytes> = seen.into_iter().collect();
        for i in 0..300 {
            assert!(seen.contains(&member(i)), "m{i} missed");
        }
    }
}
