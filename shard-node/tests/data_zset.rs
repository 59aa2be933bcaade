//! Sorted sets, differential: the same commands go to a real redis-server and to a shard node and
//! the reply bytes must match, in RESP2 and RESP3. Keys share the `{z}` hash tag so multi-key
//! commands stay in one slot. Random replies (ZRANDMEMBER) are checked by shape instead.

mod data_support;

use data_support::LoggedNode;

use data_support::{dump_keyspace as dump, node_state as state};
use data_support::{RawClient, TestNode};
use tessera_testkit::{Differ, RedisServer};

const SCRIPT: &str = "
FLUSHALL
ZADD {z}a 1 one 2 two 3 three
ZADD {z}a 1 one
ZADD {z}a CH 5 one 2 two 7 seven
ZADD {z}a NX 10 one 11 eleven
ZADD {z}a XX 12 one 13 thirteen
ZADD {z}a XX CH 12 one 14 two
ZADD {z}a GT CH 1 one 20 two
ZADD {z}a LT CH 1 one 30 two
ZADD {z}a NX XX 1 x
ZADD {z}a XX NX 1 x
ZADD {z}a NX GT 1 x
ZADD {z}a NX LT 1 x
ZADD {z}a GT LT 1 x
ZADD {z}a INCR 1 x 2 y
ZADD {z}a INCR 5 one
ZADD {z}a INCR XX 5 nosuch
ZADD {z}a INCR NX 5 one
ZADD {z}a INCR GT -100 one
ZADD {z}a INCR LT -1 one
ZADD {z}a 1
ZADD {z}a 1 a 2
ZADD {z}a
ZADD {z}a abc x
ZADD {z}a nan x
ZADD {z}a 1e400 x
ZADD {z}a 1e-400 x
ZADD {z}a <sp>1 x
ZADD {z}a <empty> x
ZADD {z}a FOO 1 x
ZADD {z}a inf pinf -inf ninf +inf pinf2 -0 negzero 0.1 tenth 1e20 big 1.5e-5 small 123456789.123 mid
ZRANGE {z}a 0 -1 WITHSCORES
ZADD {z}a INCR -inf pinf
ZADD {z}a INCR inf pinf
ZINCRBY {z}a 1 tenth
ZINCRBY {z}a 0.2 tenth
ZINCRBY {z}a abc tenth
ZINCRBY {z}a -inf ninf
ZINCRBY {z}a inf ninf
ZINCRBY {z}new 3 m
ZINCRBY {z}a 1
ZADD {z}xx XX 1 a
EXISTS {z}xx
ZADD {z}xx XX INCR 1 a
EXISTS {z}xx
SET {z}str v
ZADD {z}str 1 a
ZADD {z}str NX XX 1 a
ZADD {z}str abc a
ZINCRBY {z}str 1 a
ZREM {z}str a
ZSCORE {z}str a
ZMSCORE {z}str a
ZCARD {z}str
ZCOUNT {z}str 0 1
ZCOUNT {z}str x 1
ZLEXCOUNT {z}str - +
ZLEXCOUNT {z}str x +
ZRANK {z}str a
ZREVRANK {z}str a
ZRANGE {z}str 0 -1
ZRANGE {z}str x 1
ZRANGESTORE {z}d {z}str 0 -1
ZPOPMIN {z}str
ZPOPMAX {z}str 1
ZMPOP 1 {z}str MIN
ZMPOP 2 {z}nokey {z}str MIN
ZREMRANGEBYRANK {z}str 0 1
ZREMRANGEBYSCORE {z}str 0 1
ZREMRANGEBYLEX {z}str - +
ZRANDMEMBER {z}str
ZRANDMEMBER {z}str 1
ZSCAN {z}str 0
ZSCAN {z}str x
ZUNION 1 {z}str
ZINTERSTORE {z}d 1 {z}str
ZDIFF 2 {z}a {z}str
ZINTERCARD 1 {z}str
DEL {z}a
ZADD {z}a 1 a 2 b 3 c 4 d 5 e
ZREM {z}a a x
ZREM {z}a x
ZREM {z}nokey a
ZREM {z}a
ZREM {z}a b c d e
EXISTS {z}a
ZADD {z}a 1 a 2 b 3 c 4 d 5 e
ZSCORE {z}a c
ZSCORE {z}a x
ZSCORE {z}nokey x
ZSCORE {z}a
ZMSCORE {z}a a x e
ZMSCORE {z}nokey a b
ZMSCORE {z}a
ZCARD {z}a
ZCARD {z}nokey
ZCARD {z}a x
ZCOUNT {z}a 2 4
ZCOUNT {z}a (2 4
ZCOUNT {z}a (2 (4
ZCOUNT {z}a -inf +inf
ZCOUNT {z}a ( +inf
ZCOUNT {z}a <empty> 10
ZCOUNT {z}a <sp>2 10
ZCOUNT {z}a 4 2
ZCOUNT {z}a (3 3
ZCOUNT {z}a a 3
ZCOUNT {z}a 1 3x
ZCOUNT {z}a nan 3
ZCOUNT {z}nokey 1 3
ZCOUNT {z}nokey a 3
ZRANK {z}a a
ZRANK {z}a e
ZRANK {z}a x
ZRANK {z}nokey x
ZREVRANK {z}a a
ZREVRANK {z}a e
ZREVRANK {z}a x
ZRANK {z}a a extra
ZRANGE {z}a 0 -1
ZRANGE {z}a 0 -1 WITHSCORES
ZRANGE {z}a 1 3
ZRANGE {z}a -2 -1
ZRANGE {z}a -100 100
ZRANGE {z}a 3 1
ZRANGE {z}a 5 10
ZRANGE {z}a -1 -2
ZRANGE {z}a 0 0 withscores
ZRANGE {z}a a 1
ZRANGE {z}a 0 1.5
ZRANGE {z}a 0 -1 REV
ZRANGE {z}a 0 1 REV WITHSCORES
ZRANGE {z}a 0 -1 REV REV
ZRANGE {z}a 0 -1 LIMIT 0 1
ZRANGE {z}a 0 -1 LIMIT 0 -1
ZRANGE {z}a 0 -1 LIMIT 0
ZRANGE {z}a 0 -1 LIMIT x 1
ZRANGE {z}a 0 -1 FOO
ZRANGE {z}a 2 4 BYSCORE
ZRANGE {z}a (2 4 BYSCORE WITHSCORES
ZRANGE {z}a 4 2 BYSCORE REV
ZRANGE {z}a 4 (2 BYSCORE REV WITHSCORES
ZRANGE {z}a -inf +inf BYSCORE LIMIT 1 2
ZRANGE {z}a -inf +inf BYSCORE LIMIT 1 0
ZRANGE {z}a -inf +inf BYSCORE LIMIT -1 2
ZRANGE {z}a -inf +inf BYSCORE LIMIT 10 2
ZRANGE {z}a -inf +inf BYSCORE LIMIT 4 5
ZRANGE {z}a +inf -inf BYSCORE REV LIMIT 1 2
ZRANGE {z}a 0 -1 BYSCORE BYLEX
ZRANGE {z}a 0 -1 BYLEX
ZRANGE {z}a - + BYLEX
ZRANGE {z}a - + BYLEX WITHSCORES
ZRANGE {z}a a b BYSCORE
ZRANGE {z}nokey 0 -1
ZRANGE {z}nokey a b
ZRANGE {z}nokey 0 -1 BYSCORE
ZRANGEBYSCORE {z}a 2 4
ZRANGEBYSCORE {z}a 2 4 WITHSCORES
ZRANGEBYSCORE {z}a -inf +inf LIMIT 2 2 WITHSCORES
ZRANGEBYSCORE {z}a -inf +inf REV
ZRANGEBYSCORE {z}a -inf +inf BYSCORE
ZRANGEBYSCORE {z}a x 2
ZRANGEBYSCORE {z}a 2
ZREVRANGEBYSCORE {z}a 4 2
ZREVRANGEBYSCORE {z}a 2 4
ZREVRANGEBYSCORE {z}a +inf -inf WITHSCORES LIMIT 0 2
ZREVRANGEBYSCORE {z}a (4 (1
ZREVRANGE {z}a 0 1
ZREVRANGE {z}a 0 -1 WITHSCORES
ZREVRANGE {z}a 0 -1 REV
ZREVRANGE {z}a 0 -1 BYSCORE
ZREVRANGE {z}a 0 -1 LIMIT 0 1
ZADD {z}l 0 a 0 b 0 c 0 d 0 e 0 f 0 g
ZRANGEBYLEX {z}l - +
ZRANGEBYLEX {z}l - (c
ZRANGEBYLEX {z}l [aaa (g
ZRANGEBYLEX {z}l [b [d
ZRANGEBYLEX {z}l (b (d
ZRANGEBYLEX {z}l - + LIMIT 2 3
ZRANGEBYLEX {z}l - + LIMIT -1 3
ZRANGEBYLEX {z}l - + LIMIT 10 3
ZRANGEBYLEX {z}l - + LIMIT 1 -1
ZRANGEBYLEX {z}l - -
ZRANGEBYLEX {z}l + +
ZRANGEBYLEX {z}l + -
ZRANGEBYLEX {z}l [c [c
ZRANGEBYLEX {z}l (c [c
ZRANGEBYLEX {z}l a +
ZRANGEBYLEX {z}l - b
ZRANGEBYLEX {z}l -- +
ZRANGEBYLEX {z}l - +a
ZRANGEBYLEX {z}l - + WITHSCORES
ZRANGEBYLEX {z}l <empty> +
ZREVRANGEBYLEX {z}l + -
ZREVRANGEBYLEX {z}l [d (a
ZREVRANGEBYLEX {z}l + - LIMIT 1 2
ZREVRANGEBYLEX {z}l - +
ZRANGE {z}l [b [e BYLEX REV
ZRANGE {z}l [e [b BYLEX REV LIMIT 1 2
ZLEXCOUNT {z}l - +
ZLEXCOUNT {z}l [b (e
ZLEXCOUNT {z}l (e [b
ZLEXCOUNT {z}l x +
ZLEXCOUNT {z}nokey - +
ZRANGESTORE {z}d {z}a 0 2
ZRANGE {z}d 0 -1 WITHSCORES
ZRANGESTORE {z}d {z}a 2 4 BYSCORE
ZRANGE {z}d 0 -1 WITHSCORES
ZRANGESTORE {z}d {z}a 4 2 BYSCORE REV LIMIT 0 2
ZRANGE {z}d 0 -1 WITHSCORES
ZRANGESTORE {z}d {z}l [b [d BYLEX
ZRANGE {z}d 0 -1 WITHSCORES
ZRANGESTORE {z}d {z}a 0 -1 WITHSCORES
ZRANGESTORE {z}d {z}a 5 10
EXISTS {z}d
SET {z}s2 v
ZRANGESTORE {z}s2 {z}a 0 0
TYPE {z}s2
ZRANGESTORE {z}d {z}nokey 0 -1
ZRANGESTORE {z}d {z}a 0 -1 LIMIT 0 1
ZPOPMIN {z}a
ZPOPMAX {z}a
ZPOPMIN {z}a 2
ZPOPMIN {z}a 0
ZPOPMIN {z}a -1
ZPOPMIN {z}a x
ZPOPMIN {z}a 1 2
ZPOPMAX {z}a 10
EXISTS {z}a
ZPOPMIN {z}nokey
ZPOPMIN {z}nokey 2
ZADD {z}m1 1 a 2 b 3 c
ZADD {z}m2 10 x 20 y
ZMPOP 1 {z}m1 MIN
ZMPOP 2 {z}nokey {z}m1 MAX COUNT 10
ZMPOP 2 {z}m1 {z}m2 MIN COUNT 1
ZMPOP 1 {z}nokey MIN
ZMPOP 0 {z}m2 MIN
ZMPOP -1 {z}m2 MIN
ZMPOP x {z}m2 MIN
ZMPOP 1 {z}m2 FOO
ZMPOP 1 {z}m2
ZMPOP 3 {z}m2 MIN
ZMPOP 1 {z}m2 MIN COUNT 0
ZMPOP 1 {z}m2 MIN COUNT x
ZMPOP 1 {z}m2 MIN COUNT
ZMPOP 1 {z}m2 MIN COUNT 1 COUNT 1
ZMPOP 1 {z}m2 max count 5
ZADD {z}r 1 a 2 b 3 c 4 d 5 e 6 f 7 g 8 h 9 i 10 j
ZREMRANGEBYRANK {z}r 0 1
ZREMRANGEBYRANK {z}r -2 -1
ZREMRANGEBYRANK {z}r 5 1
ZREMRANGEBYRANK {z}r x 1
ZREMRANGEBYRANK {z}nokey 0 1
ZREMRANGEBYSCORE {z}r (3 5
ZREMRANGEBYSCORE {z}r x 5
ZREMRANGEBYSCORE {z}r 100 200
ZRANGE {z}r 0 -1 WITHSCORES
ZREMRANGEBYLEX {z}l [b (d
ZREMRANGEBYLEX {z}l x +
ZRANGE {z}l 0 -1
ZREMRANGEBYSCORE {z}r -inf +inf
EXISTS {z}r
ZADD {z}u1 1 a 2 b 3 c
ZADD {z}u2 10 b 20 c 30 d
SADD {z}set b d e
ZUNION 2 {z}u1 {z}u2
ZUNION 2 {z}u1 {z}u2 WITHSCORES
ZUNION 2 {z}u1 {z}u2 WEIGHTS 2 3 WITHSCORES
ZUNION 2 {z}u1 {z}u2 AGGREGATE MIN WITHSCORES
ZUNION 2 {z}u1 {z}u2 AGGREGATE max WITHSCORES
ZUNION 2 {z}u1 {z}u2 AGGREGATE avg
ZUNION 2 {z}u1 {z}u2 WEIGHTS 1
ZUNION 2 {z}u1 {z}u2 WEIGHTS 1 x
ZUNION 2 {z}u1 {z}u2 WEIGHTS 0 inf WITHSCORES
ZUNION 3 {z}u1 {z}u2 {z}set WITHSCORES
ZUNION 2 {z}u1 {z}nokey WITHSCORES
ZUNION 0 {z}u1
ZUNION -1 {z}u1
ZUNION x {z}u1
ZUNION 3 {z}u1 {z}u2
ZUNION 2 {z}u1 {z}str
ZUNION 2 {z}u1 {z}u2 FOO
ZINTER 2 {z}u1 {z}u2 WITHSCORES
ZINTER 2 {z}u1 {z}u2 WEIGHTS 1 -1 AGGREGATE SUM WITHSCORES
ZINTER 3 {z}u1 {z}u2 {z}set WITHSCORES
ZINTER 2 {z}u1 {z}nokey
ZINTER 0 {z}u1
ZDIFF 2 {z}u1 {z}u2 WITHSCORES
ZDIFF 2 {z}u2 {z}set WITHSCORES
ZDIFF 1 {z}u1
ZDIFF 2 {z}u1 {z}u2 WEIGHTS 1 1
ZDIFF 2 {z}u1 {z}u2 AGGREGATE MIN
ZDIFF 2 {z}nokey {z}u1
ZINTERCARD 2 {z}u1 {z}u2
ZINTERCARD 2 {z}u1 {z}u2 LIMIT 1
ZINTERCARD 2 {z}u1 {z}u2 LIMIT 0
ZINTERCARD 2 {z}u1 {z}u2 LIMIT -1
ZINTERCARD 2 {z}u1 {z}u2 LIMIT x
ZINTERCARD 2 {z}u1 {z}u2 WITHSCORES
ZINTERCARD 0 {z}u1
ZINTERCARD x {z}u1
ZINTERCARD 3 {z}u1
ZUNIONSTORE {z}d 2 {z}u1 {z}u2 WEIGHTS 1 2 AGGREGATE MAX
ZRANGE {z}d 0 -1 WITHSCORES
ZUNIONSTORE {z}d 2 {z}u1 {z}u2 WITHSCORES
ZUNIONSTORE {z}d 0 {z}u1
ZINTERSTORE {z}d 2 {z}u1 {z}u2
ZRANGE {z}d 0 -1 WITHSCORES
ZINTERSTORE {z}d 2 {z}u1 {z}nokey
EXISTS {z}d
ZDIFFSTORE {z}d 2 {z}u2 {z}u1
ZRANGE {z}d 0 -1 WITHSCORES
ZDIFFSTORE {z}d 1 {z}nokey
EXISTS {z}d
ZUNIONSTORE {z}str 1 {z}u1
TYPE {z}str
ZSCAN {z}u2 0
ZSCAN {z}u2 0 MATCH c*
ZSCAN {z}u2 0 COUNT 100
ZSCAN {z}u2 0 COUNT 0
ZSCAN {z}u2 0 COUNT x
ZSCAN {z}u2 0 FOO
ZSCAN {z}u2 0 MATCH
ZSCAN {z}nokey 0
ZSCAN {z}nokey 0 FOO
ZSCAN {z}u2 -1
ZRANDMEMBER {z}nokey
ZRANDMEMBER {z}nokey 5
ZRANDMEMBER {z}u2 0
ZRANDMEMBER {z}u2 x
ZRANDMEMBER {z}u2 1 FOO
ZRANDMEMBER {z}u2 1 WITHSCORES extra
ZRANDMEMBER {z}u2 -9223372036854775808
ZRANDMEMBER {z}u2 9223372036854775807 WITHSCORES
ZADD {z}one 5 only
ZRANDMEMBER {z}one
ZRANDMEMBER {z}one -3 WITHSCORES
ZADD {z}big 1e300 a -1e300 b 3.14159265358979 c 100 d 1e-300 e
ZRANGE {z}big 0 -1 WITHSCORES
ZINCRBY {z}big 1e300 a
ZINCRBY {z}big 1e308 a
ZINCRBY {z}big 1e308 a
ZSCORE {z}big a
";

/// Replayed after HELLO 3: scores as doubles, pairs as arrays, nulls.
const RESP3_SCRIPT: &str = "
FLUSHALL
ZADD {z}a 1 a 2.5 b inf c
ZSCORE {z}a b
ZSCORE {z}a c
ZSCORE {z}a x
ZMSCORE {z}a a x
ZINCRBY {z}a 1 a
ZADD {z}a INCR 1 a
ZADD {z}a XX INCR 1 nosuch
ZRANGE {z}a 0 -1
ZRANGE {z}a 0 -1 WITHSCORES
ZRANGEBYSCORE {z}a -inf +inf WITHSCORES
ZREVRANGE {z}a 0 -1 WITHSCORES
ZUNION 1 {z}a WITHSCORES
ZINTER 1 {z}a WITHSCORES
ZDIFF 1 {z}a WITHSCORES
ZSCAN {z}a 0
ZRANDMEMBER {z}nokey
ZPOPMIN {z}a
ZPOPMIN {z}a 1
ZADD {z}a 1 a 2.5 b inf c
ZPOPMAX {z}a 5
ZPOPMIN {z}nokey
ZADD {z}a 1 a 2.5 b inf c
ZMPOP 1 {z}a MIN COUNT 2
ZMPOP 1 {z}nokey MIN
ZRANK {z}a x
";

#[tokio::test]
async fn zset_replies_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(SCRIPT, RESP3_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

/// Counts the elements of a RESP2 array reply (its header), or None for other replies.
fn array_len(reply: &str) -> Option<usize> {
    reply.strip_prefix('*')?.split("\r\n").next()?.parse().ok()
}

#[tokio::test]
async fn zrandmember_shapes() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut c = node.client().await?;
    c.line("ZADD z 1 a 2 b 3 c 4 d 5 e").await?;
    assert_eq!(array_len(&c.line("ZRANDMEMBER z 3").await?), Some(3));
    assert_eq!(
        array_len(&c.line("ZRANDMEMBER z 3 WITHSCORES").await?),
        Some(6)
    );
    assert_eq!(array_len(&c.line("ZRANDMEMBER z -20").await?), Some(20));
    // A count past the size returns the whole set, in an order Redis does not fix.
    let all = c.line("ZRANDMEMBER z 9 WITHSCORES").await?;
    let mut parts: Vec<&str> = all.split("\r\n").collect();
    parts.sort();
    assert_eq!(array_len(&all), Some(10), "{all:?}");
    for want in ["a", "b", "c", "d", "e", "1", "5"] {
        assert!(parts.contains(&want), "{all:?}");
    }
    // Distinct members for a positive count.
    for _ in 0..20 {
        let reply = c.line("ZRANDMEMBER z 4").await?;
        let mut members: Vec<&str> = reply.split("\r\n").skip(2).step_by(2).collect();
        members.retain(|m| !m.is_empty());
        members.sort();
        members.dedup();
        assert_eq!(members.len(), 4, "{reply:?}");
    }
    let one = c.line("ZRANDMEMBER z").await?;
    assert!(["a", "b", "c", "d", "e"]
        .iter()
        .any(|m| one == format!("$1\r\n{m}\r\n")));
    node.stop().await
}

/// Every sorted set write, served live with an AOF, replays to the same keyspace: ZINCRBY and
/// ZADD INCR as absolute ZADDs, pops and range removals as the ZREMs of what they took.
#[tokio::test]
async fn zset_writes_replay_from_the_aof() -> anyhow::Result<()> {
    use tessera_shard_node::aof::{self, FsyncPolicy};
    use tessera_shard_node::cmd;

    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;
    let script = [
        "ZADD {z}a 1 a 2 b 3 c 4 d 5 e 6 f 7 g 0.1 h inf i -inf j",
        "ZADD {z}a GT CH 10 a 0 b",
        "ZADD {z}a LT 0 c",
        "ZADD {z}a NX 100 a 100 new",
        "ZADD {z}a XX 100 b 100 nosuch",
        "ZINCRBY {z}a 0.3 h",
        "ZADD {z}a INCR 2.5 g",
        "ZINCRBY {z}a 1 fresh",
        "ZREM {z}a d nosuch",
        "ZPOPMIN {z}a",
        "ZPOPMAX {z}a 2",
        "ZADD {z}b 1 x 2 y 3 z",
        "ZMPOP 2 {z}nokey {z}b MAX COUNT 2",
        "ZADD {z}r 1 a 2 b 3 c 4 d 5 e 6 f",
        "ZREMRANGEBYRANK {z}r 0 0",
        "ZREMRANGEBYSCORE {z}r (4 5",
        "ZADD {z}l 0 a 0 b 0 c 0 d",
        "ZREMRANGEBYLEX {z}l [b (d",
        "ZRANGESTORE {z}s {z}a 0 2",
        "ZUNIONSTORE {z}u 2 {z}a {z}r WEIGHTS 2 0.5 AGGREGATE MAX",
        "ZINTERSTORE {z}i 2 {z}a {z}r",
        "ZDIFFSTORE {z}d 2 {z}a {z}r",
        "ZADD {z}gone 1 a",
        "ZPOPMIN {z}gone",
    ];
    for line in script {
        let reply = client.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    node.stop().await?;
    log.flush_and_sync().await?;

    let replayed = state(None, addr.port())?;
    let summary = aof::load(&path, |args| cmd::replay(&replayed, args))?;
    assert!(summary.records > 20, "{summary:?}");
    let want = dump(&live.keyspace);
    assert!(want.contains_key(b"{z}u".as_slice()) && !want.contains_key(b"{z}gone".as_slice()));
    assert_eq!(dump(&replayed.keyspace), want);
    Ok(())
}

/// A random element of `xs`.
fn pick<'a>(rng: &mut impl rand::Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// Thousands of random sorted set commands (a fixed seed), every reply compared with Redis's.
/// Lex commands use a set whose scores are all 0, as Redis requires for them to be meaningful.
#[tokio::test]
async fn random_commands_match_redis() -> anyhow::Result<()> {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let mut rng = StdRng::seed_from_u64(0x05ee_d2e7);
    let keys = ["{z}1", "{z}2", "{z}3"];
    let members = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "kk", "ll"];
    let scores = [
        "0", "1", "-1", "2.5", "-3.25", "10", "inf", "-inf", "0.1", "7", "1e3",
    ];
    let bounds = [
        "-inf", "+inf", "0", "(0", "1", "(2.5", "10", "(10", "-1", "x",
    ];
    let lex = ["-", "+", "[a", "(a", "[d", "(e", "[kk", "(zz", "x"];
    for _ in 0..6000 {
        let k = keys[rng.random_range(0..keys.len())];
        let line = match rng.random_range(0..26) {
            0 | 1 => format!(
                "ZADD {k} {} {} {} {}",
                pick(&mut rng, &scores),
                pick(&mut rng, &members),
                pick(&mut rng, &scores),
                pick(&mut rng, &members)
            ),
            2 => {
                let opts = [
                    "NX", "XX", "GT", "LT", "CH", "XX CH", "GT CH", "LT CH", "NX CH",
                ];
                let o = opts[rng.random_range(0..opts.len())];
                format!(
                    "ZADD {k} {o} {} {} {} {}",
                    pick(&mut rng, &scores),
                    pick(&mut rng, &members),
                    pick(&mut rng, &scores),
                    pick(&mut rng, &members)
                )
            }
            3 => format!(
                "ZINCRBY {k} {} {}",
                pick(&mut rng, &scores),
                pick(&mut rng, &members)
            ),
            4 => format!(
                "ZADD {k} INCR {} {}",
                pick(&mut rng, &scores),
                pick(&mut rng, &members)
            ),
            5 => format!(
                "ZREM {k} {} {}",
                pick(&mut rng, &members),
                pick(&mut rng, &members)
            ),
            6 => format!("ZSCORE {k} {}", pick(&mut rng, &members)),
            7 => format!(
                "ZMSCORE {k} {} {}",
                pick(&mut rng, &members),
                pick(&mut rng, &members)
            ),
            8 => format!("ZCARD {k}"),
            9 => format!(
                "ZCOUNT {k} {} {}",
                pick(&mut rng, &bounds),
                pick(&mut rng, &bounds)
            ),
            10 => format!("ZRANK {k} {}", pick(&mut rng, &members)),
            11 => format!("ZREVRANK {k} {}", pick(&mut rng, &members)),
            12 => format!(
                "ZRANGE {k} {} {} WITHSCORES",
                rng.random_range(-6i64..8),
                rng.random_range(-6i64..8)
            ),
            13 => format!(
                "ZRANGE {k} {} {} BYSCORE LIMIT {} {}",
                pick(&mut rng, &bounds),
                pick(&mut rng, &bounds),
                rng.random_range(-6i64..8),
                rng.random_range(-6i64..8)
            ),
            14 => format!(
                "ZRANGE {k} {} {} BYSCORE REV WITHSCORES",
                pick(&mut rng, &bounds),
                pick(&mut rng, &bounds)
            ),
            15 => format!(
                "ZREVRANGE {k} {} {}",
                rng.random_range(-6i64..8),
                rng.random_range(-6i64..8)
            ),
            16 => format!("ZPOPMIN {k} {}", rng.random_range(0..4)),
            17 => format!("ZPOPMAX {k}"),
            18 => format!(
                "ZREMRANGEBYSCORE {k} {} {}",
                pick(&mut rng, &bounds),
                pick(&mut rng, &bounds)
            ),
            19 => format!(
                "ZREMRANGEBYRANK {k} {} {}",
                rng.random_range(-6i64..8),
                rng.random_range(-6i64..8)
            ),
            20 => {
                let ops = ["ZUNION", "ZINTER", "ZDIFF"];
                let op = ops[rng.random_range(0..3)];
                format!("{op} 2 {k} {} WITHSCORES", keys[rng.random_range(0..3)])
            }
            21 => {
                let ops = ["ZUNIONSTORE", "ZINTERSTORE"];
                let aggs = ["SUM", "MIN", "MAX"];
                let op = ops[rng.random_range(0..2)];
                let agg = aggs[rng.random_range(0..3)];
                format!(
                    "{op} {k} 2 {} {} WEIGHTS {} 2 AGGREGATE {agg}",
                    keys[rng.random_range(0..3)],
                    keys[rng.random_range(0..3)],
                    pick(&mut rng, &scores)
                )
            }
            22 => format!(
                "ZADD {{z}}lex 0 {} 0 {}",
                pick(&mut rng, &members),
                pick(&mut rng, &members)
            ),
            23 => format!(
                "ZRANGEBYLEX {{z}}lex {} {} LIMIT 0 {}",
                pick(&mut rng, &lex),
                pick(&mut rng, &lex),
                rng.random_range(-6i64..8)
            ),
            24 => format!(
                "ZLEXCOUNT {{z}}lex {} {}",
                pick(&mut rng, &lex),
                pick(&mut rng, &lex)
            ),
            _ => format!(
                "ZREMRANGEBYLEX {{z}}lex {} {}",
                pick(&mut rng, &lex),
                pick(&mut rng, &lex)
            ),
        };
        diff.script(&line, "random").await?;
        if diff.mismatches.len() > 20 {
            break;
        }
    }
    diff.assert_none();
    node.stop().await
}

/// Sets past Redis's listpack limits (so Redis uses its skip list): ranks, index and score
/// ranges with LIMIT, and removals agree with Redis on a few thousand members.
#[tokio::test]
async fn large_sets_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let mut script = String::new();
    for chunk in 0..30 {
        let mut line = String::from("ZADD {z}big");
        for i in 0..100 {
            let n = chunk * 100 + i;
            line.push_str(&format!(" {} member:{:05}", (n * 7919) % 113, n));
        }
        script.push_str(&line);
        script.push('\n');
    }
    script.push_str(
        "ZCARD {z}big
ZRANK {z}big member:01234
ZREVRANK {z}big member:02999
ZRANGE {z}big 1000 1010 WITHSCORES
ZRANGE {z}big -20 -1
ZREVRANGE {z}big 1500 1505 WITHSCORES
ZRANGE {z}big 50 (52 BYSCORE LIMIT 10 5 WITHSCORES
ZRANGE {z}big 60 50 BYSCORE REV LIMIT 3 4
ZCOUNT {z}big 10 (20
ZREMRANGEBYRANK {z}big 100 199
ZREMRANGEBYSCORE {z}big 30 (40
ZRANK {z}big member:00500
ZPOPMIN {z}big 3
ZPOPMAX {z}big 3
ZRANGE {z}big 2000 2010 WITHSCORES
ZINTERSTORE {z}i 2 {z}big {z}big WEIGHTS 1 2
ZRANGE {z}i 0 5 WITHSCORES
ZCARD {z}i
",
    );
    diff.script(&script, "large").await?;
    diff.assert_none();
    node.stop().await
}
