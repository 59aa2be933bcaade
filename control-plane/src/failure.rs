//! The failure detector: a pure function from what the control plane knows (last heartbeats, the
//! peers' latest observations, its own connect probes) and the current time to each node's
//! PFAIL/FAIL flags. The clock is a parameter, so the rules are table-tested; a background tick in
//! `lib` applies the result.
//!
//! The rules (DESIGN.md, "Failure detection"):
//! - a node with no heartbeat for longer than node-timeout is PFAIL (Redis's `fail?`);
//! - a PFAIL node becomes FAIL when a majority of masters agree. The control plane counts as one
//!   observer; each OTHER voting master that is itself healthy and whose latest report (received
//!   within 2 x node-timeout) calls the node unreachable adds one. Needed: `voters / 2 + 1`, where
//!   voters are the masters owning slots (before creation: every registered master), at least 1;
//! - a node whose process is known to be gone is PFAIL and FAIL at once, without waiting out
//!   node-timeout (`gone`): it has been silent for `GONE_SILENCE_MS` (or node-timeout if less),
//!   the control plane's own connect probe, sent after its last heartbeat and at most
//!   `PROBE_FRESH_MS` old, was refused, and every healthy voting master (not one whose own port
//!   refuses our probes) has reported since that last heartbeat and calls it `refused`, the
//!   control plane plus these being a majority as above. A refused connection means nothing listens on the port: a live node always does
//!   (it closes its port only after it has stopped taking writes), so a refused port is a process
//!   that cannot write. A hung or partitioned node times out instead, and is never `gone`;
//! - PFAIL is cleared by the node's own heartbeat; FAIL only by a stable return
//!   (`stable_return`: `STABLE_BEATS` heartbeats over at least node-timeout / 2, none more than
//!   node-timeout / 2 after the previous), never by one heartbeat, so a flapping node does not
//!   flip its slots back and forth. A node that was FAIL when the control plane restarted stays
//!   FAIL until it has returned so.

use tessera_proto::topology::NodeId;

/// One node as the detector sees it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: NodeId,
    /// Counts toward the majority (a master owning slots, or any master before creation).
    pub voter: bool,
    /// Unix ms of the last heartbeat or registration.
    pub last_heartbeat_ms: u64,
    pub pfail: bool,
    pub fail: bool,
    /// The node's latest report about its peers, if it sent one.
    pub report: Option<PeerReport>,
    /// The control plane's latest connect probe of the node, if any.
    pub probe: Option<Probe>,
}

/// The outcome of one connect probe by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Unix ms when the probe was sent.
    pub sent_ms: u64,
    /// The connection was refused (ECONNREFUSED); false when it was accepted or timed out.
    pub refused: bool,
}

/// What one node last said about its peers.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    /// Unix ms when the control plane received it.
    pub received_ms: u64,
    /// The peers it could not reach.
    pub unreachable: Vec<NodeId>,
    /// The peers whose port refused its last connection attempt.
    pub refused: Vec<NodeId>,
}

/// A node's flags as the detector decides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub pfail: bool,
    pub fail: bool,
    /// The node's process is known to be gone (see the module rules): its write lease need not
    /// be waited out.
    pub gone: bool,
}

/// Silence before refused probes may declare a process gone (or node-timeout, if less): two
/// heartbeat periods of a node that beats every 100 ms plus slack. Refusals are the evidence;
/// this only keeps a live node whose port is wrongly reported refused (a REJECT firewall rule)
/// from being failed between two heartbeats.
pub const GONE_SILENCE_MS: u64 = 300;
/// How old the control plane's refused probe may be to count.
pub const PROBE_FRESH_MS: u64 = 1_000;
/// Heartbeats a FAIL node must send in a row before its FAIL flag is cleared.
pub const STABLE_BEATS: u32 = 3;

/// A run of heartbeats from a FAIL node: how it is returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    /// Unix ms of the first heartbeat of the run.
    pub since_ms: u64,
    /// Unix ms of the latest heartbeat of the run.
    pub last_ms: u64,
    pub beats: u32,
}

/// The run a heartbeat at `now_ms` makes: it continues `previous` when it came at most
/// node-timeout / 2 after the previous beat, else it starts a new one.
pub fn extend_streak(previous: Option<Streak>, now_ms: u64, node_timeout_ms: u64) -> Streak {
    match previous {
        Some(run) if now_ms.saturating_sub(run.last_ms) <= node_timeout_ms / 2 => Streak {
            last_ms: now_ms,
            beats: run.beats.saturating_add(1),
            ..run
        },
        _ => Streak {
            since_ms: now_ms,
            last_ms: now_ms,
            beats: 1,
        },
    }
}

/// Whether a FAIL node whose heartbeats form `streak` has returned for good: `STABLE_BEATS`
/// heartbeats in a row spanning at least node-timeout / 2.
pub fn stable_return(streak: &Streak, node_timeout_ms: u64) -> bool {
    streak.beats >= STABLE_BEATS
        && streak.last_ms.saturating_sub(streak.since_ms) >= node_timeout_ms / 2
}

/// Whether the nodes' heartbeats are so overdue that the control plane should probe them (see
/// `gone`): a master a fresh voting report calls refused, or silent for longer than two of the
/// heartbeat periods nodes use (node-timeout / 10, at least 100 ms), or PFAIL.
pub fn suspects(nodes: &[NodeView], now_ms: u64, node_timeout_ms: u64) -> Vec<bool> {
    let overdue = 2 * (node_timeout_ms / 10).max(100);
    let report_window = node_timeout_ms.saturating_mul(2);
    nodes
        .iter()
        .map(|node| {
            node.voter
                && (node.pfail
                    || now_ms.saturating_sub(node.last_heartbeat_ms) > overdue
                    || nodes.iter().any(|other| {
                        other.voter
                            && other.report.as_ref().is_some_and(|r| {
                                now_ms.saturating_sub(r.received_ms) <= report_window
                                    && r.refused.contains(&node.id)
                            })
                    }))
        })
        .collect()
}

/// Whether the process of `nodes[i]` is known to be gone at `now_ms` (see the module rules).
fn gone(nodes: &[NodeView], i: usize, now_ms: u64, node_timeout_ms: u64, needed: usize) -> bool {
    let node = &nodes[i];
    let since = node.last_heartbeat_ms;
    if now_ms.saturating_sub(since) <= GONE_SILENCE_MS.min(node_timeout_ms) {
        return false;
    }
    // Our own probe, sent after the node's last heartbeat, was refused not long ago.
    let probed_refused = |n: &NodeView| {
        n.probe.is_some_and(|p| {
            p.refused
                && p.sent_ms > n.last_heartbeat_ms
                && now_ms.saturating_sub(p.sent_ms) <= PROBE_FRESH_MS
        })
    };
    if !probed_refused(node) {
        return false;
    }
    let silent = |n: &NodeView| now_ms.saturating_sub(n.last_heartbeat_ms) > node_timeout_ms;
    let mut refusing = 0;
    for (j, other) in nodes.iter().enumerate() {
        // A voter that is itself PFAIL, FAIL, silent or refusing our probes (two masters killed
        // at once) neither counts nor is waited for.
        if j == i
            || !other.voter
            || other.pfail
            || other.fail
            || silent(other)
            || probed_refused(other)
        {
            continue;
        }
        // Every healthy voter must have spoken since the node fell silent, and say refused.
        match &other.report {
            Some(r) if r.received_ms > since && r.refused.contains(&node.id) => refusing += 1,
            _ => return false,
        }
    }
    1 + refusing >= needed
}

/// The flags each node of `nodes` should carry at `now_ms`, in the same order.
pub fn evaluate(nodes: &[NodeView], now_ms: u64, node_timeout_ms: u64) -> Vec<Flags> {
    let silent: Vec<bool> = nodes
        .iter()
        .map(|n| now_ms.saturating_sub(n.last_heartbeat_ms) > node_timeout_ms)
        .collect();
    let voters = nodes.iter().filter(|n| n.voter).count().max(1);
    let needed = voters / 2 + 1;
    let report_window = node_timeout_ms.saturating_mul(2);

    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            if gone(nodes, i, now_ms, node_timeout_ms, needed) {
                return Flags {
                    pfail: true,
                    fail: true,
                    gone: true,
                };
            }
            let pfail = node.pfail || silent[i];
            if !pfail || node.fail {
                return Flags {
                    pfail,
                    fail: node.fail,
                    gone: false,
                };
            }
            if !silent[i] {
                // Flagged before (e.g. across a control-plane restart) but not silent now: wait
                // for the node's own heartbeat to clear it, and do not escalate.
                return Flags {
                    pfail,
                    fail: false,
                    gone: false,
                };
            }
            let witnesses = nodes
                .iter()
                .enumerate()
                .filter(|&(j, other)| {
                    j != i
                        && other.voter
                        && !silent[j]
                        && !other.pfail
                        && !other.fail
                        && other.report.as_ref().is_some_and(|r| {
                            now_ms.saturating_sub(r.received_ms) <= report_window
                                && r.unreachable.contains(&node.id)
                        })
                })
                .count();
            let agreeing = 1 + witnesses;
            Flags {
                pfail,
                fail: agreeing >= needed,
                gone: false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: u64 = 1_000;
    const NOW: u64 = 100_000;

    fn id(n: u8) -> NodeId {
        NodeId::from_random_bytes([n; 20])
    }

    /// A voting master last heard `silent_for` ms ago, reporting `unreachable` (None: no report).
    fn node(n: u8, silent_for: u64, unreachable: Option<&[u8]>) -> NodeView {
        NodeView {
            id: id(n),
            voter: true,
            last_heartbeat_ms: NOW - silent_for,
            pfail: false,
            fail: false,
            report: unreachable.map(|list| PeerReport {
                received_ms: NOW - silent_for,
                unreachable: list.iter().map(|&p| id(p)).collect(),
                refused: Vec::new(),
            }),
            probe: None,
        }
    }

    fn flags(pfail: bool, fail: bool) -> Flags {
        Flags {
            pfail,
            fail,
            gone: false,
        }
    }

    const GONE: Flags = Flags {
        pfail: true,
        fail: true,
        gone: true,
    };

    /// A healthy voter that last reported `ago` ms before NOW, calling `refused` refused.
    fn reporter(n: u8, ago: u64, refused: &[u8]) -> NodeView {
        NodeView {
            report: Some(PeerReport {
                received_ms: NOW - ago,
                unreachable: Vec::new(),
                refused: refused.iter().map(|&p| id(p)).collect(),
            }),
            ..node(n, ago, None)
        }
    }

    /// A node silent for `silent_for` ms whose control-plane probe, sent `probed_ago` ms before
    /// NOW, was `refused` or not.
    fn probed(n: u8, silent_for: u64, probed_ago: u64, refused: bool) -> NodeView {
        NodeView {
            probe: Some(Probe {
                sent_ms: NOW - probed_ago,
                refused,
            }),
            ..node(n, silent_for, None)
        }
    }

    #[test]
    fn process_gone_fast_path() {
        let ok = flags(false, false);
        // (name, nodes, expected flags of node 1)
        let cases: Vec<(&str, Vec<NodeView>, Flags)> = vec![
            (
                "probe and every voter refused: FAIL at once, well before node-timeout",
                vec![
                    probed(1, 400, 50, true),
                    reporter(2, 20, &[1]),
                    reporter(3, 30, &[1]),
                ],
                GONE,
            ),
            (
                "silent too briefly: not yet",
                vec![
                    probed(1, 250, 50, true),
                    reporter(2, 20, &[1]),
                    reporter(3, 30, &[1]),
                ],
                ok,
            ),
            (
                "the control plane's probe timed out (a hung process): no fast path",
                vec![
                    probed(1, 400, 50, false),
                    reporter(2, 20, &[1]),
                    reporter(3, 30, &[1]),
                ],
                ok,
            ),
            (
                "no probe of our own yet",
                vec![
                    node(1, 400, None),
                    reporter(2, 20, &[1]),
                    reporter(3, 30, &[1]),
                ],
                ok,
            ),
            (
                "our probe is older than the last heartbeat",
                vec![
                    probed(1, 400, 500, true),
                    reporter(2, 20, &[1]),
                    reporter(3, 30, &[1]),
                ],
                ok,
            ),
            (
                "our refused probe is stale",
                vec![
                    probed(1, 5_000, PROBE_FRESH_MS + 1, true),
                    reporter(2, 20, &[1]),
                    reporter(3, 30, &[1]),
                ],
                ok,
            ),
            (
                "one voter does not say refused (it times out): wait out the lease",
                vec![
                    probed(1, 400, 50, true),
                    reporter(2, 20, &[1]),
                    reporter(3, 30, &[]),
                ],
                ok,
            ),
            (
                "one voter has not reported since the silence began: wait for it",
                vec![
                    probed(1, 400, 50, true),
                    reporter(2, 20, &[1]),
                    reporter(3, 450, &[1]),
                ],
                ok,
            ),
            (
                "two masters killed at once: the survivor and the control plane are 2 of 3",
                vec![
                    probed(1, 400, 50, true),
                    NodeView {
                        probe: Some(Probe {
                            sent_ms: NOW - 50,
                            refused: true,
                        }),
                        report: Some(PeerReport {
                            received_ms: NOW - 400,
                            unreachable: Vec::new(),
                            refused: Vec::new(),
                        }),
                        ..node(2, 400, None)
                    },
                    reporter(3, 30, &[1, 2]),
                ],
                GONE,
            ),
            (
                "two of five voters refused: not a majority with the control plane alone",
                vec![
                    probed(1, 400, 50, true),
                    node(2, 5_000, None),
                    node(3, 5_000, None),
                    node(4, 5_000, None),
                    reporter(5, 30, &[1]),
                ],
                ok,
            ),
        ];
        for (name, nodes, want) in cases {
            assert_eq!(evaluate(&nodes, NOW, 15_000)[0], want, "{name}");
        }
    }

    #[test]
    fn returning_needs_a_stable_run() {
        let timeout = 1_000;
        let mut run = None;
        let mut stable = Vec::new();
        for t in [0u64, 100, 200, 300, 400, 500, 600] {
            let next = extend_streak(run, 10_000 + t, timeout);
            stable.push(stable_return(&next, timeout));
            run = Some(next);
        }
        // Three beats are needed and they must span node-timeout / 2.
        assert_eq!(stable, [false, false, false, false, false, true, true]);
        // A gap longer than node-timeout / 2 starts the run over.
        let run = extend_streak(run, 10_000 + 600 + 501, timeout);
        assert_eq!(run.beats, 1);
        assert!(!stable_return(&run, timeout));
        // Many quick beats are not enough without the span.
        let mut run = None;
        for t in 0..10u64 {
            run = Some(extend_streak(run, t, timeout));
        }
        assert!(!stable_return(&run.unwrap(), timeout));
    }

    #[test]
    fn suspects_are_overdue_or_named_refused() {
        let nodes = vec![
            node(1, 50, None),
            node(2, 3_001, None),
            reporter(3, 10, &[1]),
            NodeView {
                voter: false,
                ..node(4, 9_000, None)
            },
        ];
        assert_eq!(
            suspects(&nodes, NOW, 15_000),
            [true, true, false, false],
            "node 1 is named refused, node 2 is overdue, a replica is never probed"
        );
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            nodes: Vec<NodeView>,
            want: Vec<Flags>,
        }
        let ok = flags(false, false);
        let cases = vec![
            Case {
                name: "all heartbeating",
                nodes: vec![
                    node(1, 10, Some(&[])),
                    node(2, 10, Some(&[])),
                    node(3, 10, None),
                ],
                want: vec![ok, ok, ok],
            },
            Case {
                name: "silent exactly node-timeout is not yet pfail",
                nodes: vec![node(1, TIMEOUT, None), node(2, 0, None), node(3, 0, None)],
                want: vec![ok, ok, ok],
            },
            Case {
                name: "silent, nobody else agrees: pfail only",
                nodes: vec![
                    node(1, 2_000, None),
                    node(2, 0, Some(&[])),
                    node(3, 0, None),
                ],
                want: vec![flags(true, false), ok, ok],
            },
            Case {
                name: "silent, one surviving master agrees: control plane + 1 = 2 of 3",
                nodes: vec![
                    node(1, 2_000, None),
                    node(2, 0, Some(&[1])),
                    node(3, 0, None),
                ],
                want: vec![flags(true, true), ok, ok],
            },
            Case {
                name: "stale report (older than 2 x node-timeout) does not count",
                nodes: vec![
                    node(1, 5_000, None),
                    NodeView {
                        report: Some(PeerReport {
                            received_ms: NOW - 2 * TIMEOUT - 1,
                            unreachable: vec![id(1)],
                            refused: Vec::new(),
                        }),
                        ..node(2, 0, None)
                    },
                    node(3, 0, None),
                ],
                want: vec![flags(true, false), ok, ok],
            },
            Case {
                name: "a pfail witness does not count",
                nodes: vec![
                    node(1, 5_000, None),
                    NodeView {
                        pfail: true,
                        ..node(2, 0, Some(&[1]))
                    },
                    node(3, 0, None),
                ],
                want: vec![flags(true, false), flags(true, false), ok],
            },
            Case {
                name: "a silent witness does not count, both pfail",
                nodes: vec![
                    node(1, 5_000, Some(&[2])),
                    node(2, 5_000, Some(&[1])),
                    node(3, 0, None),
                ],
                want: vec![flags(true, false), flags(true, false), ok],
            },
            Case {
                name: "a non-voting witness does not count",
                nodes: vec![
                    node(1, 5_000, None),
                    NodeView {
                        voter: false,
                        ..node(2, 0, Some(&[1]))
                    },
                    node(3, 0, None),
                ],
                want: vec![flags(true, false), ok, ok],
            },
            Case {
                name: "five masters need three: control plane + 2 witnesses",
                nodes: vec![
                    node(1, 5_000, None),
                    node(2, 0, Some(&[1])),
                    node(3, 0, Some(&[1])),
                    node(4, 0, Some(&[])),
                    node(5, 0, None),
                ],
                want: vec![flags(true, true), ok, ok, ok, ok],
            },
            Case {
                name: "five masters, one witness is not enough",
                nodes: vec![
                    node(1, 5_000, None),
                    node(2, 0, Some(&[1])),
                    node(3, 0, Some(&[])),
                    node(4, 0, Some(&[])),
                    node(5, 0, None),
                ],
                want: vec![flags(true, false), ok, ok, ok, ok],
            },
            Case {
                name: "fail stays fail while silent",
                nodes: vec![
                    NodeView {
                        pfail: true,
                        fail: true,
                        ..node(1, 5_000, None)
                    },
                    node(2, 0, None),
                    node(3, 0, None),
                ],
                want: vec![flags(true, true), ok, ok],
            },
            Case {
                name: "flags are not cleared by the detector (only by the node speaking)",
                nodes: vec![
                    NodeView {
                        pfail: true,
                        fail: true,
                        ..node(1, 0, None)
                    },
                    NodeView {
                        pfail: true,
                        ..node(2, 0, None)
                    },
                    node(3, 0, Some(&[2])),
                ],
                want: vec![flags(true, true), flags(true, false), ok],
            },
            Case {
                name: "a single master: the control plane alone is a majority",
                nodes: vec![node(1, 5_000, None)],
                want: vec![flags(true, true)],
            },
            Case {
                name: "no nodes",
                nodes: vec![],
                want: vec![],
            },
        ];
        for case in cases {
            assert_eq!(
                evaluate(&case.nodes, NOW, TIMEOUT),
                case.want,
                "{}",
                case.name
            );
        }
    }
}
