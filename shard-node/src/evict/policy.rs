//! maxmemory-policy: which keys may go when memory is over maxmemory, and how they are ranked.

use crate::keyspace::access::Tracking;

/// Redis's eviction policies, in the order Redis lists them (its CONFIG SET error names them in
/// this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    #[value(name = "volatile-lru")]
    VolatileLru,
    #[value(name = "volatile-lfu")]
    VolatileLfu,
    #[value(name = "volatile-random")]
    VolatileRandom,
    #[value(name = "volatile-ttl")]
    VolatileTtl,
    #[value(name = "allkeys-lru")]
    AllkeysLru,
    #[value(name = "allkeys-lfu")]
    AllkeysLfu,
    #[value(name = "allkeys-random")]
    AllkeysRandom,
    #[value(name = "noeviction")]
    NoEviction,
}

/// How a policy picks its victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// Longest idle first.
    Lru,
    /// Least frequently used first.
    Lfu,
    /// Soonest to expire first.
    Ttl,
    /// Any key.
    Random,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
        Policy::AllkeysLru,
        Policy::AllkeysLfu,
        Policy::AllkeysRandom,
        Policy::NoEviction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
            Policy::AllkeysLru => "allkeys-lru",
            Policy::AllkeysLfu => "allkeys-lfu",
            Policy::AllkeysRandom => "allkeys-random",
            Policy::NoEviction => "noeviction",
        }
    }

    /// The policy named `name`, case-insensitively (as CONFIG SET reads enums).
    pub fn parse(name: &[u8]) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// Its position in `ALL`, to keep it in an atomic.
    pub fn index(self) -> u8 {
        Policy::ALL.iter().position(|p| *p == self).unwrap_or(7) as u8
    }

    pub fn from_index(index: u8) -> Policy {
        Policy::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or(Policy::NoEviction)
    }

    /// Whether only keys with a TTL may be evicted.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    /// Redis's MAXMEMORY_FLAG_LFU: lookups keep a frequency instead of a last-access time.
    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::VolatileLfu | Policy::AllkeysLfu)
    }

    /// How victims are ranked; `None` for noeviction.
    pub fn ranking(self) -> Option<Ranking> {
        match self {
            Policy::VolatileLru | Policy::AllkeysLru => Some(Ranking::Lru),
            Policy::VolatileLfu | Policy::AllkeysLfu => Some(Ranking::Lfu),
            Policy::VolatileTtl => Some(Ranking::Ttl),
            Policy::VolatileRandom | Policy::AllkeysRandom => Some(Ranking::Random),
            Policy::NoEviction => None,
        }
    }

    /// What lookups record under this policy.
    pub fn tracking(self, log_factor: u32, decay_minutes: u32) -> Tracking {
        if self.is_lfu() {
            Tracking::Lfu {
                log_factor,
                decay_minutes,
            }
        } else {
            Tracking::Lru
        }
    }

    /// The names, comma-separated, as CONFIG SET's error lists them.
    pub fn names() -> String {
        Policy::ALL.map(Policy::name).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name().to_uppercase().as_bytes()), Some(p));
            assert_eq!(Policy::from_index(p.index()), p);
        }
        assert_eq!(Policy::parse(b"lru"), None);
        assert!(Policy::names().starts_with("volatile-lru, volatile-lfu,"));
    }
}
