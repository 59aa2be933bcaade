//! Transactions and blocking commands through the proxy, against a real three-master Redis
//! Cluster: replies byte for byte as the owning node gives them, CROSSSLOT and EXECABORT, WATCH
//! on a pinned connection, dedicated connections reused from the pool, and blocking commands
//! that neither stall other clients nor time out before their own timeout.

mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use support::{encode, error, same, Client, Harness};
use tessera_proto::resp::Frame;

fn ok() -> Frame {
    Frame::Simple(Bytes::from_static(b"OK"))
}

fn queued() -> Frame {
    Frame::Simple(Bytes::from_static(b"QUEUED"))
}

/// Sends `script` one command at a time to both, comparing the raw replies.
async fn same_replies(proxy: &mut Client, node: &mut Client, script: &[&[&str]]) -> Result<()> {
    for args in script {
        same(proxy, node, args).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_reply_as_the_owning_node() -> Result<()> {
    let h = Harness::start().await?;
    let mut proxy = h.client().await?;
    // `{bar}` hashes to 5061, served by node 0: the node answers exactly as the proxy must.
    let mut node = Client::connect(h.cluster.nodes[0].port).await?;
    let script: &[&[&str]] = &[
        &["EXEC"],
        &["DISCARD"],
        &["MULTI"],
        &["MULTI"],
        &["SET", "{bar}a", "1"],
        &["INCR", "{bar}a"],
        &["LPUSH", "{bar}a", "x"],
        &["GET", "{bar}a"],
        &["EXEC"],
        &["MULTI"],
        &["NOSUCH", "x"],
        &["GET"],
        &["SET", "{bar}a", "2"],
        &["EXEC"],
        &["GET", "{bar}a"],
        &["MULTI"],
        &["WATCH", "{bar}a"],
        &["MSET", "{bar}a", "1", "{foo}b", "2"],
        &["DISCARD"],
        &["WATCH", "{bar}a", "{bar}b"],
        &["MULTI"],
        &["GET", "{bar}a"],
        &["PING"],
        &["ECHO", "hi"],
        &["EXEC"],
        &["UNWATCH"],
        &["MULTI"],
        &["EXEC"],
        &["WATCH", "{bar}a"],
        &["UNWATCH"],
        &["MULTI"],
        &["SET", "{bar}a", "3"],
        &["DISCARD"],
        &["GET", "{bar}a"],
    ];
    same_replies(&mut proxy, &mut node, script).await?;
    // RESP3 (HELLO's reply differs only by the client id).
    proxy.cmd(&["HELLO", "3"]).await?;
    node.cmd(&["HELLO", "3"]).await?;
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "{bar}c", "1"],
        &["GET", "{bar}c"],
        &["GET", "{bar}nothing"],
        &["EXEC"],
    ];
    same_replies(&mut proxy, &mut node, script).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossslot_and_refused_commands_abort_exec() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    let abort = error("EXECABORT Transaction discarded because of previous errors.");
    let crossslot = error("CROSSSLOT Keys in request don't hash to the same slot");
    // A key of another slot than the first key's.
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    assert_eq!(c.cmd(&["SET", "{bar}a", "1"]).await?, queued());
    assert_eq!(c.cmd(&["SET", "foo", "1"]).await?, crossslot);
    assert_eq!(c.cmd(&["GET", "{bar}a"]).await?, queued());
    assert_eq!(c.cmd(&["EXEC"]).await?, abort);
    assert_eq!(c.cmd(&["GET", "{bar}a"]).await?, Frame::Null);
    // Keyless commands before the first key: the key decides.
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    assert_eq!(c.cmd(&["PING"]).await?, queued());
    assert_eq!(c.cmd(&["SET", "foo", "1"]).await?, queued());
    assert_eq!(
        c.cmd(&["EXEC"]).await?,
        Frame::Array(vec![Frame::Simple(Bytes::from_static(b"PONG")), ok()])
    );
    // A whole-keyspace command cannot run inside one shard's transaction.
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    assert!(matches!(c.cmd(&["DBSIZE"]).await?, Frame::Error(_)));
    assert_eq!(c.cmd(&["EXEC"]).await?, abort);
    // WATCH pins a slot: a transaction on another slot is refused.
    assert_eq!(c.cmd(&["WATCH", "{bar}a"]).await?, ok());
    assert_eq!(c.cmd(&["WATCH", "foo"]).await?, crossslot);
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    assert_eq!(c.cmd(&["GET", "foo"]).await?, crossslot);
    assert_eq!(c.cmd(&["EXEC"]).await?, abort);
    assert_eq!(c.cmd(&["WATCH", "foo", "bar"]).await?, crossslot);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_other_clients_writes() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    let mut other = h.client().await?;
    assert_eq!(c.cmd(&["SET", "w", "1"]).await?, ok());
    assert_eq!(c.cmd(&["WATCH", "w"]).await?, ok());
    assert_eq!(other.cmd(&["SET", "w", "2"]).await?, ok());
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    assert_eq!(c.cmd(&["SET", "w", "3"]).await?, queued());
    c.send_raw(&encode(&["EXEC"])).await?;
    assert_eq!(&c.read_raw().await?[..], b"*-1\r\n");
    assert_eq!(c.cmd(&["GET", "w"]).await?, support::bulk("2"));
    // Untouched: it runs.
    assert_eq!(c.cmd(&["WATCH", "w"]).await?, ok());
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    assert_eq!(c.cmd(&["SET", "w", "3"]).await?, queued());
    assert_eq!(c.cmd(&["EXEC"]).await?, Frame::Array(vec![ok()]));
    // A pipelined write before WATCH runs before it (the client's order holds).
    let mut pipeline = encode(&["SET", "w", "4"]);
    pipeline.extend(encode(&["WATCH", "w"]));
    pipeline.extend(encode(&["MULTI"]));
    pipeline.extend(encode(&["GET", "w"]));
    pipeline.extend(encode(&["EXEC"]));
    c.send_raw(&pipeline).await?;
    for want in [ok(), ok(), ok(), queued()] {
        assert_eq!(c.read().await?, want);
    }
    assert_eq!(c.read().await?, Frame::Array(vec![support::bulk("4")]));
    Ok(())
}

/// `total_connections_received` of a redis-server.
async fn connections_received(port: u16) -> Result<u64> {
    let mut c = Client::connect(port).await?;
    let info = c.text(&["INFO", "stats"]).await?;
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap_or("0");
    Ok(line.trim().parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_reuse_pooled_connections() -> Result<()> {
    let h = Harness::start().await?;
    let port = h.cluster.nodes[0].port;
    let mut c = h.client().await?;
    // Warm up: the first transaction (and WATCH) may open the dedicated connection.
    for _ in 0..2 {
        c.cmd(&["WATCH", "{bar}x"]).await?;
        c.cmd(&["MULTI"]).await?;
        c.cmd(&["INCR", "{bar}x"]).await?;
        c.cmd(&["EXEC"]).await?;
    }
    let before = connections_received(port).await?;
    for i in 0..50 {
        if i % 2 == 0 {
            assert_eq!(c.cmd(&["WATCH", "{bar}x"]).await?, ok());
        }
        assert_eq!(c.cmd(&["MULTI"]).await?, ok());
        assert_eq!(c.cmd(&["INCR", "{bar}x"]).await?, queued());
        assert!(matches!(c.cmd(&["EXEC"]).await?, Frame::Array(_)));
        if i % 10 == 0 {
            c.cmd(&["WATCH", "{bar}x"]).await?;
            c.cmd(&["UNWATCH"]).await?;
            c.cmd(&["MULTI"]).await?;
            c.cmd(&["DISCARD"]).await?;
        }
    }
    // One more for our INFO probe itself.
    let after = connections_received(port).await?;
    assert!(
        after <= before + 1,
        "{before} -> {after}: new connections per transaction"
    );
    assert_eq!(c.cmd(&["GET", "{bar}x"]).await?, support::bulk("52"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_wait_without_stalling_others() -> Result<()> {
    // A short backend timeout: a blocking command must still wait for its own timeout.
    let h = Harness::start_with_timeout(Duration::from_millis(500)).await?;
    let mut blocked = h.client().await?;
    let mut other = h.client().await?;
    // `{bar}` keys live on node 0, like the list.
    blocked
        .send_raw(&encode(&["BLPOP", "{bar}list", "0"]))
        .await?;
    // Other clients' traffic to the same node flows meanwhile.
    for i in 0..20 {
        let key = format!("{{bar}}k{i}");
        assert_eq!(other.cmd(&["SET", &key, "v"]).await?, ok());
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        other.cmd(&["RPUSH", "{bar}list", "hello"]).await?,
        Frame::Integer(1)
    );
    assert_eq!(
        blocked.read().await?,
        Frame::Array(vec![support::bulk("{bar}list"), support::bulk("hello")])
    );
    // Its own timeout (1 s, longer than the backend timeout): a null reply, not an error.
    let start = Instant::now();
    blocked
        .send_raw(&encode(&["BRPOP", "{bar}none", "1"]))
        .await?;
    assert_eq!(&blocked.read_raw().await?[..], b"*-1\r\n");
    assert!(start.elapsed() >= Duration::from_millis(900));
    // The family, with keys on one slot; replies as Redis's.
    other.cmd(&["RPUSH", "{bar}l", "a", "b"]).await?;
    other.cmd(&["ZADD", "{bar}z", "1", "m"]).await?;
    assert_eq!(
        blocked
            .cmd(&["BLMOVE", "{bar}l", "{bar}l2", "LEFT", "RIGHT", "0"])
            .await?,
        support::bulk("a")
    );
    assert_eq!(
        blocked
            .cmd(&["BRPOPLPUSH", "{bar}l", "{bar}l2", "0"])
            .await?,
        support::bulk("b")
    );
    assert_eq!(
        blocked
            .cmd(&["BLMPOP", "0", "1", "{bar}l2", "LEFT", "COUNT", "5"])
            .await?,
        Frame::Array(vec![
            support::bulk("{bar}l2"),
            Frame::Array(vec![support::bulk("b"), support::bulk("a")])
        ])
    );
    assert_eq!(
        blocked.cmd(&["BZPOPMIN", "{bar}z", "0.1"]).await?,
        Frame::Array(vec![
            support::bulk("{bar}z"),
            support::bulk("m"),
            support::bulk("1")
        ])
    );
    assert_eq!(
        blocked.cmd(&["BLPOP", "{bar}l", "foo", "0"]).await?,
        error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(
        blocked.cmd(&["BLPOP", "{bar}l", "-1"]).await?,
        error("ERR timeout is negative")
    );
    // A pipelined push after the BLPOP runs after it, as on Redis (so BLPOP times out first).
    let mut pipeline = encode(&["BLPOP", "{bar}p", "0.2"]);
    pipeline.extend(encode(&["RPUSH", "{bar}p", "x"]));
    blocked.send_raw(&pipeline).await?;
    assert_eq!(&blocked.read_raw().await?[..], b"*-1\r\n");
    assert_eq!(blocked.read().await?, Frame::Integer(1));
    // A client that goes away while blocked frees its connection; nothing sticks.
    let mut gone = h.client().await?;
    gone.send_raw(&encode(&["BLPOP", "{bar}never", "0"]))
        .await?;
    drop(gone);
    assert_eq!(
        other.cmd(&["PING"]).await?,
        Frame::Simple(Bytes::from_static(b"PONG"))
    );
    // FCALL (no node implements functions) is unknown, as in a Redis without it.
    assert_eq!(
        other.cmd(&["FCALL", "f", "1", "s"]).await?,
        error("ERR unknown command 'FCALL', with args beginning with: 'f' '1' 's' ")
    );
    // Inside MULTI too: an unserved command is not queued, and EXEC aborts.
    assert_eq!(
        other.cmd(&["MULTI"]).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    assert_eq!(
        other.cmd(&["EVALSHA", "abc", "1", "s"]).await?,
        error("ERR unknown command 'EVALSHA', with args beginning with: 'abc' '1' 's' ")
    );
    assert_eq!(
        other.cmd(&["EXEC"]).await?,
        error("EXECABORT Transaction discarded because of previous errors.")
    );
    Ok(())
}
