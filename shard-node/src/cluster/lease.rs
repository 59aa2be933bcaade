//! The write lease: a node may accept writes only while the control plane has heard from it
//! within node-timeout. Past that the control plane may already have declared it failed (and, with
//! replicas, promoted another master), so writes taken here could be lost or diverge.
//!
//! Time is passed in (`*_at`), so the rule is tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Lease {
    /// Origin of the stored times.
    base: Instant,
    /// When set, writes are always allowed (a node with no control plane, for tests).
    unconditional: bool,
    /// Nanoseconds since `base` of the last renewal, plus one; 0 means never renewed.
    renewed: AtomicU64,
}

impl Lease {
    /// A lease not yet granted: writes wait for the first contact with the control plane.
    pub fn new() -> Lease {
        Lease {
            base: Instant::now(),
            unconditional: false,
            renewed: AtomicU64::new(0),
        }
    }

    /// A lease that never expires.
    pub fn unconditional() -> Lease {
        Lease {
            unconditional: true,
            ..Lease::new()
        }
    }

    /// Records a successful exchange with the control plane. `sent` is when the request left,
    /// not when the answer came: the control plane's clock for this node started no earlier.
    /// Never moves the lease backwards.
    pub fn renew_at(&self, sent: Instant) {
        let nanos = sent.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        self.renewed.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Whether writes are allowed at `now` given node-timeout.
    pub fn valid_at(&self, now: Instant, node_timeout: Duration) -> bool {
        if self.unconditional {
            return true;
        }
        match self.renewed.load(Ordering::Acquire) {
            0 => false,
            stored => {
                let renewed = self.base + Duration::from_nanos(stored - 1);
                now.saturating_duration_since(renewed) <= node_timeout
            }
        }
    }
}

impl Default for Lease {
    fn default() -> Self {
        Lease::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_granted_until_first_contact() {
        let lease = Lease::new();
        assert!(!lease.valid_at(Instant::now(), Duration::from_secs(15)));
    }

    #[test]
    fn expires_after_node_timeout() {
        let lease = Lease::new();
        let t0 = Instant::now() + Duration::from_secs(1);
        let timeout = Duration::from_millis(500);
        lease.renew_at(t0);
        assert!(lease.valid_at(t0, timeout));
        assert!(lease.valid_at(t0 + Duration::from_millis(500), timeout));
        assert!(!lease.valid_at(t0 + Duration::from_millis(501), timeout));
        lease.renew_at(t0 + Duration::from_millis(400));
        assert!(lease.valid_at(t0 + Duration::from_millis(800), timeout));
    }

    #[test]
    fn an_older_renewal_does_not_shorten_it() {
        let lease = Lease::new();
        let t0 = Instant::now() + Duration::from_secs(1);
        lease.renew_at(t0 + Duration::from_secs(2));
        lease.renew_at(t0);
        assert!(lease.valid_at(t0 + Duration::from_secs(3), Duration::from_millis(1500)));
    }

    #[test]
    fn unconditional_always_allows() {
        let lease = Lease::unconditional();
        assert!(lease.valid_at(Instant::now() + Duration::from_secs(3600), Duration::ZERO));
    }
}
