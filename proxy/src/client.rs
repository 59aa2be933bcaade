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

use crate::forward::{self, BoxReply, Lane};
use crate::pubsub::{self, Subscriber};
use crate::router::{self, Route};
use crate::shared::Shared;
use crate::transaction::{self, Transaction};
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
}

impl Session {
    pub fn new(shared: &Shared, peer: SocketAddr, local: SocketAddr) -> Session {
        let id = shared.new_client_id();
        Session {
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
            Route::Forward { node, slot } => {
                let Some(backend) = snapshot.backend_of(node) else {
                    return Reply::error("ERR no backend for a node of the topology");
                };
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
                let request = self.encode_args(args);
                blocking::run(shared, backend, self.protocol, request, slot, timeout)
            }
            Route::Split(plan) => Reply::Pending(split::run(
                shared,
                &snapshot,
                &plan,
                args,
                self.lane(),
                &mut self.scratch,
            )),
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
        forward::encode(args.len(), args.iter().copied(), &mut self.scratch);
        self.scratch.split().freeze()
    }

    /// Encodes a client's command as it came (for dedicated connections).
    pub fn encode_args(&mut self, args: &[Bytes]) -> Bytes {
        forward::encode(args.len(), args.iter().map(|a| &a[..]), &mut self.scratch);
        self.scratch.split().freeze()
    }

    pub fn backend_lane(&self) -> Lane {
        self.lane()
    }
}
