//! The proxy's view of the cluster: a task follows the control plane's WatchTopology stream (the
//! follower shared with the shard nodes, `tessera_proto::control_plane`) and publishes each newer
//! topology, together with the backend of each node, into an `ArcSwap`. The per-command path only
//! loads that snapshot: it never locks and never waits for the control plane.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tessera_proto::control_plane::{self, Client, TopologyHolder};
use tessera_proto::topology::{Health, NodeSpec, Stamp, Topology};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Registry};
use crate::error::ProxyError;

/// What routing reads on every command: a topology, its health, and for each of its nodes (same
/// index) the backend that reaches it. Replaced whole when a newer topology arrives.
#[derive(Debug)]
pub struct Routes {
    pub topology: Arc<Topology>,
    /// `topology.health()`, counted once here rather than per command.
    pub health: Health,
    pub backends: Vec<Arc<Backend>>,
    /// True until the first topology from the control plane arrives.
    pub initial: bool,
}

impl Routes {
    /// The masters that serve at least one slot, ordered by node id.
    pub fn masters(&self) -> Vec<Master<'_>> {
        let topology: &Topology = &self.topology;
        let mut first: Vec<Option<u16>> = vec![None; topology.nodes().len()];
        for (slot, owner) in topology.intent.slots.iter().enumerate() {
            if let Some(f) = owner.and_then(|i| first.get_mut(usize::from(i))) {
                f.get_or_insert(slot as u16);
            }
        }
        let mut out: Vec<Master<'_>> = topology
            .nodes()
            .iter()
            .zip(&self.backends)
            .zip(first)
            .filter_map(|((node, backend), slot)| {
                Some(Master {
                    node,
                    backend,
                    slot: slot?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.node.id.cmp(&b.node.id));
        out
    }

    /// The backend of `node`, which must be a node of this snapshot's topology.
    pub fn backend_of(&self, node: &NodeSpec) -> Option<&Arc<Backend>> {
        let index = self
            .topology
            .nodes()
            .iter()
            .position(|n| std::ptr::eq(n, node))?;
        self.backends.get(index)
    }
}

/// A master that serves slots (fan-outs, WAIT, and demotion after a failover go to these).
#[derive(Debug, Clone, Copy)]
pub struct Master<'s> {
    pub node: &'s NodeSpec,
    pub backend: &'s Arc<Backend>,
    /// Its lowest slot: when it fails, `forward::failure` answers by this slot's state
    /// (CLUSTERDOWN when the topology says it is not served).
    pub slot: u16,
}

/// The shared, lock-free view of the topology plus the means to refresh it.
pub struct TopologyView {
    current: ArcSwap<Routes>,
    registry: Arc<Registry>,
    client: Client,
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
        let client = control_plane::connect_lazy(url).map_err(|e| ProxyError::ControlPlaneUrl {
            url: url.to_string(),
            reason: e.source.to_string(),
        })?;
        Ok(TopologyView {
            current: ArcSwap::from_pointee(Routes {
                health: Topology::default().health(),
                topology: Arc::new(Topology::default()),
                backends: Vec::new(),
                initial: true,
            }),
            registry,
            client,
            refreshing: AtomicBool::new(false),
        })
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> Arc<Routes> {
        self.current.load_full()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Takes `topology` if it is newer than the one held; returns whether it did.
    pub fn publish(&self, topology: Topology) -> bool {
        let backends: Vec<Arc<Backend>> = topology
            .nodes()
            .iter()
            .map(|n| self.registry.get(&n.address()))
            .collect();
        let fresh = Arc::new(Routes {
            health: topology.health(),
            topology: Arc::new(topology),
            backends,
            initial: false,
        });
        let mut taken = false;
        let old = self.current.rcu(|old| {
            taken = old.initial || fresh.topology.supersedes(&old.topology);
            if taken {
                fresh.clone()
            } else {
                old.clone()
            }
        });
        if taken {
            tracing::info!(version = fresh.topology.version, "topology updated");
            for backend in demoted(&old, &fresh) {
                tracing::info!(
                    addr = backend.addr(),
                    "backend lost its slots: in-flight requests fail now"
                );
                backend.abandon_pooled();
            }
        }
        taken
    }

    /// Asks the control plane for its topology now (after a MOVED) and takes it if newer.
    pub async fn refresh(&self) -> Result<bool, tonic::Status> {
        let topology =
            control_plane::fetch_topology(&mut self.client.clone(), REFRESH_TIMEOUT).await?;
        Ok(self.publish(topology))
    }

    /// Starts a refresh in the background unless one is running (after a MOVED: the retry goes
    /// to the address MOVED names, so nobody waits for the control plane).
    pub fn request_refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(status) = this.refresh().await {
                tracing::warn!(%status, "topology refresh failed");
            }
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// Follows the control plane's topology watch until `shutdown`.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        control_plane::follow_topology(self.client.clone(), self.as_ref(), shutdown).await;
    }
}

/// The backends that served slots in `old` and serve none in `new` (a failed-over master). A
/// request waiting on such a backend would wait out the backend timeout if it is hung; it fails
/// at once instead, so its client can write to the promoted replica as soon as it is published.
fn demoted(old: &Routes, new: &Routes) -> Vec<Arc<Backend>> {
    let still = new.masters();
    old.masters()
        .into_iter()
        .filter(|m| !still.iter().any(|s| Arc::ptr_eq(s.backend, m.backend)))
        .map(|m| m.backend.clone())
        .collect()
}

impl TopologyHolder for TopologyView {
    fn held(&self) -> Stamp {
        let snapshot = self.load();
        if snapshot.initial {
            Stamp::default()
        } else {
            snapshot.topology.stamp()
        }
    }

    fn offer(&self, topology: Topology) {
        self.publish(topology);
    }
}

/// Bound on one GetTopology after a MOVED.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);
