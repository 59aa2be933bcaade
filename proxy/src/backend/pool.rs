//! A small set of pipelined connections to one backend for one protocol, created lazily and
//! replaced lazily after they die. Each client uses one "lane" (its id modulo the pool size), so a
//! client's commands to one backend travel on one connection and keep their order there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tessera_proto::resp::Protocol;
use tokio::sync::oneshot;

use super::connection::{Connection, Job, JobResult};
use super::BackendLogin;
use crate::error::BackendError;

/// The connections to one backend address for one protocol.
#[derive(Debug)]
pub struct Pool {
    addr: Arc<str>,
    protocol: Protocol,
    /// The backend timeout: for connecting, and for each reply (the connection's deadline).
    connect_timeout: Duration,
    /// How each new connection logs in.
    login: BackendLogin,
    lanes: Box<[ArcSwapOption<Connection>]>,
}

impl Pool {
    pub fn new(
        addr: Arc<str>,
        protocol: Protocol,
        size: usize,
        connect_timeout: Duration,
        login: BackendLogin,
    ) -> Pool {
        let lanes = (0..size.max(1)).map(|_| ArcSwapOption::empty()).collect();
        Pool {
            addr,
            protocol,
            connect_timeout,
            login,
            lanes,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Ends every connection of the pool, failing what they owe with `Demoted`; the next call
    /// connects afresh.
    pub fn abandon(&self) {
        for lane in self.lanes.iter() {
            if let Some(conn) = lane.swap(None) {
                conn.abandon();
            }
        }
    }

    /// Queues `request` (behind `ASKING`, as one unit, when `asking`) on the connection of
    /// `lane`, (re)connecting it if needed. Never blocks: the returned future resolves with the
    /// raw reply bytes.
    pub fn call(&self, request: Bytes, asking: bool, lane: usize) -> ReplyFuture {
        let (tx, rx) = oneshot::channel();
        let mut job = Job {
            request,
            asking,
            reply: tx,
        };
        let slot = &self.lanes[lane % self.lanes.len()];
        // Two tries: a connection found dead is replaced once.
        for _ in 0..2 {
            let current = slot.load_full();
            let conn = match current {
                Some(conn) if !conn.is_closed() => conn,
                stale => {
                    let fresh = Arc::new(Connection::spawn(
                        self.addr.clone(),
                        self.protocol,
                        self.connect_timeout,
                        Some(self.connect_timeout),
                        self.login.clone(),
                    ));
                    // Clients race to replace a missing or dead connection: only one replacement
                    // may win, or a loser's connection would lose its last handle (and with it the
                    // replies to the requests already queued on it) when the winner's is stored.
                    let previous = slot.compare_and_swap(&stale, Some(fresh.clone()));
                    let won = match (&*previous, &stale) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    };
                    match &*previous {
                        Some(winner) if !won => winner.clone(),
                        _ => fresh,
                    }
                }
            };
            match conn.send(job) {
                Ok(()) => {
                    return ReplyFuture {
                        rx: Some(rx),
                        addr: self.addr.clone(),
                    }
                }
                Err(back) => job = back,
            }
        }
        let _ = job.reply.send(Err(BackendError::ConnectionLost {
            addr: self.addr.to_string(),
        }));
        ReplyFuture {
            rx: Some(rx),
            addr: self.addr.clone(),
        }
    }
}

/// Resolves with a backend's raw reply, or the error that kept it from coming.
#[derive(Debug)]
pub struct ReplyFuture {
    rx: Option<oneshot::Receiver<JobResult>>,
    addr: Arc<str>,
}

impl Future for ReplyFuture {
    type Output = JobResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<JobResult> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(Err(BackendError::ConnectionLost {
                addr: self.addr.to_string(),
            }));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.rx = None;
                Poll::Ready(result.unwrap_or_else(|_| {
                    Err(BackendError::ConnectionLost {
                        addr: self.addr.to_string(),
                    })
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend that answers `+PONG` to each request on a connection, then closes after
    /// `per_connection` replies.
    async fn flaky_backend(per_connection: usize) -> std::io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(async move {
            for _ in 0..10 {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut answered = 0;
                let mut buf = vec![0u8; 1024];
                while answered < per_connection {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            // Each test request is one `*1\r\n$4\r\nPING\r\n` (14 bytes).
                            for _ in 0..n / 14 {
                                let _ = socket.write_all(b"+PONG\r\n").await;
                                answered += 1;
                            }
                        }
                    }
                }
            }
        });
        Ok(addr)
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    #[tokio::test]
    async fn replies_in_order_and_reconnects_after_the_backend_closes() {
        let addr = flaky_backend(2).await.expect("backend");
        let pool = Pool::new(
            addr.into(),
            Protocol::Resp2,
            1,
            Duration::from_secs(1),
            BackendLogin::default(),
        );
        let first = pool.call(Bytes::from_static(PING), false, 0);
        let second = pool.call(Bytes::from_static(PING), false, 0);
        assert_eq!(&first.await.expect("reply")[..], b"+PONG\r\n");
        assert_eq!(&second.await.expect("reply")[..], b"+PONG\r\n");
        // The backend closed after two replies: the next calls reconnect (bounded attempts).
        let mut ok = false;
        for _ in 0..20 {
            if pool.call(Bytes::from_static(PING), false, 0).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the pool never reconnected");
    }

    /// A backend that answers `+PONG` to every request, on any number of connections at once.
    async fn pong_backend() -> std::io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        for _ in 0..n / PING.len() {
                            let _ = socket.write_all(b"+PONG\r\n").await;
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn clients_racing_to_open_the_connection_all_get_replies() {
        let addr = pong_backend().await.expect("backend");
        for _ in 0..20 {
            let pool = Arc::new(Pool::new(
                addr.clone().into(),
                Protocol::Resp2,
                1,
                Duration::from_secs(1),
                BackendLogin::default(),
            ));
            let start = Arc::new(tokio::sync::Barrier::new(16));
            let calls: Vec<_> = (0..16)
                .map(|_| {
                    let (pool, start) = (pool.clone(), start.clone());
                    tokio::spawn(async move {
                        start.wait().await;
                        pool.call(Bytes::from_static(PING), false, 0).await
                    })
                })
                .collect();
            for call in calls {
                let reply = call.await.expect("task");
                assert_eq!(&reply.expect("reply")[..], b"+PONG\r\n");
            }
        }
    }

    /// A backend that takes requests and never answers: the connection's watchdog fails what it
    /// owes with `Timeout` after about the deadline (not never, not at once).
    #[tokio::test]
    async fn silent_backend_times_out_by_the_connection_watchdog() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket); // read nothing, answer nothing, keep it open
            }
        });
        let deadline = Duration::from_millis(300);
        let pool = Pool::new(
            addr.into(),
            Protocol::Resp2,
            1,
            deadline,
            BackendLogin::default(),
        );
        let started = std::time::Instant::now();
        let first = pool.call(Bytes::from_static(PING), false, 0);
        let second = pool.call(Bytes::from_static(PING), false, 0);
        // Bounded: without the watchdog these would never resolve.
        let bound = Duration::from_secs(5);
        let first = tokio::time::timeout(bound, first)
            .await
            .expect("no timeout at all");
        let second = tokio::time::timeout(bound, second)
            .await
            .expect("no timeout at all");
        for reply in [first, second] {
            assert!(
                matches!(reply, Err(BackendError::Timeout { .. })),
                "{reply:?}"
            );
        }
        let waited = started.elapsed();
        assert!(waited >= deadline, "failed after {waited:?}");
        assert!(waited < deadline * 4, "failed only after {waited:?}");
    }

    #[tokio::test]
    async fn unreachable_backend_fails_fast() {
        // Bind then drop, so nothing listens there.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let pool = Pool::new(
            addr.into(),
            Protocol::Resp2,
            1,
            Duration::from_secs(1),
            BackendLogin::default(),
        );
        let result = pool.call(Bytes::from_static(PING), false, 0).await;
        assert!(
            matches!(result, Err(BackendError::Connect { .. })),
            "{result:?}"
        );
    }
}
