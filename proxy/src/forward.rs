//! Sending one command to the backend that serves it, through the assembled request path
//! (`backend::cluster_stack`: redirects, then the backend's timeout / metrics / pool), and turning
//! a failure into the client's error reply (CLUSTERDOWN when the topology now says the slot is
//! not served). A client of the proxy never sees MOVED in normal operation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tessera_proto::resp::Protocol;
use tessera_proto::topology::Access;
use tower::Service;

use crate::backend::{Backend, ClusterFuture, ClusterRequest};
use crate::error::BackendError;
use crate::shared::Shared;

/// A reply on its way, boxed so replies of every kind queue in one FIFO.
pub type BoxReply = Pin<Box<dyn Future<Output = Bytes> + Send + 'static>>;

/// Which backend connection a client uses: its protocol's pool, its lane in that pool.
#[derive(Debug, Clone, Copy)]
pub struct Lane {
    pub protocol: Protocol,
    pub lane: usize,
}

/// `-text\r\n`.
pub fn error_bytes(text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 3);
    out.put_u8(b'-');
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
    out.freeze()
}

/// Queues `request` on `backend` now (through the redirect layer) and returns the future of its
/// final reply. `slot` (if the command had one) picks the error a dead backend produces.
pub fn send(
    shared: &Arc<Shared>,
    backend: &Arc<Backend>,
    lane: Lane,
    request: Bytes,
    slot: Option<u16>,
) -> ForwardReply {
    let reply = shared.cluster.clone().call(ClusterRequest {
        target: backend.clone(),
        protocol: lane.protocol,
        bytes: request,
        asking: false,
        lane: lane.lane,
    });
    ForwardReply {
        reply,
        shared: shared.clone(),
        slot,
    }
}

/// A forwarded command's reply: the backend's raw bytes, or the error reply its failure maps to.
pub struct ForwardReply {
    reply: ClusterFuture,
    shared: Arc<Shared>,
    slot: Option<u16>,
}

impl Future for ForwardReply {
    type Output = Bytes;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Bytes> {
        let result = std::task::ready!(Pin::new(&mut self.reply).poll(cx));
        Poll::Ready(match result {
            Ok(reply) => reply,
            Err(error) => failure(&self.shared, self.slot, &error),
        })
    }
}

/// The reply for a request whose backend failed: CLUSTERDOWN when the topology now says the slot
/// is not served, else the backend error.
pub fn failure(shared: &Shared, slot: Option<u16>, error: &BackendError) -> Bytes {
    if let Some(slot) = slot {
        let snapshot = shared.view.load();
        if let Err(down) = snapshot
            .topology
            .route_with(&snapshot.health, slot, Access::Read)
        {
            return error_bytes(down.message());
        }
    }
    tracing::debug!(%error, "backend request failed");
    error_bytes(&error.reply_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_errors() {
        assert_eq!(&error_bytes("ERR x")[..], b"-ERR x\r\n");
    }
}
