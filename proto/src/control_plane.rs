//! The client side of the control plane's API, one implementation for every service that talks
//! to it (shard nodes, proxies, clusterctl): lazily connected channels with HTTP/2 keepalives to
//! each control plane of a list, routed to the leader (`router`), unary calls bounded by a
//! timeout, and the topology watch followed with backoff.
//!
//! Keepalives matter: a control plane that vanishes without closing its connections (host lost,
//! network cut) would otherwise leave a watch waiting forever on a stream that never ends.

mod backoff;
mod router;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub use backoff::Backoff;
pub use router::{Router, LEADER_HEADER};

use crate::pb;
use crate::pb::control_plane_client::ControlPlaneClient;
use crate::topology::{Stamp, Topology};

/// A control plane client over a list of control planes, following the leader; cheap to clone
/// (clones share the channels).
pub type Client = ControlPlaneClient<Router>;

/// First and last delay between reconnection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Failures logged at warn before the rest of a streak goes to debug (one in `LOG_EVERY` stays).
const LOG_EVERY: u32 = 20;

#[derive(Debug, thiserror::Error)]
#[error("invalid control plane URL {url:?}: {source}")]
pub struct InvalidUrl {
    pub url: String,
    #[source]
    pub source: tonic::transport::Error,
}

/// The URLs of a control plane list: comma-separated, surrounding spaces ignored.
pub fn urls(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).collect()
}

/// A client of the control planes at `list` (one URL, or several comma-separated) that connects
/// on first use and reconnects by itself, so a service may start before the control planes do.
/// Calls follow the leader (`Router`). HTTP/2 keepalives (every 5 s, 5 s to answer, also while
/// idle) notice a control plane that went away without closing the connection.
pub fn connect_lazy(list: &str) -> Result<Client, InvalidUrl> {
    let channels = urls(list)
        .into_iter()
        .map(|url| Ok((url.to_string(), channel(url)?)))
        .collect::<Result<Vec<_>, InvalidUrl>>()?;
    Ok(ControlPlaneClient::new(Router::new(channels, |url| {
        channel(url).ok()
    })))
}

/// A lazily connected channel to one control plane.
fn channel(url: &str) -> Result<Channel, InvalidUrl> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|source| InvalidUrl {
            url: url.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// A unary call bounded by `timeout`; a timeout becomes `DEADLINE_EXCEEDED`.
pub async fn call<T>(
    timeout: Duration,
    future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

/// One `GetTopology`, converted; an invalid topology is an `INTERNAL` error.
pub async fn fetch_topology(
    client: &mut Client,
    timeout: Duration,
) -> Result<Topology, tonic::Status> {
    let topology = call(timeout, client.get_topology(pb::GetTopologyRequest {})).await?;
    Topology::try_from(topology)
        .map_err(|e| tonic::Status::internal(format!("invalid topology: {e}")))
}

/// Whoever holds a topology and wants the newer ones.
pub trait TopologyHolder: Send + Sync {
    /// The stamp of the topology held: the watch asks only for newer ones.
    fn held(&self) -> Stamp;
    /// A topology the control plane sent; the holder keeps it if it supersedes its own.
    fn offer(&self, topology: Topology);
}

/// Follows `WatchTopology` until `stop`, offering every topology received; reopens the stream
/// with capped, jittered backoff when it fails or ends. Invalid topologies are logged and skipped.
pub async fn follow_topology(
    mut client: Client,
    holder: &dyn TopologyHolder,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut failures = 0u32;
    loop {
        let request = pb::WatchTopologyRequest {
            after: Some(pb::TopologyStamp::from(&holder.held())),
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
                            match Topology::try_from(topology) {
                                Ok(topology) => holder.offer(topology),
                                Err(error) => tracing::warn!(
                                    %error,
                                    "ignoring an invalid topology from the control plane"
                                ),
                            }
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

/// Logs the first failures of a streak at warn, then one in `LOG_EVERY`, so a control plane that
/// stays down for an hour does not flood the log.
pub fn log_failure(what: &str, failures: u32, status: &tonic::Status) {
    if failures <= 3 || failures.is_multiple_of(LOG_EVERY) {
        tracing::warn!(failures, code = ?status.code(), message = status.message(), "{what}");
    } else {
        tracing::debug!(failures, code = ?status.code(), message = status.message(), "{what}");
    }
}
