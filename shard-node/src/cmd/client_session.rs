//! What a client connection carries between its commands: protocol, authentication, its
//! subscriptions, the transaction it has open, the keys it watches and a blocking wait.

use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tessera_proto::resp::{Frame, Protocol};

use crate::server::{ClientInfo, ClientStatus};
use crate::state::NodeState;

/// The rest of a command that awaits another process or event, run by the connection with the
/// node's state and the client's session; it resolves to the command's reply.
pub type Deferred =
    Box<dyn for<'a> FnOnce(&'a NodeState, &'a mut ClientSession) -> BoxFuture<'a, Frame> + Send>;

/// What a connection carries between its commands.
pub struct ClientSession {
    /// Shared with the server's client registry, for CLIENT LIST.
    pub info: Arc<Mutex<ClientInfo>>,
    pub id: u64,
    /// The protocol replies are encoded in; HELLO changes it.
    pub protocol: Protocol,
    /// Set by QUIT: the connection writes the reply, then closes.
    pub quit: bool,
    /// Left by a blocking command (BLPOP, ...) that found no data: the connection awaits it
    /// before it runs the client's next command (see `keyspace::blocking`).
    pub blocked: Option<crate::keyspace::blocking::Blocked>,
    /// Redis's CLIENT_DENY_BLOCKING: a blocking command answers as if it timed out at once (AOF
    /// replay and other detached sessions, and later MULTI).
    pub deny_blocking: bool,
    /// Sent the node secret (AUTH); only checked when the node has one.
    pub authenticated: bool,
    /// Channels, patterns and shard channels subscribed, and the mailbox messages arrive in.
    pub pubsub: crate::pubsub::ClientSubscriptions,
    /// The transaction opened by MULTI, until EXEC or DISCARD.
    pub multi: Option<crate::transaction::Multi>,
    /// The keys this client WATCHes.
    pub watched: crate::transaction::Watched,
    /// READONLY was sent (READWRITE clears it): the client accepts reads from a replica. The
    /// cluster rule reads it where a replica would otherwise redirect to its master.
    pub readonly: bool,
    /// ASKING was the previous command (outside MULTI; inside, until EXEC): the next command may
    /// use a slot this node is importing, as Redis's CLIENT_ASKING.
    pub asking: bool,
    /// The replication offset after this client's last write (Redis's `woff`): what WAIT waits
    /// for replicas to acknowledge.
    pub woff: u64,
    /// Left by a WAIT that must block: the connection awaits it before the next command.
    pub waiting: Option<crate::replication::WaitFor>,
    /// Left by a command whose reply waits on another process (CLUSTER SETSLOT on the control
    /// plane, MIGRATE on its target) or on its keys of a slot being moved landing on the target:
    /// the connection awaits it before the next command.
    pub deferred: Option<Deferred>,
    /// What `info.status` was last set to (see `publish_status`).
    published: ClientStatus,
}

impl ClientSession {
    pub fn new(info: Arc<Mutex<ClientInfo>>) -> ClientSession {
        let id = info.lock().id;
        ClientSession {
            info,
            id,
            protocol: Protocol::Resp2,
            quit: false,
            blocked: None,
            deny_blocking: false,
            authenticated: false,
            pubsub: crate::pubsub::ClientSubscriptions::new(id),
            multi: None,
            watched: crate::transaction::Watched::default(),
            readonly: false,
            asking: false,
            woff: 0,
            waiting: None,
            deferred: None,
            published: ClientStatus::default(),
        }
    }

    /// Shows this client's subscriptions, open transaction and blocking wait to CLIENT LIST.
    /// Called after every command: a comparison, and the shared lock only when one changed.
    pub fn publish_status(&mut self) {
        let (sub, psub, ssub) = self.pubsub.counts();
        let status = ClientStatus {
            sub,
            psub,
            ssub,
            multi: self.multi.as_ref().map(|multi| multi.queued.len()),
            blocked: self.blocked.is_some() || self.waiting.is_some(),
        };
        if status != self.published {
            self.published = status;
            self.info.lock().status = status;
        }
    }

    /// Whether this client must still send the node secret (as Redis's `authRequired`): it has
    /// not, and the node has one. Such a client gets NOAUTH and may send small commands only.
    pub fn must_authenticate(&self, state: &NodeState) -> bool {
        !self.authenticated && state.stats.node_secret.is_some()
    }

    /// A session belonging to no connection (AOF replay, unit tests).
    pub fn detached() -> ClientSession {
        let mut session = ClientSession::new(Arc::new(Mutex::new(ClientInfo::new(
            0,
            String::new(),
            String::new(),
        ))));
        // Nobody would await a blocked command.
        session.deny_blocking = true;
        session
    }
}
