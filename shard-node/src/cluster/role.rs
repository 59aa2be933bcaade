//! This node's role as the topology assigns it (master, or replica of a master at some bus
//! address), and the one place that learns when it changes: `role_changed`, which tells the
//! replication task (`replication::follow_assigned_role`) to start, stop or switch its stream. The cluster rule needs nothing from here: a
//! replica owns no slots, so `Topology::route` already answers its clients `MOVED` to the master.

use tessera_proto::topology::{NodeId, Role, Topology};

use crate::replication::MasterAddress;

/// What the topology says this node is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AssignedRole {
    /// A master (also a node the topology does not list yet: a fresh node starts as a master, as
    /// in Redis).
    #[default]
    Master,
    /// A replica of `master`, found at `address` (its client and cluster bus ports: replication
    /// streams go to the bus); `None` only if the topology names a master it does not list,
    /// which the control plane never publishes.
    Replica {
        master: NodeId,
        address: Option<MasterAddress>,
    },
}

impl AssignedRole {
    /// The role `topology` assigns to `myself`.
    pub fn of(topology: &Topology, myself: &NodeId) -> AssignedRole {
        match topology.node(myself) {
            Some(me) if me.role == Role::Replica => match &me.master_id {
                Some(master) => AssignedRole::Replica {
                    master: master.clone(),
                    address: topology.node(master).map(|m| MasterAddress {
                        host: m.host.clone(),
                        port: m.port,
                        bus_port: m.bus_port,
                    }),
                },
                None => AssignedRole::Master,
            },
            _ => AssignedRole::Master,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            AssignedRole::Master => Role::Master,
            AssignedRole::Replica { .. } => Role::Replica,
        }
    }

    /// The master this node replicates, if it is a replica.
    pub fn master(&self) -> Option<&NodeId> {
        match self {
            AssignedRole::Master => None,
            AssignedRole::Replica { master, .. } => Some(master),
        }
    }
}

/// Logs each change of this node's assigned role, master, or master's address, in topology order
/// (also at start, when the first topology makes it a replica). Runs under the topology offer
/// lock; replication follows the change on its own task (`replication::follow_assigned_role`).
pub fn role_changed(myself: &NodeId, previous: &AssignedRole, next: &AssignedRole) {
    match next {
        AssignedRole::Master => {
            tracing::info!(node = %myself, ?previous, "this node is now a master");
        }
        AssignedRole::Replica { master, address } => {
            tracing::info!(
                node = %myself,
                master = %master,
                master_bus = address.as_ref().map_or("unknown".into(), MasterAddress::bus_addr),
                ?previous,
                "this node is now a replica"
            );
        }
    }
}
