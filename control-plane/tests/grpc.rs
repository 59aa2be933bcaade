//! The control plane's gRPC API against a real server on port 0: registration, creation, the
//! watch stream, settings, errors, failure detection and persistence across a restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{addresses, get, node, node_id, register, status, wait_for, Beaters, Domain, Server};
use tessera_proto::pb;
use tessera_proto::topology::{Role, Topology};
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

fn ranges(topology: &Topology) -> Vec<(u32, u32, String)> {
    topology
        .runs()
        .filter_map(|(start, end, owner)| {
            let node = &topology.nodes()[usize::from(owner?)];
            Some((u32::from(start), u32::from(end), node.id.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_create_watch_settings_and_restart() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let server = Server::start(dir.path(), LONG).await;
    let mut client = server.client().await;

    let mut watch = client
        .watch_topology(pb::WatchTopologyRequest { after: None })
        .await
        .expect("watch")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("first message in time")
        .expect("stream ok")
        .expect("a topology")
        .domain();
    assert!(!first.intent.created);

    for n in 1..=3 {
        register(&mut client, n).await;
    }
    let before = get(&mut client).await;
    assert_eq!(before.nodes().len(), 3);
    assert!(before.nodes().iter().all(|n| n.role == Role::Master));
    assert!(before.first_assigned_slot().is_none());

    // Refusals, each with its code and words.
    let create = |addresses: Vec<String>, replicas, dry_run| pb::CreateClusterRequest {
        addresses,
        replicas,
        dry_run,
    };
    let err = client
        .create_cluster(create(addresses(&[1, 2]), 0, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("Redis Cluster requires at least 3 master nodes."),
        "{}",
        err.message()
    );
    let err = client
        .create_cluster(create(addresses(&[1, 2, 3, 4, 5]), 1, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "Redis Cluster requires at least 3 master nodes. This is not possible with 5 nodes and 1 replicas per node. At least 6 nodes are required."
    );
    let err = client
        .create_cluster(create(addresses(&[1, 2, 9]), 0, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("127.0.0.1:7008"),
        "{}",
        err.message()
    );

    // Dry run: the plan, nothing applied.
    let plan = client
        .create_cluster(create(addresses(&[1, 2, 3]), 0, true))
        .await
        .expect("dry run")
        .into_inner()
        .topology
        .expect("plan")
        .domain();
    assert!(plan.intent.created);
    let unchanged = get(&mut client).await;
    assert!(!unchanged.intent.created);
    assert_eq!(unchanged.version, before.version);

    // Create, by the name "localhost" for one node (resolved to 127.0.0.1).
    let mut requested = addresses(&[1, 2, 3]);
    requested[2] = "localhost:7002".into();
    let created = client
        .create_cluster(create(requested, 0, false))
        .await
        .expect("create")
        .into_inner()
        .topology
        .expect("topology")
        .domain();
    assert!(created.intent.created);
    assert!(created.version > before.version);
    assert_eq!(created.intent.current_epoch, 3);
    let want = vec![
        (0, 5460, node_id(1).to_string()),
        (5461, 10922, node_id(2).to_string()),
        (10923, 16383, node_id(3).to_string()),
    ];
    assert_eq!(ranges(&created), want);
    assert_eq!(ranges(&plan), want);
    for (n, epoch) in [(1, 1), (2, 2), (3, 3)] {
        assert_eq!(node(&created, n).config_epoch, epoch);
    }

    // The watch sees the created topology (bounded: skip intermediate versions).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("watch message in time")
            .expect("stream ok")
            .expect("a topology")
            .domain();
        assert!(seen.version > first.version);
        if seen.version == created.version {
            assert!(seen.intent.created);
            assert_eq!(ranges(&seen), want);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watch never showed the created topology"
        );
    }

    let err = client
        .create_cluster(create(addresses(&[1, 2, 3]), 0, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "cluster already created");

    // A watcher that already holds the current version gets nothing until the next change.
    let mut late = client
        .watch_topology(pb::WatchTopologyRequest {
            after: Some(pb::TopologyStamp::from(&created.stamp())),
        })
        .await
        .expect("watch")
        .into_inner();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), late.message())
            .await
            .is_err(),
        "nothing newer to send yet"
    );

    // Settings.
    let settings = client
        .set_setting(pb::SetSettingRequest {
            name: "require-full-coverage".into(),
            value: "no".into(),
        })
        .await
        .expect("set")
        .into_inner();
    assert!(!settings.require_full_coverage);
    let settings = client
        .set_setting(pb::SetSettingRequest {
            name: "node-timeout".into(),
            value: "45000".into(),
        })
        .await
        .expect("set")
        .into_inner();
    assert_eq!(settings.node_timeout_ms, 45_000);
    for (name, value) in [
        ("require-full-coverage", "maybe"),
        ("colour", "red"),
        ("node-timeout", "x"),
    ] {
        let err = client
            .set_setting(pb::SetSettingRequest {
                name: name.into(),
                value: value.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name} {value}");
    }
    let changed = tokio::time::timeout(Duration::from_secs(5), late.message())
        .await
        .expect("setting change in time")
        .expect("stream ok")
        .expect("a topology")
        .domain();
    assert!(changed.version > created.version);
    assert!(!changed.intent.settings.require_full_coverage);

    // Unknown node, bad id.
    let err = client
        .heartbeat(pb::HeartbeatRequest {
            node_id: node_id(9).to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .register_node(pb::RegisterNodeRequest {
            node_id: "not-an-id".into(),
            announce_host: "127.0.0.1".into(),
            announce_port: 7000,
            announce_bus_port: 17000,
            holds: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Restart on the same data dir: everything that matters is back. Open watches end.
    let before_restart = get(&mut client).await;
    server.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        // Bounded: the stream must end (None or an error) after shutdown.
        for _ in 0..100 {
            match watch.message().await {
                Ok(Some(_)) => continue,
                _ => return true,
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "watch stream ends at shutdown");

    let server = Server::start(dir.path(), Duration::from_secs(1)).await;
    let mut client = server.client().await;
    let after = get(&mut client).await;
    assert_eq!(after.version, before_restart.version);
    assert_eq!(after.intent.current_epoch, 3);
    assert!(after.intent.created);
    assert_eq!(ranges(&after), want);
    assert_eq!(
        after.intent.settings, before_restart.intent.settings,
        "persisted settings win over flags"
    );
    assert_eq!(after.nodes().len(), 3);
    for n in 1..=3 {
        assert!(!status(&after, n).failing());
        assert_eq!(u32::from(node(&after, n).port), common::port(n));
    }

    // A restarted node keeps its slots; a new address is taken.
    client
        .register_node(pb::RegisterNodeRequest {
            node_id: node_id(2).to_string(),
            announce_host: "127.0.0.2".into(),
            announce_port: 7101,
            announce_bus_port: 17101,
            holds: None,
        })
        .await
        .expect("re-register");
    let moved = get(&mut client).await;
    assert!(moved.version > after.version);
    assert_eq!(node(&moved, 2).host, "127.0.0.2");
    assert_eq!(ranges(&moved), want);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_becomes_pfail_then_fail_and_a_stable_return_clears_it() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let server = Server::start(dir.path(), Duration::from_millis(500)).await;
    let mut client = server.client().await;
    for n in 1..=3 {
        register(&mut client, n).await;
    }
    client
        .create_cluster(pb::CreateClusterRequest {
            addresses: addresses(&[1, 2, 3]),
            replicas: 0,
            dry_run: false,
        })
        .await
        .expect("create");

    // All three beat: healthy for well over node-timeout.
    let unreachable = Arc::new(AtomicBool::new(false));
    let all = Beaters::start(client.clone(), vec![1, 2, 3], vec![], unreachable.clone());
    tokio::time::sleep(Duration::from_millis(900)).await;
    let healthy = get(&mut client).await;
    assert!(healthy.members().all(|(_, s)| !s.failing()), "{healthy:?}");
    assert!(healthy.members().all(|(_, s)| s.key_count > 0));
    all.stop().await;

    // Node 3 goes silent; 1 and 2 still reach it (they say so): PFAIL only.
    let survivors = Beaters::start(client.clone(), vec![1, 2], vec![3], unreachable.clone());
    let pfail = wait_for(&mut client, Duration::from_secs(5), "node 3 pfail", |t| {
        status(t, 3).pfail
    })
    .await;
    assert!(!status(&pfail, 3).fail);
    assert!(!status(&pfail, 1).pfail && !status(&pfail, 2).pfail);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = get(&mut client).await;
    assert!(
        status(&still, 3).pfail && !status(&still, 3).fail,
        "no majority yet"
    );

    // The survivors now report it unreachable: control plane + 1 master = majority of 3: FAIL.
    let mut watch = client
        .watch_topology(pb::WatchTopologyRequest {
            after: Some(pb::TopologyStamp::from(&still.stamp())),
        })
        .await
        .expect("watch")
        .into_inner();
    unreachable.store(true, Ordering::SeqCst);
    let failed = wait_for(&mut client, Duration::from_secs(5), "node 3 fail", |t| {
        status(t, 3).fail
    })
    .await;
    assert!(failed.version > still.version);
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("topology")
        .domain();
    assert!(status(&seen, 3).fail);

    // Node 3 speaks again: one heartbeat does not clear FAIL (a stable return does).
    let reply = client
        .heartbeat(pb::HeartbeatRequest {
            node_id: node_id(3).to_string(),
            peers: vec![],
            key_count: 0,
            holds: Some(pb::TopologyStamp::from(&failed.stamp())),
            replication_offset: 0,
            drained_slots: Vec::new(),
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert!(!reply.lease_granted, "a FAIL node gets no lease");
    let once = get(&mut client).await;
    assert!(status(&once, 3).fail, "one heartbeat is not a return");
    unreachable.store(false, Ordering::SeqCst);
    let returning = Beaters::start(client.clone(), vec![3], vec![], unreachable.clone());
    // 3 beats spanning node-timeout / 2 (250 ms), beats every 50 ms.
    let back = wait_for(&mut client, Duration::from_secs(3), "node 3 back", |t| {
        !status(t, 3).failing()
    })
    .await;
    assert!(back.version > once.version);
    returning.stop().await;
    survivors.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_and_reflection_lists_the_service() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let server = Server::start(dir.path(), LONG).await;
    let _ready = server.client().await;
    assert_eq!(
        common::health(&server.url()).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let channel = tonic::transport::Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("a reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "tessera.cluster.v2.ControlPlane"),
        "{list:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_replicas_then_add_a_replica() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let server = Server::start(dir.path(), Duration::from_secs(60)).await;
    let mut client = server.client().await;
    for n in 1..=7 {
        register(&mut client, n).await;
    }
    let err = client
        .add_replica(pb::AddReplicaRequest {
            address: addresses(&[7]).remove(0),
            master_id: node_id(1).to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let reply = client
        .create_cluster(pb::CreateClusterRequest {
            addresses: addresses(&[1, 2, 3, 4, 5, 6]),
            replicas: 1,
            dry_run: false,
        })
        .await
        .expect("create")
        .into_inner();
    let want_ids: Vec<String> = (1..=6).map(|n| node_id(n).to_string()).collect();
    assert_eq!(reply.node_ids, want_ids, "the nodes in the order given");
    let created = reply.topology.expect("topology").domain();
    assert_eq!(created.intent.current_epoch, 6);
    // One host: "Adding replica 7004 to 7000, 7005 to 7001, 7003 to 7002", kept as printed.
    for (replica, master) in [(5, 1), (6, 2), (4, 3)] {
        let spec = node(&created, replica);
        assert_eq!(spec.role, Role::Replica);
        assert_eq!(spec.master_id, Some(node_id(master)));
    }
    assert_eq!(created.health().size, 3);
    assert_eq!(created.health().known_nodes, 7);

    // add-node --replica-of: refusals in Redis's words, then node 7 follows node 2.
    let add = |n: u8, master: String| pb::AddReplicaRequest {
        address: addresses(&[n]).remove(0),
        master_id: master,
    };
    let err = client
        .add_replica(add(7, node_id(4).to_string()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "I can only replicate a master, not a replica."
    );
    let err = client
        .add_replica(add(1, node_id(2).to_string()))
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "To set a master the node must be empty and without assigned slots."
    );
    let err = client
        .add_replica(add(7, node_id(9).to_string()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("No such master ID {}", node_id(9)));
    let err = client.add_replica(add(7, "nope".into())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let added = client
        .add_replica(add(7, node_id(2).to_string()))
        .await
        .expect("add replica")
        .into_inner();
    assert_eq!(added.replica_id, node_id(7).to_string());
    let topology = added.topology.expect("topology").domain();
    assert!(topology.version > created.version);
    assert_eq!(node(&topology, 7).master_id, Some(node_id(2)));
    let master = topology.index_of(&node_id(2)).expect("master");
    assert_eq!(topology.replicas_of(master).count(), 2);

    // Roles survive a control-plane restart.
    server.stop().await;
    let server = Server::start(dir.path(), Duration::from_secs(60)).await;
    let mut client = server.client().await;
    let reloaded = get(&mut client).await;
    assert_eq!(reloaded.intent.nodes, topology.intent.nodes);
    server.stop().await;
}

/// Reshard and Rebalance plan as redis-cli does, refuse in its words, and start every move of a
/// plan in one topology change unless it is a dry run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_and_rebalance_plan_then_start_the_moves() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let server = Server::start(dir.path(), LONG).await;
    let mut client = server.client().await;
    for n in 1..=4 {
        register(&mut client, n).await;
    }
    client
        .create_cluster(pb::CreateClusterRequest {
            addresses: addresses(&[1, 2, 3]),
            replicas: 0,
            dry_run: false,
        })
        .await
        .expect("create");
    let created = get(&mut client).await;
    let id = |n: u8| node_id(n).to_string();
    let reshard = |sources: Vec<String>, target: String, slot_count, dry_run| pb::ReshardRequest {
        source_ids: sources,
        target_id: target,
        slot_count,
        dry_run,
    };

    // Refusals.
    let stranger = "ab".repeat(20);
    let err = client
        .reshard(reshard(vec![], stranger.clone(), 10, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("No such node ID {stranger}"));
    let err = client
        .reshard(reshard(vec![id(1)], id(1), 10, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "Target node is also listed among the source nodes!"
    );
    let weight = |node_id: String, weight| pb::NodeWeight { node_id, weight };
    let rebalance = |weights, use_empty_masters, dry_run| pb::RebalanceRequest {
        weights,
        use_empty_masters,
        threshold: 2.0,
        dry_run,
    };
    let err = client
        .rebalance(rebalance(vec![weight(id(1), -1.0)], false, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Balanced without the empty master: nothing to do.
    let plan = client
        .rebalance(rebalance(vec![], false, false))
        .await
        .expect("rebalance")
        .into_inner();
    assert!(plan.moves.is_empty());
    assert_eq!(plan.masters, 3);

    // A reshard dry run: redis-cli's pick (the larger source first, its share rounded up, the
    // others' down, so 4 of 5 here as redis-cli moves; lowest slots first), nothing moves.
    let plan = client
        .reshard(reshard(vec![], id(4), 5, true))
        .await
        .expect("reshard plan")
        .into_inner();
    let slots: Vec<u32> = plan.moves.iter().map(|m| m.slot).collect();
    assert_eq!(slots, vec![5461, 5462, 0, 10923]);
    assert_eq!(get(&mut client).await.version, created.version);

    // Rebalance over the empty master: 4096 slots planned and recorded at once.
    let plan = client
        .rebalance(rebalance(vec![], true, false))
        .await
        .expect("rebalance")
        .into_inner();
    assert_eq!((plan.masters, plan.total_weight), (4, 4.0));
    assert_eq!(plan.moves.len(), 4096);
    assert!(plan.moves.iter().all(|m| m.target_id == id(4)));
    let moving = get(&mut client).await;
    assert_eq!(moving.version, created.version + 1);
    assert_eq!(moving.intent.migrations.len(), 4096);
    let target = moving.index_of(&node_id(4)).expect("node 4") as u16;
    assert!(moving.intent.migrations.iter().all(|m| m.target == target));
}
