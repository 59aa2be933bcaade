//! Routing over a list of control planes: the transport under every control plane client, so
//! nodes, proxies and clusterctl follow the leader without knowing there is more than one.
//!
//! Every call goes to the control plane that answered last (the leader, once a change has been
//! redirected there). A follower refuses a change with FAILED_PRECONDITION and the leader's
//! address in the `tessera-leader` header; the router then sends the same request to that
//! address (connecting to it if it is not in the list). A control plane that cannot be reached,
//! or that named no leader, is skipped for the next in the list. Reads and the topology watch
//! are answered by whichever control plane is current: followers serve them.
//!
//! A call dropped before any answer came (the caller's timeout ran out: a hung control plane)
//! also moves on to the next address, so a stopped process costs one timed-out call, not every
//! call until the HTTP/2 keepalive gives up on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::{http, Bytes, Service};
use tonic::transport::Channel;

/// The header a follower names the leader in (empty while no leader is known).
pub const LEADER_HEADER: &str = "tessera-leader";

/// gRPC's FAILED_PRECONDITION, as the `grpc-status` header carries it.
const FAILED_PRECONDITION: &str = "9";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One control plane: its `host:port` (what a follower names it by) and its channel.
#[derive(Clone)]
struct Target {
    authority: String,
    channel: Channel,
}

/// The targets (the configured ones first, then leaders learned from redirects) and which one
/// calls go to.
struct Targets {
    list: Vec<Target>,
    current: usize,
    /// Builds the channel of a leader address not in the list.
    connect: fn(&str) -> Option<Channel>,
    /// The scheme of the configured URLs, for learned addresses.
    scheme: String,
}

impl Targets {
    fn current(&self) -> (usize, Target) {
        (self.current, self.list[self.current].clone())
    }

    /// Moves past `index` (when it is still the current one); returns the new current.
    fn skip(&mut self, index: usize) -> (usize, Target) {
        if self.current == index {
            self.current = (index + 1) % self.list.len();
        }
        self.current()
    }

    /// Makes `index` the current target: it answered.
    fn settle(&mut self, index: usize) {
        self.current = index;
    }

    /// The target named `authority`, added when it is not known yet (and can be connected to).
    fn named(&mut self, authority: &str) -> Option<(usize, Target)> {
        if let Some(index) = self.list.iter().position(|t| t.authority == authority) {
            return Some((index, self.list[index].clone()));
        }
        let channel = (self.connect)(&format!("{}://{authority}", self.scheme))?;
        self.list.push(Target {
            authority: authority.to_string(),
            channel,
        });
        let index = self.list.len() - 1;
        Some((index, self.list[index].clone()))
    }
}

/// A `tower::Service` sending gRPC requests to the leading control plane of a list. Cheap to
/// clone (clones share the targets and their channels).
#[derive(Clone)]
pub struct Router {
    targets: Arc<Mutex<Targets>>,
}

impl Router {
    /// A router over `channels` (URL, channel), in the order given; `connect` builds the
    /// channel of a leader learned from a redirect. `channels` must not be empty.
    pub(super) fn new(
        channels: Vec<(String, Channel)>,
        connect: fn(&str) -> Option<Channel>,
    ) -> Router {
        let scheme = channels
            .first()
            .and_then(|(url, _)| url.parse::<http::Uri>().ok())
            .and_then(|uri| uri.scheme_str().map(str::to_string))
            .unwrap_or_else(|| "http".to_string());
        let list = channels
            .into_iter()
            .map(|(url, channel)| Target {
                authority: authority(&url),
                channel,
            })
            .collect();
        Router {
            targets: Arc::new(Mutex::new(Targets {
                list,
                current: 0,
                connect,
                scheme,
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Targets) -> T) -> T {
        f(&mut self.targets.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends `request` to the current target, following redirects and skipping unreachable
    /// targets, at most twice around the list plus one: a redirect loop (two control planes
    /// naming each other during an election) ends with the last answer.
    async fn route(self, request: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await?.to_bytes();
        let (mut index, mut target) = self.with(|t| t.current());
        let limit = 2 * self.with(|t| t.list.len()) + 1;
        let mut last = None;
        for _ in 0..limit {
            let request = rebuild(&parts, bytes.clone());
            let mut channel = target.channel.clone();
            let mut pending = Pending {
                router: &self,
                index,
                armed: true,
            };
            let answer = async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            }
            .await;
            pending.armed = false;
            let next = match answer {
                Err(error) => {
                    tracing::debug!(control_plane = %target.authority, %error, "control plane unreachable; trying the next");
                    last = Some(Err(error.into()));
                    None
                }
                Ok(response) => match redirect(&response) {
                    None => {
                        self.with(|t| t.settle(index));
                        return Ok(response);
                    }
                    Some(leader) => {
                        last = Some(Ok(response));
                        leader
                            .filter(|leader| *leader != target.authority)
                            .and_then(|leader| self.with(|t| t.named(&leader)))
                    }
                },
            };
            (index, target) = match next {
                Some(next) => next,
                None => self.with(|t| t.skip(index)),
            };
        }
        last.unwrap_or_else(|| Err("no control plane to send to".into()))
    }
}

impl Service<http::Request<Body>> for Router {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.clone().route(request))
    }
}

/// Skips its target when dropped while still armed: the call was abandoned unanswered.
struct Pending<'a> {
    router: &'a Router,
    index: usize,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.router.with(|t| t.skip(self.index));
        }
    }
}

/// The same request again, with the buffered body.
fn rebuild(parts: &http::request::Parts, body: Bytes) -> http::Request<Body> {
    let mut request = http::Request::new(Body::new(http_body_util::Full::new(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

/// A follower's refusal: `Some(leader)` (`None` inside while it knows no leader); `None` for any
/// other answer.
fn redirect(response: &http::Response<Body>) -> Option<Option<String>> {
    let headers = response.headers();
    if headers.get("grpc-status")?.as_bytes() != FAILED_PRECONDITION.as_bytes() {
        return None;
    }
    let leader = headers.get(LEADER_HEADER)?.to_str().ok()?.trim();
    Some((!leader.is_empty()).then(|| authority(leader)))
}

/// `host:port` of a URL or of an address given without a scheme.
fn authority(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((_, rest)) => rest.to_string(),
        None => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_strips_scheme_and_slash() {
        assert_eq!(authority("http://127.0.0.1:50051/"), "127.0.0.1:50051");
        assert_eq!(authority("cp-1:50051"), "cp-1:50051");
    }

    #[test]
    fn only_a_failed_precondition_with_the_header_redirects() {
        let response = |status: &str, leader: Option<&str>| {
            let mut response = http::Response::new(Body::empty());
            response
                .headers_mut()
                .insert("grpc-status", status.parse().unwrap());
            if let Some(leader) = leader {
                response
                    .headers_mut()
                    .insert(LEADER_HEADER, leader.parse().unwrap());
            }
            response
        };
        assert_eq!(
            redirect(&response("9", Some("10.0.0.1:50051"))),
            Some(Some("10.0.0.1:50051".to_string()))
        );
        assert_eq!(redirect(&response("9", Some(""))), Some(None));
        assert_eq!(redirect(&response("9", None)), None);
        assert_eq!(redirect(&response("14", Some("a:1"))), None);
    }
}
