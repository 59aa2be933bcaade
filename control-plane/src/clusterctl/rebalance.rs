//! `clusterctl rebalance [--weight ID=W]... [--use-empty-masters] [--threshold PCT]`: spreads the
//! slots over the masters by weight as `redis-cli --cluster rebalance` does (its
//! clusterManagerCommandRebalance): each master should serve 16384 x weight / total weight slots;
//! when one is off by more than the threshold, slots go from the masters with the most extra to
//! those with the most missing, each move a reshard (`reshard::plan`, MoveSlots, progress).

use std::io::Write;
use std::time::Duration;

use tessera_proto::control_plane::Client;
use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{NodeId, Role, Topology};

use super::{fetch, reshard, CtlError};

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

/// One step of the plan: `count` slots from `source` to `target` (topology indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub source: usize,
    pub target: usize,
    pub count: u32,
}

/// The moves that balance `topology`'s masters by `weights` (index, weight), or `None` when every
/// master is within `threshold` percent of its share, as redis-cli decides and pairs them.
pub fn plan(topology: &Topology, weights: &[(usize, f64)], threshold: f64) -> Option<Vec<Step>> {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return None;
    }
    let served = |i: usize| -> i64 {
        topology
            .ranges_of(i)
            .iter()
            .map(|&(a, b)| i64::from(b - a) + 1)
            .sum()
    };
    // balance > 0: serves more than its share.
    let mut balances: Vec<(usize, i64)> = Vec::new();
    let mut over_threshold = false;
    for &(i, weight) in weights {
        let expected = (f64::from(SLOT_COUNT) / total * weight) as i64;
        let balance = served(i) - expected;
        if weight > 0.0 && expected > 0 {
            let off = (balance.abs() as f64 / expected as f64) * 100.0;
            over_threshold |= off > threshold;
        } else if served(i) > 0 {
            over_threshold = true;
        }
        balances.push((i, balance));
    }
    if !over_threshold {
        return None;
    }
    // Rounding leaves the balances summing to more than zero: take it from the most missing, as
    // redis-cli does, so every slot has a place to go.
    let mut excess: i64 = balances.iter().map(|(_, b)| b).sum();
    balances.sort_by_key(|&(_, b)| b);
    for (_, balance) in balances.iter_mut() {
        if excess <= 0 {
            break;
        }
        *balance -= 1;
        excess -= 1;
    }
    balances.sort_by_key(|&(_, b)| b);
    let mut steps = Vec::new();
    let (mut dst, mut src) = (0usize, balances.len().saturating_sub(1));
    while dst < src {
        let (d, db) = balances[dst];
        let (s, sb) = balances[src];
        if db >= 0 || sb <= 0 {
            break;
        }
        let count = (-db).min(sb);
        steps.push(Step {
            source: s,
            target: d,
            count: count as u32,
        });
        balances[dst].1 += count;
        balances[src].1 -= count;
        if balances[dst].1 == 0 {
            dst += 1;
        }
        if balances[src].1 == 0 {
            src -= 1;
        }
    }
    Some(steps)
}

/// The masters to balance and their weights.
fn weights(topology: &Topology, options: &Options) -> Result<Vec<(usize, f64)>, CtlError> {
    let mut given = Vec::new();
    for pair in &options.weights {
        let (id, weight) = pair.split_once('=').ok_or_else(|| {
            CtlError::Rpc(tonic::Status::invalid_argument(format!(
                "invalid weight {pair:?}: want ID=WEIGHT"
            )))
        })?;
        let weight: f64 = weight.parse().map_err(|_| {
            CtlError::Rpc(tonic::Status::invalid_argument(format!(
                "invalid weight {pair:?}: want a number"
            )))
        })?;
        let id = NodeId::parse(id)?;
        let index = topology.index_of(&id).ok_or_else(|| {
            CtlError::Rpc(tonic::Status::not_found(format!("No such node ID {id}")))
        })?;
        given.push((index, weight));
    }
    Ok(topology
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.role == Role::Master)
        .filter(|&(i, _)| options.use_empty_masters || !topology.ranges_of(i).is_empty())
        .map(|(i, _)| {
            let weight = given.iter().find(|(g, _)| *g == i).map_or(1.0, |(_, w)| *w);
            (i, weight)
        })
        .collect())
}

pub async fn run(
    client: &mut Client,
    options: Options,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let topology = fetch(client).await?;
    let weights = weights(&topology, &options)?;
    let Some(steps) = plan(&topology, &weights, options.threshold) else {
        writeln!(
            out,
            "*** No rebalancing needed! All nodes are within the {:.2}% threshold.",
            options.threshold
        )?;
        return Ok(());
    };
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    writeln!(
        out,
        ">>> Rebalancing across {} nodes. Total weight = {total:.2}",
        weights.len()
    )?;
    for step in steps {
        let now = fetch(client).await?;
        let (source, target) = (&now.nodes()[step.source], &now.nodes()[step.target]);
        writeln!(
            out,
            "Moving {} slots from {} to {}",
            step.count,
            source.address(),
            target.address()
        )?;
        let slots: Vec<u16> = reshard::plan(&now, &[step.source], step.count)
            .into_iter()
            .map(|(slot, _)| slot)
            .collect();
        reshard::move_and_follow(client, &slots, &target.id.clone(), options.timeout, out).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three masters split as redis-cli creates them, and a fourth without slots.
    fn three_and_an_empty_one() -> Topology {
        super::super::testing::masters(4)
    }

    #[test]
    fn balances_by_weight_as_redis_cli_does() {
        let t = three_and_an_empty_one();
        // Balanced already (the empty master left out), within any threshold.
        assert_eq!(plan(&t, &[(0, 1.0), (1, 1.0), (2, 1.0)], 2.0), None);
        // With the empty master: 4096 each, taken from the three (1365 + 1366 + 1365).
        let steps = plan(&t, &[(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0)], 2.0).expect("moves");
        assert!(steps.iter().all(|s| s.target == 3));
        assert_eq!(steps.iter().map(|s| s.count).sum::<u32>(), 4096);
        // Weights: master 0 should hold none.
        let steps = plan(&t, &[(0, 0.0), (1, 1.0), (2, 1.0)], 2.0).expect("moves");
        assert!(steps.iter().all(|s| s.source == 0));
        assert_eq!(steps.iter().map(|s| s.count).sum::<u32>(), 5461);
    }
}
