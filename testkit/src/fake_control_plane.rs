//! A control plane double: a real tonic server on a port-0 listener whose topology the test
//! publishes and whose answers it steers (down, assign every slot to the first node). For tests
//! of one shard node or one proxy against a topology no real control plane would produce (a
//! backend that is a real Redis Cluster, a slot moved by hand); whole clusters use the real
//! control plane in-process (`tessera_e2e::inprocess`). Tests hold domain `Topology` values; the
//! double converts at the wire, as the real control plane does.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tessera_proto::pb;
use tessera_proto::pb::control_plane_server::{ControlPlane, ControlPlaneServer};
use tessera_proto::topology::{NodeId, NodeSpec, Settings, Stamp, Topology};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// node-timeout of the topologies [`topology`] makes: short, so failure tests are quick.
pub const NODE_TIMEOUT_MS: u64 = 600;

/// The double's state; every field is open to the test.
pub struct Fake {
    /// When set, the first node to register gets every slot (for tests of a whole node).
    pub assign_all_on_register: AtomicBool,
    pub topology: watch::Sender<Topology>,
    pub registered: Mutex<Vec<pb::RegisterNodeRequest>>,
    pub heartbeats: Mutex<Vec<pb::HeartbeatRequest>>,
    pub known: Mutex<HashSet<String>>,
    /// When set, every call answers UNAVAILABLE, as a control plane that is gone.
    pub down: AtomicBool,
}

impl Fake {
    /// A double serving `topology` until the test publishes another.
    pub fn new(topology: Topology) -> Fake {
        Fake {
            assign_all_on_register: AtomicBool::new(false),
            topology: watch::channel(topology).0,
            registered: Mutex::default(),
            heartbeats: Mutex::default(),
            known: Mutex::default(),
            down: AtomicBool::new(false),
        }
    }

    /// Publishes `topology` to GetTopology and every open WatchTopology stream.
    pub fn publish(&self, topology: Topology) {
        self.topology.send_replace(topology);
    }

    pub fn current(&self) -> Topology {
        self.topology.borrow().clone()
    }

    fn wire(&self) -> pb::Topology {
        pb::Topology::from(&*self.topology.borrow())
    }

    fn check_up(&self) -> Result<(), Status> {
        if self.down.load(Ordering::SeqCst) {
            Err(Status::unavailable("fake control plane is down"))
        } else {
            Ok(())
        }
    }
}

type TopologyStream = Pin<Box<dyn Stream<Item = Result<pb::Topology, Status>> + Send>>;

#[tonic::async_trait]
impl ControlPlane for Fake {
    async fn register_node(
        &self,
        request: Request<pb::RegisterNodeRequest>,
    ) -> Result<Response<pb::RegisterNodeResponse>, Status> {
        self.check_up()?;
        let request = request.into_inner();
        self.known.lock().insert(request.node_id.clone());
        if self.assign_all_on_register.load(Ordering::SeqCst) && self.current().nodes().is_empty() {
            let id = NodeId::parse(&request.node_id)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let mut node = master(&id, request.announce_port as u16);
            node.host = request.announce_host.clone();
            node.bus_port = request.announce_bus_port as u16;
            let mut next = topology(self.current().version + 1, vec![node]);
            next.intent.slots.fill(Some(0));
            self.publish(next);
        }
        self.registered.lock().push(request);
        Ok(Response::new(pb::RegisterNodeResponse {
            topology: Some(self.wire()),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.check_up()?;
        let request = request.into_inner();
        if !self.known.lock().contains(&request.node_id) {
            return Err(Status::not_found("unknown node"));
        }
        let current = self.current().stamp();
        // As the real control plane: the lease is renewed only for a node holding the newest
        // topology that is not handing its slots over.
        let holds = request.holds.clone().map(Stamp::try_from).transpose();
        let lease_granted = matches!(&holds, Ok(Some(held)) if !current.supersedes(held))
            && NodeId::parse(&request.node_id)
                .is_ok_and(|id| !self.topology.borrow().is_handing_over(&id));
        self.heartbeats.lock().push(request);
        Ok(Response::new(pb::HeartbeatResponse {
            current: Some(pb::TopologyStamp::from(&current)),
            lease_granted,
        }))
    }

    async fn create_cluster(
        &self,
        _: Request<pb::CreateClusterRequest>,
    ) -> Result<Response<pb::CreateClusterResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn add_replica(
        &self,
        _: Request<pb::AddReplicaRequest>,
    ) -> Result<Response<pb::AddReplicaResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn get_topology(
        &self,
        _: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        self.check_up()?;
        Ok(Response::new(self.wire()))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        request: Request<pb::WatchTopologyRequest>,
    ) -> Result<Response<TopologyStream>, Status> {
        self.check_up()?;
        let after = request
            .into_inner()
            .after
            .map(Stamp::try_from)
            .transpose()
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .unwrap_or_default();
        let stream = tokio_stream::wrappers::WatchStream::new(self.topology.subscribe())
            .filter(move |t| t.stamp().supersedes(&after))
            .map(|t| Ok(pb::Topology::from(&t)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_setting(
        &self,
        _: Request<pb::SetSettingRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn failover(
        &self,
        _: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::FailoverResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn move_slots(
        &self,
        _: Request<pb::MoveSlotsRequest>,
    ) -> Result<Response<pb::MoveSlotsResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn remove_node(
        &self,
        _: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn reshard(
        &self,
        _: Request<pb::ReshardRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn rebalance(
        &self,
        _: Request<pb::RebalanceRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn get_control_plane_status(
        &self,
        _: Request<pb::GetControlPlaneStatusRequest>,
    ) -> Result<Response<pb::ControlPlaneStatus>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn set_slot(
        &self,
        _: Request<pb::SetSlotRequest>,
    ) -> Result<Response<pb::SetSlotResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }

    async fn assign_slots(
        &self,
        _: Request<pb::AssignSlotsRequest>,
    ) -> Result<Response<pb::AssignSlotsResponse>, Status> {
        Err(Status::unimplemented("fake control plane"))
    }
}

/// A master at 127.0.0.1:`port` (bus port +10000), config epoch 1.
pub fn master(id: &NodeId, port: u16) -> NodeSpec {
    NodeSpec {
        config_epoch: 1,
        ..NodeSpec::master(id.clone(), "127.0.0.1", port)
    }
}

/// A created cluster of `nodes` at `version` with no slots assigned, default settings but a
/// node-timeout of [`NODE_TIMEOUT_MS`].
pub fn topology(version: u64, nodes: Vec<NodeSpec>) -> Topology {
    let mut topology = Topology::created(nodes, vec![None; 16384].into());
    topology.version = version;
    topology.intent.current_epoch = 3;
    topology.intent.settings = Settings {
        node_timeout_ms: NODE_TIMEOUT_MS,
        ..Settings::default()
    };
    topology
}

/// Serves `fake` on `listener` until `stop` is cancelled.
pub fn serve(
    fake: Arc<Fake>,
    listener: TcpListener,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(ControlPlaneServer::from_arc(fake))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.cancelled(),
            )
            .await;
    })
}

/// Starts `fake` on a port-0 listener; returns its address. It stops when `stop` is cancelled.
pub async fn start(fake: Arc<Fake>, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    serve(fake, listener, stop);
    Ok(addr)
}
