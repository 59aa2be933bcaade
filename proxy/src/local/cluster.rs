//! CLUSTER INFO with the real cluster state; CLUSTER SLOTS / NODES / SHARDS / MYID showing the
//! proxy as one node that serves every slot at its announced address, so cluster-aware clients
//! keep talking to the proxy; CLUSTER KEYSLOT computed here. (COUNTKEYSINSLOT and GETKEYSINSLOT
//! are routed to the slot's owner by the router.)

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::render::{self, MessageStats};

use super::{frame, verbatim};
use crate::client::{Reply, Session};
use crate::shared::Shared;
use crate::topology::Snapshot;

pub fn handle(
    shared: &Arc<Shared>,
    session: &mut Session,
    snapshot: &Snapshot,
    args: &[Bytes],
) -> Option<Reply> {
    let single = || {
        snapshot.topology.as_single_node(
            shared.id.clone(),
            &shared.announce_host,
            shared.announce_port,
        )
    };
    Some(match args[1].to_ascii_lowercase().as_slice() {
        b"info" => {
            let text = render::cluster_info(&snapshot.topology, None, &MessageStats::default());
            verbatim(session, text)
        }
        b"myid" => frame(session, Frame::Bulk(Bytes::from(shared.id.to_string()))),
        b"nodes" => {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let text = render::cluster_nodes(&single(), Some(&shared.id), now_ms);
            verbatim(session, text)
        }
        b"slots" => frame(session, render::cluster_slots(&single())),
        b"shards" => frame(session, render::cluster_shards(&single())),
        b"keyslot" => frame(session, Frame::Integer(i64::from(key_hash_slot(&args[2])))),
        _ => return None,
    })
}
