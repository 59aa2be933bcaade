//! The proxy's own clients, for CLIENT LIST / KILL and maxclients: each connection registers a
//! handle with what CLIENT LIST shows of it (refreshed by the connection once per batch of
//! requests, never per command) and a token that CLIENT KILL cancels.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

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
    /// Cancelled by CLIENT KILL: the connection closes once the replies before it are out.
    /// A child of the server's shutdown token (cancelled with it too).
    pub kill: CancellationToken,
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

    /// One CLIENT LIST line, in Redis 7.0's field order (`fd` is 0: the proxy does not expose
    /// descriptors; memory fields count the query buffer only).
    pub fn describe(&self, state: &ClientState) -> String {
        let now = Instant::now();
        let mut flags = String::new();
        if ClientHandle::is_pubsub(state) {
            flags.push('P');
        }
        if state.multi >= 0 {
            flags.push('x');
        }
        if state.blocked {
            flags.push('b');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={flags} db=0 sub={} psub={} ssub={} multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp={} obl=0 oll=0 omem=0 tot-mem={} events=r cmd={} user={} redir=-1 resp={}\n",
            self.id,
            self.peer,
            self.local,
            state
                .name
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default(),
            now.duration_since(self.created).as_secs(),
            now.duration_since(state.last_interaction).as_secs(),
            state.sub,
            state.psub,
            state.ssub,
            state.multi,
            state.qbuf,
            state.qbuf_free,
            state.qbuf + state.qbuf_free,
            state.qbuf,
            state.qbuf + state.qbuf_free,
            state.last_command,
            String::from_utf8_lossy(&state.user),
            state.resp,
        )
    }
}

/// Every connected client, by id (so CLIENT LIST is in id order, as Redis lists them).
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
}

impl Clients {
    /// Registers a client unless `maxclients` are already connected (Redis's check at accept:
    /// `clients >= maxclients` refuses).
    pub fn register(&self, handle: Arc<ClientHandle>, maxclients: usize) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= maxclients {
            return false;
        }
        map.insert(handle.id, handle);
        true
    }

    pub fn unregister(&self, id: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&id);
    }

    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
