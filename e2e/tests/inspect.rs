//! Key inspection through the proxy of a whole cluster (in-process): `redis-cli --scan` lists every key
//! exactly once while the proxy's SCAN walks all three shards with one cursor, and `--bigkeys` and
//! `--memkeys` (DBSIZE, SCAN, then pipelines of TYPE and of STRLEN / LLEN / HLEN / SCARD / ZCARD
//! or MEMORY USAGE, each routed to the key's shard) name the biggest key of each type; INFO
//! keyspace sums the shards with a real avg_ttl.

use std::collections::BTreeSet;
use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::RespClient;
use tessera_proto::slot::key_hash_slot;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// Keys of every type, spread over the shards, and one clearly biggest key per type.
fn load(client: &mut RespClient) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut call = |args: &[&str], key: &str| {
        let reply = client.call_str(args);
        assert!(!reply.starts_with('-'), "{args:?}: {reply}");
        keys.insert(key.to_string());
    };
    for i in 0..150 {
        let key = format!("small:{i}");
        call(&["SET", &key, "v"], &key);
    }
    for i in 0..15 {
        let (l, h, s, z) = (
            format!("list:{i}"),
            format!("hash:{i}"),
            format!("set:{i}"),
            format!("zset:{i}"),
        );
        call(&["RPUSH", &l, "a", "b"], &l);
        call(&["HSET", &h, "f", "v"], &h);
        call(&["SADD", &s, "a", "b"], &s);
        call(&["ZADD", &z, "1", "a", "2", "b"], &z);
    }
    let long = "x".repeat(4000);
    call(&["SET", "bigstr", &long, "EX", "1000"], "bigstr");
    for i in 0..200 {
        let (item, value) = (format!("item{i}"), format!("value{i}"));
        call(&["RPUSH", "biglist", &item], "biglist");
        call(&["HSET", "bighash", &item, &value], "bighash");
        call(&["SADD", "bigset", &item], "bigset");
        call(&["ZADD", "bigzset", &i.to_string(), &item], "bigzset");
    }
    keys
}

#[test]
fn bigkeys_memkeys_and_scan_through_the_proxy() {
    let cluster = InProcessCluster::up(NODE_TIMEOUT);
    let proxy = cluster.proxy_port;
    let mut client = RespClient::connect(proxy).expect("connect to the proxy");
    let keys = load(&mut client);
    // The big keys must not all sit on one shard, or the walk over shards proves little.
    let shards: BTreeSet<u16> = ["bigstr", "biglist", "bighash", "bigset", "bigzset"]
        .iter()
        .map(|k| key_hash_slot(k.as_bytes()) / 5461)
        .collect();
    assert!(shards.len() > 1, "big keys all in one shard: {shards:?}");

    // --scan: every key exactly once.
    let scanned = cluster.cli(proxy, &["--scan"]);
    let listed: Vec<&str> = scanned.lines().collect();
    let unique: BTreeSet<String> = listed.iter().map(|k| k.to_string()).collect();
    assert_eq!(listed.len(), unique.len(), "a key listed twice:\n{scanned}");
    assert_eq!(unique, keys, "--scan through the proxy lists other keys");

    let total = keys.len();
    let big = cluster.cli(proxy, &["--bigkeys"]);
    assert!(big.contains(&format!("Sampled {total} keys")), "{big}");
    for line in [
        "Biggest string found '\"bigstr\"' has 4000 bytes",
        "Biggest   list found '\"biglist\"' has 200 items",
        "Biggest   hash found '\"bighash\"' has 200 fields",
        "Biggest    set found '\"bigset\"' has 200 members",
        "Biggest   zset found '\"bigzset\"' has 200 members",
    ] {
        assert!(big.contains(line), "--bigkeys lacks {line:?}:\n{big}");
    }

    let mem = cluster.cli(proxy, &["--memkeys"]);
    assert!(mem.contains(&format!("Sampled {total} keys")), "{mem}");
    for (kind, key) in [
        ("string", "bigstr"),
        ("  list", "biglist"),
        ("  hash", "bighash"),
        ("   set", "bigset"),
        ("  zset", "bigzset"),
    ] {
        let prefix = format!("Biggest {kind} found '\"{key}\"' has ");
        assert!(mem.contains(&prefix), "--memkeys lacks {prefix:?}:\n{mem}");
    }

    // INFO keyspace through the proxy: the shards' sums, and the one TTL's remaining time.
    let info = cluster.cli(proxy, &["info", "keyspace"]);
    let db0 = info
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("db0:"))
        .unwrap_or_else(|| panic!("no db0 line:\n{info}"));
    assert!(
        db0.starts_with(&format!("keys={total},expires=1,avg_ttl=")),
        "{db0}"
    );
    let avg_ttl: u64 = db0
        .rsplit_once("avg_ttl=")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    assert!((900_000..=1_000_000).contains(&avg_ttl), "{db0}");
}
