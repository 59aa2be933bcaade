//! Tessera's proxy: a RESP server that routes each command by hash slot to the master serving
//! it, over pooled, pipelined backend connections, following the topology the control plane
//! streams. Clients of the proxy never see MOVED or ASK.
//!
//! The way of a command: `client_connection` (read, parse, write in order) -> `session`
//! (dispatch) -> `router` (pure: slot, CROSSSLOT, cluster-state rule) -> `forward` (backend
//! `Service`) or `split` / `fanout` (several backends, merged) or `local` (answered here).
//! `transaction` (MULTI / EXEC / WATCH), `blocking` (BLPOP & co.) and `pubsub` (SUBSCRIBE & co.)
//! hold a backend connection for one client. Redirects on every path are followed by one
//! follower, `backend::follow`. `topology` keeps the lock-free snapshot; `backend` holds the
//! pools; `client_list` the connected clients (CLIENT LIST / KILL).

pub mod acl;
pub mod backend;
pub mod blocking;
pub mod client_connection;
pub mod client_list;
pub mod config;
pub mod error;
pub mod fanout;
pub mod forward;
pub mod local;
pub mod pubsub;
pub mod read_policy;
pub mod router;
pub mod scan;
pub mod session;
pub mod shared;
pub mod split;
pub mod topology;
pub mod transaction;
pub mod wait;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::topology::NodeId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use backend::{BackendLogin, BackendSettings, Registry};
pub use config::{Config, ReadPolicy};
pub use error::ProxyError;
use shared::{Shared, Stats};
use topology::TopologyView;

/// How long shutdown waits for connections to finish their in-flight replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a starting proxy waits for its first topology before it accepts clients anyway (and
/// answers CLUSTERDOWN until the control plane is reachable).
const FIRST_TOPOLOGY_WAIT: Duration = Duration::from_secs(10);

/// Serves clients on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// connections end (bounded by a grace period) and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ProxyError> {
    let port = listener.local_addr()?.port();
    let acl = acl::Acl::new(config.requirepass.as_deref());
    if let Some(path) = &config.aclfile {
        acl.load_file(path)?;
    }
    let registry = Arc::new(Registry::new(BackendSettings {
        connections: config.backend_connections.max(1),
        timeout: config.backend_timeout,
        login: BackendLogin {
            secret: config.service.node_secret().map(Arc::from),
            readonly: config.read_policy != ReadPolicy::Master,
        },
    }));
    let view = Arc::new(TopologyView::new(
        &config.service.control_plane,
        registry.clone(),
    )?);
    let weak_view = Arc::downgrade(&view);
    let on_moved = Arc::new(move || {
        if let Some(view) = weak_view.upgrade() {
            view.request_refresh();
        }
    });
    let follow = Arc::new(backend::follow::Follower::new(registry, on_moved));
    let shared = Arc::new(Shared {
        view: view.clone(),
        cluster: backend::cluster_stack(follow.clone()),
        follow,
        id: NodeId::from_random_bytes(rand::random()),
        announce_host: config.service.announced_host(),
        announce_port: config.service.announced_port(port),
        tcp_port: port,
        started: Instant::now(),
        stats: Stats::default(),
        next_client_id: AtomicU64::new(1),
        lanes: config.backend_connections.max(1),
        myself: Default::default(),
        acl,
        clients: client_list::ClientList::default(),
        read_policy: config.read_policy,
        limits: shared::Limits {
            maxclients: config.maxclients,
            idle_timeout: (config.timeout > 0).then(|| Duration::from_secs(config.timeout)),
            query_buffer: usize::try_from(config.client_query_buffer_limit).unwrap_or(usize::MAX),
        },
    });
    tracing::info!(port, id = %shared.id, control_plane = %config.service.control_plane, "proxy listening");

    let tasks = TaskTracker::new();
    tasks.spawn(view.clone().follow(shutdown.clone()));
    // Accept nobody before the first topology: a request before it would answer CLUSTERDOWN.
    // Clients that connect meanwhile wait in the listen backlog and are served once it is here.
    let deadline = Instant::now() + FIRST_TOPOLOGY_WAIT;
    while view.load().initial && Instant::now() < deadline && !shutdown.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if view.load().initial {
        tracing::warn!(
            "no topology from the control plane yet; accepting clients (CLUSTERDOWN until it comes)"
        );
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    tasks.spawn(client_connection::serve(shared.clone(), socket));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    shared.clients.shut_down();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period");
    }
    tracing::info!("proxy stopped");
    Ok(())
}
