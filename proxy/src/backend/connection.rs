//! One pipelined connection to a backend: requests go out in the order they are queued, and the
//! replies, found with `frame::check` and never fully parsed, are handed back in that same order.
//!
//! The connection is a single task owning the socket. Its writer half drains the job queue in
//! batches (one `write_all` per batch) and, before writing, passes each job's reply sender to the
//! reader half, so a reply always finds its sender waiting. When either half fails the task ends:
//! queued and in-flight jobs get an error (their senders are dropped or answered), and the handle
//! reports `is_closed`, so the pool replaces it lazily on next use.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::BackendError;

/// The result a job's sender receives.
pub type JobResult = Result<Bytes, BackendError>;

/// One request: the encoded command and where its raw reply goes.
#[derive(Debug)]
pub struct Job {
    pub request: Bytes,
    pub reply: oneshot::Sender<JobResult>,
}

/// Most jobs written in one batch.
const BATCH: usize = 256;

/// A handle to a connection task; cheap to share.
#[derive(Debug)]
pub struct Connection {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Connection {
    /// Starts a connection task to `addr`. Connecting happens in the task: jobs queued meanwhile
    /// wait, and fail if the connection cannot be made within `connect_timeout`.
    pub fn spawn(
        addr: Arc<str>,
        protocol: Protocol,
        connect_timeout: Duration,
        secret: Option<Arc<str>>,
    ) -> Connection {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(addr, protocol, connect_timeout, secret, rx));
        Connection { jobs }
    }

    /// False once the task has ended; the pool then makes a new connection.
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Queues a job; gives it back when the task has ended.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|e| e.0)
    }
}

async fn run(
    addr: Arc<str>,
    protocol: Protocol,
    connect_timeout: Duration,
    secret: Option<Arc<str>>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    let error = match connect(&addr, protocol, connect_timeout, secret.as_deref()).await {
        Ok((socket, leftover)) => serve(&addr, socket, leftover, &mut jobs).await,
        Err(error) => error,
    };
    tracing::debug!(%addr, %error, "backend connection ended");
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(error.clone()));
    }
}

/// Connects; with a node secret sends `AUTH <secret>` first (a refusal fails the connection);
/// for RESP3 sends `HELLO 3`; consumes their replies and returns any bytes read past them.
pub(crate) async fn connect(
    addr: &str,
    protocol: Protocol,
    connect_timeout: Duration,
    secret: Option<&str>,
) -> Result<(TcpStream, BytesMut), BackendError> {
    let connect_error = |reason: String| BackendError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let mut socket = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return Err(connect_error(e.to_string())),
        Err(_) => return Err(connect_error("timed out".to_string())),
    };
    let _ = socket.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    if let Some(secret) = secret {
        let mut auth = BytesMut::new();
        crate::forward::encode(2, [&b"AUTH"[..], secret.as_bytes()].into_iter(), &mut auth);
        let handshake = async {
            socket.write_all(&auth).await?;
            loop {
                if let Some(len) = frame_len(&buf).map_err(std::io::Error::other)? {
                    if buf.first() == Some(&b'-') {
                        let text = String::from_utf8_lossy(&buf[1..len]).trim_end().to_string();
                        return Err(std::io::Error::other(format!("AUTH refused: {text}")));
                    }
                    buf.advance(len);
                    return Ok(());
                }
                if socket.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        };
        match tokio::time::timeout(connect_timeout, handshake).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Err(_) => return Err(connect_error("AUTH timed out".to_string())),
        }
    }
    if protocol == Protocol::Resp3 {
        let hello = async {
            socket
                .write_all(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
                .await?;
            loop {
                if let Some(len) = frame_len(&buf).map_err(std::io::Error::other)? {
                    if buf.first() == Some(&b'-') {
                        return Err(std::io::Error::other("HELLO 3 refused"));
                    }
                    buf.advance(len);
                    return Ok(());
                }
                if socket.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        };
        match tokio::time::timeout(connect_timeout, hello).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Err(_) => return Err(connect_error("HELLO 3 timed out".to_string())),
        }
    }
    Ok((socket, buf))
}

fn frame_len(buf: &[u8]) -> Result<Option<usize>, frame::FrameError> {
    if buf.is_empty() {
        return Ok(None);
    }
    frame::check(buf, &FrameLimits::default())
}

/// Runs both halves until one fails; returns the error that ends the connection.
async fn serve(
    addr: &Arc<str>,
    socket: TcpStream,
    mut read_buf: BytesMut,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
) -> BackendError {
    let (mut reader, mut writer) = socket.into_split();
    let (inflight_tx, mut inflight_rx) = mpsc::unbounded_channel::<oneshot::Sender<JobResult>>();
    let lost = || BackendError::ConnectionLost {
        addr: addr.to_string(),
    };

    let write_half = async {
        let mut batch = Vec::with_capacity(BATCH);
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            if jobs.recv_many(&mut batch, BATCH).await == 0 {
                // Every handle is gone: nobody can send more.
                return lost();
            }
            for job in batch.drain(..) {
                out.extend_from_slice(&job.request);
                if let Err(e) = inflight_tx.send(job.reply) {
                    let _ = e.0.send(Err(lost()));
                }
            }
            if writer.write_all(&out).await.is_err() {
                return lost();
            }
            out.clear();
        }
    };

    let read_half = async {
        loop {
            loop {
                match frame_len(&read_buf) {
                    Ok(Some(len)) => {
                        let reply = read_buf.split_to(len).freeze();
                        if reply.first() == Some(&b'>') {
                            // A RESP3 push (no request of ours asked for it): not a reply.
                            continue;
                        }
                        match inflight_rx.recv().await {
                            Some(sender) => {
                                let _ = sender.send(Ok(reply));
                            }
                            None => return lost(),
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        return BackendError::Protocol {
                            addr: addr.to_string(),
                        }
                    }
                }
            }
            // Replies are split off the front: keep the spare room large so reads stay large.
            if read_buf.capacity() - read_buf.len() < 4 * 1024 {
                read_buf.reserve(16 * 1024);
            }
            match reader.read_buf(&mut read_buf).await {
                Ok(0) | Err(_) => return lost(),
                Ok(_) => {}
            }
        }
    };

    let error = tokio::select! {
        e = write_half => e,
        e = read_half => e,
    };
    // In-flight senders still queued get the error; those already taken by the reader were
    // answered. Dropping the receiver afterwards would answer them with a RecvError anyway.
    inflight_rx.close();
    while let Ok(sender) = inflight_rx.try_recv() {
        let _ = sender.send(Err(error.clone()));
    }
    error
}
