//! The proxy against a real three-master Redis Cluster, fed its topology by a fake control plane:
//! ordering, split and merge, fan-out, MOVED, CLUSTERDOWN, bad input, isolation, redis-benchmark.

mod support;

use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use support::{bulk, encode, error, same, Client, Harness};
use tessera_proto::resp::Frame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_across_shards_keeps_order() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    // 16 commands over keys spread on the three shards, sent in one write.
    let mut pipeline = Vec::new();
    for i in 0..8 {
        pipeline.extend(encode(&["SET", &format!("key:{i}"), &format!("v{i}")]));
        pipeline.extend(encode(&["GET", &format!("key:{i}")]));
    }
    c.send_raw(&pipeline).await?;
    for i in 0..8 {
        assert_eq!(c.read().await?, Frame::Simple(Bytes::from_static(b"OK")));
        assert_eq!(c.read().await?, bulk(&format!("v{i}")));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_merge_and_fan_out() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    // bar -> 5061 (node 0), foo -> 12182 (node 2), hello -> 866 (node 0), somekey -> 11058 (node 2),
    // key:a on whichever: a mix of every shard.
    let keys = ["bar", "foo", "hello", "somekey", "x", "y", "z"];
    let mut mset = vec!["MSET"];
    let values: Vec<String> = keys.iter().map(|k| format!("val-{k}")).collect();
    for (k, v) in keys.iter().zip(&values) {
        mset.push(k);
        mset.push(v);
    }
    assert_eq!(
        c.cmd(&mset).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    let mut mget = vec!["MGET"];
    mget.extend(keys);
    mget.push("missing");
    let mut want: Vec<Frame> = values.iter().map(|v| bulk(v)).collect();
    want.push(Frame::Null);
    assert_eq!(c.cmd(&mget).await?, Frame::Array(want));
    assert_eq!(
        c.cmd(&["EXISTS", "bar", "foo", "missing", "bar"]).await?,
        Frame::Integer(3)
    );
    let info = c.text(&["INFO", "keyspace"]).await?;
    assert!(
        info.starts_with("# Keyspace\r\ndb0:keys=7,expires=0"),
        "{info:?}"
    );
    // RESP3: the merged MGET is encoded in RESP3 too (null as `_`).
    c.cmd(&["HELLO", "3"]).await?;
    c.send_raw(&encode(&["MGET", "bar", "missing", "foo"]))
        .await?;
    assert_eq!(
        &c.read_raw().await?[..],
        b"*3\r\n$7\r\nval-bar\r\n_\r\n$7\r\nval-foo\r\n"
    );
    c.cmd(&["HELLO", "2"]).await?;

    // DBSIZE through the proxy is the sum of the nodes'.
    let mut sum = 0;
    for node in &h.cluster.nodes {
        let mut direct = Client::connect(node.port).await?;
        match direct.cmd(&["DBSIZE"]).await? {
            Frame::Integer(n) => sum += n,
            other => panic!("DBSIZE gave {other:?}"),
        }
    }
    assert_eq!(sum, keys.len() as i64);
    assert_eq!(c.cmd(&["DBSIZE"]).await?, Frame::Integer(sum));

    // KEYS concatenates. (SCAN walks the Tessera nodes' slot cursors, which a redis-server's
    // cursor is not: e2e/tests/inspect.rs and faults.rs test it on a Tessera cluster.)
    match c.cmd(&["KEYS", "*"]).await? {
        Frame::Array(found) => assert_eq!(found.len(), keys.len()),
        other => panic!("KEYS gave {other:?}"),
    }
    assert!(matches!(c.cmd(&["RANDOMKEY"]).await?, Frame::Bulk(_)));

    assert_eq!(
        c.cmd(&["DEL", "bar", "foo", "missing"]).await?,
        Frame::Integer(2)
    );
    assert_eq!(
        c.cmd(&["RENAME", "hello", "somekey"]).await?,
        error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(
        c.cmd(&["FLUSHALL"]).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    assert_eq!(c.cmd(&["DBSIZE"]).await?, Frame::Integer(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commands_present_one_node() -> Result<()> {
    let h = Harness::start().await?;
    let address = format!("127.0.0.1:{}", h.proxy_port);
    tessera_proto::resp::ping::ping(&address, Duration::from_secs(2)).await?;
    let mut c = h.client().await?;
    assert_eq!(
        c.cmd(&["PING"]).await?,
        Frame::Simple(Bytes::from_static(b"PONG"))
    );
    assert_eq!(c.cmd(&["ECHO", "hi"]).await?, bulk("hi"));
    // COMMAND LIST names subcommands too, as Redis and the nodes do (one implementation).
    let Frame::Array(names) = c.cmd(&["COMMAND", "LIST"]).await? else {
        bail!("COMMAND LIST is not an array");
    };
    for name in [
        "get",
        "client",
        "client|getname",
        "config|get",
        "cluster|info",
    ] {
        assert!(names.contains(&bulk(name)), "COMMAND LIST lacks {name}");
    }
    assert!(!names.contains(&bulk("fcall")), "no node serves FCALL");
    assert!(names.contains(&bulk("xread")), "the nodes serve streams");
    assert_eq!(
        c.cmd(&["SELECT", "1"]).await?,
        error("ERR SELECT is not allowed in cluster mode")
    );
    assert_eq!(
        c.cmd(&["CLUSTER", "KEYSLOT", "somekey"]).await?,
        Frame::Integer(11058)
    );
    let info = c.text(&["CLUSTER", "INFO"]).await?;
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_known_nodes:3"), "{info}");
    let nodes = c.text(&["CLUSTER", "NODES"]).await?;
    assert!(
        nodes.contains(&format!("127.0.0.1:{}", h.proxy_port)),
        "{nodes}"
    );
    // One virtual master per real master, all at the proxy's address.
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    assert_eq!(
        nodes
            .matches(&format!("127.0.0.1:{}@", h.proxy_port))
            .count(),
        3,
        "{nodes}"
    );
    c.cmd(&["SET", "{k}1", "v"]).await?;
    assert_eq!(
        c.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "7629"]).await?,
        Frame::Integer(1)
    );
    // RESP3 after HELLO 3, also for forwarded replies.
    match c.cmd(&["HELLO", "3"]).await? {
        Frame::Map(pairs) => assert_eq!(pairs.len(), 7),
        other => panic!("HELLO 3 gave {other:?}"),
    }
    c.send_raw(&encode(&["GET", "nothing"])).await?;
    assert_eq!(&c.read_raw().await?[..], b"_\r\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_moved_when_the_topology_is_wrong() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    assert_eq!(
        c.cmd(&["SET", "foo", "1"]).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    // A newer topology that wrongly gives every slot to node 0.
    let mut wrong = h.cluster.topology(2);
    wrong.intent.slots.fill(Some(0));
    h.publish(wrong);
    support::wait_for(Duration::from_secs(5), || async {
        let Ok(mut c) = h.client().await else { return false };
        matches!(c.text(&["INFO", "cluster"]).await, Ok(t) if t.contains("tessera_topology_version:2"))
    })
    .await?;
    // Node 0 answers MOVED for foo's slot; the proxy follows it and the client never sees it.
    for i in 1..=20 {
        assert_eq!(c.cmd(&["GET", "foo"]).await?, bulk("1"));
        assert_eq!(c.cmd(&["INCR", "counter{foo}"]).await?, Frame::Integer(i));
    }
    let mut owner = Client::connect(h.cluster.nodes[2].port).await?;
    assert_eq!(owner.cmd(&["GET", "counter{foo}"]).await?, bulk("20"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusterdown_when_a_master_fails() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    let mut failed = h.cluster.topology(2);
    failed.observed.nodes[0].fail = true;
    h.publish(failed.clone());
    support::wait_for(Duration::from_secs(5), || async {
        let Ok(mut c) = h.client().await else {
            return false;
        };
        matches!(c.cmd(&["GET", "foo"]).await, Ok(Frame::Error(_)))
    })
    .await?;
    assert_eq!(
        c.cmd(&["GET", "foo"]).await?,
        error("CLUSTERDOWN The cluster is down")
    );
    let info = c.text(&["CLUSTER", "INFO"]).await?;
    assert!(info.contains("cluster_state:fail"), "{info}");
    assert!(info.contains("cluster_slots_fail:5461"), "{info}");
    // Without full coverage only node 0's slots are down.
    failed.version = 3;
    failed.intent.settings.require_full_coverage = false;
    h.publish(failed);
    support::wait_for(Duration::from_secs(5), || async {
        let Ok(mut c) = h.client().await else {
            return false;
        };
        matches!(c.cmd(&["GET", "foo"]).await, Ok(Frame::Null))
    })
    .await?;
    assert_eq!(
        c.cmd(&["GET", "bar"]).await?,
        error("CLUSTERDOWN Hash slot not served")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_disconnects_affect_nobody_else() -> Result<()> {
    let h = Harness::start().await?;
    let mut other = h.client().await?;
    assert_eq!(
        other.cmd(&["SET", "stay", "1"]).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );

    // A client that sends half a pipeline and vanishes.
    {
        let mut gone = h.client().await?;
        let mut pipeline = Vec::new();
        for i in 0..200 {
            pipeline.extend(encode(&["SET", &format!("p{i}"), "x"]));
        }
        pipeline.extend(b"*3\r\n$3\r\nSET\r\n$2\r\npx");
        gone.send_raw(&pipeline).await?;
    }
    // A protocol error: Redis's text, then the connection closes.
    let mut bad = h.client().await?;
    bad.send_raw(b"*1\r\n$x\r\n").await?;
    assert_eq!(
        bad.read().await?,
        error("ERR Protocol error: invalid bulk length")
    );
    assert!(bad.closed().await);
    // Unknown commands and wrong arity keep the connection.
    assert_eq!(
        other.cmd(&["NOSUCH", "a"]).await?,
        error("ERR unknown command 'NOSUCH', with args beginning with: 'a' ")
    );
    assert_eq!(
        other.cmd(&["GET"]).await?,
        error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(other.cmd(&["GET", "stay"]).await?, bulk("1"));
    Ok(())
}

/// A shutdown closes idle clients at once, and a client owed a reply gets it first (a BLPOP
/// waiting out its timeout), then is closed; new connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_replies_owed_then_closes() -> Result<()> {
    let h = Harness::start().await?;
    let mut idle = h.client().await?;
    let mut owed = h.client().await?;
    owed.send_raw(&encode(&["BLPOP", "shutdown-list", "1"]))
        .await?;
    support::wait_for(Duration::from_secs(5), || {
        let port = h.proxy_port;
        async move {
            let Ok(mut c) = Client::connect(port).await else {
                return false;
            };
            matches!(c.text(&["CLIENT", "LIST"]).await, Ok(list) if list.contains("flags=b"))
        }
    })
    .await?;
    h.shut_down();
    assert!(idle.closed().await, "an idle client stays connected");
    assert_eq!(&owed.read_raw().await?[..], b"*-1\r\n");
    assert!(owed.closed().await, "the client stays connected");
    assert!(Client::connect(h.proxy_port).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_runs_clean() -> Result<()> {
    let h = Harness::start().await?;
    let port = h.proxy_port.to_string();
    // redis-benchmark finishes in a few seconds; `timeout` bounds it should the proxy hang.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["120", "redis-benchmark", "-p", &port])
            .args(["-t", "set,get", "-n", "20000", "-c", "10", "-P", "16", "-q"])
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("SET") && stdout.contains("GET"), "{stdout}");
    let lower = format!("{stdout}{stderr}").to_lowercase();
    assert!(
        !lower.contains("error") && !lower.contains("warning"),
        "{stdout}\n{stderr}"
    );
    Ok(())
}

/// Keyless commands answered by the proxy itself must match a real Redis 7.0 cluster node byte
/// for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_match_redis() -> Result<()> {
    let h = Harness::start().await?;
    let mut proxy = h.client().await?;
    let mut redis = Client::connect(h.cluster.nodes[0].port).await?;
    let cases: &[&[&str]] = &[
        &["PING"],
        &["PING", "hello"],
        &["PING", "a", "b"],
        &["ECHO", "x"],
        &["ECHO"],
        &["SELECT", "0"],
        &["SELECT", "1"],
        &["SELECT", "x"],
        &["AUTH", "x"],
        &["AUTH", "someone", "x"],
        &["HELLO", "4"],
        &["HELLO", "x"],
        &["HELLO", "2", "FOO"],
        &["CLIENT", "GETNAME"],
        &["CLIENT", "SETNAME", "a b"],
        &["CLIENT", "SETNAME", "tester"],
        &["CLIENT", "GETNAME"],
        &["CLIENT", "SETNAME"],
        &["CLIENT", "NOSUCH"],
        &["CLIENT"],
        &["CONFIG", "GET"],
        &["CLUSTER", "INFO", "x"],
        &["COMMAND", "NOSUCH"],
        &["RESET"],
        &["CONFIG", "GET", "save"],
        &["CONFIG", "GET", "appendonly"],
        &["CONFIG", "GET", "no-such-parameter"],
        &["CONFIG"],
        &["CLUSTER", "KEYSLOT", "foo{hash_tag}"],
        &["CLUSTER", "KEYSLOT"],
        &["CLUSTER", "NOSUCH"],
        &["CLUSTER", "COUNTKEYSINSLOT", "x"],
        &["CLUSTER", "COUNTKEYSINSLOT", "99999"],
        &["CLUSTER", "GETKEYSINSLOT", "1", "-1"],
        &["CLUSTER", "MYID", "x"],
        &["READONLY"],
        &["READWRITE"],
        &["DBSIZE", "x"],
        &["SCAN", "x"],
        &["GET"],
        &["NOSUCH", "a", "b"],
        &["QUIT"],
    ];
    for case in cases {
        same(&mut proxy, &mut redis, case).await?;
    }
    Ok(())
}

/// A hung backend (SIGSTOP) costs its clients the timeout, not a stuck connection, and nobody
/// else waits; once it resumes, its slots work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_backend_times_out_without_sticking_others() -> Result<()> {
    let h = Harness::start_with_timeout(Duration::from_millis(1000)).await?;
    let mut c = h.client().await?;
    let mut other = h.client().await?;
    assert_eq!(
        c.cmd(&["SET", "foo", "1"]).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    // Both clients' backend connections exist before the stall (no connect inside the timing).
    assert_eq!(
        other.cmd(&["SET", "bar", "1"]).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    let hung = &h.cluster.nodes[2];
    hung.signal("STOP")?;
    let result = async {
        let started = std::time::Instant::now();
        match c.cmd(&["GET", "foo"]).await? {
            Frame::Error(e) => {
                assert!(String::from_utf8_lossy(&e).contains("did not reply in time"))
            }
            other => panic!("expected a timeout error, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // bar lives on node 0: unaffected.
        assert_eq!(
            other.cmd(&["SET", "bar", "2"]).await?,
            Frame::Simple(Bytes::from_static(b"OK"))
        );
        anyhow::Ok(())
    }
    .await;
    hung.signal("CONT")?;
    result?;
    support::wait_for(Duration::from_secs(5), || async {
        let Ok(mut c) = h.client().await else {
            return false;
        };
        matches!(c.cmd(&["GET", "foo"]).await, Ok(f) if f == bulk("1"))
    })
    .await?;
    assert_eq!(c.cmd(&["GET", "foo"]).await?, bulk("1"));
    Ok(())
}

/// During a migration the source answers ASK for keys it no longer has; the proxy sends ASKING
/// and the command to the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_ask_during_migration() -> Result<()> {
    let h = Harness::start().await?;
    let (source, target) = (&h.cluster.nodes[2], &h.cluster.nodes[0]);
    let slot = "12182"; // foo
    let mut t = Client::connect(target.port).await?;
    let mut s = Client::connect(source.port).await?;
    let ok = Frame::Simple(Bytes::from_static(b"OK"));
    assert_eq!(
        t.cmd(&["CLUSTER", "SETSLOT", slot, "IMPORTING", &source.id])
            .await?,
        ok
    );
    assert_eq!(
        s.cmd(&["CLUSTER", "SETSLOT", slot, "MIGRATING", &target.id])
            .await?,
        ok
    );
    let mut c = h.client().await?;
    assert_eq!(c.cmd(&["SET", "foo", "moved-in"]).await?, ok);
    // The key went to the target (ASKING lets us read it there), not the source.
    assert_eq!(t.cmd(&["ASKING"]).await?, ok);
    assert_eq!(t.cmd(&["GET", "foo"]).await?, bulk("moved-in"));
    assert_eq!(
        s.cmd(&["CLUSTER", "COUNTKEYSINSLOT", slot]).await?,
        Frame::Integer(0)
    );
    assert_eq!(c.cmd(&["GET", "foo"]).await?, bulk("moved-in"));
    Ok(())
}

/// A cluster-mode client pointed at the proxy sees one virtual master per real master, all at the
/// proxy's address, and keeps talking to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_client_stays_on_the_proxy() -> Result<()> {
    let h = Harness::start().await?;
    let port = h.proxy_port.to_string();
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["20", "redis-cli", "-c", "-p", &port, "SET", "somekey", "v"])
            .output()
    })
    .await??;
    assert_eq!(String::from_utf8_lossy(&cli.stdout).trim(), "OK");
    let mut c = h.client().await?;
    assert_eq!(c.cmd(&["GET", "somekey"]).await?, bulk("v"));
    match c.cmd(&["CLUSTER", "SLOTS"]).await? {
        Frame::Array(ranges) => {
            assert_eq!(ranges.len(), 3, "{ranges:?}");
            let text = format!("{ranges:?}");
            assert_eq!(
                text.matches(&format!("Integer({})", h.proxy_port)).count(),
                3,
                "{text}"
            );
        }
        other => panic!("CLUSTER SLOTS gave {other:?}"),
    }
    Ok(())
}

/// Manual throughput run (not part of the suite): `TESSERA_BENCH_ARGS="-n 1000000 -c 50 -P 16"
/// cargo test --release -p tessera-proxy --test proxy throughput -- --ignored --nocapture`.
/// Prints redis-benchmark's summary through the proxy and, for comparison, against one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() -> Result<()> {
    let h = Harness::start().await?;
    let extra =
        std::env::var("TESSERA_BENCH_ARGS").unwrap_or_else(|_| "-n 200000 -c 50 -P 16".into());
    // Without -r redis-benchmark's key is the literal `key:__rand_int__`: compare with its owner.
    let slot = u32::from(tessera_proto::slot::key_hash_slot(b"key:__rand_int__"));
    let owner = support::RANGES
        .iter()
        .position(|(a, b)| (*a..=*b).contains(&slot))
        .unwrap_or(0);
    for (what, port) in [
        ("proxy", h.proxy_port),
        ("the key's node directly", h.cluster.nodes[owner].port),
    ] {
        let port = port.to_string();
        let extra = extra.clone();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("redis-benchmark")
                .args([
                    "-p",
                    &port,
                    "-t",
                    "set,get",
                    "-q",
                    "-d",
                    "100",
                    "--threads",
                    "1",
                ])
                .args(extra.split_whitespace())
                .output()
        })
        .await??;
        eprintln!("{what}:\n{}", String::from_utf8_lossy(&output.stdout));
    }
    Ok(())
}

/// The binary's `healthcheck` subcommand: exit 0 on PONG, non-zero when nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_exit_codes() -> Result<()> {
    let h = Harness::start().await?;
    let good = format!("127.0.0.1:{}", h.proxy_port);
    let bad = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    let codes = tokio::task::spawn_blocking(move || {
        let run = |address: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
                .args(["healthcheck", "--address", address, "--timeout", "2s"])
                .output()
                .map(|o| o.status.success())
        };
        (run(&good), run(&bad))
    })
    .await?;
    assert!(codes.0?, "healthcheck against the proxy failed");
    assert!(!codes.1?, "healthcheck against a closed port succeeded");
    Ok(())
}
