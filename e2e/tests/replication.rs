//! Replicas made by the control plane replicate: a 3+3 cluster created with one replica per
//! master, written through the proxy; each replica, told its role by the topology alone, follows
//! its master, serves the master's keys to a READONLY client, answers MOVED to one that is not,
//! refuses writes with MOVED.

use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::RespClient;
use tessera_proto::slot::key_hash_slot;
use tessera_testkit::wait;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

fn connect(port: u16, secret: &str) -> RespClient {
    let mut client = RespClient::connect(port).expect("connect");
    assert_eq!(client.call_str(&["AUTH", secret]), "+OK\r\n");
    client
}

/// `field:value` of INFO `section` on `port`.
fn info_field(client: &mut RespClient, section: &str, field: &str) -> Option<String> {
    let reply = client.call_str(&["INFO", section]);
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
}

#[test]
fn replicas_follow_their_masters_as_the_topology_assigns() {
    let cluster = InProcessCluster::start_with_replicas(6, 1, NODE_TIMEOUT).expect("cluster");
    let secret = cluster.node_secret.clone();
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    for i in 0..300 {
        let key = format!("key:{i}");
        assert_eq!(proxy.call_str(&["SET", &key, &format!("v{i}")]), "+OK\r\n");
    }

    // Which node is which, from the layout the control plane made.
    let mut replicas = Vec::new();
    for &port in &cluster.node_ports {
        let mut client = connect(port, &secret);
        if info_field(&mut client, "replication", "role").as_deref() == Some("slave") {
            replicas.push(port);
        }
    }
    assert_eq!(replicas.len(), 3, "three replicas");

    for &port in &replicas {
        let mut replica = connect(port, &secret);
        wait::until("the replica's link is up", Duration::from_secs(20), || {
            (info_field(&mut replica, "replication", "master_link_status").as_deref() == Some("up"))
                .then_some(())
        });
        let master_port: u16 = info_field(&mut replica, "replication", "master_port")
            .and_then(|p| p.parse().ok())
            .expect("master_port");
        let mut master = connect(master_port, &secret);
        let master_offset: u64 = info_field(&mut master, "replication", "master_repl_offset")
            .and_then(|o| o.parse().ok())
            .expect("master offset");
        wait::until("the replica caught up", Duration::from_secs(20), || {
            info_field(&mut replica, "replication", "slave_repl_offset")
                .and_then(|o| o.parse::<u64>().ok())
                .filter(|&o| o >= master_offset)
        });
        // A key of the master's, read from the replica: MOVED, then served once READONLY.
        let owned = (0..300)
            .map(|i| format!("key:{i}"))
            .find(|key| {
                let reply = master.call_str(&["GET", key]);
                reply.starts_with('$') && !reply.starts_with("$-1")
            })
            .expect("the master owns some key");
        let slot = key_hash_slot(owned.as_bytes());
        let moved = replica.call_str(&["GET", &owned]);
        assert_eq!(moved, format!("-MOVED {slot} 127.0.0.1:{master_port}\r\n"));
        assert_eq!(replica.call_str(&["READONLY"]), "+OK\r\n");
        assert_eq!(
            replica.call_str(&["GET", &owned]),
            master.call_str(&["GET", &owned]),
            "the replica has the master's value"
        );
        assert_eq!(
            replica.call_str(&["SET", &owned, "x"]),
            format!("-MOVED {slot} 127.0.0.1:{master_port}\r\n"),
            "writes go to the master even from a READONLY client"
        );
        assert_eq!(replica.call_str(&["READWRITE"]), "+OK\r\n");
        assert!(replica.call_str(&["GET", &owned]).starts_with("-MOVED "));
    }
}

/// WAIT through the proxy asks the masters this client wrote to and answers the least count;
/// its argument errors are redis-server's, byte for byte.
#[test]
fn wait_through_the_proxy_counts_the_replicas_of_the_masters_written_to() {
    let cluster = InProcessCluster::start_with_replicas(6, 1, NODE_TIMEOUT).expect("cluster");
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    for &port in &cluster.node_ports {
        let mut node = connect(port, &cluster.node_secret);
        wait::until("every replica link is up", Duration::from_secs(20), || {
            let role = info_field(&mut node, "replication", "role");
            let link = info_field(&mut node, "replication", "master_link_status");
            (role.as_deref() == Some("master") || link.as_deref() == Some("up")).then_some(())
        });
    }

    // Nothing written yet: every master is asked, each has its one replica.
    assert_eq!(proxy.call_str(&["WAIT", "1", "0"]), ":1\r\n");
    // Writes on all three masters (keys spread over the slots), then WAIT.
    for i in 0..30 {
        assert_eq!(proxy.call_str(&["SET", &format!("w:{i}"), "v"]), "+OK\r\n");
    }
    assert_eq!(proxy.call_str(&["WAIT", "1", "0"]), ":1\r\n");
    // Two replicas are more than any master has: the timeout ends it, with the least count.
    assert_eq!(proxy.call_str(&["WAIT", "2", "100"]), ":1\r\n");
    // Pipelined behind a write, WAIT still covers it.
    proxy
        .send(&[b"SET", b"w:pipelined", b"v"])
        .expect("send SET");
    proxy.send(&[b"WAIT", b"1", b"0"]).expect("send WAIT");
    assert_eq!(proxy.read_reply().unwrap().unwrap(), b"+OK\r\n");
    assert_eq!(proxy.read_reply().unwrap().unwrap(), b":1\r\n");

    let redis = tessera_testkit::RedisServer::start().expect("redis-server");
    let mut oracle = RespClient::connect(redis.addr().port()).expect("redis-server");
    for args in [
        &["WAIT", "x", "0"][..],
        &["WAIT", "1", "x"],
        &["WAIT", "1", "-1"],
        &["WAIT", "1"],
        &["WAIT", "0", "0", "0"],
    ] {
        assert_eq!(
            proxy.call_str(args),
            oracle.call_str(args),
            "{args:?} as redis-server answers it"
        );
    }
}

/// Keyspace hits counted by the node on `port` (INFO stats).
fn keyspace_hits(port: u16, secret: &str) -> u64 {
    info_field(&mut connect(port, secret), "stats", "keyspace_hits")
        .and_then(|h| h.parse().ok())
        .expect("keyspace_hits")
}

/// With `--read-policy prefer-replica` a proxy sends single-key reads to the slot's replica,
/// which answers them with its master's values; writes still go to the master, and the default
/// policy keeps reads on the masters.
#[test]
fn a_proxy_reading_from_replicas_sends_reads_to_them() {
    let cluster = InProcessCluster::start_with_replicas(6, 1, NODE_TIMEOUT).expect("cluster");
    let secret = cluster.node_secret.clone();
    let mut writer = RespClient::connect(cluster.proxy_port).expect("proxy");
    let keys: Vec<String> = (0..60).map(|i| format!("read:{i}")).collect();
    for key in &keys {
        assert_eq!(writer.call_str(&["SET", key, key]), "+OK\r\n");
    }
    assert_eq!(writer.call_str(&["WAIT", "1", "0"]), ":1\r\n");

    let replicas: Vec<u16> = cluster
        .node_ports
        .iter()
        .copied()
        .filter(|&port| {
            info_field(&mut connect(port, &secret), "replication", "role").as_deref()
                == Some("slave")
        })
        .collect();
    assert_eq!(replicas.len(), 3);
    let masters: Vec<u16> = cluster
        .node_ports
        .iter()
        .copied()
        .filter(|port| !replicas.contains(port))
        .collect();
    let hits = |ports: &[u16]| -> u64 { ports.iter().map(|&p| keyspace_hits(p, &secret)).sum() };

    // The default policy: every read on a master.
    let (masters_before, replicas_before) = (hits(&masters), hits(&replicas));
    for key in &keys {
        assert_eq!(
            writer.call_str(&["GET", key]),
            format!("${}\r\n{key}\r\n", key.len())
        );
    }
    assert_eq!(hits(&masters) - masters_before, keys.len() as u64);
    assert_eq!(hits(&replicas), replicas_before);

    let port = cluster
        .extra_proxy_with(|config| config.read_policy = tessera_proxy::ReadPolicy::PreferReplica)
        .expect("proxy reading from replicas");
    let mut reader = RespClient::connect(port).expect("proxy");
    let (masters_before, replicas_before) = (hits(&masters), hits(&replicas));
    for key in &keys {
        assert_eq!(
            reader.call_str(&["GET", key]),
            format!("${}\r\n{key}\r\n", key.len())
        );
    }
    assert_eq!(hits(&replicas) - replicas_before, keys.len() as u64);
    assert_eq!(hits(&masters), masters_before, "no read reached a master");
    // Writes through it still reach the masters (and replicate back).
    assert_eq!(reader.call_str(&["SET", &keys[0], "new"]), "+OK\r\n");
    assert_eq!(reader.call_str(&["WAIT", "1", "0"]), ":1\r\n");
    assert_eq!(reader.call_str(&["GET", &keys[0]]), "$3\r\nnew\r\n");
}
