//! What the data path logs replays to the same keyspace: relative expiries logged as absolute,
//! lazy and active expiry logged as DEL, INCRBYFLOAT as SET .. KEEPTTL, FLUSHALL, and so on.

mod data_support;

use data_support::LoggedNode;

use std::time::{Duration, Instant};

use data_support::{dump_keyspace as dump, node_state as state};
use tessera_shard_node::aof::{self, FsyncPolicy};
use tessera_shard_node::cmd;

#[tokio::test]
async fn the_log_replays_to_the_same_keyspace() -> anyhow::Result<()> {
    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = data_support::RawClient::connect(addr).await?;

    let script = [
        "SET z 1",
        "FLUSHALL",
        "SET a 1",
        "SET b 2 EX 1000",
        "SET c 3 PX 30",
        "SETEX d 1000 v",
        "PSETEX e 100000 v",
        "INCR n",
        "INCRBY n 5",
        "DECRBY n 2",
        "INCRBYFLOAT f 10.5",
        "INCRBYFLOAT f 0.1",
        "APPEND a xyz",
        "APPEND new abc",
        "GETSET g new",
        "GETDEL b",
        "MSET {m}1 a {m}2 b",
        "DEL {m}1",
        "EXPIRE a 1000",
        "PEXPIRE g 50000",
        "PERSIST g",
        "SET t v EX 100",
        "SET t v2 KEEPTTL",
        "SET gone v",
        "EXPIRE gone -1",
        "SET at v EXAT 99999999999",
        "SET nx v NX",
        "SET nx w NX",
        "SET act v PX 20",
        "PEXPIREAT d 99999999999999",
        "SET old v PXAT 1",
        "SETNX sn 1",
        "UNLINK new",
    ];
    for line in script {
        let reply = client.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    // `act` goes by active expiry, `c` by a lazy read.
    let deadline = Instant::now() + Duration::from_secs(5);
    while live.keyspace.lock_key(b"act").get(b"act").is_some() {
        assert!(
            Instant::now() < deadline,
            "active expiry never reclaimed act"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.line("GET c").await?, "$-1\r\n");
    assert_eq!(client.line("GET old").await?, "$-1\r\n");

    node.stop().await?;
    log.flush_and_sync().await?;

    let replayed = state(None, addr.port())?;
    let summary = aof::load(&path, |args| cmd::replay(&replayed, args))?;
    assert!(summary.records > 20, "{summary:?}");
    let want = dump(&live.keyspace);
    assert_eq!(dump(&replayed.keyspace), want);
    assert!(want.contains_key(b"a".as_slice()) && !want.contains_key(b"c".as_slice()));
    assert_eq!(replayed.keyspace.len(), live.keyspace.len());
    assert_eq!(
        replayed.keyspace.volatile_len(),
        live.keyspace.volatile_len()
    );
    Ok(())
}

#[test]
fn replay_refuses_what_is_not_a_write() -> anyhow::Result<()> {
    let replayed = state(None, 7000)?;
    let args = |line: &str| {
        line.split(' ')
            .map(|w| bytes::Bytes::from(w.to_string()))
            .collect::<Vec<_>>()
    };
    assert!(cmd::replay(&replayed, args("SET k v PXAT 99999999999999")).is_ok());
    assert!(cmd::replay(&replayed, args("GET k")).is_err());
    assert!(cmd::replay(&replayed, args("NOSUCH k")).is_err());
    assert!(cmd::replay(&replayed, args("SET k")).is_err());
    assert!(cmd::replay(&replayed, args("INCR k")).is_err());
    // An expiry in the past replays as a TTL, not a deletion (the DEL follows in the log).
    assert!(cmd::replay(&replayed, args("PEXPIREAT k 1")).is_ok());
    assert_eq!(replayed.keyspace.len(), 1);
    Ok(())
}

#[test]
fn replay_never_expires_keys_by_its_own_clock() -> anyhow::Result<()> {
    let replayed = state(None, 7000)?;
    let args = |line: &str| {
        line.split(' ')
            .map(|w| bytes::Bytes::from(w.to_string()))
            .collect::<Vec<_>>()
    };
    // Logged while the key was live; replayed long after its TTL: the INCR must see it.
    cmd::replay(&replayed, args("SET k 5 PXAT 1000")).map_err(anyhow::Error::msg)?;
    cmd::replay(&replayed, args("INCR k")).map_err(anyhow::Error::msg)?;
    let guard = replayed.keyspace.lock_key(b"k");
    let entry = guard.get(b"k").expect("k replayed");
    assert_eq!(entry.expires_at_ms, Some(1000));
    assert!(matches!(
        entry.value,
        tessera_shard_node::keyspace::ValueRef::String(b"6")
    ));
    Ok(())
}
