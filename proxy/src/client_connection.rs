//! One client connection's I/O: read into a buffer, parse every complete request, dispatch each
//! at once (backend requests are queued in the client's order), and write the replies in that
//! same order, flushing every reply that is ready in one write. A protocol error gets Redis's
//! `-ERR Protocol error: ...` and closes the connection once the replies before it are written.
//!
//! The replies owed wait in a plain FIFO (`VecDeque`) and only its head is polled: replies leave
//! in order anyway, so nothing is gained from polling the others (a `FuturesOrdered` would
//! allocate a task per reply and route every wake-up through its ready queue).

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tessera_proto::resp::request::{self, RequestLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::client_list::Stop;
use crate::pubsub::{Event, Subscriber};
use crate::session::{Reply, Session};
use crate::shared::Shared;
use tessera_proto::output_budget::OutputBudget;

/// Most replies a client may have outstanding; past it the proxy stops reading from it until
/// replies drain (backpressure instead of unbounded memory).
const MAX_PENDING: usize = 4096;
/// Bytes read at least per read call, and the spare room below which the buffer is topped up.
const READ_CHUNK: usize = 16 * 1024;
const READ_RESERVE: usize = 4 * 1024;
/// Input buffered at most while an exclusive reply (a blocking command, a transaction) holds
/// dispatch.
const HELD_INPUT: usize = 1024 * 1024;
/// Write buffers grown beyond this are released after a flush.
const KEEP_BUFFER: usize = 1024 * 1024;

pub async fn serve(shared: Arc<Shared>, socket: TcpStream) {
    let (Ok(peer), Ok(local)) = (socket.peer_addr(), socket.local_addr()) else {
        return;
    };
    let _ = socket.set_nodelay(true);
    shared
        .stats
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    let mut session = Session::new(&shared, peer, local);
    // sec: maxclients, as Redis refuses at accept: the error, then the connection closes.
    if !shared
        .clients
        .register(session.handle.clone(), shared.limits.maxclients)
    {
        let mut socket = socket;
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    }
    shared
        .stats
        .connected_clients
        .fetch_add(1, Ordering::Relaxed);
    let limits = shared.limits;
    // sec: the idle timeout (Redis's `timeout`), re-armed on every read and write.
    let idle_sleep = tokio::time::sleep(limits.idle_timeout.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle_sleep);
    let mut last_interaction = tokio::time::Instant::now();
    tracing::debug!(id = session.id, %peer, "client connected");
    let (mut reader, mut writer) = socket.into_split();
    let request_limits = RequestLimits::default();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut pending: VecDeque<Reply> = VecDeque::new();
    // No more requests will be read: QUIT, a protocol error, or the client closed its side.
    let mut closing = false;

    // An exclusive reply (see `Reply::Exclusive`) waiting for the replies before it, and whether
    // one is running: either way no further request is dispatched.
    let mut parked: Option<Reply> = None;
    let mut exclusive = false;

    loop {
        if exclusive && pending.is_empty() {
            exclusive = false;
        }
        if !exclusive && session.sub.as_ref().is_some_and(|s| s.finished()) {
            // Every subscription confirmed gone: a normal client again.
            session.sub = None;
        }
        if pending.is_empty() {
            if let Some(reply) = parked.take() {
                pending.push_back(reply);
                exclusive = true;
            }
        }
        let mut dispatched = false;
        while !closing && pending.len() < MAX_PENDING && !exclusive && parked.is_none() {
            let before = input.len();
            // As Redis: until the client authenticates, small commands only.
            let limits = request_limits.authenticating(session.user.is_none());
            match request::parse(&mut input, &limits) {
                Ok(Some(req)) => {
                    match session.handle(&shared, &req.args, req.raw.as_ref()) {
                        reply @ Reply::Exclusive(_) if pending.is_empty() => {
                            pending.push_back(reply);
                            exclusive = true;
                        }
                        reply @ Reply::Exclusive(_) => parked = Some(reply),
                        reply => pending.push_back(reply),
                    }
                    dispatched = true;
                    closing = session.quit;
                }
                Ok(None) if input.len() < before && !input.is_empty() => continue,
                Ok(None) => break,
                Err(error) => {
                    shared
                        .stats
                        .rejected_protocol
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(id = session.id, %error, "protocol error");
                    pending.push_back(Reply::error(&format!("ERR {error}")));
                    closing = true;
                }
            }
        }
        if dispatched {
            // sec: what CLIENT LIST shows of this connection, once per batch.
            session.publish_state(
                input.len(),
                input.capacity() - input.len(),
                (exclusive || parked.is_some()) && session.sub.is_none(),
            );
        }
        if closing && pending.is_empty() {
            break;
        }
        // Parsing splits requests off the front, shrinking the spare room: keep reads large.
        if input.capacity() - input.len() < READ_RESERVE {
            input.reserve(READ_CHUNK);
        }
        // Biased: the branches are polled in this order (replies owed first), with no random
        // choice to pay for.
        tokio::select! {
            biased;
            () = poll_fn(|cx| take_ready(&mut pending, &mut output, cx)), if !pending.is_empty() => {
                let budget = session.sub.as_ref().map(|s| &**s.budget());
                if !write_out(&mut writer, &output, budget).await {
                    break;
                }
                last_interaction = tokio::time::Instant::now();
                output.clear();
                if output.capacity() > KEEP_BUFFER {
                    output = BytesMut::with_capacity(16 * 1024);
                }
            }
            // Subscribed: confirmations and messages from the subscription connections.
            event = next_event(&mut session.sub, &shared), if session.sub.is_some() => {
                let Some(sub) = session.sub.as_mut() else { break };
                let (counted, ended) = match event {
                    Event::Frame(frame) => {
                        let len = frame.len();
                        sub.take(frame, &mut output, &shared);
                        let (more, ended) = sub.drain_ready(&mut output, &shared);
                        (len + more, ended)
                    }
                    // A subscription connection closed (its node went away), or the client
                    // went past its output buffer limit: drop the client, as Redis would.
                    Event::Closed | Event::Overflow => break,
                };
                let budget = session.sub.as_ref().map(|s| &**s.budget());
                let written = write_out(&mut writer, &output, budget).await;
                if let Some(budget) = budget {
                    budget.written(counted);
                }
                if !written || ended {
                    break;
                }
                output.clear();
                if output.capacity() > KEEP_BUFFER {
                    output = BytesMut::with_capacity(16 * 1024);
                }
            }
            // While an exclusive reply holds dispatch, keep reading (a client that goes away
            // is noticed) but only up to a bound.
            read = reader.read_buf(&mut input), if !closing && pending.len() < MAX_PENDING
                && (!(exclusive || parked.is_some()) || input.len() < HELD_INPUT) => {
                match read {
                    // Gone while a command blocks: as Redis frees a blocked client, drop it
                    // (its dedicated connection, owing a reply, is closed, not reused).
                    Ok(0) | Err(_) if exclusive || parked.is_some() => break,
                    Ok(0) | Err(_) => closing = true,
                    // sec: client-query-buffer-limit, as Redis: close without a reply.
                    Ok(_) if input.len() > limits.query_buffer => {
                        tracing::debug!(id = session.id, "query buffer limit reached");
                        break;
                    }
                    Ok(_) => last_interaction = tokio::time::Instant::now(),
                }
            }
            // sec: the idle timeout; subscribers and clients held by a blocking command or a
            // transaction's EXEC are exempt, as Redis exempts pub/sub and blocked clients.
            _ = &mut idle_sleep, if limits.idle_timeout.is_some() => {
                let limit = limits.idle_timeout.unwrap_or(Duration::MAX / 4);
                let exempt = session.sub.is_some() || exclusive || parked.is_some();
                if !exempt && last_interaction.elapsed() >= limit {
                    tracing::debug!(id = session.id, "idle timeout");
                    break;
                }
                let from = if exempt { tokio::time::Instant::now() } else { last_interaction };
                idle_sleep.as_mut().reset(from + limit);
            }
            // sec: CLIENT KILL from another client ends the connection at once. Shutdown: read
            // no more, but finish writing the replies already owed (the server bounds this with
            // its grace period).
            stop = poll_fn(|cx| session.handle.stop.poll(cx)), if !closing => match stop {
                Stop::Kill => break,
                Stop::Shutdown => closing = true,
            },
        }
    }
    shared.clients.unregister(session.id);
    shared
        .stats
        .connected_clients
        .fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(id = session.id, "client disconnected");
}

/// Moves every reply that is ready at the head of `pending` into `output`, in order; ready once
/// at least one was (the waker is then registered with the next head, if any).
fn take_ready(
    pending: &mut VecDeque<Reply>,
    output: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let mut taken = false;
    while let Some(head) = pending.front_mut() {
        match Pin::new(head).poll(cx) {
            Poll::Ready(reply) => {
                output.extend_from_slice(&reply);
                pending.pop_front();
                taken = true;
            }
            Poll::Pending => break,
        }
    }
    if taken {
        Poll::Ready(())
    } else {
        Poll::Pending
    }
}

/// The next event of a subscribed client (never resolves for a client that is not).
async fn next_event(sub: &mut Option<Box<Subscriber>>, shared: &Shared) -> Event {
    match sub {
        Some(sub) => sub.next(shared).await,
        None => std::future::pending().await,
    }
}

/// Writes `output`; for a subscribed client, gives up when it goes past its output buffer limit
/// (a slow reader must not hold the proxy's memory). False when the client is to be dropped.
async fn write_out(
    writer: &mut OwnedWriteHalf,
    output: &[u8],
    budget: Option<&OutputBudget>,
) -> bool {
    match budget {
        None => writer.write_all(output).await.is_ok(),
        Some(budget) => tokio::select! {
            written = writer.write_all(output) => written.is_ok(),
            _ = budget.overflow().cancelled() => false,
        },
    }
}
