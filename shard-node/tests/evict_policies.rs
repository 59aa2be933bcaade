//! maxmemory and each eviction policy, on a node served in-process: fill past a small limit and
//! look at what stayed. Used memory is the process's allocator count, shared by every node of the
//! process, so these tests run one at a time (`SERIAL`) and set each limit a few megabytes above
//! what the process uses when the test starts.

mod data_support;

use data_support::LoggedNode;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use data_support::{dump_keyspace, node_state, RawClient, TestNode};
use tessera_shard_node::aof::{self, FsyncPolicy};
use tessera_shard_node::cmd;
use tessera_shard_node::evict::used_memory;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Room above the memory in use when a test starts.
const HEADROOM: u64 = 2 * 1024 * 1024;
/// Bytes per value: about 2,000 keys fill the headroom.
const VALUE_SIZE: usize = 1000;
/// How far over the limit the node may be seen after a write: one key, plus what a write
/// allocates besides (the reply, a slot table's growth), with margin.
const OVERSHOOT_BOUND: u64 = 64 * 1024;
/// Most writes any fill loop sends.
const MAX_WRITES: usize = 50_000;

fn value() -> String {
    "v".repeat(VALUE_SIZE)
}

/// A node with a limit `HEADROOM` above the memory in use now, under `policy`.
struct Limited {
    node: TestNode,
    client: RawClient,
    limit: u64,
    /// The most seen over the limit right after a write.
    worst_overshoot: u64,
}

impl Limited {
    async fn start(policy: &str) -> anyhow::Result<Limited> {
        let node = TestNode::start().await?;
        let mut client = node.client().await?;
        // Warm the connection's buffers before measuring.
        client.line("PING").await?;
        let limit = used_memory() + HEADROOM;
        let reply = client
            .line(&format!(
                "CONFIG SET maxmemory {limit} maxmemory-policy {policy}"
            ))
            .await?;
        anyhow::ensure!(reply == "+OK\r\n", "CONFIG SET: {reply}");
        Ok(Limited {
            node,
            client,
            limit,
            worst_overshoot: 0,
        })
    }

    /// Sends a write and checks the limit held (within the bound) once it is done.
    async fn write(&mut self, line: &str) -> anyhow::Result<String> {
        let reply = self.client.line(line).await?;
        let used = used_memory();
        let over = used.saturating_sub(self.limit);
        self.worst_overshoot = self.worst_overshoot.max(over);
        anyhow::ensure!(
            over <= OVERSHOOT_BOUND,
            "{used} bytes used after `{}`: {over} over the limit of {}",
            line.split(' ').take(2).collect::<Vec<_>>().join(" "),
            self.limit
        );
        Ok(reply)
    }

    async fn info_u64(&mut self, field: &str) -> anyhow::Result<u64> {
        let info = self.client.line("INFO").await?;
        info.split("\r\n")
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .context(field.to_string())?
            .parse()
            .context(field.to_string())
    }

    async fn exists(&mut self, key: &str) -> anyhow::Result<bool> {
        Ok(self.client.line(&format!("EXISTS {key}")).await? == ":1\r\n")
    }

    async fn dbsize(&mut self) -> anyhow::Result<u64> {
        let reply = self.client.line("DBSIZE").await?;
        Ok(reply.trim_start_matches(':').trim_end().parse()?)
    }

    /// Writes `prefix:<n>` keys (with `ttl` seconds when given) until `done` says so or a write
    /// is refused; returns the keys written and the refusal, if any.
    async fn fill(
        &mut self,
        prefix: &str,
        ttl: Option<u64>,
        mut done: impl FnMut(usize) -> bool,
    ) -> anyhow::Result<(Vec<String>, Option<String>)> {
        let value = value();
        let mut written = Vec::new();
        for i in 0..MAX_WRITES {
            if done(i) {
                return Ok((written, None));
            }
            let key = format!("{prefix}:{i}");
            let line = match ttl {
                Some(ttl) => format!("SET {key} {value} EX {ttl}"),
                None => format!("SET {key} {value}"),
            };
            let reply = self.write(&line).await?;
            if reply != "+OK\r\n" {
                return Ok((written, Some(reply)));
            }
            written.push(key);
        }
        bail!("{MAX_WRITES} writes and still not done")
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.node.stop().await
    }
}

const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";

/// Keys that fit in the headroom about `times` times over.
fn keys_for(times: u64) -> usize {
    (HEADROOM * times / VALUE_SIZE as u64) as usize
}

#[tokio::test]
async fn noeviction_refuses_writes_once_full_and_accepts_them_after_deletes() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let mut node = Limited::start("noeviction").await?;
    let (written, refused) = node.fill("k", None, |i| i > keys_for(3)).await?;
    assert_eq!(refused.as_deref(), Some(OOM));
    assert!(
        written.len() > keys_for(1) / 2,
        "only {} keys fit",
        written.len()
    );
    assert_eq!(node.dbsize().await?, written.len() as u64);
    assert_eq!(node.info_u64("evicted_keys").await?, 0);
    // Reads and deletes still run; deleting gives the memory back, so writes work again.
    assert!(node.exists(&written[0]).await?);
    for key in &written[..written.len() / 2] {
        assert_eq!(node.write(&format!("DEL {key}")).await?, ":1\r\n");
    }
    assert_eq!(
        node.write(&format!("SET again {}", value())).await?,
        "+OK\r\n"
    );
    node.stop().await
}

#[tokio::test]
async fn allkeys_random_evicts_to_stay_under_the_limit_and_counts() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut node = Limited::start("allkeys-random").await?;
    let total = keys_for(3);
    let (written, refused) = node.fill("k", None, |i| i >= total).await?;
    assert_eq!(refused, None);
    assert_eq!(written.len(), total);
    let held = node.dbsize().await?;
    assert!(held < total as u64 / 2, "{held} of {total} keys still held");
    assert_eq!(node.info_u64("evicted_keys").await?, total as u64 - held);
    // The counter is a stat: CONFIG RESETSTAT clears it.
    node.client.line("CONFIG RESETSTAT").await?;
    assert_eq!(node.info_u64("evicted_keys").await?, 0);
    println!(
        "allkeys-random: worst overshoot {} bytes",
        node.worst_overshoot
    );
    node.stop().await
}

#[tokio::test]
async fn volatile_policies_answer_oom_when_no_key_has_a_ttl() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    for policy in [
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let mut node = Limited::start(policy).await?;
        let (written, refused) = node.fill("k", None, |i| i > keys_for(3)).await?;
        assert_eq!(refused.as_deref(), Some(OOM), "{policy}");
        assert_eq!(node.dbsize().await?, written.len() as u64, "{policy}");
        assert_eq!(node.info_u64("evicted_keys").await?, 0, "{policy}");
        node.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn volatile_policies_evict_only_keys_with_a_ttl() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    for policy in [
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let mut node = Limited::start(policy).await?;
        // Half the headroom in keys with a TTL, then keys without until a write is refused.
        let (volatile, refused) = node
            .fill("ttl", Some(100_000), |i| i >= keys_for(1) / 2)
            .await?;
        assert_eq!(refused, None, "{policy}");
        let (persistent, refused) = node.fill("keep", None, |i| i > keys_for(3)).await?;
        assert_eq!(refused.as_deref(), Some(OOM), "{policy}: never refused");
        // Every key without a TTL is still there; the ones with went first, and all of them.
        for key in &persistent {
            assert!(node.exists(key).await?, "{policy}: {key} evicted");
        }
        let mut volatile_left = 0;
        for key in &volatile {
            volatile_left += u64::from(node.exists(key).await?);
        }
        assert_eq!(
            volatile_left, 0,
            "{policy}: OOM while keys with a TTL remain"
        );
        assert_eq!(
            node.info_u64("evicted_keys").await?,
            volatile.len() as u64,
            "{policy}"
        );
        node.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn volatile_ttl_evicts_the_soonest_expiring_first() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut node = Limited::start("volatile-ttl").await?;
    let count = keys_for(1) * 3 / 5;
    // TTLs in a scattered order, so no other order (insertion, key name) lines up with them.
    let ttl_of = |i: usize| 100_000 + ((i * 7919) % count) as u64 * 10;
    let value = value();
    for i in 0..count {
        let reply = node
            .write(&format!("SET t:{i} {value} EX {}", ttl_of(i)))
            .await?;
        assert_eq!(reply, "+OK\r\n");
    }
    // Keys without a TTL push the volatile ones out, until a third of them went.
    let target = count as u64 / 3;
    let mut evicted = 0;
    let mut i = 0;
    while evicted < target {
        assert!(i < MAX_WRITES, "only {evicted} evicted");
        let reply = node.write(&format!("SET p:{i} {value}")).await?;
        assert_eq!(reply, "+OK\r\n");
        i += 1;
        if i % 16 == 0 {
            evicted = node.info_u64("evicted_keys").await?;
        }
    }
    let mut gone = Vec::new();
    for i in 0..count {
        if !node.exists(&format!("t:{i}")).await? {
            gone.push(ttl_of(i));
        }
    }
    // Sampled, not sorted: most of what went must be among the soonest-expiring half.
    let median = 100_000 + (count as u64 / 2) * 10;
    let soon = gone.iter().filter(|ttl| **ttl < median).count();
    println!(
        "volatile-ttl: {} of {} evicted keys were in the soonest-expiring half",
        soon,
        gone.len()
    );
    assert!(
        soon * 100 >= gone.len() * 90,
        "{soon} of {} evicted keys in the soonest half",
        gone.len()
    );
    node.stop().await
}

/// Fills `hot` and `cold` keys (together about 70% of the headroom), runs `use_hot` on the hot
/// ones, then writes new keys until half the cold ones could have gone; returns the hot keys that
/// survived and the cold ones that did.
async fn hot_and_cold(
    node: &mut Limited,
    hot: usize,
    before_use: Duration,
    reads_per_hot_key: usize,
) -> anyhow::Result<(usize, usize, usize)> {
    let value = value();
    let cold = keys_for(1) * 7 / 10 - hot;
    for i in 0..cold.max(hot) {
        if i < hot {
            assert_eq!(
                node.write(&format!("SET hot:{i} {value}")).await?,
                "+OK\r\n"
            );
        }
        if i < cold {
            assert_eq!(
                node.write(&format!("SET cold:{i} {value}")).await?,
                "+OK\r\n"
            );
        }
    }
    assert_eq!(
        node.info_u64("evicted_keys").await?,
        0,
        "evicted while filling"
    );
    // The LRU clock counts whole seconds: let it move on before the hot keys are read.
    let started = Instant::now();
    while started.elapsed() < before_use {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..reads_per_hot_key {
        for i in 0..hot {
            let reply = node.client.line(&format!("GET hot:{i}")).await?;
            assert!(reply.starts_with('$'), "{reply}");
        }
    }
    let target = cold as u64 / 2;
    let mut i = 0;
    loop {
        assert!(i < MAX_WRITES, "eviction never reached {target} keys");
        assert_eq!(
            node.write(&format!("SET new:{i} {value}")).await?,
            "+OK\r\n"
        );
        i += 1;
        if i % 16 == 0 && node.info_u64("evicted_keys").await? >= target {
            break;
        }
    }
    let mut hot_left = 0;
    for i in 0..hot {
        hot_left += usize::from(node.exists(&format!("hot:{i}")).await?);
    }
    let mut cold_left = 0;
    for i in 0..cold {
        cold_left += usize::from(node.exists(&format!("cold:{i}")).await?);
    }
    Ok((hot_left, cold_left, cold))
}

#[tokio::test]
async fn allkeys_lru_keeps_keys_that_were_read_recently() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut node = Limited::start("allkeys-lru").await?;
    let hot = 200;
    let (hot_left, cold_left, cold) =
        hot_and_cold(&mut node, hot, Duration::from_millis(2100), 1).await?;
    println!("allkeys-lru: {hot_left}/{hot} hot and {cold_left}/{cold} cold keys left");
    assert!(
        hot_left * 100 >= hot * 95,
        "{hot_left} of {hot} hot keys left"
    );
    assert!(
        cold_left <= cold / 2 + cold / 10,
        "{cold_left} of {cold} cold keys left"
    );
    node.stop().await
}

#[tokio::test]
async fn allkeys_lfu_keeps_keys_that_are_read_often() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut node = Limited::start("allkeys-lfu").await?;
    let hot = 200;
    let (hot_left, cold_left, cold) = hot_and_cold(&mut node, hot, Duration::ZERO, 10).await?;
    println!("allkeys-lfu: {hot_left}/{hot} hot and {cold_left}/{cold} cold keys left");
    assert!(
        hot_left * 100 >= hot * 95,
        "{hot_left} of {hot} hot keys left"
    );
    // New keys start at the same count as cold ones, so they go too: cold ones go at least half
    // as often as the target.
    assert!(
        cold_left < cold * 3 / 4,
        "{cold_left} of {cold} cold keys left"
    );
    node.stop().await
}

/// Evictions are logged as DEL: the file replays to the keyspace the node was left with.
#[tokio::test]
async fn evictions_are_logged_and_replay_to_the_same_keyspace() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut node = LoggedNode::start(FsyncPolicy::Everysec).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;
    client.line("PING").await?;
    let limit = used_memory() + HEADROOM;
    client
        .line(&format!(
            "CONFIG SET maxmemory {limit} maxmemory-policy allkeys-lru"
        ))
        .await?;
    let value = value();
    let total = keys_for(2);
    for i in 0..total {
        assert_eq!(client.line(&format!("SET k:{i} {value}")).await?, "+OK\r\n");
    }
    node.stop().await?;
    log.flush_and_sync().await?;
    let evicted = live.evictor.evicted_total();
    assert!(evicted > 0, "nothing was evicted");
    assert_eq!(live.keyspace.len() as u64, total as u64 - evicted);

    let replayed = node_state(None, addr.port())?;
    aof::load(&path, |args| cmd::replay(&replayed, args))?;
    let (want, got) = (
        dump_keyspace(&live.keyspace),
        dump_keyspace(&replayed.keyspace),
    );
    assert_eq!(got.len(), want.len());
    let want_keys: HashSet<_> = want.keys().collect();
    let got_keys: HashSet<_> = got.keys().collect();
    assert_eq!(got_keys, want_keys);
    assert!(got == want, "replayed values differ");
    Ok(())
}

/// redis-benchmark writing random keys far past the limit, from several pipelined clients at
/// once: no write is refused under allkeys-lru, keys are evicted, and the node ends within the
/// bound of its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_writes_past_the_limit_under_allkeys_lru() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut node = Limited::start("allkeys-lru").await?;
    let port = node.node.addr.port().to_string();
    let args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "set",
        "-n",
        "20000",
        "-r",
        "1000000",
        "-d",
        "1000",
        "-c",
        "4",
        "-P",
        "8",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-benchmark")
            .args(&args)
            .output()
    })
    .await?
    .context("running redis-benchmark (scripts/ensure-tools.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("OOM") && !stderr.contains("OOM") && !stdout.contains("ERR"),
        "{stdout}\n{stderr}"
    );
    let evicted = node.info_u64("evicted_keys").await?;
    let held = node.dbsize().await?;
    assert!(evicted > 0, "nothing evicted: {held} keys held");
    assert!(
        held * VALUE_SIZE as u64 <= HEADROOM,
        "{held} keys of {VALUE_SIZE} bytes held"
    );
    let over = used_memory().saturating_sub(node.limit);
    println!(
        "redis-benchmark under allkeys-lru: {evicted} evicted, {held} held, {over} bytes over"
    );
    assert!(over <= OVERSHOOT_BOUND, "{over} bytes over the limit");
    node.stop().await
}
