//! The node's keys: 16384 per-slot tables, each behind its own lock, with lazy and active expiry.
//!
//! Why one table per slot rather than one concurrent map (such as a DashMap): a slot index comes for
//! free, so COUNTKEYSINSLOT, GETKEYSINSLOT and moving a slot's keys during resharding never scan the
//! whole keyspace; and since every multi-key command in cluster mode is single-slot (CROSSSLOT
//! otherwise), holding one slot's lock makes MSET, RENAME and later MULTI/EXEC atomic without a
//! global lock. An empty table does not allocate, so 16384 of them cost little on a node that
//! serves a third of the slots.
//!
//! Memory layout (issue 4: no more bytes per key than Redis). A slot table is a
//! `hashbrown::HashTable` of one pointer per bucket to a 40-byte `Record` (a 48-byte malloc
//! block): the expiry as a `u64` (`NO_EXPIRY` for none), a 32-bit word kept for per-key access
//! metadata (LRU/LFU), the key's length, one exact-size buffer holding the key followed, for a
//! string, by its value, and for the other types a pointer to the collection. A string key thus
//! costs two allocations (record, key+value) and 8 bytes of bucket (~9-18 with the table's
//! load), where a `HashMap<Bytes, Entry>` paid ~90 bytes of bucket (twice that after doubling)
//! plus separate key and value blocks. Pointer buckets also keep a resize cheap: it moves 8-byte
//! pointers, not records. Small hashes are packed (see `hash_value`), big collections are
//! `ScanTable`s that HSCAN / SSCAN / ZSCAN page through with Redis's cursor.
//!
//! Reads see a key through `EntryRef` (a borrowed view with the value and expiry as fields);
//! writes hand over an owned `Entry`. Counters (keys held, keys with a TTL) are kept in atomics
//! next to the tables so DBSIZE and INFO need no lock. They are changed only through `SlotGuard`,
//! which is the one way to mutate a table.

pub mod access;
pub mod blocking;
pub mod expire;
pub use tessera_proto::glob;
pub mod hash_value;
pub mod scan_table;
pub mod size;
pub mod stream;
pub mod transit;
pub mod zset;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use tessera_proto::slot::{key_hash_slot, SLOT_COUNT};

pub use hash_value::HashValue;
pub use scan_table::ScanTable;
pub use stream::Stream;
pub use zset::SortedSet;

/// A set's members (Redis 7.0 keeps sets of non-integers in a hashtable; intsets are reported
/// by contents, see OBJECT ENCODING).
pub type SetValue = ScanTable<Bytes>;

/// A value handed to the keyspace (insert) or taken out of it (remove); commands of the wrong
/// family answer WRONGTYPE by matching on the borrowed `ValueRef`. Collections are boxed so a
/// string (the common case) is not sized by the largest collection.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Bytes),
    Hash(Box<HashValue>),
    List(Box<VecDeque<Bytes>>),
    Set(Box<SetValue>),
    ZSet(Box<SortedSet>),
    Stream(Box<Stream>),
}

impl Value {
    /// The name TYPE and SCAN TYPE use.
    pub fn type_name(&self) -> &'static str {
        self.as_ref().type_name()
    }

    /// This value borrowed, as the keyspace hands it out.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::String(s) => ValueRef::String(s),
            Value::Hash(h) => ValueRef::Hash(h),
            Value::List(l) => ValueRef::List(l),
            Value::Set(s) => ValueRef::Set(s),
            Value::ZSet(z) => ValueRef::ZSet(z),
            Value::Stream(s) => ValueRef::Stream(s),
        }
    }
}

/// A stored value, borrowed from its slot table.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    String(&'a [u8]),
    Hash(&'a HashValue),
    List(&'a VecDeque<Bytes>),
    Set(&'a SetValue),
    ZSet(&'a SortedSet),
    Stream(&'a Stream),
}

impl ValueRef<'_> {
    /// The name TYPE and SCAN TYPE use.
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueRef::String(_) => "string",
            ValueRef::Hash(_) => "hash",
            ValueRef::List(_) => "list",
            ValueRef::Set(_) => "set",
            ValueRef::ZSet(_) => "zset",
            ValueRef::Stream(_) => "stream",
        }
    }

    /// An owned copy (COPY, and tests comparing whole keyspaces).
    pub fn to_owned(&self) -> Value {
        match *self {
            ValueRef::String(s) => Value::String(Bytes::copy_from_slice(s)),
            ValueRef::Hash(h) => Value::Hash(Box::new(h.clone())),
            ValueRef::List(l) => Value::List(Box::new(l.clone())),
            ValueRef::Set(s) => Value::Set(Box::new(s.clone())),
            ValueRef::ZSet(z) => Value::ZSet(Box::new(z.clone())),
            ValueRef::Stream(s) => Value::Stream(Box::new(s.clone())),
        }
    }
}

/// A stored collection, to change in place. A string is replaced whole (`SlotGuard::set_value`),
/// since it shares its buffer with the key; its variant carries nothing.
#[derive(Debug)]
pub enum ValueMut<'a> {
    String,
    Hash(&'a mut HashValue),
    List(&'a mut VecDeque<Bytes>),
    Set(&'a mut SetValue),
    ZSet(&'a mut SortedSet),
    Stream(&'a mut Stream),
}

/// How Redis would hold a string, which OBJECT ENCODING reports: decided by the command that made
/// the value, not by its bytes alone. SET, INCR and most writers go through Redis's
/// tryObjectEncoding (`int` when the bytes are an integer, else `embstr` up to 44 bytes, else
/// `raw`); INCRBYFLOAT makes an `embstr`/`raw` even of "3"; APPEND to an existing string,
/// SETRANGE, SETBIT and BITOP make `raw`. COPY and RENAME keep the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StringEncoding {
    #[default]
    Auto,
    NotInt,
    Raw,
}

/// A key's value and its expiry, as Unix time in milliseconds (`None`: no TTL), handed over by
/// value: what `SlotGuard::insert` takes and `remove` gives back.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    pub expires_at_ms: Option<u64>,
    /// Last access (LRU) or access frequency (LFU), updated by lookups (see `access`).
    pub access: access::Access,
    /// For a string: how Redis would encode it (ignored for other types).
    pub string_encoding: StringEncoding,
}

/// Entries are equal when their contents are: value and expiry. Access metadata and a string's
/// encoding are bookkeeping that a replay of the log does not reproduce (Redis logs INCRBYFLOAT as
/// SET and an AOF rewrite writes every string as SET, so its encodings change across a restart
/// too).
impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.value == other.value && self.expires_at_ms == other.expires_at_ms
    }
}

impl Entry {
    pub fn new(value: Value, expires_at_ms: Option<u64>) -> Entry {
        Entry {
            value,
            expires_at_ms,
            access: access::Access::new(),
            string_encoding: StringEncoding::Auto,
        }
    }

    /// This entry with the string encoding `encoding`.
    pub fn with_string_encoding(mut self, encoding: StringEncoding) -> Entry {
        self.string_encoding = encoding;
        self
    }

    /// Whether the key is logically gone at `now_ms` (see `EntryRef::is_expired`).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expires_at_ms, Some(at) if at < now_ms)
    }

    /// This entry borrowed, as the keyspace hands stored entries out.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            value: self.value.as_ref(),
            expires_at_ms: self.expires_at_ms,
            access: &self.access,
            string_encoding: self.string_encoding,
        }
    }
}

/// A stored key's value and expiry, borrowed from its slot table.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub value: ValueRef<'a>,
    pub expires_at_ms: Option<u64>,
    /// Last access (LRU) or access frequency (LFU); lookups update it through the shared borrow.
    pub access: &'a access::Access,
    /// For a string: how Redis would encode it.
    pub string_encoding: StringEncoding,
}

impl EntryRef<'_> {
    /// Whether the key is logically gone at `now_ms` (Redis: expired when `when <= now` is false,
    /// i.e. a key whose time equals now is already expired only once now passes it).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expires_at_ms, Some(at) if at < now_ms)
    }

    /// An owned copy of the entry (a fresh key as far as access metadata goes, as Redis's COPY).
    pub fn to_owned(&self) -> Entry {
        Entry::new(self.value.to_owned(), self.expires_at_ms)
            .with_string_encoding(self.string_encoding)
    }
}

/// Set in `Record::key_len` for a string of `StringEncoding::NotInt` (a `Raw` one is a
/// `Collection::Raw`).
const NOT_INT: u32 = 1 << 31;

/// `Record::expires_at_ms` of a key without a TTL. Expiry times come from i64 milliseconds, so
/// no real deadline reaches it.
const NO_EXPIRY: u64 = u64::MAX;

/// A collection's storage behind a record. Strings live in the record's buffer instead, except
/// one changed in place (SETRANGE, SETBIT, APPEND: Redis's `raw` strings), which gets a growable
/// buffer of its own so editing a large bitmap does not copy it.
#[derive(Debug)]
enum Collection {
    Raw(Vec<u8>),
    Hash(HashValue),
    List(VecDeque<Bytes>),
    Set(SetValue),
    ZSet(Box<SortedSet>),
    Stream(Box<Stream>),
}

/// One key as stored: 40 bytes, so one 48-byte malloc block. `data` is the key followed, for a
/// string, by its value; `collection` is set for every other type.
#[derive(Debug)]
struct Record {
    expires_at_ms: u64,
    /// Per-key access metadata (LRU clock / LFU counter), 32 bits as Redis's robj.lru.
    access: access::Access,
    /// The key's length; the top bit is `NOT_INT` (keys are at most 512 MB, so it is free).
    key_len: u32,
    data: Box<[u8]>,
    collection: Option<Box<Collection>>,
}

impl Record {
    /// Lays out `key` and `entry`. Keys are at most 512 MB (the codec's proto-max-bulk-len).
    fn new(key: &[u8], entry: Entry) -> Record {
        let mut key_len = u32::try_from(key.len()).unwrap_or(u32::MAX) & !NOT_INT;
        let (data, collection) = match entry.value {
            Value::String(value) if entry.string_encoding == StringEncoding::Raw => (
                Box::from(key),
                Some(Box::new(Collection::Raw(value.to_vec()))),
            ),
            Value::String(value) => {
                if entry.string_encoding == StringEncoding::NotInt {
                    key_len |= NOT_INT;
                }
                let mut data = Vec::with_capacity(key.len() + value.len());
                data.extend_from_slice(key);
                data.extend_from_slice(&value);
                (data.into_boxed_slice(), None)
            }
            other => (
                Box::from(key),
                Some(Box::new(Collection::from_value(other))),
            ),
        };
        Record {
            expires_at_ms: entry.expires_at_ms.unwrap_or(NO_EXPIRY),
            access: entry.access,
            key_len,
            data,
            collection,
        }
    }

    fn key_len(&self) -> usize {
        (self.key_len & !NOT_INT) as usize
    }

    fn string_encoding(&self) -> StringEncoding {
        match self.collection.as_deref() {
            Some(Collection::Raw(_)) => StringEncoding::Raw,
            _ if self.key_len & NOT_INT != 0 => StringEncoding::NotInt,
            _ => StringEncoding::Auto,
        }
    }

    fn key(&self) -> &[u8] {
        &self.data[..self.key_len()]
    }

    fn expires_at_ms(&self) -> Option<u64> {
        (self.expires_at_ms != NO_EXPIRY).then_some(self.expires_at_ms)
    }

    fn has_expiry(&self) -> bool {
        self.expires_at_ms != NO_EXPIRY
    }

    /// `EntryRef::is_expired` without building the view (`NO_EXPIRY` is never below a time).
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms < now_ms
    }

    fn view(&self) -> EntryRef<'_> {
        let value = match self.collection.as_deref() {
            None => ValueRef::String(&self.data[self.key_len()..]),
            Some(Collection::Raw(s)) => ValueRef::String(s),
            Some(Collection::Hash(h)) => ValueRef::Hash(h),
            Some(Collection::List(l)) => ValueRef::List(l),
            Some(Collection::Set(s)) => ValueRef::Set(s),
            Some(Collection::ZSet(z)) => ValueRef::ZSet(z),
            Some(Collection::Stream(s)) => ValueRef::Stream(s),
        };
        EntryRef {
            value,
            expires_at_ms: self.expires_at_ms(),
            access: &self.access,
            string_encoding: self.string_encoding(),
        }
    }

    fn value_mut(&mut self) -> ValueMut<'_> {
        match self.collection.as_deref_mut() {
            None | Some(Collection::Raw(_)) => ValueMut::String,
            Some(Collection::Hash(h)) => ValueMut::Hash(h),
            Some(Collection::List(l)) => ValueMut::List(l),
            Some(Collection::Set(s)) => ValueMut::Set(s),
            Some(Collection::ZSet(z)) => ValueMut::ZSet(z),
            Some(Collection::Stream(s)) => ValueMut::Stream(s),
        }
    }

    /// The string value as a growable buffer of its own (moved out of `data` the first time);
    /// `None` for other types.
    fn raw_string(&mut self) -> Option<&mut Vec<u8>> {
        if self.collection.is_none() {
            let key_len = self.key_len();
            let value = self.data[key_len..].to_vec();
            self.data = Box::from(&self.data[..key_len]);
            self.collection = Some(Box::new(Collection::Raw(value)));
        }
        match self.collection.as_deref_mut() {
            Some(Collection::Raw(s)) => Some(s),
            _ => None,
        }
    }

    fn into_entry(self) -> Entry {
        let expires_at_ms = self.expires_at_ms();
        let string_encoding = self.string_encoding();
        let key_len = self.key_len();
        let value = match self.collection {
            None => Value::String(Bytes::from(self.data).slice(key_len..)),
            Some(collection) => (*collection).into_value(),
        };
        Entry {
            value,
            expires_at_ms,
            access: self.access,
            string_encoding,
        }
    }
}

impl Collection {
    fn from_value(value: Value) -> Collection {
        match value {
            Value::Hash(h) => Collection::Hash(*h),
            Value::List(l) => Collection::List(*l),
            Value::Set(s) => Collection::Set(*s),
            Value::ZSet(z) => Collection::ZSet(z),
            Value::Stream(s) => Collection::Stream(s),
            Value::String(s) => Collection::Raw(s.to_vec()),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Collection::Raw(s) => Value::String(Bytes::from(s)),
            Collection::Hash(h) => Value::Hash(Box::new(h)),
            Collection::List(l) => Value::List(Box::new(l)),
            Collection::Set(s) => Value::Set(Box::new(s)),
            Collection::ZSet(z) => Value::ZSet(z),
            Collection::Stream(s) => Value::Stream(s),
        }
    }
}

fn record_hash(record: &Record) -> u64 {
    scan_table::hash_bytes(record.key())
}

/// A lookup found the key expired, and removed it (`SlotGuard::get_unexpired`).
#[derive(Debug)]
pub struct KeyExpired;

/// One slot's keys.
#[derive(Debug, Default)]
pub struct SlotTable {
    entries: HashTable<Box<Record>>,
    /// Keys in `entries` with a TTL: lets active expiry skip slots with none.
    volatile: usize,
}

impl SlotTable {
    fn find(&self, key: &[u8]) -> Option<&Record> {
        self.entries
            .find(scan_table::hash_bytes(key), |r| r.key() == key)
            .map(|r| &**r)
    }

    /// `find`, except that a record expired at `now_ms` is taken out (and no longer counted as
    /// volatile): one probe of the table where an expiry check and then `find` took two. The
    /// server-wide counters are the caller's (`SlotGuard::get_unexpired`), which cannot call
    /// `remove` while the found record's borrow may still be returned.
    fn find_unexpired(&mut self, key: &[u8], now_ms: u64) -> Result<Option<&Record>, KeyExpired> {
        match self
            .entries
            .find_entry(scan_table::hash_bytes(key), |r| r.key() == key)
        {
            Err(_) => Ok(None),
            Ok(occupied) if occupied.get().is_expired(now_ms) => {
                drop(occupied.remove());
                self.volatile -= 1;
                Err(KeyExpired)
            }
            Ok(occupied) => Ok(Some(occupied.into_mut())),
        }
    }

    fn find_mut(&mut self, key: &[u8]) -> Option<&mut Record> {
        self.entries
            .find_mut(scan_table::hash_bytes(key), |r| r.key() == key)
            .map(|r| &mut **r)
    }

    fn take(&mut self, key: &[u8]) -> Option<Box<Record>> {
        match self
            .entries
            .find_entry(scan_table::hash_bytes(key), |r| r.key() == key)
        {
            Ok(occupied) => Some(occupied.remove().0),
            Err(_) => None,
        }
    }

    /// Stores `record`, returning the one it replaces. An overwritten key keeps its LFU counter,
    /// as Redis's dbOverwrite: inherited here, in the one lookup that finds the old record.
    fn put(&mut self, record: Box<Record>) -> Option<Box<Record>> {
        let hash = record_hash(&record);
        match self
            .entries
            .entry(hash, |r| r.key() == record.key(), |r| record_hash(r))
        {
            hashbrown::hash_table::Entry::Occupied(mut occupied) => {
                record.access.inherit(&occupied.get().access);
                Some(std::mem::replace(occupied.get_mut(), record))
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(record);
                None
            }
        }
    }
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
    /// Keys clients WATCH, marked when a write changes them (see `transaction::watch`).
    watches: crate::transaction::WatchRegistry,
    /// The per-slot exclusion that keeps EXEC atomic (see `transaction::gate`).
    gates: crate::transaction::SlotGates,
    transit: transit::Transit,
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
            watches: crate::transaction::WatchRegistry::default(),
            gates: crate::transaction::SlotGates::new(),
            transit: transit::Transit::default(),
        }
    }

    /// The keys of slots being moved that are on their way to the target.
    pub fn transit(&self) -> &transit::Transit {
        &self.transit
    }

    /// The keys clients WATCH.
    pub fn watches(&self) -> &crate::transaction::WatchRegistry {
        &self.watches
    }

    /// The per-slot exclusion of transactions.
    pub fn gates(&self) -> &crate::transaction::SlotGates {
        &self.gates
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

    /// The entry of `key`, expired or not (`get_unexpired` expires it first).
    pub fn get(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.table.find(key).map(Record::view)
    }

    /// Redis's expireIfNeeded then lookup, in one probe: the entry of `key` unless it is absent or
    /// expired at `now_ms`; an expired key is removed and counted, and the error says so (its
    /// deletion is the caller's to log).
    pub fn get_unexpired(
        &mut self,
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<EntryRef<'_>>, KeyExpired> {
        match self.table.find_unexpired(key, now_ms) {
            Ok(record) => Ok(record.map(Record::view)),
            Err(KeyExpired) => {
                self.counters.keys.fetch_sub(1, Ordering::Relaxed);
                self.counters.volatile.fetch_sub(1, Ordering::Relaxed);
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                Err(KeyExpired)
            }
        }
    }

    /// The collection of `key` to change in place; the expiry is changed through `set_expiry`,
    /// a string through `set_value`.
    pub fn value_mut(&mut self, key: &[u8]) -> Option<ValueMut<'_>> {
        self.table.find_mut(key).map(Record::value_mut)
    }

    /// Replaces the value of an existing `key`, keeping its TTL; false when the key is absent.
    pub fn set_value(&mut self, key: &[u8], value: Value) -> bool {
        self.set_value_encoded(key, value, StringEncoding::Auto)
    }

    /// `set_value` for a string Redis would encode as `encoding`.
    pub fn set_value_encoded(
        &mut self,
        key: &[u8],
        value: Value,
        encoding: StringEncoding,
    ) -> bool {
        let Some(old) = self.table.find(key) else {
            return false;
        };
        let entry = Entry {
            value,
            expires_at_ms: old.expires_at_ms(),
            access: old.access.clone(),
            string_encoding: encoding,
        };
        let record = Record::new(key, entry);
        self.table.put(Box::new(record));
        true
    }

    /// Lets `edit` change the string at `key` in place (APPEND, SETRANGE, SETBIT), keeping its
    /// TTL; hands `edit` back when `key` is absent or not a string.
    pub fn edit_string<R, F: FnOnce(&mut Vec<u8>) -> R>(
        &mut self,
        key: &[u8],
        edit: F,
    ) -> Result<R, F> {
        match self.table.find_mut(key).and_then(Record::raw_string) {
            Some(buf) => Ok(edit(buf)),
            None => Err(edit),
        }
    }

    /// Stores `entry` under `key`, returning the previous entry.
    pub fn insert(&mut self, key: Bytes, entry: Entry) -> Option<Entry> {
        // (The record copies key and string into a buffer of its own, so no argument slice pins
        // a read buffer; `put` keeps an overwritten key's LFU counter.)
        // The one place a key gets a value: a collection that exists is never empty, so a client
        // blocked on a key is waiting for exactly this (served when the command's Txn ends).
        self.blocking.signal(self.slot, &key);
        let volatile = entry.expires_at_ms.is_some();
        let old = self.table.put(Box::new(Record::new(&key, entry)));
        match &old {
            None => {
                self.counters.keys.fetch_add(1, Ordering::Relaxed);
            }
            Some(old) if old.has_expiry() => self.drop_volatile(),
            Some(_) => {}
        }
        if volatile {
            self.add_volatile();
        }
        old.map(|r| r.into_entry())
    }

    /// Tells clients blocked on `key` that it got data although it already existed: an XADD to
    /// a stream (every other type gets data only by being inserted, see `insert`).
    pub fn signal_ready(&self, key: &[u8]) {
        self.blocking.signal(self.slot, key);
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.table.take(key)?;
        self.counters.keys.fetch_sub(1, Ordering::Relaxed);
        if old.has_expiry() {
            self.drop_volatile();
        }
        Some(old.into_entry())
    }

    /// Sets or clears the TTL of `key`; false when the key is absent.
    pub fn set_expiry(&mut self, key: &[u8], expires_at_ms: Option<u64>) -> bool {
        let Some(record) = self.table.find_mut(key) else {
            return false;
        };
        let was = record.has_expiry();
        record.expires_at_ms = expires_at_ms.unwrap_or(NO_EXPIRY);
        match (was, expires_at_ms.is_some()) {
            (false, true) => self.add_volatile(),
            (true, false) => self.drop_volatile(),
            _ => {}
        }
        true
    }

    /// The slot's keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.table.entries.iter().map(|r| r.key())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], EntryRef<'_>)> {
        self.table.entries.iter().map(|r| (r.key(), r.view()))
    }

    /// The slot's keys from bucket `seed % buckets` of its table onwards, wrapping at the end:
    /// with a random `seed`, a random run of keys found in time proportional to the run, not to
    /// the slot's size, however many keys one slot holds (hash tags can put them all in one).
    /// Redis's `dictGetSomeKeys` samples its buckets the same way, for eviction and RANDOMKEY.
    pub fn run_from(&self, seed: u64) -> impl Iterator<Item = (&[u8], EntryRef<'_>)> {
        let table = &self.table.entries;
        let buckets = table.num_buckets();
        let start = seed.checked_rem(buckets as u64).unwrap_or(0) as usize;
        (0..buckets)
            .filter_map(move |i| table.get_bucket((start + i) % buckets))
            .map(|r| (r.key(), r.view()))
    }

    /// Removes every key of the slot; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.table.entries.len();
        let volatile = self.table.volatile;
        // Replace rather than clear, so a slot that was large gives its memory back.
        self.table.entries = HashTable::new();
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
        for record in self.table.entries.iter() {
            if examined >= budget {
                break;
            }
            if record.has_expiry() {
                examined += 1;
                if record.view().is_expired(now_ms) {
                    doomed.push(Bytes::copy_from_slice(record.key()));
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
        assert!(ks
            .lock_key(b"b")
            .get_unexpired(b"b", 5)
            .is_ok_and(|e| e.is_some()));
        assert!(ks.lock_key(b"b").get_unexpired(b"b", 6).is_err());
        assert!(ks
            .lock_key(b"b")
            .get_unexpired(b"b", 6)
            .is_ok_and(|e| e.is_none()));
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.volatile_len(), 0);
        assert_eq!(ks.expired_total(), 1);
        assert!(ks.lock_key(b"a").set_expiry(b"a", Some(1)));
        assert_eq!(ks.volatile_len(), 1);
        assert_eq!(ks.clear(), 1);
        assert_eq!((ks.len(), ks.volatile_len()), (0, 0));
    }

    #[test]
    fn a_run_from_any_bucket_holds_every_key_of_the_slot_once() {
        let ks = Keyspace::new();
        let mut g = ks.lock(7);
        assert_eq!(g.run_from(12345).count(), 0, "an empty slot");
        for i in 0..1000u32 {
            g.insert(Bytes::from(i.to_string()), Entry::new(s("v"), None));
        }
        let all: std::collections::BTreeSet<Vec<u8>> = g.keys().map(<[u8]>::to_vec).collect();
        let mut starts = std::collections::BTreeSet::new();
        for seed in [0, 1, 977, u64::MAX] {
            let run: Vec<Vec<u8>> = g.run_from(seed).map(|(k, _)| k.to_vec()).collect();
            assert_eq!(run.len(), 1000);
            assert_eq!(
                run.iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>(),
                all
            );
            starts.insert(run[0].clone());
        }
        assert!(
            starts.len() > 1,
            "different seeds start the run at different keys"
        );
    }

    #[test]
    fn expiry_is_strictly_after_the_deadline() {
        let e = Entry::new(s("v"), Some(100));
        let ks = Keyspace::new();
        ks.lock(0).insert(Bytes::from_static(b"k"), e.clone());
        assert_eq!(ks.lock(0).get(b"k").map(|r| r.is_expired(101)), Some(true));
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

    #[test]
    fn records_stay_one_pointer_and_one_small_block() {
        // 40 bytes is a 48-byte malloc chunk; one more word would make it 64.
        assert_eq!(std::mem::size_of::<Record>(), 40);
        assert!(std::mem::size_of::<Collection>() <= 40);
    }

    #[test]
    fn strings_share_the_key_buffer_and_round_trip() {
        let ks = Keyspace::new();
        let mut g = ks.lock(0);
        g.insert(Bytes::from_static(b"key"), Entry::new(s("value"), None));
        let got = g.get(b"key").map(|e| e.to_owned());
        assert_eq!(got, Some(Entry::new(s("value"), None)));
        assert!(g.set_expiry(b"key", Some(7)));
        assert!(g.set_value(b"key", s("other")));
        assert_eq!(g.get(b"key").and_then(|e| e.expires_at_ms), Some(7));
        assert_eq!(g.keys().collect::<Vec<_>>(), vec![&b"key"[..]]);
        assert_eq!(g.remove(b"key"), Some(Entry::new(s("other"), Some(7))));
        assert!(g.is_empty());
    }
}
