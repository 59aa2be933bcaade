//! Backends: per shard node address, pools of pipelined connections (one pool per protocol)
//! exposed as `tower::Service`s. The stacks are assembled here, in one place:
//! - per backend (`stack`): metrics over the pool, whose connections carry the reply timeout
//!   (one watchdog per connection, not a timer per request: a hung backend never sticks a
//!   client);
//! - over all backends (`cluster_stack`): redirects (`redirect`, the pooled path's use of the
//!   one follower, `follow`: MOVED / ASK / TRYAGAIN) over `Dispatch`, which hands each request to
//!   its target backend's stack.

pub mod connection;
pub mod dedicated;
pub mod follow;
pub mod metrics;
pub mod pool;
pub mod redirect;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::resp::Protocol;
use tower::{Layer, Service};

use crate::error::BackendError;
use dedicated::{Dedicated, IdlePool};
use metrics::{BackendStats, Metrics, MetricsLayer};
use pool::{Pool, ReplyFuture};

/// One request to a backend: an encoded command and the lane (connection) of the client.
#[derive(Debug, Clone)]
pub struct BackendRequest {
    pub bytes: Bytes,
    /// Preceded by `ASKING`, as one unit on the connection (an ASK redirect's retry).
    pub asking: bool,
    pub lane: usize,
}

/// The innermost service: queue on the pool.
#[derive(Debug, Clone)]
pub struct PoolService {
    pool: Arc<Pool>,
}

impl Service<BackendRequest> for PoolService {
    type Response = Bytes;
    type Error = BackendError;
    type Future = ReplyFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        // The queue is unbounded: the client connection bounds its own in-flight requests.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BackendRequest) -> ReplyFuture {
        self.pool.call(request.bytes, request.asking, request.lane)
    }
}

/// The assembled per-backend stack.
pub type BackendService = Metrics<PoolService>;

/// How backends are built.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub connections: usize,
    pub timeout: Duration,
    pub login: BackendLogin,
}

/// What every backend connection says before it carries requests.
#[derive(Debug, Clone, Default)]
pub struct BackendLogin {
    /// The cluster's node secret, sent as `AUTH <secret>` first.
    pub secret: Option<Arc<str>>,
    /// Send `READONLY`, so a replica serves reads of its master's slots (`--read-policy`).
    pub readonly: bool,
}

/// Assembles the stack for one pool: the one place where layers are ordered.
fn stack(pool: Arc<Pool>, stats: Arc<BackendStats>) -> BackendService {
    let service = PoolService { pool };
    MetricsLayer::new(stats).layer(service)
}

/// A request addressed to one backend, in the client's protocol and lane.
#[derive(Debug, Clone)]
pub struct ClusterRequest {
    pub target: Arc<Backend>,
    pub protocol: Protocol,
    pub bytes: Bytes,
    /// Preceded by `ASKING` (set by the redirect follower only).
    pub asking: bool,
    pub lane: usize,
}

/// Hands each request to its target's stack. Its `call` queues the request at once (every layer
/// below is always ready), which keeps a client's pipelined commands in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dispatch;

impl Service<ClusterRequest> for Dispatch {
    type Response = Bytes;
    type Error = BackendError;
    type Future = metrics::MetricsFuture<ReplyFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ClusterRequest) -> Self::Future {
        let mut service = match request.protocol {
            Protocol::Resp2 => request.target.resp2.clone(),
            Protocol::Resp3 => request.target.resp3.clone(),
        };
        service.call(BackendRequest {
            bytes: request.bytes,
            asking: request.asking,
            lane: request.lane,
        })
    }
}

/// The assembled request path over all backends.
pub type ClusterService = redirect::Redirect<Dispatch>;
/// A reply on its way through the assembled request path.
pub type ClusterFuture = redirect::RedirectFuture<Dispatch>;

/// Assembles the request path: redirects (followed by `follow`) over dispatch.
pub fn cluster_stack(follow: Arc<follow::Follower>) -> ClusterService {
    redirect::RedirectLayer::new(follow).layer(Dispatch)
}

/// One shard node as the proxy reaches it.
#[derive(Debug)]
pub struct Backend {
    addr: Arc<str>,
    resp2: BackendService,
    resp3: BackendService,
    pub stats: Arc<BackendStats>,
    /// The pools under `resp2` and `resp3`, for `abandon_pooled`.
    pools: [Arc<Pool>; 2],
    /// Connections lent to one client at a time (transactions, blocking commands).
    idle: Arc<IdlePool>,
    settings: BackendSettings,
}

impl Backend {
    pub fn new(addr: &str, settings: BackendSettings) -> Backend {
        let addr: Arc<str> = addr.into();
        let stats = Arc::new(BackendStats::default());
        let pool = |protocol| {
            Arc::new(Pool::new(
                addr.clone(),
                protocol,
                settings.connections,
                settings.timeout,
                settings.login.clone(),
            ))
        };
        let pools = [pool(Protocol::Resp2), pool(Protocol::Resp3)];
        Backend {
            resp2: stack(pools[0].clone(), stats.clone()),
            resp3: stack(pools[1].clone(), stats.clone()),
            pools,
            addr,
            stats,
            idle: Arc::new(IdlePool::default()),
            settings,
        }
    }

    /// A connection for one client alone, from the idle pool or new.
    pub fn dedicated(&self, protocol: Protocol) -> Dedicated {
        Dedicated::checkout(
            &self.idle,
            &self.addr,
            protocol,
            self.settings.timeout,
            self.settings.login.clone(),
        )
    }

    /// Fails at once every request queued or in flight on the pooled connections (the client
    /// gets `BackendError::Demoted`), rather than at the reply deadline: for a master that a
    /// failover has just replaced, which may be hung and will refuse writes when it wakes.
    pub fn abandon_pooled(&self) {
        for pool in &self.pools {
            pool.abandon();
        }
    }

    /// How long a reply may take (`--backend-timeout`).
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// Every backend the proxy has talked to, by `host:port`. Locked only when the topology changes
/// or a redirect names an address: never on the per-command path.
#[derive(Debug)]
pub struct Registry {
    settings: BackendSettings,
    backends: Mutex<HashMap<String, Arc<Backend>>>,
}

impl Registry {
    pub fn new(settings: BackendSettings) -> Registry {
        Registry {
            settings,
            backends: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &BackendSettings {
        &self.settings
    }

    /// The backend for `addr`, made on first use.
    pub fn get(&self, addr: &str) -> Arc<Backend> {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(addr) {
            return b.clone();
        }
        let backend = Arc::new(Backend::new(addr, self.settings.clone()));
        map.insert(addr.to_string(), backend.clone());
        backend
    }
}
