//! Blocking commands (BLPOP, BRPOP, BLMOVE, BLMPOP, BRPOPLPUSH, BZPOPMIN, BZPOPMAX, BZMPOP): each
//! call runs on a dedicated connection from the owner's idle pool, never on a shared pipelined
//! one (where it would hold up other clients' replies), and may take the backend timeout plus the
//! command's own timeout (without limit for timeout 0). MOVED and ASK are followed (bounded) on
//! dedicated connections too. A connection whose reply did not come in time is closed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::resp::Protocol;

use crate::backend::redirect::{self, Redirection, MAX_REDIRECTS};
use crate::backend::Backend;
use crate::client::Reply;
use crate::shared::Shared;

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

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
    let mut backend = backend.clone();
    Reply::Exclusive(Box::pin(async move {
        let limit = timeout.map(|t| backend.timeout().saturating_add(t));
        let mut asking = false;
        for _ in 0..=MAX_REDIRECTS {
            let conn = backend.dedicated(protocol);
            let ask = asking.then(|| conn.send(Bytes::from_static(ASKING)));
            let reply = conn.send(request.clone());
            if let Some(ask) = ask {
                let _ = conn.wait(ask, Some(backend.timeout())).await;
            }
            let reply = match conn.wait(reply, limit).await {
                Ok(reply) => reply,
                Err(error) => return crate::forward::failure(&shared, Some(slot), &error),
            };
            let (addr, ask) = match redirect::parse(&reply) {
                None => return reply,
                Some(Redirection::Moved { addr, .. }) => {
                    shared.view.request_refresh();
                    (addr, false)
                }
                Some(Redirection::Ask { addr, .. }) => (addr, true),
            };
            backend = shared.view.registry().get(&addr);
            asking = ask;
        }
        crate::forward::error_bytes("ERR too many redirects for a blocking command")
    }))
}
