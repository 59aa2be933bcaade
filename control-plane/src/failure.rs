//! The failure detector: a pure function from what the control plane knows (last heartbeats, the
//! peers' latest observations) and the current time to each node's PFAIL/FAIL flags. The clock is
//! a parameter, so the rules are table-tested; a background tick in `lib` applies the result.
//!
//! The rules (DESIGN.md, "Failure detection"):
//! - a node with no heartbeat for longer than node-timeout is PFAIL (Redis's `fail?`);
//! - a PFAIL node becomes FAIL when a majority of masters agree. The control plane counts as one
//!   observer; each OTHER voting master that is itself healthy and whose latest report (received
//!   within 2 x node-timeout) calls the node unreachable adds one. Needed: `voters / 2 + 1`, where
//!   voters are the masters owning slots (before creation: every registered master), at least 1;
//! - flags are only cleared by the node itself (a heartbeat), never here: a node
//!   that was FAIL when the control plane restarted stays FAIL until it speaks.

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
}

/// What one node last said about its peers.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    /// Unix ms when the control plane received it.
    pub received_ms: u64,
    /// The peers it could not reach.
    pub unreachable: Vec<NodeId>,
}

/// A node's flags as the detector decides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub pfail: bool,
    pub fail: bool,
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
            let pfail = node.pfail || silent[i];
            if !pfail || node.fail {
                return Flags {
                    pfail,
                    fail: node.fail,
                };
            }
            if !silent[i] {
                // Flagged before (e.g. across a control-plane restart) but not silent now: wait
                // for the node's own heartbeat to clear it, and do not escalate.
                return Flags { pfail, fail: false };
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
            }),
        }
    }

    fn flags(pfail: bool, fail: bool) -> Flags {
        Flags { pfail, fail }
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
