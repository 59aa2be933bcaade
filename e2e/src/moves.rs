//! Slot moves for tests: the control plane's topology, MoveSlots, waiting for a move to end, and
//! keys that hash to chosen slots (to fill the slots a test moves).

use std::ops::Range;
use std::time::Duration;

use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::{NodeSpec, Role, Topology};
use tessera_testkit::wait;

/// A control plane to drive moves on, with a runtime of its own (the tests are synchronous).
pub struct Mover {
    runtime: tokio::runtime::Runtime,
    url: String,
}

impl Mover {
    /// For the control plane at `url` (`http://host:port`).
    pub fn new(url: &str) -> Mover {
        Mover {
            runtime: tokio::runtime::Runtime::new().expect("runtime"),
            url: url.to_string(),
        }
    }

    async fn client(&self) -> ControlPlaneClient<tonic::transport::Channel> {
        ControlPlaneClient::connect(self.url.clone())
            .await
            .expect("control plane")
    }

    /// The control plane's topology now.
    pub fn topology(&self) -> Topology {
        crate::reshard::topology(&self.runtime, &self.url)
    }

    /// The two ends of a move of `slot`: its owner, and another master.
    pub fn ends(&self, slot: u16) -> (NodeSpec, NodeSpec) {
        let topology = self.topology();
        let source = topology.owner(slot).expect("the slot is served").clone();
        let target = topology
            .nodes()
            .iter()
            .find(|n| n.id != source.id && n.role == Role::Master)
            .expect("another master")
            .clone();
        (source, target)
    }

    /// Starts moving `slots` to the node `target` (its id); returns once the control plane has
    /// taken the move.
    pub fn start(&self, slots: Range<u16>, target: &str) {
        self.runtime.block_on(async {
            self.client()
                .await
                .move_slots(pb::MoveSlotsRequest {
                    slots: slots.map(u32::from).collect(),
                    target_id: target.to_string(),
                })
                .await
                .expect("MoveSlots")
        });
    }

    /// Whether `slots` are `target`'s with no move left in the topology.
    pub fn done(&self, slots: Range<u16>, target: &str) -> bool {
        let t = self.topology();
        t.intent.migrations.is_empty()
            && slots
                .clone()
                .all(|s| t.owner(s).map(|n| n.id.to_string()).as_deref() == Some(target))
    }

    /// Waits (up to `limit`) until `done`.
    pub fn wait_done(&self, slots: Range<u16>, target: &str, limit: Duration) {
        wait::until("the move finishes", limit, || {
            self.done(slots.clone(), target).then_some(())
        });
    }
}

/// A hash tag (`{...}`) whose keys hash to `slot`: `format!("{tag}:name")` is in `slot`.
pub fn tag_for(slot: u16) -> String {
    (0u64..)
        .map(|n| format!("{{t{n}}}"))
        .find(|tag| key_hash_slot(tag.as_bytes()) == slot)
        .expect("every slot has a tag")
}
