//! The rest of the key commands (RENAME, RENAMENX, COPY, the EXPIRE family with NX / XX / GT / LT,
//! EXPIRETIME, PEXPIRETIME, SCAN ... TYPE, OBJECT) and the blocking sorted-set pops (BZPOPMIN,
//! BZPOPMAX, BZMPOP), compared byte for byte with a real redis-server; then the blocking pops driven
//! with two clients: a wake-up by ZADD from another client, and a timeout.
//! Multi-key commands use `{t}` hash tags so they stay in one slot.

mod data_support;

use data_support::until_blocked;

use std::time::{Duration, Instant};

use bytes::Bytes;
use data_support::{encode, words, TestNode};
use tessera_testkit::{Differ, RedisServer};

/// RESP2 script: every command, its options, errors and edge cases.
const SCRIPT: &str = "
FLUSHALL
RENAME {t}nokey {t}b
RENAMENX {t}nokey {t}b
SET {t}a 1
RENAME {t}a {t}a
RENAMENX {t}a {t}a
RENAME {t}a {t}b
GET {t}a
GET {t}b
SET {t}c 3
RENAMENX {t}b {t}c
RENAMENX {t}b {t}d
GET {t}d
SET {t}e v EX 1000
RENAME {t}e {t}f
TTL {t}f
RENAME {t}d {t}f
TTL {t}f
RENAME {t}a
RENAME {t}a {t}b {t}c
RPUSH {t}l x y
RENAME {t}l {t}l2
LRANGE {t}l2 0 -1
COPY {t}l2 {t}l2
COPY {t}nokey {t}x
COPY {t}l2 {t}l3
LRANGE {t}l3 0 -1
COPY {t}l2 {t}l3
COPY {t}f {t}l3 REPLACE
TYPE {t}l3
TTL {t}l3
COPY {t}f {t}l3 DB 0 REPLACE
COPY {t}f {t}l3 DB 16
COPY {t}f {t}l3 DB -1
COPY {t}f {t}l3 DB abc
COPY {t}f {t}l3 DB
COPY {t}f {t}l3 FOO
COPY {t}f {t}l3 REPLACE REPLACE
HSET {t}h a 1
COPY {t}h {t}h2
HGETALL {t}h2
SADD {t}s 1 2 3
COPY {t}s {t}s2
SCARD {t}s2
ZADD {t}z 1 a 2 b
COPY {t}z {t}z2
ZRANGE {t}z2 0 -1 WITHSCORES
SET k v
EXPIRE k 100 XX
EXPIRE k 100 NX
EXPIRE k 100 NX
EXPIRE k 50 GT
EXPIRE k 200 GT
EXPIRE k 300 LT
EXPIRE k 50 LT
TTL k
EXPIRE k 10 NX XX
EXPIRE k 10 NX GT
EXPIRE k 10 NX LT
EXPIRE k 10 GT LT
EXPIRE k 10 XX GT
EXPIRE k 10 FOO
EXPIRE k abc
EXPIRE k abc FOO
EXPIRE k 9223372036854775807
EXPIRE k -9223372036854775808
PEXPIRE k 9223372036854775807
EXPIREAT k 9223372036854775807
PEXPIREAT k 9223372036854775807
TTL k
EXPIRE nokey 10
PERSIST k
EXPIRE k 10 LT
EXPIRE k 5 GT
EXPIRE k 20 GT
PEXPIRE k 100000 XX
TTL k
EXPIREAT k 4102444800
EXPIRETIME k
PEXPIRETIME k
PEXPIREAT k 4102444800123
EXPIRETIME k
PEXPIRETIME k
EXPIREAT k 4102444800 LT
EXPIREAT k 4102444800 GT
EXPIRETIME nokey
PEXPIRETIME nokey
SET k2 v
EXPIRETIME k2
PEXPIRETIME k2
EXPIRETIME
EXPIRETIME k k2
EXPIRE k2 -1
EXISTS k2
SET k2 v
PEXPIREAT k2 1
EXISTS k2
SET k2 v
EXPIREAT k2 -5 XX
EXISTS k2
EXPIREAT k2 -5 NX
EXISTS k2
FLUSHALL
SET str v
RPUSH list a
HSET hash f v
SADD set m
ZADD zset 1 m
scan SCAN 0 COUNT 1000
scan SCAN 0 TYPE string COUNT 1000
scan SCAN 0 TYPE list COUNT 1000
scan SCAN 0 TYPE hash COUNT 1000
scan SCAN 0 TYPE set COUNT 1000
scan SCAN 0 TYPE zset COUNT 1000
scan SCAN 0 TYPE ZSET COUNT 1000
scan SCAN 0 TYPE stream COUNT 1000
scan SCAN 0 TYPE nosuchtype COUNT 1000
scan SCAN 0 TYPE string MATCH s* COUNT 1000
SET int 12345
SET neg -12
SET big 9223372036854775807
SET toobig 9223372036854775808
SET lead 012
SET plus +1
SET zero 0
SET emb 12345678901234567890123456789012345678901234
SET raw 123456789012345678901234567890123456789012345
SET empty <empty>
OBJECT ENCODING int
OBJECT ENCODING neg
OBJECT ENCODING big
OBJECT ENCODING toobig
OBJECT ENCODING lead
OBJECT ENCODING plus
OBJECT ENCODING zero
OBJECT ENCODING emb
OBJECT ENCODING raw
OBJECT ENCODING empty
OBJECT ENCODING str
OBJECT ENCODING list
OBJECT ENCODING hash
OBJECT ENCODING set
OBJECT ENCODING zset
OBJECT ENCODING nokey
SADD iset 1 2 -3
OBJECT ENCODING iset
SADD iset 01
OBJECT ENCODING iset
HSET bighash f 1234567890123456789012345678901234567890123456789012345678901234
OBJECT ENCODING bighash
HSET bighash f2 12345678901234567890123456789012345678901234567890123456789012345
OBJECT ENCODING bighash
HSET bighash2 1234567890123456789012345678901234567890123456789012345678901234567 v
OBJECT ENCODING bighash2
ZADD bigz 1 1234567890123456789012345678901234567890123456789012345678901234
OBJECT ENCODING bigz
ZADD bigz 1 12345678901234567890123456789012345678901234567890123456789012345
OBJECT ENCODING bigz
OBJECT REFCOUNT int
OBJECT REFCOUNT zero
OBJECT REFCOUNT str
OBJECT REFCOUNT list
OBJECT REFCOUNT nokey
OBJECT FREQ str
OBJECT FREQ nokey
OBJECT IDLETIME nokey
OBJECT HELP
OBJECT
OBJECT ENCODING
OBJECT ENCODING a b
OBJECT NOSUCH k
OBJECT HELP extra
BZPOPMIN {t}empty 0.01
BZPOPMAX {t}empty {t}empty2 0.01
BZPOPMIN str 0
BZPOPMIN {t}empty abc
BZPOPMIN {t}empty -1
BZPOPMIN {t}empty
BZPOPMIN
ZADD {t}bz 1 a 2 b 3 c
BZPOPMIN {t}empty {t}bz 0
BZPOPMAX {t}empty {t}bz 0
BZPOPMAX {t}bz 0.5
BZPOPMAX {t}bz 0.01
EXISTS {t}bz
ZADD {t}bz 1 a 2 b 3 c
BZMPOP 0 1 {t}bz MIN
BZMPOP 0 2 {t}empty {t}bz MAX COUNT 5
BZMPOP 0.01 1 {t}bz MAX
BZMPOP abc 1 {t}bz MAX
BZMPOP abc 0 {t}bz MAX
BZMPOP abc 1 {t}bz FOO
BZMPOP abc 1 {t}bz MIN COUNT 0
BZMPOP 0 1 {t}bz MIN COUNT
BZMPOP 0 1 {t}bz MIN COUNT 1 COUNT 1
BZMPOP 0 3 {t}bz MIN
BZMPOP -1 1 {t}bz MIN
BZMPOP 0 1 str MIN
BZMPOP 0 1
";

/// RESP3: the blocking pops' replies carry doubles, and a timeout is a null.
const RESP3_SCRIPT: &str = "
FLUSHALL
ZADD {t}bz 1 a 2.5 b 3 c
BZPOPMIN {t}bz 0
BZPOPMAX {t}bz 0
BZMPOP 0 1 {t}bz MIN COUNT 3
BZPOPMIN {t}bz 0.01
BZMPOP 0.01 1 {t}bz MIN
OBJECT HELP
OBJECT ENCODING nokey
";

#[tokio::test]
async fn key_commands_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.scripts(SCRIPT, RESP3_SCRIPT).await?;
    diff.assert_none();
    node.stop().await
}

fn text(reply: Bytes) -> String {
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn blocked_zset_pops_wake_on_zadd_in_order() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut first = node.client().await?;
    let mut second = node.client().await?;
    let mut third = node.client().await?;
    let mut writer = node.client().await?;
    first
        .send_raw(&encode(&words("BZPOPMIN {t}a {t}z 0")))
        .await?;
    until_blocked(&node, 1).await?;
    second
        .send_raw(&encode(&words("BZMPOP 0 1 {t}z MAX COUNT 2")))
        .await?;
    until_blocked(&node, 2).await?;
    third.send_raw(&encode(&words("BZPOPMAX {t}z 0"))).await?;
    until_blocked(&node, 3).await?;
    // A write of another type does not serve them.
    assert_eq!(writer.line("SET {t}a x").await?, "+OK\r\n");
    assert_eq!(
        writer.line("ZADD {t}z 1 one 2 two 3 three 4 four").await?,
        ":4\r\n"
    );
    // Served in the order they blocked: the first takes the lowest, the second the two highest.
    assert_eq!(
        text(first.read_reply().await?),
        "*3\r\n$4\r\n{t}z\r\n$3\r\none\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        text(second.read_reply().await?),
        "*2\r\n$4\r\n{t}z\r\n*2\r\n*2\r\n$4\r\nfour\r\n$1\r\n4\r\n*2\r\n$5\r\nthree\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        text(third.read_reply().await?),
        "*3\r\n$4\r\n{t}z\r\n$3\r\ntwo\r\n$1\r\n2\r\n"
    );
    until_blocked(&node, 0).await?;
    assert_eq!(writer.line("EXISTS {t}z").await?, ":0\r\n");
    // A RENAME onto a waited-for key serves as any write does.
    first.send_raw(&encode(&words("BZPOPMIN {t}dst 0"))).await?;
    until_blocked(&node, 1).await?;
    assert_eq!(writer.line("ZADD {t}src 5 m").await?, ":1\r\n");
    assert_eq!(writer.line("RENAME {t}src {t}dst").await?, "+OK\r\n");
    assert_eq!(
        text(first.read_reply().await?),
        "*3\r\n$6\r\n{t}dst\r\n$1\r\nm\r\n$1\r\n5\r\n"
    );
    node.stop().await
}

#[tokio::test]
async fn blocked_zset_pops_time_out() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    let started = Instant::now();
    assert_eq!(client.line("BZPOPMIN {t}none 0.2").await?, "*-1\r\n");
    assert_eq!(client.line("BZMPOP 0.1 1 {t}none MIN").await?, "*-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(300));
    until_blocked(&node, 0).await?;
    // The connection serves its next command after a timeout.
    assert_eq!(client.line("PING").await?, "+PONG\r\n");
    node.stop().await
}
