//! The node's side of the control plane's API: registering (again, whenever the control plane
//! has forgotten it), heartbeating with what it sees of its peers, and following the topology
//! watch (`tessera_proto::control_plane`, shared with the proxy). Every call is bounded by a
//! timeout, every failure retried with backoff; the node keeps serving meanwhile with whatever
//! topology it holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::control_plane::{self, call, log_failure, Backoff, Client};
use tessera_proto::pb;
use tessera_proto::topology::Stamp;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::{intervals, ClusterView, Member, Registration};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Registers, then heartbeats every period; re-registers when the control plane answers that it
/// does not know this node (its state was reset). Runs until `stop`.
pub(super) async fn membership(
    member: Arc<dyn Member>,
    mut client: Client,
    registration: Registration,
    stop: CancellationToken,
) {
    let view = member.cluster();
    loop {
        if !register(view, &mut client, &registration, &stop).await {
            return;
        }
        let mut failures = 0u32;
        loop {
            let (period, timeout) = intervals(&view.topology());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
                _ = view.heartbeat_wanted() => {}
            }
            let held = view.stamp();
            let request = pb::HeartbeatRequest {
                node_id: view.myself().to_string(),
                peers: view
                    .peer_observations()
                    .into_iter()
                    .map(|peer| pb::PeerObservation {
                        node_id: peer.id.to_string(),
                        reachable: peer.reachable,
                        refused: peer.refused,
                    })
                    .collect(),
                key_count: member.key_count(),
                holds: Some(pb::TopologyStamp::from(&held)),
                replication_offset: member.replication_offset(),
                drained_slots: view.drained().into_iter().map(u32::from).collect(),
            };
            let sent = Instant::now();
            view.counters.ping_sent.fetch_add(1, Ordering::Relaxed);
            match call(timeout, client.heartbeat(request)).await {
                Ok(response) => {
                    // Granted only while this node holds the newest topology and is not a
                    // master being failed over: the fencing the control plane's promotions
                    // count on (control-plane/src/failover.rs).
                    if response.lease_granted {
                        view.renew_lease_at(sent);
                    }
                    view.counters.pong_received.fetch_add(1, Ordering::Relaxed);
                    if failures > 0 {
                        tracing::info!(failures, "heartbeats reach the control plane again");
                        failures = 0;
                    }
                    let current = response.current.map(Stamp::try_from);
                    if let Some(Ok(current)) = current {
                        if current.supersedes(&view.stamp()) {
                            // The watch lags (or is reconnecting): fetch the newer one directly.
                            catch_up(view, &mut client, timeout).await;
                        }
                    }
                }
                Err(status) if status.code() == Code::NotFound => {
                    tracing::warn!("the control plane does not know this node; registering again");
                    break;
                }
                Err(status) => {
                    failures += 1;
                    log_failure("heartbeat failed", failures, &status);
                }
            }
        }
    }
}

/// Registers until the control plane answers (or `stop`: false). Offers the topology it returns.
async fn register(
    view: &ClusterView,
    client: &mut Client,
    registration: &Registration,
    stop: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut failures = 0u32;
    loop {
        let request = pb::RegisterNodeRequest {
            node_id: view.myself().to_string(),
            announce_host: registration.announce_host.clone(),
            announce_port: u32::from(registration.announce_port),
            announce_bus_port: u32::from(registration.announce_bus_port),
            holds: Some(pb::TopologyStamp::from(&view.stamp())),
        };
        let (_, timeout) = intervals(&view.topology());
        let sent = Instant::now();
        match call(
            timeout.max(Duration::from_secs(1)),
            client.register_node(request),
        )
        .await
        {
            Ok(response) => {
                view.renew_lease_at(sent);
                tracing::info!(
                    node_id = %view.myself(),
                    address = %format!("{}:{}", registration.announce_host, registration.announce_port),
                    control_plane = %registration.control_plane,
                    "registered with the control plane"
                );
                if let Some(topology) = response.topology {
                    match tessera_proto::topology::Topology::try_from(topology) {
                        Ok(topology) => {
                            view.offer_topology(topology);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "ignoring an invalid topology from the control plane")
                        }
                    }
                }
                return true;
            }
            Err(status) => {
                failures += 1;
                log_failure("registration failed; retrying", failures, &status);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Follows `WatchTopology` until `stop`.
pub(super) async fn watch(member: Arc<dyn Member>, client: Client, stop: CancellationToken) {
    control_plane::follow_topology(client, member.cluster(), stop).await;
}

/// One `GetTopology`, for when a heartbeat shows the watch is behind.
async fn catch_up(view: &ClusterView, client: &mut Client, timeout: Duration) {
    match control_plane::fetch_topology(client, timeout).await {
        Ok(topology) => {
            view.offer_topology(topology);
        }
        Err(status) => tracing::debug!(%status, "cannot fetch the topology"),
    }
}
