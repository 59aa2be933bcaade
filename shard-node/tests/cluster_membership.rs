//! The cluster tasks against a fake control plane (a real tonic server on port 0) and real peer
//! sockets: registration retried until answered, topology followed from the watch, heartbeats
//! carrying peer observations, re-registration on NOT_FOUND, and the write lease lost and
//! regained with the control plane.

mod cluster_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cluster_support::{dead_port, eventually, master, pong_server, topology, Fake};
use tessera_proto::topology::{NodeId, NodeSpec};
use tessera_shard_node::cluster::{self, ClusterView, Member, Registration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A peer whose cluster bus is `port` (where the test's PONG server, or nothing, listens).
fn peer(id: &NodeId, port: u16) -> NodeSpec {
    NodeSpec {
        bus_port: port,
        ..master(id, port)
    }
}

struct TestMember {
    view: ClusterView,
}

impl Member for TestMember {
    fn cluster(&self) -> &ClusterView {
        &self.view
    }

    fn key_count(&self) -> u64 {
        42
    }

    fn replication_offset(&self) -> u64 {
        4242
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_control_plane() {
    let me = NodeId::from_random_bytes([1; 20]);
    let alive = NodeId::from_random_bytes([2; 20]);
    let dead = NodeId::from_random_bytes([3; 20]);
    let alive_port = pong_server().await;
    let dead_port = dead_port().await;

    let fake = Arc::new(Fake::new(topology(
        1,
        vec![
            master(&me, 7000),
            peer(&alive, alive_port),
            peer(&dead, dead_port),
        ],
    )));

    // The control plane's port accepts TCP but does not answer yet: registration must time out
    // and retry rather than hang.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control plane");
    let address = listener.local_addr().expect("addr");

    let member = Arc::new(TestMember {
        view: ClusterView::new(me.clone()),
    });
    let tasks = cluster::start(
        Arc::clone(&member) as Arc<dyn Member>,
        Registration {
            control_plane: format!("http://{address}"),
            announce_host: "127.0.0.1".to_string(),
            announce_port: 7000,
            announce_bus_port: 17000,
        },
    )
    .expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.registered.lock().is_empty());
    assert!(
        !member.view.writes_allowed(),
        "no lease before the first contact"
    );
    assert_eq!(member.view.topology().version, 0);

    let server_stop = CancellationToken::new();
    let server = cluster_support::serve(Arc::clone(&fake), listener, server_stop.clone());

    eventually("registration", Duration::from_secs(10), || {
        !fake.registered.lock().is_empty()
    })
    .await;
    {
        let registered = fake.registered.lock();
        assert_eq!(registered[0].node_id, me.to_string());
        assert_eq!(registered[0].announce_port, 7000);
        assert_eq!(registered[0].announce_bus_port, 17000);
    }
    // The watch may deliver topology 1 before the registration's answer grants the lease: wait
    // for both.
    eventually("topology 1 and the lease", Duration::from_secs(5), || {
        member.view.topology().version == 1 && member.view.writes_allowed()
    })
    .await;

    // Heartbeats carry the key count, the version held, and what the probes saw: the live peer
    // reachable, the dead one not once node-timeout has passed.
    eventually(
        "a heartbeat seeing the dead peer",
        Duration::from_secs(5),
        || {
            fake.heartbeats.lock().iter().any(|h| {
                h.peers
                    .iter()
                    .any(|p| p.node_id == dead.to_string() && !p.reachable)
            })
        },
    )
    .await;
    {
        let heartbeats = fake.heartbeats.lock();
        let last = heartbeats.last().expect("a heartbeat");
        assert_eq!(last.key_count, 42);
        assert_eq!(last.replication_offset, 4242);
        assert_eq!(last.holds.as_ref().map(|h| h.version), Some(1));
        let seen: Vec<_> = last
            .peers
            .iter()
            .map(|p| (p.node_id.clone(), p.reachable))
            .collect();
        assert_eq!(
            seen,
            vec![(alive.to_string(), true), (dead.to_string(), false)]
        );
    }

    // A newer topology arrives through the watch.
    fake.publish(topology(
        2,
        vec![master(&me, 7000), peer(&alive, alive_port)],
    ));
    eventually("topology 2", Duration::from_secs(5), || {
        member.view.topology().version == 2
    })
    .await;

    // The control plane forgot the node: it registers again.
    fake.known.lock().clear();
    eventually("re-registration", Duration::from_secs(5), || {
        fake.registered.lock().len() >= 2
    })
    .await;

    // The control plane goes silent: after node-timeout the node refuses writes...
    fake.down.store(true, Ordering::SeqCst);
    eventually("lease expiry", Duration::from_secs(5), || {
        !member.view.writes_allowed()
    })
    .await;
    // ...and accepts them again once heartbeats get through.
    fake.down.store(false, Ordering::SeqCst);
    eventually("lease renewal", Duration::from_secs(5), || {
        member.view.writes_allowed()
    })
    .await;

    let stats = member.view.message_stats();
    assert!(stats.ping_sent > 0 && stats.pong_received > 0, "{stats:?}");
    assert!(stats.ping_received >= 2, "{stats:?}");

    tokio::time::timeout(Duration::from_secs(5), tasks.stop())
        .await
        .expect("tasks stop promptly");
    server_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
