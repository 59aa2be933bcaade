//! The text `clusterctl` prints, in `redis-cli --cluster` shapes, as pure functions of a topology
//! (whose observation carries each node's reported topology version), so the exact lines are
//! unit-tested.

use std::fmt::Write;

use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{NodeSpec, Role, Topology};

use crate::placement::{self, AntiAffinity};

/// redis-cli's slot list: `[0-5460]`, `[7]`, ranges joined with `,`.
pub fn slots_string(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                format!("[{first}]")
            } else {
                format!("[{first}-{last}]")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn slot_count(ranges: &[(u16, u16)]) -> u32 {
    ranges
        .iter()
        .map(|&(first, last)| u32::from(last) - u32::from(first) + 1)
        .sum()
}

/// Indexes of nodes that are masters, in topology order.
fn masters(topology: &Topology) -> impl Iterator<Item = (usize, &NodeSpec)> {
    topology
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.role == Role::Master)
}

/// What redis-cli prints for a node it loaded from the cluster (`clusterManagerNodeInfo`):
/// `M: <id> host:port` or `S: ...`, its slots and flags (`master`/`slave`, plus `fail` or `fail?`
/// when the control plane flagged it), then `replicates <master-id>` for a replica or
/// `N additional replica(s)` for a master that has replicas.
pub fn node_info(topology: &Topology, index: usize) -> String {
    let Some(node) = topology.nodes().get(index) else {
        return String::new();
    };
    let status = topology.status_at(index);
    let ranges = topology.ranges_of(index);
    let mut flags = String::from(match node.role {
        Role::Master => "master",
        Role::Replica => "slave",
    });
    if status.fail {
        flags.push_str(",fail");
    } else if status.pfail {
        flags.push_str(",fail?");
    }
    let letter = if node.role == Role::Master { 'M' } else { 'S' };
    let mut out = format!(
        "{letter}: {} {}\n   slots:{} ({} slots) {flags}\n",
        node.id,
        node.address(),
        slots_string(&ranges),
        slot_count(&ranges)
    );
    match (&node.role, &node.master_id) {
        (Role::Replica, Some(master)) => {
            let _ = writeln!(out, "   replicates {master}");
        }
        _ => {
            let replicas = topology.replicas_of(index).count();
            if replicas > 0 {
                let _ = writeln!(out, "   {replicas} additional replica(s)");
            }
        }
    }
    out
}

/// What redis-cli prints for a node of a plan it has not applied yet: a master with its slots, a
/// replica only with the master it will replicate.
fn planned_node_info(plan: &Topology, index: usize) -> String {
    let Some(node) = plan.nodes().get(index) else {
        return String::new();
    };
    match (&node.role, &node.master_id) {
        (Role::Replica, Some(master)) => format!(
            "S: {} {}\n   replicates {master}\n",
            node.id,
            node.address()
        ),
        _ => {
            let ranges = plan.ranges_of(index);
            format!(
                "M: {} {}\n   slots:{} ({} slots) master\n",
                node.id,
                node.address(),
                slots_string(&ranges),
                slot_count(&ranges)
            )
        }
    }
}

/// What `create` prints before asking, as `redis-cli --cluster create --cluster-replicas N`:
/// the slot allocation, the replica assignments (recomputed with the control plane's own
/// `placement::arrange` over the same hosts), the anti-affinity verdict, then every node in the
/// order given. `given` are the plan's indexes of the nodes, in the operator's order.
pub fn allocation(plan: &Topology, given: &[usize], replicas: usize) -> String {
    let mut out = format!(
        ">>> Performing hash slots allocation on {} nodes...\n",
        given.len()
    );
    let hosts: Vec<&str> = given
        .iter()
        .filter_map(|&i| plan.nodes().get(i))
        .map(|n| n.host.as_str())
        .collect();
    let arrangement = placement::arrange(&hosts, replicas);
    let address = |k: usize| {
        given
            .get(k)
            .and_then(|&i| plan.nodes().get(i))
            .map(NodeSpec::address)
            .unwrap_or_default()
    };
    for (m, &k) in arrangement.masters.iter().enumerate() {
        for (first, last) in plan.ranges_of(given[k]) {
            let _ = writeln!(out, "Master[{m}] -> Slots {first} - {last}");
        }
    }
    for (step, assignment) in arrangement.assigned.iter().enumerate() {
        if arrangement.extra_from == Some(step) {
            out.push_str("Adding extra replicas...\n");
        }
        let _ = writeln!(
            out,
            "Adding replica {} to {}",
            address(assignment.replica),
            address(assignment.master)
        );
    }
    let verdict = match arrangement.anti_affinity {
        AntiAffinity::Untouched => None,
        AntiAffinity::Perfect => Some("[OK] Perfect anti-affinity obtained!"),
        AntiAffinity::ReplicaWithMaster => {
            Some("[WARNING] Some slaves are in the same host as their master")
        }
        AntiAffinity::ReplicasTogether => {
            Some("[WARNING] Some slaves of the same master are in the same host")
        }
    };
    if let Some(verdict) = verdict {
        out.push_str(">>> Trying to optimize slaves allocation for anti-affinity\n");
        let _ = writeln!(out, "{verdict}");
    }
    for &index in given {
        out.push_str(&planned_node_info(plan, index));
    }
    out
}

/// The node a check is "using": the first healthy master owning slots (else the first master).
fn seed(topology: &Topology) -> Option<usize> {
    masters(topology)
        .find(|&(i, _)| !topology.status_at(i).failing() && !topology.ranges_of(i).is_empty())
        .or_else(|| masters(topology).next())
        .map(|(i, _)| i)
}

/// `redis-cli --cluster check`'s first part: per reachable master its keys, slots and replicas;
/// FAIL masters are left out, as redis-cli leaves out nodes it cannot reach.
pub fn summary(topology: &Topology) -> String {
    let mut out = String::new();
    let mut keys = 0u64;
    let mut count = 0u32;
    for (i, node) in masters(topology).filter(|&(i, _)| !topology.status_at(i).fail) {
        let replicas = topology.replicas_of(i).count();
        let key_count = topology.status_at(i).key_count;
        let short: String = node.id.as_str().chars().take(8).collect();
        let _ = writeln!(
            out,
            "{} ({short}...) -> {} keys | {} slots | {replicas} slaves.",
            node.address(),
            key_count,
            slot_count(&topology.ranges_of(i)),
        );
        keys += key_count;
        count += 1;
    }
    let _ = writeln!(out, "[OK] {keys} keys in {count} masters.");
    let _ = writeln!(
        out,
        "{:.2} keys per slot on average.",
        keys as f32 / f32::from(SLOT_COUNT)
    );
    out
}

/// The outcome of the cluster check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub text: String,
    /// False when slots are uncovered or nodes disagree: `clusterctl` then exits 1.
    pub ok: bool,
}

/// Indexes of live nodes whose reported topology version is behind the topology's.
pub fn lagging(topology: &Topology) -> Vec<usize> {
    (0..topology.nodes().len())
        .filter(|&i| {
            let status = topology.status_at(i);
            !status.failing() && status.topology_version < topology.version
        })
        .collect()
}

/// `redis-cli --cluster check`'s second part: the nodes, agreement, open slots, coverage. A slot
/// counts as covered when its master is not FAIL (PFAIL masters still serve).
pub fn cluster_check(topology: &Topology) -> Check {
    let mut out = String::new();
    let mut ok = true;
    let Some(seed) = seed(topology) else {
        out.push_str("[ERR] The cluster has no nodes.\n");
        return Check {
            text: out,
            ok: false,
        };
    };
    let _ = writeln!(
        out,
        ">>> Performing Cluster Check (using node {})",
        topology.nodes()[seed].address()
    );
    out.push_str(&node_info(topology, seed));
    for i in (0..topology.nodes().len()).filter(|&i| i != seed) {
        out.push_str(&node_info(topology, i));
    }
    let behind = lagging(topology);
    if behind.is_empty() {
        out.push_str("[OK] All nodes agree about slots configuration.\n");
    } else {
        ok = false;
        out.push_str("[ERR] Nodes don't agree about configuration!\n");
        for i in behind {
            let _ = writeln!(
                out,
                "[WARNING] Node {} holds topology version {}, the control plane {}.",
                topology.nodes()[i].address(),
                topology.status_at(i).topology_version,
                topology.version
            );
        }
    }
    for (node, _) in topology.members().filter(|(_, status)| status.fail) {
        let _ = writeln!(
            out,
            "[WARNING] Node {} ({}) is in FAIL state.",
            node.address(),
            node.id
        );
    }
    out.push_str(">>> Check for open slots...\n");
    out.push_str(">>> Check slots coverage...\n");
    let covered = (0..SLOT_COUNT)
        .filter(|&slot| {
            topology
                .owner_index(slot)
                .is_some_and(|i| !topology.status_at(i).fail)
        })
        .count();
    if covered == usize::from(SLOT_COUNT) {
        out.push_str("[OK] All 16384 slots covered.\n");
    } else {
        ok = false;
        out.push_str("[ERR] Not all 16384 slots are covered by nodes.\n\n");
    }
    Check { text: out, ok }
}

#[cfg(test)]
mod tests {
    use tessera_proto::topology::{NodeId, NodeSpec};

    use super::*;

    fn node(n: u8, port: u16) -> NodeSpec {
        NodeSpec {
            config_epoch: u64::from(n),
            ..NodeSpec::master(NodeId::from_random_bytes([n * 17; 20]), "127.0.0.1", port)
        }
    }

    /// Three masters with redis-cli's split; built by hand so these tests need no other crate's
    /// code beyond `Topology::ranges_of`/`owner`.
    fn three() -> Topology {
        let mut slots = vec![None; usize::from(SLOT_COUNT)];
        for (i, (first, last)) in crate::placement::split_slots(3).into_iter().enumerate() {
            for slot in first..=last {
                slots[usize::from(slot)] = Some(i as u16);
            }
        }
        let mut t = Topology::created(
            vec![node(1, 7000), node(2, 7001), node(3, 7002)],
            slots.into(),
        );
        t.version = 9;
        // Every node reports the current version and some keys.
        for (status, keys) in t.observed.nodes.iter_mut().zip([1, 0, 2]) {
            status.key_count = keys;
            status.topology_version = 9;
        }
        t
    }

    #[test]
    fn slot_strings() {
        assert_eq!(slots_string(&[(0, 5460)]), "[0-5460]");
        assert_eq!(slots_string(&[(0, 1), (7, 7)]), "[0-1],[7]");
        assert_eq!(slots_string(&[]), "");
    }

    #[test]
    fn allocation_like_redis_cli() {
        let t = three();
        let text = allocation(&t, &[0, 1, 2], 0);
        let id0 = t.nodes()[0].id.to_string();
        assert!(text.starts_with(&format!(
            ">>> Performing hash slots allocation on 3 nodes...\n\
             Master[0] -> Slots 0 - 5460\n\
             Master[1] -> Slots 5461 - 10922\n\
             Master[2] -> Slots 10923 - 16383\n\
             M: {id0} 127.0.0.1:7000\n   slots:[0-5460] (5461 slots) master\n"
        )));
        assert!(text.ends_with("   slots:[10923-16383] (5461 slots) master\n"));
    }

    #[test]
    fn summary_like_redis_cli() {
        let t = three();
        let short: String = t.nodes()[0].id.as_str().chars().take(8).collect();
        let text = summary(&t);
        assert!(text.starts_with(&format!(
            "127.0.0.1:7000 ({short}...) -> 1 keys | 5461 slots | 0 slaves.\n"
        )));
        assert!(text.ends_with("[OK] 3 keys in 3 masters.\n0.00 keys per slot on average.\n"));
    }

    #[test]
    fn healthy_check() {
        let t = three();
        let check = cluster_check(&t);
        assert!(check.ok);
        assert!(check
            .text
            .starts_with(">>> Performing Cluster Check (using node 127.0.0.1:7000)\nM: "));
        assert!(check.text.ends_with(
            "[OK] All nodes agree about slots configuration.\n\
             >>> Check for open slots...\n\
             >>> Check slots coverage...\n\
             [OK] All 16384 slots covered.\n"
        ));
    }

    #[test]
    fn failed_master_uncovers_its_slots() {
        let mut t = three();
        t.observed.nodes[0].pfail = true;
        t.observed.nodes[0].fail = true;
        let check = cluster_check(&t);
        assert!(!check.ok);
        assert!(check.text.contains("(using node 127.0.0.1:7001)"));
        assert!(check.text.contains("(5461 slots) master,fail\n"));
        assert!(check.text.contains("is in FAIL state."));
        assert!(check
            .text
            .ends_with("[ERR] Not all 16384 slots are covered by nodes.\n\n"));
        assert!(summary(&t).contains("[OK] 2 keys in 2 masters."));
    }

    #[test]
    fn lagging_node_disagrees() {
        let mut t = three();
        t.observed.nodes[2].topology_version = 3;
        let check = cluster_check(&t);
        assert!(!check.ok);
        assert!(check
            .text
            .contains("[ERR] Nodes don't agree about configuration!\n"));
    }

    /// `three()` plus replicas at 7003-7005 laid out as placement does for one host: 7004 follows
    /// 7000, 7005 follows 7001, 7003 follows 7002.
    fn six() -> Topology {
        let mut t = three();
        for (n, port, master) in [(4u8, 7003u16, 2usize), (5, 7004, 0), (6, 7005, 1)] {
            let master_id = t.nodes()[master].id.clone();
            let i = t.push_node(NodeSpec {
                role: Role::Replica,
                master_id: Some(master_id),
                ..node(n, port)
            });
            t.observed.nodes[i].topology_version = 9;
        }
        t
    }

    #[test]
    fn allocation_with_replicas_like_redis_cli() {
        let t = six();
        let ids: Vec<String> = t.nodes().iter().map(|n| n.id.to_string()).collect();
        // What redis-cli 7.0.15 printed for six nodes on one host (colours aside), with our ids.
        let want = format!(
            ">>> Performing hash slots allocation on 6 nodes...\n\
             Master[0] -> Slots 0 - 5460\n\
             Master[1] -> Slots 5461 - 10922\n\
             Master[2] -> Slots 10923 - 16383\n\
             Adding replica 127.0.0.1:7004 to 127.0.0.1:7000\n\
             Adding replica 127.0.0.1:7005 to 127.0.0.1:7001\n\
             Adding replica 127.0.0.1:7003 to 127.0.0.1:7002\n\
             >>> Trying to optimize slaves allocation for anti-affinity\n\
             [WARNING] Some slaves are in the same host as their master\n\
             M: {} 127.0.0.1:7000\n   slots:[0-5460] (5461 slots) master\n\
             M: {} 127.0.0.1:7001\n   slots:[5461-10922] (5462 slots) master\n\
             M: {} 127.0.0.1:7002\n   slots:[10923-16383] (5461 slots) master\n\
             S: {} 127.0.0.1:7003\n   replicates {}\n\
             S: {} 127.0.0.1:7004\n   replicates {}\n\
             S: {} 127.0.0.1:7005\n   replicates {}\n",
            ids[0], ids[1], ids[2], ids[3], ids[2], ids[4], ids[0], ids[5], ids[1]
        );
        assert_eq!(allocation(&t, &[0, 1, 2, 3, 4, 5], 1), want);
    }

    #[test]
    fn check_lists_replicas_with_s_lines() {
        let t = six();
        let ids: Vec<String> = t.nodes().iter().map(|n| n.id.to_string()).collect();
        let check = cluster_check(&t);
        assert!(check.ok, "{}", check.text);
        assert!(check.text.contains(&format!(
            "M: {} 127.0.0.1:7000\n   slots:[0-5460] (5461 slots) master\n   1 additional replica(s)\n",
            ids[0]
        )));
        assert!(check.text.contains(&format!(
            "S: {} 127.0.0.1:7004\n   slots: (0 slots) slave\n   replicates {}\n",
            ids[4], ids[0]
        )));
        let short: String = ids[0].chars().take(8).collect();
        assert!(summary(&t).starts_with(&format!(
            "127.0.0.1:7000 ({short}...) -> 1 keys | 5461 slots | 1 slaves.\n"
        )));
        // A FAIL replica is shown flagged; the slots stay covered.
        let mut t = t;
        t.observed.nodes[4].pfail = true;
        t.observed.nodes[4].fail = true;
        let check = cluster_check(&t);
        assert!(check.text.contains("   slots: (0 slots) slave,fail\n"));
        assert!(check.text.ends_with("[OK] All 16384 slots covered.\n"));
    }
}
