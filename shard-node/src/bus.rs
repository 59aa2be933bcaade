//! The cluster bus: the node's second listener, for node-to-node traffic only (Redis announces it
//! as the client port + 10000, `@port` in CLUSTER NODES). Peers' probes (`PING`) and forwarded
//! PUBLISH messages (`DELIVER_COMMAND`, from `pubsub::forward`) arrive here, and only here: no
//! client connection can reach a node-internal command. With a node secret, a bus connection must
//! `AUTH <secret>` before anything else.
//!
//! Deliberately small: three commands, replies in RESP2, a connection closed on a protocol error.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tessera_proto::resp::codec::ServerCodec;
use tessera_proto::resp::Frame;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::connection::secret_matches;
use crate::pubsub::forward::DELIVER_COMMAND;
use crate::state::NodeState;

/// Accepts peers on `listener` until `stop`, serving each connection on its own task; returns once
/// every connection has ended.
pub async fn serve(listener: TcpListener, state: Arc<NodeState>, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_peer(stream, Arc::clone(&state), stop.clone()));
            }
            Err(error) => {
                tracing::warn!(%error, "cluster bus accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    connections.close();
    connections.wait().await;
}

async fn serve_peer(stream: TcpStream, state: Arc<NodeState>, stop: CancellationToken) {
    let mut framed = Framed::new(stream, ServerCodec::default());
    let mut authenticated = state.stats.node_secret.is_none();
    loop {
        let request = tokio::select! {
            _ = stop.cancelled() => return,
            request = framed.next() => request,
        };
        let Some(Ok(request)) = request else {
            return;
        };
        let reply = answer(&state, &mut authenticated, &request.args);
        if framed.send(&reply).await.is_err() {
            return;
        }
    }
}

/// One bus command's reply.
fn answer(state: &NodeState, authenticated: &mut bool, args: &[Bytes]) -> Frame {
    let Some(name) = args.first() else {
        return Frame::error("ERR empty command");
    };
    if name.eq_ignore_ascii_case(b"AUTH") {
        let [_, password] = args else {
            return Frame::error(tessera_proto::command::arity_error("auth"));
        };
        let accepted = state
            .stats
            .node_secret
            .as_ref()
            .is_none_or(|secret| secret_matches(secret, password));
        *authenticated |= accepted;
        return if accepted {
            Frame::Simple(Bytes::from_static(b"OK"))
        } else {
            Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
        };
    }
    if !*authenticated {
        return Frame::error("NOAUTH Authentication required.");
    }
    if name.eq_ignore_ascii_case(b"PING") && args.len() == 1 {
        return Frame::Simple(Bytes::from_static(b"PONG"));
    }
    if name.eq_ignore_ascii_case(DELIVER_COMMAND) && args.len() == 3 {
        return Frame::Integer(state.pubsub.publish(&args[1], &args[2]));
    }
    Frame::error(format!(
        "ERR unknown command '{}' on the cluster bus",
        String::from_utf8_lossy(name)
    ))
}
