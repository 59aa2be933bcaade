//! The settings CONFIG SET can change while the node runs: started from the command line
//! (`Config`), kept in atomics so the data path reads them without a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::aof::rewrite::AutoRewrite;
use crate::aof::FsyncPolicy;
use crate::config::Config;
use crate::evict::Policy;
use crate::keyspace::access::Tracking;

/// Redis 7.0's defaults.
const DEFAULT_SAMPLES: u32 = 5;
const DEFAULT_TENACITY: u32 = 10;
const DEFAULT_LFU_LOG_FACTOR: u32 = 10;
const DEFAULT_LFU_DECAY_TIME: u32 = 1;

/// The node's changeable settings. Each one is read and written on its own (Relaxed): CONFIG SET
/// of several settings is checked as a whole first, then applied one by one, and nothing reads
/// two of them as a pair that must agree.
pub struct Live {
    maxmemory: AtomicU64,
    policy: AtomicU8,
    samples: AtomicU32,
    tenacity: AtomicU32,
    lfu_log_factor: AtomicU32,
    lfu_decay_time: AtomicU32,
    auto_rewrite_percentage: AtomicU32,
    auto_rewrite_min_size: AtomicU64,
    /// The configured fsync policy (the open AOF is told too, see `cmd::config`); kept here so
    /// CONFIG GET answers it when persistence is off.
    appendfsync: AtomicU8,
    /// hll-sparse-max-bytes: the longest a sparse HyperLogLog grows before it turns dense.
    hll_sparse_max_bytes: AtomicU64,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            maxmemory: AtomicU64::new(0),
            policy: AtomicU8::new(Policy::NoEviction.index()),
            samples: AtomicU32::new(DEFAULT_SAMPLES),
            tenacity: AtomicU32::new(DEFAULT_TENACITY),
            lfu_log_factor: AtomicU32::new(DEFAULT_LFU_LOG_FACTOR),
            lfu_decay_time: AtomicU32::new(DEFAULT_LFU_DECAY_TIME),
            auto_rewrite_percentage: AtomicU32::new(100),
            auto_rewrite_min_size: AtomicU64::new(64 * 1024 * 1024),
            appendfsync: AtomicU8::new(FsyncPolicy::Everysec.code()),
            hll_sparse_max_bytes: AtomicU64::new(crate::hll::DEFAULT_SPARSE_MAX_BYTES),
        }
    }
}

impl Live {
    /// The settings the node starts with.
    pub fn from_config(config: &Config) -> Live {
        let live = Live::default();
        live.set_maxmemory(config.maxmemory);
        live.set_policy(config.maxmemory_policy);
        live.set_samples(config.maxmemory_samples);
        live.set_lfu_log_factor(config.lfu_log_factor);
        live.set_lfu_decay_time(config.lfu_decay_time);
        live.set_auto_rewrite(config.auto_rewrite());
        live.set_appendfsync(config.appendfsync);
        live
    }

    /// The memory limit in bytes; 0 is none.
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Ordering::Relaxed);
    }

    pub fn policy(&self) -> Policy {
        Policy::from_index(self.policy.load(Ordering::Relaxed))
    }

    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(policy.index(), Ordering::Relaxed);
    }

    /// maxmemory-samples: keys sampled per eviction round.
    pub fn samples(&self) -> u32 {
        self.samples.load(Ordering::Relaxed)
    }

    pub fn set_samples(&self, samples: u32) {
        self.samples.store(samples.max(1), Ordering::Relaxed);
    }

    /// maxmemory-eviction-tenacity (0..=100): how long one command may spend evicting.
    pub fn tenacity(&self) -> u32 {
        self.tenacity.load(Ordering::Relaxed)
    }

    pub fn set_tenacity(&self, tenacity: u32) {
        self.tenacity.store(tenacity.min(100), Ordering::Relaxed);
    }

    pub fn lfu_log_factor(&self) -> u32 {
        self.lfu_log_factor.load(Ordering::Relaxed)
    }

    pub fn set_lfu_log_factor(&self, factor: u32) {
        self.lfu_log_factor.store(factor, Ordering::Relaxed);
    }

    /// lfu-decay-time, in minutes.
    pub fn lfu_decay_time(&self) -> u32 {
        self.lfu_decay_time.load(Ordering::Relaxed)
    }

    pub fn set_lfu_decay_time(&self, minutes: u32) {
        self.lfu_decay_time.store(minutes, Ordering::Relaxed);
    }

    /// What lookups record now, by the policy.
    pub fn tracking(&self) -> Tracking {
        self.policy()
            .tracking(self.lfu_log_factor(), self.lfu_decay_time())
    }

    /// The automatic AOF rewrite threshold now.
    pub fn auto_rewrite(&self) -> AutoRewrite {
        AutoRewrite {
            percentage: self.auto_rewrite_percentage.load(Ordering::Relaxed),
            min_size: self.auto_rewrite_min_size.load(Ordering::Relaxed),
        }
    }

    pub fn set_auto_rewrite(&self, auto: AutoRewrite) {
        self.set_auto_rewrite_percentage(auto.percentage);
        self.set_auto_rewrite_min_size(auto.min_size);
    }

    pub fn set_auto_rewrite_percentage(&self, percentage: u32) {
        self.auto_rewrite_percentage
            .store(percentage, Ordering::Relaxed);
    }

    pub fn set_auto_rewrite_min_size(&self, bytes: u64) {
        self.auto_rewrite_min_size.store(bytes, Ordering::Relaxed);
    }

    pub fn appendfsync(&self) -> FsyncPolicy {
        FsyncPolicy::from_code(self.appendfsync.load(Ordering::Relaxed))
    }

    pub fn set_appendfsync(&self, policy: FsyncPolicy) {
        self.appendfsync.store(policy.code(), Ordering::Relaxed);
    }

    pub fn hll_sparse_max_bytes(&self) -> u64 {
        self.hll_sparse_max_bytes.load(Ordering::Relaxed)
    }

    pub fn set_hll_sparse_max_bytes(&self, bytes: u64) {
        self.hll_sparse_max_bytes.store(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_redis_defaults_and_settings_round_trip() {
        let live = Live::default();
        assert_eq!(live.maxmemory(), 0);
        assert_eq!(live.policy(), Policy::NoEviction);
        assert_eq!(live.samples(), 5);
        assert_eq!(live.tracking(), Tracking::Lru);
        live.set_policy(Policy::AllkeysLfu);
        assert_eq!(
            live.tracking(),
            Tracking::Lfu {
                log_factor: 10,
                decay_minutes: 1
            }
        );
        live.set_appendfsync(FsyncPolicy::No);
        assert_eq!(live.appendfsync(), FsyncPolicy::No);
        live.set_tenacity(1000);
        assert_eq!(live.tenacity(), 100);
    }
}
