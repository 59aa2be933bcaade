//! Failover decisions: which replica takes over which master's slots, and when fencing allows it.
//! Pure functions over a topology snapshot, the control plane's lease bookkeeping and the clock,
//! table-tested as `failure` is; `state` applies the verdict in one topology transition.
//!
//! # Fencing: a slot never has two masters taking writes
//!
//! A master takes a write only while it holds a write lease. The node renews its lease when a
//! heartbeat answer says `lease_granted`, counting node-timeout from the moment that heartbeat
//! LEFT the node (`s`), on its monotonic clock. The control plane grants only to a node that is
//! not being failed over and holds every version that took some of its authority away (its role,
//! a slot it serves, the node-timeout: `state::Authority`), and records the grant at the time it
//! answers (`g`, on its own monotonic clock): `g >= s` always, since the request left before it
//! arrived. The node's lease therefore ends at `s + node-timeout <= g + node-timeout`.
//!
//! The control plane stops granting a master's lease from the moment the master is PFAIL or
//! FAIL, named in a handover, or the subject of a FORCE/TAKEOVER request, and promotes one of its
//! replicas only at `g + node-timeout + margin` (`lease_expiry_ms`). The margin is node-timeout /
//! 100 + 300 ms: the monotonic clocks of two Linux machines run at rates at most 0.05 % apart
//! (the kernel slews by at most 500 ppm), so 1 % covers drift twenty times over, and 300 ms the
//! time between a write's lease check and its apply on a loaded machine. It is kept small because
//! it is part of every hung master's failover time (target: node-timeout + 1 s). From then on the old master takes no write; the promoted replica
//! takes writes only once it holds the new topology and has its own lease.
//!
//! Exceptions, each with its own argument:
//! - the old master's process is gone (`failure`'s `gone`: its port refuses connections for the
//!   control plane and every voting peer): a process that does not exist does not write, so the
//!   replica is promoted at once. A node closes its port only after it has stopped taking writes,
//!   and a restarted process registers (recorded as a grant, so the fast path no longer applies)
//!   and takes no write before its role is confirmed;
//! - a manual failover (DEFAULT): the master itself reported holding the topology that names it
//!   in the handover, and a master named there takes no write; its offset in that heartbeat is
//!   final, and the replica is promoted once it has reached it, so no acknowledged write is lost.
//!
//! A control plane that restarts knows none of its grants: it treats every node as granted at
//! the moment it loaded its state (`ClusterState::from_persisted`), which is after any grant its
//! previous life made.

use std::time::Duration;

use tessera_proto::topology::{Intent, NodeId, Role, Topology};

/// How long a manual failover may take before its handover is withdrawn: Redis's
/// CLUSTER_MF_TIMEOUT.
pub const MANUAL_TIMEOUT: Duration = Duration::from_millis(5_000);

/// What the control plane knows of one node's lease, beside the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// Monotonic ms of the last grant (or registration, or the control plane's start).
    pub granted_ms: u64,
    /// The node's process is known to be gone (`failure`'s rule, evaluated now).
    pub gone: bool,
}

/// The latest moment the node's lease granted at `granted_ms` can still be running, margin
/// included.
pub fn lease_expiry_ms(granted_ms: u64, node_timeout_ms: u64) -> u64 {
    granted_ms
        .saturating_add(node_timeout_ms)
        .saturating_add(node_timeout_ms / 100 + 300)
}

/// Whether a replica of the node with `lease` may be promoted at `now_ms`.
pub fn fenced(lease: &Lease, now_ms: u64, node_timeout_ms: u64) -> bool {
    lease.gone || now_ms >= lease_expiry_ms(lease.granted_ms, node_timeout_ms)
}

/// Why a replica is promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its master is FAIL.
    Automatic,
    /// CLUSTER FAILOVER FORCE / TAKEOVER.
    Forced,
    /// CLUSTER FAILOVER: the handover completed.
    Manual,
}

/// One promotion: indexes into the intent's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promotion {
    pub master: usize,
    pub replica: usize,
    pub reason: Reason,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub promotions: Vec<Promotion>,
    /// The manual failover did not complete in time: drop the handover, the master writes again.
    pub withdraw_handover: bool,
}

/// The replica of `master` to promote: among those neither PFAIL nor FAIL, the one with the
/// highest replication offset; ties go to the lowest id, so every decision is deterministic.
pub fn best_replica(topology: &Topology, master: usize) -> Option<usize> {
    topology
        .replicas_of(master)
        .filter(|&r| !topology.status_at(r).failing())
        .max_by(|&a, &b| {
            let offset = |i: usize| topology.status_at(i).replication_offset;
            offset(a).cmp(&offset(b)).then_with(|| {
                topology.intent.nodes[b]
                    .id
                    .cmp(&topology.intent.nodes[a].id)
            })
        })
}

/// Whether the node at `index` owns at least one slot.
fn owns_slots(topology: &Topology, index: usize) -> bool {
    topology
        .intent
        .slots
        .iter()
        .flatten()
        .any(|&o| usize::from(o) == index)
}

/// The promotions due at `now_ms`.
///
/// - every FAIL master owning slots with a healthy replica: its `best_replica`, once fenced;
/// - every pending FORCE/TAKEOVER request (`forced`, replica ids): that replica, once its
///   master is fenced (a request whose node is no longer a replica is skipped);
/// - the handover, once the master reported holding `handover_version` (or newer) and the
///   replica's offset reached the master's; or withdrawn once `MANUAL_TIMEOUT` has passed since
///   it started (`handover_started_ms`, on the same clock as `now_ms`).
///
/// A master is promoted away at most once per decision; an operator's request goes first.
pub fn decide(
    topology: &Topology,
    leases: &[Lease],
    forced: &[NodeId],
    handover_version: u64,
    handover_started_ms: u64,
    now_ms: u64,
) -> Decision {
    let timeout = topology.settings().node_timeout_ms;
    let lease = |i: usize| leases.get(i).copied().unwrap_or_default();
    let mut decision = Decision::default();
    let taken = |decision: &mut Decision, promotion: Promotion| {
        if !decision
            .promotions
            .iter()
            .any(|p| p.master == promotion.master || p.replica == promotion.replica)
        {
            decision.promotions.push(promotion);
        }
    };
    if let Some(handover) = &topology.intent.handover {
        if let (Some(master), Some(replica)) = (
            topology.index_of(&handover.master),
            topology.index_of(&handover.replica),
        ) {
            let m = topology.status_at(master);
            let r = topology.status_at(replica);
            if m.topology_version >= handover_version
                && r.replication_offset >= m.replication_offset
                && !r.failing()
            {
                taken(
                    &mut decision,
                    Promotion {
                        master,
                        replica,
                        reason: Reason::Manual,
                    },
                );
            } else if now_ms
                >= handover_started_ms.saturating_add(MANUAL_TIMEOUT.as_millis() as u64)
            {
                decision.withdraw_handover = true;
            }
        } else {
            decision.withdraw_handover = true;
        }
    }
    for id in forced {
        let Some(replica) = topology.index_of(id) else {
            continue;
        };
        let node = &topology.intent.nodes[replica];
        let master = match (&node.role, &node.master_id) {
            (Role::Replica, Some(master)) => topology.index_of(master),
            _ => None,
        };
        if let Some(master) = master.filter(|&m| fenced(&lease(m), now_ms, timeout)) {
            taken(
                &mut decision,
                Promotion {
                    master,
                    replica,
                    reason: Reason::Forced,
                },
            );
        }
    }
    for (master, node) in topology.nodes().iter().enumerate() {
        if node.role != Role::Master
            || !topology.status_at(master).fail
            || !owns_slots(topology, master)
            || !fenced(&lease(master), now_ms, timeout)
        {
            continue;
        }
        if let Some(replica) = best_replica(topology, master) {
            taken(
                &mut decision,
                Promotion {
                    master,
                    replica,
                    reason: Reason::Automatic,
                },
            );
        }
    }
    decision
}

/// Applies one promotion to `intent`: the replica becomes master of every slot (and slot move)
/// of its old master with a config epoch above every other (current epoch + 1); the old master
/// becomes its replica (when it returns it follows the new master and drops what the new master
/// never got), as do the old master's other replicas; a handover of that master ends. The slots
/// never pass through "unowned".
pub fn promote(intent: &mut Intent, master: usize, replica: usize) {
    let (Some(old), Some(new)) = (
        intent.nodes.get(master).map(|n| n.id.clone()),
        intent.nodes.get(replica).map(|n| n.id.clone()),
    ) else {
        return;
    };
    let (m, r) = (master as u16, replica as u16);
    for owner in intent.slots.iter_mut().flatten() {
        if *owner == m {
            *owner = r;
        }
    }
    for migration in &mut intent.migrations {
        if migration.source == m {
            migration.source = r;
        }
        if migration.target == m {
            migration.target = r;
        }
    }
    intent.migrations.retain(|mig| mig.source != mig.target);
    intent.current_epoch += 1;
    for (i, node) in intent.nodes.iter_mut().enumerate() {
        if i == replica {
            node.role = Role::Master;
            node.master_id = None;
            node.config_epoch = intent.current_epoch;
        } else if i == master || node.master_id.as_ref() == Some(&old) {
            node.role = Role::Replica;
            node.master_id = Some(new.clone());
        }
    }
    if intent
        .handover
        .as_ref()
        .is_some_and(|h| h.master == old || h.replica == new)
    {
        intent.handover = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::topology::{Handover, NodeSpec};

    const TIMEOUT: u64 = 1_000;
    /// lease_expiry_ms(0, TIMEOUT): node-timeout + 1 % + 300 ms.
    const EXPIRY: u64 = 1_310;

    fn id(n: u8) -> NodeId {
        NodeId::from_random_bytes([n; 20])
    }

    /// Three masters (nodes 0, 1, 2 with redis-cli's split), then one replica of master 0 per
    /// entry of `offsets` (nodes 3, 4, ...), ids ascending with the index.
    fn cluster(offsets: &[u64]) -> Topology {
        let masters = (0..3u8)
            .map(|n| NodeSpec {
                config_epoch: u64::from(n) + 1,
                ..NodeSpec::master(id(n), "127.0.0.1", 7000 + u16::from(n))
            })
            .collect();
        let mut slots = vec![Some(0u16); 16384];
        slots[5461..=10922].fill(Some(1));
        slots[10923..].fill(Some(2));
        let mut t = Topology::created(masters, slots.into());
        t.intent.settings.node_timeout_ms = TIMEOUT;
        for (k, &offset) in offsets.iter().enumerate() {
            let n = 3 + k as u8;
            let r = t.push_node(NodeSpec {
                role: Role::Replica,
                master_id: Some(id(0)),
                ..NodeSpec::master(id(n), "127.0.0.1", 7000 + u16::from(n))
            });
            t.observed.nodes[r].replication_offset = offset;
        }
        t
    }

    fn fail(t: &mut Topology, i: usize) {
        t.observed.nodes[i].pfail = true;
        t.observed.nodes[i].fail = true;
    }

    fn leases(t: &Topology, granted_ms: u64) -> Vec<Lease> {
        vec![
            Lease {
                granted_ms,
                gone: false
            };
            t.nodes().len()
        ]
    }

    fn auto(master: usize, replica: usize) -> Promotion {
        Promotion {
            master,
            replica,
            reason: Reason::Automatic,
        }
    }

    #[test]
    fn who_is_promoted_and_when() {
        type Setup = fn(&mut Topology, &mut Vec<Lease>);
        // (name, replica offsets, setup, now, expected promotions)
        type Case = (&'static str, Vec<u64>, Setup, u64, Vec<Promotion>);
        let cases: Vec<Case> = vec![
            ("healthy cluster", vec![5], |_, _| {}, 10_000, vec![]),
            (
                "FAIL master, lease run out: highest offset wins",
                vec![5, 9, 7],
                |t, _| fail(t, 0),
                EXPIRY,
                vec![auto(0, 4)],
            ),
            (
                "lease not yet run out (1 ms before the margin ends): wait",
                vec![5],
                |t, _| fail(t, 0),
                EXPIRY - 1,
                vec![],
            ),
            (
                "process gone: promote at once",
                vec![5],
                |t, l| {
                    fail(t, 0);
                    l[0].gone = true;
                },
                10,
                vec![auto(0, 3)],
            ),
            (
                "tie on offset: lowest id",
                vec![7, 7],
                |t, _| fail(t, 0),
                EXPIRY,
                vec![auto(0, 3)],
            ),
            (
                "PFAIL and FAIL replicas are skipped",
                vec![9, 8, 1],
                |t, _| {
                    fail(t, 0);
                    t.observed.nodes[3].pfail = true;
                    fail(t, 4);
                },
                EXPIRY,
                vec![auto(0, 5)],
            ),
            (
                "no healthy replica: nothing to do",
                vec![9],
                |t, _| {
                    fail(t, 0);
                    t.observed.nodes[3].pfail = true;
                },
                EXPIRY,
                vec![],
            ),
            (
                "PFAIL only: no failover",
                vec![9],
                |t, _| t.observed.nodes[0].pfail = true,
                EXPIRY,
                vec![],
            ),
            (
                "a FAIL master without slots is not failed over",
                vec![9],
                |t, _| {
                    fail(t, 0);
                    t.intent.slots.fill(Some(1));
                },
                EXPIRY,
                vec![],
            ),
            (
                "two masters FAIL at once: both fail over",
                vec![4],
                |t, _| {
                    let r = t.push_node(NodeSpec {
                        role: Role::Replica,
                        master_id: Some(id(1)),
                        ..NodeSpec::master(id(9), "127.0.0.1", 7009)
                    });
                    t.observed.nodes[r].replication_offset = 1;
                    fail(t, 0);
                    fail(t, 1);
                },
                EXPIRY,
                vec![auto(0, 3), auto(1, 4)],
            ),
            (
                "a later grant moves the wait",
                vec![9],
                |t, l| {
                    fail(t, 0);
                    l[0].granted_ms = 500;
                },
                EXPIRY,
                vec![],
            ),
        ];
        for (name, offsets, setup, now, want) in cases {
            let mut t = cluster(&offsets);
            let mut l = leases(&t, 0);
            setup(&mut t, &mut l);
            assert_eq!(decide(&t, &l, &[], 0, 0, now).promotions, want, "{name}");
        }
    }

    #[test]
    fn forced_waits_for_the_lease_unless_gone() {
        let t = cluster(&[1, 2]);
        let mut l = leases(&t, 0);
        let forced = [id(3)];
        assert!(decide(&t, &l, &forced, 0, 0, EXPIRY - 1)
            .promotions
            .is_empty());
        assert_eq!(
            decide(&t, &l, &forced, 0, 0, EXPIRY).promotions,
            vec![Promotion {
                master: 0,
                replica: 3,
                reason: Reason::Forced
            }],
            "the operator's replica, not the highest offset"
        );
        l[0].gone = true;
        assert_eq!(decide(&t, &l, &forced, 0, 0, 1).promotions.len(), 1);
        // A request naming a master is ignored.
        assert!(decide(&t, &l, &[id(1)], 0, 0, EXPIRY).promotions.is_empty());
    }

    #[test]
    fn manual_handshake() {
        let mut t = cluster(&[1]);
        t.intent.handover = Some(Handover {
            master: id(0),
            replica: id(3),
            started_ms: 100,
        });
        let l = leases(&t, 0);
        let manual = vec![Promotion {
            master: 0,
            replica: 3,
            reason: Reason::Manual,
        }];
        // (master holds version, master offset, replica offset, now) -> (promoted, withdrawn)
        let cases = [
            (6, 50, 50, 200, (false, false)), // master has not taken the handover yet
            (7, 50, 49, 200, (false, false)), // replica behind
            (7, 50, 50, 200, (true, false)),  // caught up: promote, no lease wait
            (8, 50, 60, 200, (true, false)),
            (7, 50, 49, 5_100, (false, true)), // timed out: withdraw
            (7, 50, 50, 9_000, (true, false)), // caught up wins over the timeout
        ];
        for (i, (holds, m_offset, r_offset, now, want)) in cases.into_iter().enumerate() {
            t.observed.nodes[0].topology_version = holds;
            t.observed.nodes[0].replication_offset = m_offset;
            t.observed.nodes[3].replication_offset = r_offset;
            let d = decide(&t, &l, &[], 7, 100, now);
            assert_eq!(
                (d.promotions == manual, d.withdraw_handover),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn promotion_is_one_transition() {
        let mut t = cluster(&[1, 2]);
        t.intent.handover = Some(Handover {
            master: id(0),
            replica: id(4),
            started_ms: 1,
        });
        t.intent.migrations = vec![tessera_proto::topology::SlotMigration {
            slot: 3,
            source: 0,
            target: 1,
            by_client: false,
        }];
        promote(&mut t.intent, 0, 4);
        assert_eq!(t.intent.current_epoch, 4);
        let new = &t.intent.nodes[4];
        assert_eq!(
            (new.role, new.master_id.as_ref(), new.config_epoch),
            (Role::Master, None, 4)
        );
        for old in [0, 3] {
            let n = &t.intent.nodes[old];
            assert_eq!(
                (n.role, n.master_id.as_ref()),
                (Role::Replica, Some(&id(4)))
            );
        }
        assert_eq!(t.ranges_of(4), vec![(0, 5460)]);
        assert!(t.ranges_of(0).is_empty());
        assert_eq!(t.intent.migrations[0].source, 4);
        assert_eq!(t.intent.handover, None);
        assert!(t.intent.slots.iter().all(Option::is_some));
    }

    #[test]
    fn lease_expiry_has_a_margin() {
        assert_eq!(lease_expiry_ms(1_000, 15_000), 1_000 + 15_000 + 150 + 300);
        assert!(!fenced(&Lease::default(), 1_814, 1_500));
        assert!(fenced(&Lease::default(), 1_815, 1_500));
    }
}
