//! What a command runs with (`Ctx`) and the locked slot it reads and writes through (`Txn`):
//! lazy expiry, hit/miss counting, access tracking for eviction, and the logging of every write
//! (`Txn::log`) while the slot's lock is held, then serving clients blocked on the keys it filled.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::{list, stream, zset};
use crate::keyspace::access::Tracking;
use crate::keyspace::{now_ms, Entry, EntryRef, KeyExpired, SlotGuard};
use crate::replication::WriteLog;
use crate::server::ServerStats;
use crate::state::NodeState;

/// What a command runs with.
pub struct Ctx<'a> {
    pub state: &'a NodeState,
    /// One clock reading per command, as Redis caches `mstime()` per call, so a command sees one
    /// consistent "now" across its keys.
    pub now_ms: u64,
    /// False while replaying the AOF or applying a master's stream: the command is already
    /// logged.
    pub propagate: bool,
    /// evict: whether lookups update the keys' access metadata (false for the commands Redis
    /// looks keys up with LOOKUP_NOTOUCH: see `touches_keys`).
    pub touch: bool,
    /// Set while EXEC runs: writes are kept back to be logged as one unit, and clients blocked
    /// on keys are served only once the transaction is over, as Redis does.
    pub unit: Option<&'a crate::transaction::Unit>,
    /// The slot the cluster rule computed from the command's first key, so `lock` need not hash
    /// that key again.
    pub known_slot: Option<KnownSlot>,
}

/// A key's slot, remembered with the key's address: it applies only to that very slice (the same
/// bytes of the same request), never to another key that happens to be equal or not.
#[derive(Debug, Clone, Copy)]
pub struct KnownSlot {
    key_address: usize,
    key_len: usize,
    slot: u16,
}

impl KnownSlot {
    pub fn new(key: &[u8], slot: u16) -> KnownSlot {
        KnownSlot {
            key_address: key.as_ptr() as usize,
            key_len: key.len(),
            slot,
        }
    }

    pub fn slot(&self) -> u16 {
        self.slot
    }

    fn of(&self, key: &[u8]) -> Option<u16> {
        (key.as_ptr() as usize == self.key_address && key.len() == self.key_len)
            .then_some(self.slot)
    }
}

impl<'a> Ctx<'a> {
    pub fn new(state: &'a NodeState, propagate: bool) -> Ctx<'a> {
        let now_ms = now_ms();
        crate::keyspace::access::note_command_time(now_ms);
        Ctx {
            state,
            now_ms,
            propagate,
            touch: true,
            unit: None,
            known_slot: None,
        }
    }

    /// Locks the slot of `key` for a read or a write.
    pub fn lock(&self, key: &[u8]) -> Txn<'a> {
        let known = self.known_slot.and_then(|known| known.of(key));
        self.lock_slot(known.unwrap_or_else(|| key_hash_slot(key)))
    }

    /// Locks `slot` for a read or a write.
    pub fn lock_slot(&self, slot: u16) -> Txn<'a> {
        Txn {
            guard: self.state.keyspace.lock(slot),
            now_ms: self.now_ms,
            expiry: if !self.propagate {
                Expiry::Keep
            } else if self.state.replication.is_replica() {
                Expiry::Hide
            } else {
                Expiry::Delete
            },
            log: self.propagate.then_some(&self.state.replication.log),
            stats: &self.state.stats,
            touch: self.touch.then(|| self.state.config.tracking()),
            counted: Vec::new(),
            unit: self.unit,
            watches: self.state.keyspace.watches(),
        }
    }

    pub fn stats(&self) -> &'a ServerStats {
        &self.state.stats
    }
}

/// What a lookup does with a key whose TTL has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A master: removes it and logs the DEL (Redis's expireIfNeeded).
    Delete,
    /// A replica serving a client: answers as if it were gone but keeps it, as Redis's replica:
    /// only its master's DEL removes it, so replica and master never diverge.
    Hide,
    /// Replaying the AOF or a master's stream: as Redis when loading, a key is never expired by
    /// the applier's clock, since the log holds the DEL of every expiry that happened (else an
    /// INCR replayed after the TTL would act on a key that was still there when it first ran).
    Keep,
}

/// A locked slot as commands use it: lookups expire lazily (logging the DEL), reads count hits and
/// misses, and writes are logged while the lock is held.
pub struct Txn<'a> {
    guard: SlotGuard<'a>,
    now_ms: u64,
    expiry: Expiry,
    /// The write log; `None` while replaying (the write is already logged).
    log: Option<&'a WriteLog>,
    stats: &'a ServerStats,
    /// evict: how lookups update access metadata; `None` for commands that do not touch keys.
    touch: Option<Tracking>,
    /// evict: under an LFU policy, the keys whose access this command has counted already, or
    /// created: Redis looks a key up once per command, while a handler here may look it up again
    /// (LPUSH finds the list, creates it, finds it again to fill it); a counter must move as in
    /// Redis, once per command, and not at all for a key the command created.
    counted: Vec<Bytes>,
    /// The running EXEC's writes, when inside one.
    unit: Option<&'a crate::transaction::Unit>,
    watches: &'a crate::transaction::WatchRegistry,
}

impl<'a> Txn<'a> {
    /// The entry of `key` if it exists and has not expired; an expired one is removed and its
    /// deletion logged.
    pub fn live(&mut self, key: &[u8]) -> Option<EntryRef<'_>> {
        let entry = match self.expiry {
            Expiry::Delete => match self.guard.get_unexpired(key, self.now_ms) {
                Ok(entry) => entry,
                Err(KeyExpired) => {
                    // (`log` by its parts: the entry borrows `self.guard` until returned.)
                    let del = [Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)];
                    log_write(self.watches, self.log, self.unit, &del);
                    None
                }
            },
            Expiry::Hide => {
                let now = self.now_ms;
                self.guard.get(key).filter(|entry| !entry.is_expired(now))
            }
            Expiry::Keep => self.guard.get(key),
        };
        // evict: a lookup is an access, as Redis's lookupKey (LRU stamp or LFU counter).
        match (entry, self.touch) {
            (Some(entry), Some(Tracking::Lru)) => entry.access.touch(Tracking::Lru, self.now_ms),
            (Some(entry), Some(lfu)) if !self.counted.iter().any(|k| k == key) => {
                entry.access.touch(lfu, self.now_ms);
                self.counted.push(Bytes::copy_from_slice(key));
            }
            _ => {}
        }
        entry
    }

    /// `SlotGuard::insert`, noting under an LFU policy that this command created `key` (evict).
    pub fn insert(&mut self, key: Bytes, entry: Entry) -> Option<Entry> {
        if matches!(self.touch, Some(Tracking::Lfu { .. })) {
            self.counted.push(key.clone());
        }
        self.guard.insert(key, entry)
    }

    /// Like `live`, counting a keyspace hit or miss (INFO stats), as Redis's lookupKeyRead.
    pub fn read(&mut self, key: &[u8]) -> Option<EntryRef<'_>> {
        let stats = self.stats;
        let found = self.live(key);
        let counter = if found.is_some() {
            &stats.keyspace_hits
        } else {
            &stats.keyspace_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether `key` exists and has not expired.
    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.live(key).is_some()
    }

    /// Appends a write to the write log (nothing when replaying), and marks the clients
    /// WATCHing the keys it changed: every write that changed something is logged.
    pub fn log(&self, args: &[Bytes]) {
        log_write(self.watches, self.log, self.unit, args);
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// `Txn::log`: marks the watchers of the written keys, then logs the write to the running EXEC's
/// unit or straight to the write log (AOF and replication).
fn log_write(
    watches: &crate::transaction::WatchRegistry,
    log: Option<&WriteLog>,
    unit: Option<&crate::transaction::Unit>,
    args: &[Bytes],
) {
    watches.touch_written(args);
    if let Some(log) = log {
        match unit {
            Some(unit) => unit.push(args),
            None => log.append(args),
        }
    }
}

impl<'a> Deref for Txn<'a> {
    type Target = SlotGuard<'a>;
    fn deref(&self) -> &SlotGuard<'a> {
        &self.guard
    }
}

impl DerefMut for Txn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

/// Serves the clients blocked on keys this command gave data to (a BLPOP waiting for the key an
/// LPUSH created, ...) before the slot's lock is released, so no other client can take the data
/// first: Redis serves them right after the command, in the order they blocked.
impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.unit.is_some() {
            // Inside EXEC: served when the transaction is over.
            return;
        }
        let registry = self.guard.blocking();
        if registry.has_ready() {
            registry.serve_ready(self.guard.slot(), self);
        }
    }
}

impl crate::keyspace::blocking::ServeTarget for Txn<'_> {
    fn has_key(&mut self, key: &[u8]) -> bool {
        self.exists(key)
    }

    fn offer(&mut self, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
        serve_blocked(self, key, args)
    }
}

/// Offers `key`, which just got data, to a client blocked in `args`, by the command's family;
/// `None` leaves it blocked. Each blocking family adds its commands here.
fn serve_blocked(txn: &mut Txn<'_>, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
    let name = args.first()?.to_ascii_lowercase();
    match &name[..] {
        b"blpop" | b"brpop" | b"blmpop" | b"blmove" | b"brpoplpush" => {
            list::serve_blocked(txn, key, args)
        }
        b"bzpopmin" | b"bzpopmax" | b"bzmpop" => zset::pop::serve_blocked(txn, key, args),
        b"xread" | b"xreadgroup" => stream::serve_blocked(txn, key, args),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    /// A remembered slot applies to the very key it was computed from, not to an equal key
    /// elsewhere (whose slot is the same, but the rule must not depend on that) nor to a part.
    #[test]
    fn a_known_slot_applies_to_its_own_key_only() {
        let args = [
            bytes::Bytes::from_static(b"SET"),
            bytes::Bytes::from(b"k1".to_vec()),
        ];
        let known = super::KnownSlot::new(&args[1], 7);
        assert_eq!(known.of(&args[1]), Some(7));
        assert_eq!(
            known.of(&args[1].clone()),
            Some(7),
            "a clone shares the bytes"
        );
        let equal = b"k1".to_vec();
        assert_eq!(known.of(&equal), None);
        assert_eq!(known.of(&args[1][..1]), None);
    }
}
