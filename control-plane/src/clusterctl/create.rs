//! `clusterctl create`: plan (a dry-run CreateCluster), show it as `redis-cli --cluster create`
//! does, ask, apply, wait until every node holds the new topology, then check.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tonic::transport::Channel;

use tessera_proto::topology::Topology;

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

pub async fn run(
    client: &mut ControlPlaneClient<Channel>,
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
    let plan = client.create_cluster(request(true)).await?.into_inner();
    let plan = Topology::try_from(plan.topology.ok_or(CtlError::MissingTopology)?)?;
    // The masters in the operator's order: each address's node is the owner of the next range.
    let mut masters: Vec<usize> = Vec::new();
    for slot in 0..tessera_proto::slot::SLOT_COUNT {
        if let Some(index) = plan.owner_index(slot) {
            if !masters.contains(&index) {
                masters.push(index);
            }
        }
    }
    write!(out, "{}", report::allocation(&plan, &masters))?;
    if !options.yes {
        write!(
            out,
            "Can I set the above configuration? (type 'yes' to accept): "
        )?;
        out.flush()?;
        let mut answer = String::new();
        input.read_line(&mut answer)?;
        if answer.trim() != "yes" {
            return Err(CtlError::Aborted);
        }
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

    let started = Instant::now();
    let mut dots = 0u64;
    let topology = loop {
        let topology = fetch(client).await?;
        let behind: Vec<String> = masters
            .iter()
            .filter(|&&i| topology.status_at(i).topology_version < version)
            .filter_map(|&i| topology.nodes().get(i))
            .map(|n| n.address())
            .collect();
        if behind.is_empty() {
            break topology;
        }
        let waited = started.elapsed();
        if waited >= options.wait {
            writeln!(out)?;
            return Err(CtlError::JoinTimeout {
                waited: options.wait,
                lagging: behind.join(", "),
            });
        }
        // One dot per second of waiting, as redis-cli prints.
        if waited.as_secs() > dots {
            dots = waited.as_secs();
            write!(out, ".")?;
            out.flush()?;
        }
        tokio::time::sleep(POLL).await;
    };
    writeln!(out)?;
    let check = report::cluster_check(&topology);
    write!(out, "{}", check.text)?;
    if check.ok {
        Ok(())
    } else {
        Err(CtlError::CheckFailed)
    }
}
