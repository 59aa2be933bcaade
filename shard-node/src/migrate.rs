//! Moving slots' keys to another master, as the control plane's plan says (the topology's
//! migrations: source MIGRATING, target IMPORTING). The source sends its keys in batches over the
//! target's cluster bus; the target applies them as its own writes (logged: AOF and replicas);
//! the source then deletes them (logged too). A slot whose keys are all gone is reported drained
//! in the heartbeats (at once when every slot given is drained), and the control plane gives it
//! to the target in one topology change.
//!
//! A batch holds keys of several slots going to the same target, in slot order: at a million
//! keys a slot has about 60, and a batch a slot would pay a round trip and two fsyncs for each.
//! One batch is in flight at a time; between two the mover pauses so that it is busy at most
//! `BUSY_SHARE` of the time, leaving the rest to clients' commands.
//!
//! Why nothing is lost or copied twice:
//! - each slot's part of a batch is taken under the slot's gate, and its keys are in transit
//!   (`keyspace::transit`) until the batch has landed: writes to them wait (reads are served
//!   here), so they cannot change on the source while the target is being given them, and nobody
//!   looks for them on the target before they are there;
//! - a key that is not here is the target's (`cluster_rule::migration_check` answers ASK), so no
//!   key of the slot is created here once the move began, and one is drained for good;
//! - each key is sent as `DEL key` and the commands that recreate it: a batch applied twice, or
//!   again after failing half-way on the target (the source retries a batch it has no
//!   acknowledgement for), gives the same keys once;
//! - the source deletes a batch only after the target acknowledged all of it, which it does once
//!   the batch is on its disk (with the append-only file on: one fsync a batch); a batch that
//!   fails leaves the keys here, and is taken again;
//! - the source's deletes are on its disk (one fsync a batch) before the keys leave transit, so a
//!   source that crashes never brings back a key the target has changed since.
//!
//! Big collections go as commands of at most `aof::snapshot::ITEMS_PER_COMMAND` elements, so no
//! command the target applies is larger than that; a batch holds at most `BATCH_KEYS` keys and
//! about `BATCH_BYTES` (a single key larger than that goes alone). `BATCH_KEYS` also bounds the
//! keys in transit, hence how many clients' writes wait for a batch to land.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tessera_proto::resp::connect::Login;
use tessera_proto::resp::encode::command_bytes;
use tessera_proto::resp::request::{self, RequestLimits};
use tessera_proto::resp::Frame;
use tessera_proto::topology::{NodeSpec, Topology};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::aof::snapshot::encode_entry;
use crate::state::NodeState;

/// The bus command that carries one batch: `TESSERA.IMPORT <slot> <commands> [<slot> <commands> ...]`.
pub const IMPORT_COMMAND: &[u8] = b"TESSERA.IMPORT";

/// Most keys in one batch.
const BATCH_KEYS: usize = 512;
/// About the most bytes of commands in one batch.
const BATCH_BYTES: usize = 1 << 20;
/// How often the topology is looked at for moves while there is none, besides each time a newer
/// one is held.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// The most of the time the mover is busy with batches (taking, sending, deleting), the rest
/// left to clients' commands on a loaded machine.
const BUSY_SHARE: f64 = 0.5;
/// Bound on connecting to the target and on each batch's reply.
const TARGET_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the mover (or an import) runs before it lets clients' commands in: a node runs
/// on one thread, so a whole batch taken, applied or deleted at once would hold every client
/// of the node for milliseconds.
const SLICE: Duration = Duration::from_micros(200);

/// How often slots drained are reported while others are still being moved.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Runs the moves this node is the source of, until `stop`.
pub async fn run(state: Arc<NodeState>, stop: CancellationToken) {
    let mut link: Option<(String, TcpStream)> = None;
    let mut drained: BTreeSet<u16> = BTreeSet::new();
    let mut reported: BTreeSet<u16> = BTreeSet::new();
    let mut last_report = Instant::now();
    let mut topology_changes = state.cluster.watch_topology();
    loop {
        topology_changes.borrow_and_update();
        let (moves, targets) = my_moves(&state);
        // A slot stays reported until the topology no longer moves it. Drained slots are
        // reported at most every `REPORT_EVERY` until all are: each report the control plane
        // acts on is a topology change, sent to every node and proxy.
        drained.retain(|slot| moves.binary_search_by_key(slot, |&(s, _)| s).is_ok());
        let all_drained = moves.iter().all(|(slot, _)| drained.contains(slot));
        if all_drained || last_report.elapsed() >= REPORT_EVERY {
            state.cluster.set_drained(drained.iter().copied().collect());
            last_report = Instant::now();
        }
        // The next batch goes to the first target still given slots, from its slots in order.
        let Some(&(_, target)) = moves.iter().find(|(slot, _)| !drained.contains(slot)) else {
            // All given slots drained: report them now, so the control plane flips them and
            // gives the next ones, rather than at the next heartbeat period.
            if drained != reported {
                state.cluster.heartbeat_soon();
                reported.clone_from(&drained);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = topology_changes.changed() => continue,
                _ = tokio::time::sleep(IDLE_POLL) => continue,
            }
        };
        let slots = moves
            .iter()
            .filter(|&&(slot, t)| t == target && !drained.contains(&slot))
            .map(|&(slot, _)| slot)
            .collect::<Vec<_>>();
        let started = Instant::now();
        let batch = take_batch(&state, slots, &mut drained).await;
        if batch.segments.is_empty() {
            continue;
        }
        let Some(target) = targets.get(target) else {
            batch.abandon(&state);
            continue;
        };
        let moved = tokio::select! {
            _ = stop.cancelled() => {
                batch.abandon(&state);
                return;
            }
            moved = land(&state, target, &batch, &mut link) => moved,
        };
        match moved {
            // Clients' commands get their turn between batches: the mover pauses so that it is
            // busy at most `BUSY_SHARE` of the time.
            Ok(()) => {
                let pause = started.elapsed().mul_f64(1.0 / BUSY_SHARE - 1.0);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Err(error) => {
                tracing::warn!(target = %target.address(), %error, "moving a batch failed; retrying");
                link = None;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

/// The slots this node (a master) is moving, in slot order, each with its target's index in the
/// topology's nodes (also returned).
fn my_moves(state: &NodeState) -> (Vec<(u16, usize)>, Vec<NodeSpec>) {
    if state.replication.is_replica() {
        return (Vec::new(), Vec::new());
    }
    let snapshot = state.cluster.snapshot();
    let topology: &Topology = &snapshot.topology;
    let Some(me) = topology.index_of(state.cluster.myself()) else {
        return (Vec::new(), Vec::new());
    };
    let mut moves: Vec<(u16, usize)> = topology
        .intent
        .migrations
        .iter()
        // A client's move (CLUSTER SETSLOT): the client sends the keys itself, with MIGRATE.
        .filter(|m| usize::from(m.source) == me && !m.by_client)
        .map(|m| (m.slot, usize::from(m.target)))
        .collect();
    moves.sort_unstable();
    (moves, topology.nodes().to_vec())
}

/// Sends `batch` to `target`, then deletes its keys here once the target acknowledged them, and
/// ends their transit. On failure the keys stay here (out of transit), to be taken again.
async fn land(
    state: &NodeState,
    target: &NodeSpec,
    batch: &Batch,
    link: &mut Option<(String, TcpStream)>,
) -> std::io::Result<()> {
    if let Err(error) = send(state, target, batch, link).await {
        batch.abandon(state);
        return Err(error);
    }
    let mut slice = Slice::start();
    for segment in &batch.segments {
        delete_sent(state, segment.slot, &segment.keys);
        slice.maybe_yield().await;
    }
    // The deletes on disk before the keys can be written on the target (they leave transit): a
    // crash here must not bring back keys the target has changed since.
    let synced = match &state.aof {
        Some(aof) => aof.sync_now().await.map(|_| ()),
        None => Ok(()),
    };
    batch.abandon(state);
    synced.map_err(std::io::Error::other)
}

/// One slot's part of a batch: its keys taken, and the commands that recreate them.
struct Segment {
    slot: u16,
    keys: Vec<Bytes>,
    commands: BytesMut,
}

/// One batch: keys of one or more slots, all going to the same target.
struct Batch {
    segments: Vec<Segment>,
}

impl Batch {
    /// Ends the transit of the batch's keys (landed and deleted here, or failed and kept).
    fn abandon(&self, state: &NodeState) {
        for segment in &self.segments {
            state.keyspace.transit().end(segment.slot, &segment.keys);
        }
    }
}

/// Time spent since clients' commands last had their turn, for work done in slices (`SLICE`).
struct Slice {
    since: Instant,
}

impl Slice {
    fn start() -> Slice {
        Slice {
            since: Instant::now(),
        }
    }

    /// Whether this slice is used up.
    fn over(&self) -> bool {
        self.since.elapsed() >= SLICE
    }

    /// Lets the node's other tasks (clients' commands) run if this slice is used up.
    async fn maybe_yield(&mut self) {
        if self.over() {
            tokio::task::yield_now().await;
            self.since = Instant::now();
        }
    }
}

/// Takes the next batch from `slots` (in order), each slot's part under its gate, and marks its
/// keys in transit; a slot found with no key left goes to `drained`.
async fn take_batch(state: &NodeState, slots: Vec<u16>, drained: &mut BTreeSet<u16>) -> Batch {
    let mut segments = Vec::new();
    let (mut keys_left, mut bytes_left) = (BATCH_KEYS, BATCH_BYTES);
    let mut slice = Slice::start();
    for slot in slots {
        slice.maybe_yield().await;
        if keys_left == 0 || bytes_left == 0 {
            break;
        }
        let _gate = state.keyspace.gates().exclusive(slot);
        let table = state.keyspace.lock(slot);
        let mut keys = Vec::new();
        let mut commands = BytesMut::new();
        for (key, entry) in table.iter() {
            if keys_left == 0
                || (commands.len() >= bytes_left && !(keys.is_empty() && segments.is_empty()))
            {
                break;
            }
            commands.extend_from_slice(&command_bytes(&[b"DEL", key]));
            encode_entry(key, entry, &mut commands);
            keys.push(Bytes::copy_from_slice(key));
            keys_left -= 1;
        }
        if keys.is_empty() {
            drained.insert(slot);
            continue;
        }
        bytes_left = bytes_left.saturating_sub(commands.len());
        state.keyspace.transit().begin(slot, keys.iter().cloned());
        segments.push(Segment {
            slot,
            keys,
            commands,
        });
    }
    Batch { segments }
}

/// Deletes the keys of a batch the target acknowledged, one DEL for the slot's keys (logged, so
/// the AOF and the replicas drop them too).
fn delete_sent(state: &NodeState, slot: u16, keys: &[Bytes]) {
    let _gate = state.keyspace.gates().exclusive(slot);
    let mut del = Vec::with_capacity(keys.len() + 1);
    del.push(Bytes::from_static(b"DEL"));
    del.extend(keys.iter().cloned());
    if let Err(error) = crate::cmd::apply_moved(state, del) {
        tracing::warn!(slot, %error, "deleting moved keys failed");
    }
}

/// Sends one batch to `target`'s bus and waits for its acknowledgement, (re)connecting as needed.
async fn send(
    state: &NodeState,
    target: &NodeSpec,
    batch: &Batch,
    link: &mut Option<(String, TcpStream)>,
) -> std::io::Result<()> {
    let addr = target.bus_address();
    if link.as_ref().is_none_or(|(linked, _)| *linked != addr) {
        let login = Login {
            secret: state.stats.node_secret.as_deref(),
            ..Login::default()
        };
        let (stream, _) = tessera_proto::resp::connect::connect(&addr, login, TARGET_TIMEOUT)
            .await
            .map_err(std::io::Error::other)?;
        *link = Some((addr, stream));
    }
    let Some((_, stream)) = link.as_mut() else {
        return Err(std::io::Error::other("no link to the target"));
    };
    let slots: Vec<String> = batch.segments.iter().map(|s| s.slot.to_string()).collect();
    let mut args: Vec<&[u8]> = vec![IMPORT_COMMAND];
    for (segment, slot) in batch.segments.iter().zip(&slots) {
        args.push(slot.as_bytes());
        args.push(&segment.commands);
    }
    let request = command_bytes(&args);
    let reply = tokio::time::timeout(TARGET_TIMEOUT, async {
        stream.write_all(&request).await?;
        let mut buf = BytesMut::new();
        tessera_proto::resp::connect::read_reply(stream, &mut buf)
            .await
            .map(BytesMut::freeze)
            .map_err(std::io::Error::other)
    })
    .await
    .map_err(|_| std::io::Error::other("the target did not acknowledge in time"))??;
    if reply.first() == Some(&b'+') {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the target refused the batch: {}",
            String::from_utf8_lossy(&reply).trim_end()
        )))
    }
}

/// `import`, acknowledged only once the batch is on disk when the append-only file is on: the
/// source deletes the keys on this acknowledgement, so a crash here must not lose them.
pub async fn import_durably(state: &NodeState, args: &[Bytes]) -> Frame {
    let reply = import(state, args).await;
    if let (Frame::Simple(_), Some(aof)) = (&reply, &state.aof) {
        if let Err(error) = aof.sync_now().await {
            return Frame::error(format!("ERR import not durable: {error}"));
        }
    }
    reply
}

/// The target's side of `TESSERA.IMPORT <slot> <commands> [<slot> <commands> ...]`: applies each
/// slot's commands as this node's own writes, each key's under the slot's gate (no client sees
/// half a key), if the topology moves every slot named here (or already gave it here: a retried
/// batch). Between keys, clients' commands get their turn every `SLICE`.
async fn import(state: &NodeState, args: &[Bytes]) -> Frame {
    let parts = args.get(1..).unwrap_or_default();
    if parts.is_empty() || parts.len() % 2 != 0 {
        return Frame::error(tessera_proto::command::arity_error("tessera.import"));
    }
    let mut segments = Vec::with_capacity(parts.len() / 2);
    for pair in parts.chunks_exact(2) {
        let Some(slot) = std::str::from_utf8(&pair[0])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| *s < tessera_proto::slot::SLOT_COUNT)
        else {
            return Frame::error("ERR invalid slot");
        };
        segments.push((slot, &pair[1]));
    }
    let snapshot = state.cluster.snapshot();
    let topology = &snapshot.topology;
    let me = topology.index_of(state.cluster.myself());
    for &(slot, _) in &segments {
        let importing = topology
            .migration(slot)
            .is_some_and(|m| Some(usize::from(m.target)) == me);
        let owner = topology.owner_index(slot) == me && me.is_some();
        if !(importing || owner) {
            return Frame::error(format!("ERR this node is not importing slot {slot}"));
        }
    }
    let limits = RequestLimits::default();
    let mut slice = Slice::start();
    for (slot, commands) in segments {
        let mut input = BytesMut::from(&commands[..]);
        while !input.is_empty() {
            {
                // Whole keys under one gate until the slice is used up: each key's commands
                // begin with its DEL.
                let _gate = state.keyspace.gates().exclusive(slot);
                loop {
                    if let Err(error) = apply_next(state, &mut input, &limits) {
                        return error;
                    }
                    if input.is_empty() || (slice.over() && input.starts_with(DEL_PREFIX)) {
                        break;
                    }
                }
            }
            slice.maybe_yield().await;
        }
    }
    Frame::ok()
}

/// Applies the next command of a batch (`input` holds at least one byte of it).
fn apply_next(
    state: &NodeState,
    input: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<(), Frame> {
    match request::parse(input, limits) {
        Ok(Some(request)) => crate::cmd::apply_moved(state, request.args)
            .map_err(|error| Frame::error(format!("ERR import failed: {error}"))),
        Ok(None) => Err(Frame::error("ERR truncated batch")),
        Err(error) => Err(Frame::error(format!("ERR bad batch: {error}"))),
    }
}

/// How each key's commands in a batch begin (`DEL key`, as `take_batch` writes it).
const DEL_PREFIX: &[u8] = b"*2\r\n$3\r\nDEL\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_of_a_batch_begins_with_the_del_prefix() {
        assert!(command_bytes(&[b"DEL", b"some key"]).starts_with(DEL_PREFIX));
    }
}
