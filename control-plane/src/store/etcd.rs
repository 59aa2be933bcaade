//! The etcd backend: the state document (compact JSON) under `<prefix>/state`, every save one
//! transaction that commits only if the key's mod_revision is still the one this control plane
//! read or wrote (create_revision == 0 for the first save), and, when fenced by a `Leader`, only
//! if the leader key is still the one this control plane's election created. So a stale control
//! plane gets `Conflict` and writes nothing, and one that lost the election gets `NotLeader`,
//! whatever it believes: etcd decides both in the same linearizable step as the write.
//!
//! The revision handed back is etcd's mod_revision of the state key: one global counter, so a
//! revision is never reused, even across a deleted and recreated key.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tessera_proto::etcd::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use tessera_proto::etcd::etcdserverpb::kv_client::KvClient;
use tessera_proto::etcd::etcdserverpb::lease_client::LeaseClient;
use tessera_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use tessera_proto::etcd::etcdserverpb::request_op::Request;
use tessera_proto::etcd::etcdserverpb::response_op::Response;
use tessera_proto::etcd::etcdserverpb::watch_client::WatchClient;
use tessera_proto::etcd::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use tessera_proto::etcd::mvccpb::KeyValue;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::{Loaded, PersistedState, Revision, StateStore, StoreFuture};
use crate::error::{EtcdError, StoreError};
use crate::leader::Leader;

/// A client of etcd's v3 API (the code `tessera_proto::etcd` generates), over one channel
/// balanced across the endpoints: a member that refuses connections drops out of the balance
/// until it reconnects, and a request that went to a hung one is bounded by its caller
/// (`attempts`) and tried again, most likely elsewhere. Cheap to clone.
#[derive(Clone)]
pub struct EtcdClient {
    channel: Channel,
}

impl EtcdClient {
    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }

    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone())
    }

    pub fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone())
    }
}

/// A request stream of `first` that stays open until it is dropped: etcd ends a watch or a
/// keepalive stream when the client's side closes.
pub(crate) fn open_stream<T: Send + 'static>(first: T) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::iter([first]).chain(futures::stream::pending())
}

/// A compare of `key`'s `target` (create or mod revision) with `revision`.
pub(crate) fn revision_is(key: &str, target: CompareTarget, revision: i64) -> Compare {
    let union = match target {
        CompareTarget::Create => TargetUnion::CreateRevision(revision),
        _ => TargetUnion::ModRevision(revision),
    };
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(union),
        ..Compare::default()
    }
}

/// A transaction: if every compare holds, put `value` at `key` (under `lease`, 0 for none),
/// else get `key`.
pub(crate) fn put_else_get(
    compare: Vec<Compare>,
    key: &str,
    value: Vec<u8>,
    lease: i64,
) -> TxnRequest {
    let key = key.as_bytes().to_vec();
    TxnRequest {
        compare,
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.clone(),
                value,
                lease,
                ..PutRequest::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key,
                ..RangeRequest::default()
            })),
        }],
    }
}

/// The key-value the failure branch of `put_else_get` read, if the key exists.
pub(crate) fn got(response: &TxnResponse) -> Option<&KeyValue> {
    response.responses.iter().find_map(|op| match &op.response {
        Some(Response::ResponseRange(range)) => range.kvs.first(),
        _ => None,
    })
}

/// The revision of the store when etcd answered.
pub(crate) fn header_revision(
    header: Option<&tessera_proto::etcd::etcdserverpb::ResponseHeader>,
) -> i64 {
    header.map(|h| h.revision).unwrap_or(0)
}

/// Where the control plane's etcd is and where its keys live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs (`http://127.0.0.1:2379`); requests are balanced over the ones that answer.
    pub endpoints: Vec<String>,
    /// The cluster's key prefix: `<prefix>/state` and `<prefix>/leader`. One per Tessera
    /// cluster, so clusters can share an etcd.
    pub prefix: String,
    /// Bound on each load or save, attempts included, so a hung etcd member fails a request
    /// instead of holding the controller's lock.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> EtcdOptions {
        EtcdOptions {
            endpoints,
            prefix: prefix.into(),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix.trim_end_matches('/'))
    }

    /// The key holding the state document.
    pub fn state_key(&self) -> String {
        self.key("state")
    }

    /// The key the elected leader holds under its lease; its value is the leader's address.
    pub fn leader_key(&self) -> String {
        self.key("leader")
    }

    /// A client balanced over the endpoints (`http://` assumed when a URL names no scheme). It
    /// connects lazily: this succeeds with etcd down, and the first request fails (or waits)
    /// instead.
    pub async fn connect(&self) -> Result<EtcdClient, StoreError> {
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for url in &self.endpoints {
            let full = if url.contains("://") {
                url.clone()
            } else {
                format!("http://{url}")
            };
            let endpoint = Endpoint::from_shared(full).map_err(|source| EtcdError::Endpoint {
                endpoint: url.clone(),
                source,
            })?;
            endpoints.push(endpoint.connect_timeout(self.request_timeout));
        }
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints.into());
        }
        Ok(EtcdClient {
            channel: Channel::balance_list(endpoints.into_iter()),
        })
    }
}

/// Wakes `changed` whenever `key` changes in etcd, until `stop`: a follower's cue to reload the
/// state the leader saved, so the topologies it serves (and streams to watchers) follow the
/// leader's within an etcd round trip. The watch is reopened after a second when it breaks, with
/// one wake-up then (a change may have been missed meanwhile).
pub async fn watch_key(
    client: EtcdClient,
    key: String,
    changed: std::sync::Arc<tokio::sync::Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    use tessera_proto::etcd::etcdserverpb::watch_request::RequestUnion;
    use tessera_proto::etcd::etcdserverpb::{WatchCreateRequest, WatchRequest};
    loop {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                ..WatchCreateRequest::default()
            })),
        };
        let mut watch = client.watch();
        let watched = async {
            let mut stream = watch.watch(open_stream(create)).await?.into_inner();
            while let Some(response) = stream.message().await? {
                if response.canceled {
                    break;
                }
                if !response.events.is_empty() {
                    changed.notify_one();
                }
            }
            Ok::<(), tonic::Status>(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            ended = watched => {
                if let Err(status) = ended {
                    tracing::debug!(%status, "the state watch broke; reopening");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => changed.notify_one(),
        }
    }
}

/// `future` bounded by `limit`: a hung member must fail the request, not stall it.
pub(crate) async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, EtcdError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Timeout(limit)),
    }
}

/// The pause between two attempts of one request.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Calls `call` until it succeeds, fails for good (the lease is gone), or `budget` runs out.
/// Each attempt gets at most half the budget: the client balances over the endpoints, and an
/// attempt that went to a dead or hung member must leave time for one that goes elsewhere.
pub(crate) async fn attempts<T, F, Fut>(budget: Duration, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EtcdError>>,
{
    let end = Instant::now() + budget;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(left.min(budget / 2), call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e @ EtcdError::LeaseNotFound(_))) => return Err(e.into()),
            Ok(Err(e)) => StoreError::Etcd(e),
            Err(_) => StoreError::Timeout(budget),
        };
        if Instant::now() + RETRY_PAUSE >= end {
            return Err(error);
        }
        tracing::debug!(error = %error, "etcd request failed: trying again");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn revision(raw: i64) -> Revision {
    Revision(u64::try_from(raw).unwrap_or(0))
}

fn raw(revision: Revision) -> i64 {
    i64::try_from(revision.0).unwrap_or(i64::MAX)
}

/// The state in etcd. Cheap to clone (the client is a handle).
#[derive(Clone)]
pub struct EtcdStore {
    client: EtcdClient,
    key: String,
    timeout: Duration,
    fence: Option<Leader>,
}

impl EtcdStore {
    /// A store over `client` (see `EtcdOptions::connect`), unfenced: any holder may write,
    /// still only from the latest revision.
    pub fn new(client: EtcdClient, options: &EtcdOptions) -> EtcdStore {
        EtcdStore {
            client,
            key: options.state_key(),
            timeout: options.request_timeout,
            fence: None,
        }
    }

    /// Makes every save also require that `leader` holds its term: the leader key must still be
    /// the one its election created. Without a term the save is refused before it is sent.
    pub fn fenced_by(mut self, leader: Leader) -> EtcdStore {
        self.fence = Some(leader);
        self
    }

    /// The key holding the state document.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn decode(&self, bytes: &[u8]) -> Result<PersistedState, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
            path: format!("etcd key {}", self.key),
            source,
        })
    }
}

impl StateStore for EtcdStore {
    fn load(&self) -> StoreFuture<'_, Loaded> {
        Box::pin(async move {
            let client = self.client.kv();
            let get = || {
                let mut client = client.clone();
                let request = RangeRequest {
                    key: self.key.as_bytes().to_vec(),
                    ..RangeRequest::default()
                };
                async move { Ok::<RangeResponse, EtcdError>(client.range(request).await?.into_inner()) }
            };
            let response = attempts(self.timeout, get).await?;
            match response.kvs.first() {
                None => Ok(Loaded {
                    state: None,
                    revision: Revision::NONE,
                }),
                Some(kv) => Ok(Loaded {
                    state: Some(self.decode(&kv.value)?),
                    revision: revision(kv.mod_revision),
                }),
            }
        })
    }

    fn save(&self, state: &PersistedState, expected: Revision) -> StoreFuture<'_, Revision> {
        let encoded = serde_json::to_vec(state).map_err(StoreError::Encode);
        Box::pin(async move {
            let encoded = encoded?;
            let mut compares = vec![if expected == Revision::NONE {
                revision_is(&self.key, CompareTarget::Create, 0)
            } else {
                revision_is(&self.key, CompareTarget::Mod, raw(expected))
            }];
            if let Some(leader) = &self.fence {
                let term = leader.term().ok_or(StoreError::NotLeader)?;
                compares.push(revision_is(
                    &term.key,
                    CompareTarget::Create,
                    term.create_revision,
                ));
            }
            let txn = put_else_get(compares, &self.key, encoded.clone(), 0);
            // Trying again is safe: if an attempt committed but its answer was lost, the next
            // finds its own document in place (below).
            let client = self.client.kv();
            let save = || {
                let mut client = client.clone();
                let txn = txn.clone();
                async move { Ok::<TxnResponse, EtcdError>(client.txn(txn).await?.into_inner()) }
            };
            let response = attempts(self.timeout, save).await?;
            if response.succeeded {
                // The put is the transaction's only write: its mod_revision is the header's.
                return Ok(revision(header_revision(response.header.as_ref())));
            }
            let stored = got(&response).map(|kv| (revision(kv.mod_revision), kv.value.clone()));
            match stored {
                // The state compare held, so the fence failed.
                None if expected == Revision::NONE => Err(StoreError::NotLeader),
                Some((found, _)) if found == expected => Err(StoreError::NotLeader),
                // An earlier attempt of this save committed and its answer was lost: the
                // document is ours, byte for byte.
                Some((found, bytes)) if found > expected && bytes == encoded => Ok(found),
                Some((found, _)) => Err(StoreError::Conflict { expected, found }),
                None => Err(StoreError::Conflict {
                    expected,
                    found: Revision::NONE,
                }),
            }
        })
    }
}
