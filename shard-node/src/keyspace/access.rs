//! Per-key access metadata for eviction, Redis's 24-bit `lru` field in one 32-bit word.
//!
//! Redis keeps either an LRU clock (seconds, modulo 2^24) or, under an LFU policy, a logarithmic
//! access counter with the minute it was last decremented, in the same bits; switching policy
//! makes it read the other kind's bits as garbage until keys are touched again. We spend bit 24 on
//! a tag saying which form the word holds, so a key read under the other kind of policy gives a
//! sensible answer instead: an LRU stamp reads as a fresh LFU counter (LFU_INIT_VAL, decayed by
//! the key's age), and an LFU word's minute reads as the last access time.
//!
//! The word sits in a `Cell`: a lookup updates it through the shared reference a read already
//! has (the slot's lock is held, so no other thread sees it), the way Redis updates `o->lru` on
//! a lookup without treating the read as a write.
//!
//! Lookups touch keys as Redis's `lookupKey` does (see `Txn::live`); the commands Redis looks up
//! with LOOKUP_NOTOUCH (TYPE, EXISTS, TTL, OBJECT, ...) do not.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Redis's LRU_CLOCK_MAX: the clock counts seconds modulo 2^24 (about 194 days).
const LRU_CLOCK_MAX: u32 = (1 << 24) - 1;
/// Redis's LFU_INIT_VAL: a new key's counter, so it is not evicted before it had a chance.
pub const LFU_INIT_VAL: u8 = 5;
/// Set when the word holds the LFU form (minutes << 8 | counter), clear for an LRU stamp.
const LFU_TAG: u32 = 1 << 24;
const MINUTES_MAX: u32 = 0xFFFF;

/// The Unix time (ms) of the latest command's one clock reading, or 0 before the first. New keys
/// are stamped from it, as Redis stamps them from its cached `server.lruclock` instead of reading
/// the clock per key: a clock reading costs as much as a hash lookup on a VM, and the stamp has
/// one-second resolution.
static COMMAND_TIME_MS: AtomicU64 = AtomicU64::new(0);

/// Records `now_ms` as the time the command about to run reads as "now".
pub fn note_command_time(now_ms: u64) {
    COMMAND_TIME_MS.store(now_ms, Ordering::Relaxed);
}

/// How lookups update access metadata: decided by the maxmemory policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    /// Stamp the LRU clock (every policy but the LFU ones, as Redis).
    Lru,
    /// Decay, then increment the logarithmic counter (allkeys-lfu, volatile-lfu).
    Lfu {
        /// lfu-log-factor: how many hits it takes to saturate the counter.
        log_factor: u32,
        /// lfu-decay-time: minutes per one step of decay (0: never decays).
        decay_minutes: u32,
    },
}

/// A key's access metadata; 4 bytes.
#[derive(Debug, Clone)]
pub struct Access(Cell<u32>);

/// Access metadata is bookkeeping, not content: entries with the same value and expiry are equal
/// whenever their keys were last read.
impl PartialEq for Access {
    fn eq(&self, _: &Access) -> bool {
        true
    }
}

impl Default for Access {
    fn default() -> Self {
        Access::new()
    }
}

impl Access {
    /// Metadata of a key created now: an LRU stamp of now, which also reads as a fresh LFU
    /// counter (Redis's createObject gives LRU_CLOCK() or LFU_INIT_VAL by the policy). "Now" is
    /// the running command's clock reading (see `note_command_time`).
    pub fn new() -> Access {
        let now_ms = match COMMAND_TIME_MS.load(Ordering::Relaxed) {
            0 => super::now_ms(),
            ms => ms,
        };
        Access::created_at(now_ms)
    }

    /// Metadata of a key created at `now_ms` (Unix milliseconds).
    pub fn created_at(now_ms: u64) -> Access {
        Access(Cell::new(lru_clock(now_ms)))
    }

    /// The raw word, for compact storage; `from_bits` restores it.
    pub fn to_bits(&self) -> u32 {
        self.0.get()
    }

    pub fn from_bits(bits: u32) -> Access {
        Access(Cell::new(bits))
    }

    /// Whether the word holds the LFU form.
    pub fn is_lfu(&self) -> bool {
        self.0.get() & LFU_TAG != 0
    }

    /// A lookup at `now_ms`: Redis's `val->lru = LRU_CLOCK()` or `updateLFU(val)`.
    pub fn touch(&self, tracking: Tracking, now_ms: u64) {
        match tracking {
            Tracking::Lru => self.0.set(lru_clock(now_ms)),
            Tracking::Lfu {
                log_factor,
                decay_minutes,
            } => {
                let counter = self.frequency(now_ms, decay_minutes);
                let counter = log_increment(counter, log_factor, rand::random::<f64>());
                self.0.set(lfu_word(minutes(now_ms), counter));
            }
        }
    }

    /// RESTORE's IDLETIME / FREQ, as Redis's objectSetLRUOrLFU: under an LFU policy a given
    /// frequency becomes the counter (stamped now); otherwise a given idle time sets the LRU stamp
    /// that many seconds back. The other option is ignored, as in Redis.
    pub fn restore(
        &self,
        lfu: bool,
        frequency: Option<u8>,
        idle_seconds: Option<u64>,
        now_ms: u64,
    ) {
        match (lfu, frequency, idle_seconds) {
            (true, Some(counter), _) => self.0.set(lfu_word(minutes(now_ms), counter)),
            (false, _, Some(idle)) => {
                let idle = (idle % u64::from(LRU_CLOCK_MAX + 1)) as u32;
                let stamp = lru_clock(now_ms).wrapping_sub(idle) & LRU_CLOCK_MAX;
                self.0.set(stamp);
            }
            _ => {}
        }
    }

    /// An overwritten key's new value takes the old one's counter, as Redis's dbOverwrite does
    /// under an LFU policy; an LRU stamp is left as it is (the overwrite is an access anyway).
    pub fn inherit(&self, old: &Access) {
        if old.is_lfu() {
            self.0.set(old.0.get());
        }
    }

    /// Milliseconds since the last access, at one-second resolution: Redis's
    /// estimateObjectIdleTime. An LFU word knows the minute of its last access.
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        let word = self.0.get();
        if word & LFU_TAG != 0 {
            let then = (word >> 8) & MINUTES_MAX;
            return u64::from(minutes_between(then, minutes(now_ms))) * 60_000;
        }
        // Modulo the clock's 2^24 seconds (Redis's own wrap formula is one second short).
        let seconds = lru_clock(now_ms).wrapping_sub(word) & LRU_CLOCK_MAX;
        u64::from(seconds) * 1000
    }

    /// The counter decayed to `now_ms` without storing it: Redis's LFUDecrAndReturn (OBJECT FREQ
    /// and the eviction pool read this). An LRU stamp reads as LFU_INIT_VAL set at that time.
    pub fn frequency(&self, now_ms: u64, decay_minutes: u32) -> u8 {
        let word = self.0.get();
        let now = minutes(now_ms);
        let (then, counter) = if word & LFU_TAG != 0 {
            ((word >> 8) & MINUTES_MAX, (word & 0xFF) as u8)
        } else {
            let created_ms = now_ms.saturating_sub(self.idle_ms(now_ms));
            (minutes(created_ms), LFU_INIT_VAL)
        };
        if decay_minutes == 0 {
            return counter;
        }
        let periods = minutes_between(then, now) / decay_minutes;
        counter.saturating_sub(periods.min(255) as u8)
    }
}

/// Redis's LRU clock at `now_ms`: seconds modulo 2^24.
fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) & u64::from(LRU_CLOCK_MAX)) as u32
}

/// Redis's LFUGetTimeInMinutes: minutes modulo 2^16.
fn minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & u64::from(MINUTES_MAX)) as u32
}

/// Redis's LFUTimeElapsed, with the clock's wrap-around.
fn minutes_between(then: u32, now: u32) -> u32 {
    if now >= then {
        now - then
    } else {
        MINUTES_MAX - then + now
    }
}

fn lfu_word(minutes: u32, counter: u8) -> u32 {
    LFU_TAG | (minutes << 8) | u32::from(counter)
}

/// Redis's LFULogIncr with the random draw `r` in [0, 1): the higher the counter, the less likely
/// a hit raises it (probability 1 / ((counter - LFU_INIT_VAL) * log_factor + 1)).
fn log_increment(counter: u8, log_factor: u32, r: f64) -> u8 {
    if counter == u8::MAX {
        return counter;
    }
    let base = f64::from(counter.saturating_sub(LFU_INIT_VAL));
    let p = 1.0 / (base * f64::from(log_factor) + 1.0);
    if r < p {
        counter + 1
    } else {
        counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LFU: Tracking = Tracking::Lfu {
        log_factor: 10,
        decay_minutes: 1,
    };

    #[test]
    fn fits_in_four_bytes() {
        assert_eq!(std::mem::size_of::<Access>(), 4);
    }

    #[test]
    fn lru_idle_time_counts_seconds_and_wraps() {
        let t0 = 1_000_000_000_000;
        let a = Access::created_at(t0);
        assert_eq!(a.idle_ms(t0 + 999), 0);
        assert_eq!(a.idle_ms(t0 + 5_000), 5_000);
        a.touch(Tracking::Lru, t0 + 5_000);
        assert_eq!(a.idle_ms(t0 + 5_000), 0);
        // Across the 2^24-second wrap of the clock.
        let wrap_ms = u64::from(LRU_CLOCK_MAX) * 1000;
        let b = Access::created_at(wrap_ms);
        assert_eq!(b.idle_ms(wrap_ms + 3_000), 3_000);
    }

    #[test]
    fn lfu_counter_starts_at_init_and_first_hit_always_counts() {
        let t0 = 1_000_000_000_000;
        let a = Access::created_at(t0);
        assert_eq!(a.frequency(t0, 1), LFU_INIT_VAL);
        a.touch(LFU, t0);
        assert!(a.is_lfu());
        assert_eq!(a.frequency(t0, 1), LFU_INIT_VAL + 1);
    }

    #[test]
    fn lfu_counter_decays_one_step_per_decay_period() {
        let t0 = 1_000_000_000_000;
        let a = Access::from_bits(lfu_word(minutes(t0), 10));
        assert_eq!(a.frequency(t0 + 3 * 60_000, 1), 7);
        assert_eq!(a.frequency(t0 + 3 * 60_000, 2), 9);
        assert_eq!(a.frequency(t0 + 3 * 60_000, 0), 10);
        assert_eq!(a.frequency(t0 + 300 * 60_000, 1), 0);
        // An LRU stamp two minutes old reads as LFU_INIT_VAL decayed twice.
        let b = Access::created_at(t0);
        assert_eq!(b.frequency(t0 + 2 * 60_000, 1), LFU_INIT_VAL - 2);
    }

    #[test]
    fn log_increment_follows_redis_probability() {
        assert_eq!(log_increment(5, 10, 0.99), 6, "at the initial value p = 1");
        assert_eq!(log_increment(6, 10, 0.05), 7, "p = 1/11");
        assert_eq!(log_increment(6, 10, 0.10), 6);
        assert_eq!(log_increment(255, 10, 0.0), 255);
        assert_eq!(
            log_increment(2, 10, 0.99),
            3,
            "below the initial value p = 1"
        );
    }

    #[test]
    fn overwrite_keeps_an_lfu_counter_only() {
        let t0 = 1_000_000_000_000;
        let old = Access::from_bits(lfu_word(minutes(t0), 40));
        let new = Access::created_at(t0);
        new.inherit(&old);
        assert_eq!(new.frequency(t0, 1), 40);
        let lru_old = Access::created_at(t0 - 100_000);
        let fresh = Access::created_at(t0);
        fresh.inherit(&lru_old);
        assert_eq!(fresh.idle_ms(t0), 0);
    }
}
