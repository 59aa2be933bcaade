//! A slot being moved, as Redis's getNodeByQuery answers for it: on the source (MIGRATING), keys
//! still here are served, keys gone answer ASK, a mix answers TRYAGAIN; on the target
//! (IMPORTING), only a command behind ASKING (or RESTORE-ASKING) is served, and a multi-key one
//! over keys not all here yet answers TRYAGAIN. The move's state comes from the topology.

mod data_support;

use data_support::{node, RawClient, TestNode, MYSELF, OTHER};
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::{SlotMigration, Topology};
use tessera_testkit::RedisServer;

/// The reply to `command`, without its final CRLF.
async fn line(c: &mut RawClient, command: &str) -> anyhow::Result<String> {
    let reply = c.line(command).await?;
    Ok(reply.strip_suffix("\r\n").unwrap_or(&reply).to_string())
}

/// The slot of the `{m}` keys.
fn slot() -> u16 {
    key_hash_slot(b"{m}")
}

/// Two masters: us (index 0) owning slots 0-8191, OTHER (127.0.0.1:7999) the rest; `slot()` is
/// owned by `owner` and, when `moving`, on its way to the other one.
fn layout(port: u16, owner: u16, moving: bool, version: u64) -> Topology {
    let mut slots = vec![Some(0u16); 16384];
    for o in slots.iter_mut().skip(8192) {
        *o = Some(1);
    }
    slots[usize::from(slot())] = Some(owner);
    let mut topology = Topology::created(vec![node(MYSELF, port), node(OTHER, 7999)], slots.into());
    topology.version = version;
    if moving {
        topology.intent.migrations = vec![SlotMigration {
            slot: slot(),
            source: owner,
            target: 1 - owner,
            by_client: false,
        }];
    }
    topology
}

#[tokio::test]
async fn the_source_serves_what_it_still_has_and_sends_the_rest_on() -> anyhow::Result<()> {
    let node = TestNode::start_with(|port| layout(port, 0, false, 1)).await?;
    let port = node.addr.port();
    let mut c = node.client().await?;
    let s = slot();
    assert_eq!(line(&mut c, "SET {m}a 1").await?, "+OK");
    assert_eq!(line(&mut c, "SET {m}b 2").await?, "+OK");
    assert_eq!(line(&mut c, "SET {m}short 3 PX 1").await?, "+OK");
    node.state.cluster.offer_topology(layout(port, 0, true, 2));

    // Keys still here are served, reads and writes.
    assert_eq!(line(&mut c, "GET {m}a").await?, "$1\r\n1");
    assert_eq!(line(&mut c, "INCR {m}b").await?, ":3");
    assert_eq!(
        line(&mut c, "MGET {m}a {m}b").await?,
        "*2\r\n$1\r\n1\r\n$1\r\n3"
    );
    // Keys not here (never were, or expired) are the target's: ASK, for reads and writes.
    let ask = format!("-ASK {s} 127.0.0.1:7999");
    assert_eq!(line(&mut c, "GET {m}gone").await?, ask);
    assert_eq!(line(&mut c, "SET {m}new v").await?, ask);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        line(&mut c, "GET {m}short").await?,
        ask,
        "an expired key is gone"
    );
    // Some here, some not: TRYAGAIN.
    let tryagain = "-TRYAGAIN Multiple keys request during rehashing of slot";
    assert_eq!(line(&mut c, "MGET {m}a {m}gone").await?, tryagain);
    assert_eq!(line(&mut c, "DEL {m}gone {m}b").await?, tryagain);
    // A queued command meets the rule when queued: its redirect aborts the transaction.
    for command in ["MULTI", "GET {m}a"] {
        line(&mut c, command).await?;
    }
    assert_eq!(line(&mut c, "SET {m}new v").await?, ask);
    assert_eq!(
        line(&mut c, "EXEC").await?,
        "-EXECABORT Transaction discarded because of previous errors."
    );
    // Other slots and keyless commands are untouched.
    assert_eq!(line(&mut c, "SET {b}other 1").await?, "+OK");
    assert_eq!(line(&mut c, "PING").await?, "+PONG");
    // ASKING changes nothing on the source.
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    assert_eq!(line(&mut c, "GET {m}gone").await?, ask);
    node.stop().await
}

/// Keys in a batch on its way to the target (in transit): reads are served, a write waits for
/// the batch to land and then runs (the batch failed: the keys stayed) or answers ASK (the keys
/// left); a transaction cannot wait and answers TRYAGAIN.
#[tokio::test]
async fn a_write_to_keys_in_transit_waits_for_them_to_land() -> anyhow::Result<()> {
    use bytes::Bytes;
    use std::time::Duration;

    let node = TestNode::start_with(|port| layout(port, 0, false, 1)).await?;
    let mut c = node.client().await?;
    let mut writer = node.client().await?;
    let s = slot();
    for command in ["SET {m}a 1", "SET {m}b 2", "SET {m}c 3"] {
        assert_eq!(line(&mut c, command).await?, "+OK");
    }
    node.state
        .cluster
        .offer_topology(layout(node.addr.port(), 0, true, 2));
    let transit = node.state.keyspace.transit();
    let a = vec![Bytes::from_static(b"{m}a")];
    transit.begin(s, a.clone());

    // Reads of it are served at once; writes to other keys of the slot too.
    assert_eq!(line(&mut c, "GET {m}a").await?, "$1\r\n1");
    assert_eq!(line(&mut c, "INCR {m}b").await?, ":3");
    // A write to it waits, and the client's next command behind it.
    writer.send_raw(b"INCR {m}a\r\nGET {m}b\r\n").await?;
    let waited = tokio::time::timeout(Duration::from_millis(200), writer.read_reply()).await;
    assert!(
        waited.is_err(),
        "a write to a key in transit was answered: {waited:?}"
    );
    // In a transaction it cannot wait: refused when queued, which aborts the transaction.
    assert_eq!(line(&mut c, "MULTI").await?, "+OK");
    assert_eq!(
        line(&mut c, "INCR {m}a").await?,
        "-TRYAGAIN A key of this command is being moved to another node, try again"
    );
    assert_eq!(
        line(&mut c, "EXEC").await?,
        "-EXECABORT Transaction discarded because of previous errors."
    );

    // The batch failed: the key stays here, and the write runs; then the next command.
    transit.end(s, &a);
    assert_eq!(writer.read_reply().await?, &b":2\r\n"[..]);
    assert_eq!(writer.read_reply().await?, &b"$1\r\n3\r\n"[..]);

    // The batch landed: the key left (deleted here, as the mover does), and the write is ASKed.
    transit.begin(s, a.clone());
    writer.send_raw(b"SET {m}a x\r\n").await?;
    let waited = tokio::time::timeout(Duration::from_millis(200), writer.read_reply()).await;
    assert!(
        waited.is_err(),
        "a write to a key in transit was answered: {waited:?}"
    );
    tessera_shard_node::cmd::apply_moved(
        &node.state,
        vec![Bytes::from_static(b"DEL"), a[0].clone()],
    )
    .map_err(anyhow::Error::msg)?;
    transit.end(s, &a);
    let ask = format!("-ASK {s} 127.0.0.1:7999\r\n");
    assert_eq!(writer.read_reply().await?, ask.as_bytes());
    node.stop().await
}

#[tokio::test]
async fn the_target_serves_only_asking_clients() -> anyhow::Result<()> {
    let node = TestNode::start_with(|port| layout(port, 1, true, 1)).await?;
    let mut c = node.client().await?;
    let s = slot();
    let moved = format!("-MOVED {s} 127.0.0.1:7999");
    assert_eq!(line(&mut c, "GET {m}a").await?, moved);
    assert_eq!(line(&mut c, "SET {m}a 1").await?, moved);
    // ASKING lets the next command in, and only that one.
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    assert_eq!(line(&mut c, "SET {m}a 1").await?, "+OK");
    assert_eq!(line(&mut c, "GET {m}a").await?, moved);
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    assert_eq!(line(&mut c, "GET {m}a").await?, "$1\r\n1");
    // Several keys, not all here yet: TRYAGAIN; the same key twice is one key.
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    assert_eq!(
        line(&mut c, "MGET {m}a {m}b").await?,
        "-TRYAGAIN Multiple keys request during rehashing of slot"
    );
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    assert_eq!(line(&mut c, "MGET {m}b {m}b").await?, "*2\r\n$-1\r\n$-1");
    // RESTORE-ASKING carries its own ASKING.
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    let dump = c.cmd(&[b"DUMP", b"{m}a"]).await?;
    let header = dump.iter().position(|&b| b == b'\n').expect("bulk header") + 1;
    let payload = &dump[header..dump.len() - 2];
    assert_eq!(
        c.cmd(&[b"RESTORE-ASKING", b"{m}c", b"0", payload]).await?,
        &b"+OK\r\n"[..]
    );
    assert_eq!(line(&mut c, "RESTORE {m}d 0 x").await?, moved);
    // Inside MULTI, ASKING holds until EXEC.
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    assert_eq!(line(&mut c, "MULTI").await?, "+OK");
    assert_eq!(line(&mut c, "GET {m}c").await?, "+QUEUED");
    assert_eq!(line(&mut c, "EXEC").await?, "*1\r\n$1\r\n1");
    node.stop().await
}

/// `CLUSTER MYID` of a redis-server.
async fn myid(c: &mut RawClient) -> anyhow::Result<String> {
    let reply = line(c, "CLUSTER MYID").await?;
    Ok(reply.lines().nth(1).unwrap_or_default().to_string())
}

/// Two redis-servers in cluster mode: `a` owns 0-8191 and `slot()`, `b` the rest; `slot()` is
/// then moving from `a` to `b` (MIGRATING on `a`, IMPORTING on `b`), after `{m}a` and `{m}b` were
/// written on `a`.
async fn redis_moving() -> anyhow::Result<(RedisServer, RedisServer)> {
    let a = RedisServer::start_with(&["--cluster-enabled", "yes"])?;
    let b = RedisServer::start_with(&["--cluster-enabled", "yes"])?;
    let mut ca = RawClient::connect_port(a.port).await?;
    let mut cb = RawClient::connect_port(b.port).await?;
    let s = slot();
    for (c, epoch) in [(&mut ca, "1"), (&mut cb, "2")] {
        assert_eq!(
            line(c, &format!("CLUSTER SET-CONFIG-EPOCH {epoch}")).await?,
            "+OK"
        );
    }
    line(&mut ca, &format!("CLUSTER ADDSLOTSRANGE 0 8191 {s} {s}")).await?;
    line(
        &mut cb,
        &format!("CLUSTER ADDSLOTSRANGE 8192 {} {} 16383", s - 1, s + 1),
    )
    .await?;
    line(&mut ca, &format!("CLUSTER MEET 127.0.0.1 {}", b.port)).await?;
    for c in [&mut ca, &mut cb] {
        let mut ok = false;
        for _ in 0..200 {
            if line(c, "CLUSTER INFO").await?.contains("cluster_state:ok") {
                ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(ok, "the Redis Cluster of two did not come up");
    }
    assert_eq!(line(&mut ca, "SET {m}a 1").await?, "+OK");
    assert_eq!(line(&mut ca, "SET {m}b 2").await?, "+OK");
    let (ida, idb) = (myid(&mut ca).await?, myid(&mut cb).await?);
    line(&mut cb, &format!("CLUSTER SETSLOT {s} IMPORTING {ida}")).await?;
    line(&mut ca, &format!("CLUSTER SETSLOT {s} MIGRATING {idb}")).await?;
    Ok((a, b))
}

/// The replies of `commands`, one per command, from a fresh connection to `port`.
async fn replies(port: u16, commands: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut c = RawClient::connect_port(port).await?;
    let mut out = Vec::new();
    for command in commands {
        out.push(format!("{command} -> {}", c.line(command).await?));
    }
    Ok(out)
}

#[tokio::test]
async fn replies_match_a_redis_cluster_moving_the_slot() -> anyhow::Result<()> {
    let (a, b) = redis_moving().await?;
    // Tessera as the source: its target announced at b's address, so the replies are the same
    // bytes.
    let source = TestNode::start_with(|port| {
        let mut t = layout(port, 0, false, 1);
        t.intent.nodes[1].port = b.port;
        t
    })
    .await?;
    let port = source.addr.port();
    let mut c = source.client().await?;
    assert_eq!(line(&mut c, "SET {m}a 1").await?, "+OK");
    assert_eq!(line(&mut c, "SET {m}b 2").await?, "+OK");
    let mut moving = layout(port, 0, true, 2);
    moving.intent.nodes[1].port = b.port;
    source.state.cluster.offer_topology(moving);
    let on_source = [
        "GET {m}a",
        "INCR {m}b",
        "MGET {m}a {m}b",
        "GET {m}gone",
        "SET {m}new v",
        "MGET {m}a {m}gone",
        "DEL {m}gone {m}b",
        "MULTI",
        "GET {m}a",
        "GET {m}gone",
        "EXEC",
        "MULTI",
        "GET {m}a",
        "EXEC",
        "ASKING",
        "GET {m}gone",
    ];
    assert_eq!(
        replies(port, &on_source).await?,
        replies(a.port, &on_source).await?
    );

    // Tessera as the target: its source announced at a's address.
    let target = TestNode::start_with(|port| {
        let mut t = layout(port, 1, true, 1);
        t.intent.nodes[1].port = a.port;
        t
    })
    .await?;
    let on_target = [
        "GET {m}x",
        "SET {m}x 1",
        "ASKING",
        "SET {m}x 1",
        "GET {m}x",
        "ASKING",
        "GET {m}x",
        "ASKING",
        "MGET {m}x {m}y",
        "ASKING",
        "MGET {m}y {m}y",
        "ASKING",
        "MULTI",
        "GET {m}x",
        "EXEC",
        "MULTI",
        "GET {m}x",
        "EXEC",
    ];
    assert_eq!(
        replies(target.addr.port(), &on_target).await?,
        replies(b.port, &on_target).await?
    );
    source.stop().await?;
    target.stop().await
}

/// CLUSTER SETSLOT / ADDSLOTS / DELSLOTS and their RANGE forms check their arguments as a Redis
/// Cluster node does, with the same errors, before anything is asked of the control plane; and
/// a node keeps a slot it still holds keys of (Redis's SETSLOT NODE check).
#[tokio::test]
async fn slot_commands_check_arguments_as_a_redis_cluster_node() -> anyhow::Result<()> {
    let redis = RedisServer::start_with(&["--cluster-enabled", "yes"])?;
    let node = TestNode::start_with(|port| layout(port, 0, false, 1)).await?;
    let commands = [
        "CLUSTER SETSLOT abc STABLE",
        "CLUSTER SETSLOT 16384 STABLE",
        "CLUSTER SETSLOT -1 IMPORTING x",
        "CLUSTER SETSLOT 1 FOO",
        "CLUSTER SETSLOT 1 NODE",
        "CLUSTER SETSLOT 1 STABLE extra",
        "CLUSTER SETSLOT 1 NODE abc",
        "CLUSTER SETSLOT",
        "CLUSTER ADDSLOTS 16384",
        "CLUSTER ADDSLOTS 1 x",
        "CLUSTER DELSLOTS -5",
        "CLUSTER ADDSLOTSRANGE 1 2 3",
        "CLUSTER ADDSLOTSRANGE 5 1",
        "CLUSTER DELSLOTSRANGE 1 x",
        "CLUSTER DELSLOTSRANGE 1",
    ];
    assert_eq!(
        replies(node.addr.port(), &commands).await?,
        replies(redis.port, &commands).await?
    );
    let mut c = node.client().await?;
    let s = slot();
    assert_eq!(line(&mut c, "SET {m}a 1").await?, "+OK");
    assert_eq!(
        line(&mut c, &format!("CLUSTER SETSLOT {s} NODE {OTHER}")).await?,
        format!(
            "-ERR Can't assign hashslot {s} to a different node while I still hold keys for \
             this hash slot."
        )
    );
    node.stop().await
}
