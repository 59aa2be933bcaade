//! One client connection: read into a buffer, run every complete command in it (pipelining is the
//! common case), encode all replies into one buffer and write it once per batch.
//! A blocking command (BLPOP, ...) that finds no data is awaited here (`wait_blocked`) before the
//! client's next command runs, and so is a WAIT for replicas' acknowledgements and a command
//! that awaits another process (`ClientSession::deferred`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use tessera_proto::resp::request::{self, RequestLimits};
use tessera_proto::resp::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::aof::FsyncPolicy;
use crate::cmd::{self, ClientSession};
use crate::keyspace::blocking::Blocked;
use crate::server::ClientInfo;
use crate::state::NodeState;

/// Redis's client-query-buffer-limit: a client whose unparsed input grows past this is closed.
pub const QUERY_BUFFER_LIMIT: usize = 1024 * 1024 * 1024;

/// How long, once shutdown has begun, a client may take to read the replies it is owed.
const SHUTDOWN_WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves one client until it quits, disconnects, errs, or the server shuts down (after finishing
/// what it has read).
pub async fn handle(stream: TcpStream, state: Arc<NodeState>, shutdown: CancellationToken) {
    let addr = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let laddr = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let stats = &state.stats;
    let id = stats.new_client_id();
    let info = Arc::new(Mutex::new(ClientInfo::new(id, addr, laddr)));
    stats.clients.lock().insert(id, info.clone());
    stats.connections_received.fetch_add(1, Ordering::Relaxed);
    stats.connected_clients.fetch_add(1, Ordering::Relaxed);

    let mut session = ClientSession::new(info);
    if let Err(error) = run(stream, &state, &mut session, &shutdown).await {
        tracing::debug!(client = id, %error, "connection ended with an I/O error");
    }
    if let Some(blocked) = session.blocked.take() {
        // Ended before awaiting its blocked command: unregister it, so no data is served to it.
        blocked.cancel(&state.keyspace);
    }
    state.pubsub.remove_client(&mut session.pubsub);
    session.watched.unwatch_all(&state.keyspace);

    stats.clients.lock().remove(&id);
    stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
}

async fn run(
    mut stream: TcpStream,
    state: &NodeState,
    session: &mut ClientSession,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let limits = RequestLimits::default();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    loop {
        let logged_before = state.aof.as_ref().map(|aof| aof.offset());
        let close = run_buffered(state, session, &mut input, &mut output, &limits);
        if let (Some(aof), Some(before)) = (&state.aof, logged_before) {
            // Under `appendfsync always` a write is acknowledged only once it is on disk. The log
            // is shared, so this waits for everything logged up to now, ours included.
            let after = aof.offset();
            if aof.policy() == FsyncPolicy::Always && after > before {
                if let Err(error) = aof.wait_synced(after).await {
                    tracing::error!(client = session.id, %error, "AOF sync failed: closing without acknowledging");
                    return Ok(());
                }
            }
        }
        if !output.is_empty() {
            // A subscriber past its output limit is dropped even while its writes are stuck.
            let overflow = session.pubsub.overflow();
            tokio::select! {
                written = write_replies(&mut stream, &output, shutdown) => written?,
                _ = over_limit(overflow.as_ref()) => return over_limit_closed(session),
            }
            output.clear();
            session.pubsub.written();
        }
        if let Some(blocked) = session.blocked.take() {
            // A blocking command (BLPOP, ...) found no data: its reply comes first, then the rest
            // of the pipeline runs, as Redis resumes a client once it is unblocked.
            match wait_blocked(&mut stream, state, blocked, &mut input, shutdown).await? {
                Some(reply) => {
                    session.publish_status();
                    reply.encode(session.protocol, &mut output);
                    continue;
                }
                None => return Ok(()),
            }
        }
        if let Some(wait) = session.waiting.take() {
            // WAIT: its reply comes once enough replicas acknowledged or its timeout passed.
            let acked = tokio::select! {
                acked = state.replication.wait_for_acks(wait) => acked,
                _ = shutdown.cancelled() => return Ok(()),
            };
            session.publish_status();
            Frame::Integer(acked as i64).encode(session.protocol, &mut output);
            continue;
        }
        if let Some(deferred) = session.deferred.take() {
            // CLUSTER SETSLOT, MIGRATE, a write to keys in transit: the reply comes once the
            // other process answered or the keys landed.
            let reply = tokio::select! {
                reply = deferred(state, session) => reply,
                _ = shutdown.cancelled() => return Ok(()),
            };
            session.publish_status();
            reply.encode(session.protocol, &mut output);
            continue;
        }
        if close || shutdown.is_cancelled() {
            return Ok(());
        }
        if input.len() > QUERY_BUFFER_LIMIT {
            tracing::warn!(
                client = session.id,
                "closing client that reached the query buffer limit"
            );
            return Ok(());
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        let overflow = session.pubsub.overflow();
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = over_limit(overflow.as_ref()) => return over_limit_closed(session),
            read = stream.read_buf(&mut input) => read?,
            // A published message: written at the top of the loop with any others.
            _ = session.pubsub.next(session.protocol, &mut output) => {
                session.pubsub.drain(session.protocol, &mut output);
                continue;
            }
        };
        if read == 0 {
            return Ok(());
        }
    }
}

/// Resolves once a subscriber went past its output limit; never for other clients.
async fn over_limit(overflow: Option<&CancellationToken>) {
    match overflow {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Logs the close of a client dropped for its output limit, as Redis does; the connection ends.
fn over_limit_closed(session: &ClientSession) -> std::io::Result<()> {
    tracing::warn!(
        client = session.id,
        "closing client that reached the pubsub output buffer limit (32mb 8mb 60)"
    );
    Ok(())
}

/// Awaits a blocked command's reply (see `keyspace::blocking`), meanwhile reading what the client
/// sends into `input` (run once it is unblocked), so a client that leaves is noticed. `None` when
/// the client left, its input outgrew the limit, or the node is stopping: the connection then
/// closes, and dropping the wait unregisters the client (blocked clients never hold up shutdown).
async fn wait_blocked(
    stream: &mut TcpStream,
    state: &NodeState,
    blocked: Blocked,
    input: &mut BytesMut,
    shutdown: &CancellationToken,
) -> std::io::Result<Option<Frame>> {
    let wait = blocked.wait(&state.keyspace, |args| cmd::cluster_recheck(state, args));
    tokio::pin!(wait);
    let reply = loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        tokio::select! {
            reply = &mut wait => break reply,
            _ = shutdown.cancelled() => return Ok(None),
            read = stream.read_buf(input) => {
                if read? == 0 || input.len() > QUERY_BUFFER_LIMIT {
                    return Ok(None);
                }
            }
        }
    };
    // The writer that served us logged the pop; under `appendfsync always` it is acknowledged
    // only once on disk.
    if let Some(aof) = &state.aof {
        if aof.policy() == FsyncPolicy::Always && aof.wait_synced(aof.offset()).await.is_err() {
            return Ok(None);
        }
    }
    Ok(Some(reply))
}

/// Writes a batch of replies. Once shutdown has begun, a client that does not take its replies
/// within `SHUTDOWN_WRITE_GRACE` is dropped, so one stuck reader cannot hold the node's stop.
async fn write_replies(
    stream: &mut TcpStream,
    output: &[u8],
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut write = std::pin::pin!(stream.write_all(output));
    tokio::select! {
        written = &mut write => return written,
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(SHUTDOWN_WRITE_GRACE, write).await {
        Ok(written) => written,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client did not take its replies before shutdown",
        )),
    }
}

/// Runs every complete command in `input`, appending replies to `output`. True when the
/// connection must close after the replies are written (QUIT, or a protocol error).
fn run_buffered(
    state: &NodeState,
    session: &mut ClientSession,
    input: &mut BytesMut,
    output: &mut BytesMut,
    limits: &RequestLimits,
) -> bool {
    loop {
        let before = input.len();
        // As Redis: until the client has sent the node secret, small commands only.
        match request::parse(
            input,
            &limits.authenticating(session.must_authenticate(state)),
        ) {
            Ok(Some(request)) => {
                let reply = cmd::execute(state, session, &request.args);
                session.publish_status();
                if session.blocked.is_some()
                    || session.waiting.is_some()
                    || session.deferred.is_some()
                {
                    // The connection awaits it; its reply is sent then.
                    return false;
                }
                // Confirmations of a multi-channel (UN)SUBSCRIBE, and messages that arrived (a
                // client's own PUBLISH reaches it first, as in Redis), go before the reply.
                session.pubsub.drain(session.protocol, output);
                reply.encode(session.protocol, output);
                if session.quit {
                    return true;
                }
            }
            // An ignored empty command was consumed: look for the next one.
            Ok(None) if input.len() < before && !input.is_empty() => continue,
            Ok(None) => return false,
            Err(error) => {
                // As Redis: reply with the protocol error, then close.
                Frame::error(format!("ERR {error}")).encode(session.protocol, output);
                return true;
            }
        }
    }
}
