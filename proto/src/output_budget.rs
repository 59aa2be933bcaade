//! Redis's pub/sub client output limit (`client-output-buffer-limit pubsub 32mb 8mb 60`), one
//! implementation for the shard nodes' and the proxy's subscribers: bytes queued for a client and
//! not yet written to it, and the signal that it went past the hard limit, or past the soft limit
//! for longer than its seconds. A subscriber that cannot keep up is disconnected, as Redis does,
//! instead of making the server hold unbounded memory for it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Redis's default hard limit: past it, at once.
pub const HARD_LIMIT: usize = 32 * 1024 * 1024;
/// Redis's default soft limit: past it for `SOFT_SECONDS` in a row.
pub const SOFT_LIMIT: usize = 8 * 1024 * 1024;
pub const SOFT_SECONDS: Duration = Duration::from_secs(60);

/// The bytes one subscriber owes; shared between the publishers that queue for it and the
/// connection that writes to it.
#[derive(Debug, Default)]
pub struct OutputBudget {
    bytes: AtomicUsize,
    over_soft: AtomicBool,
    soft_since: Mutex<Option<Instant>>,
    overflow: CancellationToken,
}

impl OutputBudget {
    /// Counts `n` more bytes owed; false (and the overflow signal) once past the limit, and ever
    /// after.
    pub fn add(&self, n: usize) -> bool {
        if self.overflow.is_cancelled() {
            return false;
        }
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if total > HARD_LIMIT {
            self.overflow.cancel();
            return false;
        }
        let soft_since = || self.soft_since.lock().unwrap_or_else(|p| p.into_inner());
        if total > SOFT_LIMIT {
            self.over_soft.store(true, Ordering::Relaxed);
            let start = *soft_since().get_or_insert_with(Instant::now);
            if start.elapsed() >= SOFT_SECONDS {
                self.overflow.cancel();
                return false;
            }
        } else if self.over_soft.swap(false, Ordering::Relaxed) {
            *soft_since() = None;
        }
        true
    }

    /// `n` bytes were written to the client.
    pub fn written(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Cancelled once the client went past its limit: its connection then closes.
    pub fn overflow(&self) -> &CancellationToken {
        &self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_past_the_hard_limit_and_stays_tripped() {
        let budget = OutputBudget::default();
        assert!(budget.add(HARD_LIMIT / 2));
        assert!(!budget.overflow().is_cancelled());
        budget.written(HARD_LIMIT / 2);
        assert!(budget.add(HARD_LIMIT));
        assert!(!budget.add(1));
        assert!(budget.overflow().is_cancelled());
        budget.written(HARD_LIMIT + 1);
        assert!(!budget.add(1), "a tripped budget stays tripped");
    }

    #[test]
    fn resets_the_soft_clock_below_the_soft_limit() {
        let budget = OutputBudget::default();
        let since = |b: &OutputBudget| b.soft_since.lock().map(|s| s.is_some()).unwrap_or(false);
        assert!(budget.add(SOFT_LIMIT + 1));
        assert!(since(&budget));
        budget.written(SOFT_LIMIT + 1);
        assert!(budget.add(1));
        assert!(!since(&budget));
    }
}
