//! One pipelined connection to a backend: requests go out in the order they are queued, and the
//! replies, found with `frame::check` and never fully parsed, are handed back in that same order.
//!
//! The connection is a single task owning the socket. Its writer half drains the job queue in
//! batches (one `write_all` per batch, gathered over one extra poll of the runtime's sockets: see
//! `gather_more`) and, before writing, passes each job's reply sender to the reader half, so a
//! reply always finds its sender waiting. When either half fails the task ends:
//! queued and in-flight jobs get an error (their senders are dropped or answered), and the handle
//! reports `is_closed`, so the pool replaces it lazily on next use.
//!
//! A pooled connection has a reply deadline (`--backend-timeout`): one watchdog per connection,
//! not a timer per request, checks how long its oldest in-flight request has waited, and a
//! connection whose backend stops answering is closed, failing what it owes with `Timeout` (a hung
//! backend never sticks a client). The writer stamps each batch with one clock read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tessera_proto::resp::connect::Login;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::{self, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::BackendLogin;
use crate::error::BackendError;

/// The result a job's sender receives.
pub type JobResult = Result<Bytes, BackendError>;

/// One request: the encoded command and where its raw reply goes.
#[derive(Debug)]
pub struct Job {
    pub request: Bytes,
    /// Send `ASKING` right before the command, in the same write, and keep its `+OK` from the
    /// caller: the two are one unit on the connection, so no other client's command (pipelined
    /// on the same connection) can come between them and take the flag ASKING sets.
    pub asking: bool,
    pub reply: oneshot::Sender<JobResult>,
}

/// `ASKING`, encoded: written only by the connection, as the first half of an asking job.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// Most jobs written in one batch.
const BATCH: usize = 256;

/// A handle to a connection task; cheap to share.
#[derive(Debug)]
pub struct Connection {
    jobs: mpsc::UnboundedSender<Job>,
    /// Cancelled by `abandon`: the task ends and fails what it owes with `Demoted`.
    abandoned: CancellationToken,
}

impl Connection {
    /// Starts a connection task to `addr`. Connecting happens in the task: jobs queued meanwhile
    /// wait, and fail if the connection cannot be made within `connect_timeout`. With a
    /// `reply_deadline`, a request unanswered for that long closes the connection (`Timeout`);
    /// without one (dedicated connections, whose blocking commands wait as long as they ask) the
    /// caller bounds its own waits. With a `secret`, the connection first logs in with AUTH.
    pub fn spawn(
        addr: Arc<str>,
        protocol: Protocol,
        connect_timeout: Duration,
        reply_deadline: Option<Duration>,
        login: BackendLogin,
    ) -> Connection {
        let (jobs, rx) = mpsc::unbounded_channel();
        let abandoned = CancellationToken::new();
        tokio::spawn(run(
            addr,
            protocol,
            connect_timeout,
            reply_deadline,
            login,
            rx,
            abandoned.clone(),
        ));
        Connection { jobs, abandoned }
    }

    /// False once the task has ended; the pool then makes a new connection.
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Queues a job; gives it back when the task has ended.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|e| e.0)
    }

    /// Ends the connection now: every request queued or written and not yet answered fails with
    /// `Demoted` instead of waiting for the reply deadline.
    pub fn abandon(&self) {
        self.abandoned.cancel();
    }
}

async fn run(
    addr: Arc<str>,
    protocol: Protocol,
    connect_timeout: Duration,
    reply_deadline: Option<Duration>,
    login: BackendLogin,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    abandoned: CancellationToken,
) {
    let demoted = || BackendError::Demoted {
        addr: addr.to_string(),
    };
    let connected = tokio::select! {
        biased;
        () = abandoned.cancelled() => Err(demoted()),
        connected = connect(&addr, protocol, connect_timeout, &login) => connected,
    };
    let error = match connected {
        Ok((socket, leftover)) => {
            serve(
                &addr,
                socket,
                leftover,
                reply_deadline,
                &mut jobs,
                &abandoned,
            )
            .await
        }
        Err(error) => error,
    };
    tracing::debug!(%addr, %error, "backend connection ended");
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(error.clone()));
    }
}

/// Connects and logs in (`AUTH` with the node secret, `HELLO 3` for RESP3) as every service
/// does (`tessera_proto::resp::connect`); returns any bytes read past the handshake's replies.
pub(crate) async fn connect(
    addr: &str,
    protocol: Protocol,
    connect_timeout: Duration,
    login: &BackendLogin,
) -> Result<(TcpStream, BytesMut), BackendError> {
    let login = Login {
        secret: login.secret.as_deref().map(str::as_bytes),
        protocol,
        readonly: login.readonly,
    };
    resp::connect::connect(addr, login, connect_timeout)
        .await
        .map_err(|error| BackendError::Connect {
            addr: addr.to_string(),
            reason: error.to_string(),
        })
}

fn frame_len(buf: &[u8]) -> Result<Option<usize>, frame::FrameError> {
    if buf.is_empty() {
        return Ok(None);
    }
    frame::check(buf, &FrameLimits::default())
}

/// A request written and not yet answered.
#[derive(Debug)]
struct Owed {
    reply: oneshot::Sender<JobResult>,
    /// When its batch was written.
    written_at: Instant,
    /// An `ASKING` reply comes first, and is not the caller's.
    asking: bool,
}

/// In-flight requests in the order they were written. Shared by the two halves of one task
/// (never contended).
type Inflight = Mutex<VecDeque<Owed>>;

fn lock(inflight: &Inflight) -> std::sync::MutexGuard<'_, VecDeque<Owed>> {
    inflight.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lets the runtime poll its sockets once before a batch is written, then takes the jobs that
/// arrived meanwhile (up to `BATCH`). `yield_now` defers this task until after the I/O driver has
/// been polled, so clients whose requests reached the proxy in the meantime run first and queue
/// theirs: the node gets one larger write instead of several small ones, and is woken once for
/// them. A node's CPU per request follows how often it is woken (each wake-up is an `epoll_wait`,
/// a read and a write); with 50 clients at -P 1 this cut the nodes' system calls per request
/// from about 0.75 to 0.55 and the proxy's own from 2.8 to 2.6 (`docs/benchmarks.md`). When
/// nothing else is ready the poll returns at once, so a lone client waits only that one
/// non-blocking poll.
async fn gather_more(jobs: &mut mpsc::UnboundedReceiver<Job>, batch: &mut Vec<Job>) {
    tokio::task::yield_now().await;
    while batch.len() < BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Runs both halves (and the watchdog, with a deadline) until one fails; returns the error that
/// ends the connection.
async fn serve(
    addr: &Arc<str>,
    socket: TcpStream,
    mut read_buf: BytesMut,
    reply_deadline: Option<Duration>,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    abandoned: &CancellationToken,
) -> BackendError {
    let (mut reader, mut writer) = socket.into_split();
    let inflight: Inflight = Mutex::new(VecDeque::new());
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
            if batch.len() < BATCH {
                gather_more(jobs, &mut batch).await;
            }
            // Before writing, so a reply always finds its sender waiting.
            let written_at = Instant::now();
            {
                let mut inflight = lock(&inflight);
                for job in batch.drain(..) {
                    if job.asking {
                        out.extend_from_slice(ASKING);
                    }
                    out.extend_from_slice(&job.request);
                    inflight.push_back(Owed {
                        reply: job.reply,
                        written_at,
                        asking: job.asking,
                    });
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
                        let mut owed = lock(&inflight);
                        match owed.front_mut() {
                            // ASKING's reply: its command's comes next. (Were it refused, the
                            // command's own reply says where to go.)
                            Some(front) if front.asking => front.asking = false,
                            Some(_) => {
                                if let Some(front) = owed.pop_front() {
                                    let _ = front.reply.send(Ok(reply));
                                }
                            }
                            // A reply nobody asked for: the stream is out of step.
                            None => {
                                return BackendError::Protocol {
                                    addr: addr.to_string(),
                                }
                            }
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

    // Wakes a few times per deadline (not per request): a request is failed between one and one
    // and a quarter deadlines after it was written.
    let watchdog = async {
        let Some(deadline) = reply_deadline else {
            return std::future::pending().await;
        };
        let period = (deadline / 4).max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let now = ticks.tick().await;
            let overdue = lock(&inflight)
                .front()
                .is_some_and(|owed| now.saturating_duration_since(owed.written_at) >= deadline);
            if overdue {
                return BackendError::Timeout {
                    addr: addr.to_string(),
                };
            }
        }
    };

    // Biased, abandonment first: `Pool::abandon` drops the handle as it cancels, which also ends
    // the writer half, and the client must be told why (Demoted), not that the link was lost.
    let error = tokio::select! {
        biased;
        () = abandoned.cancelled() => BackendError::Demoted {
            addr: addr.to_string(),
        },
        e = write_half => e,
        e = read_half => e,
        e = watchdog => e,
    };
    // Requests written and not answered get the error.
    for owed in lock(&inflight).drain(..) {
        let _ = owed.reply.send(Err(error.clone()));
    }
    error
}
