//! Blocking commands (BLPOP, BRPOP, BLMOVE, BLMPOP, BRPOPLPUSH, BZPOPMIN, BZPOPMAX, BZMPOP): each
//! call runs on a dedicated connection from the owner's idle pool, never on a shared pipelined
//! one (where it would hold up other clients' replies), and may take the backend timeout plus the
//! command's own timeout (without limit for timeout 0). Redirects are followed by the one
//! follower (`backend::follow`), each attempt on a dedicated connection of the node it names. A
//! connection whose reply did not come in time is closed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::resp::Protocol;

use crate::backend::Backend;
use crate::session::Reply;
use crate::shared::Shared;

/// The reply future of one blocking command; it starts when the client's earlier replies are out
/// (`Reply::Exclusive`), so the command runs in the client's order.
pub fn run(
    shared: &Arc<Shared>,
    backend: &Arc<Backend>,
    protocol: Protocol,
    request: Bytes,
    slot: u16,
    timeout: Option<Duration>,
) -> Reply {
    let shared = shared.clone();
    let backend = backend.clone();
    Reply::Exclusive(Box::pin(async move {
        let limit = timeout.map(|t| backend.timeout().saturating_add(t));
        let attempt = |target: Arc<Backend>, asking: bool| {
            let request = request.clone();
            async move {
                let conn = target.dedicated(protocol);
                let reply = if asking {
                    conn.send_asking(request)
                } else {
                    conn.send(request)
                };
                conn.wait(reply, limit).await
            }
        };
        match shared.follow.run(backend, attempt).await {
            Ok(reply) => reply,
            Err(error) => crate::forward::failure(&shared, Some(slot), &error),
        }
    }))
}
