//! Leader election through an etcd lease, so that of several control planes sharing one etcd
//! exactly one decides and writes.
//!
//! The algorithm: grant a lease of `ttl`; create the leader key (`<prefix>/leader`, value: this
//! control plane's advertised address) under that lease only if it is absent (a transaction on
//! create_revision == 0). Whoever created it leads until the lease ends: etcd deletes the key
//! when the lease expires or is revoked, and the followers, watching the key, try again at once.
//! A leader keeps the lease alive every `ttl / 3`, and checks each round that the key is still
//! its own (an operator may delete it).
//!
//! The timing argument. etcd extends a lease to `ttl` from the moment it *receives* a keepalive,
//! which is after the moment it was *sent*. So a control plane that counts its leadership as
//! valid until `sent + ttl` of its last answered keepalive (or its grant) stops believing no
//! later than etcd can expire the lease, and so before any other control plane can create the
//! key: two control planes never both believe they lead, provided their clocks run at the same
//! rate (elapsed time, not wall time: `Instant`). A control plane cut off from etcd loses
//! leadership at that deadline by itself, without hearing anything: `Leader::term` compares
//! with the clock on every call, and a timer publishes the loss. A keepalive round opens its own
//! stream, so an answer is never credited to a later send. The conditional writes are the
//! second fence: a save also compares the leader key's create_revision with this term's
//! (`EtcdStore::fenced_by`), so even a belief gone wrong cannot commit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_proto::etcd::etcdserverpb::compare::CompareTarget;
use tessera_proto::etcd::etcdserverpb::watch_request::RequestUnion;
use tessera_proto::etcd::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, TxnResponse, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{EtcdError, StoreError};
use crate::store::etcd::{
    attempts, bounded, got, header_revision, open_stream, put_else_get, revision_is, EtcdClient,
};

/// An open watch: etcd's answers, until the stream is dropped.
type WatchStream = tonic::Streaming<WatchResponse>;

/// Who leads, as this control plane last learned it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's advertised address; `None` while no leader is known.
    pub leader: Option<String>,
    /// Whether this control plane is the leader.
    pub is_me: bool,
}

/// The proof a write carries that its writer leads: the leader key as this control plane's
/// election created it. Any other holder, or none, has another create_revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub key: String,
    pub create_revision: i64,
    /// The lease the key lives under.
    pub lease: i64,
}

/// What a campaign needs to know.
#[derive(Debug, Clone)]
pub struct ElectionOptions {
    /// The leader key (`EtcdOptions::leader_key`).
    pub key: String,
    /// This control plane's advertised address, the key's value: what followers name as the
    /// leader.
    pub me: String,
    /// The lease's time to live: how long after its last keepalive a leader that vanished keeps
    /// the others waiting. etcd counts in whole seconds (rounded up here), and raises a TTL below
    /// its own minimum (1.5 x its election timeout) to that minimum.
    pub ttl: Duration,
}

impl ElectionOptions {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3);

    fn ttl_secs(&self) -> i64 {
        let secs = self.ttl.as_secs() + u64::from(self.ttl.subsec_nanos() > 0);
        i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
    }

    /// How often a leader renews, and the bound on each request: three rounds per TTL, so one
    /// lost or slow round does not cost the leadership.
    fn period(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.ttl_secs()).unwrap_or(1)) / 3
    }
}

/// The shared half of a leadership: the term and its deadline (checked on every read) and the
/// published `Leadership` for those who wait on changes.
struct Shared {
    held: Mutex<Option<(Term, Instant)>>,
    published: watch::Sender<Leadership>,
}

/// A handle on this control plane's election: who leads now, and the term to fence writes
/// with. Cheap to clone.
#[derive(Clone)]
pub struct Leader {
    shared: Arc<Shared>,
}

impl Leader {
    /// Starts campaigning on `client` until `stop`. On stop the leadership is given up at once
    /// (believed first, then the lease revoked, so the others take over without waiting out the
    /// TTL). The task ends after that.
    pub fn campaign(
        client: EtcdClient,
        options: ElectionOptions,
        stop: CancellationToken,
    ) -> (Leader, JoinHandle<()>) {
        let (published, _) = watch::channel(Leadership::default());
        let leader = Leader {
            shared: Arc::new(Shared {
                held: Mutex::new(None),
                published,
            }),
        };
        let campaign = Campaign {
            client,
            options,
            shared: leader.shared.clone(),
        };
        (leader, tokio::spawn(campaign.run(stop)))
    }

    /// The current term, only while it is valid: `None` from the deadline on, whether or not
    /// the campaign task has run since.
    pub fn term(&self) -> Option<Term> {
        let held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
        match &*held {
            Some((term, until)) if Instant::now() < *until => Some(term.clone()),
            _ => None,
        }
    }

    /// Who leads now (`is_me` as `term` says it, to the instant).
    pub fn leadership(&self) -> Leadership {
        let mut now = self.shared.published.borrow().clone();
        now.is_me = self.term().is_some();
        now
    }

    /// Every change of who leads. A loss of leadership by deadline is published by a timer, so
    /// it may reach subscribers a moment after `term` already says it.
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.shared.published.subscribe()
    }
}

/// What one round learned about the leader key.
enum Owner {
    /// The key is ours, created at this revision.
    Me(i64),
    /// Another control plane holds it: its address, the key's create_revision, and the
    /// revision to watch from.
    Other {
        address: String,
        created: i64,
        revision: i64,
    },
    /// Nobody holds it and we could not take it (an error): try again.
    Unknown,
}

struct Campaign {
    client: EtcdClient,
    options: ElectionOptions,
    shared: Arc<Shared>,
}

/// A granted lease and how long etcd keeps it at least.
struct Lease {
    id: i64,
    /// What a keepalive renews it to (at most the TTL asked for).
    ttl: Duration,
    /// `sent + ttl` of the last grant or keepalive etcd answered.
    valid_until: Instant,
}

impl Campaign {
    async fn run(self, stop: CancellationToken) {
        let period = self.options.period();
        let mut lease: Option<Lease> = None;
        // The watch on the key a follower saw, by the holder's create_revision.
        let mut watching: Option<(i64, WatchStream)> = None;
        'campaign: while !stop.is_cancelled() {
            // Rounds race the deadline: a round stuck on a hung etcd must not keep the belief.
            let round = tokio::select! {
                _ = stop.cancelled() => break,
                _ = sleep_until_some(self.deadline()) => {
                    tracing::warn!("leadership lost: no keepalive answered within the lease TTL");
                    self.publish(None, None);
                    continue;
                }
                round = self.round(&mut lease) => round,
            };
            let next = Instant::now() + period;
            match round {
                Owner::Me(create_revision) => {
                    watching = None;
                    match &lease {
                        // Ours, and answered for recently enough to vouch for.
                        Some(held) if Instant::now() < held.valid_until => {
                            let term = Term {
                                key: self.options.key.clone(),
                                create_revision,
                                lease: held.id,
                            };
                            let me = Some(self.options.me.clone());
                            self.publish(Some((term, held.valid_until)), me);
                        }
                        _ => self.publish(None, None),
                    }
                }
                Owner::Other {
                    address,
                    created,
                    revision,
                } => {
                    self.publish(None, Some(address));
                    if watching.as_ref().map(|(c, _)| *c) != Some(created) {
                        watching = self.watch(revision).await.map(|w| (created, w));
                    }
                }
                // What we knew stands; a term ends by its deadline.
                Owner::Unknown => watching = None,
            }
            // Until the next round; a follower wakes early when the leader key changes.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break 'campaign,
                    _ = tokio::time::sleep_until(next) => break,
                    _ = sleep_until_some(self.deadline()) => break,
                    changed = next_change(&mut watching) => {
                        if changed {
                            break;
                        }
                        watching = None;
                    }
                }
            }
        }
        self.resign(lease).await;
    }

    /// One round: a lease (granted, or kept alive), then the leader key taken or read.
    async fn round(&self, lease: &mut Option<Lease>) -> Owner {
        let period = self.options.period();
        let client = self.client.lease();
        match lease {
            None => {
                let ttl = self.options.ttl_secs();
                let grant = || {
                    let mut client = client.clone();
                    let sent = Instant::now();
                    let request = LeaseGrantRequest { ttl, id: 0 };
                    async move {
                        let granted = client.lease_grant(request).await?.into_inner();
                        Ok::<_, EtcdError>((sent, granted))
                    }
                };
                match attempts(period, grant).await {
                    Ok((sent, granted)) => {
                        // etcd may grant more than asked (its minimum), never less.
                        let ttl = secs(ttl.min(granted.ttl));
                        *lease = Some(Lease {
                            id: granted.id,
                            ttl,
                            valid_until: sent + ttl,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot grant an election lease");
                        return Owner::Unknown;
                    }
                }
            }
            Some(held) => {
                let id = held.id;
                // A stream of its own per attempt: its one answer (a TTL of 0 when the lease is
                // gone) renewed the lease no earlier than `sent`.
                let keep_alive = || {
                    let mut client = client.clone();
                    let sent = Instant::now();
                    async move {
                        let request = open_stream(LeaseKeepAliveRequest { id });
                        let mut answers = client.lease_keep_alive(request).await?.into_inner();
                        match answers.message().await? {
                            Some(answer) if answer.ttl > 0 => Ok(sent),
                            Some(_) => Err(EtcdError::LeaseNotFound(id)),
                            None => Err(EtcdError::StreamEnded("keepalive")),
                        }
                    }
                };
                match attempts(period, keep_alive).await {
                    Ok(sent) => held.valid_until = held.valid_until.max(sent + held.ttl),
                    Err(e @ StoreError::Etcd(EtcdError::LeaseNotFound(_))) => {
                        // "lease not found": it ended at etcd, and the key with it.
                        tracing::warn!(error = %e, "election lease ended: campaigning anew");
                        *lease = None;
                        self.publish(None, None);
                        return Owner::Unknown;
                    }
                    Err(e) => tracing::debug!(error = %e, "election keepalive failed"),
                }
            }
        }
        // A lease past its deadline is kept: only etcd can say it ended ("lease not found"
        // above), and while it lives, so does our key, and we lead again on the next answer.
        match lease {
            Some(held) => self.take_or_read(held.id).await,
            None => Owner::Unknown,
        }
    }

    /// Creates the leader key under `lease` if absent; otherwise reads who holds it.
    async fn take_or_read(&self, lease: i64) -> Owner {
        let key = self.options.key.as_str();
        let txn = put_else_get(
            vec![revision_is(key, CompareTarget::Create, 0)],
            key,
            self.options.me.as_bytes().to_vec(),
            lease,
        );
        let client = self.client.kv();
        let take = || {
            let mut client = client.clone();
            let txn = txn.clone();
            async move { Ok::<TxnResponse, EtcdError>(client.txn(txn).await?.into_inner()) }
        };
        let response = match attempts(self.options.period(), take).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the leader key");
                return Owner::Unknown;
            }
        };
        let revision = header_revision(response.header.as_ref());
        if response.succeeded {
            tracing::info!(address = %self.options.me, "elected leader");
            return Owner::Me(revision);
        }
        let held = got(&response).map(|kv| {
            (
                kv.lease,
                kv.create_revision,
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        });
        match held {
            // Ours from an earlier round: still ours while the lease lives.
            Some((holder, created, _)) if holder == lease => Owner::Me(created),
            Some((_, created, address)) => Owner::Other {
                address,
                created,
                revision,
            },
            // Deleted between the compare and the read: cannot happen in one transaction.
            None => Owner::Unknown,
        }
    }

    /// A watch on the leader key from after `revision`, so a follower hears at once when the
    /// leader's key goes (its lease ended) instead of at its next round.
    async fn watch(&self, revision: i64) -> Option<WatchStream> {
        let mut client = self.client.watch();
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: self.options.key.as_bytes().to_vec(),
                start_revision: revision + 1,
                ..WatchCreateRequest::default()
            })),
        };
        // Open, then wait for etcd to confirm the watch was created.
        let open = async move {
            let mut stream = client.watch(open_stream(create)).await?.into_inner();
            match stream.message().await? {
                Some(created) if created.created && !created.canceled => Ok(stream),
                _ => Err(EtcdError::StreamEnded("watch")),
            }
        };
        match bounded(self.options.period(), open).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch the leader key");
                None
            }
        }
    }

    /// The deadline of the term held, if any.
    fn deadline(&self) -> Option<Instant> {
        let held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref().map(|(_, until)| *until)
    }

    /// Records the term (or none) and publishes who leads when that changed.
    fn publish(&self, term: Option<(Term, Instant)>, leader: Option<String>) {
        let is_me = term.is_some();
        *self.shared.held.lock().unwrap_or_else(|p| p.into_inner()) = term;
        let next = Leadership { leader, is_me };
        self.shared.published.send_if_modified(|current| {
            if *current == next {
                return false;
            }
            tracing::info!(leader = ?next.leader, is_me = next.is_me, "leadership changed");
            *current = next;
            true
        });
    }

    /// Stops believing, then revokes the lease (best effort, bounded), which deletes the key.
    async fn resign(&self, lease: Option<Lease>) {
        self.publish(None, None);
        if let Some(lease) = lease {
            let mut client = self.client.lease();
            let revoke = async move {
                client
                    .lease_revoke(LeaseRevokeRequest { id: lease.id })
                    .await
                    .map_err(EtcdError::from)
            };
            if let Err(e) = bounded(self.options.period(), revoke).await {
                tracing::debug!(error = %e, "cannot revoke the election lease: it expires by itself");
            }
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits for an event on the watched key: `true` when one came, `false` when the watch ended
/// (then the caller drops it); forever when there is no watch.
async fn next_change(watching: &mut Option<(i64, WatchStream)>) -> bool {
    let Some((_, stream)) = watching else {
        return std::future::pending().await;
    };
    loop {
        match stream.message().await {
            Ok(Some(response)) if response.canceled => return false,
            // Puts and deletes are the only kinds of event.
            Ok(Some(response)) if !response.events.is_empty() => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds_and_renews_three_times_per_ttl() {
        let options = |ttl| ElectionOptions {
            key: "k".into(),
            me: "a".into(),
            ttl,
        };
        assert_eq!(options(Duration::from_secs(3)).ttl_secs(), 3);
        assert_eq!(options(Duration::from_millis(2500)).ttl_secs(), 3);
        assert_eq!(options(Duration::from_millis(10)).ttl_secs(), 1);
        assert_eq!(options(Duration::ZERO).ttl_secs(), 1);
        assert_eq!(
            options(Duration::from_secs(3)).period(),
            Duration::from_secs(1)
        );
    }
}
