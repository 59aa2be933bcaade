//! Bounded polling: tests wait for a condition, never for a fixed time, and fail with what they
//! waited for when it does not come.

use std::future::Future;
use std::time::{Duration, Instant};

/// Blocking: calls `probe` every 50 ms until it returns `Some`, or panics naming `what` after
/// `limit`. For synchronous tests that drive separate processes.
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

/// Async: checks `check` every 10 ms until it holds, or panics naming `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Async, with an async check (one that talks to a server): polls every 50 ms for at most
/// `limit`, and returns an error rather than panicking, for `?` in tests returning `Result`.
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("condition not met within {limit:?}")
}
