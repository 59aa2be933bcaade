//! The proxy's view of the cluster: a task follows the control plane's WatchTopology stream
//! (GetTopology first on every connect, reconnecting with capped backoff) and publishes each newer
//! topology, together with the backend of each node, into an `ArcSwap`. The per-command path only
//! loads that snapshot: it never locks and never waits for the control plane.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::{Health, Node, Topology};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::backend::{Backend, Registry};
use crate::error::ProxyError;

/// A topology and, for each of its nodes (same index), the backend that reaches it.
#[derive(Debug)]
pub struct Snapshot {
    pub topology: Arc<Topology>,
    /// `topology.health()`, counted once here rather than per command.
    pub health: Health,
    pub backends: Vec<Arc<Backend>>,
    /// True until the first topology from the control plane arrives.
    pub initial: bool,
}

impl Snapshot {
    /// The backend of `node`, which must be a node of this snapshot's topology.
    pub fn backend_of(&self, node: &Node) -> Option<&Arc<Backend>> {
        let index = self
            .topology
            .nodes
            .iter()
            .position(|n| std::ptr::eq(n, node))?;
        self.backends.get(index)
    }
}

/// The shared, lock-free view of the topology plus the means to refresh it.
pub struct TopologyView {
    current: ArcSwap<Snapshot>,
    registry: Arc<Registry>,
    client: ControlPlaneClient<Channel>,
    /// Set while a background refresh runs, so a burst of MOVED replies asks once.
    refreshing: AtomicBool,
}

impl std::fmt::Debug for TopologyView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyView")
            .field("version", &self.load().topology.version)
            .finish()
    }
}

impl TopologyView {
    /// A view with an empty topology; connects to `url` lazily.
    pub fn new(url: &str, registry: Arc<Registry>) -> Result<TopologyView, ProxyError> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| ProxyError::ControlPlaneUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        Ok(TopologyView {
            current: ArcSwap::from_pointee(Snapshot {
                health: Topology::default().health(),
                topology: Arc::new(Topology::default()),
                backends: Vec::new(),
                initial: true,
            }),
            registry,
            client: ControlPlaneClient::new(endpoint.connect_lazy()),
            refreshing: AtomicBool::new(false),
        })
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Takes `topology` if it is newer than the one held; returns whether it did.
    pub fn publish(&self, topology: Topology) -> bool {
        let backends: Vec<Arc<Backend>> = topology
            .nodes
            .iter()
            .map(|n| self.registry.get(&n.address()))
            .collect();
        let fresh = Arc::new(Snapshot {
            health: topology.health(),
            topology: Arc::new(topology),
            backends,
            initial: false,
        });
        let mut taken = false;
        self.current.rcu(|old| {
            taken = old.initial || fresh.topology.version > old.topology.version;
            if taken {
                fresh.clone()
            } else {
                old.clone()
            }
        });
        if taken {
            tracing::info!(version = fresh.topology.version, "topology updated");
        }
        taken
    }

    /// Asks the control plane for its topology now (after a MOVED) and takes it if newer.
    pub async fn refresh(&self) -> Result<bool, tonic::Status> {
        let reply = self
            .client
            .clone()
            .get_topology(pb::GetTopologyRequest {})
            .await?;
        Ok(self.take(reply.into_inner()))
    }

    /// Starts a refresh in the background unless one is running (after a MOVED: the retry goes
    /// to the address MOVED names, so nobody waits for the control plane).
    pub fn request_refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(2), this.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => tracing::warn!(%status, "topology refresh failed"),
                Err(_) => tracing::warn!("topology refresh timed out"),
            }
            this.refreshing.store(false, Ordering::Release);
        });
    }

    fn take(&self, topology: pb::Topology) -> bool {
        match Topology::try_from(topology) {
            Ok(topology) => self.publish(topology),
            Err(error) => {
                tracing::warn!(%error, "control plane sent an invalid topology");
                false
            }
        }
    }

    /// Follows the control plane until `shutdown`: GetTopology, then WatchTopology, reconnecting
    /// with a backoff from 100 ms doubling up to 5 s.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        const MIN_BACKOFF: Duration = Duration::from_millis(100);
        const MAX_BACKOFF: Duration = Duration::from_secs(5);
        let mut backoff = MIN_BACKOFF;
        while !shutdown.is_cancelled() {
            let session = async {
                self.refresh().await?;
                let after_version = self.load().topology.version;
                let mut stream = self
                    .client
                    .clone()
                    .watch_topology(pb::WatchTopologyRequest { after_version })
                    .await?
                    .into_inner();
                while let Some(topology) = stream.message().await? {
                    self.take(topology);
                }
                Ok::<(), tonic::Status>(())
            };
            let started = tokio::time::Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = session => match result {
                    Ok(()) => tracing::warn!("topology watch ended; reconnecting"),
                    Err(status) => tracing::warn!(%status, "control plane unreachable; retrying"),
                },
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = MIN_BACKOFF;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
