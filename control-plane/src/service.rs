//! The gRPC handlers of `tessera.cluster.v2.ControlPlane`: convert `pb` requests into domain
//! values, call the `Controller`, convert the answers back. The one place that turns `Error` into
//! `tonic::Status`.

use std::pin::Pin;
use std::sync::Arc;

use tessera_proto::pb;
use tessera_proto::topology::{NodeId, Stamp, Topology, TopologyError};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::config::StoreKind;
use crate::controller::Controller;
use crate::error::{Error, FailoverRefused, PlanRefused, StoreError};
use crate::moves::{self, PlannedMove};
use crate::state::{Beat, FailoverMode, Registration, SetSlot};

/// The service implementation handed to tonic.
#[derive(Clone)]
pub struct ControlPlaneService {
    controller: Arc<Controller>,
    /// Ends open WatchTopology streams at shutdown, so graceful shutdown does not wait on them.
    shutdown: CancellationToken,
    /// This control plane's advertised address and its store's kind, for GetControlPlaneStatus.
    address: String,
    store: StoreKind,
}

impl ControlPlaneService {
    pub fn new(
        controller: Arc<Controller>,
        shutdown: CancellationToken,
        address: String,
        store: StoreKind,
    ) -> ControlPlaneService {
        ControlPlaneService {
            controller,
            shutdown,
            address,
            store,
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
            | Error::InvalidSlot(_)
            | Error::Setting(_) => Status::invalid_argument(message),
            Error::Failover(FailoverRefused::TimedOut | FailoverRefused::NotCompleted) => {
                Status::deadline_exceeded(message)
            }
            Error::Failover(_) => Status::failed_precondition(message),
            Error::Plan(PlanRefused::NoSuchNode(_)) => Status::not_found(message),
            Error::Plan(PlanRefused::InvalidWeight(_) | PlanRefused::TargetAmongSources) => {
                Status::invalid_argument(message)
            }
            Error::Plan(PlanRefused::TargetNotMaster) => Status::failed_precondition(message),
            Error::UnknownNode(_) | Error::NoSuchMaster(_) => Status::not_found(message),
            Error::UnknownAddress(_)
            | Error::AlreadyCreated
            | Error::NotCreated
            | Error::NotAMaster(_)
            | Error::ReplicateItself
            | Error::NotEmpty(_)
            | Error::HasReplicas(_)
            | Error::SlotUnassigned(_)
            | Error::SlotMoving(_)
            | Error::NodeNotEmpty(_)
            | Error::Refused(_)
            | Error::Removed(_) => Status::failed_precondition(message),
            Error::NotLeader { leader } => {
                // The client's router sends the call on to the leader named here.
                let mut status = Status::failed_precondition(message);
                if let Ok(value) = leader.unwrap_or_default().parse() {
                    status
                        .metadata_mut()
                        .insert(tessera_proto::control_plane::LEADER_HEADER, value);
                }
                status
            }
            // Another control plane wrote: the state is reloaded, and the caller may retry.
            Error::Store(StoreError::Conflict { .. }) => {
                tracing::warn!(error = %message, "change refused: the stored state moved on");
                Status::aborted(message)
            }
            Error::Store(StoreError::Timeout(_) | StoreError::Etcd(_)) => {
                tracing::warn!(error = %message, "request failed");
                Status::unavailable(message)
            }
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

/// A Reshard / Rebalance answer: the plan's moves by node id.
fn plan_response(
    moves: &[PlannedMove],
    masters: usize,
    total_weight: f64,
    topology: &Topology,
) -> pb::PlanResponse {
    let id = |i: usize| topology.nodes()[i].id.to_string();
    pb::PlanResponse {
        moves: moves
            .iter()
            .map(|m| pb::PlannedMove {
                slot: u32::from(m.slot),
                source_id: id(m.source),
                target_id: id(m.target),
            })
            .collect(),
        masters: u32::try_from(masters).unwrap_or(u32::MAX),
        total_weight,
        topology: Some(pb::Topology::from(topology)),
    }
}

/// The stamp a request carries; none is the stamp of no topology at all.
fn stamp(wire: Option<pb::TopologyStamp>) -> Result<Stamp, Error> {
    Ok(wire.map(Stamp::try_from).transpose()?.unwrap_or_default())
}

/// Feeds one WatchTopology stream: the current topology if it supersedes `after` (always, when
/// the client holds none), then every newer one. Ends when the client goes away or the server
/// shuts down.
async fn forward_topologies(
    mut topologies: watch::Receiver<Arc<Topology>>,
    after: Option<Stamp>,
    tx: mpsc::Sender<Result<pb::Topology, Status>>,
    shutdown: CancellationToken,
) {
    let mut last_sent = after;
    loop {
        let current = topologies.borrow_and_update().clone();
        // Stamps only grow; a value may be seen twice, so only superseding ones go out.
        if last_sent
            .as_ref()
            .is_none_or(|last| current.stamp().supersedes(last))
        {
            last_sent = Some(current.stamp());
            if tx
                .send(Ok(pb::Topology::from(current.as_ref())))
                .await
                .is_err()
            {
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
            holds: stamp(req.holds)?,
        };
        let topology = self.controller.register(registration).await?;
        Ok(Response::new(pb::RegisterNodeResponse {
            topology: Some(pb::Topology::from(topology.as_ref())),
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
        let refused = req
            .peers
            .iter()
            .filter(|p| p.refused)
            .map(|p| node_id(&p.node_id))
            .collect::<Result<Vec<_>, Error>>()?;
        let beat = Beat {
            id: node_id(&req.node_id)?,
            peers,
            refused,
            key_count: req.key_count,
            holds: stamp(req.holds)?,
            replication_offset: req.replication_offset,
            drained_slots: req
                .drained_slots
                .iter()
                .filter_map(|&slot| u16::try_from(slot).ok())
                .collect(),
        };
        let (current, lease_granted) = self.controller.heartbeat(beat).await?;
        Ok(Response::new(pb::HeartbeatResponse {
            current: Some(pb::TopologyStamp::from(&current)),
            lease_granted,
        }))
    }

    async fn create_cluster(
        &self,
        request: Request<pb::CreateClusterRequest>,
    ) -> Result<Response<pb::CreateClusterResponse>, Status> {
        let req = request.into_inner();
        let (plan, ids) = self
            .controller
            .create(req.addresses, req.replicas, req.dry_run)
            .await?;
        Ok(Response::new(pb::CreateClusterResponse {
            topology: Some(pb::Topology::from(&plan)),
            node_ids: ids.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn add_replica(
        &self,
        request: Request<pb::AddReplicaRequest>,
    ) -> Result<Response<pb::AddReplicaResponse>, Status> {
        let req = request.into_inner();
        let master = node_id(&req.master_id)?;
        let (topology, replica) = self.controller.add_replica(req.address, master).await?;
        Ok(Response::new(pb::AddReplicaResponse {
            topology: Some(pb::Topology::from(&topology)),
            replica_id: replica.to_string(),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let id = node_id(&request.into_inner().node_id)?;
        let topology = self.controller.remove_node(id).await?;
        Ok(Response::new(pb::RemoveNodeResponse {
            topology: Some(pb::Topology::from(&topology)),
        }))
    }

    async fn move_slots(
        &self,
        request: Request<pb::MoveSlotsRequest>,
    ) -> Result<Response<pb::MoveSlotsResponse>, Status> {
        let req = request.into_inner();
        let target = node_id(&req.target_id)?;
        let slots = req
            .slots
            .iter()
            .map(|&slot| {
                u16::try_from(slot)
                    .ok()
                    .filter(|s| *s < tessera_proto::slot::SLOT_COUNT)
                    .ok_or(Error::InvalidSlot(slot))
            })
            .collect::<Result<Vec<u16>, Error>>()?;
        let topology = self.controller.move_slots(slots, target).await?;
        Ok(Response::new(pb::MoveSlotsResponse {
            topology: Some(pb::Topology::from(&topology)),
        }))
    }

    async fn reshard(
        &self,
        request: Request<pb::ReshardRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        let req = request.into_inner();
        let sources = req
            .source_ids
            .iter()
            .map(|id| node_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let target = node_id(&req.target_id)?;
        let (moves, topology) = self
            .controller
            .plan_moves(req.dry_run, |topology| {
                moves::reshard(topology, &sources, &target, req.slot_count)
            })
            .await?;
        Ok(Response::new(plan_response(&moves, 0, 0.0, &topology)))
    }

    async fn rebalance(
        &self,
        request: Request<pb::RebalanceRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        let req = request.into_inner();
        let weights = req
            .weights
            .iter()
            .map(|w| Ok((node_id(&w.node_id)?, w.weight)))
            .collect::<Result<Vec<_>, Error>>()?;
        let (plan, topology) = self
            .controller
            .plan_moves(req.dry_run, |topology| {
                moves::rebalance(topology, &weights, req.use_empty_masters, req.threshold)
            })
            .await?;
        Ok(Response::new(plan_response(
            &plan.moves,
            plan.masters,
            plan.total_weight,
            &topology,
        )))
    }

    async fn set_slot(
        &self,
        request: Request<pb::SetSlotRequest>,
    ) -> Result<Response<pb::SetSlotResponse>, Status> {
        let req = request.into_inner();
        let at = node_id(&req.node_id)?;
        let slot = u16::try_from(req.slot).map_err(|_| Error::InvalidSlot(req.slot))?;
        let action =
            match pb::SetSlotAction::try_from(req.action) {
                Ok(pb::SetSlotAction::Importing) => SetSlot::Importing(req.other_id),
                Ok(pb::SetSlotAction::Migrating) => SetSlot::Migrating(req.other_id),
                Ok(pb::SetSlotAction::Node) => SetSlot::Node(req.other_id),
                Ok(pb::SetSlotAction::Stable) => SetSlot::Stable,
                _ => return Err(Status::invalid_argument(
                    "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP",
                )),
            };
        let topology = self.controller.set_slot(at, slot, action).await?;
        Ok(Response::new(pb::SetSlotResponse {
            topology: Some(pb::Topology::from(&topology)),
        }))
    }

    async fn assign_slots(
        &self,
        request: Request<pb::AssignSlotsRequest>,
    ) -> Result<Response<pb::AssignSlotsResponse>, Status> {
        let req = request.into_inner();
        let at = node_id(&req.node_id)?;
        let topology = self
            .controller
            .assign_slots(at, req.slots, req.delete)
            .await?;
        Ok(Response::new(pb::AssignSlotsResponse {
            topology: Some(pb::Topology::from(&topology)),
        }))
    }

    async fn get_topology(
        &self,
        _request: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        let topology = self.controller.topology().await;
        Ok(Response::new(pb::Topology::from(&topology)))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        request: Request<pb::WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        let after = request
            .into_inner()
            .after
            .map(Stamp::try_from)
            .transpose()
            .map_err(Error::from)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(forward_topologies(
            self.controller.subscribe(),
            after,
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

    async fn get_control_plane_status(
        &self,
        _request: Request<pb::GetControlPlaneStatusRequest>,
    ) -> Result<Response<pb::ControlPlaneStatus>, Status> {
        use pb::control_plane_status::Role;
        let (role, leader, term) = match self.controller.leader() {
            None => (Role::Sole, self.address.clone(), 0),
            Some(election) => {
                let leadership = election.leadership();
                match election.term() {
                    Some(term) => (Role::Leader, self.address.clone(), term.create_revision),
                    None => (Role::Follower, leadership.leader.unwrap_or_default(), 0),
                }
            }
        };
        let store = self.controller.check_store().await;
        Ok(Response::new(pb::ControlPlaneStatus {
            address: self.address.clone(),
            role: role.into(),
            leader,
            store: match self.store {
                StoreKind::File => "file",
                StoreKind::Etcd => "etcd",
            }
            .to_string(),
            store_healthy: store.is_ok(),
            store_error: store.err().unwrap_or_default(),
            term,
        }))
    }

    async fn failover(
        &self,
        request: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::FailoverResponse>, Status> {
        let req = request.into_inner();
        let mode = match pb::FailoverMode::try_from(req.mode) {
            Ok(pb::FailoverMode::Default) => FailoverMode::Default,
            Ok(pb::FailoverMode::Force) => FailoverMode::Force,
            Ok(pb::FailoverMode::Takeover) => FailoverMode::Takeover,
            Err(_) => return Err(Status::invalid_argument("ERR syntax error")),
        };
        let topology = self
            .controller
            .failover(node_id(&req.replica_id)?, mode)
            .await?;
        Ok(Response::new(pb::FailoverResponse {
            topology: Some(pb::Topology::from(topology.as_ref())),
        }))
    }
}
