//! `clusterctl add-node ADDR [--replica-of ID]`, printed in `redis-cli --cluster add-node` shapes.
//! A started node is a member already (it registers itself), as an empty master: without
//! `--replica-of` the command checks that; with it, one AddReplica call, then a wait until the
//! node holds the topology that makes it a replica.

use std::io::Write;
use std::time::Duration;

use tessera_proto::control_plane::Client;
use tessera_proto::pb;
use tessera_proto::topology::{NodeId, Topology};

use super::create::wait_for_nodes;
use super::CtlError;

pub async fn run(
    client: &mut Client,
    address: String,
    master_id: Option<String>,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    writeln!(out, ">>> Adding node {address} to cluster")?;
    let Some(master_id) = master_id else {
        return check_empty_master(client, &address, out).await;
    };
    let answer = client
        .add_replica(pb::AddReplicaRequest {
            address: address.clone(),
            master_id: master_id.clone(),
        })
        .await?
        .into_inner();
    let topology = Topology::try_from(answer.topology.ok_or(CtlError::MissingTopology)?)?;
    let replica = NodeId::parse(&answer.replica_id)?;
    let master = NodeId::parse(&master_id)?;
    let (Some(index), Some(master)) = (topology.index_of(&replica), topology.node(&master)) else {
        return Err(CtlError::MissingTopology);
    };
    writeln!(
        out,
        ">>> Configure node as replica of {}.",
        master.address()
    )?;
    out.flush()?;
    wait_for_nodes(client, &[index], topology.version, wait, out).await?;
    writeln!(out, "[OK] New node added correctly.")?;
    Ok(())
}

/// A node added as a master: it must have registered (it does when started) and serve no slot.
async fn check_empty_master(
    client: &mut Client,
    address: &str,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let topology = super::fetch(client).await?;
    let Some(index) = topology.nodes().iter().position(|n| n.address() == address) else {
        return Err(tonic::Status::not_found(format!(
            "no registered node at {address}: start it (it registers itself) or check the address"
        ))
        .into());
    };
    let node = &topology.nodes()[index];
    if node.role != tessera_proto::topology::Role::Master || !topology.ranges_of(index).is_empty() {
        return Err(tonic::Status::failed_precondition(format!(
            "Node {address} is not empty. Either the node already knows other nodes (check \
             with CLUSTER NODES) or contains some key in database 0."
        ))
        .into());
    }
    writeln!(
        out,
        ">>> Node {} ({}) is a master with no slots.",
        address, node.id
    )?;
    writeln!(out, "[OK] New node added correctly.")?;
    Ok(())
}
