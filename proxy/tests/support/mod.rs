//! Test harness: three real redis-servers formed into a Redis Cluster, a fake control plane
//! (gRPC, serving a topology the test sets), the proxy in-process, and a small RESP client.

#![allow(dead_code)]

use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tessera_proto::pb;
use tessera_proto::pb::control_plane_server::{ControlPlane, ControlPlaneServer};
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_proto::topology::{NodeId, NodeSpec, Stamp, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Polls `check` every 50 ms for at most `limit`.
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("condition not met within {limit:?}")
}

/// A free port whose cluster bus port (+10000) is free too, neither of them handed out before
/// in this test process (the kernel may give one ephemeral port to two binds in a row).
fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        // Neither this port nor its bus port may be one given before, or a given one's bus port.
        let taken = |p: u16| given.iter().any(|&g| g == p || g + 10000 == p);
        if port < 55000
            && !taken(port)
            && !taken(port + 10000)
            && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
        {
            given.push(port);
            return Ok(port);
        }
    }
    bail!("no free port pair found")
}

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
    dir: PathBuf,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const RANGES: [(u32, u32); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

impl RedisCluster {
    pub async fn start() -> Result<RedisCluster> {
        let dir = std::env::temp_dir().join(format!(
            "tessera-proxy-test-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port()?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join(format!("nodes-{port}.conf")))
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
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

/// A control plane double: GetTopology and WatchTopology over a topology the test sets.
#[derive(Clone)]
pub struct FakeControlPlane {
    topology: watch::Sender<Topology>,
}

#[tonic::async_trait]
impl ControlPlane for FakeControlPlane {
    async fn register_node(
        &self,
        _: Request<pb::RegisterNodeRequest>,
    ) -> Result<Response<pb::RegisterNodeResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
    async fn create_cluster(
        &self,
        _: Request<pb::CreateClusterRequest>,
    ) -> Result<Response<pb::CreateClusterResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
    async fn get_topology(
        &self,
        _: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        Ok(Response::new(pb::Topology::from(&*self.topology.borrow())))
    }

    type WatchTopologyStream = Pin<Box<dyn Stream<Item = Result<pb::Topology, Status>> + Send>>;

    async fn watch_topology(
        &self,
        request: Request<pb::WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        let after = request
            .into_inner()
            .after
            .map(Stamp::try_from)
            .transpose()
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .unwrap_or_default();
        let stream = WatchStream::new(self.topology.subscribe())
            .filter(move |t| t.stamp().supersedes(&after))
            .map(|t| Ok(pb::Topology::from(&t)));
        Ok(Response::new(Box::pin(stream)))
    }
    async fn set_setting(
        &self,
        _: Request<pb::SetSettingRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        Err(Status::unimplemented("test double"))
    }
}

/// Everything one test needs: the cluster, the fake control plane, and a proxy in-process.
pub struct Harness {
    pub cluster: RedisCluster,
    pub control: watch::Sender<Topology>,
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
        let (control, _) = watch::channel(cluster.topology(1));
        let service = FakeControlPlane {
            topology: control.clone(),
        };
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let grpc_addr = grpc.local_addr()?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(ControlPlaneServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), stop.cancelled())
                .await;
        });
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
        self.control.send_replace(topology);
    }
}

/// A minimal RESP client for tests.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

impl Client {
    pub async fn connect(port: u16) -> Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(Client {
            stream,
            buf: BytesMut::new(),
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one reply as raw bytes (within 5 s).
    pub async fn read_raw(&mut self) -> Result<Bytes> {
        let read = async {
            loop {
                if !self.buf.is_empty() {
                    if let Some(len) = frame::check(&self.buf, &FrameLimits::default())? {
                        return Ok(self.buf.split_to(len).freeze());
                    }
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("connection closed");
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .context("reply timed out")?
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

    /// Every frame that arrives until the connection has been quiet for 300 ms, raw.
    pub async fn read_quiet(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            if !self.buf.is_empty() {
                if let Some(len) = frame::check(&self.buf, &FrameLimits::default())? {
                    out.extend_from_slice(&self.buf.split_to(len));
                    continue;
                }
            }
            match tokio::time::timeout(
                Duration::from_millis(300),
                self.stream.read_buf(&mut self.buf),
            )
            .await
            {
                Ok(Ok(0)) => bail!("connection closed"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Ok(out),
            }
        }
    }

    /// Whether the server has closed the connection (within 2 s).
    pub async fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn error(s: &str) -> Frame {
    Frame::Error(Bytes::copy_from_slice(s.as_bytes()))
}
