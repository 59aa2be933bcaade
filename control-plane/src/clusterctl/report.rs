//! The text `clusterctl` prints, in `redis-cli --cluster` shapes, as pure functions of a topology
//! (and each node's reported topology version), so the exact lines are unit-tested.

use std::collections::HashMap;
use std::fmt::Write;

use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{Node, Role, Topology};

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
fn masters(topology: &Topology) -> impl Iterator<Item = (usize, &Node)> {
    topology
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.role == Role::Master)
}

/// The two lines redis-cli prints per master: `M: <id> host:port` and its slots; the flags say
/// `master`, plus `fail` or `fail?` when the control plane flagged it.
pub fn node_info(topology: &Topology, index: usize) -> String {
    let Some(node) = topology.nodes.get(index) else {
        return String::new();
    };
    let ranges = topology.ranges_of(index);
    let mut flags = String::from(match node.role {
        Role::Master => "master",
        Role::Replica => "slave",
    });
    if node.fail {
        flags.push_str(",fail");
    } else if node.pfail {
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
        .find(|(i, n)| !n.fail && !n.pfail && !topology.ranges_of(*i).is_empty())
        .or_else(|| masters(topology).next())
        .map(|(i, _)| i)
}

/// `redis-cli --cluster check`'s first part: per reachable master its keys, slots and replicas;
/// FAIL masters are left out, as redis-cli leaves out nodes it cannot reach.
pub fn summary(topology: &Topology) -> String {
    let mut out = String::new();
    let mut keys = 0u64;
    let mut count = 0u32;
    for (i, node) in masters(topology).filter(|(_, n)| !n.fail) {
        let replicas = topology
            .nodes
            .iter()
            .filter(|r| r.master_id.as_ref() == Some(&node.id))
            .count();
        let short: String = node.id.as_str().chars().take(8).collect();
        let _ = writeln!(
            out,
            "{} ({short}...) -> {} keys | {} slots | {replicas} slaves.",
            node.address(),
            node.key_count,
            slot_count(&topology.ranges_of(i)),
        );
        keys += node.key_count;
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

/// Live masters whose reported topology version is behind the topology's.
pub fn lagging<'a>(topology: &'a Topology, reported: &HashMap<String, u64>) -> Vec<&'a Node> {
    topology
        .nodes
        .iter()
        .filter(|n| !n.fail && !n.pfail)
        .filter(|n| reported.get(n.id.as_str()).copied().unwrap_or(0) < topology.version)
        .collect()
}

/// `redis-cli --cluster check`'s second part: the nodes, agreement, open slots, coverage. A slot
/// counts as covered when its master is not FAIL (PFAIL masters still serve).
pub fn cluster_check(topology: &Topology, reported: &HashMap<String, u64>) -> Check {
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
        topology.nodes[seed].address()
    );
    out.push_str(&node_info(topology, seed));
    for i in (0..topology.nodes.len()).filter(|&i| i != seed) {
        out.push_str(&node_info(topology, i));
    }
    let behind = lagging(topology, reported);
    if behind.is_empty() {
        out.push_str("[OK] All nodes agree about slots configuration.\n");
    } else {
        ok = false;
        out.push_str("[ERR] Nodes don't agree about configuration!\n");
        for node in behind {
            let _ = writeln!(
                out,
                "[WARNING] Node {} holds topology version {}, the control plane {}.",
                node.address(),
                reported.get(node.id.as_str()).copied().unwrap_or(0),
                topology.version
            );
        }
    }
    for node in topology.nodes.iter().filter(|n| n.fail) {
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
        .filter(|&slot| topology.owner(slot).is_some_and(|n| !n.fail))
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
    use tessera_proto::topology::{NodeId, Settings};

    use super::*;

    fn node(n: u8, port: u16, keys: u64) -> Node {
        Node {
            id: NodeId::from_random_bytes([n * 17; 20]),
            host: "127.0.0.1".into(),
            port,
            bus_port: port + 10000,
            role: Role::Master,
            master_id: None,
            config_epoch: u64::from(n),
            pfail: false,
            fail: false,
            last_heartbeat_ms: 0,
            ping_sent_ms: 0,
            key_count: keys,
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
        Topology {
            version: 9,
            current_epoch: 3,
            nodes: vec![node(1, 7000, 1), node(2, 7001, 0), node(3, 7002, 2)],
            slots: slots.into_boxed_slice(),
            settings: Settings::default(),
            created: true,
        }
    }

    fn all_current(topology: &Topology) -> HashMap<String, u64> {
        topology
            .nodes
            .iter()
            .map(|n| (n.id.to_string(), topology.version))
            .collect()
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
        let id0 = t.nodes[0].id.to_string();
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
        let short: String = t.nodes[0].id.as_str().chars().take(8).collect();
        let text = summary(&t);
        assert!(text.starts_with(&format!(
            "127.0.0.1:7000 ({short}...) -> 1 keys | 5461 slots | 0 slaves.\n"
        )));
        assert!(text.ends_with("[OK] 3 keys in 3 masters.\n0.00 keys per slot on average.\n"));
    }

    #[test]
    fn healthy_check() {
        let t = three();
        let check = cluster_check(&t, &all_current(&t));
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
        t.nodes[0].pfail = true;
        t.nodes[0].fail = true;
        let check = cluster_check(&t, &all_current(&t));
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
        let t = three();
        let mut reported = all_current(&t);
        reported.insert(t.nodes[2].id.to_string(), 3);
        let check = cluster_check(&t, &reported);
        assert!(!check.ok);
        assert!(check
            .text
            .contains("[ERR] Nodes don't agree about configuration!\n"));
    }
}
