//! `clusterctl`, the operator's command line: each subcommand is one gRPC call (or a few) to the
//! control plane, printed in `redis-cli --cluster` shapes. The binary only parses and wires; the
//! commands live here so tests can drive them.

pub mod add_node;
pub mod control_planes;
pub mod create;
pub mod failover;
pub mod progress;
pub mod rebalance;
pub mod report;
pub mod reshard;

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use tessera_proto::control_plane::Client;
use tessera_proto::pb;
use tessera_proto::topology::render::{self, MessageStats};
use tessera_proto::topology::{Topology, TopologyError};

/// Tessera's operator CLI: create the cluster, inspect it, change its settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "clusterctl", version)]
pub struct Cli {
    /// The control plane's gRPC URL; with several control planes, each one's URL,
    /// comma-separated: changes go to the leader whichever is listed first, and `info` shows
    /// each of them.
    #[arg(
        long,
        global = true,
        env = "TESSERA_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Assigns the slots over the given nodes (host:port, each registered), as
    /// `redis-cli --cluster create` does, after showing the plan and asking for `yes`.
    Create {
        /// host:port of each node, in order.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Replicas per master: masters and replicas are placed as redis-cli's
        /// `--cluster-replicas N` places them.
        #[arg(long, alias = "cluster-replicas", default_value_t = 0)]
        replicas: u32,
        /// Apply without asking.
        #[arg(long, alias = "cluster-yes")]
        yes: bool,
        /// Succeed without doing anything when the cluster already exists (for init steps that
        /// run on every `docker-compose up`).
        #[arg(long)]
        if_not_created: bool,
        /// How long to wait for every node to hold the new configuration (humantime).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Adds a node to the cluster, as `redis-cli --cluster add-node` does. A started node
    /// registers itself and is a member at once, as a master with no slots: without
    /// `--replica-of` this checks that it is (give it slots with `reshard` or `rebalance
    /// --use-empty-masters`); with `--replica-of ID` it becomes a replica of that master
    /// (`--cluster-slave --cluster-master-id ID`).
    AddNode {
        /// host:port of the node.
        address: String,
        /// The id of the master it replicates.
        #[arg(long, alias = "cluster-master-id")]
        replica_of: Option<String>,
        /// How long to wait for the node to hold the new configuration (humantime).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Promotes a replica to master of its master's slots, as CLUSTER FAILOVER sent to that
    /// replica does; waits until the new topology is out. Without a flag the master must be
    /// healthy: it stops writes, the replica catches up, then they swap (no write lost).
    Failover {
        /// The replica's node id.
        replica_id: String,
        /// The master may be down: no handshake with it. Fencing still holds: the replica is
        /// promoted once the master's write lease has run out (at once if its process is gone).
        #[arg(long, conflicts_with = "takeover")]
        force: bool,
        /// As --force (Redis's TAKEOVER skips the masters' votes; fencing is never skipped).
        #[arg(long)]
        takeover: bool,
        /// How long to wait for the new master to hold the new configuration (humantime).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Moves slots to a master while the cluster serves, as `redis-cli --cluster reshard` does:
    /// the plan (slots taken from each source in proportion), a confirmation, then the move with
    /// its progress. Keys move in batches; clients of the proxy see no error.
    Reshard {
        /// Source master ids, comma-separated, or `all` (every other master).
        #[arg(long, alias = "cluster-from", required = true)]
        from: String,
        /// The master that receives the slots.
        #[arg(long, alias = "cluster-to", required = true)]
        to: String,
        /// How many slots to move.
        #[arg(long, alias = "cluster-slots", required = true)]
        slots: u32,
        /// Move without asking.
        #[arg(long, alias = "cluster-yes")]
        yes: bool,
        /// How long to wait for the move to finish (it goes on after; humantime).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Spreads the slots over the masters by weight, as `redis-cli --cluster rebalance` does,
    /// moving them while the cluster serves.
    Rebalance {
        /// A master's weight (`ID=WEIGHT`; repeat for several); others weigh 1.
        #[arg(long = "weight", alias = "cluster-weight")]
        weights: Vec<String>,
        /// Also give slots to masters that serve none (a node just added).
        #[arg(long, alias = "cluster-use-empty-masters")]
        use_empty_masters: bool,
        /// Rebalance only when a master is off its share by more than this percentage.
        #[arg(long, alias = "cluster-threshold", default_value_t = 2.0)]
        threshold: f64,
        /// How long each move may take before `rebalance` gives up waiting (humantime).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Removes a node from the cluster, as `redis-cli --cluster del-node` does: refused while it
    /// serves slots (move them away first: `reshard`, or `rebalance --weight ID=0`). Its id may
    /// not register again; stop its process.
    DelNode {
        /// The node's id.
        node_id: String,
    },
    /// Checks the cluster as `redis-cli --cluster check` does; exits 1 if slots are not covered.
    Check,
    /// Prints CLUSTER INFO for the whole cluster.
    Info,
    /// Prints CLUSTER NODES for the whole cluster.
    Nodes,
    /// Changes a setting: require-full-coverage yes|no, allow-reads-when-down yes|no,
    /// node-timeout MILLISECONDS.
    Set { name: String, value: String },
    /// Prints the settings.
    Get,
}

/// Why a command failed; the binary prints it as `[ERR] <message>` and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("invalid control plane URL {url:?}: {source}")]
    Url {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// No control plane of the list could be reached.
    #[error("cannot reach the control plane at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The control plane refused or failed the call: its message is the operator's answer.
    #[error("{}", .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("the control plane sent an invalid topology: {0}")]
    Topology(#[from] TopologyError),
    #[error("the control plane sent no topology")]
    MissingTopology,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The operator did not type `yes`: nothing printed, exit 1.
    #[error("aborted")]
    Aborted,
    /// The check found problems (already printed): exit 1.
    #[error("check failed")]
    CheckFailed,
    #[error("nodes did not take the new configuration within {waited:?}: {lagging}")]
    JoinTimeout { waited: Duration, lagging: String },
    #[error("the move did not finish within {waited:?} ({left} slots left); it goes on")]
    MoveTimeout { waited: Duration, left: u64 },
}

impl CtlError {
    /// Whether the error's text is worth printing (it was not already shown to the operator).
    pub fn is_silent(&self) -> bool {
        matches!(self, CtlError::Aborted | CtlError::CheckFailed)
    }
}

/// Bound on waiting for nodes to report the current topology before `check` calls it a
/// disagreement (they report it with their next heartbeat).
const AGREEMENT_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);

/// A client of the control planes at `list` (comma-separated URLs), following the leader.
pub fn connect(list: &str) -> Result<Client, CtlError> {
    tessera_proto::control_plane::connect_lazy(list).map_err(|e| CtlError::Url {
        url: e.url,
        source: e.source,
    })
}

/// Whether `status` says that no control plane answered at all (the transport failed), rather
/// than that one refused.
fn unreachable(status: &tonic::Status) -> bool {
    std::error::Error::source(status)
        .is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some())
}

/// Runs one command; `input` answers the confirmation prompt, `out` gets what is printed.
pub async fn execute(
    cli: Cli,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let list = cli.control_plane.clone();
    match run(cli, input, out).await {
        Err(CtlError::Rpc(status)) if unreachable(&status) => Err(CtlError::Unreachable {
            url: list,
            reason: status.message().to_string(),
        }),
        result => result,
    }
}

/// `execute` without the translation of transport failures.
async fn run(cli: Cli, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), CtlError> {
    let mut client = connect(&cli.control_plane)?;
    match cli.command {
        Command::Create {
            addresses,
            replicas,
            yes,
            if_not_created,
            wait,
        } => {
            let options = create::Options {
                addresses,
                replicas,
                yes,
                if_not_created,
                wait,
            };
            create::run(&mut client, options, input, out).await
        }
        Command::AddNode {
            address,
            replica_of,
            wait,
        } => add_node::run(&mut client, address, replica_of, wait, out).await,
        Command::Failover {
            replica_id,
            force,
            takeover,
            wait,
        } => {
            let mode = match (force, takeover) {
                (_, true) => pb::FailoverMode::Takeover,
                (true, _) => pb::FailoverMode::Force,
                _ => pb::FailoverMode::Default,
            };
            failover::run(&mut client, replica_id, mode, wait, out).await
        }
        Command::Reshard {
            from,
            to,
            slots,
            yes,
            timeout,
        } => {
            let options = reshard::Options {
                from,
                to,
                slots,
                yes,
                timeout,
            };
            reshard::run(&mut client, options, input, out).await
        }
        Command::Rebalance {
            weights,
            use_empty_masters,
            threshold,
            timeout,
        } => {
            let options = rebalance::Options {
                weights,
                use_empty_masters,
                threshold,
                timeout,
            };
            rebalance::run(&mut client, options, out).await
        }
        Command::DelNode { node_id } => {
            writeln!(out, ">>> Removing node {node_id} from cluster")?;
            client
                .remove_node(pb::RemoveNodeRequest {
                    node_id: node_id.clone(),
                })
                .await?;
            writeln!(
                out,
                "[OK] Node {node_id} removed: stop its process (it cannot register again)."
            )?;
            Ok(())
        }
        Command::Check => check(&mut client, out).await,
        Command::Info => {
            let topology = fetch(&mut client).await?;
            write!(
                out,
                "{}",
                render::cluster_info(&topology, None, &MessageStats::default())
            )?;
            control_planes::print(&cli.control_plane, out).await
        }
        Command::Nodes => {
            let topology = fetch(&mut client).await?;
            let now = crate::controller::now_ms();
            write!(out, "{}", render::cluster_nodes(&topology, None, now))?;
            Ok(())
        }
        Command::Set { name, value } => {
            client
                .set_setting(pb::SetSettingRequest { name, value })
                .await?;
            writeln!(out, "OK")?;
            Ok(())
        }
        Command::Get => {
            let s = fetch(&mut client).await?.settings();
            let yes_no = |on: bool| if on { "yes" } else { "no" };
            writeln!(
                out,
                "require-full-coverage {}",
                yes_no(s.require_full_coverage)
            )?;
            writeln!(
                out,
                "allow-reads-when-down {}",
                yes_no(s.allow_reads_when_down)
            )?;
            writeln!(out, "node-timeout {}", s.node_timeout_ms)?;
            Ok(())
        }
    }
}

/// Asks `question` and goes on only if the operator types `yes`, as redis-cli's prompts do.
fn confirm(question: &str, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), CtlError> {
    write!(out, "{question}")?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CtlError::Aborted)
    }
}

/// The topology from GetTopology.
pub async fn fetch(client: &mut Client) -> Result<Topology, CtlError> {
    let wire = client
        .get_topology(pb::GetTopologyRequest {})
        .await?
        .into_inner();
    Ok(Topology::try_from(wire)?)
}

/// `check`: the summary, then the cluster check once the nodes agree (or the wait ran out).
async fn check(client: &mut Client, out: &mut dyn Write) -> Result<(), CtlError> {
    let topology = wait_for_agreement(client, AGREEMENT_WAIT).await?;
    write!(out, "{}", report::summary(&topology))?;
    let result = report::cluster_check(&topology);
    write!(out, "{}", result.text)?;
    if result.ok {
        Ok(())
    } else {
        Err(CtlError::CheckFailed)
    }
}

/// Polls GetTopology until no live node lags behind the current version, for at most `limit`;
/// returns the last topology seen either way.
async fn wait_for_agreement(client: &mut Client, limit: Duration) -> Result<Topology, CtlError> {
    let started = Instant::now();
    loop {
        let topology = fetch(client).await?;
        if report::lagging(&topology).is_empty() || started.elapsed() >= limit {
            return Ok(topology);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Topologies the unit tests plan over.
#[cfg(test)]
pub(crate) mod testing {
    use tessera_proto::topology::{NodeId, NodeSpec, Topology};

    /// `count` masters (ids 1, 2, ...), the first three splitting the slots as `redis-cli
    /// --cluster create` does, any more with none.
    pub fn masters(count: u8) -> Topology {
        let node = |n: u8| NodeSpec::master(NodeId::from_random_bytes([n; 20]), "h", u16::from(n));
        let slots = (0..16384usize)
            .map(|s| {
                Some(match s {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                })
            })
            .collect();
        Topology::created((1..=count).map(node).collect(), slots)
    }
}
