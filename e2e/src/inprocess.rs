//! A whole Tessera cluster inside the test process: the real control plane, N shard nodes and a
//! proxy, each started through its crate's `run(config, listener, shutdown)` on its own runtime
//! thread pool, on free ports of 127.0.0.1. `cargo test` builds these services from source with
//! the test, so it never runs stale binaries, and nothing forks. For the stories that need real
//! processes (signals, the launcher, redis-cli against `deploy/local.sh`) use `cluster`.
//!
//! The API is synchronous, like the process cluster's, so a test can switch between them; async
//! test code runs on a runtime of its own (`tokio::runtime::Runtime::new()?.block_on(...)`).
//! One thing is not per service here: the shard node's allocator counts the whole test process,
//! so INFO `used_memory` and maxmemory stories belong in `cluster` (or the node's own tests).

use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_testkit::{free_port, temp_dir};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::endpoints::{random_secret, Endpoints};

/// How long a service may take to stop cleanly before the test fails.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// One shard node's task and what stops it.
struct RunningNode {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tessera_shard_node::error::NodeError>>,
}

/// A control plane, shard nodes (cluster created as `redis-cli --cluster create` lays out masters
/// and replicas) and a proxy, all in this process.
pub struct InProcessCluster {
    endpoints: Endpoints,
    /// Replicas per master the cluster was created with.
    replicas: u32,
    /// node-timeout the cluster was created with.
    pub node_timeout: Duration,
    node_dirs: Vec<PathBuf>,
    nodes: Vec<Option<RunningNode>>,
    /// Cancels the control plane and the proxy.
    services: CancellationToken,
    runtime: Runtime,
    dir: tempfile::TempDir,
}

impl Deref for InProcessCluster {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

impl InProcessCluster {
    /// Three masters with `node_timeout`; returns once the proxy reports `cluster_state:ok`.
    pub fn up(node_timeout: Duration) -> InProcessCluster {
        InProcessCluster::start(3, node_timeout).expect("start an in-process cluster")
    }

    /// `masters` shard nodes behind one proxy, the cluster created and ok.
    pub fn start(masters: usize, node_timeout: Duration) -> anyhow::Result<InProcessCluster> {
        InProcessCluster::start_with_replicas(masters, 0, node_timeout)
    }

    /// `nodes` shard nodes created with `replicas` replicas per master (`nodes / (replicas + 1)`
    /// masters, placed as `redis-cli --cluster create --cluster-replicas` places them) behind one
    /// proxy, the cluster ok. Replicas follow their masters as the topology assigns them.
    pub fn start_with_replicas(
        nodes: usize,
        replicas: u32,
        node_timeout: Duration,
    ) -> anyhow::Result<InProcessCluster> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let dir = temp_dir("inprocess-cluster");
        let endpoints = Endpoints {
            proxy_port: free_port(),
            node_ports: (0..nodes).map(|_| free_port()).collect(),
            cp_port: free_port(),
            node_secret: random_secret(),
        };
        let services = CancellationToken::new();
        let cp_config =
            tessera_control_plane::Config::new(dir.path().join("control-plane"), node_timeout);
        let cp_listener = runtime.block_on(TcpListener::bind(("127.0.0.1", endpoints.cp_port)))?;
        let stop = services.clone();
        runtime.spawn(tessera_control_plane::run(
            cp_config,
            cp_listener,
            async move { stop.cancelled().await },
        ));
        let mut cluster = InProcessCluster {
            node_dirs: (1..=nodes)
                .map(|i| dir.path().join(format!("node{i}")))
                .collect(),
            nodes: (0..nodes).map(|_| None).collect(),
            endpoints,
            replicas,
            node_timeout,
            services,
            runtime,
            dir,
        };
        for i in 0..nodes {
            cluster.start_node(i)?;
        }
        cluster.runtime.block_on(cluster.create())?;

        cluster.start_proxy(cluster.proxy_port, |_| {})?;
        for port in cluster.node_ports.iter().chain([&cluster.proxy_port]) {
            cluster.wait_info(*port, "cluster_state", "ok", Duration::from_secs(20));
        }
        Ok(cluster)
    }

    /// `http://127.0.0.1:<control plane port>`.
    pub fn control_plane_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cp_port)
    }

    /// Another proxy of this cluster, in-process; returns its port once it reports the cluster ok.
    pub fn extra_proxy(&self) -> anyhow::Result<u16> {
        self.extra_proxy_with(|_| {})
    }

    /// `extra_proxy` with its configuration changed by `configure`.
    pub fn extra_proxy_with(
        &self,
        configure: impl FnOnce(&mut tessera_proxy::Config),
    ) -> anyhow::Result<u16> {
        let port = free_port();
        self.start_proxy(port, configure)?;
        self.wait_info(port, "cluster_state", "ok", Duration::from_secs(20));
        Ok(port)
    }

    fn start_proxy(
        &self,
        port: u16,
        configure: impl FnOnce(&mut tessera_proxy::Config),
    ) -> anyhow::Result<()> {
        let mut config = tessera_proxy::Config::for_tests(self.control_plane_url());
        config.service.node_secret = Some(self.node_secret.clone());
        configure(&mut config);
        let listener = self
            .runtime
            .block_on(TcpListener::bind(("127.0.0.1", port)))
            .with_context(|| format!("bind a proxy on {port}"))?;
        self.runtime
            .spawn(tessera_proxy::run(config, listener, self.services.clone()));
        Ok(())
    }

    /// What failure messages show of the services' logs: in-process services log through the
    /// test's own tracing (none is installed), so this says where to look instead.
    pub fn logs(&self) -> String {
        "(in-process cluster: rerun the test with --nocapture for its output)".into()
    }

    /// Starts node `index` (0-based) on its port with its data directory: its first start, or a
    /// restart after `stop_node` (same id, same slots, its AOF replayed).
    pub fn start_node(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes[index].is_none(), "node {index} is running");
        let port = self.node_ports[index];
        let mut config = tessera_shard_node::Config::with_data_dir(&self.node_dirs[index]);
        config.port = port;
        config.service.control_plane = self.control_plane_url();
        config.service.node_secret = Some(self.node_secret.clone());
        let listener = self
            .runtime
            .block_on(TcpListener::bind(("127.0.0.1", port)))
            .with_context(|| format!("bind node {index} on {port}"))?;
        let shutdown = CancellationToken::new();
        let task = self
            .runtime
            .spawn(tessera_shard_node::run(config, listener, shutdown.clone()));
        self.nodes[index] = Some(RunningNode { shutdown, task });
        Ok(())
    }

    /// Starts one more shard node, as an operator starts a node to add: it registers itself and
    /// joins as a master with no slots. Returns its index.
    pub fn add_node(&mut self) -> anyhow::Result<usize> {
        let index = self.nodes.len();
        self.endpoints.node_ports.push(free_port());
        self.node_dirs
            .push(self.dir.path().join(format!("node{}", index + 1)));
        self.nodes.push(None);
        self.start_node(index)?;
        Ok(index)
    }

    /// Stops node `index` as SIGTERM would (drain, fsync, exit) and waits until it has stopped.
    pub fn stop_node(&mut self, index: usize) -> anyhow::Result<()> {
        let node = self.nodes[index]
            .take()
            .with_context(|| format!("node {index} is not running"))?;
        node.shutdown.cancel();
        self.runtime
            .block_on(async { tokio::time::timeout(STOP_LIMIT, node.task).await })
            .context("the node did not stop in time")?
            .context("the node task panicked")?
            .context("the node stopped with an error")?;
        Ok(())
    }

    /// Creates the cluster once every node has registered, as `clusterctl create` does.
    async fn create(&self) -> anyhow::Result<()> {
        let url = self.control_plane_url();
        let mut client = loop_connect(&url).await?;
        let count = self.node_ports.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let registered = client
                .get_topology(pb::GetTopologyRequest {})
                .await?
                .into_inner()
                .intent
                .map_or(0, |intent| intent.nodes.len());
            if registered == count {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "only {registered} of {count} nodes registered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client
            .create_cluster(pb::CreateClusterRequest {
                addresses: self
                    .node_ports
                    .iter()
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect(),
                replicas: self.replicas,
                dry_run: false,
            })
            .await?;
        Ok(())
    }
}

/// A control-plane client, once the server accepts connections (bounded).
async fn loop_connect(url: &str) -> anyhow::Result<ControlPlaneClient<tonic::transport::Channel>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match ControlPlaneClient::connect(url.to_string()).await {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(e).context("the control plane never answered")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

impl Drop for InProcessCluster {
    fn drop(&mut self) {
        // Stop the nodes cleanly (their files closed) before the temp dir goes.
        let nodes: Vec<RunningNode> = self.nodes.iter_mut().filter_map(Option::take).collect();
        for node in &nodes {
            node.shutdown.cancel();
        }
        self.runtime.block_on(async {
            for node in nodes {
                let _ = tokio::time::timeout(STOP_LIMIT, node.task).await;
            }
        });
        self.services.cancel();
    }
}
