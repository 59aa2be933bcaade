//! MULTI / EXEC / DISCARD / WATCH / UNWATCH on a shard node: a two-client script compared byte
//! for byte with a real redis-server (RESP2 and RESP3), the cluster rules a plain redis-server
//! cannot show (MOVED and CROSSSLOT while queueing and at EXEC), atomicity and WATCH under
//! concurrent clients, and the append-only file: a transaction is logged as MULTI ... EXEC,
//! accepted by redis-check-aof, replayed whole, and dropped whole when the file ends inside it.

mod data_support;

use data_support::LoggedNode;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use data_support::{dump_keyspace as dump, node_state as state, RawClient, TestNode};
use tessera_shard_node::aof::{self, FsyncPolicy};
use tessera_shard_node::cmd;
use tessera_testkit::RedisServer;

/// `A:` / `B:` names the client sending the line; `SLEEP n` waits n ms (expiry); a line after
/// `!` is sent but its reply not compared. Keys share the `{t}` tag: one slot.
const SCRIPT: &str = "
A: FLUSHALL
A: EXEC
A: EXEC x
A: DISCARD
A: MULTI
A: MULTI
A: SET {t}a 1
A: INCR {t}a
A: GET {t}a
A: LPUSH {t}a x
A: INCRBYFLOAT {t}a notanumber
A: EXEC
A: MULTI
A: SET {t}a 5
A: NOSUCHCMD x
A: EXEC
A: GET {t}a
A: MULTI
A: GET
A: EXEC
A: MULTI
A: EXEC x
A: EXEC
A: MULTI
A: WATCH {t}a
A: SET {t}a 3
A: EXEC
A: MULTI
A: DISCARD
A: DISCARD
A: MULTI
A: EXEC
A: MULTI
A: UNWATCH
A: EXEC
A: WATCH {t}a
B: SET {t}a 10
A: MULTI
A: SET {t}a 11
A: EXEC
A: GET {t}a
A: WATCH {t}nokey
B: DEL {t}nokey
B: LPOP {t}nokey
A: MULTI
A: SET {t}b 1
A: EXEC
A: WATCH {t}b
B: SET {t}b 1
A: MULTI
A: PING
A: EXEC
A: WATCH {t}b
A: UNWATCH
B: SET {t}b 2
A: MULTI
A: GET {t}b
A: EXEC
A: WATCH {t}b
A: MULTI
B: SET {t}b 3
A: GET {t}b
A: EXEC
A: WATCH {t}b
A: DISCARD
A: MULTI
A: DISCARD
B: SET {t}b 4
A: MULTI
A: GET {t}b
A: EXEC
A: WATCH {t}b {t}b {t}c
B: FLUSHALL
A: MULTI
A: PING
A: EXEC
A: WATCH {t}gone
B: FLUSHALL
A: MULTI
A: PING
A: EXEC
A: SADD {t}s1 a
A: WATCH {t}s1
B: SINTERSTORE {t}d {t}s1 {t}s1
B: ZUNIONSTORE {t}z 1 {t}s1
B: SMEMBERS {t}s1
A: MULTI
A: SCARD {t}s1
A: EXEC
A: WATCH {t}x
B: MULTI
B: SET {t}x 1
B: EXEC
A: MULTI
A: PING
A: EXEC
A: WATCH {t}x
B: GET {t}x
B: SET {t}y 1
A: MULTI
A: GET {t}x
A: EXEC
A: MULTI
A: BLPOP {t}empty 0
A: BRPOPLPUSH {t}empty {t}other 0
A: BZPOPMIN {t}empty 0
A: RPUSH {t}l a b c
A: BLPOP {t}l 0
A: LRANGE {t}l 0 -1
A: EXEC
A: MULTI
A: SET {t}e v PX 100000
A: PTTL {t}e
A: PERSIST {t}e
A: TTL {t}e
A: MSET {t}m1 a {t}m2 b
A: MGET {t}m1 {t}m2
A: HSET {t}h f v
A: HGETALL {t}h
A: ZADD {t}zz 1 a 2 b
A: ZRANGE {t}zz 0 -1 WITHSCORES
A: DEL {t}m1 {t}h
A: EXEC
A: SET {t}exp v PX 60
A: WATCH {t}exp
SLEEP 120
A: MULTI
A: PING
A: EXEC
A: SET {t}old v PX 30
SLEEP 80
A: WATCH {t}old
A: MULTI
A: PING
A: EXEC
A: SET {t}lazy v PX 40
A: WATCH {t}lazy
SLEEP 80
B: GET {t}lazy
A: MULTI
A: PING
A: EXEC
A: WATCH {t}a
A: EXEC
A: MULTI
A: PING
A: EXEC
";

#[derive(Clone, Copy)]
enum Who {
    A,
    B,
}

async fn run_script(a: &mut RawClient, b: &mut RawClient) -> anyhow::Result<Vec<(String, String)>> {
    let mut replies = Vec::new();
    for line in SCRIPT.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(ms) = line.strip_prefix("SLEEP ") {
            // The expiry cases need wall-clock time to pass; there is nothing to poll for.
            tokio::time::sleep(Duration::from_millis(ms.parse()?)).await;
            continue;
        }
        let (who, command) = match line.split_once(": ") {
            Some(("A", command)) => (Who::A, command),
            Some(("B", command)) => (Who::B, command),
            _ => bail!("bad script line {line}"),
        };
        let client = match who {
            Who::A => &mut *a,
            Who::B => &mut *b,
        };
        let reply = client
            .line(command)
            .await
            .with_context(|| line.to_string())?;
        replies.push((line.to_string(), reply));
    }
    Ok(replies)
}

async fn compare(protocol: u8) -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut got = Vec::new();
    for addr in [node.addr, redis.addr()] {
        let mut a = RawClient::connect(addr).await?;
        let mut b = RawClient::connect(addr).await?;
        if protocol == 3 {
            a.line("HELLO 3").await?;
            b.line("HELLO 3").await?;
        }
        got.push(run_script(&mut a, &mut b).await?);
    }
    let mut differences = Vec::new();
    for ((line, ours), (_, theirs)) in got[0].iter().zip(&got[1]) {
        if ours != theirs {
            differences.push(format!(
                "{line}\n  tessera: {ours:?}\n  redis:   {theirs:?}"
            ));
        }
    }
    assert_eq!(got[0].len(), got[1].len());
    assert!(
        differences.is_empty(),
        "RESP{protocol} differences:\n{}",
        differences.join("\n")
    );
    node.stop().await
}

#[tokio::test]
async fn transactions_match_redis_resp2() -> anyhow::Result<()> {
    compare(2).await
}

#[tokio::test]
async fn transactions_match_redis_resp3() -> anyhow::Result<()> {
    compare(3).await
}

/// What a plain redis-server cannot show: a key of a slot served elsewhere is refused while
/// queueing (MOVED, then EXECABORT), and commands queued for two slots fail EXEC with CROSSSLOT
/// and discard the transaction, as Redis's getNodeByQuery does for EXEC.
#[tokio::test]
async fn cluster_rules_inside_transactions() -> anyhow::Result<()> {
    let node = TestNode::start_with(data_support::split_topology).await?;
    let mut c = node.client().await?;
    // "a" is slot 15495 (elsewhere), "b" 3300 and "c" 7365 (ours).
    assert_eq!(c.line("MULTI").await?, "+OK\r\n");
    assert_eq!(c.line("SET b 1").await?, "+QUEUED\r\n");
    assert_eq!(c.line("SET a 1").await?, "-MOVED 15495 127.0.0.1:7999\r\n");
    assert_eq!(
        c.line("EXEC").await?,
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.line("EXISTS b").await?, ":0\r\n");

    assert_eq!(c.line("MULTI").await?, "+OK\r\n");
    assert_eq!(
        c.line("MSET b 1 c 2").await?,
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        c.line("EXEC").await?,
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );

    assert_eq!(c.line("MULTI").await?, "+OK\r\n");
    assert_eq!(c.line("SET b 1").await?, "+QUEUED\r\n");
    assert_eq!(c.line("SET c 1").await?, "+QUEUED\r\n");
    assert_eq!(
        c.line("EXEC").await?,
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(c.line("EXEC").await?, "-ERR EXEC without MULTI\r\n");
    assert_eq!(c.line("DBSIZE").await?, ":0\r\n");

    // Keyless commands join any slot's transaction.
    assert_eq!(c.line("MULTI").await?, "+OK\r\n");
    assert_eq!(c.line("PING").await?, "+QUEUED\r\n");
    assert_eq!(c.line("SET b 1").await?, "+QUEUED\r\n");
    assert_eq!(c.line("EXEC").await?, "*2\r\n+PONG\r\n+OK\r\n");
    // WATCH follows the cluster rule like any keyed command.
    assert_eq!(c.line("WATCH a").await?, "-MOVED 15495 127.0.0.1:7999\r\n");
    node.stop().await
}

/// Writers run MULTI INCR {t}c INCR {t}d EXEC concurrently while a reader MGETs both: if any
/// command ran between a transaction's two INCRs, an EXEC reply or a read would show them apart.
// Several worker threads, so commands of different clients really run at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_is_atomic_against_concurrent_clients() -> anyhow::Result<()> {
    const WRITERS: usize = 4;
    const TRANSACTIONS: usize = 300;
    const PADDING: usize = 20;
    let node = TestNode::start().await?;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let mut c = node.client().await?;
        writers.push(tokio::spawn(async move {
            for _ in 0..TRANSACTIONS {
                // One write of the whole transaction, so its commands arrive together; reads
                // between the INCRs widen the window another client's command could slip into.
                let mut batch = b"MULTI\r\nINCR {t}c\r\n".to_vec();
                for _ in 0..PADDING {
                    batch.extend_from_slice(b"EXISTS {t}c\r\n");
                }
                batch.extend_from_slice(b"INCR {t}d\r\nEXEC\r\n");
                c.send_raw(&batch).await?;
                for _ in 0..PADDING + 3 {
                    let reply = c.read_reply().await?;
                    anyhow::ensure!(
                        &reply[..] == b"+OK\r\n" || &reply[..] == b"+QUEUED\r\n",
                        "{reply:?}"
                    );
                }
                let exec = String::from_utf8(c.read_reply().await?.to_vec())?;
                let parts: Vec<&str> = exec.split("\r\n").collect();
                anyhow::ensure!(
                    parts.len() == PADDING + 4 && parts[1] == parts[PADDING + 2],
                    "interleaved transaction: {exec:?}"
                );
            }
            anyhow::Ok(())
        }));
    }
    let mut reader = node.client().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = 0;
    while writers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline && reads < 100_000 {
        let reply = reader.line("MGET {t}c {t}d").await?;
        // `*2`, then each value as `$len` + bytes, or `$-1` before the first EXEC.
        let values: Vec<&str> = reply
            .split("\r\n")
            .skip(1)
            .filter(|part| !part.is_empty() && (!part.starts_with('$') || *part == "$-1"))
            .collect();
        assert!(
            values.len() == 2 && values[0] == values[1],
            "read between a transaction's commands: {reply:?}"
        );
        reads += 1;
    }
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(60), writer).await???;
    }
    let total = (WRITERS * TRANSACTIONS).to_string();
    let want = format!(
        "*2\r\n${}\r\n{total}\r\n${}\r\n{total}\r\n",
        total.len(),
        total.len()
    );
    assert_eq!(reader.line("MGET {t}c {t}d").await?, want);
    node.stop().await
}

/// Check-and-set increments with WATCH from concurrent clients lose no update: every EXEC that
/// succeeds saw the value it replaced, and a nil EXEC is retried.
// Several worker threads, so commands of different clients really run at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_check_and_set_loses_no_update() -> anyhow::Result<()> {
    const CLIENTS: usize = 4;
    const INCREMENTS: usize = 50;
    let node = TestNode::start().await?;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = node.client().await?;
        tasks.push(tokio::spawn(async move {
            let mut aborted = 0u32;
            let mut done = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            while done < INCREMENTS {
                anyhow::ensure!(Instant::now() < deadline, "no progress");
                c.line("WATCH counter").await?;
                let current = c.line("GET counter").await?;
                let value: u64 = current
                    .split("\r\n")
                    .nth(1)
                    .filter(|_| current.starts_with('$') && current != "$-1\r\n")
                    .map_or(Ok(0), str::parse)?;
                c.line("MULTI").await?;
                c.line(&format!("SET counter {}", value + 1)).await?;
                match c.line("EXEC").await?.as_str() {
                    "*1\r\n+OK\r\n" => done += 1,
                    "*-1\r\n" => aborted += 1,
                    other => anyhow::bail!("EXEC answered {other:?}"),
                }
            }
            anyhow::Ok(aborted)
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(90), task).await???;
    }
    let total = (CLIENTS * INCREMENTS).to_string();
    let mut c = node.client().await?;
    assert_eq!(
        c.line("GET counter").await?,
        format!("${}\r\n{total}\r\n", total.len())
    );
    node.stop().await
}

/// Runs `redis-check-aof` on `path`; its stdout.
fn redis_check_aof(path: &std::path::Path) -> anyhow::Result<(bool, String)> {
    let output = std::process::Command::new("redis-check-aof")
        .arg(path)
        .output()
        .context("running redis-check-aof")?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

#[tokio::test]
async fn transactions_are_logged_as_units_and_replay_whole() -> anyhow::Result<()> {
    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut c = RawClient::connect(addr).await?;
    for line in [
        "SET before 1",
        "MULTI",
        "SET {t}a 1",
        "INCR {t}a",
        "GET {t}a",
        "RPUSH {t}l x y",
        "EXPIRE {t}l 1000",
        "EXEC",
        "MULTI",
        "SET {t}one 1",
        "EXEC",
        "MULTI",
        "GET {t}a",
        "EXEC",
        "SET after 1",
    ] {
        let reply = c.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    node.stop().await?;
    log.flush_and_sync().await?;

    let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
    let names: Vec<&str> = text
        .split("\r\n")
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].starts_with('*'))
        .map(|w| w[0])
        .collect();
    // Four writes between MULTI and EXEC; a one-write transaction and a read-only one unwrapped.
    let multi = text.find("MULTI").context("no MULTI in the log")?;
    let exec = text.find("EXEC").context("no EXEC in the log")?;
    let inside = &text[multi..exec];
    for write in ["SET", "INCR", "RPUSH", "PEXPIREAT"] {
        assert!(inside.contains(write), "{write} outside the unit: {text:?}");
    }
    assert_eq!(text.matches("MULTI").count(), 1, "{text:?}");
    assert!(text[exec..].contains("{t}one") && text[exec..].contains("after"));
    assert!(!names.is_empty());
    let (ok, report) = redis_check_aof(&path)?;
    assert!(ok && report.contains("is valid"), "{report}");

    let replayed = state(None, addr.port())?;
    aof::load(&path, |args| cmd::replay(&replayed, args))?;
    assert_eq!(dump(&replayed.keyspace), dump(&live.keyspace));
    assert!(replayed.keyspace.len() == 5);
    Ok(())
}

/// A file that ends inside a transaction (a crash between MULTI and EXEC, or inside a record of
/// it) replays none of it and is cut back to before the MULTI, where redis-check-aof also says
/// the valid part ends.
#[test]
fn a_log_cut_inside_a_transaction_drops_it_whole() -> anyhow::Result<()> {
    let record = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        out
    };
    let before = record(&["SET", "kept", "1"]);
    let unit = [
        record(&["MULTI"]),
        record(&["SET", "{t}a", "1"]),
        record(&["SET", "{t}b", "2"]),
    ]
    .concat();
    let torn = &record(&["SET", "{t}c", "3"])[..10];
    for (case, tail) in [("unfinished", String::new()), ("torn", torn.to_string())] {
        let dir = tessera_testkit::temp_dir(case);
        let path = dir.path().join(aof::FILE_NAME);
        std::fs::write(&path, format!("{before}{unit}{tail}"))?;
        let (_, report) = redis_check_aof(&path)?;
        assert!(
            report.contains(&format!("ok_up_to={}", before.len())),
            "{case}: {report}"
        );
        let replayed = state(None, 7000)?;
        let summary = aof::load(&path, |args| cmd::replay(&replayed, args))?;
        assert_eq!(summary.records, 1, "{case}");
        assert_eq!(summary.end_offset, before.len() as u64, "{case}");
        assert_eq!(replayed.keyspace.len(), 1, "{case}");
        assert_eq!(
            std::fs::metadata(&path)?.len(),
            before.len() as u64,
            "{case}"
        );
    }
    // A MULTI inside a transaction and an EXEC without MULTI are damage, not a crash.
    for (case, body) in [
        ("nested", [record(&["MULTI"]), record(&["MULTI"])].concat()),
        ("stray", record(&["EXEC"])),
    ] {
        let dir = tessera_testkit::temp_dir(case);
        let path = dir.path().join(aof::FILE_NAME);
        std::fs::write(&path, &body)?;
        let replayed = state(None, 7000)?;
        assert!(
            aof::load(&path, |args| cmd::replay(&replayed, args)).is_err(),
            "{case}"
        );
    }
    Ok(())
}
