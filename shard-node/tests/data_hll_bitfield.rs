//! HyperLogLog (PFADD PFCOUNT PFMERGE) and BITFIELD / BITFIELD_RO against a real redis-server 7.0:
//! replies byte for byte in RESP2 and RESP3, and, since a HyperLogLog is a string, its bytes (GET)
//! after every step: sparse values, the promotion to dense at hll-sparse-max-bytes, merges of
//! sparse and dense values, corrupt values, and a seeded random run. Then DUMP / RESTORE of sparse
//! and dense values both ways, and the AOF replay of every write these commands log.

mod data_support;

use data_support::{LoggedNode, RawClient, TestNode};
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_shard_node::aof::{self, FsyncPolicy};
use tessera_shard_node::cmd;
use tessera_testkit::{Differ, Order, RedisServer, Rng};

const HLL_SCRIPT: &str = "
FLUSHALL
PFCOUNT {h}missing
PFCOUNT {h}missing {h}missing2
PFADD {h}a
GET {h}a
PFCOUNT {h}a
GET {h}a
PFADD {h}a
PFADD {h}a x y z
GET {h}a
PFADD {h}a x
PFCOUNT {h}a
GET {h}a
OBJECT ENCODING {h}a
PFADD {h}b z w v u
PFCOUNT {h}a {h}b
PFCOUNT {h}a {h}b {h}missing
GET {h}b
PFMERGE {h}c {h}a {h}b
GET {h}c
PFCOUNT {h}c
PFMERGE {h}c
GET {h}c
PFMERGE {h}new
GET {h}new
PFMERGE {h}a {h}b
GET {h}a
PFMERGE {h}d {h}missing
GET {h}d
SET {h}str hello
PFADD {h}str a
PFCOUNT {h}str
PFCOUNT {h}a {h}str
PFMERGE {h}a {h}str
PFMERGE {h}str {h}a
GET {h}str
SET {h}int 12345
PFADD {h}int a
SET {h}long 12345678901234567890123
PFCOUNT {h}long
SET {h}magic HYLLHYLLHYLLHYLLHYLL
PFCOUNT {h}magic
LPUSH {h}list a
PFADD {h}list a
PFCOUNT {h}list
PFCOUNT {h}a {h}list
PFMERGE {h}list {h}a
PFMERGE {h}a {h}list
PFADD
PFCOUNT
PFMERGE
PFADD {h}e <empty>
PFADD {h}e <sp>
GET {h}e
EXPIRE {h}e 1000
PFADD {h}e more
TTL {h}e
PFCOUNT {h}e
TTL {h}e
PFMERGE {h}e {h}a
TTL {h}e
APPEND {h}a x
PFCOUNT {h}a
";

const BITFIELD_SCRIPT: &str = "
FLUSHALL
BITFIELD k
BITFIELD_RO k
BITFIELD k GET u8 0
GET k
EXISTS k
BITFIELD k SET u8 0 255
GET k
BITFIELD k GET u8 0 GET i8 0 GET u4 4 GET i4 4 GET u1 0 GET i1 0
BITFIELD k SET i8 #1 -100 GET i8 #1 GET u8 #1 GET i8 8
BITFIELD k INCRBY u8 0 1
BITFIELD k INCRBY u8 0 -1
BITFIELD k OVERFLOW SAT INCRBY u8 0 1000 INCRBY u8 0 -1000 INCRBY i8 8 200 INCRBY i8 8 -200
BITFIELD k OVERFLOW FAIL INCRBY u8 0 300 INCRBY u8 0 1 SET u8 0 256 SET u8 0 -1 SET i8 0 128
BITFIELD k OVERFLOW WRAP INCRBY u8 0 300 SET u8 0 256 SET u8 0 -1 SET i8 0 128 SET i8 0 -129
BITFIELD k OVERFLOW SAT SET u8 0 256 SET u8 0 -1 SET i8 0 128 SET i8 0 -129
BITFIELD k overflow fail incrby i16 3 100000 overflow wrap incrby i16 3 100000
BITFIELD k SET i64 0 -1 GET i64 0 GET u63 0 GET u63 1 GET i64 1
BITFIELD k SET i64 0 9223372036854775807 INCRBY i64 0 1
BITFIELD k OVERFLOW SAT INCRBY i64 0 9223372036854775807 INCRBY i64 0 -9223372036854775808
BITFIELD k OVERFLOW SAT INCRBY i64 0 -9223372036854775808 INCRBY i64 0 -1
BITFIELD k OVERFLOW FAIL INCRBY i64 0 -9223372036854775808 INCRBY i64 0 -1
BITFIELD k OVERFLOW WRAP SET i64 0 -9223372036854775808 INCRBY i64 0 -1
BITFIELD k SET u63 0 9223372036854775807 INCRBY u63 0 1 INCRBY u63 0 -1
BITFIELD k OVERFLOW SAT SET u63 0 -1 INCRBY u63 0 9223372036854775807 INCRBY u63 0 -9223372036854775808
BITFIELD k OVERFLOW FAIL SET u63 0 -1 INCRBY u63 0 -9223372036854775808
GET k
BITFIELD k SET u5 3 31 SET i3 13 -4 GET u16 0 GET i7 5 GET u2 100 GET i9 1000
GET k
BITFIELD k SET u1 1000 1
STRLEN k
BITFIELD k SET i8 #200 7 GET i8 #200 GET u3 #10
STRLEN k
BITFIELD k GET u8 100000 GET i64 100000
STRLEN k
BITFIELD_RO k GET u8 0 GET i64 3 GET u8 #125 GET i32 #4
BITFIELD_RO k SET u8 0 1
BITFIELD_RO k INCRBY u8 0 1
BITFIELD_RO k GET u8 0 OVERFLOW SAT
BITFIELD_RO missing GET u8 0
BITFIELD k GET
BITFIELD k GET u8
BITFIELD k SET u8 0
BITFIELD k INCRBY u8 0
BITFIELD k OVERFLOW
BITFIELD k OVERFLOW bad GET u8 0
BITFIELD k GET u8 0 OVERFLOW bad
BITFIELD k FOO u8 0
BITFIELD k GET u64 0
BITFIELD k GET i65 0
BITFIELD k GET i0 0
BITFIELD k GET u0 0
BITFIELD k GET I8 0
BITFIELD k GET U8 0
BITFIELD k GET x8 0
BITFIELD k GET i 0
BITFIELD k GET <empty> 0
BITFIELD k GET i08 0
BITFIELD k GET i-8 0
BITFIELD k GET i8 -1
BITFIELD k GET i8 x
BITFIELD k GET i8 <empty>
BITFIELD k GET i8 #
BITFIELD k GET i8 #-1
BITFIELD k GET i8 ##1
BITFIELD k GET i8 4294967295
BITFIELD k GET i8 4294967296
BITFIELD k GET i8 #536870911
BITFIELD k GET i8 #536870912
BITFIELD k GET i8 #4611686018427387905
BITFIELD k GET i4 #4611686018427387905
BITFIELD k GET i8 #9223372036854775807
BITFIELD k SET i8 0 x
BITFIELD k SET i8 0 1.5
BITFIELD k SET i8 0 9223372036854775808
BITFIELD k SET i8 0 <empty>
BITFIELD k SET u8 0 1 GET u64 0
BITFIELD k INCRBY i8 0 1 OVERFLOW nope
GET k
BITFIELD k get u8 0 SET u8 0 9 incrby u8 0 1 OVERFLOW Sat
LPUSH l a
BITFIELD l GET u8 0
BITFIELD l SET u8 0 1
BITFIELD_RO l GET u8 0
BITFIELD l GET x 0
BITFIELD
BITFIELD_RO
SET n 12345
BITFIELD n GET u8 0 GET u16 8
OBJECT ENCODING n
BITFIELD n SET u8 0 50
GET n
OBJECT ENCODING n
SET e abc EX 1000
BITFIELD e SET u8 0 65
TTL e
GET e
BITFIELD big SET u8 800000 1
BITFIELD big SET u64 0 1
BITFIELD big OVERFLOW FAIL SET u8 80 256
STRLEN big
GET big
";

#[tokio::test]
async fn hyperloglog_replies_and_bytes_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(HLL_SCRIPT, HLL_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

#[tokio::test]
async fn bitfield_replies_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(BITFIELD_SCRIPT, BITFIELD_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

/// Sends `args` to both and records a mismatch (byte for byte).
async fn check(diff: &mut Differ, args: &[&[u8]], label: &str) -> anyhow::Result<()> {
    diff.check(args, Order::Exact, label).await
}

/// PFADD `n` new elements (`prefix` and a counter) to `key` on both, `batch` at a time,
/// comparing the replies, the value's bytes and PFCOUNT after each batch.
async fn grow(
    diff: &mut Differ,
    key: &str,
    prefix: &str,
    n: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let elements: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for chunk in elements.chunks(batch) {
        let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
        args.extend(chunk.iter().map(|e| e.as_bytes()));
        check(diff, &args, "grow").await?;
        check(diff, &[b"GET", key.as_bytes()], "grow").await?;
        check(diff, &[b"PFCOUNT", key.as_bytes()], "grow").await?;
        check(diff, &[b"GET", key.as_bytes()], "grow").await?;
    }
    Ok(())
}

/// Sparse values grow element by element up to the promotion (hll-sparse-max-bytes 3000 by
/// default, and a smaller one set by CONFIG SET), dense ones keep growing; merges of every mix
/// land sparse or dense as in Redis.
#[tokio::test]
async fn promotion_and_merges_match_redis_bytes() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    // One at a time through the promotion, then in large batches to high cardinalities.
    grow(&mut diff, "{p}s", "e", 1800, 1).await?;
    grow(&mut diff, "{p}s", "big", 60_000, 5000).await?;
    grow(&mut diff, "{p}small", "x", 40, 3).await?;
    grow(&mut diff, "{p}mid", "m", 700, 50).await?;
    // A register above 32 forces promotion whatever the length: an element whose hash has a
    // long run of zeros is met among many.
    diff.script(
        "
STRLEN {p}s
STRLEN {p}small
PFMERGE {p}m1 {p}small {p}mid
GET {p}m1
PFCOUNT {p}m1
PFMERGE {p}m2 {p}small {p}s
GET {p}m2
PFCOUNT {p}m2
PFMERGE {p}small {p}s
GET {p}small
PFMERGE {p}s {p}mid {p}nothing
GET {p}s
PFCOUNT {p}s {p}mid {p}m1 {p}nothing
PFCOUNT {p}mid {p}small
PFMERGE {p}mid
GET {p}mid
PFMERGE {p}m3 {p}nothing
PFMERGE {p}m3 {p}mid {p}m1
GET {p}m3
CONFIG SET hll-sparse-max-bytes 200
CONFIG GET hll-sparse-max-bytes
",
        "merges",
    )
    .await?;
    grow(&mut diff, "{p}low", "l", 150, 1).await?;
    diff.script(
        "
PFMERGE {p}low2 {p}small2 {p}low
GET {p}low2
CONFIG SET hll-sparse-max-bytes 0
PFADD {p}zero a
GET {p}zero
PFADD {p}zero b
GET {p}zero
CONFIG SET hll-sparse-max-bytes 1kb
CONFIG GET hll-sparse-max-bytes
CONFIG SET hll-sparse-max-bytes -1
CONFIG SET hll-sparse-max-bytes 9223372036854775808
CONFIG SET hll-sparse-max-bytes abc
CONFIG SET hll-sparse-max-bytes 3000
CONFIG GET hll-sparse-max-bytes
",
        "config",
    )
    .await?;
    diff.assert_none();
    node.stop().await
}

/// Values that pass the header check but whose registers are corrupt, and values that fail it:
/// every command answers as Redis, and leaves the same bytes.
#[tokio::test]
async fn corrupt_values_answer_as_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let header = |encoding: u8, card: [u8; 8]| {
        let mut v = b"HYLL".to_vec();
        v.extend_from_slice(&[encoding, 0, 0, 0]);
        v.extend_from_slice(&card);
        v
    };
    let stale = [0, 0, 0, 0, 0, 0, 0, 0x80];
    let cached = [42, 0, 0, 0, 0, 0, 0, 0];
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Sparse runs short of the 16384 registers (one XZERO of 100).
    let mut v = header(1, stale);
    v.extend_from_slice(&[0x40, 99]);
    cases.push(("{c}short", v));
    // Runs past them.
    let mut v = header(1, stale);
    v.extend_from_slice(&[0x7f, 0xff, 0x7f, 0xff]);
    cases.push(("{c}long", v));
    // A VAL run crossing the end.
    let mut v = header(1, stale);
    v.extend_from_slice(&[0x7f, 0xfd, 0x83]);
    cases.push(("{c}valover", v));
    // A valid cache over corrupt registers: PFCOUNT trusts the cache.
    let mut v = header(1, cached);
    v.extend_from_slice(&[0x40, 99]);
    cases.push(("{c}cached", v));
    // Empty sparse body.
    cases.push(("{c}empty", header(1, stale)));
    // Bad encoding byte, dense of the wrong length, too short for a header.
    cases.push(("{c}enc", header(2, stale)));
    let mut v = header(0, stale);
    v.resize(12303, 0);
    cases.push(("{c}dense-short", v));
    let mut v = header(0, stale);
    v.resize(12304, 0xff);
    cases.push(("{c}dense-max", v));
    cases.push(("{c}tiny", b"HYLL\x01".to_vec()));
    // A well-formed sparse value with a valid cache of a wrong number.
    let mut v = header(1, [7, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&[0x7f, 0xff]);
    cases.push(("{c}liar", v));
    for (key, value) in &cases {
        let key = key.as_bytes();
        for step in [
            &[&b"SET"[..], key, value][..],
            &[b"PFCOUNT", key],
            &[b"GET", key],
            &[b"PFCOUNT", key, b"{c}liar"],
            &[b"PFMERGE", b"{c}dest", key],
            &[b"GET", b"{c}dest"],
            &[b"PFADD", key, b"a", b"b"],
            &[b"GET", key],
            &[b"PFADD", key],
            &[b"PFMERGE", key, b"{c}liar"],
            &[b"GET", key],
            &[b"DEL", b"{c}dest"],
        ] {
            check(&mut diff, step, "corrupt").await?;
        }
    }
    diff.assert_none();
    node.stop().await
}

/// A seeded, bounded random run: elements from a few pools go to a few keys (some to HLLs kept
/// sparse, some driven dense), with merges, multi-key counts and the odd wrong type, comparing
/// every reply and, after each write, the bytes. `TESSERA_RANDOM_SEED` changes the sequence.
#[tokio::test]
async fn random_hll_runs_match_redis() -> anyhow::Result<()> {
    let seed = std::env::var("TESSERA_RANDOM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x411_0000_2026_u64);
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let mut rng = Rng::new(seed);
    const KEYS: [&str; 5] = ["{r}a", "{r}b", "{r}c", "{r}d", "{r}s"];
    check(&mut diff, &[b"SET", b"{r}s", b"plain"], "random").await?;
    for n in 0..1500 {
        let label = format!("seed {seed:#x}, #{n}");
        let key = rng.pick(&KEYS).as_bytes();
        match rng.range(0, 9) {
            0..=5 => {
                let count = if rng.chance(10) {
                    rng.range(100, 800)
                } else {
                    rng.range(1, 6)
                };
                let elements: Vec<Vec<u8>> = (0..count)
                    .map(|_| {
                        let len = rng.range(0, 12) as usize;
                        (0..len).map(|_| rng.range(0, 255) as u8).collect()
                    })
                    .collect();
                let mut args: Vec<&[u8]> = vec![b"PFADD", key];
                args.extend(elements.iter().map(Vec::as_slice));
                check(&mut diff, &args, &label).await?;
                check(&mut diff, &[b"GET", key], &label).await?;
            }
            6 => {
                check(&mut diff, &[b"PFCOUNT", key], &label).await?;
                check(&mut diff, &[b"GET", key], &label).await?;
            }
            7 => {
                let other = rng.pick(&KEYS).as_bytes();
                check(&mut diff, &[b"PFCOUNT", key, other, b"{r}none"], &label).await?;
            }
            8 => {
                let (a, b) = (rng.pick(&KEYS).as_bytes(), rng.pick(&KEYS).as_bytes());
                check(&mut diff, &[b"PFMERGE", key, a, b], &label).await?;
                check(&mut diff, &[b"GET", key], &label).await?;
            }
            _ => {
                if rng.chance(10) {
                    check(&mut diff, &[b"DEL", key], &label).await?;
                } else {
                    check(&mut diff, &[b"STRLEN", key], &label).await?;
                }
            }
        }
        if diff.mismatches.len() > 10 {
            break;
        }
    }
    for key in KEYS {
        check(&mut diff, &[b"GET", key.as_bytes()], "final").await?;
        check(&mut diff, &[b"PFCOUNT", key.as_bytes()], "final").await?;
    }
    diff.assert_none();
    node.stop().await
}

fn bulk(reply: &[u8]) -> anyhow::Result<Vec<u8>> {
    match frame::parse(reply, &FrameLimits::default())? {
        Some((Frame::Bulk(b), _)) => Ok(b.to_vec()),
        other => anyhow::bail!("expected a bulk reply, got {other:?}"),
    }
}

/// Builds a sparse and a dense HLL on `client` under `{d}sparse` / `{d}dense`.
async fn build_pair(client: &mut RawClient) -> anyhow::Result<()> {
    let small: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"PFADD", b"{d}sparse"];
    args.extend(small.iter().map(|e| e.as_bytes()));
    client.cmd(&args).await?;
    let big: Vec<String> = (0..5000).map(|i| format!("d{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"PFADD", b"{d}dense"];
    args.extend(big.iter().map(|e| e.as_bytes()));
    client.cmd(&args).await?;
    Ok(())
}

/// DUMPs the sparse and the dense HLL on `from` and RESTOREs them on `to`: the same bytes arrive,
/// and PFCOUNT, alone and merged with the others, agrees with `from`.
async fn carry(from: &mut RawClient, to: &mut RawClient, label: &str) -> anyhow::Result<()> {
    for key in [&b"{d}sparse"[..], b"{d}dense"] {
        let original = bulk(&from.cmd(&[b"GET", key]).await?)?;
        let payload = bulk(&from.cmd(&[b"DUMP", key]).await?)?;
        let copy = [b"{d}copy-".as_slice(), key].concat();
        let reply = to.cmd(&[b"RESTORE", &copy, b"0", &payload]).await?;
        assert_eq!(&reply[..], b"+OK\r\n", "{label}");
        assert_eq!(bulk(&to.cmd(&[b"GET", &copy]).await?)?, original, "{label}");
        let want = from.cmd(&[b"PFCOUNT", key]).await?;
        assert_eq!(to.cmd(&[b"PFCOUNT", &copy]).await?, want, "{label}");
        let merged = to
            .cmd(&[b"PFCOUNT", &copy, b"{d}sparse", b"{d}dense"])
            .await?;
        let want = from
            .cmd(&[b"PFCOUNT", key, b"{d}sparse", b"{d}dense"])
            .await?;
        assert_eq!(merged, want, "{label}");
        to.cmd(&[b"DEL", &copy]).await?;
    }
    Ok(())
}

/// DUMP on one side, RESTORE on the other, for a sparse and a dense HLL, both ways.
#[tokio::test]
async fn dump_and_restore_carry_hlls_both_ways() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut theirs = RawClient::connect(redis.addr()).await?;
    let mut ours = node.client().await?;
    build_pair(&mut theirs).await?;
    build_pair(&mut ours).await?;
    carry(&mut theirs, &mut ours, "redis to tessera").await?;
    carry(&mut ours, &mut theirs, "tessera to redis").await?;
    node.stop().await
}

/// Every write of these commands replays from the AOF to the same keyspace: PFADD, PFMERGE, the
/// cache a PFCOUNT refreshes (logged as SETRANGE), BITFIELD with writes (also when they all
/// fail), and nothing for reads.
#[tokio::test]
async fn hll_and_bitfield_writes_replay_from_the_aof() -> anyhow::Result<()> {
    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;
    let big: Vec<String> = (0..3000).map(|i| format!("e{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"PFADD", b"{a}dense"];
    args.extend(big.iter().map(|e| e.as_bytes()));
    client.cmd(&args).await?;
    let script = [
        "PFADD {a}sparse a b c",
        "PFCOUNT {a}sparse",
        "PFADD {a}sparse a",
        "PFADD {a}sparse d",
        "PFCOUNT {a}dense",
        "PFCOUNT {a}dense",
        "PFMERGE {a}merged {a}sparse {a}dense",
        "PFCOUNT {a}merged {a}sparse",
        "PFMERGE {a}sparse2 {a}sparse",
        "PFCOUNT {a}sparse2",
        "PFADD {a}empty",
        "BITFIELD bf SET u8 0 200 INCRBY i5 100 3",
        "BITFIELD bf OVERFLOW FAIL INCRBY u8 0 100",
        "BITFIELD bf2 OVERFLOW FAIL SET u4 1000 16",
        "BITFIELD bf GET u8 0",
        "BITFIELD_RO bf GET u8 0",
    ];
    for line in script {
        let reply = client.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    node.stop().await?;
    log.flush_and_sync().await?;
    let replayed = data_support::node_state(None, addr.port())?;
    aof::load(&path, |args| cmd::replay(&replayed, args))?;
    let want = data_support::dump_keyspace(&live.keyspace);
    assert_eq!(want.len(), 7);
    assert_eq!(data_support::dump_keyspace(&replayed.keyspace), want);
    // The caches PFCOUNT refreshed are valid after the replay too.
    let guard = replayed.keyspace.lock_key(b"{a}dense");
    match guard.get(b"{a}dense").map(|e| e.value) {
        Some(tessera_shard_node::keyspace::ValueRef::String(v)) => assert_eq!(v[15] & 0x80, 0),
        other => panic!("{other:?}"),
    }
    Ok(())
}
