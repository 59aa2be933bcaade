//! Shared by the data-path tests: a node served in-process on port 0 with a fixed topology (no
//! control plane), and its state for tests that look inside. The raw client, the oracle and the
//! differential checker are `tessera_testkit`'s.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tessera_proto::topology::{NodeId, NodeSpec, Topology};
use tessera_shard_node::cluster::ClusterView;
use tessera_shard_node::keyspace::Keyspace;
use tessera_shard_node::server::{self, ServerStats};
use tessera_shard_node::state::NodeState;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const MYSELF: &str = "1111111111111111111111111111111111111111";
pub const OTHER: &str = "2222222222222222222222222222222222222222";
pub const THIRD: &str = "3333333333333333333333333333333333333333";
#[allow(unused_imports)] // each test binary uses some of them
pub use tessera_testkit::{client::REPLY_TIMEOUT, encode, words, RawClient};

pub fn node(id: &str, port: u16) -> NodeSpec {
    NodeSpec {
        config_epoch: 1,
        bus_port: port.wrapping_add(10000),
        ..NodeSpec::master(NodeId::parse(id).expect("valid id"), "127.0.0.1", port)
    }
}

/// One master (us) owning every slot.
pub fn single_node_topology(port: u16) -> Topology {
    Topology::created(vec![node(MYSELF, port)], vec![Some(0); 16384].into())
}

/// Us owning slots 0-8191, another master at 127.0.0.1:7999 owning 8192-16383.
pub fn split_topology(port: u16) -> Topology {
    let mut slots = vec![Some(0u16); 16384];
    for slot in slots.iter_mut().skip(8192) {
        *slot = Some(1);
    }
    Topology::created(vec![node(MYSELF, port), node(OTHER, 7999)], slots.into())
}

/// A node serving in-process; stops (and waits for its connections) on `stop`.
pub struct TestNode {
    pub addr: SocketAddr,
    pub state: Arc<NodeState>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestNode {
    pub async fn start() -> anyhow::Result<TestNode> {
        Self::start_with(single_node_topology).await
    }

    pub async fn start_with(topology: impl FnOnce(u16) -> Topology) -> anyhow::Result<TestNode> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        Self::serve(listener, None, MYSELF, topology(port))
    }

    /// Three masters splitting the slots as `redis-cli --cluster create` does, each in-process
    /// with its cluster bus (so a PUBLISH reaches the other nodes).
    pub async fn start_cluster() -> anyhow::Result<Vec<TestNode>> {
        let ids = [MYSELF, OTHER, THIRD];
        let mut listeners = Vec::new();
        let mut buses = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
            buses.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let mut slots = vec![Some(0u16); 16384];
        for (slot, owner) in slots.iter_mut().enumerate() {
            *owner = Some(if slot <= 5460 {
                0
            } else if slot <= 10922 {
                1
            } else {
                2
            });
        }
        let mut nodes = Vec::new();
        for ((listener, bus), id) in listeners.iter().zip(&buses).zip(ids) {
            nodes.push(NodeSpec {
                bus_port: bus.local_addr()?.port(),
                ..node(id, listener.local_addr()?.port())
            });
        }
        let topology = Topology::created(nodes, slots.into());
        listeners
            .into_iter()
            .zip(buses)
            .zip(ids)
            .map(|((listener, bus), id)| Self::serve(listener, Some(bus), id, topology.clone()))
            .collect()
    }

    fn serve(
        listener: TcpListener,
        bus: Option<TcpListener>,
        id: &str,
        topology: Topology,
    ) -> anyhow::Result<TestNode> {
        let addr = listener.local_addr()?;
        let state = Arc::new(NodeState {
            keyspace: Keyspace::new(),
            cluster: ClusterView::standalone(NodeId::parse(id)?, topology),
            aof: None,
            stats: ServerStats::default(),
            config: Default::default(),
            evictor: Default::default(),
            pubsub: Default::default(),
            replication: Default::default(),
            migrate_links: Default::default(),
        });
        let shutdown = CancellationToken::new();
        if let Some(bus) = bus {
            tokio::spawn(tessera_shard_node::bus::serve(
                bus,
                state.clone(),
                shutdown.clone(),
            ));
        }
        let task = tokio::spawn(server::serve(listener, state.clone(), shutdown.clone()));
        Ok(TestNode {
            addr,
            state,
            shutdown,
            task: Some(task),
        })
    }

    pub async fn client(&self) -> anyhow::Result<RawClient> {
        RawClient::connect(self.addr).await
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(REPLY_TIMEOUT, task)
                .await
                .context("server did not stop")??;
        }
        Ok(())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A node state owning every slot, with `aof` as its append-only file: what the AOF replay tests
/// run live and replay into.
pub fn node_state(
    aof: Option<Arc<tessera_shard_node::aof::Aof>>,
    port: u16,
) -> anyhow::Result<NodeState> {
    Ok(NodeState {
        keyspace: Keyspace::new(),
        cluster: ClusterView::standalone(NodeId::parse(MYSELF)?, single_node_topology(port)),
        replication: tessera_shard_node::replication::Replication::with_aof(aof.clone()),
        migrate_links: Default::default(),
        aof,
        stats: ServerStats::default(),
        config: Default::default(),
        evictor: Default::default(),
        pubsub: Default::default(),
    })
}

/// Every key and entry of `keyspace`, ordered, for comparing two keyspaces.
pub fn dump_keyspace(
    keyspace: &Keyspace,
) -> std::collections::BTreeMap<Vec<u8>, tessera_shard_node::keyspace::Entry> {
    let mut all = std::collections::BTreeMap::new();
    for slot in 0..16384 {
        let guard = keyspace.lock(slot);
        for (key, entry) in guard.iter() {
            all.insert(key.to_vec(), entry.to_owned());
        }
    }
    all
}

/// A node served in-process that logs every write to an append-only file in a temp dir: what the
/// replay tests write through, then replay into a fresh state and compare with the live one.
pub struct LoggedNode {
    pub path: std::path::PathBuf,
    pub log: Arc<tessera_shard_node::aof::Aof>,
    pub live: Arc<NodeState>,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    _dir: tessera_testkit::temp::TempDir,
}

impl LoggedNode {
    pub async fn start(fsync: tessera_shard_node::aof::FsyncPolicy) -> anyhow::Result<LoggedNode> {
        let dir = tessera_testkit::temp_dir("logged-node");
        let path = dir.path().join(tessera_shard_node::aof::FILE_NAME);
        let log = Arc::new(tessera_shard_node::aof::Aof::open(&path, fsync)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let live = Arc::new(node_state(Some(log.clone()), addr.port())?);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server::serve(listener, live.clone(), shutdown.clone()));
        Ok(LoggedNode {
            path,
            log,
            live,
            addr,
            shutdown,
            server,
            _dir: dir,
        })
    }

    /// The log's path, the log, the live state and the address: what a replay test uses.
    pub fn parts(
        &self,
    ) -> (
        std::path::PathBuf,
        Arc<tessera_shard_node::aof::Aof>,
        Arc<NodeState>,
        SocketAddr,
    ) {
        (
            self.path.clone(),
            self.log.clone(),
            self.live.clone(),
            self.addr,
        )
    }

    /// Stops serving and waits for the server (the log stays open: the test flushes it).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        (&mut self.server).await?;
        Ok(())
    }
}

/// Waits (bounded: 5 s) until exactly `n` clients are blocked on `state`'s keyspace: how a test
/// knows a BLPOP has parked before it pushes.
pub async fn until_blocked_on(state: &NodeState, n: usize) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = state.keyspace.blocking().blocked_clients();
        if now == n {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "expected {n} blocked clients, have {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// `until_blocked_on` a test node.
pub async fn until_blocked(node: &TestNode, n: usize) -> anyhow::Result<()> {
    until_blocked_on(&node.state, n).await
}
