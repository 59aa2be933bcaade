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

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse};
use tokio::time::Instant;

use super::{Loaded, PersistedState, Revision, StateStore, StoreFuture};
use crate::error::StoreError;
use crate::leader::Leader;

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

    /// A client balanced over the endpoints. It connects lazily: this succeeds with etcd down,
    /// and the first request fails (or waits) instead.
    pub async fn connect(&self) -> Result<Client, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.request_timeout)
            .with_timeout(self.request_timeout);
        Ok(Client::connect(&self.endpoints, Some(options)).await?)
    }
}

/// `future` bounded by `limit`: a hung member must fail the request, not stall it.
pub(crate) async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, etcd_client::Error>>,
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
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let end = Instant::now() + budget;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(left.min(budget / 2), call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e @ etcd_client::Error::LeaseKeepAliveError(_))) => return Err(e.into()),
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
    client: Client,
    key: String,
    timeout: Duration,
    fence: Option<Leader>,
}

impl EtcdStore {
    /// A store over `client` (see `EtcdOptions::connect`), unfenced: any holder may write,
    /// still only from the latest revision.
    pub fn new(client: Client, options: &EtcdOptions) -> EtcdStore {
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
            let client = self.client.kv_client();
            let get = || {
                let mut client = client.clone();
                async move { client.get(self.key.as_str(), None).await }
            };
            let response = attempts(self.timeout, get).await?;
            match response.kvs().first() {
                None => Ok(Loaded {
                    state: None,
                    revision: Revision::NONE,
                }),
                Some(kv) => Ok(Loaded {
                    state: Some(self.decode(kv.value())?),
                    revision: revision(kv.mod_revision()),
                }),
            }
        })
    }

    fn save(&self, state: &PersistedState, expected: Revision) -> StoreFuture<'_, Revision> {
        let encoded = serde_json::to_vec(state).map_err(StoreError::Encode);
        Box::pin(async move {
            let encoded = encoded?;
            let mut compares = vec![if expected == Revision::NONE {
                Compare::create_revision(self.key.as_str(), CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(self.key.as_str(), CompareOp::Equal, raw(expected))
            }];
            if let Some(leader) = &self.fence {
                let term = leader.term().ok_or(StoreError::NotLeader)?;
                compares.push(Compare::create_revision(
                    term.key.as_str(),
                    CompareOp::Equal,
                    term.create_revision,
                ));
            }
            let txn = Txn::new()
                .when(compares)
                .and_then([TxnOp::put(self.key.as_str(), encoded.clone(), None)])
                .or_else([TxnOp::get(self.key.as_str(), None)]);
            // Trying again is safe: if an attempt committed but its answer was lost, the next
            // finds its own document in place (below).
            let client = self.client.kv_client();
            let save = || {
                let mut client = client.clone();
                let txn = txn.clone();
                async move { client.txn(txn).await }
            };
            let response = attempts(self.timeout, save).await?;
            if response.succeeded() {
                // The put is the transaction's only write: its mod_revision is the header's.
                let header = response.header().map(|h| h.revision()).unwrap_or(0);
                return Ok(revision(header));
            }
            let stored = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .map(|kv| (revision(kv.mod_revision()), kv.value().to_vec())),
                _ => None,
            });
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
