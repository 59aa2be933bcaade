//! Failover through the real gRPC service with fake shard nodes: each fake heartbeats every
//! 50 ms, reports the topology it was last told about, its replication offset and what it sees
//! of its peers, and owns a real listener on its bus port, so the control plane's connect probe
//! sees a live process (accepted), a hung one (accepted, never answered) or a gone one (the
//! listener closed: refused).

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{get, node, node_id, status, wait_for, Domain, Server};

use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::{Role, Topology};
use tonic::transport::Channel;
use tonic::Code;

/// node-timeout of these tests: a lease then runs out 1000 + 10 + 300 ms after its grant
/// (`failover::lease_expiry_ms`).
const NODE_TIMEOUT: Duration = Duration::from_millis(1_000);
const LEASE_WAIT: Duration = Duration::from_millis(1_310);

/// One fake node's state, steered by the test.
struct Fake {
    n: u8,
    /// The bus listener; `None` once the process is "gone".
    bus: Option<TcpListener>,
    beating: bool,
    offset: u64,
    /// The latest `lease_granted` it got.
    leased: bool,
}

/// A cluster of fake nodes 1..=6 (created with one replica per master) and their heartbeats.
struct Fakes {
    nodes: Arc<Mutex<HashMap<u8, Fake>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Fakes {
    async fn start(client: &mut ControlPlaneClient<Channel>) -> Fakes {
        let mut nodes = HashMap::new();
        for n in 1..=6u8 {
            let bus = TcpListener::bind("127.0.0.1:0").expect("bind");
            let bus_port = bus.local_addr().expect("addr").port();
            client
                .register_node(pb::RegisterNodeRequest {
                    node_id: node_id(n).to_string(),
                    announce_host: "127.0.0.1".into(),
                    announce_port: common::port(n),
                    announce_bus_port: u32::from(bus_port),
                    holds: None,
                })
                .await
                .expect("register");
            nodes.insert(
                n,
                Fake {
                    n,
                    bus: Some(bus),
                    beating: true,
                    offset: 0,
                    leased: false,
                },
            );
        }
        client
            .create_cluster(pb::CreateClusterRequest {
                addresses: common::addresses(&[1, 2, 3, 4, 5, 6]),
                replicas: 1,
                dry_run: false,
            })
            .await
            .expect("create");
        let nodes = Arc::new(Mutex::new(nodes));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(beat(client.clone(), nodes.clone(), stop.clone()));
        Fakes { nodes, stop, task }
    }

    fn with<T>(&self, n: u8, f: impl FnOnce(&mut Fake) -> T) -> T {
        f(self.nodes.lock().expect("lock").get_mut(&n).expect("fake"))
    }

    /// SIGKILL: heartbeats stop and the port refuses.
    fn kill(&self, n: u8) {
        self.with(n, |f| {
            f.beating = false;
            f.bus = None;
        });
    }

    /// SIGSTOP: heartbeats stop, the port still accepts.
    fn hang(&self, n: u8) {
        self.with(n, |f| f.beating = false);
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// The heartbeat loop of every beating fake. A peer is reported refused when its listener is
/// gone, unreachable when it has not beaten (a stand-in for probes timing out).
async fn beat(
    mut client: ControlPlaneClient<Channel>,
    nodes: Arc<Mutex<HashMap<u8, Fake>>>,
    stop: Arc<AtomicBool>,
) {
    let mut held: HashMap<u8, Option<pb::TopologyStamp>> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let requests: Vec<(u8, pb::HeartbeatRequest)> = {
            let nodes = nodes.lock().expect("lock");
            let peers: Vec<pb::PeerObservation> = nodes
                .values()
                .map(|p| pb::PeerObservation {
                    node_id: node_id(p.n).to_string(),
                    reachable: p.beating,
                    refused: p.bus.is_none(),
                })
                .collect();
            nodes
                .values()
                .filter(|f| f.beating)
                .map(|f| {
                    (
                        f.n,
                        pb::HeartbeatRequest {
                            node_id: node_id(f.n).to_string(),
                            peers: peers
                                .iter()
                                .filter(|p| p.node_id != node_id(f.n).to_string())
                                .cloned()
                                .collect(),
                            key_count: 0,
                            holds: held.get(&f.n).cloned().flatten(),
                            replication_offset: f.offset,
                            drained_slots: Vec::new(),
                        },
                    )
                })
                .collect()
        };
        for (n, request) in requests {
            if let Ok(reply) = client.heartbeat(request).await {
                let reply = reply.into_inner();
                held.insert(n, reply.current);
                if let Some(f) = nodes.lock().expect("lock").get_mut(&n) {
                    f.leased = reply.lease_granted;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master of `slot` and its replica in `topology`, as fake numbers.
fn shard_of(topology: &Topology, slot: u16) -> (u8, u8) {
    let number = |id: &tessera_proto::topology::NodeId| {
        (1..=6u8).find(|&n| &node_id(n) == id).expect("a fake")
    };
    let master = topology.owner(slot).expect("owned");
    let index = topology.index_of(&master.id).expect("index");
    let replica = topology.replicas_of(index).next().expect("a replica");
    (number(&master.id), number(&topology.nodes()[replica].id))
}

async fn failover(
    client: &mut ControlPlaneClient<Channel>,
    n: u8,
    mode: pb::FailoverMode,
) -> Result<Topology, tonic::Status> {
    client
        .failover(pb::FailoverRequest {
            replica_id: node_id(n).to_string(),
            mode: mode as i32,
        })
        .await
        .map(|r| r.into_inner().topology.expect("topology").domain())
}

/// After a promotion of `replica` over `master`: one transition with everything in place.
fn check_promoted(before: &Topology, after: &Topology, master: u8, replica: u8) {
    let new = node(after, replica);
    assert_eq!(new.role, Role::Master);
    assert_eq!(new.config_epoch, after.intent.current_epoch);
    assert!(after.intent.current_epoch > before.intent.current_epoch);
    let old = node(after, master);
    assert_eq!(old.role, Role::Replica);
    assert_eq!(old.master_id.as_ref(), Some(&node_id(replica)));
    let old_index = before.index_of(&node_id(master)).expect("index");
    let new_index = after.index_of(&node_id(replica)).expect("index");
    assert_eq!(after.ranges_of(new_index), before.ranges_of(old_index));
    assert!(after.intent.slots.iter().all(Option::is_some));
    assert_eq!(after.intent.handover, None);
}

async fn setup(dir: &std::path::Path) -> (Server, ControlPlaneClient<Channel>, Fakes, Topology) {
    let server = Server::start(dir, NODE_TIMEOUT).await;
    let mut client = server.client().await;
    let fakes = Fakes::start(&mut client).await;
    // Every node holds the newest topology and has a lease.
    let ready = wait_for(
        &mut client,
        Duration::from_secs(5),
        "a settled cluster",
        |t| t.intent.created && t.members().all(|(_, s)| !s.failing()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fakes.nodes.lock().expect("lock").values().all(|f| f.leased),
        "leases granted"
    );
    (server, client, fakes, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_without_waiting_out_its_lease() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let (server, mut client, fakes, before) = setup(dir.path()).await;
    let (master, replica) = shard_of(&before, 0);
    fakes.with(replica, |f| f.offset = 10);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Instant::now();
    fakes.kill(master);
    let after = wait_for(
        &mut client,
        Duration::from_secs(5),
        "the replica promoted",
        |t| node(t, replica).role == Role::Master,
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took < NODE_TIMEOUT,
        "a gone process is failed over before node-timeout, took {took:?}"
    );
    assert!(status(&after, master).fail);
    check_promoted(&before, &after, master, replica);
    assert!(after.is_ok(), "the cluster serves every slot again");
    // The new master gets its lease once it holds the new topology.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fakes.with(replica, |f| f.leased));
    fakes.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_fails_over_only_after_its_lease_ran_out() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let (server, mut client, fakes, before) = setup(dir.path()).await;
    let (master, replica) = shard_of(&before, 6000);
    let hung = Instant::now();
    fakes.hang(master);
    let failed = wait_for(
        &mut client,
        Duration::from_secs(5),
        "the master FAIL",
        |t| status(t, master).fail,
    )
    .await;
    // While it fails over, the other slots keep serving: the cluster state stays ok.
    assert_eq!(node(&failed, master).role, Role::Master);
    assert!(failed.is_ok(), "a FAIL master with a healthy replica");
    let refused = failover(&mut client, replica, pb::FailoverMode::Default)
        .await
        .expect_err("master down");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "ERR Master is down or failed, please use CLUSTER FAILOVER FORCE"
    );
    let after = wait_for(
        &mut client,
        Duration::from_secs(5),
        "the replica promoted",
        |t| node(t, replica).role == Role::Master,
    )
    .await;
    let took = hung.elapsed();
    // Its last grant was at most one heartbeat (50 ms) before it hung.
    assert!(
        took >= LEASE_WAIT - Duration::from_millis(60),
        "promoted before the lease ran out: {took:?}"
    );
    check_promoted(&before, &after, master, replica);

    // It comes back: FAIL clears only after a stable return, and it stays a replica.
    fakes.with(master, |f| f.beating = true);
    let back = wait_for(
        &mut client,
        Duration::from_secs(5),
        "the old master back",
        |t| !status(t, master).failing(),
    )
    .await;
    assert_eq!(node(&back, master).role, Role::Replica);
    fakes.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_killed_at_once_both_fail_over() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let (server, mut client, fakes, before) = setup(dir.path()).await;
    let (m1, r1) = shard_of(&before, 0);
    let (m2, r2) = shard_of(&before, 16000);
    fakes.kill(m1);
    fakes.kill(m2);
    let after = wait_for(&mut client, Duration::from_secs(5), "both promoted", |t| {
        node(t, r1).role == Role::Master && node(t, r2).role == Role::Master
    })
    .await;
    assert_eq!(node(&after, m1).master_id.as_ref(), Some(&node_id(r1)));
    assert_eq!(node(&after, m2).master_id.as_ref(), Some(&node_id(r2)));
    assert_ne!(node(&after, r1).config_epoch, node(&after, r2).config_epoch);
    assert!(after.intent.slots.iter().all(Option::is_some));
    fakes.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_waits_for_the_replica_to_catch_up() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let (server, mut client, fakes, before) = setup(dir.path()).await;
    let (master, replica) = shard_of(&before, 0);
    fakes.with(master, |f| f.offset = 500);
    fakes.with(replica, |f| f.offset = 400);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Redis's refusals first.
    let refused = failover(&mut client, master, pb::FailoverMode::Default)
        .await
        .expect_err("a master");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "ERR You should send CLUSTER FAILOVER to a replica"
    );

    let mut asking = client.clone();
    let call =
        tokio::spawn(
            async move { failover(&mut asking, replica, pb::FailoverMode::Default).await },
        );
    let handing = wait_for(&mut client, Duration::from_secs(2), "the handover", |t| {
        t.intent.handover.is_some()
    })
    .await;
    assert_eq!(
        handing.intent.handover.as_ref().map(|h| &h.master),
        Some(&node_id(master))
    );
    // The master named in the handover gets no lease; the replica has not caught up: no change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fakes.with(master, |f| f.leased));
    assert_eq!(node(&get(&mut client).await, replica).role, Role::Replica);
    fakes.with(replica, |f| f.offset = 500);
    let after = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("answered in time")
        .expect("joined")
        .expect("failover done");
    check_promoted(&before, &after, master, replica);

    // clusterctl swaps them back (the old master now replicates the new one and is caught up),
    // printing CLUSTER FAILOVER's OK and the shard's new shape.
    use clap::Parser;
    let cli = tessera_control_plane::clusterctl::Cli::parse_from([
        "clusterctl".to_string(),
        "--control-plane".into(),
        server.url(),
        "failover".into(),
        node_id(master).to_string(),
        "--wait".into(),
        "5s".into(),
    ]);
    let mut printed = Vec::new();
    tessera_control_plane::clusterctl::execute(cli, &mut std::io::empty(), &mut printed)
        .await
        .expect("clusterctl failover");
    let printed = String::from_utf8(printed).expect("utf-8");
    assert!(printed.contains("\nOK\n"), "{printed}");
    assert!(
        printed.contains(&format!("S: {}", node_id(replica))),
        "{printed}"
    );
    assert!(printed.contains("[OK]"), "{printed}");
    assert_eq!(node(&get(&mut client).await, master).role, Role::Master);
    fakes.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_times_out_and_the_master_keeps_its_slots() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let (server, mut client, fakes, before) = setup(dir.path()).await;
    let (master, replica) = shard_of(&before, 0);
    fakes.with(master, |f| f.offset = 500);
    fakes.with(replica, |f| f.offset = 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let error = failover(&mut client, replica, pb::FailoverMode::Default)
        .await
        .expect_err("never caught up");
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(error.code(), Code::DeadlineExceeded);
    assert_eq!(error.message(), "ERR Manual failover timed out");
    let after = get(&mut client).await;
    assert_eq!(after.intent.handover, None);
    assert_eq!(node(&after, master).role, Role::Master);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fakes.with(master, |f| f.leased), "the master writes again");
    fakes.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_keeps_fencing() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let (server, mut client, fakes, before) = setup(dir.path()).await;
    let (master, replica) = shard_of(&before, 0);
    // A healthy master: FORCE skips the handover but waits out the master's lease, which the
    // control plane stops renewing at once.
    let started = Instant::now();
    let after = failover(&mut client, replica, pb::FailoverMode::Force)
        .await
        .expect("forced");
    let took = started.elapsed();
    assert!(took >= LEASE_WAIT - Duration::from_millis(60), "{took:?}");
    check_promoted(&before, &after, master, replica);
    fakes.stop().await;
    server.stop().await;
}
