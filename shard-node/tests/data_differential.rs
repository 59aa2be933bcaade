//! Differential test: the same command bytes go to a real redis-server and to a shard node, and the
//! reply bytes must be identical. Redis's replies are the specification. Redis runs here in
//! standalone mode, so replies that necessarily differ (CLUSTER, INFO, HELLO's id, CLIENT ID) are
//! left to data_commands.rs; keys are chosen so multi-key commands stay in one slot.

mod data_support;

use std::collections::BTreeSet;

use data_support::TestNode;
use tessera_proto::command::{self, Server};
use tessera_proto::resp::frame::{self, Frame, FrameLimits};
use tessera_testkit::{Differ, RedisServer};

/// Commands, one per line, in `tessera_testkit::diff`'s notation (`sorted` for KEYS and `scan`
/// for SCAN, whose order is the store's own).
const SCRIPT: &str = "
FLUSHALL
PING
PING hello
PING a b
ECHO
ECHO hi
ECHO <empty>
GET missing
SET k v
GET k
GET k extra
SET k v NX
SET k v2 XX
GET k
SET k v NX XX
SET k v XX NX
SET k v EX 10 PX 100
SET k v KEEPTTL EX 10
SET k v EX 10 KEEPTTL
SET k v EX 10 EX 20
SET k v NX NX
SET k v EX 0
SET k v EX -1
SET k v PX 0
SET k v EXAT 0
SET k v PXAT -5
SET k v EX abc
SET k v EX
SET k v FOO
SET k v EX 9223372036854775807
SET k v EX 9223372036854775
SET k v PX 9223372036854775807
SET k v GET
SET newkey v GET
SET k v NX GET
SET k v XX GET
SET k v EX 100
TTL k
SET k v2 KEEPTTL
TTL k
SET k v3
TTL k
SET k v EXAT 99999999999
TTL k
SET k v PXAT 99999999999999
TTL k
SET past v PXAT 1
GET past
EXISTS past
SETNX k x
SETNX k2 x
GET k2
SETEX k3 100 v
TTL k3
SETEX k3 0 v
SETEX k3 -5 v
SETEX k3 abc v
SETEX k3 100
PSETEX k4 100000 v
PSETEX k4 0 v
GETSET k new
GETSET nokey new
GETSET k
GETDEL k
GETDEL k
MSET {t}a 1 {t}b 2
MSET {t}a 1 {t}b
MSET
MGET {t}a {t}b {t}c
INCR {t}a
INCRBY {t}a 10
INCRBY {t}a abc
INCRBY {t}a 1.5
INCRBY {t}a 01
DECR {t}a
DECRBY {t}a 5
DECRBY {t}a -9223372036854775808
INCRBY {t}a 9223372036854775807
SET n 9223372036854775807
INCR n
SET n -9223372036854775808
DECR n
SET n <sp>1
INCR n
SET n 1<sp>
INCR n
SET s hello
INCR s
INCRBYFLOAT s 1
INCRBYFLOAT f 10.5
INCRBYFLOAT f 0.1
INCRBYFLOAT f -5
INCRBYFLOAT f 1e-20
INCRBYFLOAT f2 5.0e3
INCRBYFLOAT f2 2.0e2
INCRBYFLOAT f2 abc
INCRBYFLOAT f2 inf
INCRBYFLOAT f2 -inf
INCRBYFLOAT f2 nan
INCRBYFLOAT f2 <empty>
INCRBYFLOAT f2 <sp>1
INCRBYFLOAT f3 1000.1
INCRBYFLOAT f3 0.0000000000000000001
INCRBYFLOAT f4 123456.789
INCRBYFLOAT f4 -123456.789
INCRBYFLOAT f5 1e300
INCRBYFLOAT f5 1e300
INCRBYFLOAT f6 -0.1
INCRBYFLOAT f6 .1
INCRBYFLOAT f7 1e400
INCRBYFLOAT f8 3
INCRBYFLOAT f8 3.0e0
INCR f8
INCRBYFLOAT f9 0.3333333333333333333333
INCRBYFLOAT f9 0.6666666666666666666667
APPEND ap hello
APPEND ap _world
APPEND ap <empty>
STRLEN ap
STRLEN nokey
GET ap
DEL ap {ap}nokey
DEL ap
DEL nokey
DEL
EXISTS {t}a {t}a {t}b {t}nokey
TOUCH {t}a {t}nokey
UNLINK {t}b
EXPIRE {t}a 100
TTL {t}a
PEXPIRE {t}a 100000
TTL {t}a
EXPIRE {t}a 100 NX
EXPIRE {t}a 100 XX
EXPIRE {t}a 50 GT
EXPIRE {t}a 500 GT
EXPIRE {t}a 50 LT
TTL {t}a
EXPIRE {t}a 100 NX XX
EXPIRE {t}a 100 GT LT
EXPIRE {t}a 100 FOO
EXPIRE {t}a abc
EXPIRE {t}a 9223372036854775807
PEXPIRE {t}a 9223372036854775807
EXPIRE nokey 100
PERSIST {t}a
PERSIST {t}a
PERSIST nokey
TTL {t}a
PTTL nokey
TTL nokey
PTTL {t}a
EXPIRE {t}a 200 XX
EXPIRE {t}a 200 GT
EXPIRE {t}a -1
EXISTS {t}a
GET {t}a
PEXPIRE {t}c 0
SET e v
EXPIREAT e 1
GET e
SET e2 v
PEXPIREAT e2 99999999999999
TTL e2
TYPE e2
TYPE nokey
TYPE s
DBSIZE
sorted KEYS *
sorted KEYS f*
sorted KEYS f[2-4]
sorted KEYS ?
sorted KEYS *[^0-9]
sorted KEYS {t}*
sorted KEYS \\{t\\}*
scan SCAN 0 COUNT 1000
scan SCAN 0 COUNT 1000 MATCH f*
scan SCAN 0 COUNT 1000 TYPE string
scan SCAN 0 COUNT 1000 TYPE list
SCAN abc
SCAN -
SCAN 0 COUNT 0
SCAN 0 COUNT -1
SCAN 0 COUNT abc
SCAN 0 FOO
SCAN 0 MATCH
SCAN
KEYS
FLUSHALL FOO
FLUSHALL ASYNC
SET again v
FLUSHDB SYNC
FLUSHDB a b
DBSIZE
RANDOMKEY
sorted KEYS *
scan SCAN 0
SET only v
RANDOMKEY
AUTH x
AUTH default x
AUTH nobody x
AUTH a b c
SELECT 0
SELECT abc
SELECT 99999999999
CLIENT SETNAME a_b
CLIENT GETNAME
CLIENT SETNAME a<sp>b
CLIENT SETNAME <empty>
CLIENT GETNAME
CLIENT FOO
CLIENT SETNAME
CLIENT GETNAME x
CLIENT
CONFIG GET save
CONFIG GET appendonly
CONFIG GET nosuchparam
CONFIG FOO
CONFIG SET foo bar
CONFIG GET
COMMAND FOO
COMMAND COUNT x
unknowncmd
UNKNOWNCMD a b
GET
SET k
MGET
DBSIZE x
TYPE
STRLEN a b
INCR
SETNX k
PERSIST
TTL
EXPIRE k
HELLO 4
HELLO 1
HELLO abc
HELLO 2 FOO
HELLO 2 AUTH default
HELLO 3 AUTH nobody pass
HELLO 2 SETNAME a<sp>b
COMMAND INFO get mget incr
COMMAND INFO nosuch
COMMAND GETKEYS set k v
COMMAND GETKEYS mset a 1 b 2
COMMAND GETKEYS ping
COMMAND GETKEYS nosuch
COMMAND GETKEYS get
QUIT
";

/// Replayed after `HELLO 3` (whose reply holds the connection id, so it is not compared): RESP3
/// nulls, maps, doubles-as-bulk and verbatim strings.
const RESP3_SCRIPT: &str = "
FLUSHALL
GET {k}missing
SET {k}a v
GET {k}a
MGET {k}a {k}missing
SET {k}a v NX
SET {k}a v XX GET
GETDEL {k}nothing
RANDOMKEY
INCRBYFLOAT {k}f 1.5
CONFIG GET save
CONFIG GET nosuch
TTL {k}a
EXISTS {k}a
CLIENT GETNAME
SCAN 0 COUNT 1000 MATCH {k}a
COMMAND INFO get nosuch
PING
PING hi
ECHO hi
DEL {k}a {k}f
RANDOMKEY
";

#[tokio::test]
async fn replies_match_redis_byte_for_byte() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(SCRIPT, RESP3_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

#[tokio::test]
async fn protocol_errors_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let long_inline = "a".repeat(70 * 1024);
    let cases: Vec<Vec<u8>> = vec![
        b"*1\r\n$-5\r\n".to_vec(),
        b"*abc\r\n".to_vec(),
        b"*1\r\nfoo\r\n".to_vec(),
        b"*1\r\n$536870913\r\n".to_vec(),
        b"*1\r\n$abc\r\n".to_vec(),
        b"*3000000000\r\n".to_vec(),
        b"SET \"a b\r\n".to_vec(),
        b"PING\r\nGET\r\nSET k \"quoted value\"\r\nGET k\r\nQUIT\r\n".to_vec(),
        b"\r\n\r\nPING\r\n*0\r\n*-1\r\nQUIT\r\n".to_vec(),
        b"*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n*1\r\n$4\r\nQUIT\r\n".to_vec(),
        b"*1\r\n$4\r\nPING\r\n*1\r\n$-1\r\n".to_vec(),
        long_inline.into_bytes(),
    ];
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    for case in &cases {
        diff.exchange(case, "").await?;
    }
    diff.assert_none();
    node.stop().await
}

/// RESET (run inside MULTI, after WATCH, in subscribed mode, after CLIENT SETNAME) and the
/// blocking commands' timeouts in Redis's long-double syntax: lists and sorted sets hold data,
/// so a timeout that parses is answered at once and one that does not gets Redis's error.
const RESET_AND_TIMEOUTS: &str = "
FLUSHALL
RESET extra
CLIENT SETNAME before
MULTI
SET {r}k v
RESET
CLIENT GETNAME
EXEC
GET {r}k
WATCH {r}k
RESET
SET {r}k mine
MULTI
GET {r}k
EXEC
SUBSCRIBE ch
RESET
PING
PSUBSCRIBE p*
SSUBSCRIBE ch
RESET
PING
RPUSH {b}l a b c d e f g h i j k l m n o p
BLPOP {b}l 0x1p3
BLPOP {b}l 1e1
BRPOP {b}l 0X.8
BLPOP {b}l 1.5
BLPOP {b}l -1
BLPOP {b}l -0.0001
BLPOP {b}l inf
BLPOP {b}l -inf
BLPOP {b}l nan
BLPOP {b}l <sp>1
BLPOP {b}l 1<sp>
BLPOP {b}l <empty>
BLPOP {b}l 99999999999999999999
BLPOP {b}l 1e400
BLPOP {b}l 0x1p99999
BLMOVE {b}l {b}d LEFT RIGHT 0x1p3
BLMOVE {b}l {b}d LEFT RIGHT abc
BRPOPLPUSH {b}l {b}d 2.5
BLMPOP 0x1p3 1 {b}l LEFT COUNT 2
BLMPOP nan 1 {b}l LEFT
BLMPOP -1 1 {b}l LEFT
ZADD {b}z 1 a 2 b 3 c 4 d
BZPOPMIN {b}z 0x1p3
BZPOPMAX {b}z 1e1
BZPOPMIN {b}z -1
BZMPOP 1.5 1 {b}z MIN
BZMPOP -1 1 {b}z MIN
BZMPOP nan 1 {b}z BAD
";

#[tokio::test]
async fn reset_and_blocking_timeouts_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.script(RESET_AND_TIMEOUTS, "RESP2").await?;
    // RESET leaves RESP3 (HELLO's reply holds the connection id, so it is not compared).
    diff.resp3().await?;
    diff.script("GET {r}missing\nRESET\nGET {r}missing", "RESP3")
        .await?;
    diff.assert_none();
    node.stop().await
}

/// A command no node implements is not advertised and is unknown, exactly as on a redis-server
/// whose config renames those very commands away (`rename-command NAME ""` removes a command
/// from Redis's table): COMMAND COUNT, LIST, INFO, DOCS, GETKEYS and the commands themselves.
#[tokio::test]
async fn unimplemented_commands_are_unknown_as_in_redis_without_them() -> anyhow::Result<()> {
    let unimplemented: Vec<&str> = command::all()
        .iter()
        .filter(|spec| !spec.served_by(Server::ShardNode))
        .map(|spec| spec.name)
        .collect();
    assert!(unimplemented.contains(&"fcall") && unimplemented.contains(&"eval"));
    let renames: Vec<&str> = unimplemented
        .iter()
        .flat_map(|name| ["--rename-command", name, ""])
        .collect();
    let redis = RedisServer::start_with(&renames)?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.script(
        "
COMMAND COUNT
COMMAND INFO get fcall eval pfadd
COMMAND INFO fcall
COMMAND DOCS fcall pfdebug
COMMAND GETKEYS fcall f 1 k
COMMAND GETKEYS get k
FCALL f 1 {x}s
FCALL
EVAL return<sp>1 0
PFSELFTEST
PFDEBUG GETREG {x}h
ACL WHOAMI
TIME
MONITOR
MULTI
EVALSHA abc 0
SET {x}k v
EXEC
GET {x}k
",
        "unimplemented",
    )
    .await?;
    diff.assert_none();
    // COMMAND LIST: the same names, and CLIENT SETINFO (of Redis 7.2, which clients send on
    // connect) on the node only.
    let list = |reply: &[u8]| -> anyhow::Result<BTreeSet<Vec<u8>>> {
        match frame::parse(reply, &FrameLimits::default()) {
            Ok(Some((Frame::Array(items), _))) => Ok(items
                .into_iter()
                .filter_map(|item| match item {
                    Frame::Bulk(name) => Some(name.to_vec()),
                    _ => None,
                })
                .collect()),
            other => anyhow::bail!("COMMAND LIST answered {other:?}"),
        }
    };
    let mut want = list(&diff.theirs.cmd(&[b"COMMAND", b"LIST"]).await?)?;
    want.insert(b"client|setinfo".to_vec());
    assert_eq!(list(&diff.ours.cmd(&[b"COMMAND", b"LIST"]).await?)?, want);
    node.stop().await
}
