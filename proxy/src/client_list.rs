//! The proxy's own clients, for CLIENT LIST / KILL and maxclients: each connection registers a
//! handle with what CLIENT LIST shows of it (refreshed by the connection once per batch of
//! requests, never per command) and the signal that CLIENT KILL and the server's shutdown raise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::task::AtomicWaker;

/// What CLIENT LIST shows of a client, as of its last batch of requests.
#[derive(Debug, Clone)]
pub struct ClientState {
    pub name: Option<Bytes>,
    pub user: Bytes,
    pub resp: u8,
    pub last_command: &'static str,
    pub last_interaction: Instant,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// Commands queued in MULTI, or -1 outside a transaction.
    pub multi: i64,
    /// Blocked on a blocking command (or held by another exclusive reply).
    pub blocked: bool,
    pub qbuf: usize,
    pub qbuf_free: usize,
}

/// One registered connection.
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub created: Instant,
    pub state: Mutex<ClientState>,
    /// Raised by CLIENT KILL and by the server's shutdown.
    pub stop: StopSignal,
}

/// Why a connection is told to end, in rising precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// The server shuts down: read no more, write the replies owed, then close.
    Shutdown = 1,
    /// CLIENT KILL (or ACL DELUSER of its user): close at once.
    Kill = 2,
}

/// Tells one connection to end. The connection looks at it at every wake-up, so while nobody
/// asked it costs an atomic load and a waker check (a cancellation token's future, polled as
/// often, takes a lock each time: about 350 instructions per proxied request).
#[derive(Debug, Default)]
pub struct StopSignal {
    asked: AtomicU8,
    waker: AtomicWaker,
}

impl StopSignal {
    /// Asks the connection to end; a kill overrides a shutdown, never the other way round.
    pub fn ask(&self, stop: Stop) {
        self.asked.fetch_max(stop as u8, Ordering::AcqRel);
        self.waker.wake();
    }

    fn asked(&self) -> Option<Stop> {
        match self.asked.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Stop::Shutdown),
            _ => Some(Stop::Kill),
        }
    }

    /// Ready with the strongest request once one was made.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<Stop> {
        if let Some(stop) = self.asked() {
            return Poll::Ready(stop);
        }
        self.waker.register(cx.waker());
        // Asked between the first look and the registration: that wake-up went elsewhere.
        self.asked().map_or(Poll::Pending, Poll::Ready)
    }
}

impl ClientHandle {
    pub fn snapshot(&self) -> ClientState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut ClientState)) {
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A subscriber (Redis's CLIENT_PUBSUB: TYPE pubsub, flag P).
    pub fn is_pubsub(state: &ClientState) -> bool {
        state.sub + state.psub + state.ssub > 0
    }

    /// One CLIENT LIST / INFO line (`fd` is 0: the proxy does not expose descriptors; memory
    /// fields count the query buffer only).
    pub fn describe(&self, state: &ClientState) -> String {
        let now = Instant::now();
        tessera_proto::client::ClientLine {
            id: self.id,
            addr: self.peer.to_string(),
            laddr: self.local.to_string(),
            name: state.name.as_deref().unwrap_or_default(),
            age_secs: now.duration_since(self.created).as_secs(),
            idle_secs: now.duration_since(state.last_interaction).as_secs(),
            pubsub: ClientHandle::is_pubsub(state),
            multi: usize::try_from(state.multi).ok(),
            blocked: state.blocked,
            sub: state.sub,
            psub: state.psub,
            ssub: state.ssub,
            qbuf: state.qbuf,
            qbuf_free: state.qbuf_free,
            cmd: state.last_command,
            user: &state.user,
            resp: state.resp,
        }
        .render()
    }
}

/// Every connected client, by id (so CLIENT LIST is in id order, as Redis lists them).
#[derive(Debug, Default)]
pub struct ClientList {
    registered: Mutex<Registered>,
}

#[derive(Debug, Default)]
struct Registered {
    by_id: BTreeMap<u64, Arc<ClientHandle>>,
    /// The server shuts down: every client registered from now on is told so at once.
    shutting_down: bool,
}

impl ClientList {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registered> {
        self.registered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a client unless `maxclients` are already connected (Redis's check at accept:
    /// `clients >= maxclients` refuses).
    pub fn register(&self, handle: Arc<ClientHandle>, maxclients: usize) -> bool {
        let mut registered = self.lock();
        if registered.by_id.len() >= maxclients {
            return false;
        }
        if registered.shutting_down {
            handle.stop.ask(Stop::Shutdown);
        }
        registered.by_id.insert(handle.id, handle);
        true
    }

    /// Tells every client, and every one that registers later, that the server shuts down.
    pub fn shut_down(&self) {
        let mut registered = self.lock();
        registered.shutting_down = true;
        for client in registered.by_id.values() {
            client.stop.ask(Stop::Shutdown);
        }
    }

    pub fn unregister(&self, id: u64) {
        self.lock().by_id.remove(&id);
    }

    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.lock().by_id.values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.lock().by_id.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
