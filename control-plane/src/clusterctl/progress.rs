//! The progress of a slot move as `reshard` and `rebalance` show it: slots moved, keys moved, the
//! rate in keys per second and the time left; a progress bar on a terminal, plain lines otherwise.
//!
//! Keys come from the topology alone (no node is asked): each node's key count, which its
//! heartbeats report. The keys to move are estimated when the move starts, as each source's count
//! shared evenly over the slots it serves; the keys moved are what the target has gained since.
//! Both are as fresh as the last heartbeat (a fraction of a second) and count the clients' own
//! writes too, which is accurate enough for a rate and a time left, and costs nothing.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use tessera_proto::topology::{NodeId, Topology};

/// What a move has done so far, as one topology shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub slots: u64,
    pub keys: u64,
}

/// The move of `slots` to `target`, reported as it goes.
pub struct Progress {
    slots: Vec<u16>,
    target: NodeId,
    /// The target's key count when the move started.
    target_keys: u64,
    /// The estimated keys to move.
    keys: u64,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    reported: Option<Moved>,
}

impl Progress {
    /// Starts reporting the move of `slots` to `target`; `topology` is the one the move started
    /// from (the slots still served by their sources). A bar when stdout is a terminal.
    pub fn start(topology: &Topology, slots: &[u16], target: &NodeId) -> Progress {
        let keys = estimated_keys(topology, slots);
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(keys.max(1));
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40} {msg}, {human_pos}/{human_len} keys  {per_sec}  {elapsed} elapsed, about {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            slots: slots.to_vec(),
            target: target.clone(),
            target_keys: key_count(topology, target),
            keys,
            started: Instant::now(),
            bar,
            reported: None,
        }
    }

    /// What `topology` shows done.
    pub fn moved(&self, topology: &Topology) -> Moved {
        let slots = self
            .slots
            .iter()
            .filter(|&&s| {
                topology.migration(s).is_none()
                    && topology.owner(s).map(|n| &n.id) == Some(&self.target)
            })
            .count() as u64;
        let keys = key_count(topology, &self.target).saturating_sub(self.target_keys);
        Moved { slots, keys }
    }

    /// Shows `moved` if it changed since the last report.
    pub fn report(&mut self, moved: Moved, out: &mut dyn Write) -> std::io::Result<()> {
        if self.reported == Some(moved) {
            return Ok(());
        }
        self.reported = Some(moved);
        let total = self.slots.len();
        match &self.bar {
            Some(bar) => {
                bar.set_length(self.keys.max(moved.keys).max(1));
                bar.set_position(moved.keys);
                bar.set_message(format!("{}/{total} slots", moved.slots));
            }
            None => {
                let elapsed = self.started.elapsed().as_secs_f64();
                let rate = if elapsed > 0.0 {
                    moved.keys as f64 / elapsed
                } else {
                    0.0
                };
                let left = match self.keys.saturating_sub(moved.keys) {
                    0 => 0.0,
                    _ if rate <= 0.0 => f64::NAN,
                    keys => keys as f64 / rate,
                };
                let left = if left.is_nan() {
                    "time left unknown".to_string()
                } else {
                    format!("about {left:.1} s left")
                };
                writeln!(
                    out,
                    "Moved {}/{total} slots, {}/~{} keys ({rate:.0} keys/s, {elapsed:.1} s, {left})",
                    moved.slots, moved.keys, self.keys
                )?;
                out.flush()?;
            }
        }
        Ok(())
    }

    /// The move is done: the bar finished and one line for the record.
    pub fn finish(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let keys = self.reported.map_or(0, |m| m.keys);
        writeln!(
            out,
            "[OK] {} slots moved in {elapsed:.1} s ({keys} keys, {:.0} keys/s).",
            self.slots.len(),
            if elapsed > 0.0 {
                keys as f64 / elapsed
            } else {
                0.0
            }
        )
    }

    /// The move is given up on.
    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

/// `node`'s key count as its last heartbeat reported it.
fn key_count(topology: &Topology, node: &NodeId) -> u64 {
    topology
        .index_of(node)
        .map_or(0, |i| topology.status_at(i).key_count)
}

/// The keys of `slots`: each slot's serving master's key count over the number of slots it serves.
fn estimated_keys(topology: &Topology, slots: &[u16]) -> u64 {
    let mut keys = 0.0;
    for &slot in slots {
        let Some(source) = topology.owner_index(slot) else {
            continue;
        };
        let served: u64 = topology
            .ranges_of(source)
            .iter()
            .map(|&(a, b)| u64::from(b - a) + 1)
            .sum();
        if served > 0 {
            keys += topology.status_at(source).key_count as f64 / served as f64;
        }
    }
    keys.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_estimated_from_the_sources_counts() {
        let mut t = super::super::testing::masters(4);
        // Master 0 serves 5461 slots (0-5460) with 5461000 keys: 1000 a slot.
        t.observed.nodes[0].key_count = 5_461_000;
        t.observed.nodes[3].key_count = 7;
        let target = t.nodes()[3].id.clone();
        let slots: Vec<u16> = (0..100).collect();
        let progress = Progress::start(&t, &slots, &target);
        assert_eq!(progress.keys, 100_000);
        assert_eq!(progress.moved(&t), Moved { slots: 0, keys: 0 });
        t.observed.nodes[3].key_count = 5007;
        assert_eq!(progress.moved(&t).keys, 5000);
        let mut out = Vec::new();
        let mut progress = progress;
        progress
            .report(
                Moved {
                    slots: 5,
                    keys: 5000,
                },
                &mut out,
            )
            .expect("report");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with("Moved 5/100 slots, 5000/~100000 keys ("),
            "{text}"
        );
    }
}
