//! The text `clusterctl` prints, in `redis-cli --cluster` shapes, as pure functions of a topology
//! (whose observation carries each node's reported topology version), so the exact lines are
//! unit-tested.

use std::fmt::Write;

use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{NodeSpec, Role, Topology};

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

/// The two lines redis-cli prints per master: `M: <id> host:port` and its slots; the flags say
/// `master`, plus `fail` or `fail?` when the control plane flagged it.
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
    format!(
        "{letter}: {} {}\n   slots:{} ({} slots) {flags}\n",
        node.id,
        node.address(),
        slots_string(&ranges),
        slot_count(&ranges)
    )
}

/// What `create` prints before asking: the allocation, then each master's lines.
/// `masters` are the indexes, in the order the operator gave the addresses.
pub fn allocation(plan: &Topology, masters: &[usize]) -> String {
    let mut out = format!(
        ">>> Performing hash slots allocation on {} nodes...\n",
        masters.len()
    );
    for (i, &index) in masters.iter().enumerate() {
        for (first, last) in plan.ranges_of(index) {
            let _ = writeln!(out, "Master[{i}] -> Slots {first} - {last}");
        }
    }
    for &index in masters {
        out.push_str(&node_info(plan, index));
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
        let text = allocation(&t, &[0, 1, 2]);
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
}
