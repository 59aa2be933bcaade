//! The keys of a slot being moved that are on their way to the target: copied there, not yet
//! deleted here. While a batch is in flight its keys must not change on the source (the target's
//! copy would be stale), and must not be looked for on the target (it may not have them yet).
//! Reads of them are served here (both copies are the same until the batch lands); a write waits
//! until the batch has landed (`released`), then runs or answers ASK, as a Redis client's command
//! waits out a blocking MIGRATE; where a command cannot wait (in a transaction) it answers
//! TRYAGAIN. A batch is in flight for one round trip to the target; so are the keys of a client's
//! MIGRATE (`cmd::keys::migrate`), until the target has them and they are deleted here.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Per slot, the keys in flight, each with how many moves hold it (the mover's batch and a
/// client's MIGRATE may overlap).
type InFlight = Arc<Shared>;

/// The keys in flight, and the wake-up of those waiting for some to land.
#[derive(Debug, Default)]
struct Shared {
    slots: Mutex<HashMap<u16, HashMap<Bytes, u32>>>,
    released: Notify,
}

/// The keys in flight, by slot.
#[derive(Debug, Default)]
pub struct Transit {
    shared: InFlight,
}

impl Transit {
    /// Marks `keys` of `slot` as in flight, until `end` is called with them.
    pub fn begin(&self, slot: u16, keys: impl IntoIterator<Item = Bytes>) {
        let mut slots = self.shared.slots.lock();
        let batch = slots.entry(slot).or_default();
        for key in keys {
            *batch.entry(key).or_default() += 1;
        }
    }

    /// `keys` of `slot` have landed (or failed to): ordinary again, unless another move holds them.
    pub fn end(&self, slot: u16, keys: &[Bytes]) {
        release(&self.shared, slot, keys);
    }

    /// Marks `keys` of `slot` as in flight for as long as the returned guard lives (a client's
    /// MIGRATE, whose reply may never be awaited if the client goes away).
    pub fn hold(&self, slot: u16, keys: Vec<Bytes>) -> Held {
        self.begin(slot, keys.iter().cloned());
        Held {
            shared: self.shared.clone(),
            slot,
            keys,
        }
    }

    /// Whether any of `keys` (of `slot`) is in flight.
    pub fn holds_any(&self, slot: u16, keys: &[&[u8]]) -> bool {
        let slots = self.shared.slots.lock();
        slots
            .get(&slot)
            .is_some_and(|batch| keys.iter().any(|key| batch.contains_key(*key)))
    }

    /// Resolves once none of `keys` (of `slot`) is in flight.
    pub async fn released(&self, slot: u16, keys: &[Bytes]) {
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        loop {
            let notified = self.shared.released.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the two is not missed.
            notified.as_mut().enable();
            if !self.holds_any(slot, &keys) {
                return;
            }
            notified.await;
        }
    }
}

/// Keys in flight until dropped (`Transit::hold`).
#[derive(Debug)]
pub struct Held {
    shared: InFlight,
    slot: u16,
    keys: Vec<Bytes>,
}

impl Drop for Held {
    fn drop(&mut self) {
        release(&self.shared, self.slot, &self.keys);
    }
}

fn release(shared: &InFlight, slot: u16, keys: &[Bytes]) {
    let mut slots = shared.slots.lock();
    let Some(batch) = slots.get_mut(&slot) else {
        return;
    };
    for key in keys {
        if let Some(holders) = batch.get_mut(key) {
            *holders -= 1;
            if *holders == 0 {
                batch.remove(key);
            }
        }
    }
    if batch.is_empty() {
        slots.remove(&slot);
    }
    drop(slots);
    shared.released.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_its_keys_until_it_ends() {
        let transit = Transit::default();
        transit.begin(7, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert!(transit.holds_any(7, &[b"x", b"b"]));
        assert!(!transit.holds_any(7, &[b"x"]));
        assert!(!transit.holds_any(8, &[b"a"]));
        // A second move holding "b" keeps it in flight when the first ends.
        let held = transit.hold(7, vec![Bytes::from_static(b"b")]);
        transit.end(7, &[Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert!(!transit.holds_any(7, &[b"a"]));
        assert!(transit.holds_any(7, &[b"b"]));
        drop(held);
        assert!(!transit.holds_any(7, &[b"b"]));
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_its_keys_land() {
        let transit = Arc::new(Transit::default());
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        transit.begin(7, [a.clone()]);
        transit.begin(7, [b.clone()]);
        let waiting = tokio::spawn({
            let transit = transit.clone();
            let a = a.clone();
            async move { transit.released(7, &[a]).await }
        });
        tokio::task::yield_now().await;
        // Another key landing does not end the wait.
        transit.end(7, &[b]);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        transit.end(7, &[a]);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
    }
}
