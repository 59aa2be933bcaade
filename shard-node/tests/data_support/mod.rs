//! Shared by the data-path tests: a node served in-process on port 0 with a fixed topology, and a
//! raw RESP client that reads replies as bytes, so tests compare exactly what a client receives.

#![allow(dead_code)]

pub mod diff;
pub mod oracle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::topology::{NodeId, NodeSpec, Topology};
use tessera_shard_node::cluster::ClusterView;
use tessera_shard_node::keyspace::Keyspace;
use tessera_shard_node::server::{self, ServerStats};
use tessera_shard_node::state::NodeState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const MYSELF: &str = "1111111111111111111111111111111111111111";
pub const OTHER: &str = "2222222222222222222222222222222222222222";
pub const THIRD: &str = "3333333333333333333333333333333333333333";
/// How long any single reply may take before a test fails instead of hanging.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

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
        Self::serve(listener, MYSELF, topology(port))
    }

    /// Three masters splitting the slots as `redis-cli --cluster create` does, each in-process.
    pub async fn start_cluster() -> anyhow::Result<Vec<TestNode>> {
        let ids = [MYSELF, OTHER, THIRD];
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
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
        for (listener, id) in listeners.iter().zip(ids) {
            nodes.push(node(id, listener.local_addr()?.port()));
        }
        let topology = Topology::created(nodes, slots.into());
        listeners
            .into_iter()
            .zip(ids)
            .map(|(listener, id)| Self::serve(listener, id, topology.clone()))
            .collect()
    }

    fn serve(listener: TcpListener, id: &str, topology: Topology) -> anyhow::Result<TestNode> {
        let addr = listener.local_addr()?;
        let state = Arc::new(NodeState {
            keyspace: Keyspace::new(),
            cluster: ClusterView::standalone(NodeId::parse(id)?, topology),
            aof: None,
            stats: ServerStats::default(),
            config: Default::default(),
            evictor: Default::default(),
            pubsub: Default::default(),
        });
        let shutdown = CancellationToken::new();
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

/// A RESP client that sends raw bytes and returns replies as the raw bytes received.
pub struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// A command as a RESP multibulk.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits a command line on spaces (test commands contain no spaces inside arguments).
pub fn words(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buffer: Vec::new(),
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one complete reply.
    pub async fn read_reply(&mut self) -> anyhow::Result<Bytes> {
        let limits = FrameLimits::default();
        for _ in 0..100_000 {
            if let Some(len) = frame::check(&self.buffer, &limits)? {
                let reply: Vec<u8> = self.buffer.drain(..len).collect();
                return Ok(Bytes::from(reply));
            }
            self.buffer.reserve(64 * 1024);
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buffer))
                .await
                .context("timed out waiting for a reply")??;
            if n == 0 {
                bail!(
                    "connection closed; partial reply {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
            }
        }
        bail!("reply never completed")
    }

    /// Sends one command and reads its reply.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> anyhow::Result<Bytes> {
        self.send_raw(&encode(args)).await?;
        self.read_reply().await
    }

    /// `cmd` over a space-separated line, reply as (lossy) text.
    pub async fn line(&mut self, line: &str) -> anyhow::Result<String> {
        let reply = self.cmd(&words(line)).await?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// True once the peer has closed the connection (reads what is left first), within the timeout.
    pub async fn closed(&mut self) -> anyhow::Result<bool> {
        for _ in 0..1000 {
            self.buffer.reserve(4096);
            match tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buffer)).await
            {
                Err(_) => return Ok(false),
                Ok(Ok(0)) => return Ok(true),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Bytes received and not yet returned as a reply.
    pub fn pending(&self) -> &[u8] {
        &self.buffer
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
