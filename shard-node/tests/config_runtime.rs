//! CONFIG GET / SET at runtime, OBJECT FREQ / IDLETIME and the OOM refusal, against a real
//! redis-server: the same commands to both, replies compared byte for byte (CONFIG GET with a
//! pattern as a set of pairs: Redis lists them in its hash table's order). Also what the node
//! alone can show: INFO persistence's fields, blocked_clients, and CONFIG SET appendfsync taking
//! effect on the running AOF writer.

mod data_support;

use data_support::LoggedNode;

use std::time::{Duration, Instant};

use anyhow::Context;
use data_support::{RawClient, TestNode};
use tessera_shard_node::aof::FsyncPolicy;
use tessera_testkit::{Differ, RedisServer};

/// One command per line, split on spaces; `<empty>` is an empty argument. A line starting with
/// `pairs ` compares a CONFIG GET reply as a set of name/value pairs; one starting with `ignore `
/// runs on both without comparing (what it shows, MEMORY USAGE or key order, is not the point).
const CONFIG_SCRIPT: &str = "
CONFIG GET maxmemory
CONFIG GET MAXMEMORY
CONFIG GET maxmemory maxmemory
CONFIG GET maxmemory Maxmemory
CONFIG GET nosuch
pairs CONFIG GET lfu-*
pairs CONFIG GET maxmemory*
pairs CONFIG GET auto-aof*
pairs CONFIG GET maxmemory-policy lfu* maxmemory-polic?
CONFIG GET maxmemory-samples
CONFIG GET maxmemory-eviction-tenacity
CONFIG GET appendfsync
CONFIG SET maxmemory 100mb maxmemory-policy allkeys-lru
CONFIG GET maxmemory
CONFIG GET maxmemory-policy
CONFIG SET maxmemory 1GB
CONFIG GET maxmemory
CONFIG SET maxmemory 1k
CONFIG GET maxmemory
CONFIG SET maxmemory 2Kb
CONFIG GET maxmemory
CONFIG SET maxmemory 10xb
CONFIG SET maxmemory -1
CONFIG SET maxmemory 1.5mb
CONFIG SET maxmemory <empty>
CONFIG SET maxmemory 0
CONFIG SET maxmemory-policy foo
CONFIG SET maxmemory-policy ALLKEYS-LFU
CONFIG GET maxmemory-policy
CONFIG SET maxmemory-policy volatile-ttl
CONFIG GET maxmemory-policy
CONFIG SET maxmemory-samples 0
CONFIG SET maxmemory-samples abc
CONFIG SET maxmemory-samples +5
CONFIG SET maxmemory-samples 10
CONFIG GET maxmemory-samples
CONFIG SET maxmemory-eviction-tenacity 101
CONFIG SET maxmemory-eviction-tenacity 50
CONFIG GET maxmemory-eviction-tenacity
CONFIG SET lfu-log-factor -1
CONFIG SET lfu-log-factor x
CONFIG SET lfu-log-factor 20
CONFIG SET lfu-decay-time x
CONFIG SET lfu-decay-time 5
pairs CONFIG GET lfu*
CONFIG SET appendfsync sometimes
CONFIG SET appendfsync ALWAYS
CONFIG GET appendfsync
CONFIG SET appendfsync everysec
CONFIG SET auto-aof-rewrite-percentage -1
CONFIG SET auto-aof-rewrite-percentage 50
CONFIG SET auto-aof-rewrite-min-size 1zb
CONFIG SET auto-aof-rewrite-min-size 32mb
pairs CONFIG GET auto-aof-rewrite-*
CONFIG SET nosuch 1
CONFIG SET maxmemory 1 maxmemory 2
CONFIG SET maxmemory 1 MAXMEMORY 2
CONFIG SET maxmemory 1 x
CONFIG SET maxmemory
CONFIG SET databases 4
CONFIG SET cluster-enabled no
CONFIG SET maxmemory 1mb nosuch 2
CONFIG SET databases 4 nosuch 1
CONFIG SET nosuch 1 databases 4
CONFIG SET maxmemory 5mb maxmemory-samples 0
CONFIG GET maxmemory
CONFIG SET maxmemory-samples 0 nosuch 1
CONFIG SET maxmemory 0 maxmemory-policy noeviction maxmemory-samples 5 lfu-log-factor 10 lfu-decay-time 1
pairs CONFIG GET maxmemory* lfu*
CONFIG GET
CONFIG RESETSTAT x
CONFIG RESETSTAT
CONFIG REWRITE
CONFIG NOSUCH
";

/// OBJECT FREQ / IDLETIME: Redis's errors by policy, and the LFU counter where it is
/// deterministic (the first hit above LFU_INIT_VAL always counts, later ones by chance): each
/// case starts from a new key at 5, so one touch gives exactly 6.
const OBJECT_SCRIPT: &str = "
FLUSHALL
SET k v
OBJECT FREQ k
OBJECT FREQ nokey
OBJECT IDLETIME nokey
CONFIG SET maxmemory-policy allkeys-lfu
OBJECT IDLETIME nokey
SET fresh v
OBJECT FREQ fresh
OBJECT IDLETIME fresh
TYPE fresh
EXISTS fresh
TTL fresh
PTTL fresh
EXPIRETIME fresh
OBJECT ENCODING fresh
ignore MEMORY USAGE fresh
ignore SCAN 0
ignore KEYS *
OBJECT FREQ fresh
SET e v
EXPIRE e 1000
OBJECT FREQ e
GET fresh
OBJECT FREQ fresh
SET s v
STRLEN s
OBJECT FREQ s
SET t v
TOUCH t
OBJECT FREQ t
SET p v EX 100
PERSIST p
OBJECT FREQ p
SET {r}a v
RENAME {r}a {r}b
OBJECT FREQ {r}b
SET {c}a v
COPY {c}a {c}b
OBJECT FREQ {c}a
OBJECT FREQ {c}b
RPUSH l a
OBJECT FREQ l
RPUSH l b
OBJECT FREQ l
HSET h f v
HGET h f
OBJECT FREQ h
SADD st m
SISMEMBER st m
OBJECT FREQ st
ZADD z 1 m
ZSCORE z m
OBJECT FREQ z
CONFIG SET maxmemory-policy volatile-lfu
OBJECT IDLETIME fresh
CONFIG SET maxmemory-policy volatile-lru
OBJECT FREQ fresh
CONFIG SET maxmemory-policy noeviction
";

/// Under noeviction with a limit below what the server already uses, commands that may add data
/// (denyoom) are refused and the others run.
const OOM_SCRIPT: &str = "
FLUSHALL
SET before v
CONFIG SET maxmemory 1
SET x y
GET before
GET x
DEL before
LPUSH l a
INCR n
APPEND before x
SETRANGE before 0 x
HSET h f v
SADD s m
ZADD z 1 m
EXPIRE before 100
CONFIG SET maxmemory 0
SET x y
GET x
";

#[tokio::test]
async fn config_get_and_set_answer_as_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.script(CONFIG_SCRIPT, "").await?;
    diff.assert_none();
    node.stop().await
}

#[tokio::test]
async fn object_freq_and_idletime_answer_as_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.script(OBJECT_SCRIPT, "").await?;
    diff.assert_none();

    // Idle time has one-second resolution on both sides: equal up to a tick boundary.
    for client in [&mut diff.theirs, &mut diff.ours] {
        client.line("SET idle v").await?;
        let reply = client.line("OBJECT IDLETIME idle").await?;
        assert!(
            reply == ":0\r\n" || reply == ":1\r\n",
            "OBJECT IDLETIME right after SET: {reply:?}"
        );
    }
    node.stop().await
}

#[tokio::test]
async fn commands_that_add_data_are_refused_over_maxmemory_under_noeviction() -> anyhow::Result<()>
{
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.script(OOM_SCRIPT, "").await?;
    diff.assert_none();
    let info = diff.ours.line("INFO stats").await?;
    assert!(info.contains("evicted_keys:0\r\n"), "{info}");
    node.stop().await
}

/// The value of `field` in an INFO reply.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
}

fn info_names(info: &str) -> Vec<String> {
    info.split("\r\n")
        .filter(|l| !l.starts_with('#') && !l.starts_with('$'))
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.to_string()))
        .collect()
}

#[tokio::test]
async fn info_persistence_and_memory_print_redis_fields() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut theirs = RawClient::connect(redis.addr()).await?;
    let mut ours = node.client().await?;
    // Neither has an AOF open here: the same fields, in the same order.
    let want = info_names(&theirs.line("INFO persistence").await?);
    let got = info_names(&ours.line("INFO persistence").await?);
    assert_eq!(got, want);
    for client in [&mut theirs, &mut ours] {
        client
            .line("CONFIG SET maxmemory 3gb maxmemory-policy volatile-lfu")
            .await?;
    }
    let want = theirs.line("INFO memory").await?;
    let got = ours.line("INFO memory").await?;
    for field in ["maxmemory", "maxmemory_human", "maxmemory_policy"] {
        assert_eq!(info_field(&got, field), info_field(&want, field), "{field}");
    }
    assert_eq!(
        info_field(&got, "maxmemory_human").as_deref(),
        Some("3.00G")
    );
    // used_memory is the allocator's count (it would be the resident set otherwise): positive
    // and well below the resident set of a process that has a runtime and a test harness.
    let used: u64 = info_field(&got, "used_memory")
        .context("used_memory")?
        .parse()?;
    let rss: u64 = info_field(&got, "used_memory_rss")
        .context("rss")?
        .parse()?;
    assert!(used > 0 && used < rss, "used {used}, rss {rss}");
    node.stop().await
}

#[tokio::test]
async fn blocked_clients_counts_clients_waiting_in_blpop() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut admin = node.client().await?;
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let mut client = node.client().await?;
        client
            .send_raw(&data_support::encode(&[b"BLPOP", b"queue", b"0"]))
            .await?;
        waiting.push(client);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = admin.line("INFO clients").await?;
        if info_field(&info, "blocked_clients").as_deref() == Some("2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never saw 2 blocked clients: {info}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(admin.line("RPUSH queue a b").await?, ":2\r\n");
    for client in &mut waiting {
        let reply = client.read_reply().await?;
        assert!(reply.starts_with(b"*2\r\n"), "{reply:?}");
    }
    let info = admin.line("INFO clients").await?;
    assert_eq!(info_field(&info, "blocked_clients").as_deref(), Some("0"));
    node.stop().await
}

/// CONFIG SET appendfsync reaches the AOF writer of a running node: under `no` nothing is fsynced
/// for longer than everysec's period; switched to `always`, the next write is fsynced at once.
/// INFO persistence of a node with an AOF also shows Redis's AOF-only fields.
#[tokio::test]
async fn appendfsync_changes_take_effect_on_the_running_writer() -> anyhow::Result<()> {
    let mut node = LoggedNode::start(FsyncPolicy::Everysec).await?;
    let (_path, log, _state, addr) = (
        node.path.clone(),
        node.log.clone(),
        node.live.clone(),
        node.addr,
    );
    let mut client = RawClient::connect(addr).await?;

    assert_eq!(client.line("CONFIG SET appendfsync no").await?, "+OK\r\n");
    assert_eq!(log.policy(), FsyncPolicy::No);
    let synced_before = log.progress().synced;
    assert_eq!(client.line("SET a 1").await?, "+OK\r\n");
    let target = log.offset();
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.progress().written < target {
        assert!(
            Instant::now() < deadline,
            "the write never reached the file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Longer than everysec's one-second period: an fsync now would mean the change was ignored.
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet_until {
        assert_eq!(
            log.progress().synced,
            synced_before,
            "fsynced under appendfsync no"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(
        client.line("CONFIG SET appendfsync always").await?,
        "+OK\r\n"
    );
    assert_eq!(
        client.line("CONFIG GET appendfsync").await?,
        "*2\r\n$11\r\nappendfsync\r\n$6\r\nalways\r\n"
    );
    assert_eq!(client.line("SET b 2").await?, "+OK\r\n");
    let target = log.offset();
    let deadline = Instant::now() + Duration::from_millis(900);
    while log.progress().synced < target {
        assert!(
            Instant::now() < deadline,
            "not fsynced promptly under always"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let info = client.line("INFO persistence").await?;
    assert_eq!(info_field(&info, "aof_enabled").as_deref(), Some("1"));
    let size: u64 = info_field(&info, "aof_current_size")
        .context("aof_current_size")?
        .parse()?;
    assert_eq!(size, log.progress().file_size);
    for field in ["aof_base_size", "aof_buffer_length", "aof_delayed_fsync"] {
        assert!(
            info_field(&info, field).is_some(),
            "{field} missing: {info}"
        );
    }
    assert_eq!(
        info_field(&info, "aof_last_write_status").as_deref(),
        Some("ok")
    );

    node.stop().await?;
    log.flush_and_sync().await?;
    Ok(())
}
