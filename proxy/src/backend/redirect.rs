//! The redirect layer: follows `-MOVED slot host:port` (tell `on_moved`, so the topology gets
//! refreshed in the background, and retry on the named node) and `-ASK slot host:port` (send
//! ASKING then the command to the named node), at most `MAX_REDIRECTS` hops; then the last
//! redirect is the reply. Only replies that start with `-MOVED ` or `-ASK ` are looked at.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tower::{Layer, Service};

use super::{ClusterRequest, Registry};
use crate::error::BackendError;

/// Most redirects followed for one command.
pub const MAX_REDIRECTS: usize = 5;

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// What following a redirect needs, shared by every request (one reference count per request).
struct Follow {
    registry: Arc<Registry>,
    on_moved: Arc<dyn Fn() + Send + Sync>,
}

#[derive(Clone)]
pub struct RedirectLayer {
    follow: Arc<Follow>,
}

impl RedirectLayer {
    pub fn new(registry: Arc<Registry>, on_moved: Arc<dyn Fn() + Send + Sync>) -> RedirectLayer {
        RedirectLayer {
            follow: Arc::new(Follow { registry, on_moved }),
        }
    }
}

impl<S> Layer<S> for RedirectLayer {
    type Service = Redirect<S>;

    fn layer(&self, inner: S) -> Redirect<S> {
        Redirect {
            inner,
            follow: self.follow.clone(),
        }
    }
}

/// Follows MOVED and ASK from `inner`'s replies.
#[derive(Clone)]
pub struct Redirect<S> {
    inner: S,
    follow: Arc<Follow>,
}

impl<S> std::fmt::Debug for Redirect<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redirect")
    }
}

type Boxed = Pin<Box<dyn Future<Output = Result<Bytes, BackendError>> + Send>>;

/// A final reply on its way: the first attempt's future, unboxed (the common case: no
/// redirect); only a MOVED or ASK reply boxes the rest of the way.
pub struct RedirectFuture<S: Service<ClusterRequest>> {
    state: State<S>,
}

enum State<S: Service<ClusterRequest>> {
    First {
        reply: S::Future,
        inner: S,
        request: ClusterRequest,
        follow: Arc<Follow>,
    },
    Following(Boxed),
    Done,
}

impl<S> Service<ClusterRequest> for Redirect<S>
where
    S: Service<ClusterRequest, Response = Bytes, Error = BackendError>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Response = Bytes;
    type Error = BackendError;
    type Future = RedirectFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Queues the first attempt before returning (the inner stack is always ready), so the
    /// client's order holds; only redirected attempts are queued later.
    fn call(&mut self, request: ClusterRequest) -> RedirectFuture<S> {
        let reply = self.inner.call(request.clone());
        RedirectFuture {
            state: State::First {
                reply,
                inner: self.inner.clone(),
                request,
                follow: self.follow.clone(),
            },
        }
    }
}

impl<S> Future for RedirectFuture<S>
where
    S: Service<ClusterRequest, Response = Bytes, Error = BackendError> + Send + Unpin + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Output = Result<Bytes, BackendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is Unpin (the service and its future by the bounds), so the state can move.
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::First { reply, .. } => {
                    let result = std::task::ready!(Pin::new(reply).poll(cx));
                    let reply = match result {
                        Ok(reply) if parse(&reply).is_some() => reply,
                        done => {
                            this.state = State::Done;
                            return Poll::Ready(done);
                        }
                    };
                    let State::First {
                        inner,
                        request,
                        follow,
                        ..
                    } = std::mem::replace(&mut this.state, State::Done)
                    else {
                        unreachable!("matched First above")
                    };
                    this.state =
                        State::Following(Box::pin(follow_redirects(inner, follow, request, reply)));
                }
                State::Following(rest) => {
                    let result = std::task::ready!(rest.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(result);
                }
                State::Done => {
                    return Poll::Ready(Err(BackendError::ConnectionLost {
                        addr: "(a reply already taken)".to_string(),
                    }))
                }
            }
        }
    }
}

/// Follows the redirect in `reply` (and those after it), at most `MAX_REDIRECTS` hops; then the
/// last redirect is the reply.
async fn follow_redirects<S>(
    mut inner: S,
    follow: Arc<Follow>,
    request: ClusterRequest,
    reply: Bytes,
) -> Result<Bytes, BackendError>
where
    S: Service<ClusterRequest, Response = Bytes, Error = BackendError>,
{
    let mut result = Ok(reply);
    let mut hops = 0;
    loop {
        let reply = result?;
        let Some(redirect) = parse(&reply) else {
            return Ok(reply);
        };
        if hops == MAX_REDIRECTS {
            return Ok(reply);
        }
        hops += 1;
        let retry = |target: &Arc<super::Backend>, bytes: Bytes| ClusterRequest {
            target: target.clone(),
            bytes,
            ..request.clone()
        };
        result = match redirect {
            Redirection::Moved { addr, .. } => {
                (follow.on_moved)();
                let target = follow.registry.get(&addr);
                inner.call(retry(&target, request.bytes.clone())).await
            }
            Redirection::Ask { addr, .. } => {
                let target = follow.registry.get(&addr);
                let asking = inner.call(retry(&target, Bytes::from_static(ASKING)));
                let again = inner.call(retry(&target, request.bytes.clone()));
                let _ = asking.await;
                again.await
            }
        };
    }
}

/// Where a backend told us to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirection {
    /// The slot lives elsewhere now: refresh the topology and retry there.
    Moved { slot: u16, addr: String },
    /// The slot is migrating: send ASKING then the command, once, to `addr`.
    Ask { slot: u16, addr: String },
}

/// The redirect a raw reply carries, if any.
pub fn parse(reply: &[u8]) -> Option<Redirection> {
    let (moved, rest) = if let Some(rest) = reply.strip_prefix(b"-MOVED ") {
        (true, rest)
    } else if let Some(rest) = reply.strip_prefix(b"-ASK ") {
        (false, rest)
    } else {
        return None;
    };
    let line = rest.strip_suffix(b"\r\n")?;
    let text = std::str::from_utf8(line).ok()?;
    let (slot, addr) = text.split_once(' ')?;
    let slot: u16 = slot.parse().ok()?;
    if addr.is_empty() || addr.contains(' ') {
        return None;
    }
    let addr = addr.to_string();
    Some(if moved {
        Redirection::Moved { slot, addr }
    } else {
        Redirection::Ask { slot, addr }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_moved_and_ask() {
        assert_eq!(
            parse(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirection::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            parse(b"-ASK 1 h:1\r\n"),
            Some(Redirection::Ask {
                slot: 1,
                addr: "h:1".into()
            })
        );
    }

    #[test]
    fn ignores_everything_else() {
        assert_eq!(parse(b"+OK\r\n"), None);
        assert_eq!(parse(b"-ERR MOVED 1 a:1\r\n"), None);
        assert_eq!(parse(b"-MOVED x a:1\r\n"), None);
        assert_eq!(parse(b"-MOVED 1\r\n"), None);
        assert_eq!(parse(b"$5\r\n-MOVE\r\n"), None);
    }
}
