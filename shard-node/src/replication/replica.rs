//! Following a master: connect to its cluster bus (AUTH with the node secret), REPLCONF, PSYNC
//! with this node's history (`? -1` when it has none), then either load the snapshot or continue,
//! apply the stream, ACK every second and on GETACK, and after a break reconnect with backoff and
//! continue from the offset reached.
//!
//! Each write of the stream is applied and logged under its slot's gate held exclusively, and a
//! transaction (MULTI ... EXEC) as one unit at its EXEC: so this node's own AOF rewrite, and the
//! snapshots it makes for replicas of its own, see each write wholly in a slot's snapshot or
//! wholly after it (they take the gate too), as on a master, where the slot's lock gives that.
//! The log is fed the master's bytes verbatim, so this node's offset is its master's.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tessera_proto::resp::connect::{connect, Login};
use tessera_proto::resp::encode::command_bytes;
use tessera_proto::resp::request::{self, RequestLimits};
use tessera_proto::resp::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::ids::{ReplIds, NO_REPLID};
use super::{LinkState, LinkStatus, MasterAddress};
use crate::aof::rewrite::record_slot;
use crate::state::NodeState;

/// Bound on connecting and logging in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence from the master longer than this ends the link (Redis's repl-timeout; the master
/// PINGs every 10 s and sends a newline every second while it makes a snapshot).
const REPL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the replica acknowledges its offset (Redis: every second).
const ACK_PERIOD: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest reply line accepted during the handshake.
const MAX_LINE: usize = 1024;

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tessera_proto::resp::connect::ConnectError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no data from the master for {0:?}")]
    Timeout(Duration),
    #[error("the master closed the link")]
    Closed,
    #[error("the master refused {command}: {reply}")]
    Refused {
        command: &'static str,
        reply: String,
    },
    #[error("bad data from the master: {0}")]
    Protocol(String),
}

/// Runs the link to `master` until `stop`.
pub(super) async fn run(
    state: Arc<NodeState>,
    master: MasterAddress,
    link: Arc<LinkStatus>,
    stop: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        link.set(LinkState::Connecting);
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            result = session(&state, &master, &link) => result,
        };
        let was_connected = link.state() == LinkState::Connected;
        link.set(LinkState::Connect);
        if let Err(error) = result {
            tracing::warn!(master = %master.bus_addr(), %error, "replication link down; reconnecting");
        }
        if was_connected {
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    link.set(LinkState::Connect);
}

/// One connection to the master: handshake, sync, stream until it breaks.
async fn session(
    state: &Arc<NodeState>,
    master: &MasterAddress,
    link: &LinkStatus,
) -> Result<(), LinkError> {
    let repl = &state.replication;
    let login = Login {
        secret: state.stats.node_secret.as_deref(),
        protocol: Protocol::Resp2,
        readonly: false,
    };
    let (stream, input) = connect(&master.bus_addr(), login, CONNECT_TIMEOUT).await?;
    let mut conn = Conn {
        stream,
        input,
        link,
    };
    link.touch();
    let port = repl
        .announce_port
        .load(std::sync::atomic::Ordering::Relaxed)
        .to_string();
    conn.exchange(
        "REPLCONF listening-port",
        &[b"REPLCONF", b"listening-port", port.as_bytes()],
    )
    .await?;
    conn.exchange(
        "REPLCONF capa",
        &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"],
    )
    .await?;

    let ids = repl.ids();
    let from = (repl.offset() + 1).to_string();
    let psync: [&[u8]; 3] = if ids.valid {
        [b"PSYNC", ids.replid.as_bytes(), from.as_bytes()]
    } else {
        [b"PSYNC", b"?", b"-1"]
    };
    conn.stream.write_all(&command_bytes(&psync)).await?;
    let reply = conn.line().await?;
    if let Some(rest) = reply.strip_prefix("+FULLRESYNC ") {
        let (replid, offset) = rest
            .split_once(' ')
            .and_then(|(id, off)| Some((id.to_string(), off.parse::<u64>().ok()?)))
            .ok_or_else(|| LinkError::Protocol(format!("bad FULLRESYNC reply: {reply}")))?;
        link.set(LinkState::Sync);
        tracing::info!(master = %master.bus_addr(), %replid, offset, "full resync from the master");
        conn.load_snapshot(state).await?;
        repl.set_ids(ReplIds {
            replid,
            replid2: NO_REPLID.to_string(),
            second_offset: -1,
            valid: true,
        });
        repl.log.reset(offset);
        link.full_syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let new_id = rest.trim();
        if !new_id.is_empty() && new_id != ids.replid {
            // The master continues our history under a new id (it was promoted): keep the old
            // one as replid2, as Redis does, for replicas of our own.
            let offset = repl.offset();
            repl.update_ids(|ids| {
                ids.replid2 = std::mem::replace(&mut ids.replid, new_id.to_string());
                ids.second_offset = offset as i64 + 1;
            });
        }
        tracing::info!(master = %master.bus_addr(), from = repl.offset() + 1, "partial resync: continuing");
        link.partial_syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else {
        return Err(LinkError::Refused {
            command: "PSYNC",
            reply,
        });
    }
    link.set(LinkState::Connected);
    conn.follow(state).await
}

struct Conn<'a> {
    stream: TcpStream,
    input: BytesMut,
    link: &'a LinkStatus,
}

impl Conn<'_> {
    /// Reads more from the master, bounded by the replication timeout.
    async fn fill(&mut self) -> Result<(), LinkError> {
        if self.input.capacity() - self.input.len() < 16 * 1024 {
            self.input.reserve(64 * 1024);
        }
        match tokio::time::timeout(REPL_TIMEOUT, self.stream.read_buf(&mut self.input)).await {
            Err(_) => Err(LinkError::Timeout(REPL_TIMEOUT)),
            Ok(Ok(0)) => Err(LinkError::Closed),
            Ok(Ok(_)) => {
                self.link.touch();
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// One reply line, skipping the master's keepalive newlines.
    async fn line(&mut self) -> Result<String, LinkError> {
        loop {
            while self.input.first() == Some(&b'\n') {
                self.input.advance(1);
            }
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.input[..end]).into_owned();
                self.input.advance(end + 2);
                return Ok(line);
            }
            if self.input.len() > MAX_LINE {
                return Err(LinkError::Protocol("reply line too long".to_string()));
            }
            self.fill().await?;
        }
    }

    /// Sends a handshake command and expects `+OK`.
    async fn exchange(&mut self, command: &'static str, args: &[&[u8]]) -> Result<(), LinkError> {
        self.stream.write_all(&command_bytes(args)).await?;
        let reply = self.line().await?;
        if let Some(error) = reply.strip_prefix('-') {
            return Err(LinkError::Refused {
                command,
                reply: error.to_string(),
            });
        }
        Ok(())
    }

    /// Reads `$<len>` and applies the payload command by command (never holding more than one
    /// command of it), after emptying the keyspace. Until it is all applied the node's history is
    /// invalid, so a break makes the next PSYNC ask for a full resync.
    async fn load_snapshot(&mut self, state: &NodeState) -> Result<(), LinkError> {
        let header = self.line().await?;
        let len: u64 = header
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| LinkError::Protocol(format!("bad snapshot header: {header}")))?;
        let repl = &state.replication;
        repl.update_ids(|ids| ids.valid = false);
        flush(state);
        let limits = RequestLimits::default();
        let mut left = len;
        let mut payload = BytesMut::new();
        let mut applier = Applier::default();
        loop {
            let take = left.min(self.input.len() as u64) as usize;
            payload.extend_from_slice(&self.input.split_to(take));
            left -= take as u64;
            while let Some(request) = request::parse(&mut payload, &limits)
                .map_err(|e| LinkError::Protocol(format!("in the snapshot: {e}")))?
            {
                applier.entry(state, request.raw.unwrap_or_default(), request.args, false);
            }
            if left == 0 {
                break;
            }
            self.fill().await?;
        }
        if !payload.is_empty() || applier.multi.is_some() {
            return Err(LinkError::Protocol(
                "the snapshot ends inside a command".to_string(),
            ));
        }
        Ok(())
    }

    /// Applies the stream until the link breaks, acknowledging every second and on GETACK.
    async fn follow(&mut self, state: &NodeState) -> Result<(), LinkError> {
        let repl = &state.replication;
        let limits = RequestLimits::default();
        let mut applier = Applier::default();
        let mut ack = tokio::time::interval(ACK_PERIOD);
        ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut ack_now = false;
            while let Some(request) = request::parse(&mut self.input, &limits)
                .map_err(|e| LinkError::Protocol(e.to_string()))?
            {
                let raw = request.raw.unwrap_or_default();
                let args = request.args;
                let name = args
                    .first()
                    .map(|n| n.to_ascii_lowercase())
                    .unwrap_or_default();
                match &name[..] {
                    b"replconf" => {
                        ack_now |= args
                            .get(1)
                            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"getack"));
                        repl.log.append_from_master(&raw, None);
                    }
                    b"ping" | b"select" => repl.log.append_from_master(&raw, None),
                    _ => applier.entry(state, raw, args, true),
                }
            }
            if ack_now {
                self.ack(state).await?;
            }
            tokio::select! {
                _ = ack.tick() => self.ack(state).await?,
                filled = self.fill() => filled?,
            }
        }
    }

    async fn ack(&mut self, state: &NodeState) -> Result<(), LinkError> {
        let offset = state.replication.offset().to_string();
        self.stream
            .write_all(&command_bytes(&[b"REPLCONF", b"ACK", offset.as_bytes()]))
            .await?;
        Ok(())
    }
}

/// Empties the keyspace before a snapshot is loaded, as FLUSHALL (watchers marked), and says so
/// in the AOF, so replaying it yields the snapshot and not the snapshot over older data.
fn flush(state: &NodeState) {
    let mut guards = state.keyspace.lock_all();
    state.keyspace.watches().touch_existing(&guards);
    state
        .replication
        .log
        .append_aof_only(&[Bytes::from_static(b"FLUSHALL")]);
    for guard in guards.iter_mut() {
        guard.clear();
    }
}

/// Applies the master's writes, keeping a transaction back until its EXEC.
#[derive(Default)]
struct Applier {
    multi: Option<Vec<(Bytes, Vec<Bytes>)>>,
}

impl Applier {
    /// One command of the master's stream (`stream`) or snapshot.
    fn entry(&mut self, state: &NodeState, raw: Bytes, args: Vec<Bytes>, stream: bool) {
        let name = args
            .first()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        match (&name[..], self.multi.as_mut()) {
            (b"multi", None) => self.multi = Some(vec![(raw, args)]),
            (b"exec", Some(queued)) => {
                queued.push((raw, args));
                let unit = std::mem::take(queued);
                self.multi = None;
                apply(state, &unit, stream);
            }
            (_, Some(queued)) => queued.push((raw, args)),
            // Entries only the stream has meaning for, inside a snapshot's captured writes.
            (b"replconf" | b"ping" | b"select", None) if !stream => {}
            (_, None) => apply(state, &[(raw, args)], stream),
        }
    }
}

/// Logs and applies `unit` (one write, or MULTI ... EXEC) under its slot's gate.
fn apply(state: &NodeState, unit: &[(Bytes, Vec<Bytes>)], stream: bool) {
    let slot = unit.iter().find_map(|(_, args)| record_slot(args));
    let gates = state.keyspace.gates();
    let _gate = slot.map(|slot| gates.exclusive(slot));
    let log = &state.replication.log;
    for (raw, args) in unit {
        if stream {
            log.append_from_master(raw, Some(args));
        } else {
            log.append_aof_only(args);
        }
    }
    for (_, args) in unit {
        let name = args
            .first()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        if name == b"multi" || name == b"exec" {
            continue;
        }
        if let Err(error) = crate::cmd::replay(state, args.clone()) {
            tracing::warn!(command = %String::from_utf8_lossy(&name), %error, "a write from the master failed on this replica");
        }
    }
}
