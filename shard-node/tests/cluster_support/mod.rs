//! Test support shared by the cluster and node tests: a fake control plane (a real tonic server
//! on port 0 whose answers the test steers), peers that answer PING, and bounded polling.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tessera_proto::pb;
use tessera_proto::pb::control_plane_server::{ControlPlane, ControlPlaneServer};
use tessera_proto::topology::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub const NODE_TIMEOUT_MS: u64 = 600;

#[derive(Default)]
pub struct Fake {
    /// When set, the first node to register gets every slot (for tests of a whole node).
    pub assign_all_on_register: AtomicBool,
    pub topology: Mutex<Option<tokio::sync::watch::Sender<pb::Topology>>>,
    pub registered: Mutex<Vec<pb::RegisterNodeRequest>>,
    pub heartbeats: Mutex<Vec<pb::HeartbeatRequest>>,
    pub known: Mutex<HashSet<String>>,
    pub down: AtomicBool,
}

impl Fake {
    pub fn publish(&self, topology: pb::Topology) {
        if let Some(sender) = &*self.topology.lock() {
            sender.send_replace(topology);
        }
    }

    pub fn current(&self) -> pb::Topology {
        self.topology
            .lock()
            .as_ref()
            .map(|s| s.borrow().clone())
            .unwrap_or_default()
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
        if self.assign_all_on_register.load(Ordering::SeqCst)
            && self.current().intent.is_none_or(|i| i.nodes.is_empty())
        {
            let id = NodeId::parse(&request.node_id)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let mut node = pb_node(&id, request.announce_port as u16);
            node.host = request.announce_host.clone();
            let mut next = topology(self.current().version + 1, vec![node]);
            next.intent.as_mut().expect("intent").slots = vec![pb::SlotRange {
                start: 0,
                end: 16383,
                node_id: request.node_id.clone(),
            }];
            self.publish(next);
        }
        self.registered.lock().push(request);
        Ok(Response::new(pb::RegisterNodeResponse {
            topology: Some(self.current()),
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
        self.heartbeats.lock().push(request);
        Ok(Response::new(pb::HeartbeatResponse {
            current: Some(pb::TopologyStamp {
                identity: None,
                version: self.current().version,
            }),
        }))
    }

    async fn create_cluster(
        &self,
        _: Request<pb::CreateClusterRequest>,
    ) -> Result<Response<pb::CreateClusterResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_topology(
        &self,
        _: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        self.check_up()?;
        Ok(Response::new(self.current()))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        request: Request<pb::WatchTopologyRequest>,
    ) -> Result<Response<TopologyStream>, Status> {
        self.check_up()?;
        let after = request.into_inner().after.map_or(0, |stamp| stamp.version);
        let receiver = self
            .topology
            .lock()
            .as_ref()
            .map(|s| s.subscribe())
            .ok_or_else(|| Status::unavailable("no topology"))?;
        let stream = tokio_stream::wrappers::WatchStream::new(receiver)
            .filter(move |t| t.version > after)
            .map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_setting(
        &self,
        _: Request<pb::SetSettingRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

pub fn pb_node(id: &NodeId, port: u16) -> pb::NodeSpec {
    pb::NodeSpec {
        id: id.to_string(),
        host: "127.0.0.1".to_string(),
        port: u32::from(port),
        bus_port: u32::from(port) + 10000,
        role: pb::NodeRole::Master as i32,
        config_epoch: 1,
        ..Default::default()
    }
}

/// A created topology of `nodes` (no slots assigned) in generation 0, as a fake control plane
/// that never lost its state serves it.
pub fn topology(version: u64, nodes: Vec<pb::NodeSpec>) -> pb::Topology {
    pb::Topology {
        identity: None,
        version,
        intent: Some(pb::ClusterIntent {
            current_epoch: 3,
            nodes,
            slots: Vec::new(),
            migrations: Vec::new(),
            settings: Some(pb::Settings {
                require_full_coverage: true,
                allow_reads_when_down: false,
                node_timeout_ms: NODE_TIMEOUT_MS,
            }),
            created: true,
        }),
        observed: None,
    }
}

/// A peer that answers every PING on a connection with +PONG.
pub async fn pong_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind peer");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let mut seen = Vec::new();
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(at) = seen.windows(6).position(|w| w == b"PING\r\n") {
                        seen.drain(..at + 6);
                        if socket.write_all(b"+PONG\r\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// A port nothing listens on.
pub async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Polls `check` every 10 ms until it holds, for at most `limit`.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `fake` on `listener`; stops when `stop` is cancelled.
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

/// A fake with an empty topology (version 0) that hands every slot to the first node that
/// registers, served on port 0.
pub async fn start_assigning() -> (Arc<Fake>, SocketAddr, CancellationToken) {
    let fake = Arc::new(Fake::default());
    fake.assign_all_on_register.store(true, Ordering::SeqCst);
    let (sender, _) = tokio::sync::watch::channel(topology(0, Vec::new()));
    *fake.topology.lock() = Some(sender);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control plane");
    let address = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    serve(Arc::clone(&fake), listener, stop.clone());
    (fake, address, stop)
}
