//! Hashes and sets, compared with a real redis-server byte for byte (RESP2 and RESP3), plus the
//! random commands (HRANDFIELD, SRANDMEMBER, SPOP) checked by shape and membership, and the log
//! of every hash and set write replayed to the same keyspace.
//!
//! Redis keeps small hashes and sets in insertion order, ours in hash order: replies whose order is
//! unspecified are compared after sorting their elements (or their field/value pairs).

mod data_support;

use data_support::LoggedNode;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use data_support::{dump_keyspace as dump, node_state as state};
use data_support::{RawClient, TestNode};
use tessera_shard_node::aof::{self, FsyncPolicy};
use tessera_shard_node::cmd;
use tessera_testkit::diff::split_aggregate;
use tessera_testkit::{Differ, RedisServer};

/// One command per line, arguments split on spaces (`<empty>`: an empty argument). A prefix says
/// how to compare: `sorted` sorts the elements of the reply, `pairs` sorts its field/value pairs,
/// `scan` and `scanpairs` do the same to the element list of a SCAN reply.
const SCRIPT: &str = "
FLUSHALL
SET str v
HSET h a 1
HSET h a 2 b 3
HSET h a
HSET h a 1 b
HMSET h a
HMSET h a 1 c 4
HSET str a 1
HMSET str a 1
HGET h a
HGET h zz
HGET nokey a
HGET str a
HSETNX h a 5
HSETNX h new 5
HSETNX str a 5
HSETNX fresh a 5
HMGET h a zz b
HMGET nokey a b
HMGET str a
pairs HGETALL h
HGETALL nokey
HGETALL str
sorted HKEYS h
sorted HVALS h
HKEYS nokey
HVALS str
HLEN h
HLEN nokey
HLEN str
HEXISTS h a
HEXISTS h zz
HEXISTS nokey a
HEXISTS str a
HSTRLEN h a
HSTRLEN h zz
HSTRLEN nokey a
HSTRLEN str a
HSET h long 123456789
HSTRLEN h long
HDEL h zz
HDEL h a zz b
HDEL nokey a
HDEL str a
HDEL fresh a
EXISTS fresh
HINCRBY h n 5
HINCRBY h n -15
HINCRBY h n x
HINCRBY h n 1.5
HINCRBY h n 9223372036854775808
HINCRBY h long 1
HSET h txt abc
HINCRBY h txt 1
HSET h lead 01
HINCRBY h lead 1
HSET h space <sp>1
HINCRBY h space 1
HSET h max 9223372036854775807
HINCRBY h max 1
HINCRBY h max 0
HSET h min -9223372036854775808
HINCRBY h min -1
HINCRBY str a 1
HINCRBY newh f 9223372036854775807
HINCRBYFLOAT h fl 10.5
HINCRBYFLOAT h fl 0.1
HINCRBYFLOAT h fl -10.6
HINCRBYFLOAT h fl 1e3
HINCRBYFLOAT h fl 1000.1
HINCRBYFLOAT h fl x
HINCRBYFLOAT h fl inf
HINCRBYFLOAT h fl -inf
HINCRBYFLOAT h fl nan
HINCRBYFLOAT h fl <empty>
HINCRBYFLOAT h txt 1
HINCRBYFLOAT h n 1.5
HINCRBYFLOAT h n 3
HINCRBYFLOAT h big 1.7e308
HINCRBYFLOAT h big 1.7e308
HINCRBYFLOAT str a 1
HINCRBYFLOAT nofl f inf
EXISTS nofl
HINCRBYFLOAT h e 5.0e3
HINCRBYFLOAT h neg -0.0
HGET h neg
HRANDFIELD nokey
HRANDFIELD nokey 5
HRANDFIELD nokey 5 WITHVALUES
HRANDFIELD str
HRANDFIELD str 1
HRANDFIELD h x
HRANDFIELD h 1.5
HRANDFIELD h 1 WITHVALUE
HRANDFIELD h 1 WITHVALUES x
HRANDFIELD nokey 1 foo
HRANDFIELD h -9223372036854775808
HRANDFIELD h 9223372036854775807 WITHVALUES
HRANDFIELD h -9223372036854775807 WITHVALUES
HRANDFIELD h 4611686018427387904 WITHVALUES
HRANDFIELD h -4611686018427387904 WITHVALUES
HRANDFIELD nokey 9223372036854775807 WITHVALUES
HRANDFIELD h 0
HRANDFIELD h 0 WITHVALUES
HSET one only 1
HRANDFIELD one
HRANDFIELD one 1
HRANDFIELD one 1 WITHVALUES
HRANDFIELD one -3
HRANDFIELD one -2 WITHVALUES
HRANDFIELD one 9223372036854775807
HSCAN h x
HSCAN h -1 COUNT 0
HSCAN h 0 COUNT 0
HSCAN h 0 COUNT x
HSCAN h 0 FOO
HSCAN h 0 MATCH
HSCAN nokey 0
HSCAN nokey 0 COUNT 0
HSCAN str 0
HSCAN str x
HSET hs a 1 b 2 long 3 lx 4
scanpairs HSCAN hs 0
scanpairs HSCAN hs 0 COUNT 1000
scanpairs HSCAN hs 0 MATCH l*
scanpairs HSCAN hs 0 MATCH *x* COUNT 1
scanpairs HSCAN hs 0 MATCH nomatch
scanpairs HSCAN hs 7
TYPE h
SADD s a b c
SADD s a d
SADD str a
SREM s zz
SREM s a zz
SREM nokey a
SREM str a
sorted SMEMBERS s
SMEMBERS nokey
SMEMBERS str
SISMEMBER s b
SISMEMBER s zz
SISMEMBER nokey a
SISMEMBER str a
SMISMEMBER s b zz c
SMISMEMBER nokey a
SMISMEMBER str a
SCARD s
SCARD nokey
SCARD str
SADD single x
SPOP single
EXISTS single
SPOP single
SPOP nokey
SPOP nokey 3
SPOP nokey 0
SPOP str
SPOP str 1
SPOP s -1
SPOP s x
SPOP s 1 2
SPOP s 0
SADD single x y
sorted SPOP single 5
EXISTS single
SRANDMEMBER nokey
SRANDMEMBER nokey 3
SRANDMEMBER nokey -3
SRANDMEMBER str
SRANDMEMBER str 1
SRANDMEMBER s x
SRANDMEMBER s 1 2
SRANDMEMBER s -9223372036854775808
SRANDMEMBER s 0
SADD one x
SRANDMEMBER one
SRANDMEMBER one 1
SRANDMEMBER one 5
SRANDMEMBER one -3
SET {s}str v
SADD {s}set b
SMOVE {s}nokey {s}set a
SMOVE {s}nokey {s}str a
SMOVE {s}set {s}str b
SMOVE {s}str {s}set b
SMOVE {s}set {s}nokey zz
SMOVE s {s}x zz
SMOVE s s b
SMOVE s s zz
SADD {s}src a b
SMOVE {s}src {s}dst a
SMOVE {s}src {s}dst a
SMOVE {s}src {s}dst b
EXISTS {s}src
sorted SMEMBERS {s}dst
SADD {s}dst a
SADD {s}src a
SMOVE {s}src {s}dst a
sorted SMEMBERS {s}dst
SMOVE {s}dst {s}src
SADD {k}a 1 2 3 4
SADD {k}b 3 4 5
SADD {k}c 4 5 6
SET {k}str v
sorted SINTER {k}a {k}b
SINTER {k}a {k}b {k}c
SINTER {k}a {k}none
SINTER {k}none {k}a
SINTER {k}none {k}str
SINTER {k}str {k}none
SINTER {k}a {k}str
SINTER {k}none
sorted SINTER {k}a
sorted SUNION {k}a {k}b {k}c
sorted SUNION {k}a {k}none
SUNION {k}none
SUNION {k}none {k}str
SUNION {k}a {k}str
sorted SDIFF {k}a {k}b
sorted SDIFF {k}a {k}b {k}c
sorted SDIFF {k}a {k}none
SDIFF {k}none {k}a
SDIFF {k}none {k}str
SDIFF {k}a {k}str
SINTERSTORE {k}d {k}a {k}b
sorted SMEMBERS {k}d
SUNIONSTORE {k}d {k}a {k}b
SCARD {k}d
SDIFFSTORE {k}d {k}a {k}b
sorted SMEMBERS {k}d
SDIFFSTORE {k}d {k}a {k}a
EXISTS {k}d
SET {k}d v
SINTERSTORE {k}d {k}a {k}b
TYPE {k}d
SET {k}d v EX 100
SUNIONSTORE {k}d {k}a
TTL {k}d
SINTERSTORE {k}d {k}none {k}a
EXISTS {k}d
SUNIONSTORE {k}d {k}str
SDIFFSTORE {k}d {k}a {k}str
SINTERSTORE {k}a {k}a {k}b
sorted SMEMBERS {k}a
SADD {k}a 1 2
SINTERCARD 2 {k}a {k}b
SINTERCARD 3 {k}a {k}b {k}c
SINTERCARD 2 {k}a {k}none
SINTERCARD 1 {k}a
SINTERCARD 1 {k}a LIMIT 2
SINTERCARD 1 {k}a LIMIT 0
SINTERCARD 1 {k}a LIMIT 100
SINTERCARD 1 {k}a limit 1 LIMIT 3
SINTERCARD 0 {k}a
SINTERCARD -1 {k}a
SINTERCARD x {k}a
SINTERCARD 3 {k}a {k}b
SINTERCARD 1 {k}a LIMIT -1
SINTERCARD 1 {k}a LIMIT x
SINTERCARD 1 {k}a LIMIT
SINTERCARD 1 {k}a FOO 1
SINTERCARD 2 {k}a {k}str
SINTERCARD 2 {k}none {k}str
SINTERCARD 1 {k}none
SSCAN s x
SSCAN s 0 COUNT 0
SSCAN s 0 COUNT -5
SSCAN s 0 BAR
SSCAN nokey 0
SSCAN str 0
scan SSCAN {k}a 0
scan SSCAN {k}a 0 COUNT 1
scan SSCAN {k}a 5
scan SSCAN {k}a 0 MATCH [1-2]
scan SSCAN {k}a 0 MATCH nomatch
SADD many 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
SCARD many
SISMEMBER many 17
SMISMEMBER many 1 31
SINTERCARD 1 many LIMIT 7
TYPE s
HSET
SADD s
SINTERCARD 1
SMOVE a b
SINTER
";

/// Replayed after `HELLO 3`: the replies whose RESP3 shape differs from RESP2.
const RESP3_SCRIPT: &str = "
FLUSHALL
HSET h a 1 b 2
SADD s a b c
SADD {k}a 1 2
SADD {k}b 2 3
SET str v
pairs HGETALL h
HGETALL nokey
HGETALL str
sorted HKEYS h
HKEYS nokey
sorted HVALS h
HMGET h a zz
HGET h zz
HRANDFIELD nokey
HRANDFIELD nokey 3
HRANDFIELD nokey 3 WITHVALUES
HRANDFIELD h 0 WITHVALUES
HSET one f v
HRANDFIELD one 1 WITHVALUES
HRANDFIELD one -2 WITHVALUES
HINCRBYFLOAT h fl 1.5
scanpairs HSCAN h 0
HSCAN nokey 0
sorted SMEMBERS s
SMEMBERS nokey
sorted SINTER {k}a {k}b
SINTER {k}a {k}none
sorted SUNION {k}a {k}b
SUNION {k}none
sorted SDIFF {k}a {k}b
SDIFF {k}none
SMISMEMBER s a zz
SRANDMEMBER nokey
SRANDMEMBER nokey 2
SADD single x
SRANDMEMBER single 1
SRANDMEMBER single 5
SRANDMEMBER single -2
SPOP nokey 2
SPOP s 0
SPOP single 1
SADD single x
SPOP single 5
SPOP nokey
scan SSCAN s 0
SSCAN nokey 0
";

#[tokio::test]
async fn hash_and_set_replies_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(SCRIPT, RESP3_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

/// The bulk strings of a flat array reply.
fn bulks(reply: &[u8]) -> anyhow::Result<(u8, Vec<String>)> {
    let (header, elements) =
        split_aggregate(reply).with_context(|| format!("not an aggregate: {reply:?}"))?;
    let mut out = Vec::new();
    for element in elements {
        let text = String::from_utf8_lossy(&element).into_owned();
        let Some(body) = text.strip_prefix('$') else {
            bail!("not a bulk: {text:?}");
        };
        let Some((_, value)) = body.trim_end_matches("\r\n").split_once("\r\n") else {
            bail!("bad bulk: {text:?}");
        };
        out.push(value.to_string());
    }
    Ok((header[0], out))
}

#[tokio::test]
async fn random_replies_have_redis_shape_and_membership() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut c = node.client().await?;
    c.line("HSET h a 1 b 2 c 3 d 4").await?;
    c.line("SADD s a b c d").await?;
    let fields: HashSet<String> = ["a", "b", "c", "d"].map(String::from).into();
    for _ in 0..20 {
        let one = c.line("HRANDFIELD h").await?;
        assert!(
            fields.iter().any(|f| one == format!("$1\r\n{f}\r\n")),
            "{one}"
        );
        let (_, picked) = bulks(&c.cmd(&[b"HRANDFIELD", b"h", b"3"]).await?)?;
        let distinct: HashSet<&String> = picked.iter().collect();
        assert_eq!((picked.len(), distinct.len()), (3, 3), "{picked:?}");
        assert!(picked.iter().all(|f| fields.contains(f)));
        let (_, picked) = bulks(&c.cmd(&[b"HRANDFIELD", b"h", b"-7"]).await?)?;
        assert_eq!(picked.len(), 7);
        assert!(picked.iter().all(|f| fields.contains(f)));
        let (_, pairs) = bulks(&c.cmd(&[b"HRANDFIELD", b"h", b"-5", b"WITHVALUES"]).await?)?;
        assert_eq!(pairs.len(), 10);
        for pair in pairs.chunks(2) {
            let want = (pair[0].as_bytes()[0] - b'a' + b'1') as char;
            assert_eq!(pair[1], want.to_string(), "{pairs:?}");
        }
        let (_, all) = bulks(&c.cmd(&[b"HRANDFIELD", b"h", b"10"]).await?)?;
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 4);

        let (_, picked) = bulks(&c.cmd(&[b"SRANDMEMBER", b"s", b"2"]).await?)?;
        assert_eq!(picked.iter().collect::<HashSet<_>>().len(), 2);
        assert!(picked.iter().all(|f| fields.contains(f)));
        let (_, picked) = bulks(&c.cmd(&[b"SRANDMEMBER", b"s", b"-9"]).await?)?;
        assert_eq!(picked.len(), 9);
        assert!(picked.iter().all(|f| fields.contains(f)));
    }
    // RESP3: pairs nest.
    let mut r3 = node.client().await?;
    r3.line("HELLO 3").await?;
    let nested = r3.line("HRANDFIELD h -2 WITHVALUES").await?;
    assert!(nested.starts_with("*2\r\n*2\r\n$1\r\n"), "{nested}");
    // SPOP removes what it returns, until nothing is left.
    let mut popped = HashSet::new();
    let (_, two) = bulks(&c.cmd(&[b"SPOP", b"s", b"2"]).await?)?;
    popped.extend(two);
    let one = c.line("SPOP s").await?;
    popped.insert(one.split("\r\n").nth(1).unwrap_or_default().to_string());
    assert_eq!(c.line("SCARD s").await?, ":1\r\n");
    let (_, rest) = bulks(&c.cmd(&[b"SPOP", b"s", b"9"]).await?)?;
    popped.extend(rest);
    assert_eq!(popped, fields);
    assert_eq!(c.line("EXISTS s").await?, ":0\r\n");
    node.stop().await
}

#[tokio::test]
async fn hash_and_set_writes_replay_to_the_same_keyspace() -> anyhow::Result<()> {
    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;
    let script = [
        "HSET h a 1 b 2 c 3",
        "HMSET h d 4",
        "HSETNX h e 5",
        "HSETNX h a 9",
        "HDEL h b zz",
        "HINCRBY h n 7",
        "HINCRBYFLOAT h f 10.5",
        "HINCRBYFLOAT h f 0.1",
        "HINCRBYFLOAT h f 1000.1",
        "HSET gone x 1",
        "HDEL gone x",
        "HSET ttl a 1",
        "PEXPIRE ttl 100000",
        "HSET ttl b 2",
        "SADD s a b c d e f g",
        "SREM s a zz",
        "SPOP s",
        "SPOP s 2",
        "SADD {k}a 1 2 3 4",
        "SADD {k}b 3 4 5",
        "SMOVE {k}a {k}b 1",
        "SMOVE {k}a {k}c 2",
        "SINTERSTORE {k}i {k}a {k}b",
        "SUNIONSTORE {k}u {k}a {k}b {k}c",
        "SDIFFSTORE {k}d {k}b {k}a",
        "SDIFFSTORE {k}u {k}a {k}a",
        "SADD all x y",
        "SPOP all 5",
        "SADD tmp v",
        "PEXPIRE tmp 20",
    ];
    for line in script {
        let reply = client.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    // An expired set read lazily is logged as a DEL.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.line("SCARD tmp").await? != ":0\r\n" {
        assert!(Instant::now() < deadline, "tmp never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.stop().await?;
    log.flush_and_sync().await?;

    let replayed = state(None, addr.port())?;
    let summary = aof::load(&path, |args| cmd::replay(&replayed, args))?;
    assert!(summary.records > 20, "{summary:?}");
    let want = dump(&live.keyspace);
    assert_eq!(dump(&replayed.keyspace), want);
    for key in ["h", "ttl", "s", "{k}i", "{k}d", "{k}c"] {
        assert!(want.contains_key(key.as_bytes()), "{key} missing");
    }
    for key in ["gone", "all", "{k}u", "tmp"] {
        assert!(!want.contains_key(key.as_bytes()), "{key} present");
    }
    Ok(())
}
