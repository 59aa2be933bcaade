//! Differential tests: the same commands go to a real redis-server and to Tessera, through the
//! proxy and directly to the shard node owning the key, and the replies must match byte for byte
//! (`sorted` lines: as sets of elements). The cluster runs in-process.

use std::net::SocketAddr;
use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_proto::slot::key_hash_slot;
use tessera_testkit::diff::parse_line;
use tessera_testkit::{Differ, RedisServer};

/// Commands of the local-cluster issue, with edge and error cases. Keys sharing a `{tag}` stay in
/// one slot so the node path can run multi-key commands too. Notation: `tessera_testkit::diff`.
const SCRIPT: &str = "
PING
PING hello
PING a b
ECHO hi<sp>there
ECHO
GET {s}missing
SET {s}k v
GET {s}k
SET {s}k v2 NX
SET {s}k v3 XX GET
SET {s}new v XX
SET {s}k v NX XX
SET {s}k v EX 10 PX 100
SET {s}k v EX 0
SET {s}k v EX -5
SET {s}k v EX abc
SET {s}k v KEEPTTL EX 5
SET {s}k v BOGUS
SET {s}ttl v EX 100
TTL {s}ttl
SET {s}ttl v2 KEEPTTL
TTL {s}ttl
SET {s}ttl v3
TTL {s}ttl
SET {s}past v PXAT 1000
GET {s}past
SET {s}k
SETNX {s}k x
SETNX {s}nx x
SETEX {s}ex 100 v
SETEX {s}ex 0 v
SETEX {s}ex -1 v
PSETEX {s}px 100000 v
PSETEX {s}px 0 v
GETSET {s}k gs
GETSET {s}gsnew gs
GETDEL {s}k
GETDEL {s}k
MSET {m}a 1 {m}b 2 {m}c 3
MSET {m}a 1 {m}b
MGET {m}a {m}b {m}nope {m}c
EXISTS {m}a {m}b {m}nope {m}a
DEL {m}a {m}nope
UNLINK {m}b {m}c {m}c
SET {n}i 10
INCR {n}i
DECR {n}i
INCRBY {n}i -20
DECRBY {n}i 5
INCRBY {n}i abc
INCR {n}fresh
SET {n}max 9223372036854775807
INCR {n}max
DECRBY {n}i -9223372036854775808
SET {n}s hello
INCR {n}s
SET {n}f 10.50
INCRBYFLOAT {n}f 0.1
INCRBYFLOAT {n}f -5
INCRBYFLOAT {n}f 5.0e3
INCRBYFLOAT {n}f abc
INCRBYFLOAT {n}s 1
INCRBYFLOAT {n}newf 3
SET {n}sp <sp>1
INCR {n}sp
APPEND {a}x hello
APPEND {a}x <sp>world
GET {a}x
STRLEN {a}x
STRLEN {a}none
SET {e}k v
EXPIRE {e}k 100
TTL {e}k
PERSIST {e}k
PERSIST {e}k
TTL {e}k
TTL {e}none
PTTL {e}none
PTTL {e}k
EXPIRE {e}k abc
EXPIRE {e}none 10
PEXPIRE {e}k 100000
TTL {e}k
EXPIRE {e}k -1
GET {e}k
SET {t}k v
TYPE {t}k
TYPE {t}none
GET
SET onlykey
MGET
DEL
EXISTS
INCR
TTL
NOSUCHCOMMAND a b
nosuchcommand
SET {k}one 1
SET {k}two 2
sorted KEYS {k}*
sorted KEYS {k}t?o
SELECT 0
CONFIG GET save
HSET {h}h f1 v1 f2 v2
HGET {h}h f1
HMGET {h}h f2 nope f1
HLEN {h}h
HINCRBY {h}h n 5
HINCRBYFLOAT {h}h n 0.25
GET {h}h
TYPE {h}h
RPUSH {l}l a b c d
LPUSH {l}l z
LRANGE {l}l 0 -1
LRANGE {l}l -2 100
LINDEX {l}l -1
LPOP {l}l 2
LLEN {l}l
HGET {l}l x
TYPE {l}l
SADD {t}s a b a
SCARD {t}s
SISMEMBER {t}s b
SMISMEMBER {t}s a x
SREM {t}s a x
TYPE {t}s
ZADD {z}z 1 one 2.5 two -3 minus
ZADD {z}z XX GT CH 5 one
ZRANGE {z}z 0 -1 WITHSCORES
ZRANGE {z}z (1 +inf BYSCORE LIMIT 0 1
ZSCORE {z}z two
ZINCRBY {z}z 0.1 two
ZRANK {z}z one
ZADD {z}z nan x
LPUSH {z}z x
TYPE {z}z
RESET
RESET x
HELLO x
HELLO 4
HELLO 3 setname a<sp>b
HELLO 2 auth u
HELLO 2 bogus
CLIENT SETNAME a<sp>b
CLIENT LIST id x
CLIENT LIST type boss
CLIENT LIST foo bar
CLIENT LIST id
CLIENT LIST id -5 99999
SCAN x
SCAN 0 COUNT 0
SCAN 0 COUNT y
SCAN 0 MATCH
SCAN <sp>1
SCAN 0 BOGUS 1
SCAN 0 TYPE
HSCAN {s}nohash x
HSCAN {s}nohash 0 COUNT 0
HSET {s}h f v
HSCAN {s}h 0 COUNT 0
HSCAN {s}h 0 TYPE hash
HSCAN {s}h 0 MATCH f*
RPUSH {bl}l a b c d e f g h i j
BLPOP {bl}l 0x1p3
BLPOP {bl}l 1e1
BRPOP {bl}l 1.5
BLPOP {bl}l -1
BLPOP {bl}l inf
BLPOP {bl}l nan
BLPOP {bl}l <sp>1
BLPOP {bl}l 99999999999999999999
BLPOP {bl}l 1e400
BLMOVE {bl}l {bl}d LEFT RIGHT 0x1p3
BLMOVE {bl}l {bl}d LEFT RIGHT abc
ZADD {bl}z 1 a 2 b 3 c
BZPOPMIN {bl}z 0x1p3
BZPOPMAX {bl}z -1
";

/// Cross-slot forms only the proxy can run (it splits and merges them).
const PROXY_SCRIPT: &str = "
MSET a 1 b 2 c 3 d 4
MGET a b nope c d a
EXISTS a b nope c a
TOUCH a b nope
DEL a b nope
UNLINK c d d
MGET a b c d
DBSIZE
RPUSH {bm}l a b c
BLMPOP 0x1p3 1 {bm}l LEFT
BLMPOP nan 1 {bm}l LEFT
BLMPOP -1 1 {bm}l LEFT
ZADD {bm}z 1 a 2 b
BZMPOP 1e1 1 {bm}z MIN
BZMPOP nan 1 {bm}z BAD
";

/// Commands with no key, or whose first argument is not one, that any node answers alike.
const KEYLESS: [&str; 9] = [
    "PING",
    "SCAN",
    "HELLO",
    "CLIENT",
    "ECHO",
    "SELECT",
    "CONFIG",
    "NOSUCHCOMMAND",
    "nosuchcommand",
];

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn replies_match_redis_server_through_proxy_and_on_nodes() -> anyhow::Result<()> {
    let cluster = InProcessCluster::up(Duration::from_secs(5));
    let oracle = RedisServer::start()?;
    tokio::runtime::Runtime::new()?.block_on(async {
        // Through the proxy: one connection for every case.
        let mut proxy = Differ::connect(oracle.addr(), addr(cluster.proxy_port)).await?;
        proxy.script(SCRIPT, "proxy").await?;
        proxy.script(PROXY_SCRIPT, "proxy").await?;
        proxy.assert_none();
        proxy
            .check(&[b"FLUSHALL"], tessera_testkit::Order::Exact, "proxy")
            .await?;
        proxy
            .check(&[b"DBSIZE"], tessera_testkit::Order::Exact, "proxy")
            .await?;
        proxy.assert_none();

        // Directly on the node that owns each command's first key (the creation order fixes
        // which); KEYS lists only one node's keys, so it goes where the `{k}` keys live.
        let mut nodes = Vec::new();
        for &port in &cluster.node_ports {
            let mut diff = Differ::connect(oracle.addr(), addr(port)).await?;
            diff.ours
                .cmd(&[b"AUTH", cluster.node_secret.as_bytes()])
                .await?;
            nodes.push(diff);
        }
        let owner = |key: &[u8]| match key_hash_slot(key) {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        for line in SCRIPT.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (order, args) = parse_line(line);
            let name = String::from_utf8_lossy(&args[0]).into_owned();
            let node = match args.get(1) {
                _ if name == "KEYS" => owner(b"{k}"),
                Some(key) if !KEYLESS.contains(&name.as_str()) => owner(key),
                _ => 0,
            };
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            nodes[node].check(&args, order, "node").await?;
            if name == "RESET" {
                // RESET logs the client out of the node secret, as Redis's RESET does with
                // requirepass (the oracle has none): log in again, as a client would.
                nodes[node]
                    .ours
                    .cmd(&[b"AUTH", cluster.node_secret.as_bytes()])
                    .await?;
            }
        }
        for diff in &nodes {
            diff.assert_none();
        }
        Ok(())
    })
}
