//! Metrics layer: counts requests, errors and replies per backend, for INFO and logs. One atomic
//! add per request; no locks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// Counters of one backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

impl BackendStats {
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Clone)]
pub struct MetricsLayer {
    stats: Arc<BackendStats>,
}

impl MetricsLayer {
    pub fn new(stats: Arc<BackendStats>) -> MetricsLayer {
        MetricsLayer { stats }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            stats: self.stats.clone(),
        }
    }
}

/// Counts what passes through `inner`.
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    stats: Arc<BackendStats>,
}

impl<S, R> Service<R> for Metrics<S>
where
    S: Service<R>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        MetricsFuture {
            inner: self.inner.call(request),
            stats: self.stats.clone(),
        }
    }
}

#[derive(Debug)]
pub struct MetricsFuture<F> {
    inner: F,
    stats: Arc<BackendStats>,
}

impl<F, T, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
{
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(result)
    }
}
