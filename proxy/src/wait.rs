//! WAIT through the proxy. A client's writes go to several masters, so WAIT numreplicas timeout
//! is asked of every master this client has written to (all serving masters when it has written
//! nothing yet), each on a dedicated connection once the client's earlier replies are out (so its
//! writes have been applied), and the answer is the smallest count: every earlier write of the
//! client has reached at least that many replicas. As on a shard node, a master counts the
//! replicas that acknowledged everything it had applied when WAIT arrived.
//!
//! A master this client wrote to that a failover has since replaced counts 0 once (its writes
//! may or may not have reached the replica promoted in its place), and is forgotten after that.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tessera_proto::resp::Frame;
use tessera_proto::topology::Access;

use crate::backend::Backend;
use crate::router::parse_i64;
use crate::session::{Reply, Session};
use crate::shared::Shared;
use crate::split::integer;
use crate::topology::Routes;

/// The masters a client has sent writes to since it connected: few (at most one per master), so
/// a list.
#[derive(Debug, Default)]
pub struct WrittenTo(Vec<Arc<Backend>>);

impl WrittenTo {
    /// Records a write sent to `backend`.
    pub fn note(&mut self, backend: &Arc<Backend>) {
        if !self.0.iter().any(|b| Arc::ptr_eq(b, backend)) {
            self.0.push(backend.clone());
        }
    }
}

/// WAIT numreplicas timeout (arity checked by the router).
pub fn run(
    shared: &Arc<Shared>,
    session: &mut Session,
    snapshot: &Routes,
    args: &[Bytes],
) -> Reply {
    // Redis's checks and texts, in its order (the masters would answer the same).
    if parse_i64(&args[1]).is_none() {
        return Reply::error("ERR value is not an integer or out of range");
    }
    let timeout_ms = match parse_i64(&args[2]) {
        None => return Reply::error("ERR timeout is not an integer or out of range"),
        Some(ms) if ms < 0 => return Reply::error("ERR timeout is negative"),
        Some(ms) => ms as u64,
    };
    let masters: Vec<Arc<Backend>> = snapshot
        .masters()
        .into_iter()
        .map(|m| m.backend.clone())
        .collect();
    let written = &mut session.written.0;
    let replaced = written
        .iter()
        .any(|b| !masters.iter().any(|m| Arc::ptr_eq(m, b)));
    written.retain(|b| masters.iter().any(|m| Arc::ptr_eq(m, b)));
    if replaced {
        return Reply::ready(Frame::Integer(0).to_bytes(session.protocol));
    }
    let targets = if written.is_empty() {
        masters
    } else {
        written.clone()
    };
    if targets.is_empty() {
        let down = snapshot
            .topology
            .route_with(&snapshot.health, 0, Access::Read)
            .err()
            .map_or("CLUSTERDOWN Hash slot not served", |d| d.message());
        return Reply::error(down);
    }
    let request = session.encode_args(args);
    let protocol = session.protocol;
    let shared = shared.clone();
    Reply::Exclusive(Box::pin(async move {
        let asks = targets.iter().map(|backend| {
            let request = request.clone();
            // Timeout 0 waits for ever, as on Redis.
            let limit =
                (timeout_ms > 0).then(|| backend.timeout() + Duration::from_millis(timeout_ms));
            async move {
                let conn = backend.dedicated(protocol);
                let reply = conn.send(request);
                conn.wait(reply, limit).await
            }
        });
        let mut least: Option<i64> = None;
        for (backend, reply) in targets.iter().zip(join_all(asks).await) {
            let reply = match reply {
                Ok(reply) => reply,
                Err(error) => return crate::forward::failure(&shared, None, &error),
            };
            match integer(&reply) {
                Some(count) => least = Some(least.map_or(count, |l| l.min(count))),
                // An error (or anything else) from one master is the answer.
                None => {
                    tracing::debug!(addr = backend.addr(), "WAIT answered with a non-integer");
                    return reply;
                }
            }
        }
        Frame::Integer(least.unwrap_or(0)).to_bytes(protocol)
    }))
}
