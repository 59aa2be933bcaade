//! `clusterctl failover REPLICA_ID [--force|--takeover]`: one Failover call (answered once the
//! replica is master in the published topology), then a wait until the new master holds that
//! topology, printed as an operator of Redis Cluster expects: `OK` (CLUSTER FAILOVER's reply),
//! then the new shape of the shard.

use std::io::Write;
use std::time::Duration;

use tessera_proto::control_plane::Client;
use tessera_proto::pb;
use tessera_proto::topology::{NodeId, Topology};

use super::create::wait_for_nodes;
use super::CtlError;

/// Formats inclusive slot ranges as redis-cli does: `0-5460,10923`.
fn ranges(ranges: &[(u16, u16)]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(",")
}

pub async fn run(
    client: &mut Client,
    replica_id: String,
    mode: pb::FailoverMode,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let replica = NodeId::parse(&replica_id)?;
    let how = match mode {
        pb::FailoverMode::Default => "",
        pb::FailoverMode::Force => " FORCE",
        pb::FailoverMode::Takeover => " TAKEOVER",
    };
    writeln!(
        out,
        ">>> Sending CLUSTER FAILOVER{how} for replica {replica_id}"
    )?;
    out.flush()?;
    let answer = client
        .failover(pb::FailoverRequest {
            replica_id,
            mode: mode as i32,
        })
        .await?
        .into_inner();
    let topology = Topology::try_from(answer.topology.ok_or(CtlError::MissingTopology)?)?;
    writeln!(out, "OK")?;
    let Some(index) = topology.index_of(&replica) else {
        return Err(CtlError::MissingTopology);
    };
    let node = &topology.nodes()[index];
    writeln!(
        out,
        "M: {} {}\n   slots:[{}] ({} slots) master, config epoch {}",
        node.id,
        node.address(),
        ranges(&topology.ranges_of(index)),
        topology
            .ranges_of(index)
            .iter()
            .map(|&(a, b)| u32::from(b - a) + 1)
            .sum::<u32>(),
        node.config_epoch,
    )?;
    for r in topology.replicas_of(index) {
        let n = &topology.nodes()[r];
        writeln!(
            out,
            "S: {} {}\n   replicates {}",
            n.id,
            n.address(),
            node.id
        )?;
    }
    out.flush()?;
    wait_for_nodes(client, &[index], topology.version, wait, out).await?;
    writeln!(out, "[OK] {} is master of its shard.", node.address())?;
    Ok(())
}
