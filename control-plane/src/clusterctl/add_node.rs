//! `clusterctl add-node ADDR --replica-of ID`: one AddReplica call, then a wait until the node
//! holds the topology that makes it a replica, printed in `redis-cli --cluster add-node
//! --cluster-slave` shapes.

use std::io::Write;
use std::time::Duration;

use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::{NodeId, Topology};
use tonic::transport::Channel;

use super::create::wait_for_nodes;
use super::CtlError;

pub async fn run(
    client: &mut ControlPlaneClient<Channel>,
    address: String,
    master_id: String,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    writeln!(out, ">>> Adding node {address} to cluster")?;
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
