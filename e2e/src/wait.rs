//! Bounded polling: tests wait for a condition, never for a fixed time.

use std::time::{Duration, Instant};

/// Calls `probe` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn until<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
