//! Publish/subscribe: the node-wide registry of who listens to what (`PubSub`), each client's own
//! subscriptions and mailbox (`ClientSubscriptions`), and the output limit that keeps a slow
//! subscriber from making the node hold unbounded memory (`OutputBudget`).
//!
//! A subscriber's connection owns the receiving end of its mailbox; publishers (any connection,
//! or a peer's forwarded PUBLISH) push messages into it without waiting. Messages are `Frame::Push`
//! so one value encodes as Redis's RESP2 array or RESP3 push, by the subscriber's protocol.
//! Cluster-wide PUBLISH, as Redis Cluster's bus broadcast, is `forward`. Shard channels of a slot
//! the node no longer serves are dropped, with a `sunsubscribe` to each subscriber
//! (`drop_moved_channels`), as Redis 7.0 does when a slot moves away.

pub mod forward;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use tessera_proto::output_budget::OutputBudget;
use tessera_proto::resp::{Frame, Protocol};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::Snapshot;
use crate::keyspace::glob;
use crate::state::NodeState;

/// Drops the shard channels of slots this node no longer serves, at each topology change (a
/// slot moved away, or failed over elsewhere), until `stop`.
pub async fn drop_moved_channels(state: Arc<NodeState>, stop: CancellationToken) {
    let mut changes = state.cluster.watch_topology();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let snapshot = state.cluster.snapshot();
        state
            .pubsub
            .drop_shard_channels(|channel| serves(&state, &snapshot, channel));
    }
}

/// After an SSUBSCRIBE of `channel` (checked against an earlier topology): dropped at once if the
/// slot has left meanwhile. The subscription is registered before this looks at the topology, and
/// `drop_moved_channels` looks at the registry after the topology changed, so one of them sees
/// the other: no subscription outlives its slot's move.
pub fn recheck_shard_channel(state: &NodeState, channel: &[u8]) {
    if !serves(state, &state.cluster.snapshot(), channel) {
        state.pubsub.drop_shard_channels(|c| c != channel);
    }
}

/// Whether this node serves `channel`'s slot in `snapshot` (a replica serves its master's; a slot
/// nobody serves is left alone).
fn serves(state: &NodeState, snapshot: &Snapshot, channel: &[u8]) -> bool {
    let topology = &snapshot.topology;
    let serving = snapshot.role.master().unwrap_or(state.cluster.myself());
    let Some(serving) = topology.index_of(serving) else {
        return true;
    };
    let slot = tessera_proto::slot::key_hash_slot(channel);
    topology
        .owner_index(slot)
        .is_none_or(|owner| owner == serving)
}

/// The three namespaces a client can subscribe in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SUBSCRIBE: exact channels, reached by PUBLISH.
    Channel,
    /// PSUBSCRIBE: glob patterns over channels, reached by PUBLISH.
    Pattern,
    /// SSUBSCRIBE: shard channels, reached by SPUBLISH on the slot's owner.
    Shard,
}

impl Kind {
    /// The confirmation's first element for a subscribe.
    pub fn subscribe_name(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"subscribe",
            Kind::Pattern => b"psubscribe",
            Kind::Shard => b"ssubscribe",
        }
    }

    /// The confirmation's first element for an unsubscribe.
    pub fn unsubscribe_name(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"unsubscribe",
            Kind::Pattern => b"punsubscribe",
            Kind::Shard => b"sunsubscribe",
        }
    }
}

/// A message on its way to one subscriber, with the bytes it counts against the budget; or the
/// news that the node dropped one of its shard channels (`dropped`, `frame` unused), which its
/// connection turns into the `sunsubscribe` (the count is the connection's to know).
#[derive(Debug)]
pub struct Delivery {
    frame: Frame,
    size: usize,
    dropped: Option<Bytes>,
}

/// The sending side of one client's mailbox.
#[derive(Debug, Clone)]
pub struct Mailbox {
    tx: mpsc::UnboundedSender<Delivery>,
    budget: Arc<OutputBudget>,
}

impl Mailbox {
    /// Queues `items` as one push for the client; false if the client is over its limit (it is
    /// being disconnected, so the message is dropped) or gone.
    fn deliver(&self, items: Vec<Frame>) -> bool {
        let size = items
            .iter()
            .map(|item| match item {
                Frame::Bulk(b) => b.len() + 16,
                _ => 16,
            })
            .sum::<usize>()
            + 8;
        if !self.budget.add(size) {
            return false;
        }
        let frame = Frame::Push(items);
        let delivery = Delivery {
            frame,
            size,
            dropped: None,
        };
        if self.tx.send(delivery).is_err() {
            self.budget.written(size);
            return false;
        }
        true
    }

    /// Tells the client its shard channel `channel` was dropped.
    fn drop_shard_channel(&self, channel: Bytes) {
        let _ = self.tx.send(Delivery {
            frame: Frame::Null,
            size: 0,
            dropped: Some(channel),
        });
    }
}

/// Subscribers by client id, per channel (or pattern).
type Listeners = HashMap<Bytes, HashMap<u64, Mailbox>>;

/// Who listens to what, node-wide.
#[derive(Default)]
struct Registry {
    channels: Listeners,
    patterns: Listeners,
    shard: Listeners,
}

impl Registry {
    fn of(&self, kind: Kind) -> &Listeners {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard,
        }
    }

    fn of_mut(&mut self, kind: Kind) -> &mut Listeners {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }
}

/// The node's pub/sub state, shared by every connection.
#[derive(Default)]
pub struct PubSub {
    registry: RwLock<Registry>,
    /// Carries PUBLISH to the other nodes.
    pub forward: forward::Forwarder,
}

impl PubSub {
    /// Adds `client` to `channel` of `kind`, if its session did not hold it yet.
    pub fn subscribe(&self, kind: Kind, channel: &Bytes, subs: &mut ClientSubscriptions) -> bool {
        if !subs.set_mut(kind).insert(channel.clone()) {
            return false;
        }
        let mailbox = subs.mailbox();
        self.registry
            .write()
            .of_mut(kind)
            .entry(channel.clone())
            .or_default()
            .insert(subs.client_id, mailbox);
        true
    }

    /// Removes the client from `channel` of `kind`; false if it was not subscribed.
    pub fn unsubscribe(&self, kind: Kind, channel: &[u8], subs: &mut ClientSubscriptions) -> bool {
        if !subs.set_mut(kind).remove(channel) {
            return false;
        }
        let mut registry = self.registry.write();
        let listeners = registry.of_mut(kind);
        if let Some(clients) = listeners.get_mut(channel) {
            clients.remove(&subs.client_id);
            if clients.is_empty() {
                listeners.remove(channel);
            }
        }
        true
    }

    /// Drops every subscription of a client that is leaving (or RESET).
    pub fn remove_client(&self, subs: &mut ClientSubscriptions) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for channel in subs.list(kind) {
                self.unsubscribe(kind, &channel, subs);
            }
        }
    }

    /// Delivers `message` to this node's subscribers of `channel` and of the patterns matching
    /// it, as Redis's pubsubPublishMessage; returns how many receivers it reached.
    pub fn publish(&self, channel: &Bytes, message: &Bytes) -> i64 {
        let registry = self.registry.read();
        let mut receivers = 0;
        if let Some(clients) = registry.channels.get(channel) {
            for mailbox in clients.values() {
                mailbox.deliver(vec![
                    Frame::Bulk(Bytes::from_static(b"message")),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                receivers += 1;
            }
        }
        for (pattern, clients) in &registry.patterns {
            if !glob::matches(pattern, channel) {
                continue;
            }
            for mailbox in clients.values() {
                mailbox.deliver(vec![
                    Frame::Bulk(Bytes::from_static(b"pmessage")),
                    Frame::Bulk(pattern.clone()),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                receivers += 1;
            }
        }
        receivers
    }

    /// Delivers `message` to this node's subscribers of the shard channel `channel`.
    pub fn spublish(&self, channel: &Bytes, message: &Bytes) -> i64 {
        let registry = self.registry.read();
        let Some(clients) = registry.shard.get(channel) else {
            return 0;
        };
        for mailbox in clients.values() {
            mailbox.deliver(vec![
                Frame::Bulk(Bytes::from_static(b"smessage")),
                Frame::Bulk(channel.clone()),
                Frame::Bulk(message.clone()),
            ]);
        }
        clients.len() as i64
    }

    /// Channels (or shard channels) with at least one subscriber, matching `pattern` if given.
    pub fn active(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let registry = self.registry.read();
        registry
            .of(kind)
            .keys()
            .filter(|channel| pattern.is_none_or(|p| glob::matches(p, channel)))
            .cloned()
            .collect()
    }

    /// Subscribers of `channel` of `kind` on this node.
    pub fn subscribers(&self, kind: Kind, channel: &[u8]) -> usize {
        self.registry
            .read()
            .of(kind)
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// Drops the shard channels `kept` refuses (their slot is no longer served here), telling each
    /// subscriber with a `sunsubscribe`, as Redis 7.0's removeChannelsInSlot when a slot moves
    /// away: its clients subscribe again where the slot went.
    pub fn drop_shard_channels(&self, kept: impl Fn(&[u8]) -> bool) {
        let mut registry = self.registry.write();
        let dropped: Vec<Bytes> = registry
            .shard
            .keys()
            .filter(|channel| !kept(channel))
            .cloned()
            .collect();
        for channel in dropped {
            for mailbox in registry
                .shard
                .remove(&channel)
                .into_iter()
                .flat_map(|c| c.into_values())
            {
                mailbox.drop_shard_channel(channel.clone());
            }
        }
    }

    /// Distinct patterns subscribed on this node (PUBSUB NUMPAT).
    pub fn pattern_count(&self) -> usize {
        self.registry.read().patterns.len()
    }
}

/// One client's subscriptions, its mailbox, and the confirmations a multi-channel (UN)SUBSCRIBE
/// owes before its last one (which is the command's reply).
#[derive(Debug)]
pub struct ClientSubscriptions {
    client_id: u64,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    shard: HashSet<Bytes>,
    mailbox: Option<(Mailbox, mpsc::UnboundedReceiver<Delivery>)>,
    /// Replies to encode before the current command's own reply.
    preceding: VecDeque<Frame>,
    /// Bytes moved to the output buffer and not yet written.
    owed: usize,
}

impl ClientSubscriptions {
    pub fn new(client_id: u64) -> ClientSubscriptions {
        ClientSubscriptions {
            client_id,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard: HashSet::new(),
            mailbox: None,
            preceding: VecDeque::new(),
            owed: 0,
        }
    }

    fn set_mut(&mut self, kind: Kind) -> &mut HashSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The channels (or patterns) of `kind` the client holds.
    pub fn list(&self, kind: Kind) -> Vec<Bytes> {
        let set = match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard,
        };
        set.iter().cloned().collect()
    }

    /// Channels plus patterns: the count SUBSCRIBE / PSUBSCRIBE confirmations carry.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Channels, patterns and shard channels, each counted apart (CLIENT LIST's sub, psub, ssub).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.channels.len(), self.patterns.len(), self.shard.len())
    }

    /// Shard channels: the count SSUBSCRIBE confirmations carry.
    pub fn shard_count(&self) -> usize {
        self.shard.len()
    }

    /// The count a confirmation of `kind` carries.
    pub fn count_for(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard_count(),
            _ => self.count(),
        }
    }

    /// Redis's CLIENT_PUBSUB in RESP2: only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT /
    /// RESET may run, and PING answers `["pong", arg]`.
    pub fn restricts(&self, protocol: Protocol) -> bool {
        protocol == Protocol::Resp2 && self.count() + self.shard_count() > 0
    }

    fn mailbox(&mut self) -> Mailbox {
        self.mailbox
            .get_or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                (
                    Mailbox {
                        tx,
                        budget: Arc::new(OutputBudget::default()),
                    },
                    rx,
                )
            })
            .0
            .clone()
    }

    /// Queues a reply that goes out before the current command's reply.
    pub fn precede(&mut self, frame: Frame) {
        self.preceding.push_back(frame);
    }

    /// Encodes the replies owed before the current command's own, then every message that has
    /// arrived, into `output`.
    pub fn drain(&mut self, protocol: Protocol, output: &mut BytesMut) {
        while let Some(frame) = self.preceding.pop_front() {
            frame.encode(protocol, output);
        }
        while let Some(Ok(delivery)) = self.mailbox.as_mut().map(|(_, rx)| rx.try_recv()) {
            self.write(delivery, protocol, output);
        }
    }

    /// Encodes one delivery: a message as it is, a dropped shard channel as its `sunsubscribe`
    /// (unless the client has left the channel since).
    fn write(&mut self, delivery: Delivery, protocol: Protocol, output: &mut BytesMut) {
        let frame = match delivery.dropped {
            Some(channel) if self.shard.remove(&channel) => Frame::Push(vec![
                Frame::Bulk(Bytes::from_static(Kind::Shard.unsubscribe_name())),
                Frame::Bulk(channel),
                Frame::Integer(self.shard_count() as i64),
            ]),
            Some(_) => return,
            None => delivery.frame,
        };
        frame.encode(protocol, output);
        self.owed += delivery.size;
    }

    /// Awaits the next message; pending forever for a client that never subscribed.
    pub async fn next(&mut self, protocol: Protocol, output: &mut BytesMut) {
        match &mut self.mailbox {
            Some((_, rx)) => {
                if let Some(delivery) = rx.recv().await {
                    self.write(delivery, protocol, output);
                }
            }
            None => std::future::pending().await,
        }
    }

    /// The output buffer was written: what it held no longer counts against the limit.
    pub fn written(&mut self) {
        if let Some((mailbox, _)) = &self.mailbox {
            mailbox.budget.written(self.owed);
        }
        self.owed = 0;
    }

    /// Cancelled once the client went past its output limit; `None` before its first subscribe.
    pub fn overflow(&self) -> Option<CancellationToken> {
        self.mailbox
            .as_ref()
            .map(|(mailbox, _)| mailbox.budget.overflow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_reaches_channels_and_patterns() {
        let pubsub = PubSub::default();
        let mut a = ClientSubscriptions::new(1);
        let mut b = ClientSubscriptions::new(2);
        assert!(pubsub.subscribe(Kind::Channel, &Bytes::from_static(b"news"), &mut a));
        assert!(!pubsub.subscribe(Kind::Channel, &Bytes::from_static(b"news"), &mut a));
        assert!(pubsub.subscribe(Kind::Pattern, &Bytes::from_static(b"n*"), &mut b));
        let channel = Bytes::from_static(b"news");
        assert_eq!(pubsub.publish(&channel, &Bytes::from_static(b"hi")), 2);
        let mut out = BytesMut::new();
        a.drain(Protocol::Resp2, &mut out);
        assert_eq!(
            &out[..],
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        out.clear();
        b.drain(Protocol::Resp3, &mut out);
        assert_eq!(
            &out[..],
            b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        pubsub.remove_client(&mut a);
        assert_eq!(pubsub.subscribers(Kind::Channel, b"news"), 0);
        assert_eq!(pubsub.publish(&channel, &Bytes::from_static(b"x")), 1);
    }
}
