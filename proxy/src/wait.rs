//! WAIT through the proxy. A client's writes go to several masters, so WAIT numreplicas timeout
//! is asked of every master this client has written to (all serving masters when it has written
//! nothing yet), once the client's earlier replies are out (so its writes have been applied), and
//! the answer is the smallest count: every earlier write of the client has reached at least that
//! many replicas. The client's writes went out on connections shared with other clients, so the
//! proxy asks on the master's cluster bus, whose WAIT counts the replicas that acknowledged
//! everything the master had applied when it arrived (a client port's WAIT counts only its own
//! connection's writes).
//!
//! A master this client wrote to that a failover has since replaced counts 0 once (its writes
//! may or may not have reached the replica promoted in its place), and is forgotten after that;
//! a WAIT in flight to a master that loses its slots answers 0 at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tessera_proto::resp::{Frame, Protocol};
use tessera_proto::topology::Access;
use tokio::sync::oneshot;

use crate::backend::connection::{Connection, Job};
use crate::backend::{Backend, BackendLogin};
use crate::error::BackendError;
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
    let masters = snapshot.masters();
    let is_master = |b: &Arc<Backend>| masters.iter().any(|m| Arc::ptr_eq(m.backend, b));
    let written = &mut session.written.0;
    let replaced = written.iter().any(|b| !is_master(b));
    written.retain(is_master);
    if replaced {
        return Reply::ready(Frame::Integer(0).to_bytes(session.protocol));
    }
    // Each master asked: its backend (to notice its demotion) and its cluster bus address.
    let targets: Vec<(Arc<Backend>, String)> = masters
        .iter()
        .filter(|m| written.is_empty() || written.iter().any(|b| Arc::ptr_eq(b, m.backend)))
        .map(|m| (m.backend.clone(), m.node.bus_address()))
        .collect();
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
        let asks = targets
            .iter()
            .map(|(backend, bus)| ask(&shared, backend, bus, request.clone(), timeout_ms));
        let mut least: Option<i64> = None;
        for ((backend, _), reply) in targets.iter().zip(join_all(asks).await) {
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

/// Asks one master's cluster bus; answers `:0` at once if a topology takes the master's slots
/// away meanwhile (its writes may not have reached the replica promoted in its place, and a hung
/// master would never answer).
async fn ask(
    shared: &Shared,
    backend: &Arc<Backend>,
    bus: &str,
    request: Bytes,
    timeout_ms: u64,
) -> Result<Bytes, BackendError> {
    // Timeout 0 waits for ever, as on Redis.
    let limit = (timeout_ms > 0).then(|| backend.timeout() + Duration::from_millis(timeout_ms));
    let secret = shared.view.registry().settings().login.secret.clone();
    let asked = bus_wait(bus, secret, request, backend.timeout(), limit);
    tokio::pin!(asked);
    let mut changes = shared.view.changes();
    loop {
        tokio::select! {
            reply = &mut asked => return reply,
            changed = changes.changed() => {
                let demoted = !shared
                    .view
                    .load()
                    .masters()
                    .iter()
                    .any(|m| Arc::ptr_eq(m.backend, backend));
                if demoted || changed.is_err() {
                    return Ok(Bytes::from_static(b":0\r\n"));
                }
            }
        }
    }
}

/// `WAIT` on a master's cluster bus, which waits for everything the master has applied (a client
/// port's WAIT counts its own connection's writes, and this one has made none). One connection of
/// the proxy's own kind (`backend::connection`), used once.
async fn bus_wait(
    bus: &str,
    secret: Option<Arc<str>>,
    request: Bytes,
    connect_timeout: Duration,
    limit: Option<Duration>,
) -> Result<Bytes, BackendError> {
    let lost = || BackendError::ConnectionLost {
        addr: bus.to_string(),
    };
    // The bus knows AUTH, not READONLY: only the secret.
    let login = BackendLogin {
        secret,
        readonly: false,
    };
    let conn = Connection::spawn(bus.into(), Protocol::Resp2, connect_timeout, None, login);
    let (reply, answer) = oneshot::channel();
    let job = Job {
        request,
        asking: false,
        reply,
    };
    if conn.send(job).is_err() {
        return Err(lost());
    }
    let answer = async { answer.await.unwrap_or_else(|_| Err(lost())) };
    match limit {
        Some(limit) => {
            tokio::time::timeout(limit, answer)
                .await
                .map_err(|_| BackendError::Timeout {
                    addr: bus.to_string(),
                })?
        }
        None => answer.await,
    }
}
