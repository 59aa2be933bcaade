//! `clusterctl create`: plan (a dry-run CreateCluster), show it as `redis-cli --cluster create`
//! does (replica assignments included), ask, apply, wait until every node holds the new topology,
//! then check.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use tessera_proto::control_plane::Client;
use tessera_proto::pb;

use tessera_proto::topology::{NodeId, Topology};

use super::{fetch, report, CtlError, POLL};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub addresses: Vec<String>,
    pub replicas: u32,
    /// Apply without asking.
    pub yes: bool,
    /// Do nothing, successfully, when the cluster already exists.
    pub if_not_created: bool,
    /// Bound on waiting for nodes to report the applied topology.
    pub wait: Duration,
}

/// Polls until every node of `nodes` (indexes) reports holding `version` or newer, printing a dot
/// per second of waiting as redis-cli does; returns the last topology seen.
pub(super) async fn wait_for_nodes(
    client: &mut Client,
    nodes: &[usize],
    version: u64,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<Topology, CtlError> {
    let started = Instant::now();
    let mut dots = 0u64;
    loop {
        let topology = fetch(client).await?;
        let behind: Vec<String> = nodes
            .iter()
            .filter(|&&i| topology.status_at(i).topology_version < version)
            .filter_map(|&i| topology.nodes().get(i))
            .map(|n| n.address())
            .collect();
        if behind.is_empty() {
            return Ok(topology);
        }
        let waited = started.elapsed();
        if waited >= wait {
            writeln!(out)?;
            return Err(CtlError::JoinTimeout {
                waited: wait,
                lagging: behind.join(", "),
            });
        }
        if waited.as_secs() > dots {
            dots = waited.as_secs();
            write!(out, ".")?;
            out.flush()?;
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(
    client: &mut Client,
    options: Options,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    if options.if_not_created && fetch(client).await?.intent.created {
        writeln!(out, "[OK] The cluster already exists: nothing to do.")?;
        return Ok(());
    }
    let request = |dry_run| pb::CreateClusterRequest {
        addresses: options.addresses.clone(),
        replicas: options.replicas,
        dry_run,
    };
    let planned = client.create_cluster(request(true)).await?.into_inner();
    let plan = Topology::try_from(planned.topology.ok_or(CtlError::MissingTopology)?)?;
    // The nodes in the operator's order, as indexes into the plan.
    let given = planned
        .node_ids
        .iter()
        .map(|id| {
            let id = NodeId::parse(id)?;
            plan.index_of(&id).ok_or(CtlError::MissingTopology)
        })
        .collect::<Result<Vec<usize>, CtlError>>()?;
    write!(
        out,
        "{}",
        report::allocation(&plan, &given, options.replicas as usize)
    )?;
    if !options.yes {
        super::confirm(
            "Can I set the above configuration? (type 'yes' to accept): ",
            input,
            out,
        )?;
    }
    let applied = client.create_cluster(request(false)).await?.into_inner();
    let version = applied
        .topology
        .as_ref()
        .ok_or(CtlError::MissingTopology)?
        .version;
    writeln!(out, ">>> Nodes configuration updated")?;
    writeln!(out, ">>> Assign a different config epoch to each node")?;
    writeln!(out, "Waiting for the cluster to join")?;
    out.flush()?;
    let topology = wait_for_nodes(client, &given, version, options.wait, out).await?;
    writeln!(out)?;
    let check = report::cluster_check(&topology);
    write!(out, "{}", check.text)?;
    if check.ok {
        Ok(())
    } else {
        Err(CtlError::CheckFailed)
    }
}
