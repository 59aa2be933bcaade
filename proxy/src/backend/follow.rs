//! The proxy's one redirect follower. Every path that sends a command to a backend (the pooled
//! request path with its splits and fan-outs, blocking commands, transactions, WATCH, pub/sub)
//! hands it the first reply and a way to send the command again, and it does what Redis Cluster
//! asks of a client:
//! - `-MOVED slot host:port`: the slot has a new owner. The topology view is told (it refreshes in
//!   the background) and the command goes to the named node at once.
//! - `-ASK slot host:port`: the slot is migrating and the key is at the named node now. The
//!   command goes there behind `ASKING`, the two written as one unit (`connection::Job::asking`).
//! - `-TRYAGAIN`: a multi-key command whose keys are split between the two ends of a migration.
//!   After a short pause the command starts over at its first target, until the migration ends;
//!   past `TRYAGAIN_RETRIES` retries or `TRYAGAIN_FOR`, the TRYAGAIN error is the reply, as a
//!   Redis Cluster client would finally see.
//!
//! At most `MAX_REDIRECTS` MOVED / ASK hops from each start. Past them, a MOVED means the nodes
//! do not agree on the slot's owner yet (a move or failover was just published and has not
//! reached them all): the command starts over after a pause, as after TRYAGAIN and within the
//! same bounds, by which time they agree. Past those bounds (or past the hops for an ASK), the
//! last redirect is the reply. The decision (`Hops`) is a pure function of the redirects seen and the clock; the
//! sending is the caller's.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Backend, Registry};
use crate::error::BackendError;

/// Most MOVED / ASK hops followed from one start.
pub const MAX_REDIRECTS: usize = 5;
/// Pause before a command answered TRYAGAIN starts over (a migration moves keys in batches: a
/// few milliseconds each).
pub const TRYAGAIN_PAUSE: Duration = Duration::from_millis(25);
/// Most times a command answered TRYAGAIN starts over.
pub const TRYAGAIN_RETRIES: usize = 40;
/// Longest time a command keeps starting over after its first TRYAGAIN.
pub const TRYAGAIN_FOR: Duration = Duration::from_secs(2);

/// Where a backend told us to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirection {
    /// The slot lives elsewhere now: refresh the topology and retry there.
    Moved { slot: u16, addr: String },
    /// The slot is migrating: send ASKING and the command, once, to `addr`.
    Ask { slot: u16, addr: String },
    /// Keys split between a migration's two ends: start over after a pause.
    TryAgain,
}

/// The redirect a raw reply carries, if any. Only error replies are looked into.
pub fn parse(reply: &[u8]) -> Option<Redirection> {
    if reply.first() != Some(&b'-') {
        return None;
    }
    if reply.starts_with(b"-TRYAGAIN ") || reply == b"-TRYAGAIN\r\n" {
        return Some(Redirection::TryAgain);
    }
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

/// What one attempt came back with, as far as redirects go: a raw reply, or a transaction's
/// replies (whose redirect may be any queued command's).
pub trait Outcome {
    fn redirection(&self) -> Option<Redirection>;
}

impl Outcome for Bytes {
    fn redirection(&self) -> Option<Redirection> {
        parse(self)
    }
}

/// The next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// To the named node, behind ASKING or not; `moved` asks for a topology refresh.
    Hop {
        addr: String,
        asking: bool,
        moved: bool,
    },
    /// Start over at the first target after `TRYAGAIN_PAUSE`.
    StartOver,
}

/// The bounds of one command's redirects.
#[derive(Debug, Default)]
pub struct Hops {
    hops: usize,
    retries: usize,
    tryagain_since: Option<Instant>,
}

impl Hops {
    /// The step after `redirection`, seen at `now`; `None`: past the bounds, the redirect is the
    /// reply.
    pub fn next(&mut self, redirection: Redirection, now: Instant) -> Option<Step> {
        let start_over = match redirection {
            Redirection::TryAgain => true,
            Redirection::Moved { .. } => self.hops == MAX_REDIRECTS,
            Redirection::Ask { .. } => false,
        };
        match redirection {
            _ if start_over => {
                let since = *self.tryagain_since.get_or_insert(now);
                if self.retries == TRYAGAIN_RETRIES || now.duration_since(since) >= TRYAGAIN_FOR {
                    return None;
                }
                self.retries += 1;
                self.hops = 0;
                Some(Step::StartOver)
            }
            Redirection::TryAgain => None,
            _ if self.hops == MAX_REDIRECTS => None,
            Redirection::Moved { addr, .. } => {
                self.hops += 1;
                Some(Step::Hop {
                    addr,
                    asking: false,
                    moved: true,
                })
            }
            Redirection::Ask { addr, .. } => {
                self.hops += 1;
                Some(Step::Hop {
                    addr,
                    asking: true,
                    moved: false,
                })
            }
        }
    }
}

/// What following needs: the backends by address, and whom to tell of a MOVED (the topology
/// view's refresh).
pub struct Follower {
    registry: Arc<Registry>,
    on_moved: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Follower")
    }
}

impl Follower {
    pub fn new(registry: Arc<Registry>, on_moved: Arc<dyn Fn() + Send + Sync>) -> Follower {
        Follower { registry, on_moved }
    }

    /// Sends with `send(target, asking)` to `origin`, then follows the redirects.
    pub async fn run<R, F, Fut>(&self, origin: Arc<Backend>, mut send: F) -> Result<R, BackendError>
    where
        R: Outcome,
        F: FnMut(Arc<Backend>, bool) -> Fut,
        Fut: Future<Output = Result<R, BackendError>>,
    {
        let first = send(origin.clone(), false).await;
        self.follow(origin, first, send).await
    }

    /// Follows the redirects of `first`, the outcome of sending to `origin`, sending again with
    /// `send(target, asking)`; the first outcome that is not followed is the result.
    pub async fn follow<R, F, Fut>(
        &self,
        origin: Arc<Backend>,
        first: Result<R, BackendError>,
        mut send: F,
    ) -> Result<R, BackendError>
    where
        R: Outcome,
        F: FnMut(Arc<Backend>, bool) -> Fut,
        Fut: Future<Output = Result<R, BackendError>>,
    {
        let mut hops = Hops::default();
        let mut result = first;
        loop {
            let outcome = result?;
            let Some(step) = outcome.redirection().and_then(|r| self.next(&mut hops, r)) else {
                return Ok(outcome);
            };
            result = match step {
                Step::Hop { addr, asking, .. } => send(self.registry.get(&addr), asking).await,
                Step::StartOver => {
                    tokio::time::sleep(TRYAGAIN_PAUSE).await;
                    send(origin.clone(), false).await
                }
            };
        }
    }

    /// The step after `redirection` within `hops`' bounds (`None`: the redirect is the reply);
    /// a MOVED hop tells the topology view. For callers that send on their own connections (the
    /// pub/sub stream); `follow` decides with it too.
    pub fn next(&self, hops: &mut Hops, redirection: Redirection) -> Option<Step> {
        let step = hops.next(redirection, Instant::now())?;
        if let Step::Hop { moved: true, .. } = step {
            (self.on_moved)();
        }
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_moved_ask_and_tryagain() {
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
        assert_eq!(
            parse(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            Some(Redirection::TryAgain)
        );
    }

    #[test]
    fn ignores_everything_else() {
        assert_eq!(parse(b"+OK\r\n"), None);
        assert_eq!(parse(b"-ERR MOVED 1 a:1\r\n"), None);
        assert_eq!(parse(b"-MOVED x a:1\r\n"), None);
        assert_eq!(parse(b"-MOVED 1\r\n"), None);
        assert_eq!(parse(b"$5\r\n-MOVE\r\n"), None);
        assert_eq!(parse(b"-TRYAGAINX\r\n"), None);
        assert_eq!(parse(b"$9\r\nTRYAGAIN \r\n"), None);
    }

    fn moved() -> Redirection {
        Redirection::Moved {
            slot: 1,
            addr: "a:1".into(),
        }
    }

    fn ask() -> Redirection {
        Redirection::Ask {
            slot: 1,
            addr: "b:1".into(),
        }
    }

    /// Each row: the redirects seen (and when, in ms after the first), and how many are followed
    /// before the bound makes the last one the reply.
    #[test]
    fn bounds_table() {
        let hop = |addr: &str, asking: bool| Step::Hop {
            addr: addr.into(),
            asking,
            moved: !asking,
        };
        assert_eq!(
            Hops::default().next(moved(), Instant::now()),
            Some(hop("a:1", false))
        );
        assert_eq!(
            Hops::default().next(ask(), Instant::now()),
            Some(hop("b:1", true))
        );
        /// A redirect seen, and when (ms after the first).
        type Seen = Vec<(Redirection, u64)>;
        let table: &[(&str, Seen, usize)] = &[
            (
                "moved hops past the bound start over, within tryagain's bounds",
                vec![(moved(), 0); 300],
                (MAX_REDIRECTS + 1) * TRYAGAIN_RETRIES + MAX_REDIRECTS,
            ),
            (
                "moved bouncing is bounded in time",
                [
                    vec![(moved(), 0); MAX_REDIRECTS + 1],
                    vec![(moved(), 2000); 10],
                ]
                .concat(),
                MAX_REDIRECTS + 1 + MAX_REDIRECTS,
            ),
            (
                "ask and moved share the bound; past it an ask is the reply",
                vec![vec![(moved(), 0), (ask(), 0)]; 4].concat(),
                MAX_REDIRECTS,
            ),
            (
                "tryagain is bounded in count",
                vec![(Redirection::TryAgain, 0); TRYAGAIN_RETRIES + 5],
                TRYAGAIN_RETRIES,
            ),
            (
                "tryagain is bounded in time",
                vec![
                    (Redirection::TryAgain, 0),
                    (Redirection::TryAgain, 1000),
                    (Redirection::TryAgain, 2000),
                ],
                2,
            ),
            (
                "a start over resets the hops, not the time",
                vec![
                    [
                        vec![(moved(), 0); MAX_REDIRECTS],
                        vec![(Redirection::TryAgain, 0)]
                    ]
                    .concat();
                    2
                ]
                .concat(),
                2 * MAX_REDIRECTS + 2,
            ),
        ];
        let start = Instant::now();
        for (name, seen, followed) in table {
            let mut hops = Hops::default();
            let count = seen
                .iter()
                .take_while(|(r, ms)| {
                    hops.next(r.clone(), start + Duration::from_millis(*ms))
                        .is_some()
                })
                .count();
            assert_eq!(count, *followed, "{name}");
        }
    }
}
