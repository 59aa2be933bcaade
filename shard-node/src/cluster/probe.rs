//! Peer probes: every peer in the topology gets a RESP `PING` each round over a kept TCP
//! connection to its cluster bus (`crate::bus`); a peer with no `PONG` for longer than
//! node-timeout is reported unreachable in the next heartbeat, and a peer whose last connection
//! attempt was refused (ECONNREFUSED: nothing listens, its process is gone) is reported `refused`
//! at once. The control plane combines these reports into PFAIL / FAIL, and fails over a master
//! whose port refuses everybody without waiting out its lease.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tessera_proto::topology::{NodeId, Topology};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use tessera_proto::resp::ping::{ping_on, PingError};

use super::{intervals, Member};

/// What this node has seen of each peer. Guarded by a mutex: touched once per probe round and
/// once per heartbeat, never on the client path.
#[derive(Default)]
pub struct PeerTable {
    peers: Mutex<HashMap<NodeId, PeerHealth>>,
}

#[derive(Debug, Clone, Copy)]
struct PeerHealth {
    /// When probing this peer began: the silence clock's origin until a first PONG.
    since: Instant,
    last_pong: Option<Instant>,
    /// The latest probe failed because the connection was refused; cleared by an answer or by a
    /// failure of another kind (a timeout is not evidence that the process is gone).
    refused: bool,
}

/// What this node reports of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSeen {
    pub id: NodeId,
    pub reachable: bool,
    pub refused: bool,
}

/// The outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    Refused,
    /// Timed out, reset, or any other failure.
    Failed,
}

impl Outcome {
    fn of(result: &Result<(), PingError>) -> Outcome {
        match result {
            Ok(()) => Outcome::Answered,
            Err(PingError::Connect(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Outcome::Refused
            }
            Err(_) => Outcome::Failed,
        }
    }
}

impl PeerTable {
    /// Records one probe sent at `sent` and how it ended.
    pub fn record(&self, peer: &NodeId, sent: Instant, outcome: Outcome) {
        let mut peers = self.peers.lock();
        let health = peers.entry(peer.clone()).or_insert(PeerHealth {
            since: sent,
            last_pong: None,
            refused: false,
        });
        if outcome == Outcome::Answered {
            health.last_pong = Some(health.last_pong.map_or(sent, |t| t.max(sent)));
        }
        health.refused = outcome == Outcome::Refused;
    }

    /// Forgets peers no longer in the topology.
    pub fn retain(&self, keep: impl Fn(&NodeId) -> bool) {
        self.peers.lock().retain(|id, _| keep(id));
    }

    /// For every peer in `topology` other than `myself`: reachable unless it has been probed
    /// and silent for longer than `node_timeout` at `now`. A peer not probed yet counts as
    /// reachable (no evidence against it).
    pub fn observations(
        &self,
        topology: &Topology,
        myself: &NodeId,
        now: Instant,
        node_timeout: Duration,
    ) -> Vec<PeerSeen> {
        let peers = self.peers.lock();
        topology
            .nodes()
            .iter()
            .filter(|n| &n.id != myself)
            .map(|n| {
                let health = peers.get(&n.id);
                let reachable = health.is_none_or(|h| {
                    let heard = h.last_pong.unwrap_or(h.since);
                    now.saturating_duration_since(heard) <= node_timeout
                });
                PeerSeen {
                    id: n.id.clone(),
                    reachable,
                    refused: health.is_some_and(|h| h.refused),
                }
            })
            .collect()
    }
}

/// A peer's kept connection.
struct Peer {
    host: String,
    port: u16,
    stream: Option<TcpStream>,
    /// The last failure logged, so a peer that stays down is logged once, not every round.
    failing: bool,
}

impl Peer {
    /// One probe: reuses the connection, or opens one; any failure drops it, so a late reply
    /// can never be mistaken for the next probe's. A kept connection that fails other than by
    /// timing out (reset or closed: the peer may have died) is retried once on a new connection
    /// within the same timeout, so a dead peer is reported refused in this round, not the next.
    async fn probe(&mut self, timeout: Duration) -> Result<(), PingError> {
        let result = tokio::time::timeout(timeout, async {
            let reused = self.stream.is_some();
            let first = self.ping().await;
            match first {
                Err(PingError::Io(_) | PingError::Closed) if reused => {
                    self.stream = None;
                    self.ping().await
                }
                other => other,
            }
        })
        .await
        .unwrap_or(Err(PingError::Timeout));
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn ping(&mut self) -> Result<(), PingError> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect((self.host.as_str(), self.port))
                    .await
                    .map_err(PingError::Connect)?;
                let _ = stream.set_nodelay(true);
                self.stream.insert(stream)
            }
        };
        let result = ping_on(stream).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// Probes every peer of the current topology each round until `shutdown`.
pub(super) async fn run(member: Arc<dyn Member>, shutdown: CancellationToken) {
    let view_ref = member.cluster();
    let mut peers: HashMap<NodeId, Peer> = HashMap::new();
    loop {
        let topology = view_ref.topology();
        let (interval, timeout) = intervals(&topology);
        let myself = view_ref.myself().clone();
        peers.retain(|id, _| topology.node(id).is_some_and(|_| id != &myself));
        view_ref.peers.retain(|id| topology.node(id).is_some());
        for node in topology.nodes().iter().filter(|n| n.id != myself) {
            let peer = peers.entry(node.id.clone()).or_insert_with(|| Peer {
                host: node.host.clone(),
                port: node.bus_port,
                stream: None,
                failing: false,
            });
            if peer.host != node.host || peer.port != node.bus_port {
                peer.host = node.host.clone();
                peer.port = node.bus_port;
                peer.stream = None;
            }
        }

        let sent = Instant::now();
        let results = futures::future::join_all(peers.iter_mut().map(|(id, peer)| async move {
            let result = peer.probe(timeout).await;
            match &result {
                Err(e) if !peer.failing => {
                    peer.failing = true;
                    tracing::info!(peer = %id, address = %format!("{}:{}", peer.host, peer.port), error = %e, "peer probe failed");
                }
                Ok(()) if peer.failing => {
                    peer.failing = false;
                    tracing::info!(peer = %id, "peer answers probes again");
                }
                _ => {}
            }
            (id.clone(), Outcome::of(&result))
        }))
        .await;
        for (id, outcome) in results {
            view_ref.peers.record(&id, sent, outcome);
            view_ref.counters.ping_sent.fetch_add(1, Ordering::Relaxed);
            if outcome == Outcome::Answered {
                view_ref
                    .counters
                    .pong_received
                    .fetch_add(1, Ordering::Relaxed);
            }
        }

        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval.saturating_sub(sent.elapsed())) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_random_bytes([n; 20])
    }

    fn topology_of(ids: &[NodeId]) -> Topology {
        let mut topology = Topology::default();
        for (i, id) in ids.iter().enumerate() {
            topology.push_node(tessera_proto::topology::NodeSpec {
                config_epoch: i as u64 + 1,
                ..tessera_proto::topology::NodeSpec::master(
                    id.clone(),
                    "127.0.0.1",
                    7000 + i as u16,
                )
            });
        }
        topology
    }

    #[test]
    fn silence_longer_than_node_timeout_is_unreachable() {
        let (me, a, b, c) = (id(1), id(2), id(3), id(4));
        let topology = topology_of(&[me.clone(), a.clone(), b.clone(), c.clone()]);
        let table = PeerTable::default();
        let t0 = Instant::now();
        let timeout = Duration::from_millis(1000);
        table.record(&a, t0, Outcome::Answered);
        table.record(&b, t0, Outcome::Failed);
        table.record(&a, t0 + Duration::from_millis(900), Outcome::Answered);
        table.record(&b, t0 + Duration::from_millis(900), Outcome::Failed);
        let seen = table.observations(&topology, &me, t0 + Duration::from_millis(1500), timeout);
        let seen: Vec<_> = seen.into_iter().map(|p| (p.id, p.reachable)).collect();
        assert_eq!(
            seen,
            vec![(a.clone(), true), (b.clone(), false), (c.clone(), true)]
        );
        // Within node-timeout of the first probe, silence is not yet failure.
        let seen = table.observations(&topology, &me, t0 + Duration::from_millis(1000), timeout);
        assert!(seen.iter().all(|p| p.reachable));
    }

    #[test]
    fn refused_is_the_last_probe_only() {
        let (me, a) = (id(1), id(2));
        let topology = topology_of(&[me.clone(), a.clone()]);
        let table = PeerTable::default();
        let t0 = Instant::now();
        let timeout = Duration::from_millis(1000);
        let refused =
            |table: &PeerTable| table.observations(&topology, &me, t0, timeout)[0].refused;
        assert!(!refused(&table), "not probed yet");
        table.record(&a, t0, Outcome::Refused);
        assert!(refused(&table), "refused at once, long before node-timeout");
        assert!(table.observations(&topology, &me, t0, timeout)[0].reachable);
        table.record(&a, t0, Outcome::Failed);
        assert!(!refused(&table), "a timeout is not a refusal");
        table.record(&a, t0, Outcome::Refused);
        table.record(&a, t0, Outcome::Answered);
        assert!(!refused(&table));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_silent_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut silent = Peer {
            host: "127.0.0.1".into(),
            port,
            stream: None,
            failing: false,
        };
        // Accepted by the kernel, never answered: a hung process.
        let result = silent.probe(Duration::from_millis(100)).await;
        assert_eq!(Outcome::of(&result), Outcome::Failed);
        drop(listener);
        let result = silent.probe(Duration::from_millis(100)).await;
        assert_eq!(Outcome::of(&result), Outcome::Refused);
    }
}
