//! Active expiry: a background cycle that reclaims keys whose TTL passed but that nobody reads,
//! in bounded steps like Redis's activeExpireCycle (10 times a second, a bounded amount of work
//! per run), walking slots round-robin from where the last run stopped.

use bytes::Bytes;
use tessera_proto::slot::SLOT_COUNT;

use super::Keyspace;

/// How far one run goes: at most `max_examined` keys with a TTL looked at, and at most
/// `max_slots` slots visited, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct CycleBudget {
    pub max_examined: usize,
    pub max_slots: usize,
}

impl Default for CycleBudget {
    fn default() -> Self {
        // Redis looks at 20 keys per database 16 times per run at hz 10; we allow a little more,
        // since a slot with a TTL is examined whole, and locks are per slot.
        CycleBudget {
            max_examined: 1000,
            max_slots: SLOT_COUNT as usize,
        }
    }
}

/// Where the round-robin walk resumes; one per expiry task.
#[derive(Debug, Default)]
pub struct ExpiryCursor {
    next_slot: u16,
}

impl Keyspace {
    /// One run of active expiry at `now_ms`. `on_expired` is called for each removed key while its
    /// slot's lock is held (the caller logs a DEL). Returns the number of keys removed.
    pub fn active_expire_cycle(
        &self,
        cursor: &mut ExpiryCursor,
        now_ms: u64,
        budget: CycleBudget,
        mut on_expired: impl FnMut(&Bytes),
    ) -> usize {
        if self.volatile_len() == 0 {
            return 0;
        }
        let mut examined = 0;
        let mut removed = 0;
        for _ in 0..budget.max_slots.min(SLOT_COUNT as usize) {
            if examined >= budget.max_examined {
                break;
            }
            let slot = cursor.next_slot;
            cursor.next_slot = (slot + 1) % SLOT_COUNT;
            let mut guard = self.lock(slot);
            examined += guard.expire_some(now_ms, budget.max_examined - examined, |key| {
                removed += 1;
                on_expired(key);
            });
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{Entry, Value};

    #[test]
    fn reclaims_expired_keys_over_several_runs() {
        let ks = Keyspace::new();
        for i in 0..100u32 {
            let key = Bytes::from(format!("k{i}"));
            let expiry = if i % 2 == 0 { Some(10) } else { Some(1_000) };
            ks.lock_key(&key)
                .insert(key, Entry::new(Value::String(Bytes::new()), expiry));
        }
        let mut cursor = ExpiryCursor::default();
        let budget = CycleBudget {
            max_examined: 30,
            max_slots: 16384,
        };
        let mut removed = 0;
        for _ in 0..20 {
            removed += ks.active_expire_cycle(&mut cursor, 100, budget, |_| {});
        }
        assert_eq!(removed, 50);
        assert_eq!(ks.len(), 50);
    }
}
