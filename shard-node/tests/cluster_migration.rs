//! A slot being moved, as Redis's getNodeByQuery answers for it: on the source (MIGRATING), keys
//! still here are served, keys gone answer ASK, a mix answers TRYAGAIN; on the target
//! (IMPORTING), only a command behind ASKING (or RESTORE-ASKING) is served, and a multi-key one
//! over keys not all here yet answers TRYAGAIN. The move's state comes from the topology.

mod data_support;

use data_support::{node, RawClient, TestNode, MYSELF, OTHER};
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::{SlotMigration, Topology};

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
    // A transaction is judged by all its keys at EXEC, and discarded by the redirect.
    for command in ["MULTI", "GET {m}a", "GET {m}gone"] {
        line(&mut c, command).await?;
    }
    assert_eq!(line(&mut c, "EXEC").await?, tryagain);
    for command in ["MULTI", "SET {m}new v"] {
        line(&mut c, command).await?;
    }
    assert_eq!(line(&mut c, "EXEC").await?, ask);
    assert_eq!(line(&mut c, "EXEC").await?, "-ERR EXEC without MULTI");
    // Other slots and keyless commands are untouched.
    assert_eq!(line(&mut c, "SET {b}other 1").await?, "+OK");
    assert_eq!(line(&mut c, "PING").await?, "+PONG");
    // ASKING changes nothing on the source.
    assert_eq!(line(&mut c, "ASKING").await?, "+OK");
    assert_eq!(line(&mut c, "GET {m}gone").await?, ask);
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
