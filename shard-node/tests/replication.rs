//! Replication between in-process nodes started with `run_observed`, each with its own fake
//! control plane handing it every slot (so a replica serves reads of every key and answers
//! writes with READONLY, as the cluster layer's MOVED logic is not in play). The replica follows
//! its master through the internal API the cluster layer calls (`Replication::follow`), through
//! a TCP relay the tests can cut to break the link.
//!
//! Covered: full sync of every type, the live stream (MULTI/EXEC, expiry DELs), partial resync
//! after a cut (CONTINUE, not FULLRESYNC), resync after the replica restarts (replid and offset
//! persisted), a backlog overrun forcing FULLRESYNC, WAIT, READONLY, and ROLE / INFO replication
//! against a real redis-server master and replica pair.

mod cluster_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tessera_shard_node::replication::{LinkState, MasterAddress};
use tessera_shard_node::state::NodeState;
use tessera_shard_node::Config;
use tessera_testkit::temp::temp_dir;
use tessera_testkit::wait::wait_for;
use tessera_testkit::{free_port, RawClient, RedisServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// A node running in-process.
struct Node {
    port: u16,
    bus_port: u16,
    state: Arc<NodeState>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tessera_shard_node::error::NodeError>>,
    stop_control_plane: CancellationToken,
}

impl Node {
    async fn start(dir: &Path, backlog: Option<u64>) -> anyhow::Result<Node> {
        let (_fake, control_plane, stop_control_plane) = cluster_support::start_assigning().await;
        let mut config = Config::with_data_dir(dir);
        config.service.control_plane = format!("http://{control_plane}");
        let bus_port = free_port();
        config.bus_port = Some(bus_port);
        if let Some(size) = backlog {
            config.repl_backlog_size = size;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(tessera_shard_node::node::run_observed(
            config,
            listener,
            shutdown.clone(),
            move |state| {
                let _ = tx.send(Arc::clone(state));
            },
        ));
        let state = rx.await?;
        let node = Node {
            port,
            bus_port,
            state,
            shutdown,
            task,
            stop_control_plane,
        };
        // Registered, slots assigned, lease held: a write that changes nothing goes through.
        let mut client = node.client().await?;
        poll_line(&mut client, "DEL no-such-key", |r| r == ":0\r\n").await?;
        Ok(node)
    }

    async fn client(&self) -> anyhow::Result<RawClient> {
        RawClient::connect_port(self.port).await
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task).await???;
        self.stop_control_plane.cancel();
        Ok(())
    }

    /// Follows `master` through `relay`'s port.
    fn follow(&self, master: &Node, relay: &Relay) {
        self.state.replication.follow(
            &self.state,
            MasterAddress {
                host: "127.0.0.1".to_string(),
                port: master.port,
                bus_port: relay.port,
            },
        );
    }

    fn link(&self) -> Arc<tessera_shard_node::replication::LinkStatus> {
        self.state.replication.link().expect("a replica")
    }
}

/// Sends `line` every 20 ms until its reply satisfies `ok` (at most `LIMIT`).
async fn poll_line(
    client: &mut RawClient,
    line: &str,
    ok: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let reply = client.line(line).await?;
        if ok(&reply) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{line}: still {reply:?} after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the replica's link is up and it applied everything its master logged.
async fn caught_up(master: &Node, replica: &Node) -> anyhow::Result<()> {
    wait_for(LIMIT, || {
        let done = replica.state.replication.link().map(|l| l.state())
            == Some(LinkState::Connected)
            && replica.state.replication.offset() == master.state.replication.offset();
        async move { done }
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: replica at {}, master at {}",
            replica.state.replication.offset(),
            master.state.replication.offset()
        )
    })
}

/// Every key of `master` (KEYS *) has the same DUMP and the same TTL presence on `replica`, and
/// both hold the same number of keys.
async fn same_data(master: &Node, replica: &Node) -> anyhow::Result<()> {
    let mut m = master.client().await?;
    let mut r = replica.client().await?;
    assert_eq!(m.line("DBSIZE").await?, r.line("DBSIZE").await?);
    let keys = m.cmd(&[b"KEYS", b"*"]).await?;
    let keys = String::from_utf8_lossy(&keys).into_owned();
    for key in keys
        .split("\r\n")
        .filter(|l| !l.starts_with(['*', '$']) && !l.is_empty())
    {
        let kind = m.line(&format!("TYPE {key}")).await?;
        assert_eq!(kind, r.line(&format!("TYPE {key}")).await?, "TYPE {key}");
        if kind == "+set\r\n" {
            // A hash-table set's DUMP lists members in its table's order, which may differ.
            let members = |reply: bytes::Bytes| {
                let mut lines: Vec<String> = String::from_utf8_lossy(&reply)
                    .split("\r\n")
                    .map(str::to_string)
                    .collect();
                lines.sort();
                lines
            };
            let of_m = members(m.cmd(&[b"SMEMBERS", key.as_bytes()]).await?);
            let of_r = members(r.cmd(&[b"SMEMBERS", key.as_bytes()]).await?);
            assert_eq!(of_m, of_r, "SMEMBERS {key}");
        } else {
            let dump_m = m.cmd(&[b"DUMP", key.as_bytes()]).await?;
            let dump_r = r.cmd(&[b"DUMP", key.as_bytes()]).await?;
            assert_eq!(dump_m, dump_r, "DUMP {key}");
        }
        let ttl_m = m.line(&format!("TTL {key}")).await?;
        let ttl_r = r.line(&format!("TTL {key}")).await?;
        assert_eq!(ttl_m == ":-1\r\n", ttl_r == ":-1\r\n", "TTL {key}");
    }
    Ok(())
}

/// A TCP relay to a master's bus port whose connections the test can cut.
struct Relay {
    port: u16,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn to(target: u16) -> anyhow::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let kept = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    let addr = SocketAddr::from(([127, 0, 0, 1], target));
                    if let Ok(mut outbound) = TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                kept.lock().push(relay);
            }
        });
        Ok(Relay {
            port,
            connections,
            accept,
        })
    }

    /// Breaks every connection through the relay (new ones still go through).
    fn cut(&self) {
        for connection in self.connections.lock().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn write_every_type(client: &mut RawClient) -> anyhow::Result<()> {
    for line in [
        "SET s hello",
        "SET ttl v EX 1000",
        "INCR counter",
        "RPUSH list a b c",
        "HSET hash f1 v1 f2 v2",
        "SADD set x y z",
        "SADD ints 1 2 3",
        "ZADD zset 1 one 2 two",
        "SETBIT bits 7 1",
    ] {
        let reply = client.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_the_live_stream() -> anyhow::Result<()> {
    let (mdir, rdir) = (temp_dir("repl-master"), temp_dir("repl-replica"));
    let master = Node::start(mdir.path(), None).await?;
    let replica = Node::start(rdir.path(), None).await?;
    let mut m = master.client().await?;
    write_every_type(&mut m).await?;
    let mut r = replica.client().await?;
    r.line("SET stale 1").await?;

    let relay = Relay::to(master.bus_port).await?;
    replica.follow(&master, &relay);
    caught_up(&master, &replica).await?;
    assert_eq!(replica.link().full_syncs.load(Ordering::Relaxed), 1);
    assert_eq!(
        r.line("EXISTS stale").await?,
        ":0\r\n",
        "flushed before loading"
    );
    same_data(&master, &replica).await?;

    // The live stream: plain writes, a transaction, keyless writes.
    for line in [
        "SET s world",
        "INCR counter",
        "LPUSH list z",
        "MULTI",
        "INCR counter",
        "INCRBY counter 10",
        "EXEC",
        "DEL set",
        "EXPIRE s 500",
    ] {
        m.line(line).await?;
    }
    caught_up(&master, &replica).await?;
    same_data(&master, &replica).await?;
    assert_eq!(r.line("GET counter").await?, "$2\r\n13\r\n");
    // The transaction went to the replica as Redis propagates it: MULTI ... EXEC.
    let mut stream = Vec::new();
    let log = &master.state.replication.log;
    log.read_from(1, usize::MAX, &mut stream)?;
    let stream = String::from_utf8_lossy(&stream);
    assert!(
        stream.contains("*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n*3\r\n$6\r\nINCRBY\r\n$7\r\ncounter\r\n$2\r\n10\r\n*1\r\n$4\r\nEXEC\r\n"),
        "{stream}"
    );

    // A replica refuses writes, even inside MULTI, and WAIT.
    assert_eq!(
        r.line("SET x 1").await?,
        "-READONLY You can't write against a read only replica.\r\n"
    );
    assert_eq!(r.line("MULTI").await?, "+OK\r\n");
    assert!(r.line("INCR x").await?.starts_with("-READONLY"));
    assert!(r.line("EXEC").await?.starts_with("-EXECABORT"));
    assert!(r
        .line("WAIT 1 0")
        .await?
        .starts_with("-ERR WAIT cannot be used with replica instances."));
    assert_eq!(r.line("READONLY").await?, "+OK\r\n");
    assert_eq!(r.line("GET s").await?, "$5\r\nworld\r\n");

    // WAIT: the write acknowledged by the one replica; asking for two times out with one.
    assert_eq!(m.line("SET w 1").await?, "+OK\r\n");
    assert_eq!(m.line("WAIT 1 0").await?, ":1\r\n");
    let started = std::time::Instant::now();
    assert_eq!(m.line("WAIT 2 200").await?, ":1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(190));

    // ROLE on both sides.
    let offset = master.state.replication.offset();
    caught_up(&master, &replica).await?;
    let role = m.line("ROLE").await?;
    let offset_now = master.state.replication.offset();
    assert!(
        role.starts_with(&format!(
            "*3\r\n$6\r\nmaster\r\n:{offset_now}\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n${}\r\n{}\r\n",
            replica.port.to_string().len(),
            replica.port
        )),
        "{role} (offset was {offset})"
    );
    let role = r.line("ROLE").await?;
    assert_eq!(
        role,
        format!(
            "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:{}\r\n$9\r\nconnected\r\n:{}\r\n",
            master.port,
            replica.state.replication.offset()
        )
    );

    replica.stop().await?;
    master.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_keeps_an_expired_key_until_its_master_deletes_it() -> anyhow::Result<()> {
    let (mdir, rdir) = (temp_dir("repl-master"), temp_dir("repl-replica"));
    let master = Node::start(mdir.path(), None).await?;
    let replica = Node::start(rdir.path(), None).await?;
    let relay = Relay::to(master.bus_port).await?;
    replica.follow(&master, &relay);
    caught_up(&master, &replica).await?;
    let mut m = master.client().await?;
    m.line("SET short v PX 300").await?;
    caught_up(&master, &replica).await?;
    // Stop the master cleanly before the key expires: nobody sends the DEL.
    master.stop().await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut r = replica.client().await?;
    assert_eq!(r.line("GET short").await?, "$-1\r\n", "expired: hidden");
    assert_eq!(r.line("EXISTS short").await?, ":0\r\n");
    assert_eq!(replica.state.keyspace.len(), 1, "but still held");

    // The master comes back with its history (clean stop: same replid and offset), loads the
    // key from its AOF, expires it and sends the DEL; the replica continues without a full sync.
    let replid = replica.state.replication.ids().replid;
    let master = Node::start(mdir.path(), None).await?;
    assert_eq!(
        master.state.replication.ids().replid,
        replid,
        "the master kept its history"
    );
    let relay2 = Relay::to(master.bus_port).await?;
    drop(relay);
    replica.follow(&master, &relay2);
    caught_up(&master, &replica).await?;
    wait_for(LIMIT, || {
        let gone = replica.state.keyspace.is_empty();
        async move { gone }
    })
    .await?;
    assert_eq!(replica.link().full_syncs.load(Ordering::Relaxed), 0);
    assert_eq!(replica.link().partial_syncs.load(Ordering::Relaxed), 1);
    replica.stop().await?;
    master.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_continues_and_an_overrun_backlog_resyncs() -> anyhow::Result<()> {
    let (mdir, rdir) = (temp_dir("repl-master"), temp_dir("repl-replica"));
    let master = Node::start(mdir.path(), Some(4096)).await?;
    let replica = Node::start(rdir.path(), None).await?;
    let relay = Relay::to(master.bus_port).await?;
    replica.follow(&master, &relay);
    caught_up(&master, &replica).await?;
    let link = replica.link();
    let mut m = master.client().await?;

    // A short break: the writes made meanwhile fit in the backlog: CONTINUE.
    relay.cut();
    wait_for(LIMIT, || {
        let down = link.state() != LinkState::Connected;
        async move { down }
    })
    .await
    .ok();
    for i in 0..20 {
        m.line(&format!("SET k{i} {i}")).await?;
    }
    caught_up(&master, &replica).await?;
    same_data(&master, &replica).await?;
    assert_eq!(link.full_syncs.load(Ordering::Relaxed), 1);
    assert!(link.partial_syncs.load(Ordering::Relaxed) >= 1);

    // A longer one: more than the backlog holds is written: FULLRESYNC.
    let relay2 = Relay::to(master.bus_port).await?;
    drop(relay);
    let replica_addr = MasterAddress {
        host: "127.0.0.1".to_string(),
        port: master.port,
        bus_port: relay2.port,
    };
    // Park the replica on a dead port while the master writes past its backlog.
    replica.state.replication.follow(
        &replica.state,
        MasterAddress {
            bus_port: cluster_support::dead_port().await,
            ..replica_addr.clone()
        },
    );
    let big = "x".repeat(1000);
    for i in 0..10 {
        m.line(&format!("SET big{i} {big}")).await?;
    }
    replica
        .state
        .replication
        .follow(&replica.state, replica_addr);
    caught_up(&master, &replica).await?;
    same_data(&master, &replica).await?;
    assert_eq!(
        replica.link().full_syncs.load(Ordering::Relaxed),
        1,
        "a new full sync"
    );
    assert_eq!(replica.link().partial_syncs.load(Ordering::Relaxed), 0);
    replica.stop().await?;
    master.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_continues_from_its_saved_offset() -> anyhow::Result<()> {
    let (mdir, rdir) = (temp_dir("repl-master"), temp_dir("repl-replica"));
    let master = Node::start(mdir.path(), None).await?;
    let replica = Node::start(rdir.path(), None).await?;
    let mut m = master.client().await?;
    write_every_type(&mut m).await?;
    let relay = Relay::to(master.bus_port).await?;
    replica.follow(&master, &relay);
    caught_up(&master, &replica).await?;
    let saved = replica.state.replication.ids();
    replica.stop().await?;
    m.line("SET after restart").await?;
    m.line("INCR counter").await?;

    let replica = Node::start(rdir.path(), None).await?;
    assert_eq!(
        replica.state.replication.ids().replid,
        saved.replid,
        "history kept"
    );
    replica.follow(&master, &relay);
    caught_up(&master, &replica).await?;
    same_data(&master, &replica).await?;
    assert_eq!(replica.link().full_syncs.load(Ordering::Relaxed), 0);
    assert_eq!(replica.link().partial_syncs.load(Ordering::Relaxed), 1);
    replica.stop().await?;
    master.stop().await?;
    Ok(())
}

/// The field names of an INFO section, in order.
fn field_names(info: &str) -> Vec<String> {
    info.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('$') && l.contains(':'))
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_and_info_have_redis_fields_in_redis_order() -> anyhow::Result<()> {
    let redis_master = RedisServer::start()?;
    let redis_replica = RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &redis_master.port.to_string(),
        "--repl-diskless-sync-delay",
        "0",
    ])?;
    let mut rm = RawClient::connect(redis_master.addr()).await?;
    let mut rr = RawClient::connect(redis_replica.addr()).await?;
    poll_line(&mut rr, "INFO replication", |r| {
        r.contains("master_link_status:up")
    })
    .await?;
    poll_line(&mut rm, "INFO replication", |r| r.contains("state=online")).await?;

    let (mdir, rdir) = (temp_dir("repl-master"), temp_dir("repl-replica"));
    let master = Node::start(mdir.path(), None).await?;
    let replica = Node::start(rdir.path(), None).await?;
    let relay = Relay::to(master.bus_port).await?;
    replica.follow(&master, &relay);
    caught_up(&master, &replica).await?;
    let mut m = master.client().await?;
    let mut r = replica.client().await?;
    poll_line(&mut m, "INFO replication", |r| r.contains("state=online")).await?;

    assert_eq!(
        field_names(&m.line("INFO replication").await?),
        field_names(&rm.line("INFO replication").await?)
    );
    assert_eq!(
        field_names(&r.line("INFO replication").await?),
        field_names(&rr.line("INFO replication").await?)
    );
    // ROLE's shape: the same reply types in the same places.
    let shape = |reply: String| -> Vec<char> {
        reply
            .split("\r\n")
            .filter_map(|l| l.chars().next())
            .filter(|c| matches!(c, '*' | ':' | '$'))
            .collect()
    };
    assert_eq!(shape(m.line("ROLE").await?), shape(rm.line("ROLE").await?));
    assert_eq!(shape(r.line("ROLE").await?), shape(rr.line("ROLE").await?));
    replica.stop().await?;
    master.stop().await?;
    Ok(())
}
