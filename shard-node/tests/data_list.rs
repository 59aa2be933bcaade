//! Lists on a shard node: every non-blocking list command and its errors compared byte for byte
//! with a real redis-server (RESP2 and RESP3), and the blocking commands driven with several
//! clients: one blocks and another pushes, waiters served in the order they blocked, timeouts,
//! BLMOVE chains, pipelines behind a blocked command, disconnects, redirects and shutdown.
//! Multi-key commands use `{t}` hash tags so they stay in one slot.

mod data_support;

use data_support::{until_blocked, until_blocked_on};

use data_support::LoggedNode;

use std::time::{Duration, Instant};

use data_support::{dump_keyspace as dump, node_state as state};
use data_support::{encode, words, RawClient, TestNode};
use tessera_proto::topology::Topology;
use tessera_testkit::{Differ, RedisServer};

/// One command per line, arguments split on spaces; `<empty>` is an empty argument. Blocking
/// commands here either find data, fail, or time out after 10 ms.
const SCRIPT: &str = "
FLUSHALL
LPUSH l a b c
RPUSH l d e
LRANGE l 0 -1
LLEN l
LLEN missing
LPUSHX missing a
RPUSHX missing a
EXISTS missing
LPUSHX l x y
RPUSHX l z
LRANGE l 0 -1
LRANGE l -3 -1
LRANGE l -100 100
LRANGE l 5 2
LRANGE l 100 200
LRANGE l a 1
LRANGE l 0 b
LRANGE missing 0 -1
LRANGE missing a -1
LRANGE l -9223372036854775808 9223372036854775807
LRANGE l 9223372036854775807 -9223372036854775808
LINDEX l 0
LINDEX l -1
LINDEX l 100
LINDEX l -100
LINDEX l abc
LINDEX missing abc
LSET l 0 first
LSET l -1 last
LSET l 100 x
LSET l -100 x
LSET l abc x
LSET missing 0 x
LSET missing abc x
LRANGE l 0 -1
LINSERT l BEFORE c new
LINSERT l after c new2
LINSERT l BEFORE nothere x
LINSERT l MIDDLE c x
LINSERT missing BEFORE c x
LINSERT missing MIDDLE c x
LRANGE l 0 -1
LREM l 0 zz
RPUSH r a b a c a b a
LREM r 2 a
LRANGE r 0 -1
LREM r -1 a
LRANGE r 0 -1
LREM r 0 a
LRANGE r 0 -1
LREM r abc a
LREM missing 1 a
LREM missing abc a
LREM r -9223372036854775808 b
LRANGE r 0 -1
LREM r 9223372036854775807 c
EXISTS r
LTRIM l 1 -2
LRANGE l 0 -1
LTRIM l 0 0
LRANGE l 0 -1
LTRIM l 0 100
LTRIM l 5 1
EXISTS l
LTRIM missing 0 1
LTRIM l a 1
LTRIM missing 0 b
RPUSH p a b c a b c a
LPOS p a
LPOS p a RANK 2
LPOS p a RANK -1
LPOS p a RANK -2
LPOS p a COUNT 0
LPOS p a COUNT 2
LPOS p a RANK 2 COUNT 0
LPOS p a RANK -1 COUNT 2
LPOS p a MAXLEN 1
LPOS p a MAXLEN 3 COUNT 0
LPOS p c RANK -1 MAXLEN 2
LPOS p c RANK -1 MAXLEN 3
LPOS p a RANK 2 RANK 3
LPOS p z
LPOS p z COUNT 0
LPOS missing a
LPOS missing a COUNT 1
LPOS p a RANK 0
LPOS p a RANK abc
LPOS p a RANK -9223372036854775808
LPOS p a RANK -9223372036854775807
LPOS p a RANK -9223372036854775808 COUNT 1
LPOS p a RANK 9223372036854775807
LPOS p a COUNT -1
LPOS p a COUNT abc
LPOS p a MAXLEN -1
LPOS p a MAXLEN abc
LPOS p a RANK
LPOS p a FOO 1
LPOS p a RANK 100
LPOS p a RANK 100 COUNT 1
LPOS missing a RANK 0
RPUSH q 1 2 3 4 5
LPOP q
RPOP q
LPOP q 2
RPOP q 0
LPOP q 100
EXISTS q
LPOP q
LPOP q 2
LPOP q 0
RPOP q 0
LPOP q -1
LPOP q abc
LPOP q 1 2
RPOP q
SET s v
LPUSH s a
RPUSH s a
LPUSHX s a
RPUSHX s a
LPOP s
LPOP s 1
LPOP s -1
RPOP s
LLEN s
LRANGE s 0 1
LRANGE s a 1
LINDEX s 0
LINDEX s abc
LSET s 0 a
LINSERT s BEFORE a b
LINSERT s MIDDLE a b
LREM s 1 a
LTRIM s 0 1
LPOS s a
LPOS s a RANK 0
RPUSH {t}src a b c
LMOVE {t}src {t}dst LEFT RIGHT
LMOVE {t}src {t}dst right left
LRANGE {t}src 0 -1
LRANGE {t}dst 0 -1
LMOVE {t}src {t}src LEFT RIGHT
LMOVE {t}src {t}src RIGHT RIGHT
LMOVE {t}src {t}dst UP LEFT
LMOVE {t}src {t}dst LEFT DOWN
LMOVE {t}missing {t}dst LEFT LEFT
LMOVE {t}missing {t}dst LEFT DOWN
SET {t}str v
LMOVE {t}src {t}str LEFT LEFT
LMOVE {t}str {t}dst LEFT LEFT
LMOVE {t}missing {t}str LEFT LEFT
LRANGE {t}src 0 -1
RPOPLPUSH {t}src {t}dst
EXISTS {t}src
RPOPLPUSH {t}src {t}dst
RPOPLPUSH {t}dst {t}str
RPOPLPUSH {t}str {t}dst
LRANGE {t}dst 0 -1
LMPOP 2 {t}missing {t}dst LEFT
LMPOP 2 {t}missing {t}dst RIGHT COUNT 10
LMPOP 1 {t}dst LEFT
LMPOP 2 {t}a {t}b LEFT
LMPOP 0 {t}a LEFT
LMPOP -1 {t}a LEFT
LMPOP abc {t}a LEFT
LMPOP 5 {t}a LEFT
LMPOP 9223372036854775807 {t}a LEFT
LMPOP 1 {t}a MIDDLE
LMPOP 1 {t}a LEFT COUNT 0
LMPOP 1 {t}a LEFT COUNT -1
LMPOP 1 {t}a LEFT COUNT abc
LMPOP 1 {t}a LEFT COUNT
LMPOP 1 {t}a LEFT COUNT 1 COUNT 1
LMPOP 1 {t}a LEFT FOO
LMPOP 1 {t}str LEFT
RPUSH {t}b x y z
LMPOP 2 {t}a {t}b RIGHT COUNT 2
LMPOP 2 {t}str {t}b LEFT
LMPOP 2 {t}b {t}str LEFT
EXISTS {t}b
RPUSH {t}bl a b c
BLPOP {t}empty {t}bl 0
BRPOP {t}empty {t}bl 0
BLPOP {t}empty 0.01
BRPOP {t}empty {t}empty2 0.01
BLPOP {t}str 0
BLPOP {t}empty {t}str 0
BLPOP {t}bl -1
BLPOP {t}bl abc
BLPOP {t}bl inf
BLPOP {t}bl -inf
BLPOP {t}bl nan
BLPOP {t}bl <empty>
BLPOP {t}bl 1e400
BLPOP {t}bl 1e3x
BLPOP {t}empty 0x1p-7
BLPOP {t}empty 0x1p99999
BLPOP {t}empty 0x1p9999
BLPOP {t}empty -0x1
BLPOP {t}empty 0x
BLPOP {t}empty 1e-400
BLPOP {t}empty 0.001
BLMPOP 0 2 {t}empty {t}bl LEFT COUNT 5
EXISTS {t}bl
BLMPOP 0.01 1 {t}empty RIGHT
BLMPOP 0 0 {t}bl LEFT
BLMPOP abc 1 {t}bl LEFT
BLMPOP -1 1 {t}bl LEFT
BLMPOP abc 0 {t}bl LEFT
BLMPOP 0 1 {t}bl MIDDLE
BLMPOP 0 1 {t}str LEFT
BLMPOP 0 1 {t}bl LEFT COUNT 0
RPUSH {t}bl a b
BLMOVE {t}bl {t}dst LEFT RIGHT 0
BLMOVE {t}bl {t}dst LEFT UP 0
BLMOVE {t}bl {t}dst LEFT RIGHT -1
BLMOVE {t}bl {t}dst LEFT RIGHT abc
BLMOVE {t}bl {t}str LEFT RIGHT 0
BLMOVE {t}str {t}dst LEFT RIGHT 0
BLMOVE {t}empty {t}dst LEFT RIGHT 0.01
BLMOVE {t}empty {t}str LEFT RIGHT 0.01
BRPOPLPUSH {t}bl {t}dst 0
BRPOPLPUSH {t}bl {t}dst 0.01
BRPOPLPUSH {t}bl {t}dst abc
BRPOPLPUSH {t}str {t}dst 0
LRANGE {t}dst 0 -1
BLPOP
BLPOP k
BLMPOP 0 1
BLMOVE a b LEFT RIGHT
LPUSH k
LINSERT k BEFORE a
LPOS k
LMPOP 1
TYPE {t}dst
";

/// Replayed after `HELLO 3`: the RESP3 nulls of the list commands.
const RESP3_SCRIPT: &str = "
FLUSHALL
LPOP missing
LPOP missing 1
RPUSH l a
LPOP l 0
LINDEX l 5
LINDEX missing 0
LPOS l z
LPOS l z COUNT 0
LMOVE {x}m {x}d LEFT LEFT
RPOPLPUSH {x}m {x}d
LMPOP 1 missing LEFT
BLPOP missing 0.01
BLMOVE {x}m {x}d LEFT LEFT 0.01
BRPOPLPUSH {x}m {x}d 0.01
BLMPOP 0.01 1 missing LEFT
LRANGE l 0 -1
BLPOP l 0
";

#[tokio::test]
async fn list_replies_match_redis_byte_for_byte() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(SCRIPT, RESP3_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

/// Sends a command without reading its reply (it blocks).
async fn send(client: &mut RawClient, line: &str) -> anyhow::Result<()> {
    client.send_raw(&encode(&words(line))).await
}

fn text(reply: bytes::Bytes) -> String {
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn a_push_wakes_a_blocked_pop() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut waiter = node.client().await?;
    let mut pusher = node.client().await?;
    send(&mut waiter, "BLPOP {t}a {t}k 0").await?;
    until_blocked(&node, 1).await?;
    assert_eq!(pusher.line("RPUSH {t}k x y").await?, ":2\r\n");
    assert_eq!(
        text(waiter.read_reply().await?),
        "*2\r\n$4\r\n{t}k\r\n$1\r\nx\r\n"
    );
    until_blocked(&node, 0).await?;
    assert_eq!(pusher.line("LRANGE {t}k 0 -1").await?, "*1\r\n$1\r\ny\r\n");
    // The served client runs its next command normally.
    assert_eq!(waiter.line("PING").await?, "+PONG\r\n");
    node.stop().await
}

#[tokio::test]
async fn waiters_are_served_first_come_first_served() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut client = node.client().await?;
        send(&mut client, "BRPOP k 0").await?;
        until_blocked(&node, i + 1).await?;
        waiters.push(client);
    }
    let mut pusher = node.client().await?;
    // Two elements for three waiters: the first two blocked get one each, in order.
    assert_eq!(pusher.line("RPUSH k a b").await?, ":2\r\n");
    assert_eq!(
        text(waiters[0].read_reply().await?),
        "*2\r\n$1\r\nk\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        text(waiters[1].read_reply().await?),
        "*2\r\n$1\r\nk\r\n$1\r\na\r\n"
    );
    until_blocked(&node, 1).await?;
    assert_eq!(pusher.line("EXISTS k").await?, ":0\r\n");
    assert_eq!(pusher.line("LPUSH k c").await?, ":1\r\n");
    assert_eq!(
        text(waiters[2].read_reply().await?),
        "*2\r\n$1\r\nk\r\n$1\r\nc\r\n"
    );
    until_blocked(&node, 0).await?;
    node.stop().await
}

#[tokio::test]
async fn timeouts_answer_null_and_unregister() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    let started = Instant::now();
    assert_eq!(client.line("BLPOP k 0.2").await?, "*-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert_eq!(
        client.line("BLMOVE {t}a {t}b LEFT LEFT 0.05").await?,
        "*-1\r\n"
    );
    assert_eq!(
        client.line("BLMPOP 0.05 1 k LEFT COUNT 2").await?,
        "*-1\r\n"
    );
    assert!(client.line("HELLO 3").await?.starts_with('%'));
    assert_eq!(client.line("BRPOPLPUSH {t}a {t}b 0.05").await?, "_\r\n");
    until_blocked(&node, 0).await?;
    // A push after the timeout is not taken by anyone.
    assert_eq!(client.line("LPUSH k v").await?, ":1\r\n");
    assert_eq!(client.line("LLEN k").await?, ":1\r\n");
    node.stop().await
}

#[tokio::test]
async fn blmove_is_served_and_chains_to_the_next_waiter() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut mover = node.client().await?;
    let mut popper = node.client().await?;
    let mut counter = node.client().await?;
    let mut pusher = node.client().await?;
    send(&mut mover, "BLMOVE {q}src {q}dst RIGHT LEFT 0").await?;
    until_blocked(&node, 1).await?;
    send(&mut popper, "BLPOP {q}dst 0").await?;
    until_blocked(&node, 2).await?;
    send(&mut counter, "BLMPOP 0 1 {q}src LEFT COUNT 5").await?;
    until_blocked(&node, 3).await?;
    // x y z: the mover takes z (RIGHT) into dst, where the popper takes it; the BLMPOP waiter
    // gets what is left of src.
    assert_eq!(pusher.line("RPUSH {q}src x y z").await?, ":3\r\n");
    assert_eq!(text(mover.read_reply().await?), "$1\r\nz\r\n");
    assert_eq!(
        text(popper.read_reply().await?),
        "*2\r\n$6\r\n{q}dst\r\n$1\r\nz\r\n"
    );
    assert_eq!(
        text(counter.read_reply().await?),
        "*2\r\n$6\r\n{q}src\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n"
    );
    until_blocked(&node, 0).await?;
    assert_eq!(pusher.line("EXISTS {q}src {q}dst").await?, ":0\r\n");

    // A destination of the wrong type answers the mover WRONGTYPE and moves nothing.
    assert_eq!(pusher.line("SET {q}dst s").await?, "+OK\r\n");
    send(&mut mover, "BRPOPLPUSH {q}src {q}dst 0").await?;
    until_blocked(&node, 1).await?;
    assert_eq!(pusher.line("RPUSH {q}src a").await?, ":1\r\n");
    assert_eq!(
        text(mover.read_reply().await?),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(pusher.line("LLEN {q}src").await?, ":1\r\n");
    node.stop().await
}

#[tokio::test]
async fn a_key_of_another_type_keeps_list_waiters_blocked() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut waiter = node.client().await?;
    let mut other = node.client().await?;
    send(&mut waiter, "BLPOP k 0").await?;
    until_blocked(&node, 1).await?;
    assert_eq!(other.line("SET k v").await?, "+OK\r\n");
    assert_eq!(other.line("DEL k").await?, ":1\r\n");
    until_blocked(&node, 1).await?;
    assert_eq!(other.line("RPUSH k v").await?, ":1\r\n");
    assert_eq!(
        text(waiter.read_reply().await?),
        "*2\r\n$1\r\nk\r\n$1\r\nv\r\n"
    );
    node.stop().await
}

#[tokio::test]
async fn a_pipeline_resumes_after_the_blocked_command() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    let mut pusher = node.client().await?;
    let mut batch = encode(&words("PING"));
    batch.extend(encode(&words("BLPOP k 0")));
    batch.extend(encode(&words("LLEN k")));
    client.send_raw(&batch).await?;
    assert_eq!(text(client.read_reply().await?), "+PONG\r\n");
    until_blocked(&node, 1).await?;
    assert!(client.pending().is_empty(), "no reply while blocked");
    assert_eq!(pusher.line("RPUSH k a b").await?, ":2\r\n");
    assert_eq!(
        text(client.read_reply().await?),
        "*2\r\n$1\r\nk\r\n$1\r\na\r\n"
    );
    assert_eq!(text(client.read_reply().await?), ":1\r\n");
    node.stop().await
}

#[tokio::test]
async fn a_client_that_leaves_while_blocked_is_forgotten() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    send(&mut client, "BLPOP k 0").await?;
    until_blocked(&node, 1).await?;
    drop(client);
    until_blocked(&node, 0).await?;
    let mut pusher = node.client().await?;
    assert_eq!(pusher.line("RPUSH k a").await?, ":1\r\n");
    assert_eq!(pusher.line("LLEN k").await?, ":1\r\n");
    node.stop().await
}

#[tokio::test]
async fn shutdown_releases_blocked_clients() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    send(&mut client, "BLPOP k 0").await?;
    until_blocked(&node, 1).await?;
    let state = node.state.clone();
    // `stop` fails if the server does not stop in time.
    node.stop().await?;
    assert!(client.closed().await?);
    assert_eq!(state.keyspace.blocking().blocked_clients(), 0);
    Ok(())
}

#[tokio::test]
async fn a_slot_that_moves_away_redirects_its_blocked_clients() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    // "foo" hashes to slot 12182, which the split topology gives to another node.
    send(&mut client, "BLPOP foo 0").await?;
    until_blocked(&node, 1).await?;
    let mut moved: Topology = data_support::split_topology(node.addr.port());
    moved.version = 2;
    assert!(node.state.cluster.offer_topology(moved));
    assert_eq!(
        text(client.read_reply().await?),
        "-MOVED 12182 127.0.0.1:7999\r\n"
    );
    until_blocked(&node, 0).await?;
    node.stop().await
}

/// Every list write, blocked pops served by a writer included, replays from the AOF to the same
/// keyspace (the served pop is logged as the LPOP / LMOVE it did, after the push that fed it).
#[tokio::test]
async fn list_writes_replay_from_the_aof() -> anyhow::Result<()> {
    use tessera_shard_node::aof::{self, FsyncPolicy};
    use tessera_shard_node::cmd;

    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;
    let mut waiter = RawClient::connect(addr).await?;
    let mut mover = RawClient::connect(addr).await?;

    for line in [
        "RPUSH l a b c d e f g",
        "LPUSH l z",
        "LPUSHX l y",
        "RPUSHX l h",
        "LPOP l",
        "RPOP l 2",
        "LSET l 1 B",
        "LINSERT l AFTER B bb",
        "LREM l 1 c",
        "LTRIM l 0 4",
        "RPUSH {t}s 1 2 3 4",
        "LMOVE {t}s {t}d LEFT RIGHT",
        "RPOPLPUSH {t}s {t}d",
        "LMPOP 2 {t}x {t}s RIGHT COUNT 5",
        "RPUSH {t}s 5 6",
        "BLPOP {t}s 0",
        "BLMOVE {t}s {t}d RIGHT LEFT 0",
        "BLMPOP 0 1 {t}d LEFT COUNT 2",
    ] {
        let reply = client.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    send(&mut waiter, "BRPOP {w}a 0").await?;
    until_blocked_on(&live, 1).await?;
    send(&mut mover, "BRPOPLPUSH {w}a {w}b 0").await?;
    until_blocked_on(&live, 2).await?;
    assert_eq!(client.line("RPUSH {w}a 1 2 3").await?, ":3\r\n");
    assert_eq!(
        text(waiter.read_reply().await?),
        "*2\r\n$4\r\n{w}a\r\n$1\r\n3\r\n"
    );
    assert_eq!(text(mover.read_reply().await?), "$1\r\n2\r\n");

    node.stop().await?;
    log.flush_and_sync().await?;
    let replayed = state(None, addr.port())?;
    aof::load(&path, |args| cmd::replay(&replayed, args))?;
    let want = dump(&live.keyspace);
    assert!(want.contains_key(b"{w}b".as_slice()) && want.contains_key(b"l".as_slice()));
    assert_eq!(dump(&replayed.keyspace), want);
    Ok(())
}

/// `until_blocked` for a node state served without a `TestNode`.
/// Many blocked poppers, plain poppers and pushers on one key: every element pushed is popped
/// exactly once (a writer serving waiters under the slot lock never loses or duplicates one).
#[tokio::test]
async fn no_element_is_lost_or_doubled_under_contention() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const PUSHERS: usize = 4;
    const PER_PUSHER: usize = 200;
    const TOTAL: usize = PUSHERS * PER_PUSHER;
    let node = TestNode::start().await?;
    let taken = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for i in 0..8 {
        let mut client = node.client().await?;
        let taken = taken.clone();
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while taken.load(Ordering::SeqCst) < TOTAL {
                let line = if i % 4 == 3 { "LPOP k" } else { "BLPOP k 0.05" };
                let reply = text(client.cmd(&words(line)).await?);
                // `*2 $1 k $N value` from BLPOP, `$N value` from LPOP; nulls otherwise.
                let value = match reply.split("\r\n").collect::<Vec<_>>()[..] {
                    ["*2", _, "k", _, value, ""] | [_, value, ""] if !reply.starts_with("$-1") => {
                        Some(value.to_string())
                    }
                    _ => None,
                };
                if let Some(value) = value {
                    taken.fetch_add(1, Ordering::SeqCst);
                    got.push(value);
                }
            }
            anyhow::Ok(got)
        }));
    }
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let mut client = node.client().await?;
        pushers.push(tokio::spawn(async move {
            for n in 0..PER_PUSHER {
                let reply = client.line(&format!("RPUSH k v{p}-{n}")).await?;
                anyhow::ensure!(reply.starts_with(':'), "RPUSH: {reply}");
            }
            anyhow::Ok(())
        }));
    }
    for pusher in pushers {
        pusher.await??;
    }
    let mut all = Vec::new();
    for consumer in consumers {
        all.extend(consumer.await??);
    }
    all.sort();
    let mut want: Vec<String> = (0..PUSHERS)
        .flat_map(|p| (0..PER_PUSHER).map(move |n| format!("v{p}-{n}")))
        .collect();
    want.sort();
    assert_eq!(all, want);
    until_blocked(&node, 0).await?;
    node.stop().await
}
