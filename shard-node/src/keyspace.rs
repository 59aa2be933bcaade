//! The node's keys: 16384 per-slot tables, each behind its own lock, with lazy and active expiry.
//!
//! Why one table per slot rather than one concurrent map (such as a DashMap): a slot index comes for
//! free, so COUNTKEYSINSLOT, GETKEYSINSLOT and moving a slot's keys during resharding never scan the
//! whole keyspace; and since every multi-key command in cluster mode is single-slot (CROSSSLOT
//! otherwise), holding one slot's lock makes MSET, RENAME and later MULTI/EXEC atomic without a
//! global lock. An empty `HashMap` does not allocate, so 16384 of them cost little on a node that
//! serves a third of the slots.
//!
//! Counters (keys held, keys with a TTL) are kept in atomics next to the tables so DBSIZE and INFO
//! need no lock. They are changed only through `SlotGuard`, which is the one way to mutate a table.

pub mod access;
pub mod blocking;
pub mod expire;
pub mod glob;
pub mod size;
pub mod zset;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tessera_proto::slot::{key_hash_slot, SLOT_COUNT};

pub use zset::SortedSet;

/// A stored value; commands of the wrong family answer WRONGTYPE by matching on this. Collections
/// are boxed so a string key (the common case) pays for a `Bytes`, not for the largest collection.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Bytes),
    Hash(Box<HashMap<Bytes, Bytes>>),
    List(Box<VecDeque<Bytes>>),
    Set(Box<HashSet<Bytes>>),
    ZSet(Box<SortedSet>),
}

impl Value {
    /// The name TYPE and SCAN TYPE use.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }
}

/// A key's value and its expiry, as Unix time in milliseconds (`None`: no TTL).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: Value,
    pub expires_at_ms: Option<u64>,
    /// evict: last access (LRU) or access frequency (LFU), updated by lookups (`access`).
    pub access: access::Access,
}

impl Entry {
    pub fn new(value: Value, expires_at_ms: Option<u64>) -> Entry {
        Entry {
            value,
            expires_at_ms,
            access: access::Access::new(),
        }
    }

    /// Whether the key is logically gone at `now_ms` (Redis: expired when `when <= now` is false,
    /// i.e. a key whose time equals now is already expired only once now passes it).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expires_at_ms, Some(at) if at < now_ms)
    }
}

/// One slot's keys.
#[derive(Debug, Default)]
pub struct SlotTable {
    entries: HashMap<Bytes, Entry>,
    /// Keys in `entries` with a TTL: lets active expiry skip slots with none.
    volatile: usize,
}

/// Server-wide counters kept beside the tables.
#[derive(Debug, Default)]
struct Counters {
    keys: AtomicU64,
    volatile: AtomicU64,
    expired: AtomicU64,
}

/// The keys of all 16384 slots.
pub struct Keyspace {
    slots: Box<[Mutex<SlotTable>]>,
    counters: Counters,
    /// Clients blocked on keys (BLPOP, ...): told by `SlotGuard::insert` when a key gets a value.
    blocking: blocking::BlockingRegistry,
}

impl Default for Keyspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyspace {
    pub fn new() -> Keyspace {
        let slots = (0..SLOT_COUNT)
            .map(|_| Mutex::new(SlotTable::default()))
            .collect();
        Keyspace {
            slots,
            counters: Counters::default(),
            blocking: blocking::BlockingRegistry::default(),
        }
    }

    /// Keys held, all slots (expired keys not yet reclaimed included, as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.counters.keys.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys held that have a TTL.
    pub fn volatile_len(&self) -> u64 {
        self.counters.volatile.load(Ordering::Relaxed)
    }

    /// Keys removed because their TTL passed (lazily or by the active cycle), since start.
    pub fn expired_total(&self) -> u64 {
        self.counters.expired.load(Ordering::Relaxed)
    }

    /// Locks the table of `slot` (0..16384; larger values are taken modulo 16384).
    pub fn lock(&self, slot: u16) -> SlotGuard<'_> {
        let slot = slot % SLOT_COUNT;
        SlotGuard {
            slot,
            table: self.slots[slot as usize].lock(),
            counters: &self.counters,
            blocking: &self.blocking,
        }
    }

    /// The registry of clients blocked on keys.
    pub fn blocking(&self) -> &blocking::BlockingRegistry {
        &self.blocking
    }

    /// Locks the table of the slot `key` hashes to.
    pub fn lock_key(&self, key: &[u8]) -> SlotGuard<'_> {
        self.lock(key_hash_slot(key))
    }

    /// Keys stored in `slot`, without locking it for long (expired keys included, as Redis).
    pub fn count_in_slot(&self, slot: u16) -> usize {
        self.lock(slot).len()
    }

    /// Locks every slot, in ascending order (the only order anyone takes more than one lock in,
    /// so it cannot deadlock): FLUSHALL holds them all while it logs and clears.
    pub fn lock_all(&self) -> Vec<SlotGuard<'_>> {
        (0..SLOT_COUNT).map(|slot| self.lock(slot)).collect()
    }

    /// Removes every key; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut removed = 0;
        for slot in 0..SLOT_COUNT {
            let mut guard = self.lock(slot);
            removed += guard.clear();
        }
        removed
    }
}

/// A locked slot table: the one way to read or change keys, so counters stay exact.
pub struct SlotGuard<'a> {
    slot: u16,
    table: MutexGuard<'a, SlotTable>,
    counters: &'a Counters,
    blocking: &'a blocking::BlockingRegistry,
}

impl<'a> SlotGuard<'a> {
    /// The registry of blocked clients, for as long as the keyspace lives (not tied to this
    /// borrow, so a command can serve waiters while it keeps changing the slot).
    pub fn blocking(&self) -> &'a blocking::BlockingRegistry {
        self.blocking
    }
}

impl SlotGuard<'_> {
    pub fn slot(&self) -> u16 {
        self.slot
    }

    pub fn len(&self) -> usize {
        self.table.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.entries.is_empty()
    }

    pub fn volatile_len(&self) -> usize {
        self.table.volatile
    }

    /// The entry of `key`, expired or not (callers expire first with `expire_if_needed`).
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.table.entries.get(key)
    }

    /// The value of `key` to change in place; the expiry is changed through `set_expiry`.
    pub fn value_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        self.table.entries.get_mut(key).map(|e| &mut e.value)
    }

    /// Removes `key` when its TTL has passed at `now_ms`; true when it did (the caller then logs
    /// the deletion, as Redis propagates a DEL for each expired key).
    pub fn expire_if_needed(&mut self, key: &[u8], now_ms: u64) -> bool {
        let expired = self
            .table
            .entries
            .get(key)
            .is_some_and(|e| e.is_expired(now_ms));
        if expired {
            self.remove(key);
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
        expired
    }

    /// Stores `entry` under `key`, returning the previous entry.
    pub fn insert(&mut self, mut key: Bytes, mut entry: Entry) -> Option<Entry> {
        // evict: an overwritten key keeps its LFU counter, as Redis's dbOverwrite. A new key, and
        // a string value, are stored as bytes of their own: a command's arguments are slices of
        // the connection's read buffer (see proto's `Request`) and would keep all of it alive, so
        // deleting or evicting the key would free nothing until its neighbours went too.
        match self.table.entries.get(&key) {
            Some(old) => entry.access.inherit(&old.access),
            None => key = Bytes::copy_from_slice(&key),
        }
        if let Value::String(s) = &mut entry.value {
            *s = Bytes::copy_from_slice(s);
        }
        // The one place a key gets a value: a collection that exists is never empty, so a client
        // blocked on a key is waiting for exactly this (served when the command's Txn ends).
        self.blocking.signal(self.slot, &key);
        let volatile = entry.expires_at_ms.is_some();
        let old = self.table.entries.insert(key, entry);
        match &old {
            None => {
                self.counters.keys.fetch_add(1, Ordering::Relaxed);
            }
            Some(old) if old.expires_at_ms.is_some() => self.drop_volatile(),
            Some(_) => {}
        }
        if volatile {
            self.add_volatile();
        }
        old
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.table.entries.remove(key)?;
        self.counters.keys.fetch_sub(1, Ordering::Relaxed);
        if old.expires_at_ms.is_some() {
            self.drop_volatile();
        }
        Some(old)
    }

    /// Sets or clears the TTL of `key`; false when the key is absent.
    pub fn set_expiry(&mut self, key: &[u8], expires_at_ms: Option<u64>) -> bool {
        let Some(entry) = self.table.entries.get_mut(key) else {
            return false;
        };
        let was = entry.expires_at_ms.is_some();
        entry.expires_at_ms = expires_at_ms;
        match (was, expires_at_ms.is_some()) {
            (false, true) => self.add_volatile(),
            (true, false) => self.drop_volatile(),
            _ => {}
        }
        true
    }

    /// The slot's keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.table.entries.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.table.entries.iter()
    }

    /// The `n`-th key in iteration order (for RANDOMKEY), if there are more than `n`.
    pub fn nth_key(&self, n: usize) -> Option<&Bytes> {
        self.table.entries.keys().nth(n)
    }

    /// Removes every key of the slot; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.table.entries.len();
        let volatile = self.table.volatile;
        // Replace rather than clear, so a slot that was large gives its memory back.
        self.table.entries = HashMap::new();
        self.table.volatile = 0;
        self.counters.keys.fetch_sub(n as u64, Ordering::Relaxed);
        self.counters
            .volatile
            .fetch_sub(volatile as u64, Ordering::Relaxed);
        n
    }

    /// Removes the keys whose TTL passed at `now_ms`, looking at no more than `budget` entries;
    /// calls `on_expired` for each removed key while the lock is held. Returns entries examined.
    pub fn expire_some(
        &mut self,
        now_ms: u64,
        budget: usize,
        mut on_expired: impl FnMut(&Bytes),
    ) -> usize {
        if self.table.volatile == 0 {
            return 0;
        }
        let mut examined = 0;
        let mut doomed = Vec::new();
        for (key, entry) in self.table.entries.iter() {
            if examined >= budget {
                break;
            }
            if entry.expires_at_ms.is_some() {
                examined += 1;
                if entry.is_expired(now_ms) {
                    doomed.push(key.clone());
                }
            }
        }
        for key in doomed {
            self.remove(&key);
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            on_expired(&key);
        }
        examined
    }

    fn add_volatile(&mut self) {
        self.table.volatile += 1;
        self.counters.volatile.fetch_add(1, Ordering::Relaxed);
    }

    fn drop_volatile(&mut self) {
        self.table.volatile -= 1;
        self.counters.volatile.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Now as Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &'static str) -> Value {
        Value::String(Bytes::from_static(v.as_bytes()))
    }

    #[test]
    fn counters_follow_inserts_removes_and_ttls() {
        let ks = Keyspace::new();
        {
            let mut g = ks.lock_key(b"a");
            g.insert(Bytes::from_static(b"a"), Entry::new(s("1"), Some(10)));
            g.insert(Bytes::from_static(b"a"), Entry::new(s("2"), None));
        }
        ks.lock_key(b"b")
            .insert(Bytes::from_static(b"b"), Entry::new(s("1"), Some(5)));
        assert_eq!(ks.len(), 2);
        assert_eq!(ks.volatile_len(), 1);
        assert!(ks.lock_key(b"b").expire_if_needed(b"b", 6));
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.volatile_len(), 0);
        assert_eq!(ks.expired_total(), 1);
        assert!(ks.lock_key(b"a").set_expiry(b"a", Some(1)));
        assert_eq!(ks.volatile_len(), 1);
        assert_eq!(ks.clear(), 1);
        assert_eq!((ks.len(), ks.volatile_len()), (0, 0));
    }

    #[test]
    fn expiry_is_strictly_after_the_deadline() {
        let e = Entry::new(s("v"), Some(100));
        assert!(!e.is_expired(100));
        assert!(e.is_expired(101));
    }

    #[test]
    fn expire_some_respects_budget() {
        let ks = Keyspace::new();
        let mut g = ks.lock(0);
        for i in 0..10u8 {
            g.insert(Bytes::from(vec![i]), Entry::new(s("v"), Some(1)));
        }
        let mut seen = 0;
        assert_eq!(g.expire_some(5, 4, |_| seen += 1), 4);
        assert_eq!(seen, 4);
        assert_eq!(g.len(), 6);
    }
}
