//! The redirect layer: the pooled request path's use of the one redirect follower
//! (`follow::Follower`: MOVED, ASK, TRYAGAIN). The first attempt goes out unboxed; only a reply
//! that redirects boxes the rest of the way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tower::{Layer, Service};

use super::follow::{self, Follower};
use super::ClusterRequest;
use crate::error::BackendError;

/// Follows redirects with the proxy's one `Follower` (shared by every request: one reference
/// count per request).
#[derive(Clone)]
pub struct RedirectLayer {
    follow: Arc<Follower>,
}

impl RedirectLayer {
    pub fn new(follow: Arc<Follower>) -> RedirectLayer {
        RedirectLayer { follow }
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

/// Follows MOVED, ASK and TRYAGAIN from `inner`'s replies.
#[derive(Clone)]
pub struct Redirect<S> {
    inner: S,
    follow: Arc<Follower>,
}

impl<S> std::fmt::Debug for Redirect<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redirect")
    }
}

type Boxed = Pin<Box<dyn Future<Output = Result<Bytes, BackendError>> + Send>>;

/// A final reply on its way: the first attempt's future, unboxed (the common case: no
/// redirect); only a redirecting reply boxes the rest of the way.
pub struct RedirectFuture<S: Service<ClusterRequest>> {
    state: State<S>,
}

enum State<S: Service<ClusterRequest>> {
    First {
        reply: S::Future,
        inner: S,
        request: ClusterRequest,
        follow: Arc<Follower>,
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
                        Ok(reply) if follow::parse(&reply).is_some() => reply,
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

/// Follows the redirect in `reply` (the first attempt's) and those after it.
async fn follow_redirects<S>(
    mut inner: S,
    follow: Arc<Follower>,
    request: ClusterRequest,
    reply: Bytes,
) -> Result<Bytes, BackendError>
where
    S: Service<ClusterRequest, Response = Bytes, Error = BackendError>,
{
    let origin = request.target.clone();
    follow
        .follow(origin, Ok(reply), |target, asking| {
            inner.call(ClusterRequest {
                target,
                asking,
                ..request.clone()
            })
        })
        .await
}
