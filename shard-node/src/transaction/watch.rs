//! WATCH: which clients watch which keys, and marking them when a key changes, as Redis's
//! touchWatchedKey. A key counts as changed when a write to it is logged (`cmd::Txn::log`: every
//! write that changed something is logged, and nothing else is), when it expires, and when
//! FLUSHALL removes it; only the keys a logged write writes are marked, not the sources a
//! SINTERSTORE or a BITOP reads.
//!
//! The registry is touched while the key's slot lock is held, and WATCH registers under that lock
//! too, so a write is either seen by the watcher's check or marks it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use tessera_proto::command;
use tessera_proto::slot::key_hash_slot;

use crate::keyspace::{Keyspace, SlotGuard};

/// Every watched key and the flags of the clients watching it.
#[derive(Default)]
pub struct WatchRegistry {
    /// Registrations held: writes skip the map's lock when nobody watches anything.
    count: AtomicUsize,
    keys: Mutex<HashMap<Bytes, Vec<Weak<AtomicBool>>>>,
}

impl WatchRegistry {
    fn watching(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Marks the clients watching `key`.
    pub fn touch(&self, key: &[u8]) {
        if !self.watching() {
            return;
        }
        if let Some(flags) = self.keys.lock().get(key) {
            mark(flags);
        }
    }

    /// Marks the clients watching a key that the logged write `args` changed.
    pub fn touch_written(&self, args: &[Bytes]) {
        if !self.watching() {
            return;
        }
        let Ok(spec) = command::resolve(args) else {
            return;
        };
        let name = spec.name;
        // Commands that store into one key computed from others only change that key.
        let written = match name {
            "bitop" | "copy" => vec![2],
            "sinterstore" | "sunionstore" | "sdiffstore" | "zunionstore" | "zinterstore"
            | "zdiffstore" | "zrangestore" => vec![1],
            _ => spec.key_indexes(args),
        };
        let keys = self.keys.lock();
        for index in written {
            if let Some(flags) = args.get(index).and_then(|key| keys.get(key)) {
                mark(flags);
            }
        }
    }

    /// Marks the clients watching a key that exists in one of `guards` (all slots locked, as
    /// FLUSHALL holds them before it clears): Redis's touchAllWatchedKeysInDb.
    pub fn touch_existing(&self, guards: &[SlotGuard<'_>]) {
        if !self.watching() {
            return;
        }
        for (key, flags) in self.keys.lock().iter() {
            let slot = key_hash_slot(key) as usize;
            if guards.get(slot).is_some_and(|g| g.get(key).is_some()) {
                mark(flags);
            }
        }
    }

    fn register(&self, key: &Bytes, flag: &Arc<AtomicBool>) {
        let mut keys = self.keys.lock();
        let flags = keys.entry(key.clone()).or_default();
        // Drop the registrations of clients that ended without unwatching.
        flags.retain(|f| f.strong_count() > 0);
        flags.push(Arc::downgrade(flag));
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn unregister(&self, key: &Bytes, flag: &Arc<AtomicBool>) {
        let mut keys = self.keys.lock();
        let Some(flags) = keys.get_mut(key) else {
            return;
        };
        let before = flags.len();
        let mine = Arc::downgrade(flag);
        flags.retain(|f| !f.ptr_eq(&mine) && f.strong_count() > 0);
        self.count
            .fetch_sub(before - flags.len(), Ordering::Relaxed);
        if flags.is_empty() {
            keys.remove(key);
        }
    }
}

fn mark(flags: &[Weak<AtomicBool>]) {
    for flag in flags.iter().filter_map(Weak::upgrade) {
        flag.store(true, Ordering::Relaxed);
    }
}

/// One watched key of a client.
struct WatchedKey {
    key: Bytes,
    /// Whether the key existed but had logically expired when watched: Redis's isWatchedKeyExpired
    /// only aborts for a key that expires after WATCH.
    expired_when_watched: bool,
}

/// The keys one client watches, and its flag (Redis's CLIENT_DIRTY_CAS) that writes set.
#[derive(Default)]
pub struct Watched {
    flag: Arc<AtomicBool>,
    keys: Vec<WatchedKey>,
}

impl Watched {
    /// WATCH `key` (again: no effect).
    pub fn watch(&mut self, keyspace: &Keyspace, key: &Bytes, now_ms: u64) {
        if self.keys.iter().any(|w| w.key == *key) {
            return;
        }
        // Under the slot's lock, so no write slips between reading the key and registering.
        let guard = keyspace.lock_key(key);
        let expired_when_watched = guard.get(key).is_some_and(|e| e.is_expired(now_ms));
        keyspace.watches().register(key, &self.flag);
        drop(guard);
        self.keys.push(WatchedKey {
            key: key.clone(),
            expired_when_watched,
        });
    }

    /// Whether EXEC must fail: a watched key was changed, or expired since WATCH.
    pub fn changed(&self, keyspace: &Keyspace, now_ms: u64) -> bool {
        if self.flag.load(Ordering::Relaxed) {
            return true;
        }
        self.keys.iter().any(|w| {
            !w.expired_when_watched
                && keyspace
                    .lock_key(&w.key)
                    .get(&w.key)
                    .is_some_and(|e| e.is_expired(now_ms))
        })
    }

    /// UNWATCH, and what EXEC, DISCARD and a closing connection do.
    pub fn unwatch_all(&mut self, keyspace: &Keyspace) {
        if self.keys.is_empty() {
            self.flag.store(false, Ordering::Relaxed);
            return;
        }
        for watched in self.keys.drain(..) {
            keyspace.watches().unregister(&watched.key, &self.flag);
        }
        self.flag.store(false, Ordering::Relaxed);
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{Entry, Value};

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn writes_mark_watchers_of_written_keys_only() {
        let ks = Keyspace::new();
        let mut watched = Watched::default();
        watched.watch(&ks, &b("src"), 0);
        ks.watches()
            .touch_written(&[b("SINTERSTORE"), b("dst"), b("src")]);
        assert!(!watched.changed(&ks, 0));
        ks.watches().touch_written(&[b("SET"), b("src"), b("v")]);
        assert!(watched.changed(&ks, 0));
        watched.unwatch_all(&ks);
        assert!(!watched.changed(&ks, 0));
        assert!(!ks.watches().watching());
    }

    #[test]
    fn expiry_after_watch_counts_as_a_change() {
        let ks = Keyspace::new();
        ks.lock_key(b"k")
            .insert(b("k"), Entry::new(Value::String(b("v")), Some(100)));
        let mut watched = Watched::default();
        watched.watch(&ks, &b("k"), 50);
        assert!(!watched.changed(&ks, 100));
        assert!(watched.changed(&ks, 101));
        watched.unwatch_all(&ks);
        // Already expired when watched: not a change.
        watched.watch(&ks, &b("k"), 200);
        assert!(!watched.changed(&ks, 300));
    }
}
