//! The background AOF rewrite against a live node: writers hammer many slots with INCR, SET, HSET,
//! RPUSH (and more) while BGREWRITEAOF or the automatic threshold rewrites the file; replaying the
//! rewritten file must give back exactly the keyspace the node held.

mod data_support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tessera_testkit::temp::{temp_dir, TempDir};
use tessera_testkit::wait::eventually;

use anyhow::{bail, Context};
use bytes::Bytes;
use data_support::{encode, single_node_topology, RawClient, MYSELF};
use tessera_proto::topology::NodeId;
use tessera_shard_node::aof::rewrite::{self, AutoRewrite};
use tessera_shard_node::aof::{self, Aof, FsyncPolicy};
use tessera_shard_node::cluster::ClusterView;
use tessera_shard_node::cmd;
use tessera_shard_node::keyspace::{now_ms, Entry, Keyspace};
use tessera_shard_node::server::{self, ServerStats};
use tessera_shard_node::state::NodeState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn state(aof: Option<Arc<Aof>>, port: u16) -> NodeState {
    NodeState {
        keyspace: Keyspace::new(),
        cluster: ClusterView::standalone(
            NodeId::parse(MYSELF).expect("id"),
            single_node_topology(port),
        ),
        replication: tessera_shard_node::replication::Replication::with_aof(aof.clone()),
        migrate_links: Default::default(),
        aof,
        stats: ServerStats::default(),
        config: Default::default(),
        evictor: Default::default(),
        pubsub: Default::default(),
    }
}

/// A node with an AOF in `dir`, serving on port 0, with its rewrite task.
struct Node {
    addr: std::net::SocketAddr,
    state: Arc<NodeState>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    rewriter: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(path: &Path, auto: AutoRewrite) -> anyhow::Result<Node> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let aof = Arc::new(Aof::open(path, FsyncPolicy::Everysec)?);
        let state = Arc::new(state(Some(aof), addr.port()));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server::serve(listener, state.clone(), shutdown.clone()));
        let rewriter = tokio::spawn(rewrite::run(state.clone(), auto, shutdown.clone()));
        Ok(Node {
            addr,
            state,
            shutdown,
            server,
            rewriter,
        })
    }

    fn aof(&self) -> &Aof {
        self.state.aof.as_deref().expect("aof on")
    }

    /// Stops serving and the rewrite task, then flushes the file.
    async fn stop(self) -> anyhow::Result<Arc<NodeState>> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server).await??;
        let aof = self.state.aof.clone().expect("aof on");
        aof.flush_and_sync().await?;
        tokio::time::timeout(Duration::from_secs(10), self.rewriter).await??;
        Ok(self.state)
    }
}

const MANUAL: AutoRewrite = AutoRewrite {
    percentage: 0,
    min_size: 0,
};

/// Every key not expired at `now`, with its entry.
fn dump(keyspace: &Keyspace, now: u64) -> HashMap<Bytes, Entry> {
    let mut all = HashMap::new();
    for slot in 0..16384u16 {
        let guard = keyspace.lock(slot);
        for (key, entry) in guard.iter() {
            if !entry.is_expired(now) {
                all.insert(Bytes::copy_from_slice(key), entry.to_owned());
            }
        }
    }
    all
}

/// The keyspace the file at `path` replays to.
fn replayed(path: &Path) -> anyhow::Result<NodeState> {
    let fresh = state(None, 7000);
    let summary = aof::load(path, |args| cmd::replay(&fresh, args))?;
    assert_eq!(summary.truncated_bytes, 0, "the rewritten file is whole");
    Ok(fresh)
}

fn assert_same(live: &HashMap<Bytes, Entry>, replayed: &HashMap<Bytes, Entry>) {
    for (key, entry) in live {
        match replayed.get(key) {
            Some(other) => assert_eq!(
                entry,
                other,
                "key {:?} differs after replay",
                String::from_utf8_lossy(key)
            ),
            None => panic!("key {:?} lost by the rewrite", String::from_utf8_lossy(key)),
        }
    }
    for key in replayed.keys() {
        assert!(
            live.contains_key(key),
            "key {:?} resurrected by the rewrite",
            String::from_utf8_lossy(key)
        );
    }
}

/// Sends `commands` as one pipeline and fails on any error reply.
async fn pipeline(client: &mut RawClient, commands: &[Vec<String>]) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    for command in commands {
        let args: Vec<&[u8]> = command.iter().map(|a| a.as_bytes()).collect();
        bytes.extend_from_slice(&encode(&args));
    }
    client.send_raw(&bytes).await?;
    for command in commands {
        let reply = client.read_reply().await?;
        if reply.starts_with(b"-") {
            bail!("{command:?} answered {:?}", String::from_utf8_lossy(&reply));
        }
    }
    Ok(())
}

fn cmd(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Keys of every type spread over many slots, some with TTLs, some collections over 64 elements.
async fn preload(client: &mut RawClient) -> anyhow::Result<()> {
    let far = (now_ms() + 3_600_000).to_string();
    for batch in 0..20u64 {
        let mut commands = Vec::new();
        for i in batch * 500..(batch + 1) * 500 {
            commands.push(cmd(&["SET", &format!("pre:{i}"), &format!("value-{i}")]));
            if i.is_multiple_of(7) {
                commands.push(cmd(&["PEXPIREAT", &format!("pre:{i}"), &far]));
            }
        }
        pipeline(client, &commands).await?;
    }
    let mut commands = Vec::new();
    for i in 0..300 {
        let n = i.to_string();
        commands.push(cmd(&["RPUSH", "big:list", &n]));
        commands.push(cmd(&["HSET", "big:hash", &format!("f{i}"), &n]));
        commands.push(cmd(&["SADD", "big:set", &format!("m{i}")]));
        commands.push(cmd(&[
            "ZADD",
            "big:zset",
            &format!("{i}.25"),
            &format!("m{i}"),
        ]));
    }
    commands.push(cmd(&["PEXPIREAT", "big:hash", &far]));
    commands.push(cmd(&["PEXPIREAT", "big:zset", &far]));
    pipeline(client, &commands).await
}

/// Writes over many slots until `stop`; with `flush_every`, also FLUSHALL that often while
/// `flushing` is set.
async fn hammer(
    addr: std::net::SocketAddr,
    id: u64,
    stop: Arc<AtomicBool>,
    flush_every: Option<u64>,
    flushing: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
    let mut client = RawClient::connect(addr).await?;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut commands = Vec::new();
        for _ in 0..8 {
            i += 1;
            let n = (i * 7 + id * 131) % 500;
            let v = i.to_string();
            commands.push(cmd(&["INCR", &format!("cnt:{n}")]));
            commands.push(cmd(&["SET", &format!("s:{n}"), &format!("v{id}-{i}")]));
            commands.push(cmd(&[
                "HSET",
                &format!("h:{}", n % 100),
                &format!("f{}", i % 37),
                &v,
            ]));
            commands.push(cmd(&["RPUSH", &format!("l:{}", n % 80), &v]));
            commands.push(cmd(&[
                "SADD",
                &format!("set:{}", n % 60),
                &format!("m{}", i % 101),
            ]));
            commands.push(cmd(&[
                "ZADD",
                &format!("z:{}", n % 60),
                &format!("{}.5", i % 1000),
                &format!("m{}", i % 53),
            ]));
            if i.is_multiple_of(10) {
                commands.push(cmd(&["SET", &format!("t:{n}"), "x", "PX", "30"]));
            }
            if i.is_multiple_of(13) {
                commands.push(cmd(&["DEL", &format!("s:{}", (n + 3) % 500)]));
            }
            if i.is_multiple_of(17) {
                commands.push(cmd(&["LPOP", &format!("l:{}", n % 80)]));
            }
            if i.is_multiple_of(19) {
                commands.push(cmd(&["APPEND", &format!("pre:{}", n * 11), "+"]));
            }
            if flush_every.is_some_and(|every| i.is_multiple_of(every))
                && flushing.load(Ordering::Relaxed)
            {
                commands.push(cmd(&["FLUSHALL"]));
            }
        }
        pipeline(&mut client, &commands).await?;
    }
    Ok(i)
}

/// Starts writers, rewrites while they run, stops them; returns the stopped node's state.
async fn rewrite_under_load(
    dir: &TempDir,
    writers: u64,
    flush_every: Option<u64>,
) -> anyhow::Result<Arc<NodeState>> {
    let node = Node::start(&dir.path().join(aof::FILE_NAME), MANUAL).await?;
    let mut client = RawClient::connect(node.addr).await?;
    preload(&mut client).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let flushing = Arc::new(AtomicBool::new(true));
    let tasks: Vec<_> = (0..writers)
        .map(|id| {
            tokio::spawn(hammer(
                node.addr,
                id,
                stop.clone(),
                flush_every,
                flushing.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let size_before = node.aof().progress().file_size;

    // Two in one pipeline: the second finds the first still running.
    client
        .send_raw(&[encode(&[b"BGREWRITEAOF"]), encode(&[b"BGREWRITEAOF"])].concat())
        .await?;
    assert_eq!(
        &client.read_reply().await?[..],
        b"+Background append only file rewriting started\r\n"
    );
    assert_eq!(
        &client.read_reply().await?[..],
        b"-ERR Background append only file rewriting already in progress\r\n"
    );
    eventually("the rewrite finishes", Duration::from_secs(30), || {
        node.aof().rewrite_status().completed == 1
    })
    .await;
    // No FLUSHALL after the rewrite, which would hide what the rewrite got wrong.
    flushing.store(false, Ordering::Relaxed);
    let status = node.aof().rewrite_status();
    assert!(status.last_ok && !status.in_progress, "{status:?}");
    assert!(status.base_size > 0);
    // Writes keep flowing into the switched file.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in tasks {
        total += task.await.context("writer task")??;
    }
    assert!(total > 0);
    if flush_every.is_none() {
        assert!(
            size_before > 0 && node.aof().progress().file_size > 0,
            "the file has content"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("temp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewrite_during_load_loses_nothing() -> anyhow::Result<()> {
    let dir = temp_dir("rewrite-load");
    let state = rewrite_under_load(&dir, 4, None).await?;
    let now = now_ms();
    let live = dump(&state.keyspace, now);
    assert!(live.len() > 10_000, "the load wrote keys: {}", live.len());
    let back = replayed(&dir.path().join(aof::FILE_NAME))?;
    assert_same(&live, &dump(&back.keyspace, now));
    // The rewritten file starts with the snapshot, not with the history: the preload's first
    // record was `SET pre:0`, and a rewritten file of slot 0 starts elsewhere.
    let mut first = None;
    aof::load(&dir.path().join(aof::FILE_NAME), |args| {
        if first.is_none() {
            first = Some(args);
        }
        Ok::<(), String>(())
    })?;
    let first = first.expect("a record");
    let name = String::from_utf8_lossy(&first[0]).to_ascii_uppercase();
    assert!(
        ["SET", "HSET", "RPUSH", "SADD", "ZADD"].contains(&name.as_str()),
        "{name}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushall_during_rewrite_keeps_its_place() -> anyhow::Result<()> {
    let dir = temp_dir("rewrite-flush");
    let state = rewrite_under_load(&dir, 3, Some(7)).await?;
    let now = now_ms();
    let live = dump(&state.keyspace, now);
    let back = replayed(&dir.path().join(aof::FILE_NAME))?;
    assert_same(&live, &dump(&back.keyspace, now));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_grown_past_the_threshold_is_rewritten() -> anyhow::Result<()> {
    let dir = temp_dir("rewrite-auto");
    let node = Node::start(
        &dir.path().join(aof::FILE_NAME),
        AutoRewrite {
            percentage: 100,
            min_size: 200_000,
        },
    )
    .await?;
    let mut client = RawClient::connect(node.addr).await?;
    // The same few keys over and over: the history grows, the data does not.
    let mut rounds = 0;
    while node.aof().rewrite_status().completed == 0 {
        let commands: Vec<_> = (0..500)
            .map(|i| cmd(&["SET", &format!("k:{}", i % 50), &format!("{rounds}-{i}")]))
            .collect();
        pipeline(&mut client, &commands).await?;
        rounds += 1;
        assert!(rounds < 2_000, "no automatic rewrite happened");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = node.aof().rewrite_status();
    assert!(status.base_size < 200_000, "{status:?}");
    let state = node.stop().await?;
    let now = now_ms();
    let live = dump(&state.keyspace, now);
    assert_eq!(live.len(), 50);
    let back = replayed(&dir.path().join(aof::FILE_NAME))?;
    assert_same(&live, &dump(&back.keyspace, now));
    assert!(std::fs::metadata(dir.path().join(aof::FILE_NAME))?.len() < 200_000);
    Ok(())
}

#[tokio::test]
async fn bgrewriteaof_without_a_file_is_refused() -> anyhow::Result<()> {
    let node = data_support::TestNode::start().await?;
    let mut client = node.client().await?;
    assert_eq!(
        client.line("BGREWRITEAOF").await?,
        "-ERR Can't execute an AOF background rewriting. Please check the server logs for more information.\r\n"
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_file_cancels_or_completes_a_rewrite_cleanly() -> anyhow::Result<()> {
    let dir = temp_dir("rewrite-close");
    let node = Node::start(&dir.path().join(aof::FILE_NAME), MANUAL).await?;
    let mut client = RawClient::connect(node.addr).await?;
    preload(&mut client).await?;
    drop(client);
    let state = node.stop().await?;
    // The file is closed now; a rewrite cannot start on it.
    let aof = state.aof.clone().expect("aof on");
    assert!(aof.request_rewrite().is_err());

    // A second life of the same file: a rewrite raced by the close.
    let aof = Arc::new(Aof::open(
        &dir.path().join(aof::FILE_NAME),
        FsyncPolicy::Everysec,
    )?);
    let job = {
        let (aof, state) = (aof.clone(), state.clone());
        tokio::task::spawn_blocking(move || rewrite::rewrite(&aof, &state.keyspace))
    };
    aof.flush_and_sync().await?;
    let outcome = job.await?;
    let now = now_ms();
    let back = replayed(&dir.path().join(aof::FILE_NAME))?;
    assert_same(&dump(&state.keyspace, now), &dump(&back.keyspace, now));
    let leftovers = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("temp-"))
        .count();
    assert_eq!(leftovers, 0, "rewrite outcome {outcome:?}");
    Ok(())
}
