//! Placement: how `CreateCluster` picks the masters among the given nodes, splits the 16384 slots
//! over them and gives each its replicas, as `redis-cli --cluster create --cluster-replicas N`
//! does (its `clusterManagerCommandCreate`), so an operator sees the layout Redis would have
//! chosen.
//!
//! One deliberate difference: where redis-cli then tries to improve anti-affinity by swapping
//! replicas at random (so two runs on one host give different layouts, and the layout differs from
//! the "Adding replica" lines it printed), we swap deterministically and only when a swap makes the
//! layout strictly better. On one host no swap can, so the layout is exactly the one printed.

use std::collections::HashMap;

use tessera_proto::slot::SLOT_COUNT;

/// The inclusive slot range each of `masters` masters gets, in order.
///
/// redis-cli's rule, float arithmetic and rounding included: each master gets
/// `round(cursor + 16384 / masters - 1)` as its last slot, the last master gets everything left.
pub fn split_slots(masters: usize) -> Vec<(u16, u16)> {
    let total = f64::from(SLOT_COUNT);
    let per_node = total / masters.max(1) as f64;
    let mut cursor = 0.0_f64;
    let mut first: i64 = 0;
    let mut ranges = Vec::with_capacity(masters);
    for i in 0..masters {
        // `f64::round` rounds half away from zero, as C's lround does.
        let mut last = (cursor + per_node - 1.0).round() as i64;
        if last > i64::from(SLOT_COUNT) || i == masters - 1 {
            last = i64::from(SLOT_COUNT) - 1;
        }
        if last < first {
            last = first;
        }
        let clamp = |slot: i64| slot.clamp(0, i64::from(SLOT_COUNT) - 1) as u16;
        ranges.push((clamp(first), clamp(last)));
        first = last + 1;
        cursor += per_node;
    }
    ranges
}

/// One "Adding replica R to M" step, as indexes into the nodes given to `arrange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub replica: usize,
    pub master: usize,
}

/// How anti-affinity came out, for the lines redis-cli prints after the assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AntiAffinity {
    /// No replica shared a host with its master or a sibling to begin with: nothing printed.
    Untouched,
    /// Optimized to none left: `[OK] Perfect anti-affinity obtained!`.
    Perfect,
    /// `[WARNING] Some slaves are in the same host as their master`.
    ReplicaWithMaster,
    /// `[WARNING] Some slaves of the same master are in the same host`.
    ReplicasTogether,
}

/// The layout of a new cluster, as indexes into the nodes given to `arrange`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrangement {
    /// The masters, in the order they get `split_slots` ranges.
    pub masters: Vec<usize>,
    /// The replica assignments in the order redis-cli makes (and prints) them.
    pub assigned: Vec<Assignment>,
    /// Where in `assigned` the extra pass begins (redis-cli prints `Adding extra replicas...`
    /// before it), when it ran: the nodes left over after every master got `replicas`.
    pub extra_from: Option<usize>,
    /// For each node, the master it finally replicates (after the anti-affinity swaps); `None`
    /// for masters, and for left-over nodes redis-cli leaves as masters without slots.
    pub master_of: Vec<Option<usize>>,
    pub anti_affinity: AntiAffinity,
}

/// Lays out `hosts.len()` nodes (`hosts[i]` is node i's host) with `replicas` replicas per master,
/// as redis-cli: the nodes are interleaved by host (one per host in turn, hosts in order of first
/// appearance), the first `len / (replicas + 1)` of that order become masters; the rest, rotated
/// by one, are handed out master by master, each taking the first node on another host than its
/// master's (else the first left); nodes still left then go one per master ("extra replicas").
pub fn arrange(hosts: &[&str], replicas: usize) -> Arrangement {
    let count = hosts.len();
    let masters_count = count / (replicas + 1);
    // Nodes grouped by host, hosts in order of first appearance.
    let mut groups: Vec<(&str, std::collections::VecDeque<usize>)> = Vec::new();
    for (i, &host) in hosts.iter().enumerate() {
        match groups.iter_mut().find(|(h, _)| *h == host) {
            Some((_, nodes)) => nodes.push_back(i),
            None => groups.push((host, [i].into())),
        }
    }
    let mut interleaved = Vec::with_capacity(count);
    while interleaved.len() < count {
        for (_, nodes) in &mut groups {
            if let Some(node) = nodes.pop_front() {
                interleaved.push(node);
            }
        }
    }
    let masters: Vec<usize> = interleaved[..masters_count.min(count)].to_vec();
    let mut left: Vec<usize> = interleaved[masters.len()..].to_vec();
    if !left.is_empty() {
        // "Rotating the list sometimes helps to get better initial anti-affinity."
        left.rotate_left(1);
    }
    let mut master_of: Vec<Option<usize>> = vec![None; count];
    let mut assigned = Vec::new();
    let mut extra_from = None;
    for extra in [false, true] {
        if extra {
            if left.is_empty() {
                break;
            }
            extra_from = Some(assigned.len());
        }
        for &master in &masters {
            let wanted = if extra { 1 } else { replicas };
            for _ in 0..wanted {
                let Some(pick) = left
                    .iter()
                    .position(|&n| hosts[n] != hosts[master])
                    .or((!left.is_empty()).then_some(0))
                else {
                    break;
                };
                let replica = left.remove(pick);
                master_of[replica] = Some(master);
                assigned.push(Assignment { replica, master });
            }
        }
    }
    let anti_affinity = improve_anti_affinity(hosts, &mut master_of);
    Arrangement {
        masters,
        assigned,
        extra_from,
        master_of,
        anti_affinity,
    }
}

/// redis-cli's anti-affinity score: per host, per master, the master and its replicas there; a
/// group with the master counts 10000 per replica beside it, a group of replicas alone 1 per
/// replica. Also returns one offending replica per offending group (the first in node order).
fn anti_affinity_score(hosts: &[&str], master_of: &[Option<usize>]) -> (u64, Vec<usize>) {
    // (host, master) -> (master there?, replicas there, first replica there)
    let mut groups: HashMap<(&str, usize), (bool, u64, Option<usize>)> = HashMap::new();
    for (node, &host) in hosts.iter().enumerate() {
        let key = (host, master_of[node].unwrap_or(node));
        let group = groups.entry(key).or_insert((false, 0, None));
        match master_of[node] {
            None => group.0 = true,
            Some(_) => {
                group.1 += 1;
                group.2 = group.2.or(Some(node));
            }
        }
    }
    let mut score = 0;
    let mut offenders = Vec::new();
    for (with_master, replicas, first) in groups.into_values() {
        let size = replicas + u64::from(with_master);
        if size < 2 {
            continue;
        }
        score += if with_master {
            10_000 * (size - 1)
        } else {
            size
        };
        offenders.extend(first);
    }
    offenders.sort_unstable();
    (score, offenders)
}

/// Swaps the masters of two replicas while that strictly lowers the score (deterministic, where
/// redis-cli swaps at random); returns how it came out.
fn improve_anti_affinity(hosts: &[&str], master_of: &mut [Option<usize>]) -> AntiAffinity {
    let (mut score, _) = anti_affinity_score(hosts, master_of);
    if score == 0 {
        return AntiAffinity::Untouched;
    }
    let replicas: Vec<usize> = (0..master_of.len())
        .filter(|&n| master_of[n].is_some())
        .collect();
    'improving: loop {
        let (_, offenders) = anti_affinity_score(hosts, master_of);
        for &first in &offenders {
            for &second in replicas.iter().filter(|&&n| n != first) {
                master_of.swap(first, second);
                let (swapped, _) = anti_affinity_score(hosts, master_of);
                if swapped < score {
                    score = swapped;
                    continue 'improving;
                }
                master_of.swap(first, second);
            }
        }
        break;
    }
    match score {
        0 => AntiAffinity::Perfect,
        10_000.. => AntiAffinity::ReplicaWithMaster,
        _ => AntiAffinity::ReplicasTogether,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_masters_match_redis_cli() {
        assert_eq!(
            split_slots(3),
            vec![(0, 5460), (5461, 10922), (10923, 16383)]
        );
    }

    #[test]
    fn other_counts_match_redis_cli() {
        assert_eq!(
            split_slots(4),
            vec![(0, 4095), (4096, 8191), (8192, 12287), (12288, 16383)]
        );
        assert_eq!(
            split_slots(5),
            vec![
                (0, 3276),
                (3277, 6553),
                (6554, 9829),
                (9830, 13106),
                (13107, 16383)
            ]
        );
        assert_eq!(
            split_slots(6),
            vec![
                (0, 2730),
                (2731, 5460),
                (5461, 8191),
                (8192, 10922),
                (10923, 13652),
                (13653, 16383)
            ]
        );
    }

    #[test]
    fn every_split_covers_all_slots_once() {
        for masters in 1..=64 {
            let ranges = split_slots(masters);
            assert_eq!(ranges.len(), masters);
            let mut next = 0u32;
            for (first, last) in ranges {
                assert_eq!(u32::from(first), next, "{masters} masters");
                assert!(last >= first);
                next = u32::from(last) + 1;
            }
            assert_eq!(next, 16384, "{masters} masters");
        }
    }

    /// `(host, port)` of each node as given; the port only names them in the expectations.
    fn layout(nodes: &[(&str, u16)], replicas: usize) -> (Arrangement, Vec<String>) {
        let hosts: Vec<&str> = nodes.iter().map(|(h, _)| *h).collect();
        let arrangement = arrange(&hosts, replicas);
        let name = |i: usize| format!("{}:{}", nodes[i].0, nodes[i].1);
        let mut lines = Vec::new();
        for (k, a) in arrangement.assigned.iter().enumerate() {
            if arrangement.extra_from == Some(k) {
                lines.push("Adding extra replicas...".to_string());
            }
            lines.push(format!(
                "Adding replica {} to {}",
                name(a.replica),
                name(a.master)
            ));
        }
        (arrangement, lines)
    }

    const H1: &str = "127.0.0.1";
    const H2: &str = "127.0.0.2";
    const H3: &str = "127.0.0.3";

    // The expected "Adding replica" lines below are what redis-cli 7.0.15 printed for the same
    // address lists (`echo no | redis-cli --cluster create ... --cluster-replicas N`).

    #[test]
    fn one_host_keeps_the_printed_assignment() {
        let nodes: Vec<(&str, u16)> = (32101..=32106).map(|p| (H1, p)).collect();
        let (a, lines) = layout(&nodes, 1);
        assert_eq!(a.masters, vec![0, 1, 2]);
        assert_eq!(
            lines,
            [
                "Adding replica 127.0.0.1:32105 to 127.0.0.1:32101",
                "Adding replica 127.0.0.1:32106 to 127.0.0.1:32102",
                "Adding replica 127.0.0.1:32104 to 127.0.0.1:32103",
            ]
        );
        assert_eq!(a.anti_affinity, AntiAffinity::ReplicaWithMaster);
        // No swap can help on one host: the layout is the one printed.
        assert_eq!(
            a.master_of,
            vec![None, None, None, Some(2), Some(0), Some(1)]
        );
    }

    #[test]
    fn three_hosts_two_each() {
        let nodes = [
            (H1, 32211),
            (H1, 32212),
            (H2, 32221),
            (H2, 32222),
            (H3, 32231),
            (H3, 32232),
        ];
        let (a, lines) = layout(&nodes, 1);
        assert_eq!(a.masters, vec![0, 2, 4]);
        assert_eq!(
            lines,
            [
                "Adding replica 127.0.0.2:32222 to 127.0.0.1:32211",
                "Adding replica 127.0.0.3:32232 to 127.0.0.2:32221",
                "Adding replica 127.0.0.1:32212 to 127.0.0.3:32231",
            ]
        );
        assert_eq!(a.anti_affinity, AntiAffinity::Untouched);
        assert_eq!(
            a.master_of,
            vec![None, Some(4), None, Some(0), None, Some(2)]
        );
    }

    #[test]
    fn two_hosts_three_each() {
        let nodes = [
            (H1, 32211),
            (H1, 32212),
            (H1, 32213),
            (H2, 32221),
            (H2, 32222),
            (H2, 32223),
        ];
        let (a, lines) = layout(&nodes, 1);
        assert_eq!(a.masters, vec![0, 3, 1]);
        assert_eq!(
            lines,
            [
                "Adding replica 127.0.0.2:32223 to 127.0.0.1:32211",
                "Adding replica 127.0.0.1:32213 to 127.0.0.2:32221",
                "Adding replica 127.0.0.2:32222 to 127.0.0.1:32212",
            ]
        );
        assert_eq!(a.anti_affinity, AntiAffinity::Untouched);
    }

    #[test]
    fn a_left_over_node_becomes_an_extra_replica() {
        let nodes = [
            (H1, 32211),
            (H1, 32212),
            (H1, 32213),
            (H1, 32214),
            (H2, 32221),
            (H3, 32231),
            (H2, 32222),
        ];
        let (a, lines) = layout(&nodes, 1);
        assert_eq!(
            lines,
            [
                "Adding replica 127.0.0.2:32222 to 127.0.0.1:32211",
                "Adding replica 127.0.0.1:32213 to 127.0.0.2:32221",
                "Adding replica 127.0.0.1:32214 to 127.0.0.3:32231",
                "Adding extra replicas...",
                "Adding replica 127.0.0.1:32212 to 127.0.0.1:32211",
            ]
        );
        // redis-cli: "[WARNING] Some slaves are in the same host as their master".
        assert_eq!(a.anti_affinity, AntiAffinity::ReplicaWithMaster);
        assert!(a.master_of.iter().filter(|m| m.is_some()).count() == 4);
    }

    #[test]
    fn two_replicas_on_three_hosts_are_improved() {
        let nodes = [
            (H1, 32211),
            (H1, 32212),
            (H1, 32213),
            (H1, 32214),
            (H2, 32221),
            (H2, 32222),
            (H3, 32231),
            (H3, 32232),
            (H3, 32233),
            (H2, 32223),
        ];
        let (a, lines) = layout(&nodes, 2);
        assert_eq!(
            lines,
            [
                "Adding replica 127.0.0.2:32222 to 127.0.0.1:32211",
                "Adding replica 127.0.0.3:32232 to 127.0.0.1:32211",
                "Adding replica 127.0.0.1:32213 to 127.0.0.2:32221",
                "Adding replica 127.0.0.3:32233 to 127.0.0.2:32221",
                "Adding replica 127.0.0.2:32223 to 127.0.0.3:32231",
                "Adding replica 127.0.0.1:32214 to 127.0.0.3:32231",
                "Adding extra replicas...",
                "Adding replica 127.0.0.1:32212 to 127.0.0.1:32211",
            ]
        );
        // redis-cli's random swaps reached the same verdict here.
        assert_eq!(a.anti_affinity, AntiAffinity::ReplicasTogether);
        let (score, _) =
            anti_affinity_score(&nodes.iter().map(|n| n.0).collect::<Vec<_>>(), &a.master_of);
        assert!(score < 10_000);
    }

    #[test]
    fn four_masters_reach_perfect_anti_affinity() {
        let nodes = [
            (H2, 32221),
            (H1, 32211),
            (H1, 32212),
            (H3, 32231),
            (H1, 32213),
            (H2, 32222),
            (H1, 32214),
            (H3, 32232),
        ];
        let (a, lines) = layout(&nodes, 1);
        assert_eq!(a.masters, vec![0, 1, 3, 5]);
        assert_eq!(
            lines,
            [
                "Adding replica 127.0.0.3:32232 to 127.0.0.2:32221",
                "Adding replica 127.0.0.1:32213 to 127.0.0.1:32211",
                "Adding replica 127.0.0.1:32214 to 127.0.0.3:32231",
                "Adding replica 127.0.0.1:32212 to 127.0.0.2:32222",
            ]
        );
        // redis-cli: "[OK] Perfect anti-affinity obtained!"
        assert_eq!(a.anti_affinity, AntiAffinity::Perfect);
        for (replica, master) in a.master_of.iter().enumerate() {
            if let Some(master) = master {
                assert_ne!(nodes[replica].0, nodes[*master].0);
            }
        }
    }

    #[test]
    fn no_replicas_is_the_given_order() {
        let (a, lines) = layout(&[(H1, 1), (H2, 2), (H1, 3)], 0);
        // Interleaved by host: H1, H2, then H1 again.
        assert_eq!(a.masters, vec![0, 1, 2]);
        assert!(lines.is_empty());
        assert_eq!(a.anti_affinity, AntiAffinity::Untouched);
    }
}
