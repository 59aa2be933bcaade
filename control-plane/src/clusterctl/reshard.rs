//! `clusterctl reshard --from IDS --to ID --slots N`: the plan as `redis-cli --cluster reshard`
//! makes it (slots taken from each source in proportion to what it serves, lowest first), shown
//! and confirmed, then one MoveSlots call and a progress report until every planned slot is the
//! target's: slots and keys moved, keys/s and time left (`progress`).

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::{NodeId, Role, Topology};
use tonic::transport::Channel;

use super::progress::Progress;
use super::{fetch, report, CtlError};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source master ids, or `all` (every master but the target).
    pub from: String,
    pub to: String,
    pub slots: u32,
    pub yes: bool,
    /// How long the move may take before `reshard` gives up waiting (the move goes on).
    pub timeout: Duration,
}

/// How often the topology is read while the slots move.
const POLL: Duration = Duration::from_millis(50);

/// The slots to move, each with the index of its source: redis-cli's
/// clusterManagerComputeReshardTable. Sources are taken by slots served, most first; each gives
/// its share of `count` (the first rounds up, the others down), lowest slots first.
pub fn plan(topology: &Topology, sources: &[usize], count: u32) -> Vec<(u16, usize)> {
    let mut sources: Vec<(usize, Vec<u16>)> = sources
        .iter()
        .map(|&s| (s, owned_slots(topology, s)))
        .collect();
    sources.sort_by_key(|(_, slots)| std::cmp::Reverse(slots.len()));
    let total: usize = sources.iter().map(|(_, slots)| slots.len()).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut moves = Vec::new();
    for (i, (source, slots)) in sources.iter().enumerate() {
        let share = f64::from(count) / total as f64 * slots.len() as f64;
        let share = if i == 0 { share.ceil() } else { share.floor() } as usize;
        moves.extend(slots.iter().take(share).map(|&slot| (slot, *source)));
    }
    moves.truncate(count as usize);
    moves
}

fn owned_slots(topology: &Topology, index: usize) -> Vec<u16> {
    topology
        .ranges_of(index)
        .into_iter()
        .flat_map(|(first, last)| first..=last)
        .collect()
}

pub async fn run(
    client: &mut ControlPlaneClient<Channel>,
    options: Options,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let topology = fetch(client).await?;
    let target_id = NodeId::parse(&options.to)?;
    let target = topology
        .index_of(&target_id)
        .ok_or_else(|| tonic::Status::not_found(format!("No such node ID {}", options.to)))?;
    if topology.nodes()[target].role != Role::Master {
        return Err(tonic::Status::failed_precondition(
            "The specified node is not known or not a master, please retry.",
        )
        .into());
    }
    let sources: Vec<usize> = if options.from == "all" {
        (0..topology.nodes().len())
            .filter(|&i| i != target && topology.nodes()[i].role == Role::Master)
            .collect()
    } else {
        options
            .from
            .split(',')
            .map(|id| {
                let id = NodeId::parse(id.trim())?;
                topology.index_of(&id).ok_or_else(|| {
                    CtlError::Rpc(tonic::Status::not_found(format!("No such node ID {id}")))
                })
            })
            .collect::<Result<_, CtlError>>()?
    };
    if sources.contains(&target) {
        return Err(tonic::Status::invalid_argument(
            "Target node is also listed among the source nodes!",
        )
        .into());
    }
    let moves = plan(&topology, &sources, options.slots);
    writeln!(out, "\nReady to move {} slots.", options.slots)?;
    writeln!(out, "  Source nodes:")?;
    for &s in &sources {
        write!(out, "{}", indent(&report::node_info(&topology, s)))?;
    }
    writeln!(out, "  Destination node:")?;
    write!(out, "{}", indent(&report::node_info(&topology, target)))?;
    writeln!(out, "  Resharding plan:")?;
    for &s in &sources {
        let mine: Vec<u16> = moves
            .iter()
            .filter(|(_, source)| *source == s)
            .map(|(slot, _)| *slot)
            .collect();
        if !mine.is_empty() {
            writeln!(
                out,
                "    Moving {} slots {} from {}",
                mine.len(),
                report::slots_string(&runs(&mine)),
                topology.nodes()[s].id
            )?;
        }
    }
    if moves.is_empty() {
        writeln!(out, "*** No slots to move.")?;
        return Ok(());
    }
    if !options.yes {
        super::confirm(
            "Do you want to proceed with the proposed reshard plan (yes/no)? ",
            input,
            out,
        )?;
    }
    let slots: Vec<u16> = moves.iter().map(|(slot, _)| *slot).collect();
    move_and_follow(client, &slots, &target_id, options.timeout, out).await
}

/// Starts moving `slots` to `target` (MoveSlots) and reports progress until they are its.
pub async fn move_and_follow(
    client: &mut ControlPlaneClient<Channel>,
    slots: &[u16],
    target: &NodeId,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    client
        .move_slots(pb::MoveSlotsRequest {
            slots: slots.iter().map(|&s| u32::from(s)).collect(),
            target_id: target.to_string(),
        })
        .await?;
    follow(client, slots, target, timeout, out).await
}

/// Waits until every slot of `slots` is `target`'s, reporting progress (`progress`).
async fn follow(
    client: &mut ControlPlaneClient<Channel>,
    slots: &[u16],
    target: &NodeId,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let started = Instant::now();
    let mut progress = Progress::start(&fetch(client).await?, slots, target);
    loop {
        let topology = fetch(client).await?;
        let moved = progress.moved(&topology);
        progress.report(moved, out)?;
        if moved.slots == slots.len() as u64 {
            progress.finish(out)?;
            return Ok(());
        }
        if started.elapsed() >= timeout {
            progress.abandon();
            return Err(CtlError::MoveTimeout {
                waited: timeout,
                left: slots.len() as u64 - moved.slots,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `node_info`'s lines, indented under a heading as redis-cli's reshard prints them.
fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}

/// Ascending slots as inclusive runs.
fn runs(slots: &[u16]) -> Vec<(u16, u16)> {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for slot in sorted {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == slot => *last = slot,
            _ => out.push((slot, slot)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_masters() -> Topology {
        super::super::testing::masters(3)
    }

    #[test]
    fn plans_as_redis_cli_does() {
        let t = three_masters();
        // One source: its lowest slots.
        let p = plan(&t, &[0], 3);
        assert_eq!(p, vec![(0, 0), (1, 0), (2, 0)]);
        // Two sources: the larger first (rounded up), then its share (rounded down).
        let p = plan(&t, &[0, 1], 5);
        assert_eq!(
            p.iter().map(|&(s, _)| s).collect::<Vec<_>>(),
            vec![5461, 5462, 5463, 0, 1]
        );
        // Never more than asked, nothing from a source without slots.
        assert_eq!(plan(&t, &[0, 1, 2], 4096).len(), 4096);
        assert!(plan(&Topology::default(), &[], 10).is_empty());
        assert_eq!(runs(&[5, 1, 2, 3, 9]), vec![(1, 3), (5, 5), (9, 9)]);
    }
}
