//! One client's session: its protocol, name and lane, and the dispatch of each of its commands to
//! a local answer, a single backend, a split, or a fan-out. Dispatch queues backend requests
//! immediately, in the client's order; the replies come back through `Reply` futures that the
//! connection writes in the same order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tessera_proto::resp::Protocol;

use crate::acl::{self, Gate, User};
use crate::client_list::{ClientHandle, ClientState};
use crate::forward::{self, BoxReply, Lane};
use crate::pubsub::{self, Subscriber};
use crate::read_policy::{self, ReadPolicy};
use crate::router::{self, Route};
use crate::shared::Shared;
use crate::transaction::{self, Transaction};
use crate::wait::WrittenTo;
use crate::{blocking, fanout, local, split};

/// A reply in the client's FIFO: already known, or on its way from backends.
pub enum Reply {
    Ready(Option<Bytes>),
    /// One command forwarded to one backend: the common case, one allocation.
    Forward(forward::ForwardReply),
    /// Splits, fan-outs, and local commands that ask backends.
    Pending(BoxReply),
    /// Runs on a dedicated backend connection (transactions, WATCH, blocking commands): the
    /// connection starts it only once every earlier reply is out, and reads no further request
    /// until it is done, so the client's commands run in its order. It sends nothing until
    /// first polled.
    Exclusive(BoxReply),
}

impl Reply {
    pub fn ready(bytes: Bytes) -> Reply {
        Reply::Ready(Some(bytes))
    }

    pub fn error(text: &str) -> Reply {
        Reply::ready(forward::error_bytes(text))
    }
}

impl Future for Reply {
    type Output = Bytes;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Bytes> {
        match self.get_mut() {
            Reply::Ready(bytes) => Poll::Ready(bytes.take().unwrap_or_default()),
            Reply::Forward(future) => Pin::new(future).poll(cx),
            Reply::Pending(future) | Reply::Exclusive(future) => future.as_mut().poll(cx),
        }
    }
}

/// Per-connection state that commands read and change.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub protocol: Protocol,
    pub name: Option<Bytes>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub created: Instant,
    /// Which pooled connection of each backend this client uses.
    pub lane: usize,
    /// Set by QUIT: close once the replies before it are written.
    pub quit: bool,
    /// Where forwarded requests are encoded; split off per request, so its allocation is shared.
    scratch: BytesMut,
    pub last_command: &'static str,
    /// MULTI / WATCH state.
    pub txn: Transaction,
    /// Subscribed mode: the subscription connections and their stream.
    pub sub: Option<Box<Subscriber>>,
    /// The user this connection runs as (`default` until AUTH) and whether it authenticated.
    pub user_name: Bytes,
    pub authenticated: bool,
    /// The user's rules, or None while the connection must still authenticate.
    pub user: Option<Arc<User>>,
    /// The user may run everything: the ACL gate is skipped (see `handle`).
    pub open: bool,
    /// The ACL version `user` and `open` were computed at.
    acl_version: u64,
    /// What CLIENT LIST shows of this connection, and CLIENT KILL's token.
    pub handle: Arc<ClientHandle>,
    /// The masters this client sent writes to (WAIT asks them).
    pub written: WrittenTo,
}

impl Session {
    pub fn new(shared: &Shared, peer: SocketAddr, local: SocketAddr) -> Session {
        let id = shared.new_client_id();
        let now = Instant::now();
        let handle = Arc::new(ClientHandle {
            id,
            peer,
            local,
            created: now,
            state: std::sync::Mutex::new(ClientState {
                name: None,
                user: Bytes::from_static(b"default"),
                resp: 2,
                last_command: "NULL",
                last_interaction: now,
                sub: 0,
                psub: 0,
                ssub: 0,
                multi: -1,
                blocked: false,
                qbuf: 0,
                qbuf_free: 0,
            }),
            stop: Default::default(),
        });
        let mut session = Session {
            id,
            protocol: Protocol::Resp2,
            name: None,
            peer,
            local,
            created: Instant::now(),
            lane: (id as usize) % shared.lanes.max(1),
            quit: false,
            scratch: BytesMut::with_capacity(16 * 1024),
            last_command: "NULL",
            txn: Transaction::default(),
            sub: None,
            user_name: Bytes::from_static(b"default"),
            authenticated: false,
            user: None,
            open: false,
            acl_version: 0,
            handle,
            written: WrittenTo::default(),
        };
        session.refresh_acl(shared);
        session
    }

    /// Re-reads this connection's user after an ACL change (or an AUTH): whether it must
    /// authenticate, and whether it may run everything. A deleted user's connection is closed,
    /// as Redis disconnects the clients of a user ACL DELUSER removes.
    pub fn refresh_acl(&mut self, shared: &Shared) {
        self.acl_version = shared.acl.version();
        let user = shared.acl.get(&self.user_name);
        if user.is_none() {
            self.quit = true;
        }
        self.user = user.filter(|_| self.authenticated || !shared.acl.auth_required());
        self.open = self.user.as_ref().is_some_and(|u| u.unrestricted());
    }

    /// Copies what CLIENT LIST shows into the shared handle (once per batch of requests, and
    /// before CLIENT LIST / INFO describe this connection).
    pub fn publish_state(&self, qbuf: usize, qbuf_free: usize, blocked: bool) {
        let (sub, psub, ssub) = self.sub.as_ref().map(|s| s.counts()).unwrap_or_default();
        self.handle.update(|state| {
            state.name.clone_from(&self.name);
            state.user.clone_from(&self.user_name);
            state.resp = if self.protocol == Protocol::Resp3 {
                3
            } else {
                2
            };
            state.last_command = self.last_command;
            state.last_interaction = Instant::now();
            state.sub = sub;
            state.psub = psub;
            state.ssub = ssub;
            state.multi = self.txn.queued_count();
            state.blocked = blocked;
            state.qbuf = qbuf;
            state.qbuf_free = qbuf_free;
        });
    }

    /// Runs as `user` from now on (AUTH, HELLO AUTH).
    pub fn log_in(&mut self, shared: &Shared, user: &User) {
        self.user_name = user.name.clone();
        self.authenticated = true;
        self.refresh_acl(shared);
    }

    /// The security gate for a connection that is not open or saw an ACL change: NOAUTH and
    /// NOPERM as Redis answers them (after unknown command and arity, before the cluster rule).
    /// An error here flags a transaction being queued, as Redis's rejectCommand does.
    fn gate(&mut self, shared: &Shared, args: &[Bytes]) -> Option<Reply> {
        if self.acl_version != shared.acl.version() {
            self.refresh_acl(shared);
            if self.quit {
                return Some(Reply::Ready(None));
            }
            if self.open {
                return None;
            }
        }
        match acl::gate(self.user.as_deref(), args) {
            Gate::Pass => None,
            Gate::Reject(text) if args[0].eq_ignore_ascii_case(b"exec") => {
                Some(transaction::abort_exec(self, &text))
            }
            Gate::Reject(text) if self.txn.in_multi() => Some(transaction::flag(self, &text)),
            Gate::Reject(text) => Some(Reply::error(&text)),
        }
    }

    fn lane(&self) -> Lane {
        Lane {
            protocol: self.protocol,
            lane: self.lane,
        }
    }

    /// Dispatches one command; backend requests are queued before this returns. `raw` is the
    /// command as it came (a multibulk), forwarded as is when it goes to one backend unchanged.
    pub fn handle(&mut self, shared: &Arc<Shared>, args: &[Bytes], raw: Option<&Bytes>) -> Reply {
        shared
            .stats
            .commands_processed
            .fetch_add(1, Ordering::Relaxed);
        // sec: the security gate. One branch while the user may run everything and no ACL
        // changed; otherwise NOAUTH / NOPERM before anything else routes the command.
        if !self.open || self.acl_version != shared.acl.version() {
            if let Some(reply) = self.gate(shared, args) {
                return reply;
            }
        }
        if self.txn.in_multi() {
            return transaction::queue(shared, self, args);
        }
        if self.sub.is_some() {
            return pubsub::handle(shared, self, args);
        }
        self.dispatch(shared, args, raw)
    }

    /// Dispatches one command by its route, outside a transaction's queuing.
    pub fn handle_now(&mut self, shared: &Arc<Shared>, args: &[Bytes]) -> Reply {
        self.dispatch(shared, args, None)
    }

    fn dispatch(&mut self, shared: &Arc<Shared>, args: &[Bytes], raw: Option<&Bytes>) -> Reply {
        let snapshot = shared.view.load();
        if self.scratch.capacity() < 1024 {
            self.scratch.reserve(16 * 1024);
        }
        match router::route(args, &snapshot.topology, &snapshot.health) {
            Route::Error(text) => Reply::error(&text),
            Route::Forward { node, slot, write } => {
                let node = match shared.read_policy {
                    ReadPolicy::Master => node,
                    _ if write => node,
                    policy => read_policy::reader(policy, &snapshot.topology, node, self.id),
                };
                let Some(backend) = snapshot.backend_of(node) else {
                    return Reply::error("ERR no backend for a node of the topology");
                };
                if write {
                    self.written.note(backend);
                }
                let request = match raw {
                    Some(raw) => raw.clone(),
                    None => self.encode_args(args),
                };
                Reply::Forward(forward::send(
                    shared,
                    backend,
                    self.lane(),
                    request,
                    Some(slot),
                ))
            }
            Route::Blocking {
                node,
                slot,
                timeout,
            } => {
                let Some(backend) = snapshot.backend_of(node) else {
                    return Reply::error("ERR no backend for a node of the topology");
                };
                // Every blocking command pops or moves: a write.
                self.written.note(backend);
                let request = self.encode_args(args);
                blocking::run(shared, backend, self.protocol, request, slot, timeout)
            }
            Route::Split(plan) => {
                if plan.write {
                    for part in &plan.parts {
                        if let Some(backend) = snapshot.backend_of(part.node) {
                            self.written.note(backend);
                        }
                    }
                }
                Reply::Pending(split::run(
                    shared,
                    &snapshot,
                    &plan,
                    args,
                    self.lane(),
                    &mut self.scratch,
                ))
            }
            Route::FanOut(kind) => Reply::Pending(fanout::run(
                shared,
                &snapshot,
                kind,
                args,
                self.lane(),
                &mut self.scratch,
            )),
            Route::Local(spec) => {
                self.last_command = spec.name;
                local::handle(shared, self, &snapshot, spec, args)
            }
        }
    }

    /// Encodes a command into a fresh request (for local commands that ask backends).
    pub fn encode(&mut self, args: &[&[u8]]) -> Bytes {
        tessera_proto::resp::encode::encode_command(
            args.len(),
            args.iter().copied(),
            &mut self.scratch,
        );
        self.scratch.split().freeze()
    }

    /// Encodes a client's command as it came (for dedicated connections).
    pub fn encode_args(&mut self, args: &[Bytes]) -> Bytes {
        tessera_proto::resp::encode::encode_command(
            args.len(),
            args.iter().map(|a| &a[..]),
            &mut self.scratch,
        );
        self.scratch.split().freeze()
    }

    pub fn backend_lane(&self) -> Lane {
        self.lane()
    }
}
