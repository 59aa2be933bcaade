//! Test harness: three real redis-servers formed into a Redis Cluster (the backends, so the proxy
//! is checked against Redis itself), `tessera_testkit`'s fake control plane serving a topology
//! the test sets, the proxy in-process, and a RESP client that decodes replies into frames.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_proto::topology::{NodeId, NodeSpec, Topology};
use tessera_testkit::fake_control_plane::{self, Fake};
use tessera_testkit::RawClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // each test binary uses some of them
pub use tessera_testkit::wait::wait_for;
use tessera_testkit::{free_port, temp_dir};

/// A redis-server child process, killed on drop.
pub struct RedisNode {
    pub port: u16,
    pub id: String,
    child: Child,
}

impl RedisNode {
    /// Sends a signal (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{name} failed");
        }
        Ok(())
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three redis-servers in one Redis Cluster: master i owns the i-th third of the slots, exactly
/// as `redis-cli --cluster create` splits them.
pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
    /// Dropped after the nodes (field order), so they stop before their folder goes.
    dir: tessera_testkit::temp::TempDir,
}

pub const RANGES: [(u32, u32); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

impl RedisCluster {
    pub async fn start() -> Result<RedisCluster> {
        let dir = temp_dir("proxy-test");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.path().join(format!("nodes-{port}.conf")))
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting redis-server")?;
            nodes.push(RedisNode {
                port,
                id: String::new(),
                child,
            });
        }
        let mut cluster = RedisCluster { nodes, dir };
        for node in &cluster.nodes {
            let port = node.port;
            wait_for(Duration::from_secs(10), || async move {
                let Ok(mut c) = Client::connect(port).await else {
                    return false;
                };
                c.cmd(&["PING"]).await.is_ok()
            })
            .await?;
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("redis-cli --cluster create failed");
        }
        for node in &mut cluster.nodes {
            let mut c = Client::connect(node.port).await?;
            node.id = c.text(&["CLUSTER", "MYID"]).await?;
        }
        for node in &cluster.nodes {
            let port = node.port;
            wait_for(Duration::from_secs(20), || async move {
                let Ok(mut c) = Client::connect(port).await else { return false };
                matches!(c.text(&["CLUSTER", "INFO"]).await, Ok(t) if t.contains("cluster_state:ok"))
            })
            .await?;
        }
        Ok(cluster)
    }

    /// The control plane's view of this cluster at `version`: the three masters with redis-cli's
    /// split of the slots.
    pub fn topology(&self, version: u64) -> Topology {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeSpec {
                config_epoch: i as u64 + 1,
                ..NodeSpec::master(NodeId::parse(&n.id).expect("node id"), "127.0.0.1", n.port)
            })
            .collect();
        let mut slots = vec![None; 16384];
        for (index, (start, end)) in RANGES.into_iter().enumerate() {
            slots[start as usize..=end as usize].fill(Some(index as u16));
        }
        let mut topology = Topology::created(nodes, slots.into());
        topology.version = version;
        topology
    }
}

/// Everything one test needs: the cluster, the fake control plane, and a proxy in-process.
pub struct Harness {
    pub cluster: RedisCluster,
    pub control: Arc<Fake>,
    pub proxy_port: u16,
    grpc_addr: std::net::SocketAddr,
    backend_timeout: Duration,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    pub async fn start() -> Result<Harness> {
        Harness::start_with_timeout(Duration::from_secs(5)).await
    }

    /// A harness whose proxy gives up on a backend reply after `backend_timeout`.
    pub async fn start_with_timeout(backend_timeout: Duration) -> Result<Harness> {
        let cluster = RedisCluster::start().await?;
        let shutdown = CancellationToken::new();
        let control = Arc::new(Fake::new(cluster.topology(1)));
        let grpc_addr = fake_control_plane::start(control.clone(), shutdown.clone()).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy_port = listener.local_addr()?.port();
        let mut config = tessera_proxy::Config::for_tests(format!("http://{grpc_addr}"));
        config.backend_timeout = backend_timeout;
        tokio::spawn(tessera_proxy::run(config, listener, shutdown.clone()));
        let harness = Harness {
            cluster,
            control,
            proxy_port,
            grpc_addr,
            backend_timeout,
            shutdown,
        };
        // Ready when the proxy routes a keyed command (it has taken the topology).
        wait_for(Duration::from_secs(10), || async move {
            let Ok(mut c) = Client::connect(proxy_port).await else {
                return false;
            };
            matches!(c.cmd(&["GET", "readiness"]).await, Ok(Frame::Null))
        })
        .await?;
        Ok(harness)
    }

    /// Starts another proxy instance on the same control plane; returns its port once it routes.
    pub async fn extra_proxy(&self) -> Result<u16> {
        self.extra_proxy_with(|_| {}).await
    }

    /// Another proxy instance whose configuration `configure` changes; returns its port once it
    /// answers (a proxy that requires a password answers NOAUTH, which counts).
    pub async fn extra_proxy_with(
        &self,
        configure: impl FnOnce(&mut tessera_proxy::Config),
    ) -> Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut config = tessera_proxy::Config::for_tests(format!("http://{}", self.grpc_addr));
        config.backend_timeout = self.backend_timeout;
        configure(&mut config);
        tokio::spawn(tessera_proxy::run(config, listener, self.shutdown.clone()));
        wait_for(Duration::from_secs(10), || async move {
            let Ok(mut c) = Client::connect(port).await else {
                return false;
            };
            match c.cmd(&["GET", "readiness"]).await {
                Ok(Frame::Null) => true,
                Ok(Frame::Error(e)) => e.starts_with(b"NOAUTH"),
                _ => false,
            }
        })
        .await?;
        Ok(port)
    }

    pub async fn client(&self) -> Result<Client> {
        Client::connect(self.proxy_port).await
    }

    /// Shuts the proxies (and the fake control plane) down, as SIGTERM does.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Publishes `topology` to the proxy through the watch stream.
    pub fn publish(&self, topology: Topology) {
        self.control.publish(topology);
    }
}

/// A RESP client for tests that decodes replies into frames (`tessera_testkit::RawClient`
/// underneath, for the raw bytes).
pub struct Client {
    raw: RawClient,
}

pub fn encode(args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    tessera_testkit::encode(&args)
}

impl Client {
    pub async fn connect(port: u16) -> Result<Client> {
        Ok(Client {
            raw: RawClient::connect_port(port).await?,
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.raw.send_raw(bytes).await
    }

    /// Reads one reply as raw bytes.
    pub async fn read_raw(&mut self) -> Result<Bytes> {
        self.raw.read_reply().await
    }

    pub async fn read(&mut self) -> Result<Frame> {
        let raw = self.read_raw().await?;
        match frame::parse(&raw, &FrameLimits::default())? {
            Some((frame, _)) => Ok(frame),
            None => bail!("incomplete frame"),
        }
    }

    pub async fn cmd(&mut self, args: &[&str]) -> Result<Frame> {
        self.send_raw(&encode(args)).await?;
        self.read().await
    }

    /// A command whose reply is a bulk (or verbatim) string.
    pub async fn text(&mut self, args: &[&str]) -> Result<String> {
        match self.cmd(args).await? {
            Frame::Bulk(b) | Frame::Verbatim(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => bail!("expected a string, got {other:?}"),
        }
    }

    /// Every reply that arrives until the connection has been quiet for 300 ms, raw.
    pub async fn read_quiet(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        // Reading is cancel-safe: bytes of a reply cut short by the timeout stay buffered.
        while let Ok(reply) =
            tokio::time::timeout(Duration::from_millis(300), self.raw.read_reply()).await
        {
            out.extend_from_slice(&reply?);
        }
        Ok(out)
    }

    /// Whether the server has closed the connection (within 2 s).
    pub async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.raw.closed()).await,
            Ok(Ok(true))
        )
    }
}

/// Sends `args` to the proxy and to a real Redis (a node of the backend cluster, or an oracle
/// redis-server) and asserts the replies are the same bytes; returns the proxy's.
pub async fn same(proxy: &mut Client, redis: &mut Client, args: &[&str]) -> Result<Bytes> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    tessera_testkit::diff::same_reply(&mut redis.raw, &mut proxy.raw, &args).await
}

pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn error(s: &str) -> Frame {
    Frame::Error(Bytes::copy_from_slice(s.as_bytes()))
}
