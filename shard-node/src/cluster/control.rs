//! The node's side of the control plane's API: registering (again, whenever the control plane
//! has forgotten it), heartbeating with what it sees of its peers, and following the topology
//! watch stream. Every call is bounded by a timeout, every failure retried with backoff; the
//! node keeps serving meanwhile with whatever topology it holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::Topology;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::backoff::Backoff;
use super::{intervals, ClusterView, Member, Registration};
use crate::error::ClusterError;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Failures logged at warn before the rest of a streak goes to debug (one in `LOG_EVERY` stays).
const LOG_EVERY: u32 = 20;

type Client = ControlPlaneClient<Channel>;

/// A client over a lazily connected channel: it connects on first use and reconnects by itself,
/// so the control plane may start after the node. HTTP/2 keepalives notice a control plane that
/// vanished without closing the connection, which would otherwise leave the watch hanging.
pub(super) fn client(url: &str) -> Result<Client, ClusterError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|source| ClusterError::Endpoint {
            url: url.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok(ControlPlaneClient::new(endpoint.connect_lazy()))
}

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
            }
            let request = pb::HeartbeatRequest {
                node_id: view.myself().to_string(),
                peers: view
                    .peer_observations()
                    .into_iter()
                    .map(|(id, reachable)| pb::PeerObservation {
                        node_id: id.to_string(),
                        reachable,
                    })
                    .collect(),
                key_count: member.key_count(),
                topology_version: view.topology().version,
            };
            let sent = Instant::now();
            view.counters.ping_sent.fetch_add(1, Ordering::Relaxed);
            match call(timeout, client.heartbeat(request)).await {
                Ok(response) => {
                    view.renew_lease_at(sent);
                    view.counters.pong_received.fetch_add(1, Ordering::Relaxed);
                    if failures > 0 {
                        tracing::info!(failures, "heartbeats reach the control plane again");
                        failures = 0;
                    }
                    if response.topology_version > view.topology().version {
                        // The watch lags (or is reconnecting): fetch the newer one directly.
                        catch_up(view, &mut client, timeout).await;
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
                    offer(view, topology);
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

/// Follows `WatchTopology`, offering every topology received; reconnects with backoff when the
/// stream fails or ends. Runs until `stop`.
pub(super) async fn watch(member: Arc<dyn Member>, mut client: Client, stop: CancellationToken) {
    let view = member.cluster();
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut failures = 0u32;
    loop {
        let request = pb::WatchTopologyRequest {
            after_version: view.topology().version,
        };
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = client.watch_topology(request) => opened,
        };
        match opened {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        message = stream.message() => message,
                    };
                    match message {
                        Ok(Some(topology)) => {
                            if failures > 0 {
                                tracing::info!("topology watch re-established");
                                failures = 0;
                            }
                            backoff.reset();
                            view.counters.ping_received.fetch_add(1, Ordering::Relaxed);
                            offer(view, topology);
                        }
                        Ok(None) => {
                            failures += 1;
                            tracing::info!(
                                "the control plane ended the topology watch; reconnecting"
                            );
                            break;
                        }
                        Err(status) => {
                            failures += 1;
                            log_failure("topology watch broke; reconnecting", failures, &status);
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                failures += 1;
                log_failure(
                    "cannot open the topology watch; retrying",
                    failures,
                    &status,
                );
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// One `GetTopology`, for when a heartbeat shows the watch is behind.
async fn catch_up(view: &ClusterView, client: &mut Client, timeout: Duration) {
    match call(timeout, client.get_topology(pb::GetTopologyRequest {})).await {
        Ok(topology) => offer(view, topology),
        Err(status) => tracing::debug!(%status, "cannot fetch the topology"),
    }
}

/// Converts at the boundary and offers; a topology that does not convert is logged and ignored.
fn offer(view: &ClusterView, topology: pb::Topology) {
    match Topology::try_from(topology) {
        Ok(topology) => {
            view.offer_topology(topology);
        }
        Err(e) => tracing::warn!(error = %e, "ignoring an invalid topology from the control plane"),
    }
}

/// A unary call bounded by `timeout`; a timeout becomes `DEADLINE_EXCEEDED`.
async fn call<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

/// Logs the first failures of a streak at warn, then one in `LOG_EVERY`.
fn log_failure(what: &str, failures: u32, status: &tonic::Status) {
    if failures <= 3 || failures.is_multiple_of(LOG_EVERY) {
        tracing::warn!(failures, code = ?status.code(), message = status.message(), "{what}");
    } else {
        tracing::debug!(failures, code = ?status.code(), message = status.message(), "{what}");
    }
}
