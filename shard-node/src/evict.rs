//! maxmemory: before a command runs while the heap is over the limit, keys are evicted by the
//! policy until it is under again (Redis's performEvictions, called from processCommand);
//! commands that add data are refused with OOM when nothing more can go.
//!
//! As Redis's evict.c: LRU, LFU and TTL policies sample `maxmemory-samples` keys per round into
//! a pool of the 16 best candidates seen so far, kept between rounds and calls, and evict the best
//! one still present; random policies evict a random key. Sampling works over the node's slots:
//! a cached list of the slots holding keys (rebuilt at most every 100 ms, or when it runs dry)
//! gives random slots, and runs of keys from a random place in each make up the sample, as
//! Redis's dictGetSomeKeys reads runs of buckets.
//!
//! An evicted key is logged as DEL in the append-only file (as Redis propagates it), counted in
//! INFO's evicted_keys, and wakes no blocked client (they wait for keys to appear, not vanish).
//! One command spends at most the time maxmemory-eviction-tenacity allows; past that it runs
//! anyway and the next command goes on evicting (Redis continues in a timer; we have no idle
//! work, so a node left over the limit stays there until its next command).

pub mod policy;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rand::Rng;
use tessera_proto::slot::SLOT_COUNT;

pub use policy::{Policy, Ranking};

use crate::keyspace::{now_ms, EntryRef, SlotGuard};
use crate::state::NodeState;

/// Redis's EVPOOL_SIZE.
const POOL_SIZE: usize = 16;
/// How long the list of slots holding keys is trusted before it is built again.
const SLOT_LIST_MAX_AGE: Duration = Duration::from_millis(100);
/// Pool refills in one eviction before giving up (keys vanishing under us as fast as we sample).
const MAX_REFILLS: usize = 64;
/// Random slots tried per sample before the slot list is rebuilt.
const SLOT_TRIES: usize = 16;

/// What an eviction pass ended with (Redis's EVICT_OK / EVICT_RUNNING / EVICT_FAIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Under the limit (or no limit).
    Ok,
    /// Still over, but out of time: the command may run, the next one evicts more.
    Running,
    /// Over the limit and nothing can be evicted: commands that add data are refused.
    Fail,
}

/// The heap in use: the allocator's count (see `allocator`), INFO's used_memory.
pub fn used_memory() -> u64 {
    crate::allocator::used_bytes()
}

/// What the limit is checked against: used memory less the AOF's buffer of writes not yet
/// handed to the file, as Redis leaves its AOF buffer out (freeMemoryGetNotCountedMemory), so a
/// burst of writes the disk has not caught up with does not evict keys for memory that is about
/// to be freed anyway.
fn counted_memory(state: &NodeState) -> u64 {
    let buffered = state
        .aof
        .as_ref()
        .map_or(0, |aof| aof.offset().saturating_sub(aof.progress().written));
    used_memory().saturating_sub(buffered)
}

/// The node's eviction state: the candidate pool and the counter INFO reports.
#[derive(Default)]
pub struct Evictor {
    inner: Mutex<Inner>,
    evicted: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// Ascending by score: the best victim is last.
    pool: Vec<Candidate>,
    /// Slots that held keys (or keys with a TTL, for volatile policies) when last listed.
    slots: Vec<u16>,
    slots_volatile: bool,
    slots_listed: Option<Instant>,
}

struct Candidate {
    slot: u16,
    key: Bytes,
    /// Higher goes first: idle time, 255 - frequency, or u64::MAX - expiry.
    score: u64,
}

impl Evictor {
    /// Keys evicted since start (or CONFIG RESETSTAT).
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub fn reset_stats(&self) {
        self.evicted.store(0, Ordering::Relaxed);
    }

    /// Evicts until used memory is under maxmemory, the policy finds nothing more to evict, or
    /// the time tenacity allows is spent.
    pub fn perform(&self, state: &NodeState) -> Outcome {
        let limit = state.config.maxmemory();
        if limit == 0 || used_memory() <= limit || counted_memory(state) <= limit {
            return Outcome::Ok;
        }
        let policy = state.config.policy();
        let Some(ranking) = policy.ranking() else {
            return Outcome::Fail;
        };
        let started = Instant::now();
        let time_limit = time_limit(state.config.tenacity());
        let mut inner = self.inner.lock();
        // Redis looks at the clock every 16 evictions.
        let mut until_clock_check = 16u32;
        while counted_memory(state) > limit {
            let now = now_ms();
            let done = match ranking {
                Ranking::Random => inner.evict_random(state, policy),
                _ => inner.evict_best(state, policy, ranking, now),
            };
            if !done {
                return Outcome::Fail;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
            until_clock_check -= 1;
            if until_clock_check == 0 {
                if started.elapsed() > time_limit {
                    return Outcome::Running;
                }
                until_clock_check = 16;
            }
        }
        Outcome::Ok
    }
}

impl Inner {
    /// Evicts the best candidate of the pool that still exists, refilling the pool as Redis's
    /// performEvictions does; false when there is nothing to evict.
    fn evict_best(
        &mut self,
        state: &NodeState,
        policy: Policy,
        ranking: Ranking,
        now: u64,
    ) -> bool {
        let samples = state.config.samples() as usize;
        let decay = state.config.lfu_decay_time();
        for _ in 0..MAX_REFILLS {
            let sampled = self.populate(state, policy.volatile_only(), samples, |entry| {
                score(entry, ranking, now, decay)
            });
            if sampled == 0 && self.pool.is_empty() {
                return false;
            }
            while let Some(best) = self.pool.pop() {
                if remove(state, best.slot, &best.key, policy.volatile_only()) {
                    return true;
                }
            }
        }
        false
    }

    /// Evicts a random key (any, or one with a TTL); false when there is none.
    fn evict_random(&mut self, state: &NodeState, policy: Policy) -> bool {
        let volatile = policy.volatile_only();
        for _ in 0..MAX_REFILLS {
            let Some(slot) = self.random_slot(state, volatile) else {
                return false;
            };
            let picked = {
                let guard = state.keyspace.lock(slot);
                sample_run(&guard, volatile, 1)
                    .into_iter()
                    .next()
                    .map(|(key, _)| key)
            };
            if let Some(key) = picked {
                if remove(state, slot, &key, volatile) {
                    return true;
                }
            }
        }
        false
    }

    /// Adds `samples` keys to the pool (Redis's evictionPoolPopulate): runs of keys from random
    /// slots until there are enough (a node's keys are spread thin over its slots, so one slot
    /// rarely holds a whole sample). Returns how many were looked at.
    fn populate(
        &mut self,
        state: &NodeState,
        volatile: bool,
        samples: usize,
        score: impl Fn(&EntryRef<'_>) -> u64,
    ) -> usize {
        let mut sampled = 0;
        for _ in 0..samples.saturating_mul(2) {
            if sampled >= samples {
                break;
            }
            let Some(slot) = self.random_slot(state, volatile) else {
                break;
            };
            let scored: Vec<(Bytes, u64)> = {
                let guard = state.keyspace.lock(slot);
                sample_run(&guard, volatile, samples - sampled)
                    .into_iter()
                    .map(|(key, entry)| (key, score(&entry)))
                    .collect()
            };
            sampled += scored.len();
            for (key, score) in scored {
                self.offer(Candidate { slot, key, score });
            }
        }
        sampled
    }

    /// Puts `candidate` in the pool if it beats the worst there (or the pool has room).
    fn offer(&mut self, candidate: Candidate) {
        if let Some(i) = self.pool.iter().position(|c| c.key == candidate.key) {
            self.pool.remove(i);
        }
        if self.pool.len() >= POOL_SIZE {
            if self.pool[0].score >= candidate.score {
                return;
            }
            self.pool.remove(0);
        }
        let at = self.pool.partition_point(|c| c.score <= candidate.score);
        self.pool.insert(at, candidate);
    }

    /// A random slot holding keys (with a TTL when `volatile`), from the cached list.
    fn random_slot(&mut self, state: &NodeState, volatile: bool) -> Option<u16> {
        let stale = self
            .slots_listed
            .is_none_or(|at| at.elapsed() > SLOT_LIST_MAX_AGE)
            || self.slots_volatile != volatile;
        if stale {
            self.list_slots(state, volatile);
        }
        let mut rng = rand::rng();
        for attempt in 0..2 {
            for _ in 0..SLOT_TRIES {
                if self.slots.is_empty() {
                    break;
                }
                let i = rng.random_range(0..self.slots.len());
                let slot = self.slots[i];
                let guard = state.keyspace.lock(slot);
                let has = if volatile {
                    guard.volatile_len() > 0
                } else {
                    !guard.is_empty()
                };
                if has {
                    return Some(slot);
                }
                self.slots.swap_remove(i);
            }
            if attempt == 0 {
                self.list_slots(state, volatile);
            }
        }
        None
    }

    fn list_slots(&mut self, state: &NodeState, volatile: bool) {
        self.slots.clear();
        for slot in 0..SLOT_COUNT {
            let guard = state.keyspace.lock(slot);
            let has = if volatile {
                guard.volatile_len() > 0
            } else {
                !guard.is_empty()
            };
            if has {
                self.slots.push(slot);
            }
        }
        self.slots_volatile = volatile;
        self.slots_listed = Some(Instant::now());
    }
}

/// Up to `count` keys of the slot in a run from a random place (wrapping at the end), only
/// keys with a TTL when `volatile`.
fn sample_run<'g>(
    guard: &'g SlotGuard<'_>,
    volatile: bool,
    count: usize,
) -> Vec<(Bytes, EntryRef<'g>)> {
    guard
        .run_from(rand::rng().random())
        .filter(|(_, entry)| !volatile || entry.expires_at_ms.is_some())
        .take(count)
        .map(|(key, entry)| (Bytes::copy_from_slice(key), entry))
        .collect()
}

/// How good a victim `entry` is under `ranking` (higher is better), as evict.c ranks them.
fn score(entry: &EntryRef<'_>, ranking: Ranking, now: u64, decay_minutes: u32) -> u64 {
    match ranking {
        Ranking::Lru => entry.access.idle_ms(now),
        Ranking::Lfu => 255 - u64::from(entry.access.frequency(now, decay_minutes)),
        Ranking::Ttl => u64::MAX - entry.expires_at_ms.unwrap_or(u64::MAX),
        Ranking::Random => 0,
    }
}

/// Deletes `key` of `slot` as an eviction: logged as DEL, nobody woken. False when it is gone
/// (or, for a volatile policy, has lost its TTL) since it was sampled.
fn remove(state: &NodeState, slot: u16, key: &Bytes, volatile: bool) -> bool {
    let mut guard = state.keyspace.lock(slot);
    let evictable = guard
        .get(key)
        .is_some_and(|entry| !volatile || entry.expires_at_ms.is_some());
    if !evictable {
        return false;
    }
    guard.remove(key);
    if guard.is_empty() {
        // A slot's table keeps its buckets when its last key goes; keys spread thin over many
        // slots would leave eviction freeing nothing but the keys themselves.
        guard.clear();
    }
    state
        .replication
        .log
        .append(&[Bytes::from_static(b"DEL"), key.clone()]);
    true
}

/// Redis's evictionTimeLimitUs: 50 us per step of tenacity up to 10, then 15% more per step,
/// and no limit at 100.
fn time_limit(tenacity: u32) -> Duration {
    match tenacity {
        0..=10 => Duration::from_micros(50 * u64::from(tenacity)),
        11..=99 => Duration::from_micros((500.0 * 1.15f64.powi(tenacity as i32 - 10)) as u64),
        _ => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(key: &'static str, score: u64) -> Candidate {
        Candidate {
            slot: 0,
            key: Bytes::from_static(key.as_bytes()),
            score,
        }
    }

    #[test]
    fn pool_keeps_the_best_sixteen_in_order() {
        let mut inner = Inner::default();
        for i in 0..40u64 {
            let key: &'static str = Box::leak(format!("k{i}").into_boxed_str());
            inner.offer(candidate(key, (i * 7919) % 101));
        }
        assert_eq!(inner.pool.len(), POOL_SIZE);
        let scores: Vec<u64> = inner.pool.iter().map(|c| c.score).collect();
        let mut sorted = scores.clone();
        sorted.sort_unstable();
        assert_eq!(scores, sorted);
        let mut all: Vec<u64> = (0..40u64).map(|i| (i * 7919) % 101).collect();
        all.sort_unstable();
        assert_eq!(scores, all[40 - POOL_SIZE..]);
        // A key offered again replaces its old entry rather than taking two places.
        inner.offer(candidate("k1", 1000));
        assert_eq!(inner.pool.len(), POOL_SIZE);
        assert_eq!(inner.pool.iter().filter(|c| &c.key[..] == b"k1").count(), 1);
        assert_eq!(inner.pool.last().map(|c| c.score), Some(1000));
    }

    #[test]
    fn time_limit_follows_tenacity() {
        assert_eq!(time_limit(0), Duration::ZERO);
        assert_eq!(time_limit(10), Duration::from_micros(500));
        assert!(time_limit(11) > Duration::from_micros(500));
        assert_eq!(time_limit(100), Duration::MAX);
    }
}
