//! One client connection's I/O: read into a buffer, parse every complete request, dispatch each
//! at once (backend requests are queued in the client's order), and write the replies in that
//! same order, flushing every reply that is ready in one write. A protocol error gets Redis's
//! `-ERR Protocol error: ...` and closes the connection once the replies before it are written.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tessera_proto::resp::request::{self, RequestLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::client::{Reply, Session};
use crate::shared::Shared;

/// Most replies a client may have outstanding; past it the proxy stops reading from it until
/// replies drain (backpressure instead of unbounded memory).
const MAX_PENDING: usize = 4096;
/// Bytes read at least per read call, and the spare room below which the buffer is topped up.
const READ_CHUNK: usize = 16 * 1024;
const READ_RESERVE: usize = 4 * 1024;
/// Write buffers grown beyond this are released after a flush.
const KEEP_BUFFER: usize = 1024 * 1024;

pub async fn serve(shared: Arc<Shared>, socket: TcpStream, shutdown: CancellationToken) {
    let (Ok(peer), Ok(local)) = (socket.peer_addr(), socket.local_addr()) else {
        return;
    };
    let _ = socket.set_nodelay(true);
    shared
        .stats
        .connected_clients
        .fetch_add(1, Ordering::Relaxed);
    shared
        .stats
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    let mut session = Session::new(&shared, peer, local);
    tracing::debug!(id = session.id, %peer, "client connected");
    let (mut reader, mut writer) = socket.into_split();
    let limits = RequestLimits::default();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut pending: FuturesOrdered<Reply> = FuturesOrdered::new();
    // No more requests will be read: QUIT, a protocol error, or the client closed its side.
    let mut closing = false;

    loop {
        while !closing && pending.len() < MAX_PENDING {
            let before = input.len();
            match request::parse(&mut input, &limits) {
                Ok(Some(req)) => {
                    pending.push_back(session.handle(&shared, &req.args));
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
        if closing && pending.is_empty() {
            break;
        }
        // Parsing splits requests off the front, shrinking the spare room: keep reads large.
        if input.capacity() - input.len() < READ_RESERVE {
            input.reserve(READ_CHUNK);
        }
        tokio::select! {
            Some(reply) = pending.next(), if !pending.is_empty() => {
                output.extend_from_slice(&reply);
                while let Some(Some(reply)) = pending.next().now_or_never() {
                    output.extend_from_slice(&reply);
                }
                if writer.write_all(&output).await.is_err() {
                    break;
                }
                output.clear();
                if output.capacity() > KEEP_BUFFER {
                    output = BytesMut::with_capacity(16 * 1024);
                }
            }
            read = reader.read_buf(&mut input), if !closing && pending.len() < MAX_PENDING => {
                match read {
                    Ok(0) | Err(_) => closing = true,
                    Ok(_) => {}
                }
            }
            // Shutdown: read no more, but finish writing the replies already owed (the server
            // bounds this with its grace period).
            _ = shutdown.cancelled(), if !closing => closing = true,
        }
    }
    shared
        .stats
        .connected_clients
        .fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(id = session.id, "client disconnected");
}
