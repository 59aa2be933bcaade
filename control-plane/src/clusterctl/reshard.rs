//! `clusterctl reshard --from IDS --to ID --slots N`: the control plane's plan (Reshard, dry run:
//! the slots `redis-cli --cluster reshard` would pick), shown and confirmed, then one MoveSlots
//! call with exactly those slots and a progress report until every planned slot is the target's:
//! slots and keys moved, keys/s and time left (`progress`).

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use tessera_proto::control_plane::Client;
use tessera_proto::pb;
use tessera_proto::topology::{NodeId, Role, Topology};

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

pub async fn run(
    client: &mut Client,
    options: Options,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let source_ids: Vec<String> = if options.from == "all" {
        Vec::new()
    } else {
        options
            .from
            .split(',')
            .map(|id| id.trim().to_string())
            .collect()
    };
    // The control plane plans (and refuses in redis-cli's words); what is confirmed here is
    // exactly what moves.
    let plan = client
        .reshard(pb::ReshardRequest {
            source_ids: source_ids.clone(),
            target_id: options.to.clone(),
            slot_count: options.slots,
            dry_run: true,
        })
        .await?
        .into_inner();
    let topology = Topology::try_from(plan.topology.ok_or(CtlError::MissingTopology)?)?;
    let target_id = NodeId::parse(&options.to)?;
    let target = topology
        .index_of(&target_id)
        .ok_or(CtlError::MissingTopology)?;
    let sources: Vec<usize> = if source_ids.is_empty() {
        (0..topology.nodes().len())
            .filter(|&i| i != target && topology.nodes()[i].role == Role::Master)
            .collect()
    } else {
        source_ids
            .iter()
            .filter_map(|id| NodeId::parse(id).ok())
            .filter_map(|id| topology.index_of(&id))
            .collect()
    };
    writeln!(out, "\nReady to move {} slots.", options.slots)?;
    writeln!(out, "  Source nodes:")?;
    for &s in &sources {
        write!(out, "{}", indent(&report::node_info(&topology, s)))?;
    }
    writeln!(out, "  Destination node:")?;
    write!(out, "{}", indent(&report::node_info(&topology, target)))?;
    writeln!(out, "  Resharding plan:")?;
    for &s in &sources {
        let source = &topology.nodes()[s].id;
        let mine: Vec<u16> = plan
            .moves
            .iter()
            .filter(|m| m.source_id == source.as_str())
            .filter_map(|m| u16::try_from(m.slot).ok())
            .collect();
        if !mine.is_empty() {
            writeln!(
                out,
                "    Moving {} slots {} from {}",
                mine.len(),
                report::slots_string(&runs(&mine)),
                source
            )?;
        }
    }
    if plan.moves.is_empty() {
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
    let slots: Vec<u16> = plan
        .moves
        .iter()
        .filter_map(|m| u16::try_from(m.slot).ok())
        .collect();
    move_and_follow(client, &slots, &target_id, options.timeout, out).await
}

/// Starts moving `slots` to `target` (MoveSlots) and reports progress until they are its.
pub async fn move_and_follow(
    client: &mut Client,
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
pub(super) async fn follow(
    client: &mut Client,
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
    use super::runs;

    #[test]
    fn slots_read_as_runs() {
        assert_eq!(runs(&[5, 1, 2, 3, 9]), vec![(1, 3), (5, 5), (9, 9)]);
    }
}
