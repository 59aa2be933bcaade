//! Failover on an in-process 3+3 cluster, under writers through the proxy:
//! - a master whose process is gone (stopped: its ports refuse connections) is replaced by its
//!   replica without waiting out its write lease; writes acknowledged with `WAIT 1` survive; the
//!   other masters' slots see no error meanwhile; the old master returns as a replica of the new
//!   one;
//! - a manual failover (the control plane's Failover call, as `clusterctl failover` and CLUSTER
//!   FAILOVER make it) loses no acknowledged write and shows the proxy's clients no error.
//!
//! Times are printed; the assertions are the fencing bounds, not the 1 s target the benchmarks
//! measure.

use std::thread;
use std::time::{Duration, Instant};

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::RespClient;
use tessera_e2e::shard::{assert_acked_present, connect, info_field, pick_shard, Writer};
use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_testkit::wait;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

#[test]
fn a_stopped_master_is_replaced_without_waiting_out_its_lease() {
    let mut cluster = InProcessCluster::start_with_replicas(6, 1, NODE_TIMEOUT).expect("cluster");
    let secret = cluster.node_secret.clone();
    let shard = pick_shard(&cluster);
    let master_port = cluster.node_ports[shard.master];
    let replica_port = cluster.node_ports[shard.replica];

    // Acknowledged by the replica: these must survive the failover.
    let mut master = connect(master_port, &secret);
    for key in &shard.own_keys {
        assert_eq!(master.call_str(&["SET", key, "kept"]), "+OK\r\n");
    }
    assert_eq!(master.call_str(&["WAIT", "1", "5000"]), ":1\r\n");
    drop(master);

    let others = Writer::start(cluster.proxy_port, shard.other_keys.clone());
    thread::sleep(Duration::from_millis(300)); // let the writer run before the fault
    let stopped = Instant::now();
    cluster.stop_node(shard.master).expect("stop the master");
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    let probe = &shard.own_keys[0];
    let resumed = wait::until(
        "writes to the lost slots resume",
        Duration::from_secs(20),
        || (proxy.call_str(&["SET", probe, "kept"]) == "+OK\r\n").then(|| stopped.elapsed()),
    );
    eprintln!("writes to the lost master's slots resumed after {resumed:?}");
    let lease_wait = NODE_TIMEOUT + NODE_TIMEOUT / 100 + Duration::from_millis(300);
    assert!(
        resumed < lease_wait,
        "a gone process is failed over without waiting out its lease ({resumed:?})"
    );
    thread::sleep(Duration::from_millis(300));
    let (errors, _) = others.finish();
    assert_eq!(errors, 0, "the other masters' slots saw errors");
    for key in &shard.own_keys {
        assert_eq!(
            proxy.call_str(&["GET", key]),
            "$4\r\nkept\r\n",
            "{key} lost"
        );
    }

    // The old master returns as a replica of the new one.
    cluster
        .start_node(shard.master)
        .expect("restart the old master");
    let mut old = connect(master_port, &secret);
    wait::until(
        "the old master follows the new one",
        Duration::from_secs(20),
        || {
            let port = info_field(&mut old, "master_port");
            let up = info_field(&mut old, "master_link_status");
            (port == Some(replica_port.to_string()) && up.as_deref() == Some("up")).then_some(())
        },
    );
    assert_eq!(
        old.call_str(&["READONLY"]),
        "+OK\r\n",
        "a replica takes READONLY"
    );
    assert_eq!(old.call_str(&["GET", probe]), "$4\r\nkept\r\n");
    // Every node names the same master for the slot.
    let slot_owner = |port: u16| {
        let mut node = connect(port, &secret);
        node.call_str(&["CLUSTER", "NODES"])
            .lines()
            .find(|l| l.contains("master") && l.contains(&format!(":{replica_port}@")))
            .is_some()
    };
    wait::until(
        "every node agrees on the new master",
        Duration::from_secs(20),
        || {
            cluster
                .node_ports
                .iter()
                .all(|&port| slot_owner(port))
                .then_some(())
        },
    );
}

#[test]
fn a_manual_failover_loses_nothing_and_shows_no_error() {
    let cluster = InProcessCluster::start_with_replicas(6, 1, NODE_TIMEOUT).expect("cluster");
    let shard = pick_shard(&cluster);
    let writer = Writer::start(cluster.proxy_port, shard.own_keys.clone());
    thread::sleep(Duration::from_millis(500));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let answer = runtime.block_on(async {
        let mut client = ControlPlaneClient::connect(cluster.control_plane_url())
            .await
            .expect("control plane");
        client
            .failover(pb::FailoverRequest {
                replica_id: shard.replica_id.clone(),
                mode: pb::FailoverMode::Default as i32,
            })
            .await
    });
    let took = started.elapsed();
    answer.expect("the failover completes");
    eprintln!("manual failover took {took:?}");
    thread::sleep(Duration::from_millis(500));
    let (errors, acked) = writer.finish();
    assert_eq!(errors, 0, "the proxy's clients saw errors");
    assert!(acked.iter().any(|(_, v)| *v > 0));
    assert_acked_present(cluster.proxy_port, &acked);
    let mut new_master = connect(cluster.node_ports[shard.replica], &cluster.node_secret);
    assert_eq!(
        info_field(&mut new_master, "role").as_deref(),
        Some("master")
    );
}

#[test]
fn cluster_failover_sent_to_a_replica_promotes_it() {
    let cluster = InProcessCluster::start_with_replicas(6, 1, NODE_TIMEOUT).expect("cluster");
    let secret = &cluster.node_secret;
    let shard = pick_shard(&cluster);
    let mut master = connect(cluster.node_ports[shard.master], secret);
    let mut replica = connect(cluster.node_ports[shard.replica], secret);
    assert_eq!(
        master.call_str(&["CLUSTER", "FAILOVER"]),
        "-ERR You should send CLUSTER FAILOVER to a replica\r\n"
    );
    assert_eq!(
        replica.call_str(&["CLUSTER", "FAILOVER", "SOON"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        replica.call_str(&["CLUSTER", "REPLICATE", &shard.replica_id]),
        "-ERR Can't replicate myself\r\n"
    );
    assert_eq!(replica.call_str(&["CLUSTER", "FAILOVER"]), "+OK\r\n");
    wait::until("the replica is promoted", Duration::from_secs(20), || {
        (info_field(&mut replica, "role").as_deref() == Some("master")).then_some(())
    });
    wait::until("the old master follows it", Duration::from_secs(20), || {
        (info_field(&mut master, "role").as_deref() == Some("slave")).then_some(())
    });
}
