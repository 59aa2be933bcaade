//! This node's role as the topology assigns it (master, or replica of a master at some bus
//! address), and the one place that learns when it changes: `role_changed`, the seam where
//! replication starts, stops or switches its stream. The cluster rule needs nothing from here: a
//! replica owns no slots, so `Topology::route` already answers its clients `MOVED` to the master.

use tessera_proto::topology::{NodeId, Role, Topology};

/// What the topology says this node is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AssignedRole {
    /// A master (also a node the topology does not list yet: a fresh node starts as a master, as
    /// in Redis).
    #[default]
    Master,
    /// A replica of `master`, whose cluster bus (where replication streams go) is `master_bus`
    /// (`host:bus_port`); `None` only if the topology names a master it does not list, which the
    /// control plane never publishes.
    Replica {
        master: NodeId,
        master_bus: Option<String>,
    },
}

impl AssignedRole {
    /// The role `topology` assigns to `myself`.
    pub fn of(topology: &Topology, myself: &NodeId) -> AssignedRole {
        match topology.node(myself) {
            Some(me) if me.role == Role::Replica => match &me.master_id {
                Some(master) => AssignedRole::Replica {
                    master: master.clone(),
                    master_bus: topology.node(master).map(|m| m.bus_address()),
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

/// Called once for every change of this node's assigned role, master, or master's bus address,
/// in topology order (also at start, when the first topology makes it a replica). Runs under the
/// topology offer lock: it must not block; replication hands the change to its own task here.
/// For now it only logs: replication streams are not built yet.
pub fn role_changed(myself: &NodeId, previous: &AssignedRole, next: &AssignedRole) {
    match next {
        AssignedRole::Master => {
            tracing::info!(node = %myself, ?previous, "this node is now a master");
        }
        AssignedRole::Replica { master, master_bus } => {
            tracing::info!(
                node = %myself,
                master = %master,
                master_bus = master_bus.as_deref().unwrap_or("unknown"),
                ?previous,
                "this node is now a replica"
            );
        }
    }
}
