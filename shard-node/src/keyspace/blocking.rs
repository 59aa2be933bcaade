//! The wake-up registry for clients blocked on keys (BLPOP, BRPOP, BLMOVE, BLMPOP, BRPOPLPUSH, and
//! later BZPOPMIN, BZPOPMAX, BZMPOP): who waits on which key, in the order they blocked, and which
//! keys were given a value since. It knows nothing of lists or sorted sets: it only hears "a key got
//! data" (`signal`, from `SlotGuard::insert`) and lets the command layer offer each ready key to
//! its waiters (`serve_ready`, through `ServeTarget`).
//!
//! Why the waiters are served by the writer, under the slot's lock, rather than woken to retry: Redis
//! serves blocked clients right after the command that gave a key data, first-come first-served, one
//! element each, before any other client runs. Serving them in the writer's critical section is the
//! only way to give the same guarantee here: no other client can take the data in between, and the
//! order is the order of blocking, not of task scheduling.
//!
//! Locking: the registry's mutex is taken only while a slot lock is held or with none, never the
//! other way round, and it is never held while a command runs (serving a waiter may insert keys,
//! which signals). A waiter registers, and is cancelled (timeout, disconnect, redirect), under the
//! lock of its slot too, so a cancel and a serve can never cross: whoever comes second sees the
//! other's result.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tessera_proto::resp::Frame;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Keyspace;

/// How often a blocked client re-checks the cluster rule for its slot (a slot that moved or went
/// down while it waited answers MOVED / CLUSTERDOWN, as Redis's clusterRedirectBlockedClient).
const RECHECK_PERIOD: Duration = Duration::from_millis(100);

/// A blocked client's registration.
struct Waiter {
    keys: Vec<Bytes>,
    /// The blocked command as the client sent it (copied, not sliced from the read buffer): the
    /// command layer serves it from these.
    args: Vec<Bytes>,
    reply: oneshot::Sender<Frame>,
}

#[derive(Default)]
struct Inner {
    waiters: HashMap<u64, Waiter>,
    /// Waiter ids per key, in the order they blocked.
    by_key: HashMap<Bytes, VecDeque<u64>>,
    /// Per slot, keys that got a value while somebody waited on them, in signal order, no repeats.
    ready: HashMap<u16, Vec<Bytes>>,
}

/// Every blocked client of the node.
#[derive(Default)]
pub struct BlockingRegistry {
    /// Clients blocked now: lets every insert skip the mutex when nobody waits (the common case).
    blocked: AtomicUsize,
    /// Ready keys not yet served, over all slots: lets every command skip serving when zero.
    ready: AtomicUsize,
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

/// What the command layer does for `serve_ready`, holding the slot's lock.
pub trait ServeTarget {
    /// Whether `key` holds a (live) value: once a served waiter has emptied it, the rest wait on.
    fn has_key(&mut self, key: &[u8]) -> bool;
    /// Offers `key` to the blocked command `args`: `Some(reply)` when it was served (data taken
    /// and logged, or an error to answer, as Redis's BLMOVE onto a wrong-type destination), `None`
    /// to leave it blocked (the key is of a type it does not wait for).
    fn offer(&mut self, key: &Bytes, args: &[Bytes]) -> Option<Frame>;
}

impl BlockingRegistry {
    /// Clients blocked now (INFO's blocked_clients).
    pub fn blocked_clients(&self) -> usize {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Registers a client blocked on `keys` (all of one slot; repeats count once) running `args`.
    /// Call with the slot's lock held, right after finding every key empty.
    fn register(&self, keys: &[Bytes], args: &[Bytes]) -> (u64, oneshot::Receiver<Frame>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut unique: Vec<Bytes> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique.iter().any(|k| k == key) {
                unique.push(Bytes::copy_from_slice(key));
            }
        }
        let mut inner = self.inner.lock();
        for key in &unique {
            inner.by_key.entry(key.clone()).or_default().push_back(id);
        }
        inner.waiters.insert(
            id,
            Waiter {
                keys: unique,
                args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
                reply: tx,
            },
        );
        self.blocked.fetch_add(1, Ordering::Relaxed);
        (id, rx)
    }

    /// Notes that `key` (of `slot`) was given a value. Called by `SlotGuard::insert` under the slot
    /// lock; nearly free when nobody waits.
    pub fn signal(&self, slot: u16, key: &[u8]) {
        if self.blocked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        if !inner.by_key.contains_key(key) {
            return;
        }
        let ready = inner.ready.entry(slot).or_default();
        if !ready.iter().any(|k| k == key) {
            ready.push(Bytes::copy_from_slice(key));
            self.ready.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether any key is waiting to be served (any slot): the cheap test before `serve_ready`.
    pub fn has_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) > 0
    }

    /// Serves the waiters of every key of `slot` that got data, first-come first-served, until no
    /// key of the slot is ready (serving BLMOVE may make its destination ready). Call with the
    /// slot's lock held, after the command that wrote has done its work.
    pub fn serve_ready(&self, slot: u16, target: &mut impl ServeTarget) {
        loop {
            let keys = {
                let mut inner = self.inner.lock();
                match inner.ready.remove(&slot) {
                    Some(keys) => {
                        self.ready.fetch_sub(keys.len(), Ordering::Relaxed);
                        keys
                    }
                    None => return,
                }
            };
            for key in keys {
                let queue: Vec<u64> = match self.inner.lock().by_key.get(&key) {
                    Some(queue) => queue.iter().copied().collect(),
                    None => continue,
                };
                for id in queue {
                    if !target.has_key(&key) {
                        break;
                    }
                    // Served through another of its keys earlier in this round: gone. A waiter
                    // nobody awaits any more (its connection ended without cancelling) is dropped
                    // rather than handed data that would be lost.
                    let args = match self.inner.lock().waiters.get(&id) {
                        None => continue,
                        Some(waiter) if waiter.reply.is_closed() => None,
                        Some(waiter) => Some(waiter.args.clone()),
                    };
                    let Some(args) = args else {
                        self.remove(id);
                        continue;
                    };
                    if let Some(reply) = target.offer(&key, &args) {
                        self.complete(id, reply);
                    }
                }
            }
        }
    }

    /// Unregisters waiter `id` and hands it `reply`.
    fn complete(&self, id: u64, reply: Frame) {
        if let Some(waiter) = self.remove(id) {
            // The receiver is gone only if its task was dropped without cancelling (runtime
            // teardown); nobody is left to answer then.
            let _ = waiter.reply.send(reply);
        }
    }

    /// Unregisters waiter `id`; `None` when it was already served (or cancelled).
    fn remove(&self, id: u64) -> Option<Waiter> {
        let mut inner = self.inner.lock();
        let waiter = inner.waiters.remove(&id)?;
        for key in &waiter.keys {
            if let Some(queue) = inner.by_key.get_mut(key) {
                queue.retain(|w| *w != id);
                if queue.is_empty() {
                    inner.by_key.remove(key);
                }
            }
        }
        self.blocked.fetch_sub(1, Ordering::Relaxed);
        Some(waiter)
    }
}

/// A client's blocked command, as the command leaves it in the session for the connection to
/// await (`wait`). Built by `block` while the command holds its slot's lock.
pub struct Blocked {
    id: u64,
    slot: u16,
    receiver: oneshot::Receiver<Frame>,
    /// `None`: wait forever (timeout 0, or a deadline past what the clock can hold).
    deadline: Option<Instant>,
    /// What a timeout answers (Redis: the null array, for every blocking list and zset command).
    on_timeout: Frame,
    /// The command, for the cluster re-check.
    pub args: Vec<Bytes>,
}

/// Blocks the client running `args` on `keys` of `slot` until `deadline` (`None`: forever). Call
/// with `slot`'s lock held, having found every key without data.
pub fn block(
    registry: &BlockingRegistry,
    slot: u16,
    keys: &[Bytes],
    args: &[Bytes],
    deadline: Option<Instant>,
    on_timeout: Frame,
) -> Blocked {
    let (id, receiver) = registry.register(keys, args);
    Blocked {
        id,
        slot,
        receiver,
        deadline,
        on_timeout,
        args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
    }
}

/// Unregisters a waiter that stops waiting for any reason other than being served (its future was
/// dropped: the client disconnected, or the node is shutting down).
struct Registration<'a> {
    keyspace: &'a Keyspace,
    id: u64,
    slot: u16,
    active: bool,
}

impl Registration<'_> {
    /// Unregisters under the slot's lock; false when a writer served it first (the reply is then
    /// already in the channel, sent under that same lock).
    fn cancel(&mut self) -> bool {
        self.active = false;
        let _slot = self.keyspace.lock(self.slot);
        self.keyspace.blocking().remove(self.id).is_some()
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.active {
            self.cancel();
        }
    }
}

impl Blocked {
    /// Unregisters a blocked command that will not be awaited (its connection is ending).
    pub fn cancel(self, keyspace: &Keyspace) {
        Registration {
            keyspace,
            id: self.id,
            slot: self.slot,
            active: true,
        }
        .cancel();
    }

    /// Waits for a writer to serve this command, for the timeout, or for `recheck` (run every
    /// `RECHECK_PERIOD`) to return an error that replaces the wait, and returns the reply. Dropping
    /// the future unregisters the client.
    pub async fn wait(
        self,
        keyspace: &Keyspace,
        recheck: impl Fn(&[Bytes]) -> Option<Frame>,
    ) -> Frame {
        let Blocked {
            id,
            slot,
            mut receiver,
            deadline,
            on_timeout,
            args,
        } = self;
        let mut registration = Registration {
            keyspace,
            id,
            slot,
            active: true,
        };
        let mut ticker = tokio::time::interval(RECHECK_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let instead = loop {
            tokio::select! {
                served = &mut receiver => {
                    registration.active = false;
                    // A closed channel means the registry dropped us without a reply: only at
                    // teardown; answer as a timeout.
                    return served.unwrap_or(on_timeout);
                }
                _ = &mut timeout => break on_timeout,
                _ = ticker.tick() => {
                    if let Some(error) = recheck(&args) {
                        break error;
                    }
                }
            }
        };
        if registration.cancel() {
            instead
        } else {
            receiver.try_recv().unwrap_or(instead)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Target {
        data: HashMap<Bytes, usize>,
        served: Vec<(Bytes, Bytes)>,
    }

    impl ServeTarget for Target {
        fn has_key(&mut self, key: &[u8]) -> bool {
            self.data.get(key).is_some_and(|n| *n > 0)
        }
        fn offer(&mut self, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
            let n = self.data.get_mut(key)?;
            *n -= 1;
            self.served.push((key.clone(), args[0].clone()));
            Some(Frame::Integer(1))
        }
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn serves_in_blocking_order_as_many_as_there_is_data() {
        let registry = BlockingRegistry::default();
        let (_, mut r1) = registry.register(&[b("k")], &[b("first")]);
        let (_, mut r2) = registry.register(&[b("j"), b("k")], &[b("second")]);
        let (_, mut r3) = registry.register(&[b("k"), b("k")], &[b("third")]);
        assert_eq!(registry.blocked_clients(), 3);
        registry.signal(0, b"k");
        registry.signal(0, b"k");
        registry.signal(0, b"other");
        assert!(registry.has_ready());
        let mut target = Target {
            data: HashMap::from([(b("k"), 2)]),
            served: Vec::new(),
        };
        registry.serve_ready(0, &mut target);
        assert!(!registry.has_ready());
        let order: Vec<Bytes> = target.served.iter().map(|(_, a)| a.clone()).collect();
        assert_eq!(order, vec![b("first"), b("second")]);
        assert_eq!(r1.try_recv().ok(), Some(Frame::Integer(1)));
        assert_eq!(r2.try_recv().ok(), Some(Frame::Integer(1)));
        assert!(r3.try_recv().is_err());
        assert_eq!(registry.blocked_clients(), 1);
        assert!(!registry.inner.lock().by_key.contains_key(&b("j")));
    }

    #[test]
    fn a_waiter_nobody_awaits_is_not_served() {
        let registry = BlockingRegistry::default();
        let (_, gone) = registry.register(&[b("k")], &[b("gone")]);
        drop(gone);
        let (_, mut alive) = registry.register(&[b("k")], &[b("alive")]);
        registry.signal(0, b"k");
        let mut target = Target {
            data: HashMap::from([(b("k"), 1)]),
            served: Vec::new(),
        };
        registry.serve_ready(0, &mut target);
        assert_eq!(target.served, vec![(b("k"), b("alive"))]);
        assert_eq!(alive.try_recv().ok(), Some(Frame::Integer(1)));
        assert_eq!(registry.blocked_clients(), 0);
    }

    #[test]
    fn signals_without_waiters_are_ignored() {
        let registry = BlockingRegistry::default();
        registry.signal(3, b"k");
        assert!(!registry.has_ready());
        let (id, _) = registry.register(&[b("k")], &[b("x")]);
        assert!(registry.remove(id).is_some());
        assert!(registry.remove(id).is_none());
        registry.signal(3, b"k");
        assert!(!registry.has_ready());
        assert_eq!(registry.blocked_clients(), 0);
    }

    #[tokio::test]
    async fn wait_times_out_and_unregisters() {
        let keyspace = Keyspace::new();
        let blocked = {
            let _guard = keyspace.lock(5);
            block(
                keyspace.blocking(),
                5,
                &[b("k")],
                &[b("blpop"), b("k"), b("0.01")],
                Some(Instant::now() + Duration::from_millis(10)),
                Frame::NullArray,
            )
        };
        assert_eq!(keyspace.blocking().blocked_clients(), 1);
        let reply = blocked.wait(&keyspace, |_| None).await;
        assert_eq!(reply, Frame::NullArray);
        assert_eq!(keyspace.blocking().blocked_clients(), 0);
    }

    #[tokio::test]
    async fn recheck_error_replaces_the_wait() {
        let keyspace = Keyspace::new();
        let blocked = block(
            keyspace.blocking(),
            1,
            &[b("k")],
            &[b("blpop")],
            None,
            Frame::NullArray,
        );
        let reply = blocked
            .wait(&keyspace, |_| Some(Frame::error("MOVED 1 h:1")))
            .await;
        assert_eq!(reply, Frame::error("MOVED 1 h:1"));
        assert_eq!(keyspace.blocking().blocked_clients(), 0);
    }
}
