//! Real Redis clients and tools pointed at the proxy of a real local cluster: `redis-cli --cluster
//! check` and `redis-benchmark --cluster` (which want several masters: the proxy shows one virtual
//! master per real master, all at its own address), redis-py's `Redis` and `RedisCluster`
//! (e2e/python/redis_py_clients.py), all against processes; and the Rust `redis` crate's plain and
//! cluster clients against an in-process cluster (the crate runs inside the test).

use std::process::Command;
use std::time::Duration;

use redis::Commands;
use tessera_e2e::cluster::LocalCluster;
use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::{redis as tools, repo_root};

const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// stdout and stderr of a finished program, for assertions and failure messages.
fn text_of(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_clean(what: &str, output: &std::process::Output) -> String {
    let text = text_of(output);
    assert!(output.status.success(), "{what} failed:\n{text}");
    let lower = text.to_lowercase();
    for bad in ["[err]", "error", "warning"] {
        assert!(!lower.contains(bad), "{what} printed {bad:?}:\n{text}");
    }
    text
}

/// `text` without the ANSI colour sequences (`ESC [ ... m`) redis-cli prints.
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn redis_cli_cluster_check_and_redis_benchmark_cluster_mode() {
    let cluster = LocalCluster::up(NODE_TIMEOUT);
    let proxy = cluster.proxy_port;
    let address = format!("127.0.0.1:{proxy}");

    // Twice: the second check starts where the first left the proxy's turns of `myself`.
    for run in 0..2 {
        let output = tools::run("redis-cli", &["--cluster", "check", &address]);
        let text = assert_clean(&format!("redis-cli --cluster check (run {run})"), &output);
        for expected in [
            "[OK] All nodes agree about slots configuration.",
            "[OK] All 16384 slots covered.",
            "slots:[0-5460] (5461 slots) master",
            "slots:[5461-10922] (5462 slots) master",
            "slots:[10923-16383] (5461 slots) master",
        ] {
            assert!(text.contains(expected), "check lacks {expected:?}:\n{text}");
        }
        let plain = strip_colours(&text);
        let masters: Vec<&str> = plain.lines().filter(|l| l.starts_with("M: ")).collect();
        assert_eq!(masters.len(), 3, "{text}");
        assert!(
            masters.iter().all(|l| l.ends_with(&format!(" {address}"))),
            "every master is the proxy's address:\n{text}"
        );
    }

    let proxy_s = proxy.to_string();
    let output = tools::run(
        "redis-benchmark",
        &[
            "--cluster",
            "-p",
            &proxy_s,
            "-t",
            "set,get",
            "-n",
            "30000",
            "-c",
            "12",
            "-d",
            "64",
            "-r",
            "100000",
        ],
    );
    let text = assert_clean("redis-benchmark --cluster", &output);
    assert!(text.contains("Cluster has 3 master nodes"), "{text}");
    assert!(
        text.matches(&format!("127.0.0.1:{proxy}")).count() >= 3,
        "{text}"
    );
    assert!(text.contains("requests per second"), "{text}");
    // Its keys (tagged per virtual master's slots) reached every real node through the proxy.
    for &port in &cluster.node_ports {
        let size = cluster.cli(port, &["dbsize"]);
        let size: u64 = size.trim().parse().unwrap_or(0);
        assert!(size > 0, "node {port} got none of the benchmark's keys");
    }
}

/// The redis-py version e2e/python/requirements.txt pins (what scripts/ensure-tools.sh installs).
fn pinned_redis_py() -> String {
    let file = repo_root().join("e2e/python/requirements.txt");
    let text = std::fs::read_to_string(&file).expect("read e2e/python/requirements.txt");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("redis=="))
        .expect("requirements.txt pins redis==VERSION")
        .to_string()
}

/// Runs e2e/python/redis_py_clients.py against a fresh cluster's proxy.
fn run_redis_py() {
    // A missing or different redis-py fails here (never a skip): scripts/ensure-tools.sh installs it.
    let want = pinned_redis_py();
    let version = Command::new("python3")
        .args(["-c", "import redis; print(redis.__version__)"])
        .output()
        .expect("run python3 (scripts/ensure-tools.sh installs redis-py)");
    let got = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert_eq!(
        got,
        want,
        "redis-py {want} is not installed for python3; run scripts/ensure-tools.sh\n{}",
        text_of(&version)
    );

    let cluster = LocalCluster::up(NODE_TIMEOUT);
    let script = repo_root().join("e2e/python/redis_py_clients.py");
    let output = Command::new("timeout")
        .arg("180")
        .arg("python3")
        .arg(&script)
        .arg(cluster.proxy_port.to_string())
        .output()
        .expect("run the redis-py script");
    let text = text_of(&output);
    assert!(
        output.status.success(),
        "redis-py script failed:\n{text}\n{}",
        cluster.logs()
    );
    assert!(text.contains("redis.Redis: ok"), "{text}");
    assert!(text.contains("redis.cluster.RedisCluster: ok"), "{text}");
}

/// The script: data types, pipelines, MULTI/EXEC and WATCH on one slot, pub/sub (subscribe
/// through the proxy, publish through another connection), scan_iter and blocking pops, with both
/// `redis.Redis` and `redis.cluster.RedisCluster`.
#[test]
fn redis_py_plain_and_cluster_clients() {
    run_redis_py();
}

#[test]
fn rust_redis_crate_plain_and_cluster_clients() {
    let cluster = InProcessCluster::up(NODE_TIMEOUT);
    let url = format!("redis://127.0.0.1:{}/", cluster.proxy_port);

    // Plain client.
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect to the proxy");
    let () = con.set("rs:plain:a", "1").expect("SET");
    let got: String = con.get("rs:plain:a").expect("GET");
    assert_eq!(got, "1");
    let n: i64 = con.incr("rs:plain:n", 5).expect("INCRBY");
    assert_eq!(n, 5);
    let () = con
        .mset(&[
            ("rs:plain:m1", "x"),
            ("rs:plain:m2", "y"),
            ("rs:plain:m3", "z"),
        ])
        .expect("MSET across slots");
    let values: Vec<Option<String>> = con
        .mget(&["rs:plain:m1", "rs:plain:m2", "rs:plain:m3", "rs:none"])
        .expect("MGET across slots");
    assert_eq!(
        values,
        vec![Some("x".into()), Some("y".into()), Some("z".into()), None]
    );
    let (a, b): (String, i64) = redis::pipe()
        .set("rs:plain:p", "v")
        .ignore()
        .get("rs:plain:p")
        .hset("rs:plain:h", "f", 1)
        .query(&mut con)
        .expect("pipeline");
    assert_eq!((a.as_str(), b), ("v", 1));
    let list: Vec<String> = {
        let _: i64 = con.rpush("rs:plain:l", &["a", "b"]).expect("RPUSH");
        con.lrange("rs:plain:l", 0, -1).expect("LRANGE")
    };
    assert_eq!(list, ["a", "b"]);
    let mut scanned: Vec<String> = con
        .scan_match::<_, String>("rs:plain:m*")
        .expect("SCAN")
        .collect::<Result<_, _>>()
        .expect("SCAN reply");
    scanned.sort();
    assert_eq!(scanned, ["rs:plain:m1", "rs:plain:m2", "rs:plain:m3"]);

    // Cluster client: it reads CLUSTER SLOTS from the proxy, finds only the proxy's address, and
    // sends everything there.
    type SlotRange = (u16, u16, (String, u16, String, redis::Value));
    let slots: Vec<SlotRange> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut con)
        .expect("CLUSTER SLOTS");
    let ranges: Vec<(u16, u16)> = slots.iter().map(|(a, b, _)| (*a, *b)).collect();
    assert_eq!(ranges, [(0, 5460), (5461, 10922), (10923, 16383)]);
    assert!(
        slots
            .iter()
            .all(|(_, _, (host, port, _, _))| host == "127.0.0.1" && *port == cluster.proxy_port),
        "every range is served at the proxy's address: {slots:?}"
    );
    let client = redis::cluster::ClusterClient::builder(vec![url.as_str()])
        .connection_timeout(Duration::from_secs(10))
        .response_timeout(Duration::from_secs(10))
        .build()
        .expect("cluster client");
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..200 {
        let () = con
            .set(format!("rs:cluster:{i}"), i)
            .expect("SET via cluster client");
    }
    for i in 0..200 {
        let got: i64 = con
            .get(format!("rs:cluster:{i}"))
            .expect("GET via cluster client");
        assert_eq!(got, i);
    }
    let (hv, zn): (String, i64) = redis::cluster::cluster_pipe()
        .hset("rs:cluster:h", "f", "hv")
        .ignore()
        .hget("rs:cluster:h", "f")
        .zadd("rs:cluster:z", "m", 1)
        .query(&mut con)
        .expect("cluster pipeline");
    assert_eq!((hv.as_str(), zn), ("hv", 1));
    let () = con.set("{rs}c1", 1).expect("SET");
    let deleted: i64 = con
        .del(&["{rs}c1", "{rs}c2", "{rs}c3"])
        .expect("DEL in one slot");
    assert_eq!(deleted, 1);
    // Every key landed in the cluster: the proxy's DBSIZE sums the nodes'.
    let total: i64 = redis::cmd("DBSIZE")
        .query(&mut client_plain(&url))
        .expect("DBSIZE");
    assert!(total >= 200 + 10, "DBSIZE {total}");
}

fn client_plain(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(10)))
        .expect("connect to the proxy")
}

/// MULTI/EXEC through the crate's atomic pipeline, on one slot.
#[test]
fn rust_redis_crate_transactions() {
    let cluster = InProcessCluster::up(NODE_TIMEOUT);
    let url = format!("redis://127.0.0.1:{}/", cluster.proxy_port);
    let mut con = client_plain(&url);
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .incr("{rs}tx", 1)
        .incr("{rs}tx", 1)
        .query(&mut con)
        .expect("MULTI/EXEC on one slot");
    assert_eq!((x, y), (1, 2));
}
