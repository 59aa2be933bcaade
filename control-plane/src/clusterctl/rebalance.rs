//! `clusterctl rebalance [--weight ID=W]... [--use-empty-masters] [--threshold PCT]`: spreads the
//! slots over the masters by weight as `redis-cli --cluster rebalance` does (its
//! clusterManagerCommandRebalance): each master should serve 16384 x weight / total weight slots;
//! when one is off by more than the threshold, slots go from the masters with the most extra to
//! those with the most missing. The control plane plans and starts every move at once
//! (Rebalance); this prints redis-cli's step lines and follows the progress.

use std::io::Write;
use std::time::Duration;

use tessera_proto::control_plane::Client;
use tessera_proto::pb;
use tessera_proto::topology::{NodeId, Topology};

use super::{reshard, CtlError};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ID=WEIGHT` pairs; masters not named weigh 1.
    pub weights: Vec<String>,
    /// Count masters that serve no slot (a node just added); otherwise they are left out.
    pub use_empty_masters: bool,
    /// Rebalance only when a master is off by more than this percentage of its share.
    pub threshold: f64,
    pub timeout: Duration,
}

pub async fn run(
    client: &mut Client,
    options: Options,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let weights = options
        .weights
        .iter()
        .map(|pair| weight(pair))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = client
        .rebalance(pb::RebalanceRequest {
            weights,
            use_empty_masters: options.use_empty_masters,
            threshold: options.threshold,
            dry_run: false,
        })
        .await?
        .into_inner();
    if plan.moves.is_empty() {
        writeln!(
            out,
            "*** No rebalancing needed! All nodes are within the {:.2}% threshold.",
            options.threshold
        )?;
        return Ok(());
    }
    let topology = Topology::try_from(plan.topology.ok_or(CtlError::MissingTopology)?)?;
    writeln!(
        out,
        ">>> Rebalancing across {} nodes. Total weight = {:.2}",
        plan.masters, plan.total_weight
    )?;
    let address = |id: &str| {
        NodeId::parse(id)
            .ok()
            .and_then(|id| topology.node(&id).map(|n| n.address()))
            .unwrap_or_else(|| id.to_string())
    };
    // redis-cli's steps: runs of slots with one source and one target.
    for step in plan
        .moves
        .chunk_by(|a, b| a.source_id == b.source_id && a.target_id == b.target_id)
    {
        writeln!(
            out,
            "Moving {} slots from {} to {}",
            step.len(),
            address(&step[0].source_id),
            address(&step[0].target_id)
        )?;
    }
    // Every move runs at once; the progress follows each target's slots in turn.
    let mut targets: Vec<&str> = Vec::new();
    for m in &plan.moves {
        if !targets.contains(&m.target_id.as_str()) {
            targets.push(&m.target_id);
        }
    }
    for target in targets {
        let slots: Vec<u16> = plan
            .moves
            .iter()
            .filter(|m| m.target_id == target)
            .filter_map(|m| u16::try_from(m.slot).ok())
            .collect();
        let target = NodeId::parse(target)?;
        reshard::follow(client, &slots, &target, options.timeout, out).await?;
    }
    Ok(())
}

/// An `ID=WEIGHT` pair.
fn weight(pair: &str) -> Result<pb::NodeWeight, CtlError> {
    let invalid = |want: &str| {
        CtlError::Rpc(tonic::Status::invalid_argument(format!(
            "invalid weight {pair:?}: want {want}"
        )))
    };
    let (id, weight) = pair.split_once('=').ok_or_else(|| invalid("ID=WEIGHT"))?;
    let weight: f64 = weight.parse().map_err(|_| invalid("a number"))?;
    Ok(pb::NodeWeight {
        node_id: id.to_string(),
        weight,
    })
}
