//! Test harness: a real control plane on 127.0.0.1 port 0, in-process, with a client and fake
//! shard nodes that register and heartbeat over gRPC.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_control_plane::{run, Config};
use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::{NodeId, NodeSpec, NodeStatus, Topology};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running control plane.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tessera_control_plane::Error>>>,
}

impl Server {
    pub async fn start(data_dir: &Path, node_timeout: Duration) -> Server {
        Server::start_with(Config::new(data_dir, node_timeout)).await
    }

    /// A control plane with `config` (its listen address ignored: port 0).
    pub async fn start_with(config: Config) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config, listener, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client, once the server answers (bounded: 5 s).
    pub async fn client(&self) -> ControlPlaneClient<Channel> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(mut client) = ControlPlaneClient::connect(self.url()).await {
                if client.get_topology(pb::GetTopologyRequest {}).await.is_ok() {
                    return client;
                }
            }
            assert!(Instant::now() < deadline, "control plane not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful shutdown; must finish within 5 s even with open watch streams.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("shutdown within 5 s")
                .expect("server task");
            result.expect("server result");
        }
    }
}

/// The gRPC health service's answer for the control plane service at `url`.
pub async fn health(url: &str) -> tonic_health::pb::health_check_response::ServingStatus {
    let channel = Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tessera.cluster.v2.ControlPlane".into(),
        })
        .await
        .expect("health")
        .into_inner();
    reply.status()
}

pub fn node_id(n: u8) -> NodeId {
    NodeId::from_random_bytes([n.wrapping_mul(17); 20])
}

pub fn port(n: u8) -> u32 {
    7000 + u32::from(n) - 1
}

pub async fn register(client: &mut ControlPlaneClient<Channel>, n: u8) -> Topology {
    client
        .register_node(pb::RegisterNodeRequest {
            node_id: node_id(n).to_string(),
            announce_host: "127.0.0.1".into(),
            announce_port: port(n),
            announce_bus_port: port(n) + 10000,
            holds: None,
        })
        .await
        .expect("register")
        .into_inner()
        .topology
        .expect("topology")
        .domain()
}

/// The wire topologies the tests receive, checked into the domain type.
pub trait Domain {
    fn domain(self) -> Topology;
}

impl Domain for pb::Topology {
    fn domain(self) -> Topology {
        Topology::try_from(self).expect("a valid topology")
    }
}

/// GetTopology, checked.
pub async fn get(client: &mut ControlPlaneClient<Channel>) -> Topology {
    client
        .get_topology(pb::GetTopologyRequest {})
        .await
        .expect("topology")
        .into_inner()
        .domain()
}

pub fn addresses(nodes: &[u8]) -> Vec<String> {
    nodes
        .iter()
        .map(|&n| format!("127.0.0.1:{}", port(n)))
        .collect()
}

/// Fake shard nodes: every 50 ms each sends a heartbeat, reporting the topology version the
/// control plane last answered (as a node following the watch would) and, for each peer, whether
/// it is reachable according to `unreachable`.
pub struct Beaters {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Beaters {
    pub fn start(
        client: ControlPlaneClient<Channel>,
        nodes: Vec<u8>,
        peers: Vec<u8>,
        unreachable: Arc<AtomicBool>,
    ) -> Beaters {
        Beaters::start_with_keys(client, nodes, peers, unreachable, u64::from)
    }

    /// `start`, with node n reporting `keys(n)` keys (an empty node can become a replica).
    pub fn start_with_keys(
        mut client: ControlPlaneClient<Channel>,
        nodes: Vec<u8>,
        peers: Vec<u8>,
        unreachable: Arc<AtomicBool>,
        keys: fn(u8) -> u64,
    ) -> Beaters {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut held = vec![None; nodes.len()];
            // Bounded: at most 10 minutes of beats.
            for _ in 0..12_000 {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                for (i, &n) in nodes.iter().enumerate() {
                    let observations = peers
                        .iter()
                        .filter(|&&p| p != n)
                        .map(|&p| pb::PeerObservation {
                            node_id: node_id(p).to_string(),
                            reachable: !unreachable.load(Ordering::SeqCst),
                            refused: false,
                        })
                        .collect();
                    let reply = client
                        .heartbeat(pb::HeartbeatRequest {
                            node_id: node_id(n).to_string(),
                            peers: observations,
                            key_count: keys(n),
                            holds: held[i].clone(),
                            replication_offset: 0,
                            drained_slots: Vec::new(),
                        })
                        .await;
                    if let Ok(reply) = reply {
                        held[i] = reply.into_inner().current;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Beaters { stop, task }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Polls GetTopology until `done` holds (bounded by `limit`), returning the topology.
pub async fn wait_for(
    client: &mut ControlPlaneClient<Channel>,
    limit: Duration,
    what: &str,
    done: impl Fn(&Topology) -> bool,
) -> Topology {
    let deadline = Instant::now() + limit;
    loop {
        let topology = get(client).await;
        if done(&topology) {
            return topology;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {topology:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn node(topology: &Topology, n: u8) -> &NodeSpec {
    topology.node(&node_id(n)).expect("node in topology")
}

pub fn status(topology: &Topology, n: u8) -> &NodeStatus {
    topology.status(&node_id(n))
}
