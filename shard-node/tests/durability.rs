//! Durability of the real `shard-node` binary, killed in the ways a machine dies: SIGTERM loses
//! nothing; SIGKILL under `everysec` loses at most about the last second; SIGKILL under `always`
//! loses nothing acknowledged; a hand-truncated AOF loads (aof-load-truncated) and says so in the
//! log. The node runs as a process against a fake control plane that gives it every slot; what
//! survived is read by replaying its AOF, or by restarting it.

mod cluster_support;
mod data_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_testkit::free_port;
use tessera_testkit::temp::{temp_dir, TempDir};

use anyhow::{bail, Context};
use bytes::Bytes;
use data_support::{encode, single_node_topology, RawClient, MYSELF};
use tessera_proto::topology::NodeId;
use tessera_shard_node::aof;
use tessera_shard_node::cluster::ClusterView;
use tessera_shard_node::cmd;
use tessera_shard_node::keyspace::{Keyspace, ValueRef};
use tessera_shard_node::server::ServerStats;
use tessera_shard_node::state::NodeState;

/// A `shard-node` process; killed if the test ends without stopping it.
/// The node's data directory inside the test's temp dir.
fn data_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("data")
}

struct Process {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `dir`'s data directory and waits until it accepts writes.
async fn spawn(
    dir: &TempDir,
    control_plane: SocketAddr,
    fsync: &str,
    log_name: &str,
) -> anyhow::Result<Process> {
    spawn_with(dir, control_plane, fsync, log_name, &[]).await
}

/// `spawn` with extra flags.
async fn spawn_with(
    dir: &TempDir,
    control_plane: SocketAddr,
    fsync: &str,
    log_name: &str,
    extra: &[&str],
) -> anyhow::Result<Process> {
    let port = free_port();
    let log = dir.path().join(log_name);
    let out = std::fs::File::create(&log)?;
    let child = Command::new(env!("CARGO_BIN_EXE_shard-node"))
        .args(["--port", &port.to_string()])
        .arg("--data-dir")
        .arg(data_dir(dir))
        .args(["--control-plane", &format!("http://{control_plane}")])
        .args(["--appendfsync", fsync])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("start shard-node")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let process = Process { child, addr, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut client) = RawClient::connect(addr).await {
            if let Ok(reply) = client.cmd(&[b"SET", b"ready:probe", b"1"]).await {
                if &reply[..] == b"+OK\r\n" {
                    return Ok(process);
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the node never accepted writes; log:\n{}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Process {
    fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// Waits (bounded) for the process to exit; true when it exited successfully.
    async fn exited(&mut self) -> anyhow::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            anyhow::ensure!(Instant::now() < deadline, "the node did not exit");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) until the log contains `text`.
    async fn log_shows(&self, text: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains(text) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the log never showed {text:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The keyspace the AOF at `path` replays to.
fn replayed(path: &Path) -> anyhow::Result<NodeState> {
    let state = NodeState {
        keyspace: Keyspace::new(),
        cluster: ClusterView::standalone(NodeId::parse(MYSELF)?, single_node_topology(7000)),
        aof: None,
        stats: ServerStats::default(),
        config: Default::default(),
        evictor: Default::default(),
        pubsub: Default::default(),
        replication: Default::default(),
        migrate_links: Default::default(),
    };
    aof::load(path, |args| cmd::replay(&state, args))?;
    Ok(state)
}

fn string_at(keyspace: &Keyspace, key: &str) -> Option<Bytes> {
    let guard = keyspace.lock_key(key.as_bytes());
    match guard.get(key.as_bytes()).map(|e| e.value) {
        Some(ValueRef::String(v)) => Some(Bytes::copy_from_slice(v)),
        _ => None,
    }
}

fn counter_at(keyspace: &Keyspace, key: &str) -> u64 {
    string_at(keyspace, key)
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Sends `commands` as one pipeline; returns the replies.
async fn pipeline(client: &mut RawClient, commands: &[Vec<Vec<u8>>]) -> anyhow::Result<Vec<Bytes>> {
    let mut bytes = Vec::new();
    for command in commands {
        let args: Vec<&[u8]> = command.iter().map(|a| a.as_slice()).collect();
        bytes.extend_from_slice(&encode(&args));
    }
    client.send_raw(&bytes).await?;
    let mut replies = Vec::new();
    for _ in commands {
        replies.push(client.read_reply().await?);
    }
    Ok(replies)
}

fn command(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// Integer reply `:n\r\n`.
fn integer(reply: &[u8]) -> anyhow::Result<u64> {
    let text = std::str::from_utf8(reply)?;
    text.strip_prefix(':')
        .and_then(|t| t.strip_suffix("\r\n"))
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("not an integer reply: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_loses_nothing() -> anyhow::Result<()> {
    let dir = temp_dir("durability-term");
    let (_fake, control_plane, stop_cp) = cluster_support::start_assigning().await;
    let mut node = spawn(&dir, control_plane, "everysec", "node.log").await?;
    let mut client = RawClient::connect(node.addr).await?;
    let mut commands = Vec::new();
    for i in 0..3000 {
        commands.push(command(&["SET", &format!("k:{i}"), &format!("v{i}")]));
        commands.push(command(&["INCR", &format!("c:{}", i % 10)]));
        commands.push(command(&["RPUSH", &format!("l:{}", i % 7), &i.to_string()]));
        commands.push(command(&["HSET", "h", &format!("f{i}"), &i.to_string()]));
    }
    for reply in pipeline(&mut client, &commands).await? {
        anyhow::ensure!(!reply.starts_with(b"-"), "{reply:?}");
    }
    // At once, well inside the second an everysec fsync may wait.
    node.signal("TERM")?;
    assert!(node.exited().await?, "a clean exit on SIGTERM");
    let log = node.log_text();
    assert!(!log.contains("ERROR"), "errors in the log:\n{log}");

    let state = replayed(&data_dir(&dir).join(aof::FILE_NAME))?;
    let ks = &state.keyspace;
    assert_eq!(string_at(ks, "k:2999").as_deref(), Some(&b"v2999"[..]));
    for i in 0..10 {
        assert_eq!(counter_at(ks, &format!("c:{i}")), 300);
    }
    assert_eq!(
        ks.len(),
        3000 + 10 + 7 + 1 + 1,
        "every key, plus the readiness probe"
    );

    // And the node itself comes back with it.
    let node = spawn(&dir, control_plane, "everysec", "node2.log").await?;
    let mut client = RawClient::connect(node.addr).await?;
    assert_eq!(client.line("GET k:1234").await?, "$5\r\nv1234\r\n");
    assert_eq!(client.line("LLEN l:3").await?, ":429\r\n");
    assert_eq!(client.line("HLEN h").await?, ":3000\r\n");
    drop(node);
    stop_cp.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_everysec_loses_at_most_the_last_second() -> anyhow::Result<()> {
    let dir = temp_dir("durability-everysec");
    let (_fake, control_plane, stop_cp) = cluster_support::start_assigning().await;
    let mut node = spawn(&dir, control_plane, "everysec", "node.log").await?;
    let mut client = RawClient::connect(node.addr).await?;
    let started = Instant::now();
    let mut acked: Vec<(Instant, u64)> = Vec::new();
    while started.elapsed() < Duration::from_millis(2500) {
        let value = integer(&client.cmd(&[b"INCR", b"counter"]).await?)?;
        acked.push((Instant::now(), value));
    }
    let killed_at = Instant::now();
    node.child.kill()?;
    node.exited().await?;

    let state = replayed(&data_dir(&dir).join(aof::FILE_NAME))?;
    let kept = counter_at(&state.keyspace, "counter");
    let last = acked.last().map(|a| a.1).unwrap_or(0);
    // Acknowledged over a second (plus scheduling slack) before the kill: on disk.
    let old_enough = acked
        .iter()
        .filter(|(at, _)| killed_at.duration_since(*at) > Duration::from_millis(1500))
        .map(|a| a.1)
        .max()
        .unwrap_or(0);
    assert!(old_enough > 0, "the test wrote for long enough");
    assert!(
        kept >= old_enough,
        "lost more than a second: kept {kept}, acknowledged {old_enough} 1.5 s before the kill"
    );
    assert!(kept <= last, "kept {kept} > last acknowledged {last}");
    stop_cp.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_always_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let dir = temp_dir("durability-always");
    let (_fake, control_plane, stop_cp) = cluster_support::start_assigning().await;
    let mut node = spawn(&dir, control_plane, "always", "node.log").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for id in 0..4 {
        let (addr, stop) = (node.addr, stop.clone());
        writers.push(tokio::spawn(async move {
            // The last value this writer saw acknowledged; errors end the writer (the kill).
            let mut last = 0u64;
            let Ok(mut client) = RawClient::connect(addr).await else {
                return last;
            };
            let key = format!("always:{id}");
            let batch: Vec<_> = (0..16).map(|_| command(&["INCR", &key])).collect();
            while !stop.load(Ordering::Relaxed) {
                let Ok(replies) = pipeline(&mut client, &batch).await else {
                    break;
                };
                for reply in replies {
                    match integer(&reply) {
                        Ok(v) => last = v,
                        Err(_) => return last,
                    }
                }
            }
            // Keep writing until the connection drops, so the kill lands mid-pipeline.
            while let Ok(reply) = client.cmd(&[b"INCR", key.as_bytes()]).await {
                match integer(&reply) {
                    Ok(v) => last = v,
                    Err(_) => break,
                }
            }
            last
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    node.child.kill()?;
    node.exited().await?;
    let mut acked = Vec::new();
    for writer in writers {
        acked.push(writer.await?);
    }

    let state = replayed(&data_dir(&dir).join(aof::FILE_NAME))?;
    for (id, last) in acked.iter().enumerate() {
        assert!(*last > 0, "writer {id} got acknowledgements");
        let kept = counter_at(&state.keyspace, &format!("always:{id}"));
        assert!(
            kept >= *last,
            "writer {id}: {last} acknowledged but only {kept} on disk"
        );
    }
    stop_cp.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_truncated_aof_loads_and_says_so() -> anyhow::Result<()> {
    let dir = temp_dir("durability-truncated");
    let (_fake, control_plane, stop_cp) = cluster_support::start_assigning().await;
    let mut node = spawn(&dir, control_plane, "everysec", "node.log").await?;
    let mut client = RawClient::connect(node.addr).await?;
    let commands: Vec<_> = (0..100)
        .map(|i| command(&["SET", &format!("t:{i}"), &format!("value-{i}")]))
        .collect();
    pipeline(&mut client, &commands).await?;
    node.signal("TERM")?;
    assert!(node.exited().await?);

    // Cut the last record (`SET t:99 value-99`) in the middle, as a crash mid-write leaves it.
    let whole = std::fs::read(data_dir(&dir).join(aof::FILE_NAME))?;
    let last_record = aof_record(&["SET", "t:99", "value-99"]);
    assert!(whole.ends_with(&last_record));
    let keep = whole.len() - 7;
    std::fs::write(data_dir(&dir).join(aof::FILE_NAME), &whole[..keep])?;

    let node = spawn(&dir, control_plane, "everysec", "node2.log").await?;
    let mut client = RawClient::connect(node.addr).await?;
    assert_eq!(client.line("GET t:98").await?, "$8\r\nvalue-98\r\n");
    assert_eq!(client.line("GET t:99").await?, "$-1\r\n");
    let log = node.log_text();
    assert!(
        log.contains("short read while loading the AOF file"),
        "the log reports the truncation:\n{log}"
    );
    // The torn tail is gone from the file, so later appends follow a whole record (the
    // readiness probe written since is the file's new last record).
    let mut node = node;
    node.signal("TERM")?;
    assert!(node.exited().await?);
    let now = std::fs::read(data_dir(&dir).join(aof::FILE_NAME))?;
    assert!(now.starts_with(&whole[..whole.len() - last_record.len()]));
    assert!(now.ends_with(&aof_record(&["SET", "ready:probe", "1"])));
    drop(node);
    stop_cp.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgrewriteaof_and_automatic_rewrites_compact_a_running_node() -> anyhow::Result<()> {
    let dir = temp_dir("durability-rewrite");
    let (_fake, control_plane, stop_cp) = cluster_support::start_assigning().await;
    let flags = [
        "--auto-aof-rewrite-percentage",
        "100",
        "--auto-aof-rewrite-min-size",
        "200kb",
    ];
    let mut node = spawn_with(&dir, control_plane, "everysec", "node.log", &flags).await?;
    let mut client = RawClient::connect(node.addr).await?;
    let incrs: Vec<_> = (0..2000)
        .map(|i| command(&["INCR", &format!("c:{}", i % 10)]))
        .collect();
    pipeline(&mut client, &incrs).await?;
    let logged: usize = incrs
        .iter()
        .map(|words| encode(&words.iter().map(Vec::as_slice).collect::<Vec<_>>()).len())
        .sum();
    let before = file_reaches(&data_dir(&dir).join(aof::FILE_NAME), logged as u64).await?;
    assert_eq!(
        client.line("BGREWRITEAOF").await?,
        "+Background append only file rewriting started\r\n"
    );
    node.log_shows("Background AOF rewrite finished successfully")
        .await?;
    let after = std::fs::metadata(data_dir(&dir).join(aof::FILE_NAME))?.len();
    assert!(after < before / 10, "compacted: {before} -> {after} bytes");

    // Past 200kb and twice the rewritten size: the node rewrites by itself.
    for _ in 0..10 {
        pipeline(&mut client, &incrs).await?;
    }
    node.log_shows("Starting automatic rewriting of AOF")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while node
        .log_text()
        .matches("Background AOF rewrite finished successfully")
        .count()
        < 2
    {
        anyhow::ensure!(Instant::now() < deadline, "no second rewrite finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pipeline(&mut client, &incrs).await?;
    node.signal("TERM")?;
    assert!(node.exited().await?);
    let state = replayed(&data_dir(&dir).join(aof::FILE_NAME))?;
    for i in 0..10 {
        assert_eq!(counter_at(&state.keyspace, &format!("c:{i}")), 12 * 200);
    }
    let log = node.log_text();
    assert!(!log.contains("ERROR"), "errors in the log:\n{log}");
    stop_cp.cancel();
    Ok(())
}

/// Waits until the file at `path` holds at least `len` bytes, and returns its size: under
/// `appendfsync everysec` a write is acknowledged once logged, and the writer thread puts it in
/// the file shortly after (CI saw the file still empty right after the acknowledgements).
async fn file_reaches(path: &Path, len: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if size >= len {
            return Ok(size);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the AOF stayed at {size} of {len} bytes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn aof_record(words: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    encode(&args)
}
