//! The gRPC handlers of `tessera.cluster.v1.ControlPlane`: convert `pb` requests into domain
//! values, call the `Controller`, convert the answers back. The one place that turns `Error` into
//! `tonic::Status`.

use std::pin::Pin;
use std::sync::Arc;

use tessera_proto::pb;
use tessera_proto::topology::{NodeId, Topology, TopologyError};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::controller::Controller;
use crate::error::Error;
use crate::state::{Beat, Registration};

/// The service implementation handed to tonic.
#[derive(Clone)]
pub struct ControlPlaneService {
    controller: Arc<Controller>,
    /// Ends open WatchTopology streams at shutdown, so graceful shutdown does not wait on them.
    shutdown: CancellationToken,
}

impl ControlPlaneService {
    pub fn new(controller: Arc<Controller>, shutdown: CancellationToken) -> ControlPlaneService {
        ControlPlaneService {
            controller,
            shutdown,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let message = error.to_string();
        match error {
            Error::InvalidInput(_)
            | Error::InvalidAddress(_)
            | Error::DuplicateAddress(_)
            | Error::TooFewMasters { .. }
            | Error::Setting(_) => Status::invalid_argument(message),
            Error::UnknownNode(_) => Status::not_found(message),
            Error::UnknownAddress(_) | Error::AlreadyCreated => {
                Status::failed_precondition(message)
            }
            Error::ReplicasUnsupported => Status::unimplemented(message),
            Error::Store(_) | Error::Serve(_) | Error::Reflection(_) => {
                tracing::error!(error = %message, "request failed");
                Status::internal(message)
            }
        }
    }
}

fn port(value: u32) -> Result<u16, Error> {
    u16::try_from(value).map_err(|_| Error::InvalidInput(TopologyError::InvalidPort(value)))
}

fn node_id(text: &str) -> Result<NodeId, Error> {
    Ok(NodeId::parse(text)?)
}

/// The wire form of a topology, with each node's reported topology version filled in.
fn to_pb(
    topology: &Topology,
    reported: Option<&std::collections::HashMap<String, u64>>,
) -> pb::Topology {
    let mut wire = pb::Topology::from(topology);
    if let Some(reported) = reported {
        for node in &mut wire.nodes {
            if let Some(&version) = reported.get(&node.id) {
                node.topology_version = version;
            }
        }
    }
    wire
}

/// Feeds one WatchTopology stream: the current topology if newer than `after_version` (always,
/// when `after_version` is 0), then every newer version. Ends when the client goes away or the
/// server shuts down.
async fn forward_topologies(
    mut topologies: watch::Receiver<Arc<Topology>>,
    after_version: u64,
    tx: mpsc::Sender<Result<pb::Topology, Status>>,
    shutdown: CancellationToken,
) {
    let mut last_sent = (after_version > 0).then_some(after_version);
    loop {
        let current = topologies.borrow_and_update().clone();
        // Versions only grow; a value may be seen twice, so only strictly newer ones go out.
        if last_sent.is_none_or(|last| current.version > last) {
            last_sent = Some(current.version);
            if tx.send(Ok(to_pb(&current, None))).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            changed = topologies.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

type TopologyStream = Pin<Box<dyn Stream<Item = Result<pb::Topology, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::control_plane_server::ControlPlane for ControlPlaneService {
    async fn register_node(
        &self,
        request: Request<pb::RegisterNodeRequest>,
    ) -> Result<Response<pb::RegisterNodeResponse>, Status> {
        let req = request.into_inner();
        let port = port(req.announce_port)?;
        let bus_port = match req.announce_bus_port {
            0 => port.checked_add(10000).unwrap_or(0),
            bus => self::port(bus)?,
        };
        if req.announce_host.is_empty() || port == 0 {
            return Err(Status::invalid_argument(
                "announce_host and announce_port are required",
            ));
        }
        let registration = Registration {
            id: node_id(&req.node_id)?,
            host: req.announce_host,
            port,
            bus_port,
        };
        let topology = self.controller.register(registration).await?;
        Ok(Response::new(pb::RegisterNodeResponse {
            topology: Some(to_pb(&topology, None)),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let peers = req
            .peers
            .iter()
            .map(|p| Ok((node_id(&p.node_id)?, p.reachable)))
            .collect::<Result<Vec<_>, Error>>()?;
        let beat = Beat {
            id: node_id(&req.node_id)?,
            peers,
            key_count: req.key_count,
            topology_version: req.topology_version,
        };
        let topology_version = self.controller.heartbeat(beat).await?;
        Ok(Response::new(pb::HeartbeatResponse { topology_version }))
    }

    async fn create_cluster(
        &self,
        request: Request<pb::CreateClusterRequest>,
    ) -> Result<Response<pb::CreateClusterResponse>, Status> {
        let req = request.into_inner();
        let plan = self
            .controller
            .create(req.addresses, req.replicas, req.dry_run)
            .await?;
        Ok(Response::new(pb::CreateClusterResponse {
            topology: Some(to_pb(&plan, None)),
        }))
    }

    async fn get_topology(
        &self,
        _request: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        let (topology, reported) = self.controller.topology().await;
        Ok(Response::new(to_pb(&topology, Some(&reported))))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        request: Request<pb::WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        let after_version = request.into_inner().after_version;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(forward_topologies(
            self.controller.subscribe(),
            after_version,
            tx,
            self.shutdown.clone(),
        ));
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_setting(
        &self,
        request: Request<pb::SetSettingRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        let req = request.into_inner();
        let settings = self.controller.set_setting(&req.name, &req.value).await?;
        Ok(Response::new(settings.into()))
    }
}
