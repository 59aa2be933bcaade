//! Where single-key reads go (`--read-policy`), as Envoy's Redis proxy read policy: to the slot's
//! master (the default: a client reads its own writes), or to one of the master's healthy
//! replicas (`prefer-replica`, the master when none is healthy), or to any of them (`any`). A
//! replica serves what it has applied of its master's stream, so reads sent to it may lag
//! behind writes. Each client sticks to one node per shard (picked by its id), so its reads do
//! not go back in time between two replicas. Writes, transactions, blocking commands and
//! multi-key splits always go to the master.

use tessera_proto::topology::{NodeSpec, Topology};

/// The policy for reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReadPolicy {
    /// Every read goes to the slot's master.
    #[default]
    Master,
    /// Reads go to a healthy replica of the slot's master; to the master when it has none.
    PreferReplica,
    /// Reads go to the master or one of its healthy replicas.
    Any,
}

/// The node that serves client `client`'s read of a slot whose master is `master`.
pub fn reader<'t>(
    policy: ReadPolicy,
    topology: &'t Topology,
    master: &'t NodeSpec,
    client: u64,
) -> &'t NodeSpec {
    if policy == ReadPolicy::Master {
        return master;
    }
    let Some(index) = topology
        .nodes()
        .iter()
        .position(|n| std::ptr::eq(n, master))
    else {
        return master;
    };
    let healthy: Vec<usize> = topology
        .replicas_of(index)
        .filter(|&r| !topology.status_at(r).failing())
        .collect();
    let choices = healthy.len() + usize::from(policy == ReadPolicy::Any);
    if choices == 0 {
        return master;
    }
    match healthy.get((client % choices as u64) as usize) {
        Some(&replica) => &topology.nodes()[replica],
        None => master,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::topology::{NodeId, Role};

    /// One master owning every slot, with two replicas (nodes 1 and 2).
    fn shard() -> Topology {
        let id = |n: u8| NodeId::from_random_bytes([n; 20]);
        let master = NodeSpec::master(id(1), "127.0.0.1", 7000);
        let replica = |n: u8, port| NodeSpec {
            role: Role::Replica,
            master_id: Some(id(1)),
            ..NodeSpec::master(id(n), "127.0.0.1", port)
        };
        Topology::created(
            vec![master, replica(2, 7001), replica(3, 7002)],
            vec![Some(0); 16384].into_boxed_slice(),
        )
    }

    fn port(policy: ReadPolicy, t: &Topology, client: u64) -> u16 {
        reader(policy, t, &t.nodes()[0], client).port
    }

    #[test]
    fn reads_follow_the_policy() {
        let mut t = shard();
        let ports = |policy, t: &Topology| (0..3).map(|c| port(policy, t, c)).collect::<Vec<_>>();
        assert_eq!(ports(ReadPolicy::Master, &t), [7000, 7000, 7000]);
        assert_eq!(ports(ReadPolicy::PreferReplica, &t), [7001, 7002, 7001]);
        assert_eq!(ports(ReadPolicy::Any, &t), [7001, 7002, 7000]);
        // A failing replica is skipped; with none healthy, the master serves.
        t.observed.nodes[1].pfail = true;
        assert_eq!(ports(ReadPolicy::PreferReplica, &t), [7002, 7002, 7002]);
        t.observed.nodes[2].fail = true;
        assert_eq!(ports(ReadPolicy::PreferReplica, &t), [7000, 7000, 7000]);
    }
}
