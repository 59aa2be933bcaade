//! Inspection on a node: the real `redis-cli --bigkeys` and `--memkeys` run against an in-process
//! node and must name the biggest key of each type; MEMORY USAGE orders keys by what they hold;
//! INFO's keyspace, stats and commandstats count what was done; CLIENT LIST shows subscribers,
//! open transactions and blocked clients as a real redis-server does.

mod data_support;

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{bail, Context};
use data_support::{encode, words, RawClient, TestNode};
use tessera_testkit::RedisServer;

fn redis_cli_available() -> bool {
    Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> <flags>` off the runtime's threads; its stdout.
async fn redis_cli(addr: SocketAddr, flag: &'static str) -> anyhow::Result<String> {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
            .args(flag.split(' '))
            .output()
    })
    .await?
    .context("running redis-cli")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || !output.stderr.is_empty() {
        bail!(
            "redis-cli {flag} failed: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// Many small keys of every type, and one clearly biggest key per type (by count and by bytes).
async fn load(client: &mut RawClient) -> anyhow::Result<()> {
    for i in 0..200 {
        client.line(&format!("SET small:{i} v{i}")).await?;
    }
    for i in 0..20 {
        client.line(&format!("RPUSH list:{i} a b")).await?;
        client.line(&format!("HSET hash:{i} f v")).await?;
        client.line(&format!("SADD set:{i} a b")).await?;
        client.line(&format!("ZADD zset:{i} 1 a 2 b")).await?;
    }
    let long = "x".repeat(3000);
    client.line(&format!("SET bigstr {long}")).await?;
    for i in 0..300 {
        client.line(&format!("RPUSH biglist item{i}")).await?;
        client
            .line(&format!("HSET bighash field{i} value{i}"))
            .await?;
        client.line(&format!("SADD bigset member{i}")).await?;
        client.line(&format!("ZADD bigzset {i} member{i}")).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigkeys_and_memkeys_name_the_biggest_keys() -> anyhow::Result<()> {
    if !redis_cli_available() {
        eprintln!("SKIPPED: redis-cli not found on PATH; install Debian's redis-tools to run it");
        return Ok(());
    }
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    load(&mut client).await?;
    let total = 200 + 4 * 20 + 5;

    let big = redis_cli(node.addr, "--bigkeys").await?;
    assert!(big.contains(&format!("Sampled {total} keys")), "{big}");
    for line in [
        "Biggest string found '\"bigstr\"' has 3000 bytes",
        "Biggest   list found '\"biglist\"' has 300 items",
        "Biggest   hash found '\"bighash\"' has 300 fields",
        "Biggest    set found '\"bigset\"' has 300 members",
        "Biggest   zset found '\"bigzset\"' has 300 members",
    ] {
        assert!(big.contains(line), "missing {line:?} in\n{big}");
    }

    // --memkeys sends MEMORY USAGE key; --memkeys-samples 0 adds SAMPLES 0 (every element).
    for flags in ["--memkeys", "--memkeys-samples 0"] {
        let mem = redis_cli(node.addr, flags).await?;
        assert!(mem.contains(&format!("Sampled {total} keys")), "{mem}");
        for (kind, key) in [
            ("string", "bigstr"),
            ("  list", "biglist"),
            ("  hash", "bighash"),
            ("   set", "bigset"),
            ("  zset", "bigzset"),
        ] {
            let prefix = format!("Biggest {kind} found '\"{key}\"' has ");
            assert!(
                mem.contains(&prefix),
                "{flags}: missing {prefix:?} in\n{mem}"
            );
        }
    }

    // The figures themselves: every big key above 3000 bytes, and above its small sibling.
    for (bigkey, small) in [
        ("bigstr", "small:1"),
        ("biglist", "list:1"),
        ("bighash", "hash:1"),
        ("bigset", "set:1"),
        ("bigzset", "zset:1"),
    ] {
        let big_n = usage(&mut client, bigkey).await?;
        let small_n = usage(&mut client, small).await?;
        assert!(
            big_n > 3000 && small_n < 1000,
            "{bigkey}={big_n} {small}={small_n}"
        );
    }
    assert_eq!(client.line("MEMORY USAGE nosuch").await?, "$-1\r\n");
    node.stop().await
}

async fn usage(client: &mut RawClient, key: &str) -> anyhow::Result<i64> {
    let reply = client
        .line(&format!("MEMORY USAGE {key} SAMPLES 0"))
        .await?;
    reply
        .trim_start_matches(':')
        .trim_end()
        .parse()
        .with_context(|| format!("MEMORY USAGE {key}: {reply:?}"))
}

/// The value of `field` in an INFO reply.
fn field(info: &str, name: &str) -> Option<String> {
    info.split("\r\n")
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map(str::to_string)
}

#[tokio::test]
async fn info_counts_keys_ttls_hits_and_commands() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    client.line("CONFIG RESETSTAT").await?;
    client.line("SET a 1 EX 1000").await?;
    client.line("SET b 1 EX 2000").await?;
    client.line("SET c 1").await?;
    client.line("GET a").await?;
    client.line("GET nosuch").await?;
    client.line("INCR a").await?;
    client.line("LPUSH a x").await?;

    let info = client.line("INFO keyspace").await?;
    let db0 = field(&info, "db0").context("no db0 line")?;
    let avg_ttl: u64 = db0
        .rsplit_once("avg_ttl=")
        .and_then(|(_, n)| n.parse().ok())
        .context("no avg_ttl")?;
    assert!(db0.starts_with("keys=3,expires=2,"), "{db0}");
    assert!((1_400_000..=1_500_000).contains(&avg_ttl), "{db0}");

    let info = client.line("INFO stats").await?;
    assert_eq!(
        field(&info, "keyspace_hits").as_deref(),
        Some("1"),
        "{info}"
    );
    assert_eq!(
        field(&info, "keyspace_misses").as_deref(),
        Some("1"),
        "{info}"
    );
    assert!(
        field(&info, "instantaneous_ops_per_sec").is_some(),
        "{info}"
    );

    let info = client.line("INFO commandstats").await?;
    let set = field(&info, "cmdstat_set").context("no cmdstat_set")?;
    assert!(set.starts_with("calls=3,usec="), "{set}");
    assert!(set.ends_with(",rejected_calls=0,failed_calls=0"), "{set}");
    let lpush = field(&info, "cmdstat_lpush").context("no cmdstat_lpush")?;
    assert!(lpush.ends_with("failed_calls=1"), "{lpush}");
    let config = field(&info, "cmdstat_config|resetstat").context("no resetstat")?;
    assert!(config.starts_with("calls=1,"), "{config}");
    // Not in the default sections, as Redis.
    assert!(!client.line("INFO").await?.contains("# Commandstats"));
    assert!(client.line("INFO all").await?.contains("# Commandstats"));

    let info = client.line("INFO memory").await?;
    for name in [
        "used_memory",
        "used_memory_human",
        "used_memory_rss",
        "used_memory_peak",
        "maxmemory",
        "maxmemory_policy",
        "mem_fragmentation_ratio",
    ] {
        assert!(field(&info, name).is_some(), "no {name} in {info}");
    }
    node.stop().await
}

/// INFO commandstats after the calls, rejections and failures below, as a real redis-server 7.0.15
/// printed them (usec fields left out: they are timings).
#[tokio::test]
async fn commandstats_count_calls_rejections_and_failures_as_redis() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    for line in [
        "SET s v",
        "CONFIG RESETSTAT",
        "GET a b",
        "CONFIG GET",
        "CONFIG NOPE",
        "MEMORY USAGE h samples x",
        "LPUSH s x",
    ] {
        client.line(line).await?;
    }
    let info = client.line("INFO commandstats").await?;
    let mut lines: Vec<String> = info
        .split("\r\n")
        .filter(|l| l.starts_with("cmdstat_"))
        .map(|l| {
            l.split(',')
                .filter(|f| !f.starts_with("usec"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    lines.sort();
    let expected = [
        "cmdstat_config|get:calls=0,rejected_calls=1,failed_calls=0",
        "cmdstat_config|resetstat:calls=1,rejected_calls=0,failed_calls=0",
        "cmdstat_get:calls=0,rejected_calls=1,failed_calls=0",
        "cmdstat_lpush:calls=1,rejected_calls=0,failed_calls=1",
        "cmdstat_memory|usage:calls=1,rejected_calls=0,failed_calls=1",
    ];
    assert_eq!(lines, expected, "{info}");
    node.stop().await
}

/// instantaneous_ops_per_sec is a real moving rate: commands sent show in it within a few
/// sampling periods (100 ms each), and it falls back to the polling's own rate once they stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_per_sec_follows_the_load() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    let mut peak = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while peak == 0 && std::time::Instant::now() < deadline {
        for _ in 0..200 {
            client.line("PING").await?;
        }
        let info = client.line("INFO stats").await?;
        peak = field(&info, "instantaneous_ops_per_sec")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
    }
    assert!(peak > 0, "the rate never rose");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info = client.line("INFO stats").await?;
        let rate: u64 = field(&info, "instantaneous_ops_per_sec")
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        // The polling INFO itself is about 10 commands a second.
        if rate <= 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rate never fell: {info}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    node.stop().await
}

/// Each client's `(flags, sub, psub, ssub, multi, cmd)` from a CLIENT LIST reply, in its order;
/// an error reply as its text.
fn client_states(reply: &str) -> Vec<Vec<String>> {
    if reply.starts_with('-') {
        return vec![vec![reply.trim_end().to_string()]];
    }
    reply
        .lines()
        .filter_map(|line| line.find("id=").map(|at| &line[at..]))
        .map(|line| {
            ["flags", "sub", "psub", "ssub", "multi", "cmd"]
                .iter()
                .map(|name| {
                    line.split(' ')
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=")[..]))
                        .unwrap_or("?")
                        .to_string()
                })
                .collect()
        })
        .collect()
}

/// The `id=` of each line of a CLIENT LIST reply.
fn client_ids(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|line| line.split(' ').find_map(|kv| kv.strip_prefix("id=")))
        .map(str::to_string)
        .collect()
}

/// Puts clients in each state CLIENT LIST tells apart (a subscriber to channels, patterns and a
/// shard channel; a transaction with commands queued; a client blocked in BLPOP; one that left
/// every state again) and returns what CLIENT LIST, with each of its options, says of them.
async fn client_list_scenario(addr: SocketAddr) -> anyhow::Result<Vec<Vec<Vec<String>>>> {
    let mut subscriber = RawClient::connect(addr).await?;
    subscriber.line("SUBSCRIBE a b").await?;
    subscriber.read_reply().await?;
    subscriber.line("PSUBSCRIBE n*").await?;
    subscriber.line("SSUBSCRIBE s").await?;
    let mut transaction = RawClient::connect(addr).await?;
    transaction.line("MULTI").await?;
    transaction.line("SET k v").await?;
    transaction.line("INCR n").await?;
    let mut blocked = RawClient::connect(addr).await?;
    blocked.send_raw(&encode(&words("BLPOP list 0"))).await?;
    let mut done = RawClient::connect(addr).await?;
    done.line("MULTI").await?;
    done.line("SET k w").await?;
    done.line("EXEC").await?;
    let mut observer = RawClient::connect(addr).await?;
    // The BLPOP is registered once the server has read it: poll (bounded) until it shows.
    let mut list = String::new();
    for _ in 0..200 {
        list = observer.line("CLIENT LIST").await?;
        if list.contains("cmd=blpop") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if !list.contains("cmd=blpop") {
        bail!("the BLPOP client never showed in CLIENT LIST");
    }
    // Ids differ between the servers: ask for the blocked client, the subscriber twice and one
    // that does not exist, by the ids this server gave them.
    let ids = client_ids(&list);
    let by_id = format!(
        "CLIENT LIST ID {} {} {} 99999 {}",
        ids[2], ids[0], ids[0], ids[0]
    );
    let mut replies = vec![client_states(&list)];
    for line in [
        "CLIENT LIST TYPE pubsub",
        "CLIENT LIST TYPE normal",
        "CLIENT LIST TYPE master",
        "CLIENT LIST TYPE replica",
        &by_id,
        "CLIENT LIST ID -5",
        "CLIENT LIST ID x",
        "CLIENT LIST ID",
        "CLIENT LIST TYPE normal ID 1",
        "CLIENT LIST TYPE bogus",
        "CLIENT LIST bogus",
    ] {
        replies.push(client_states(&observer.line(line).await?));
    }
    Ok(replies)
}

#[tokio::test]
async fn client_list_shows_subscriptions_transactions_and_blocked_clients_as_redis(
) -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let theirs = client_list_scenario(redis.addr()).await?;
    let ours = client_list_scenario(node.addr).await?;
    for (i, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            ours, theirs,
            "reply {i}: node's CLIENT LIST against redis-server's"
        );
    }
    let flags: Vec<&str> = theirs[0][..4].iter().map(|s| s[0].as_str()).collect();
    assert_eq!(
        flags,
        ["P", "x", "b", "N"],
        "the scenario covers every flag"
    );
    node.stop().await
}
