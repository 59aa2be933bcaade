//! Serving one replica, on a cluster bus connection that sent PSYNC (after AUTH and REPLCONF):
//! Redis's masterTryPartialResynchronization and syncCommand. The connection then belongs to the
//! replica: the stream of writes goes out, its REPLCONF ACKs come in.
//!
//! - `+CONTINUE <replid>` when it asks for our history (or the one we continue, replid2) from an
//!   offset still in the backlog, then the backlog from there;
//! - else `+FULLRESYNC <replid> <offset>`, the snapshot (`snapshot`) as `$<len>\r\n<payload>`,
//!   the writes captured meanwhile, then the backlog. While the snapshot is made, a `\n` goes out
//!   every second (as Redis's keepalive during BGSAVE), which the replica skips.
//!
//! Memory per replica is bounded: one chunk in flight, the capture's limit during a full resync,
//! and otherwise nothing but the shared backlog. A replica that falls behind the backlog is
//! disconnected (it then resyncs), as Redis disconnects one past its output buffer limit.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tessera_proto::resp::request::{self, RequestLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{snapshot, LinkState, ReplicaLink, ReplicaState};
use crate::state::NodeState;

/// Most bytes of the stream sent per write.
const CHUNK: usize = 64 * 1024;
/// A replica that takes nothing for this long is dropped (Redis's repl-timeout).
const REPL_TIMEOUT: Duration = Duration::from_secs(60);
/// The keepalive period while a snapshot is made.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// What the replica said about itself before PSYNC.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub ip: String,
    /// REPLCONF listening-port.
    pub listening_port: u16,
}

/// Serves the replica that sent `PSYNC replid offset` on `stream` (`input` holds what it sent
/// after), until it disconnects, falls behind, or `stop` (shutdown, or this node follows a
/// master).
pub async fn serve_replica(
    mut stream: TcpStream,
    mut input: BytesMut,
    state: Arc<NodeState>,
    peer: PeerInfo,
    replid: Bytes,
    offset: Bytes,
    stop: CancellationToken,
) {
    let repl = &state.replication;
    let Some(wanted) = std::str::from_utf8(&offset)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    else {
        let _ = stream
            .write_all(b"-ERR value is not an integer or out of range\r\n")
            .await;
        return;
    };
    if repl.is_replica() && repl.link().map(|l| l.state()) != Some(LinkState::Connected) {
        let _ = stream
            .write_all(b"-NOMASTERLINK Can't SYNC while not connected with my master\r\n")
            .await;
        return;
    }
    // Ends with the bus (shutdown) or with our serving replicas (this node follows a master).
    let serving = repl.serving.lock().child_token();
    let bus = stop;
    let stop = serving.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = bus.cancelled() => serving.cancel(),
            _ = serving.cancelled() => {}
        }
    });
    let link = repl.register_replica(peer.ip.clone(), peer.listening_port);
    let outcome = serve(
        &mut stream,
        &mut input,
        &state,
        &link,
        &replid,
        wanted,
        &stop,
    )
    .await;
    repl.unregister_replica(link.id);
    stop.cancel();
    match outcome {
        Ok(()) => tracing::debug!(replica = %peer.ip, "replica link closed"),
        Err(reason) => {
            tracing::warn!(replica = %peer.ip, port = peer.listening_port, %reason, "replica link dropped")
        }
    }
}

async fn serve(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    state: &Arc<NodeState>,
    link: &Arc<ReplicaLink>,
    replid: &[u8],
    wanted: i64,
    stop: &CancellationToken,
) -> Result<(), String> {
    let repl = &state.replication;
    let ids = repl.ids();
    let asked = std::str::from_utf8(replid).unwrap_or("?");
    let continues =
        wanted > 0 && ids.serves(asked, wanted as u64) && repl.log.can_continue_from(wanted as u64);
    let mut next = if continues {
        let reply = format!("+CONTINUE {}\r\n", ids.replid);
        write(stream, reply.as_bytes(), stop).await?;
        tracing::info!(replica = %link.ip, from = wanted, "partial resync accepted");
        wanted as u64
    } else {
        full_resync(stream, state, link, stop).await?
    };
    link.set_state(ReplicaState::Online);

    let log = &repl.log;
    let _subscription = log.subscribe();
    let mut out = Vec::with_capacity(CHUNK);
    loop {
        let appended = log.appended().notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        out.clear();
        let n = log
            .read_from(next, CHUNK, &mut out)
            .map_err(|e| format!("it fell behind the backlog: {e}"))?;
        if n > 0 {
            write(stream, &out, stop).await?;
            next += n as u64;
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = &mut appended => {}
            read = stream.read_buf(input) => {
                if read.map_err(|e| e.to_string())? == 0 {
                    return Ok(());
                }
                read_acks(state, link, input)?;
            }
        }
    }
}

/// Sends the snapshot and what was written meanwhile; returns the position the stream goes on
/// from.
async fn full_resync(
    stream: &mut TcpStream,
    state: &Arc<NodeState>,
    link: &Arc<ReplicaLink>,
    stop: &CancellationToken,
) -> Result<u64, String> {
    let repl = &state.replication;
    let capture = repl.log.begin_capture(repl.capture_limit);
    let result = async {
        let job_state = Arc::clone(state);
        let mut job = tokio::task::spawn_blocking(move || snapshot::build(&job_state, capture));
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let snapshot = loop {
            tokio::select! {
                built = &mut job => break built.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?,
                _ = keepalive.tick() => write(stream, b"\n", stop).await?,
            }
        };
        // The replid of the history the snapshot belongs to.
        let replid = repl.ids().replid;
        let header = format!(
            "+FULLRESYNC {replid} {}\r\n${}\r\n",
            snapshot.offset, snapshot.len
        );
        tracing::info!(replica = %link.ip, offset = snapshot.offset, bytes = snapshot.len, "full resync: sending the snapshot");
        link.set_state(ReplicaState::SendBulk);
        write(stream, header.as_bytes(), stop).await?;
        let mut file = tokio::fs::File::from_std(snapshot.file);
        let mut buf = vec![0u8; CHUNK];
        let mut left = snapshot.len;
        while left > 0 {
            let n = file.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the snapshot file ended early".to_string());
            }
            let n = n.min(left as usize);
            write(stream, &buf[..n], stop).await?;
            left -= n as u64;
        }
        let (tail, end) = repl
            .log
            .capture_end(capture)
            .ok_or("writes during the sync went past the replica output limit")?;
        write(stream, &tail, stop).await?;
        Ok(end + 1)
    }
    .await;
    if result.is_err() {
        repl.log.capture_abort(capture);
    }
    result
}

/// Takes the REPLCONF ACKs the replica sent; anything else from it is ignored, as Redis ignores
/// a replica's other commands.
fn read_acks(state: &NodeState, link: &ReplicaLink, input: &mut BytesMut) -> Result<(), String> {
    let limits = RequestLimits::default();
    while let Some(request) = request::parse(input, &limits).map_err(|e| e.to_string())? {
        let args = &request.args;
        if args.len() >= 3
            && args[0].eq_ignore_ascii_case(b"REPLCONF")
            && args[1].eq_ignore_ascii_case(b"ACK")
        {
            if let Some(offset) = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                state.replication.acked(link, offset);
            }
        }
    }
    Ok(())
}

async fn write(
    stream: &mut TcpStream,
    bytes: &[u8],
    stop: &CancellationToken,
) -> Result<(), String> {
    tokio::select! {
        _ = stop.cancelled() => Err("the node stops serving replicas".to_string()),
        written = tokio::time::timeout(REPL_TIMEOUT, stream.write_all(bytes)) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("it took nothing for the replication timeout".to_string()),
        },
    }
}
