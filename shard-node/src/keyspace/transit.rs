//! The keys of a slot being moved that are on their way to the target: copied there, not yet
//! deleted here. While a batch is in flight its keys must not change on the source (the target's
//! copy would be stale), and must not be looked for on the target (it may not have them yet), so
//! a command over any of them answers TRYAGAIN and is retried once the batch has landed (the
//! proxy retries within its bound; cluster clients retry TRYAGAIN as for a multi-key command
//! during a move). A batch is in flight for one round trip to the target.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use parking_lot::Mutex;

/// Per slot, the keys of the batch in flight (one batch per slot at a time).
#[derive(Debug, Default)]
pub struct Transit {
    slots: Mutex<HashMap<u16, HashSet<Bytes>>>,
}

impl Transit {
    /// Marks `keys` of `slot` as in flight (replacing any earlier batch of the slot).
    pub fn begin(&self, slot: u16, keys: impl IntoIterator<Item = Bytes>) {
        self.slots.lock().insert(slot, keys.into_iter().collect());
    }

    /// The batch of `slot` has landed (or failed): its keys are ordinary again.
    pub fn end(&self, slot: u16) {
        self.slots.lock().remove(&slot);
    }

    /// Whether any of `keys` (of `slot`) is in flight.
    pub fn holds_any(&self, slot: u16, keys: &[&[u8]]) -> bool {
        let slots = self.slots.lock();
        slots
            .get(&slot)
            .is_some_and(|batch| keys.iter().any(|key| batch.contains(*key)))
    }
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
        transit.end(7);
        assert!(!transit.holds_any(7, &[b"a"]));
    }
}
