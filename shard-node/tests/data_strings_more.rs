//! The rest of the string commands (GETRANGE SUBSTR SETRANGE GETEX MSETNX LCS) and the bitmap
//! commands (SETBIT GETBIT BITCOUNT BITPOS BITOP), compared with a real redis-server byte for byte:
//! a script of edge cases (negative indexes, empty results, wrong types, the 512 MB limits, Redis
//! 7.0's argument order), a seeded random run over bit and byte ranges, and the log of every such
//! write replayed to the same keyspace.

mod data_support;

use data_support::LoggedNode;

use std::time::{Duration, Instant};

use data_support::{dump_keyspace as dump, node_state as state};
use data_support::{RawClient, TestNode};
use tessera_shard_node::aof::{self, FsyncPolicy};
use tessera_shard_node::cmd;
use tessera_testkit::{Differ, Order, RedisServer, Rng};

/// One command per line, arguments split on spaces; `<empty>` is an empty argument and `<sp>` a
/// space inside one. Every reply is compared byte for byte.
const SCRIPT: &str = "
FLUSHALL
SET s foobar
RPUSH list a b
GETRANGE s 0 3
GETRANGE s -3 -1
GETRANGE s 0 -1
GETRANGE s 0 -100
GETRANGE s -100 2
GETRANGE s -1 -3
GETRANGE s 4 2
GETRANGE s 10 20
GETRANGE s 5 5
GETRANGE s 0 9223372036854775807
GETRANGE s -9223372036854775808 -1
GETRANGE missing 0 -1
GETRANGE missing a b
GETRANGE s a 1
GETRANGE s 0 1.5
GETRANGE list 0 1
GETRANGE list -1 -5
GETRANGE s 0
SUBSTR s 1 3
SUBSTR s -2 -1
SUBSTR list 0 1
SET empty <empty>
GETRANGE empty 0 -1
GETRANGE empty 0 0
SETRANGE s 3 BAR
GET s
SETRANGE s 8 xy
GET s
STRLEN s
SETRANGE s 0 <empty>
SETRANGE new 0 <empty>
EXISTS new
SETRANGE new 5 hi
GET new
SETRANGE new -1 x
SETRANGE new x y
SETRANGE list 0 x
SETRANGE list 0 <empty>
SETRANGE list -1 x
SETRANGE new 536870911 xx
SETRANGE new 536870912 x
SETRANGE new 9223372036854775807 x
SETRANGE new2 536870912 x
EXISTS new2
SETRANGE new 536870912 <empty>
SETRANGE new
SET ttl value EX 100
SETRANGE ttl 0 V
TTL ttl
SET g hello
GETEX g
TTL g
GETEX g EX 100
TTL g
GETEX g PX 50000
TTL g
GETEX g EXAT 99999999999
EXPIRETIME g
GETEX g PXAT 99999999999999
PEXPIRETIME g
GETEX g PERSIST
TTL g
GETEX g PERSIST PERSIST
GETEX g EX 10 EX 20
TTL g
GETEX g EX 10 PX 20
GETEX g EX 10 PERSIST
GETEX g PERSIST EX 10
GETEX g KEEPTTL
GETEX g NX
GETEX g GET
GETEX g EX
GETEX g EX 0
GETEX g EX -1
GETEX g PX 0
GETEX g EXAT 0
GETEX g EX abc
GETEX g EX 9223372036854775807
GETEX g PX 9223372036854775807
GETEX g foo
GETEX missing
GETEX missing EX 0
GETEX missing EX abc
GETEX missing foo
GETEX list
GETEX list EX 0
GETEX g EXAT 1
EXISTS g
SET g2 v
GETEX g2 PXAT 1
GET g2
GETEX
MSETNX {m}a 1 {m}b 2
MGET {m}a {m}b
MSETNX {m}b 3 {m}c 4
MGET {m}b {m}c
MSETNX {m}d 1 {m}d 2
GET {m}d
MSETNX {m}e 1 {m}f
MSETNX {m}e
MSETNX
RPUSH {m}l x
MSETNX {m}l 1 {m}g 2
EXISTS {m}g
SET {m}x 1 EX 100
MSETNX {m}x 2
TTL {m}x
MSET {k}a ohmytext {k}b mynewtext
LCS {k}a {k}b
LCS {k}a {k}b LEN
LCS {k}a {k}b len
LCS {k}a {k}b IDX
LCS {k}a {k}b IDX WITHMATCHLEN
LCS {k}a {k}b IDX MINMATCHLEN 4
LCS {k}a {k}b IDX MINMATCHLEN 4 WITHMATCHLEN
LCS {k}a {k}b IDX MINMATCHLEN -5
LCS {k}a {k}b IDX MINMATCHLEN 100
LCS {k}a {k}b LEN MINMATCHLEN 2 WITHMATCHLEN
LCS {k}a {k}b WITHMATCHLEN
LCS {k}a {k}b LEN IDX
LCS {k}a {k}b IDX LEN
LCS {k}a {k}b MINMATCHLEN
LCS {k}a {k}b MINMATCHLEN x
LCS {k}a {k}b foo
LCS {k}a {k}none
LCS {k}none {k}a LEN
LCS {k}none {k}none2 IDX
LCS {k}a {k}a
LCS {k}a {k}a IDX WITHMATCHLEN
RPUSH {k}l x
LCS {k}a {k}l
LCS {k}l {k}a
LCS {k}l {k}a LEN IDX
LCS {k}l {k}a foo
MSET {k}c abcdefghijklmnop {k}d xbcdyyyghijzzmnoq
LCS {k}c {k}d IDX WITHMATCHLEN
LCS {k}d {k}c IDX MINMATCHLEN 2
LCS {k}c {k}d
SETRANGE {k}big 12000 x
SETRANGE {k}big2 12000 y
LCS {k}big {k}big2 LEN
LCS {k}big {k}big2 LEN IDX
LCS {k}a
SETBIT b 7 1
SETBIT b 7 1
SETBIT b 7 0
SETBIT b 7 0
GET b
SETBIT b 0 1
SETBIT b 100 1
STRLEN b
GETBIT b 0
GETBIT b 1
GETBIT b 100
GETBIT b 101
GETBIT b 1000000
GETBIT b 4294967295
GETBIT b 4294967296
GETBIT b -1
GETBIT b x
GETBIT missing 5
GETBIT list 0
GETBIT list x
SETBIT b 4294967296 1
SETBIT b -1 1
SETBIT b x 1
SETBIT b 1 2
SETBIT b 1 -1
SETBIT b 1 x
SETBIT b 1 <empty>
SETBIT list 0 1
SETBIT list x 1
SETBIT list 0 2
SET ttlb x EX 100
SETBIT ttlb 100 1
TTL ttlb
SET bits foobar
BITCOUNT bits
BITCOUNT bits 0 0
BITCOUNT bits 1 1
BITCOUNT bits 0 -1
BITCOUNT bits -2 -1
BITCOUNT bits -1 -2
BITCOUNT bits -1 -2 bad
BITCOUNT bits 2 1
BITCOUNT bits 0 -100
BITCOUNT bits 100 200
BITCOUNT bits -100 -50
BITCOUNT bits 0 0 BYTE
BITCOUNT bits 0 0 byte
BITCOUNT bits 5 30 BIT
BITCOUNT bits 1 1 BIT
BITCOUNT bits 0 47 bit
BITCOUNT bits -5 -1 BIT
BITCOUNT bits 0 1000 BIT
BITCOUNT bits 40 3 BIT
BITCOUNT bits 0 -100 BIT
BITCOUNT bits 0 1 bad
BITCOUNT bits 0
BITCOUNT bits 0 1 2 3
BITCOUNT bits a 1
BITCOUNT bits 0 b
BITCOUNT bits 0 9223372036854775807 BIT
BITCOUNT bits -9223372036854775808 -1 BIT
BITCOUNT missing
BITCOUNT missing 0
BITCOUNT missing a b
BITCOUNT missing 0 1 bad
BITCOUNT list
BITCOUNT list 0 a
BITCOUNT empty
BITCOUNT empty 0 -1
BITCOUNT empty 0 -1 BIT
SETRANGE p 0 <empty>
SETBIT p 3 1
SETBIT p 23 1
SETRANGE zeros 3 <empty>
SET ones <empty>
BITPOS bits 1
BITPOS bits 0
BITPOS bits 1 2
BITPOS bits 1 2 -1
BITPOS bits 1 -1
BITPOS bits 1 7 15 BIT
BITPOS bits 0 7 15 BIT
BITPOS bits 1 7 15 bit
BITPOS bits 0 0 -1 BYTE
BITPOS bits 1 100
BITPOS bits 0 100
BITPOS bits 0 0 -100
BITPOS bits 0 -1 -3
BITPOS bits 1 -1 -3
BITPOS bits 0 3 1
BITPOS bits 2
BITPOS bits -1
BITPOS bits x
BITPOS bits 1 a
BITPOS bits 1 0 a
BITPOS bits 1 0 a bad
BITPOS bits 1 0 1 bad
BITPOS bits 1 0 1 bit extra
BITPOS bits 1 a 1 bit
BITPOS missing 1
BITPOS missing 0
BITPOS missing 1 abc
BITPOS missing 0 1 2 BIT
BITPOS missing 1 0 1 bit extra
BITPOS missing 2
BITPOS list 1
BITPOS list 3
BITPOS list 1 a
BITPOS empty 0
BITPOS empty 1
BITPOS empty 0 0 -1
BITPOS p 1
BITPOS p 0
BITPOS p 1 1
BITPOS p 1 4 23 BIT
BITPOS p 0 20 23 BIT
BITPOS p 1 0 0 BYTE
SET ff <empty>
SETRANGE ff 0 <sp>
BITPOS ff 0
SET {b}1 foobar
SET {b}2 abcdef
SET {b}3 x
BITOP AND {b}and {b}1 {b}2
GET {b}and
BITOP OR {b}or {b}1 {b}2 {b}3
GET {b}or
BITOP XOR {b}xor {b}1 {b}2 {b}3
GET {b}xor
BITOP NOT {b}not {b}3
GET {b}not
BITOP and {b}and2 {b}1 {b}3
GET {b}and2
BITOP AND {b}and3 {b}1 {b}none
GET {b}and3
BITOP OR {b}or2 {b}none {b}3
GET {b}or2
BITOP NOT {b}not2 {b}none
EXISTS {b}not2
SET {b}dest x EX 100
BITOP OR {b}dest {b}3
TTL {b}dest
BITOP AND {b}dest {b}none {b}none2
EXISTS {b}dest
BITOP AND {b}dest {b}none
BITOP NOT {b}not {b}1 {b}2
BITOP NOT {b}not
BITOP FOO {b}x {b}1
BITOP <empty> {b}x {b}1
RPUSH {b}l x
BITOP AND {b}x {b}1 {b}l
BITOP NOT {b}x {b}l
BITOP OR {b}l {b}1
TYPE {b}l
BITOP AND {b}x
";

/// Replayed after `HELLO 3`: LCS IDX is a map there.
const RESP3_SCRIPT: &str = "
LCS {k}a {k}b IDX
LCS {k}a {k}b IDX MINMATCHLEN 4 WITHMATCHLEN
LCS {k}none {k}none2 IDX
LCS {k}a {k}b LEN
GETEX missing
GETRANGE missing 0 1
";

#[tokio::test]
async fn string_and_bit_replies_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(SCRIPT, RESP3_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

/// Thousands of random bit and range commands on a few short values, each reply compared: the
/// index arithmetic (negative, reversed and out-of-range ends, BIT edges inside a byte) is where
/// an implementation most easily drifts from Redis.
#[tokio::test]
async fn random_bit_and_range_commands_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let mut rng = Rng::new(0x5eed_1234_abcd_0001);
    let keys = ["{r}a", "{r}b", "{r}c", "{r}none"];
    let units = ["BIT", "BYTE", "bit"];
    let fills = ["\u{0}", "\u{7f}", "a", "zz", "\u{1}\u{2}", "~", "Q"];
    for _ in 0..4000 {
        let key = rng.pick(&keys);
        let (s, e) = (rng.range(-40, 40), rng.range(-40, 40));
        let line = match rng.range(0, 11) {
            0 | 1 => format!("SETBIT {key} {} {}", rng.range(0, 90), rng.range(0, 1)),
            2 => format!("SETRANGE {key} {} {}", rng.range(0, 12), rng.pick(&fills)),
            3 => format!("GETRANGE {key} {s} {e}"),
            4 => format!("BITCOUNT {key} {s} {e}"),
            5 => format!("BITCOUNT {key} {s} {e} {}", rng.pick(&units)),
            6 => format!("BITPOS {key} {} {s}", rng.range(0, 1)),
            7 => format!("BITPOS {key} {} {s} {e}", rng.range(0, 1)),
            8 => format!(
                "BITPOS {key} {} {s} {e} {}",
                rng.range(0, 1),
                rng.pick(&units)
            ),
            9 => format!(
                "BITOP {} {key} {} {}",
                rng.pick(&["AND", "OR", "XOR"]),
                rng.pick(&keys),
                rng.pick(&keys)
            ),
            10 => format!("BITPOS {key} {}", rng.range(0, 1)),
            _ => format!("GETBIT {key} {}", rng.range(0, 100)),
        };
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        diff.check(&args, Order::Exact, "random").await?;
        if diff.mismatches.len() > 20 {
            break;
        }
    }
    for key in keys {
        let line = format!("GET {key}");
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        diff.check(&args, Order::Exact, "final").await?;
    }
    // LCS over short strings of a small alphabet: many ties, so the walk back and the ranges it
    // emits must follow Redis's choices exactly.
    for _ in 0..400 {
        let word = |rng: &mut Rng| -> String {
            let len = rng.range(1, 14);
            (0..len).map(|_| rng.pick(&["a", "b", "c"])).collect()
        };
        let (x, y) = (word(&mut rng), word(&mut rng));
        for line in [
            format!("MSET {{l}}x {x} {{l}}y {y}"),
            "LCS {l}x {l}y".to_string(),
            "LCS {l}x {l}y IDX WITHMATCHLEN".to_string(),
            "LCS {l}y {l}x IDX MINMATCHLEN 2".to_string(),
        ] {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            diff.check(&args, Order::Exact, "lcs").await?;
        }
        if diff.mismatches.len() > 20 {
            break;
        }
    }
    diff.assert_none();
    node.stop().await
}

#[tokio::test]
async fn string_and_bit_writes_replay_to_the_same_keyspace() -> anyhow::Result<()> {
    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;
    let script = [
        "SET s hello",
        "SETRANGE s 3 LO",
        "SETRANGE s 10 tail",
        "SETRANGE fresh 4 x",
        "SETRANGE s 0 <empty>",
        "SET ttl value EX 1000",
        "SETRANGE ttl 0 V",
        "SETBIT b 7 1",
        "SETBIT b 7 1",
        "SETBIT b 30 1",
        "SETBIT b 7 0",
        "SETBIT ttl 100 1",
        "SET {b}1 foobar",
        "SET {b}2 abcdef",
        "BITOP AND {b}and {b}1 {b}2",
        "BITOP XOR {b}xor {b}1 {b}2",
        "BITOP NOT {b}not {b}1",
        "SET {b}gone x",
        "BITOP OR {b}gone {b}none",
        "SET g1 v",
        "GETEX g1 EX 1000",
        "SET g2 v",
        "GETEX g2 PXAT 99999999999999",
        "SET g3 v EX 1000",
        "GETEX g3 PERSIST",
        "SET g4 v",
        "GETEX g4 EXAT 1",
        "GETEX g1",
        "MSETNX {m}a 1 {m}b 2",
        "MSETNX {m}b 3 {m}c 4",
        "SET tmp v",
        "SETBIT tmp 3 1",
        "PEXPIRE tmp 20",
    ];
    for line in script {
        let args: Vec<&[u8]> = line
            .split(' ')
            .map(|w| {
                if w == "<empty>" {
                    &b""[..]
                } else {
                    w.as_bytes()
                }
            })
            .collect();
        let reply = client.cmd(&args).await?;
        assert!(
            !reply.starts_with(b"-"),
            "{line}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    // An expired value read lazily is logged as a DEL.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.line("GETBIT tmp 3").await? != ":0\r\n" {
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
    for key in [
        "s", "fresh", "ttl", "b", "{b}and", "{b}xor", "{b}not", "g1", "g2", "g3",
    ] {
        assert!(want.contains_key(key.as_bytes()), "{key} missing");
    }
    for key in ["{b}gone", "g4", "{m}c", "tmp"] {
        assert!(!want.contains_key(key.as_bytes()), "{key} present");
    }
    let ttl = |key: &str| want.get(key.as_bytes()).and_then(|e| e.expires_at_ms);
    assert!(ttl("ttl").is_some() && ttl("g1").is_some() && ttl("g2").is_some());
    assert!(ttl("g3").is_none());
    Ok(())
}
