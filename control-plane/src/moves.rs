//! Which slots to move, as `redis-cli --cluster reshard` and `rebalance` choose them: pure plans
//! over a topology, served by the Reshard and Rebalance calls and shown by clusterctl before it
//! moves anything. Carrying a plan out is `ClusterState::move_slots`.

use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{NodeId, Role, Topology};

use crate::error::{Error, PlanRefused};

/// One planned slot move (topology indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedMove {
    pub slot: u16,
    pub source: usize,
    pub target: usize,
}

/// One step of a rebalance: `count` slots from `source` to `target` (topology indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub source: usize,
    pub target: usize,
    pub count: u32,
}

/// What `rebalance` balanced over, and the moves that do it (empty when every master is within
/// the threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalance {
    /// How many masters take part.
    pub masters: usize,
    pub total_weight: f64,
    pub moves: Vec<PlannedMove>,
}

impl AsRef<[PlannedMove]> for Rebalance {
    fn as_ref(&self) -> &[PlannedMove] {
        &self.moves
    }
}

/// The slots `sources` give to `target` for a reshard of `count` slots; `sources` empty means
/// every other master (redis-cli's `--cluster-from all`). Refused as redis-cli refuses: an
/// unknown node, a target that is not a master, the target among the sources.
pub fn reshard(
    topology: &Topology,
    sources: &[NodeId],
    target: &NodeId,
    count: u32,
) -> Result<Vec<PlannedMove>, Error> {
    let target = index_of(topology, target)?;
    if topology.nodes()[target].role != Role::Master {
        return Err(PlanRefused::TargetNotMaster.into());
    }
    let sources: Vec<usize> = if sources.is_empty() {
        masters(topology).filter(|&i| i != target).collect()
    } else {
        sources
            .iter()
            .map(|id| index_of(topology, id))
            .collect::<Result<_, _>>()?
    };
    if sources.contains(&target) {
        return Err(PlanRefused::TargetAmongSources.into());
    }
    let mut owned = owned_by(topology);
    Ok(take(&mut owned, &sources, count)
        .into_iter()
        .map(|(slot, source)| PlannedMove {
            slot,
            source,
            target,
        })
        .collect())
}

/// The moves that balance the masters by weight as `redis-cli --cluster rebalance` does:
/// `weights` names some masters (the others weigh 1); masters serving no slot take part only with
/// `use_empty_masters`; nothing moves while every master is within `threshold` percent of its
/// share.
pub fn rebalance(
    topology: &Topology,
    weights: &[(NodeId, f64)],
    use_empty_masters: bool,
    threshold: f64,
) -> Result<Rebalance, Error> {
    let mut given = Vec::new();
    for (id, weight) in weights {
        if !weight.is_finite() || *weight < 0.0 {
            return Err(PlanRefused::InvalidWeight(*weight).into());
        }
        given.push((index_of(topology, id)?, *weight));
    }
    let weighted: Vec<(usize, f64)> = masters(topology)
        .filter(|&i| use_empty_masters || !topology.ranges_of(i).is_empty())
        .map(|i| {
            let weight = given.iter().find(|(g, _)| *g == i).map_or(1.0, |(_, w)| *w);
            (i, weight)
        })
        .collect();
    let total_weight: f64 = weighted.iter().map(|(_, w)| w).sum();
    let steps = steps(topology, &weighted, threshold).unwrap_or_default();
    let mut owned = owned_by(topology);
    let moves = steps
        .iter()
        .flat_map(|step| {
            take(&mut owned, &[step.source], step.count)
                .into_iter()
                .map(|(slot, source)| PlannedMove {
                    slot,
                    source,
                    target: step.target,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Rebalance {
        masters: weighted.len(),
        total_weight,
        moves,
    })
}

/// redis-cli's clusterManagerCommandRebalance pairing: each master should serve 16384 x weight /
/// total weight slots; when one is off by more than the threshold, slots go from the masters with
/// the most extra to those with the most missing. `None` when nothing needs to move.
pub fn steps(topology: &Topology, weights: &[(usize, f64)], threshold: f64) -> Option<Vec<Step>> {
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

/// Takes `count` slots from `sources` out of `owned`, as redis-cli's
/// clusterManagerComputeReshardTable picks them: sources by slots served, most first; each gives
/// its share of `count` (the first rounds up, the others down), lowest slots first. Taking them
/// out lets later steps of one plan pick from what is left, as redis-cli's next step would.
fn take(owned: &mut [Vec<u16>], sources: &[usize], count: u32) -> Vec<(u16, usize)> {
    let mut sources = sources.to_vec();
    sources.sort_by_key(|&s| std::cmp::Reverse(owned[s].len()));
    let total: usize = sources.iter().map(|&s| owned[s].len()).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut moves = Vec::new();
    for (i, &source) in sources.iter().enumerate() {
        let share = f64::from(count) / total as f64 * owned[source].len() as f64;
        let share = if i == 0 { share.ceil() } else { share.floor() } as usize;
        let left = (count as usize).saturating_sub(moves.len());
        let taken: Vec<u16> = owned[source].drain(..share.min(left)).collect();
        moves.extend(taken.into_iter().map(|slot| (slot, source)));
    }
    moves
}

/// Each node's slots, ascending, by topology index.
fn owned_by(topology: &Topology) -> Vec<Vec<u16>> {
    (0..topology.nodes().len())
        .map(|i| {
            topology
                .ranges_of(i)
                .into_iter()
                .flat_map(|(first, last)| first..=last)
                .collect()
        })
        .collect()
}

fn masters(topology: &Topology) -> impl Iterator<Item = usize> + '_ {
    (0..topology.nodes().len()).filter(|&i| topology.nodes()[i].role == Role::Master)
}

fn index_of(topology: &Topology, id: &NodeId) -> Result<usize, Error> {
    topology
        .index_of(id)
        .ok_or_else(|| PlanRefused::NoSuchNode(id.to_string()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three masters split as redis-cli creates them, then `empty` masters without slots.
    fn masters_and_empty(empty: u8) -> Topology {
        crate::clusterctl::testing::masters(3 + empty)
    }

    fn id(t: &Topology, i: usize) -> NodeId {
        t.nodes()[i].id.clone()
    }

    #[test]
    fn reshards_as_redis_cli_does() {
        let t = masters_and_empty(0);
        // From both others to master 0: the larger source first, rounded up; lowest slots first.
        let moves = reshard(&t, &[], &id(&t, 0), 100).expect("plan");
        assert_eq!(moves.len(), 100);
        let from = |s: usize| moves.iter().filter(|m| m.source == s).count();
        assert_eq!((from(1), from(2)), (51, 49));
        assert_eq!(moves[0].slot, 5461);
        assert!(moves.iter().all(|m| m.target == 0));
        // One source: its lowest slots.
        let slots = |moves: Vec<PlannedMove>| moves.iter().map(|m| m.slot).collect::<Vec<_>>();
        let moves = reshard(&t, &[id(&t, 0)], &id(&t, 2), 3).expect("plan");
        assert_eq!(slots(moves), vec![0, 1, 2]);
        // Two sources: the larger first (rounded up), then its share (rounded down).
        let moves = reshard(&t, &[id(&t, 0), id(&t, 1)], &id(&t, 2), 5).expect("plan");
        assert_eq!(slots(moves), vec![5461, 5462, 5463, 0, 1]);
        // Refusals.
        let two = [id(&t, 2)];
        assert!(reshard(&t, &two, &id(&t, 2), 10).is_err());
        let stranger = NodeId::from_random_bytes([9; 20]);
        assert!(reshard(&t, &[], &stranger, 10).is_err());
    }

    #[test]
    fn balances_by_weight_as_redis_cli_does() {
        let t = masters_and_empty(1);
        // Balanced already (the empty master left out), within any threshold.
        let plan = rebalance(&t, &[], false, 2.0).expect("plan");
        assert_eq!((plan.masters, plan.moves.len()), (3, 0));
        // With the empty master: 4096 each, taken from the three (1365 + 1366 + 1365), and no
        // slot planned twice.
        let plan = rebalance(&t, &[], true, 2.0).expect("plan");
        assert_eq!(plan.masters, 4);
        assert!(plan.moves.iter().all(|m| m.target == 3));
        assert_eq!(plan.moves.len(), 4096);
        let mut slots: Vec<u16> = plan.moves.iter().map(|m| m.slot).collect();
        slots.dedup();
        assert_eq!(slots.len(), 4096);
        // Weights: master 0 should hold none; its slots are shared by two targets, each slot
        // planned once.
        let plan = rebalance(&t, &[(id(&t, 0), 0.0)], false, 2.0).expect("plan");
        assert!(plan.moves.iter().all(|m| m.source == 0));
        assert_eq!(plan.moves.len(), 5461);
        let mut slots: Vec<u16> = plan.moves.iter().map(|m| m.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 5461);
        assert!(rebalance(&t, &[(id(&t, 0), -1.0)], false, 2.0).is_err());
    }
}
