//! The node's view of the cluster, fed by the control plane's topology watch.
//! (Owned by the cluster work; this stub fixes the interface the data path calls.)

use std::sync::Arc;

use tessera_proto::topology::render::MessageStats;
use tessera_proto::topology::{NodeId, Topology};

pub struct ClusterView {}

impl ClusterView {
    /// A view with a fixed topology and writes allowed, with no control plane behind it: for tests
    /// of the data path.
    pub fn standalone(myself: NodeId, topology: Topology) -> ClusterView {
        let _ = (myself, topology);
        todo!()
    }

    /// Replaces the topology if `topology.version` is newer than the one held.
    pub fn offer_topology(&self, topology: Topology) -> bool {
        let _ = topology;
        todo!()
    }

    /// This node's id.
    pub fn myself(&self) -> &NodeId {
        todo!()
    }

    /// The newest topology received; cheap (an `Arc` clone, no lock).
    pub fn topology(&self) -> Arc<Topology> {
        todo!()
    }

    /// False once the control plane has been unreachable for longer than node-timeout: the node
    /// then refuses writes.
    pub fn writes_allowed(&self) -> bool {
        todo!()
    }

    /// Heartbeat / probe message counters for CLUSTER INFO.
    pub fn message_stats(&self) -> MessageStats {
        todo!()
    }
}
