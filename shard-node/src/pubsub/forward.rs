//! Cluster-wide PUBLISH, as Redis Cluster broadcasts it over its bus: a message published on one
//! node is forwarded to every other node of the topology, which delivers it to its own
//! subscribers and forwards it no further.
//!
//! One link per peer: a task holding a RESP connection to the peer's cluster bus (`bus`) and a bounded
//! queue. PUBLISH only ever `try_send`s into the queues, so a dead or slow peer never stalls it:
//! its queue fills and further messages for it are dropped (as Redis drops bus messages to a peer
//! whose link is down). On the peer the message arrives as `DELIVER_COMMAND`, which delivers
//! locally only. Links follow the topology: a peer that left or moved gets its link replaced.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tessera_proto::resp::connect::Login;
use tessera_proto::topology::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterView;

/// The internal command a peer's forwarded PUBLISH arrives as: `<name> channel message`. It
/// delivers to the receiving node's subscribers and replies with their count.
pub const DELIVER_COMMAND: &[u8] = b"TESSERA.PUBLISHLOCAL";

/// Messages queued per peer before further ones are dropped.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// Messages written to a peer in one batch.
const BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// One peer's link: where it connects, and its queue.
struct Link {
    addr: String,
    queue: mpsc::Sender<(Bytes, Bytes)>,
}

/// The links to every peer, made on first use.
#[derive(Default)]
pub struct Forwarder {
    links: Mutex<HashMap<NodeId, Link>>,
    shutdown: CancellationToken,
}

impl Forwarder {
    /// Queues `channel` / `message` for every node of the topology but this one. Never waits.
    /// New links log in with `secret`, the cluster's node secret, when there is one.
    pub fn broadcast(
        &self,
        cluster: &ClusterView,
        secret: Option<&Bytes>,
        channel: &Bytes,
        message: &Bytes,
    ) {
        let topology = cluster.topology();
        if topology.nodes().len() <= 1 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut links = self.links.lock();
        links.retain(|id, _| topology.nodes().iter().any(|node| &node.id == id));
        for node in topology.nodes() {
            if &node.id == cluster.myself() {
                continue;
            }
            let addr = node.bus_address();
            let stale = links
                .get(&node.id)
                .is_none_or(|link| link.addr != addr || link.queue.is_closed());
            if stale {
                let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
                runtime.spawn(run_link(
                    addr.clone(),
                    secret.cloned(),
                    rx,
                    self.shutdown.clone(),
                ));
                links.insert(node.id.clone(), Link { addr, queue });
            }
            let Some(link) = links.get(&node.id) else {
                continue;
            };
            if let Err(mpsc::error::TrySendError::Full(_)) =
                link.queue.try_send((channel.clone(), message.clone()))
            {
                tracing::debug!(peer = %link.addr, "pub/sub forward queue full: message dropped");
            }
        }
    }

    /// Ends every link (node shutdown).
    pub fn stop(&self) {
        self.shutdown.cancel();
        self.links.lock().clear();
    }
}

/// Opens a link's connection to a peer's cluster bus, logged in with the cluster secret as every
/// service connects (`tessera_proto::resp::connect`): a peer that refuses the secret fails the
/// link, which is retried.
pub async fn connect_peer(addr: &str, secret: Option<&Bytes>) -> std::io::Result<TcpStream> {
    let login = Login {
        secret: secret.map(|s| &s[..]),
        ..Login::default()
    };
    let (stream, _) = tessera_proto::resp::connect::connect(addr, login, CONNECT_TIMEOUT)
        .await
        .map_err(std::io::Error::other)?;
    Ok(stream)
}

/// Serves one peer's queue until the forwarder drops it or the node stops: connects, writes the
/// queued messages in batches (replies are read and discarded), and reconnects after a failure,
/// dropping what was queued meanwhile so a peer that comes back does not get stale messages.
async fn run_link(
    addr: String,
    secret: Option<Bytes>,
    mut queue: mpsc::Receiver<(Bytes, Bytes)>,
    shutdown: CancellationToken,
) {
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connect_peer(&addr, secret.as_ref()) => connected,
        };
        let ended = match connected {
            Ok(stream) => {
                tracing::debug!(peer = %addr, "pub/sub forward link up");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ended = pump(stream, &mut queue) => ended,
                }
            }
            Err(error) => Err(error),
        };
        match ended {
            Ok(()) => return, // the forwarder dropped the queue
            Err(error) => {
                tracing::debug!(peer = %addr, %error, "pub/sub forward link down");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
        loop {
            match queue.try_recv() {
                Ok(_) => continue,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// Writes queued messages to a connected peer until the queue closes (`Ok`) or the connection
/// fails (`Err`).
async fn pump(
    stream: TcpStream,
    queue: &mut mpsc::Receiver<(Bytes, Bytes)>,
) -> std::io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let discard_replies = async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            if reader.read(&mut buffer).await? == 0 {
                return Err::<(), _>(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "peer closed the link",
                ));
            }
        }
    };
    let write = async move {
        let mut batch = Vec::with_capacity(BATCH);
        let mut out = BytesMut::new();
        loop {
            if queue.recv_many(&mut batch, BATCH).await == 0 {
                return Ok(());
            }
            out.clear();
            for (channel, message) in batch.drain(..) {
                encode_deliver(&mut out, &channel, &message);
            }
            tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")
                })??;
        }
    };
    tokio::select! {
        ended = discard_replies => ended,
        ended = write => ended,
    }
}

fn encode_deliver(out: &mut BytesMut, channel: &[u8], message: &[u8]) {
    let parts = [DELIVER_COMMAND, channel, message];
    tessera_proto::resp::encode::encode_command(parts.len(), parts.into_iter(), out);
}
