//! Dedicated backend connections: one connection held by one client for a while (a transaction,
//! a WATCH, a blocking command), never shared with other clients' pipelined traffic. They are
//! pooled per backend and protocol: a connection handed back in a clean state is reused by the
//! next transaction, so a transaction costs no new TCP connection. A connection whose state is
//! unknown (a WATCH left behind, a reply still owed after a timeout) is closed instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::resp::Protocol;
use tokio::sync::oneshot;

use super::connection::{Connection, Job, JobResult};
use super::BackendLogin;
use crate::error::BackendError;

/// Idle dedicated connections kept per backend and protocol; more are closed when handed back.
const MAX_IDLE: usize = 64;

/// The idle dedicated connections of one backend, per protocol.
#[derive(Debug, Default)]
pub struct IdlePool {
    resp2: Mutex<Vec<Connection>>,
    resp3: Mutex<Vec<Connection>>,
}

impl IdlePool {
    fn list(&self, protocol: Protocol) -> &Mutex<Vec<Connection>> {
        match protocol {
            Protocol::Resp2 => &self.resp2,
            Protocol::Resp3 => &self.resp3,
        }
    }

    /// An idle live connection, if one is kept.
    fn take(&self, protocol: Protocol) -> Option<Connection> {
        let mut list = self
            .list(protocol)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = list.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, protocol: Protocol, conn: Connection) {
        let mut list = self
            .list(protocol)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if list.len() < MAX_IDLE {
            list.push(conn);
        }
    }
}

/// One connection held by one client. Dropped clean, it goes back to its backend's idle pool;
/// dropped dirty (see `set_dirty`), it is closed.
#[derive(Debug)]
pub struct Dedicated {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Option<Connection>,
    addr: Arc<str>,
    protocol: Protocol,
    /// The backend timeout (`--backend-timeout`), also the connect timeout.
    timeout: Duration,
    idle: Arc<IdlePool>,
    /// The backend connection carries state a next user must not inherit, or a reply is owed.
    dirty: AtomicBool,
    /// Requests sent whose reply was not taken: a connection owing replies is never reused.
    inflight: AtomicUsize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !self.dirty.load(Ordering::Relaxed)
                && self.inflight.load(Ordering::Relaxed) == 0
                && !conn.is_closed()
            {
                self.idle.give_back(self.protocol, conn);
            }
        }
    }
}

impl Dedicated {
    /// An idle connection of `idle`, or a new one to `addr`.
    pub(super) fn checkout(
        idle: &Arc<IdlePool>,
        addr: &Arc<str>,
        protocol: Protocol,
        connect_timeout: Duration,
        login: BackendLogin,
    ) -> Dedicated {
        let conn = idle.take(protocol).unwrap_or_else(|| {
            Connection::spawn(addr.clone(), protocol, connect_timeout, None, login)
        });
        Dedicated {
            inner: Arc::new(Inner {
                conn: Some(conn),
                addr: addr.clone(),
                protocol,
                timeout: connect_timeout,
                idle: idle.clone(),
                dirty: AtomicBool::new(false),
                inflight: AtomicUsize::new(0),
            }),
        }
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn protocol(&self) -> Protocol {
        self.inner.protocol
    }

    /// How long a reply may take (`--backend-timeout`).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Marks the connection as not reusable (or reusable again, once its state is known clean).
    pub fn set_dirty(&self, dirty: bool) {
        self.inner.dirty.store(dirty, Ordering::Relaxed);
    }

    /// Queues `request` now; requests queued on one `Dedicated` are answered in order.
    pub fn send(&self, request: Bytes) -> oneshot::Receiver<JobResult> {
        self.queue(request, false)
    }

    /// Queues `ASKING` and `request` as one unit (see `Job::asking`): the reply is the
    /// command's.
    pub fn send_asking(&self, request: Bytes) -> oneshot::Receiver<JobResult> {
        self.queue(request, true)
    }

    fn queue(&self, request: Bytes, asking: bool) -> oneshot::Receiver<JobResult> {
        let (tx, rx) = oneshot::channel();
        self.inner.inflight.fetch_add(1, Ordering::Relaxed);
        let lost = || BackendError::ConnectionLost {
            addr: self.inner.addr.to_string(),
        };
        match &self.inner.conn {
            Some(conn) => {
                if let Err(job) = conn.send(Job {
                    request,
                    asking,
                    reply: tx,
                }) {
                    let _ = job.reply.send(Err(lost()));
                }
            }
            None => {
                let _ = tx.send(Err(lost()));
            }
        }
        rx
    }

    /// Waits for a reply queued with `send`, at most `limit` (`None`: as long as it takes). A
    /// reply that did not come leaves the connection dirty.
    pub async fn wait(
        &self,
        reply: oneshot::Receiver<JobResult>,
        limit: Option<Duration>,
    ) -> JobResult {
        let result = match limit {
            Some(limit) => match tokio::time::timeout(limit, reply).await {
                Ok(r) => r,
                Err(_) => {
                    self.set_dirty(true);
                    return Err(BackendError::Timeout {
                        addr: self.inner.addr.to_string(),
                    });
                }
            },
            None => reply.await,
        };
        let result = result.unwrap_or_else(|_| {
            Err(BackendError::ConnectionLost {
                addr: self.inner.addr.to_string(),
            })
        });
        match result {
            Ok(_) => {
                self.inner.inflight.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) => self.set_dirty(true),
        }
        result
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&self, request: Bytes, limit: Option<Duration>) -> JobResult {
        let rx = self.send(request);
        self.wait(rx, limit).await
    }

    /// Another handle on the same connection (for a reply future that outlives a borrow).
    pub fn share(&self) -> Dedicated {
        Dedicated {
            inner: self.inner.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    /// A backend answering `+PONG` per 14-byte PING, on any number of connections.
    async fn backend() -> std::io::Result<Arc<str>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024];
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
        Ok(addr.into())
    }

    fn idle_count(idle: &IdlePool) -> usize {
        idle.resp2.lock().map(|l| l.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn clean_connections_are_reused_and_dirty_ones_closed() {
        let addr = backend().await.expect("backend");
        let idle = Arc::new(IdlePool::default());
        let timeout = Duration::from_secs(1);
        let checkout = || {
            Dedicated::checkout(
                &idle,
                &addr,
                Protocol::Resp2,
                timeout,
                BackendLogin::default(),
            )
        };
        let conn = checkout();
        let reply = conn.call(Bytes::from_static(PING), Some(timeout)).await;
        assert_eq!(&reply.expect("reply")[..], b"+PONG\r\n");
        drop(conn);
        assert_eq!(idle_count(&idle), 1);
        // Taken again (not a new one), then left dirty: closed, not kept.
        let conn = checkout();
        assert_eq!(idle_count(&idle), 0);
        conn.set_dirty(true);
        drop(conn);
        assert_eq!(idle_count(&idle), 0);
        // A reply still owed (its future dropped) also keeps it out of the pool.
        let conn = checkout();
        let owed = conn.send(Bytes::from_static(PING));
        drop(owed);
        drop(conn);
        assert_eq!(idle_count(&idle), 0);
    }
}
