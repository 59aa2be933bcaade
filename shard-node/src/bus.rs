//! The cluster bus: the node's second listener, for node-to-node traffic only (Redis announces it
//! as the client port + 10000, `@port` in CLUSTER NODES). Peers' probes (`PING`), forwarded
//! PUBLISH messages (`DELIVER_COMMAND`, from `pubsub::forward`), the batches of a slot's move
//! (`TESSERA.IMPORT`, from `migrate`), the proxy's WAIT (for what the master has applied) and
//! replicas (`REPLCONF`, then
//! `PSYNC`, after which the connection carries the replication stream: `replication::master`)
//! arrive here, and only here: no client connection can reach a node-internal command. With a
//! node secret, a bus connection must `AUTH <secret>` before anything else.
//!
//! Deliberately small: a few commands, replies in RESP2, a connection closed on a protocol error.

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
use crate::migrate::IMPORT_COMMAND;
use crate::pubsub::forward::DELIVER_COMMAND;
use crate::replication::master::PeerInfo;
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
    let ip = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let mut framed = Framed::new(stream, ServerCodec::default());
    let mut peer = Peer {
        authenticated: state.stats.node_secret.is_none(),
        replica: PeerInfo {
            ip,
            listening_port: 0,
        },
    };
    loop {
        let request = tokio::select! {
            _ = stop.cancelled() => return,
            request = framed.next() => request,
        };
        let Some(Ok(request)) = request else {
            return;
        };
        let args = &request.args;
        if peer.authenticated && args.len() == 3 && args[0].eq_ignore_ascii_case(b"PSYNC") {
            // From here on the connection belongs to the replica.
            let parts = framed.into_parts();
            crate::replication::serve_replica(
                parts.io,
                parts.read_buf,
                state,
                peer.replica,
                args[1].clone(),
                args[2].clone(),
                stop,
            )
            .await;
            return;
        }
        let importing = args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(IMPORT_COMMAND));
        let waiting = args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"WAIT"));
        let reply = if peer.authenticated && importing {
            crate::migrate::import_durably(&state, args).await
        } else if peer.authenticated && waiting {
            tokio::select! {
                _ = stop.cancelled() => return,
                reply = wait_applied(&state, args) => reply,
            }
        } else {
            let Some(reply) = answer(&state, &mut peer, args) else {
                continue;
            };
            reply
        };
        if framed.send(&reply).await.is_err() {
            return;
        }
    }
}

/// `WAIT numreplicas timeout` on the bus: as a client's WAIT, but for everything this master has
/// applied when it arrives rather than for one connection's writes. The proxy asks it after a
/// client's writes went out on shared connections: the master's offset then covers them.
async fn wait_applied(state: &NodeState, args: &[Bytes]) -> Frame {
    if args.len() != 3 {
        return Frame::error(tessera_proto::command::arity_error("wait"));
    }
    let repl = &state.replication;
    match crate::cmd::replication::wait_for(repl, args, repl.offset()) {
        Err(reply) => reply,
        Ok(Err(acked)) => Frame::Integer(acked as i64),
        Ok(Ok(wait)) => {
            repl.request_acks();
            Frame::Integer(repl.wait_for_acks(wait).await as i64)
        }
    }
}

/// What a bus connection has said about itself.
struct Peer {
    authenticated: bool,
    /// Filled by REPLCONF, for a replica's PSYNC.
    replica: PeerInfo,
}

/// One bus command's reply (`None`: the command takes none, as REPLCONF ACK).
fn answer(state: &NodeState, peer: &mut Peer, args: &[Bytes]) -> Option<Frame> {
    let Some(name) = args.first() else {
        return Some(Frame::error("ERR empty command"));
    };
    if name.eq_ignore_ascii_case(b"REPLCONF") && peer.authenticated {
        return replconf(peer, args);
    }
    Some(answer_common(state, &mut peer.authenticated, args))
}

/// REPLCONF before PSYNC, as Redis's replconfCommand: option/value pairs; `listening-port`
/// kept for ROLE and INFO; `capa`, `ip-address` and the like accepted; ACK and GETACK take no
/// reply outside a replication stream.
fn replconf(peer: &mut Peer, args: &[Bytes]) -> Option<Frame> {
    if args.len().is_multiple_of(2) {
        return Some(Frame::error(tessera_proto::command::arity_error(
            "replconf",
        )));
    }
    for pair in args[1..].chunks(2) {
        let (option, value) = (&pair[0], &pair[1]);
        let option_lower = option.to_ascii_lowercase();
        match &option_lower[..] {
            b"listening-port" => match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            {
                Some(port) => peer.replica.listening_port = port,
                None => return Some(Frame::error("ERR value is not an integer or out of range")),
            },
            b"ack" | b"getack" => return None,
            b"capa" | b"ip-address" | b"rdb-only" | b"rdb-filter-only" => {}
            _ => {
                return Some(Frame::error(format!(
                    "ERR Unrecognized REPLCONF option: {}",
                    String::from_utf8_lossy(option)
                )))
            }
        }
    }
    Some(Frame::Simple(Bytes::from_static(b"OK")))
}

/// AUTH, PING and DELIVER.
fn answer_common(state: &NodeState, authenticated: &mut bool, args: &[Bytes]) -> Frame {
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
