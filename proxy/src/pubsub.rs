//! Pub/Sub through the proxy. A subscribing client gets its own backend connections, never
//! pooled: one to a master (the owner of the lowest served slot) for SUBSCRIBE / PSUBSCRIBE
//! (Redis Cluster broadcasts PUBLISH to every node, so any master hears every channel), plus one
//! per node that owns a shard channel it SSUBSCRIBEs to. Everything those connections send
//! (confirmations, messages, RESP3 pushes) is copied raw to the client, so the replies are the
//! backend's own, byte for byte.
//!
//! Ordering: the first subscribing command waits for the client's earlier replies
//! (`Reply::Exclusive`). In RESP2 subscribed mode every command goes to a subscribed backend
//! connection, which answers it as Redis does (`ERR Can't execute 'get': only (P|S)SUBSCRIBE /
//! ...`, PING's `pong` array) in order with the confirmations. In RESP3 other commands take the
//! normal path. The proxy keeps the client's channel sets itself: the command that empties them
//! waits for its confirmations, then the connections are closed and the client is normal again.
//!
//! Output limit: bytes received for the client and not yet written to it are counted; past
//! Redis's pubsub client-output-buffer-limit (32 MB, or 8 MB for 60 s) the client is dropped.
//!
//! Shard channels follow their slot: a node whose slot moves away drops the slot's shard
//! channels and tells each subscriber with a `sunsubscribe` it did not ask for. The proxy keeps
//! that notice from the client, waits for the topology to name the slot's new owner (asking for
//! a refresh at once), SSUBSCRIBEs there and keeps that confirmation from the client too: the
//! client stays subscribed and receives what is published at the new owner. If no new owner
//! shows within the backend timeout, the client gets the node's notice, as a Redis Cluster
//! client would.
//!
//! Redirects: a shard channel command sent to a node that no longer owns its slot (the proxy's
//! topology is behind) is answered MOVED. The proxy keeps each SSUBSCRIBE / SUNSUBSCRIBE until
//! its channels are confirmed, and on a MOVED for its slot asks the one redirect follower
//! (`backend::follow`) where to go: the command is sent again there and the MOVED kept from the
//! client. (Shard channels are served by the source until their slot flips, so a node never
//! answers them ASK or TRYAGAIN.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tessera_proto::output_budget::OutputBudget;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::{Frame, Protocol};
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::Access;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::backend::follow::{self, Hops, Redirection, Step};
use crate::backend::BackendLogin;
use crate::router::CROSSSLOT;
use crate::session::{Reply, Session};
use crate::shared::Shared;
use crate::topology::Routes;

/// What a subscription connection hands the client connection.
#[derive(Debug)]
pub enum Event {
    /// One raw frame for the client.
    Frame(Bytes),
    /// A backend connection ended: the client is disconnected (it resubscribes on reconnect).
    Closed,
    /// The client went past its output buffer limit.
    Overflow,
}

/// What a subscription connection sends.
#[derive(Debug)]
enum Outgoing {
    /// A client's command, as it came.
    Request(Bytes),
    /// An answer the proxy makes, kept in order with the backend's replies: a `PING <marker>` is
    /// sent, and its reply is replaced by `reply`.
    Local { marker: Bytes, reply: Bytes },
}

/// How long a moved shard channel waits between looks at the topology for its new owner.
const MOVE_RETRY: Duration = Duration::from_millis(20);

/// A shard channel its node dropped (its slot moved away), waiting for the topology to name the
/// slot's new owner.
#[derive(Debug)]
struct Moving {
    channel: Bytes,
    /// The node that dropped it.
    from: String,
    since: Instant,
    /// The node's `sunsubscribe` notice, passed on to the client if no new owner shows.
    notice: Bytes,
}

/// A shard channel command sent and not yet confirmed: sent again where the follower says if its
/// node answers MOVED.
#[derive(Debug)]
struct Unconfirmed {
    slot: u16,
    /// The confirmations it is answered with.
    kind: ShardNotice,
    request: Bytes,
    /// Its channels whose confirmation has not come yet.
    channels: Vec<Bytes>,
    hops: Hops,
}

/// One backend connection of a subscriber.
#[derive(Debug)]
struct SubConn {
    addr: String,
    requests: mpsc::UnboundedSender<Outgoing>,
}

/// A client's subscribed state.
#[derive(Debug)]
pub struct Subscriber {
    protocol: Protocol,
    conns: Vec<SubConn>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    budget: Arc<OutputBudget>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    /// Shard channels and the index of the connection that holds each.
    shard: Vec<(Bytes, usize)>,
    /// Confirmations of the client's own SUNSUBSCRIBEs still to come, by shard channel: any
    /// other `sunsubscribe` for a subscribed channel is its node dropping it.
    unsubscribing: HashMap<Bytes, usize>,
    /// Shard channels dropped by their node, not yet subscribed at the new owner, and when to
    /// look at the topology for them next (kept here: `next` is polled afresh at every event).
    moving: Vec<Moving>,
    look_again: tokio::time::Instant,
    /// Confirmations of the proxy's own re-subscriptions still to come (not the client's).
    resubscribed: HashMap<Bytes, usize>,
    /// Shard channel commands whose confirmations have not all come (see `Unconfirmed`).
    unconfirmed: Vec<Unconfirmed>,
    /// The connection that holds SUBSCRIBE / PSUBSCRIBE state, once made.
    main: Option<usize>,
    /// Set by the command that empties the sets: confirmations still to come, and who waits.
    ending: Option<(usize, oneshot::Sender<()>)>,
    ended: bool,
    /// Markers made for local answers (see `Outgoing::Local`).
    markers: u64,
}

impl Subscriber {
    fn new(protocol: Protocol) -> Subscriber {
        let (events_tx, events) = mpsc::unbounded_channel();
        Subscriber {
            protocol,
            conns: Vec::new(),
            events_tx,
            events,
            budget: Arc::new(OutputBudget::default()),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard: Vec::new(),
            unsubscribing: HashMap::new(),
            moving: Vec::new(),
            look_again: tokio::time::Instant::now(),
            resubscribed: HashMap::new(),
            unconfirmed: Vec::new(),
            main: None,
            ending: None,
            ended: false,
            markers: 0,
        }
    }

    /// Channels, patterns and shard channels subscribed (CLIENT LIST's sub / psub / ssub).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.channels.len(), self.patterns.len(), self.shard.len())
    }

    pub fn budget(&self) -> &Arc<OutputBudget> {
        &self.budget
    }

    /// The next frame (or end) for the client. While a moved shard channel waits for its new
    /// owner, the topology is looked at every `MOVE_RETRY`.
    pub async fn next(&mut self, shared: &Shared) -> Event {
        loop {
            let waiting = !self.moving.is_empty();
            tokio::select! {
                event = self.events.recv() => return event.unwrap_or(Event::Closed),
                _ = self.budget.overflow().cancelled() => return Event::Overflow,
                _ = tokio::time::sleep_until(self.look_again), if waiting => {
                    self.follow_moves(shared);
                }
            }
        }
    }

    /// Appends `frame` to `out` unless it is the proxy's own business (a node dropping a shard
    /// channel whose slot moved, the confirmation of a re-subscription).
    pub fn take(&mut self, frame: Bytes, out: &mut BytesMut, shared: &Shared) {
        if let Some(redirection) = follow::parse(&frame) {
            if self.redirect(redirection, shared) {
                return;
            }
        }
        let notice = shard_notice(&frame);
        if let Some((kind, channel)) = &notice {
            self.confirmed(*kind, channel);
        }
        match notice {
            // The client's own SUNSUBSCRIBE: its confirmation goes to the client.
            Some((ShardNotice::Unsubscribed, channel))
                if settle(&mut self.unsubscribing, &channel) => {}
            Some((ShardNotice::Unsubscribed, channel)) => {
                if let Some(&(_, index)) = self.shard.iter().find(|(c, _)| *c == channel) {
                    let from = self.conns.get(index).map(|c| c.addr.clone());
                    self.moving.push(Moving {
                        channel,
                        from: from.unwrap_or_default(),
                        since: Instant::now(),
                        notice: frame,
                    });
                    shared.view.request_refresh();
                    self.follow_moves(shared);
                    return;
                }
            }
            Some((ShardNotice::Subscribed, channel))
                if settle(&mut self.resubscribed, &channel) =>
            {
                return;
            }
            _ => {}
        }
        self.observe(&frame);
        out.extend_from_slice(&frame);
    }

    /// Appends every frame already received (after the one just taken) to `out`: the bytes
    /// received, and whether a connection closed or the budget overflowed meanwhile.
    pub fn drain_ready(&mut self, out: &mut BytesMut, shared: &Shared) -> (usize, bool) {
        let mut received = 0;
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Frame(frame) => {
                    received += frame.len();
                    self.take(frame, out, shared);
                }
                Event::Closed | Event::Overflow => return (received, true),
            }
        }
        (received, self.budget.overflow().is_cancelled())
    }

    /// Subscribes each moved shard channel at its slot's owner once the topology names one other
    /// than the node that dropped it; past the backend timeout, passes the node's notice on.
    fn follow_moves(&mut self, shared: &Shared) {
        let snapshot = shared.view.load();
        let limit = connect_timeout(shared);
        self.look_again = tokio::time::Instant::now() + MOVE_RETRY;
        for moved in std::mem::take(&mut self.moving) {
            match node_addr(&snapshot, Some(key_hash_slot(&moved.channel))) {
                Ok(addr) if addr != moved.from => {
                    let index = self.conn(&addr, shared);
                    if let Some(entry) = self.shard.iter_mut().find(|(c, _)| *c == moved.channel) {
                        entry.1 = index;
                    }
                    *self.resubscribed.entry(moved.channel.clone()).or_default() += 1;
                    let request = command2(b"SSUBSCRIBE", &moved.channel);
                    self.expect_confirmation(
                        ShardNotice::Subscribed,
                        &request,
                        std::slice::from_ref(&moved.channel),
                    );
                    self.send(index, request);
                }
                _ if moved.since.elapsed() >= limit => {
                    // Through the event stream, so it is counted and observed like any frame.
                    self.shard.retain(|(c, _)| *c != moved.channel);
                    if self.budget.add(moved.notice.len()) {
                        let _ = self.events_tx.send(Event::Frame(moved.notice));
                    }
                    // Its last subscription gone, the client is a normal client again.
                    if self.is_empty() && self.ending.is_none() {
                        self.ended = true;
                    }
                }
                _ => self.moving.push(moved),
            }
        }
    }

    /// Keeps a shard channel command (`channels`, of one slot) until they are confirmed.
    fn expect_confirmation(&mut self, kind: ShardNotice, request: &Bytes, channels: &[Bytes]) {
        let Some(first) = channels.first() else {
            return;
        };
        self.unconfirmed.push(Unconfirmed {
            slot: key_hash_slot(first),
            kind,
            request: request.clone(),
            channels: channels.to_vec(),
            hops: Hops::default(),
        });
    }

    /// A `kind` confirmation for `channel` came: the oldest command waiting for it no longer
    /// does.
    fn confirmed(&mut self, kind: ShardNotice, channel: &Bytes) {
        let Some(at) = self
            .unconfirmed
            .iter()
            .position(|u| u.kind == kind && u.channels.contains(channel))
        else {
            return;
        };
        let waiting = &mut self.unconfirmed[at];
        waiting.channels.retain(|c| c != channel);
        if waiting.channels.is_empty() {
            self.unconfirmed.remove(at);
        }
    }

    /// A redirect on a subscription connection: the answer to the oldest unconfirmed shard
    /// channel command of its slot, sent again where the follower says. False when none waits,
    /// or past the follower's bounds: then the client gets the redirect, and the channels it
    /// subscribed are not subscribed.
    fn redirect(&mut self, redirection: Redirection, shared: &Shared) -> bool {
        let slot = match &redirection {
            Redirection::Moved { slot, .. } | Redirection::Ask { slot, .. } => *slot,
            Redirection::TryAgain => return false,
        };
        let Some(at) = self.unconfirmed.iter().position(|u| u.slot == slot) else {
            return false;
        };
        match shared
            .follow
            .next(&mut self.unconfirmed[at].hops, redirection)
        {
            // Only MOVED is followed: a subscribed RESP2 connection refuses ASKING.
            Some(Step::Hop {
                addr,
                asking: false,
                ..
            }) => {
                let index = self.conn(&addr, shared);
                let waiting = &self.unconfirmed[at];
                for entry in &mut self.shard {
                    if waiting.channels.contains(&entry.0) {
                        entry.1 = index;
                    }
                }
                let request = waiting.request.clone();
                self.send(index, request);
                true
            }
            _ => {
                let waiting = self.unconfirmed.remove(at);
                self.shard.retain(|(c, _)| !waiting.channels.contains(c));
                false
            }
        }
    }

    /// Sees a frame on its way to the client: counts the confirmations an ending command waits
    /// for.
    fn observe(&mut self, raw: &[u8]) {
        let Some((pending, _)) = &mut self.ending else {
            return;
        };
        let kind = match frame::parse(raw, &FrameLimits::default()) {
            Ok(Some((Frame::Array(items), _))) | Ok(Some((Frame::Push(items), _))) => {
                match items.first() {
                    Some(Frame::Bulk(kind)) => kind.clone(),
                    _ => return,
                }
            }
            _ => return,
        };
        if matches!(
            &kind[..],
            b"unsubscribe" | b"punsubscribe" | b"sunsubscribe"
        ) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                if let Some((_, done)) = self.ending.take() {
                    let _ = done.send(());
                }
                self.ended = true;
            }
        }
    }

    /// The client unsubscribes from `channel`: if subscribed, its node's confirmation is owed to
    /// the client. True if it was waiting for its new owner (its connection is still the one to
    /// the node that dropped it).
    fn expect_unsubscribed(&mut self, channel: &Bytes) -> bool {
        if !self.shard.iter().any(|(c, _)| c == channel) {
            return false;
        }
        *self.unsubscribing.entry(channel.clone()).or_default() += 1;
        let Some(at) = self.moving.iter().position(|m| m.channel == *channel) else {
            return false;
        };
        self.moving.swap_remove(at);
        true
    }

    /// Subscribed mode is over (every set emptied and confirmed): drop the subscriber.
    pub fn finished(&self) -> bool {
        self.ended
    }

    /// A connection that holds subscriptions (it answers commands as a subscribed client).
    fn subscribed_conn(&self) -> usize {
        if !self.channels.is_empty() || !self.patterns.is_empty() {
            if let Some(main) = self.main {
                return main;
            }
        }
        self.shard
            .first()
            .map(|(_, i)| *i)
            .or(self.main)
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty()
    }

    /// The index of the connection to `addr`, started on first use.
    fn conn(&mut self, addr: &str, shared: &Shared) -> usize {
        if let Some(i) = self.conns.iter().position(|c| c.addr == addr) {
            return i;
        }
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_conn(
            addr.to_string(),
            self.protocol,
            connect_timeout(shared),
            shared.view.registry().settings().login.clone(),
            rx,
            self.events_tx.clone(),
            self.budget.clone(),
        ));
        self.conns.push(SubConn {
            addr: addr.to_string(),
            requests,
        });
        self.conns.len() - 1
    }

    fn send(&self, index: usize, request: Bytes) {
        self.send_out(index, Outgoing::Request(request));
    }

    /// Answers `reply` in order with what the subscribed connection sends.
    fn answer(&mut self, reply: Bytes) {
        self.markers += 1;
        let marker = Bytes::from(format!("tessera-proxy-{}", self.markers));
        self.send_out(self.subscribed_conn(), Outgoing::Local { marker, reply });
    }

    fn send_out(&self, index: usize, out: Outgoing) {
        if let Some(conn) = self.conns.get(index) {
            if conn.requests.send(out).is_err() {
                let _ = self.events_tx.send(Event::Closed);
            }
        }
    }
}

/// `name argument` as a RESP request.
fn command2(name: &[u8], argument: &[u8]) -> Bytes {
    let mut request = BytesMut::new();
    tessera_proto::resp::encode::encode_command(2, [name, argument].into_iter(), &mut request);
    request.freeze()
}

/// Counts one owed confirmation for `channel` as arrived; false if none was owed.
fn settle(owed: &mut HashMap<Bytes, usize>, channel: &Bytes) -> bool {
    let Some(count) = owed.get_mut(channel) else {
        return false;
    };
    *count -= 1;
    if *count == 0 {
        owed.remove(channel);
    }
    true
}

fn connect_timeout(shared: &Shared) -> Duration {
    shared.view.registry().settings().timeout
}

/// The address of the master that holds SUBSCRIBE / PSUBSCRIBE (any master hears every PUBLISH:
/// the owner of the lowest served slot), or of the owner of `slot`.
fn node_addr(snapshot: &Routes, slot: Option<u16>) -> Result<String, &'static str> {
    let slot = slot.unwrap_or_else(|| snapshot.topology.first_assigned_slot().unwrap_or(0));
    snapshot
        .topology
        .route_with(&snapshot.health, slot, Access::Read)
        .map(|node| node.address())
        .map_err(|down| down.message())
}

/// `*3 <kind> <channel or nil> :0`, what Redis answers an unsubscribe with nothing subscribed.
fn unsubscribed(protocol: Protocol, kind: &'static str, channel: Option<Bytes>) -> Bytes {
    let items = vec![
        Frame::Bulk(Bytes::from_static(kind.as_bytes())),
        channel.map(Frame::Bulk).unwrap_or(Frame::Null),
        Frame::Integer(0),
    ];
    let frame = match protocol {
        Protocol::Resp2 => Frame::Array(items),
        Protocol::Resp3 => Frame::Push(items),
    };
    frame.to_bytes(protocol)
}

/// An error before anything was sent: a subscriber made for this command alone is dropped, so
/// the client is not left in subscribed mode with nothing subscribed.
fn refuse(session: &mut Session, text: &str) -> Reply {
    if session
        .sub
        .as_ref()
        .is_some_and(|s| s.is_empty() && s.ending.is_none())
    {
        session.sub = None;
    }
    Reply::error(text)
}

/// Nothing to write now: the reply comes through the subscription stream.
fn via_stream() -> Reply {
    Reply::Ready(None)
}

/// A command of a client in subscribed mode.
pub fn handle(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Reply {
    let name = args[0].to_ascii_lowercase();
    match name.as_slice() {
        b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
        | b"sunsubscribe"
            if tessera_proto::command::resolve(args).is_ok() =>
        {
            let snapshot = shared.view.load();
            command(shared, session, &snapshot, args)
        }
        b"reset" => {
            session.sub = None;
            session.handle_now(shared, args)
        }
        b"quit" => session.handle_now(shared, args),
        _ if session.protocol == Protocol::Resp3 => session.handle_now(shared, args),
        b"ping" if tessera_proto::command::resolve(args).is_ok() => {
            // RESP2: a subscribed backend connection answers PING with Redis's array.
            let request = session.encode_args(args);
            if let Some(sub) = session.sub.as_ref() {
                sub.send(sub.subscribed_conn(), request);
            }
            via_stream()
        }
        _ => {
            // RESP2: refused as Redis refuses it (unknown command, arity and CROSSSLOT first),
            // in order with the confirmations.
            let text = match tessera_proto::command::resolve(args) {
                Err(text) => text,
                Ok(spec) => {
                    let snapshot = shared.view.load();
                    match crate::router::route(args, &snapshot.topology, &snapshot.health) {
                        crate::router::Route::Error(text) => text.into_owned(),
                        _ => format!(
                            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                            spec.name
                        ),
                    }
                }
            };
            match session.sub.as_mut() {
                Some(sub) => {
                    sub.answer(crate::forward::error_bytes(&text));
                    via_stream()
                }
                None => Reply::error(&text),
            }
        }
    }
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and the unsubscribes (arity already checked).
pub fn command(
    shared: &Arc<Shared>,
    session: &mut Session,
    snapshot: &Routes,
    args: &[Bytes],
) -> Reply {
    let name = args[0].to_ascii_lowercase();
    let request = session.encode_args(args);
    let protocol = session.protocol;
    let names = &args[1..];
    let shard_slot = if matches!(name.as_slice(), b"ssubscribe" | b"sunsubscribe") {
        let mut slot = None;
        for channel in names {
            let s = key_hash_slot(channel);
            if slot.is_some_and(|first| first != s) {
                return Reply::error(CROSSSLOT);
            }
            slot = Some(s);
        }
        slot
    } else {
        None
    };
    let subscribing = matches!(
        name.as_slice(),
        b"subscribe" | b"psubscribe" | b"ssubscribe"
    );
    if session.sub.is_none() {
        if !subscribing {
            // Nothing subscribed: answer as Redis does, without a backend.
            let kind = match name.as_slice() {
                b"unsubscribe" => "unsubscribe",
                b"punsubscribe" => "punsubscribe",
                _ => "sunsubscribe",
            };
            let mut out = BytesMut::new();
            if names.is_empty() {
                out.extend_from_slice(&unsubscribed(protocol, kind, None));
            }
            for channel in names {
                out.extend_from_slice(&unsubscribed(protocol, kind, Some(channel.clone())));
            }
            return Reply::ready(out.freeze());
        }
        session.sub = Some(Box::new(Subscriber::new(protocol)));
    }
    let Some(sub) = session.sub.as_mut() else {
        return Reply::error("ERR subscriber state lost");
    };
    let first = sub.is_empty();
    // Which connection, and how the sets change.
    let mut targets: Vec<usize> = Vec::new();
    let mut confirmations = names.len().max(1);
    match name.as_slice() {
        b"subscribe" | b"psubscribe" | b"unsubscribe" | b"punsubscribe" => {
            let addr = match node_addr(snapshot, None) {
                Ok(addr) => addr,
                Err(text) => return refuse(session, text),
            };
            let index = match sub.main {
                Some(index) => index,
                None => {
                    let index = sub.conn(&addr, shared);
                    sub.main = Some(index);
                    index
                }
            };
            let set = if name.starts_with(b"p") {
                &mut sub.patterns
            } else {
                &mut sub.channels
            };
            if subscribing {
                set.extend(names.iter().cloned());
            } else if names.is_empty() {
                confirmations = set.len().max(1);
                set.clear();
            } else {
                for n in names {
                    set.remove(n);
                }
            }
            targets.push(index);
        }
        _ => match shard_slot {
            Some(slot) => {
                let addr = match node_addr(snapshot, Some(slot)) {
                    Ok(addr) => addr,
                    Err(text) => return refuse(session, text),
                };
                let index = sub.conn(&addr, shared);
                let kind = if subscribing {
                    ShardNotice::Subscribed
                } else {
                    ShardNotice::Unsubscribed
                };
                sub.expect_confirmation(kind, &request, names);
                if subscribing {
                    for n in names {
                        if !sub.shard.iter().any(|(c, _)| c == n) {
                            sub.shard.push((n.clone(), index));
                        }
                    }
                } else {
                    // Sent to the slot's owner, which confirms every channel it names.
                    for n in names {
                        sub.expect_unsubscribed(n);
                    }
                    sub.shard.retain(|(c, _)| !names.contains(c));
                }
                targets.push(index);
            }
            None => {
                // SUNSUBSCRIBE from every shard channel: each connection that holds some. A
                // channel its node dropped (moving) is named to that node, which confirms it.
                confirmations = sub.shard.len().max(1);
                let mut holders = Vec::new();
                let subscribed = sub.shard.clone();
                for (channel, index) in &subscribed {
                    if sub.expect_unsubscribed(channel) {
                        sub.send(*index, command2(b"SUNSUBSCRIBE", channel));
                    } else {
                        holders.push(*index);
                    }
                }
                holders.sort_unstable();
                holders.dedup();
                if subscribed.is_empty() {
                    holders.push(sub.subscribed_conn());
                }
                sub.shard.clear();
                targets = holders;
            }
        },
    }
    let ends = !subscribing && sub.is_empty();
    if first && subscribing {
        // Entering subscribed mode: send once every earlier reply is out.
        let senders: Vec<mpsc::UnboundedSender<Outgoing>> = targets
            .iter()
            .filter_map(|&i| sub.conns.get(i).map(|c| c.requests.clone()))
            .collect();
        return Reply::Exclusive(Box::pin(async move {
            for sender in senders {
                let _ = sender.send(Outgoing::Request(request.clone()));
            }
            Bytes::new()
        }));
    }
    for &i in &targets {
        sub.send(i, request.clone());
    }
    if !ends {
        return via_stream();
    }
    // Leaving subscribed mode: dispatch waits for the confirmations, then the subscriber goes.
    let (done, wait) = oneshot::channel();
    sub.ending = Some((confirmations, done));
    let limit = connect_timeout(shared);
    Reply::Exclusive(Box::pin(async move {
        let _ = tokio::time::timeout(limit, wait).await;
        Bytes::new()
    }))
}

/// One subscription connection: writes the client's requests, hands every frame it receives to
/// the client connection (counted against the client's output budget).
async fn run_conn(
    addr: String,
    protocol: Protocol,
    connect_timeout: Duration,
    login: BackendLogin,
    mut requests: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::UnboundedSender<Event>,
    budget: Arc<OutputBudget>,
) {
    let (socket, mut buf) =
        match crate::backend::connection::connect(&addr, protocol, connect_timeout, &login).await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%addr, %error, "subscription connection failed");
                let _ = events.send(Event::Closed);
                return;
            }
        };
    let (mut reader, mut writer) = socket.into_split();
    // Local answers owed, in order: the raw reply to the marker PING and what replaces it.
    let mut locals: std::collections::VecDeque<(Bytes, Bytes)> = std::collections::VecDeque::new();
    loop {
        loop {
            let len = if buf.is_empty() {
                None
            } else {
                match frame::check(&buf, &FrameLimits::default()) {
                    Ok(len) => len,
                    Err(_) => {
                        let _ = events.send(Event::Closed);
                        return;
                    }
                }
            };
            let Some(len) = len else { break };
            let mut frame = buf.split_to(len).freeze();
            let mut local = false;
            if locals
                .front()
                .is_some_and(|(marker, _)| is_marker_reply(&frame, marker))
            {
                if let Some((_, reply)) = locals.pop_front() {
                    frame = reply;
                    local = true;
                }
            }
            // A backend without pub/sub: the client gets its answer, then is disconnected
            // rather than left believing it is subscribed.
            let unsupported = !local && frame.starts_with(b"-ERR unknown command");
            if !budget.add(frame.len()) {
                return;
            }
            if events.send(Event::Frame(frame)).is_err() {
                return;
            }
            if unsupported {
                let _ = events.send(Event::Closed);
                return;
            }
        }
        if buf.capacity() - buf.len() < 4 * 1024 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            request = requests.recv() => match request {
                Some(out) => {
                    let request = match out {
                        Outgoing::Request(request) => request,
                        Outgoing::Local { marker, reply } => {
                            let request = command2(b"PING", &marker);
                            locals.push_back((marker, reply));
                            request
                        }
                    };
                    if writer.write_all(&request).await.is_err() {
                        let _ = events.send(Event::Closed);
                        return;
                    }
                }
                // The client left subscribed mode or went away.
                None => return,
            },
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = events.send(Event::Closed);
                    return;
                }
                Ok(_) => {}
            },
        }
    }
}

/// The two shard-channel frames the proxy looks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShardNotice {
    Subscribed,
    Unsubscribed,
}

/// Whether `frame` is an `ssubscribe` or `sunsubscribe` confirmation (RESP2 array or RESP3
/// push), and its channel. Every other frame (messages above all) is told apart by its first
/// bytes, without parsing.
fn shard_notice(frame: &[u8]) -> Option<(ShardNotice, Bytes)> {
    let kind = match frame.get(4..)? {
        rest if rest.starts_with(b"$10\r\nssubscribe\r\n") => ShardNotice::Subscribed,
        rest if rest.starts_with(b"$12\r\nsunsubscribe\r\n") => ShardNotice::Unsubscribed,
        _ => return None,
    };
    match frame::parse(frame, &FrameLimits::default()) {
        Ok(Some((Frame::Array(items) | Frame::Push(items), _))) => match items.get(1) {
            Some(Frame::Bulk(channel)) => Some((kind, channel.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `frame` is the reply to `PING marker`: `*2 pong marker` from a subscribed RESP2
/// connection, the bulk marker otherwise.
fn is_marker_reply(frame: &[u8], marker: &[u8]) -> bool {
    let bulk = Frame::Bulk(Bytes::copy_from_slice(marker)).to_bytes(Protocol::Resp2);
    frame == &bulk[..]
        || frame
            .strip_prefix(&b"*2\r\n$4\r\npong\r\n"[..])
            .is_some_and(|rest| rest == &bulk[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_notices_are_told_from_messages() {
        let channel = Bytes::from_static(b"foo");
        assert_eq!(
            shard_notice(b"*3\r\n$12\r\nsunsubscribe\r\n$3\r\nfoo\r\n:0\r\n"),
            Some((ShardNotice::Unsubscribed, channel.clone()))
        );
        assert_eq!(
            shard_notice(b">3\r\n$10\r\nssubscribe\r\n$3\r\nfoo\r\n:1\r\n"),
            Some((ShardNotice::Subscribed, channel))
        );
        // No channel (SUNSUBSCRIBE with nothing subscribed), a message, a truncated frame.
        assert_eq!(
            shard_notice(b"*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n"),
            None
        );
        assert_eq!(
            shard_notice(b"*3\r\n$8\r\nsmessage\r\n$3\r\nfoo\r\n$1\r\nm\r\n"),
            None
        );
        assert_eq!(shard_notice(b"*3\r\n$10\r\nssubscribe\r\n$3\r\nfo"), None);
    }

    #[test]
    fn local_frames_are_redis_bytes() {
        assert!(is_marker_reply(b"*2\r\n$4\r\npong\r\n$1\r\nm\r\n", b"m"));
        assert!(is_marker_reply(b"$1\r\nm\r\n", b"m"));
        assert!(!is_marker_reply(b"$1\r\nx\r\n", b"m"));
        assert!(!is_marker_reply(
            b"*3\r\n$7\r\nmessage\r\n$1\r\nm\r\n$1\r\nm\r\n",
            b"m"
        ));
        assert_eq!(
            &unsubscribed(Protocol::Resp2, "unsubscribe", None)[..],
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
        assert_eq!(
            &unsubscribed(
                Protocol::Resp3,
                "punsubscribe",
                Some(Bytes::from_static(b"p"))
            )[..],
            b">3\r\n$12\r\npunsubscribe\r\n$1\r\np\r\n:0\r\n"
        );
    }
}
