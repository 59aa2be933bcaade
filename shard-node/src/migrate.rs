//! Moving a slot's keys to another master, as the control plane's plan says (the topology's
//! migrations: source MIGRATING, target IMPORTING). The source sends its keys in batches over the
//! target's cluster bus; the target applies them as its own writes (logged: AOF and replicas);
//! the source then deletes them (logged too). A slot whose keys are all gone is reported drained
//! in the heartbeats, and the control plane gives it to the target in one topology change.
//!
//! Why nothing is lost or copied twice:
//! - a batch is taken under the slot's gate, and its keys are in transit (`keyspace::transit`)
//!   until it has landed: commands over them answer TRYAGAIN, so they cannot change on the source
//!   while the target is being given them, and nobody looks for them on the target before they
//!   are there;
//! - a key that is not here is the target's (`cluster_rule::migration_check` answers ASK), so no
//!   key of the slot is created here once the move began, and one is drained for good;
//! - each key is sent as `DEL key` and the commands that recreate it: a batch applied twice (the
//!   source retried after losing the target's reply) gives the same key once;
//! - the source deletes a batch only after the target acknowledged all of it, which it does once
//!   the batch is on its disk (with the append-only file on); a batch that fails leaves the keys
//!   here, and is taken again;
//! - the source's deletes are on its disk before the keys leave transit, so a source that crashes
//!   never brings back a key the target has changed since.
//!
//! Big collections go as commands of at most `aof::snapshot::ITEMS_PER_COMMAND` elements, so no
//! command the target applies is larger than that; a batch holds at most `BATCH_KEYS` keys and
//! about `BATCH_BYTES` (a single key larger than that goes alone).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

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

/// The bus command that carries one batch: `TESSERA.IMPORT <slot> <commands>`.
pub const IMPORT_COMMAND: &[u8] = b"TESSERA.IMPORT";

/// Most keys in one batch.
const BATCH_KEYS: usize = 256;
/// About the most bytes of commands in one batch.
const BATCH_BYTES: usize = 1 << 20;
/// How often the topology is looked at for moves while there is none.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Bound on connecting to the target and on each batch's reply.
const TARGET_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the moves this node is the source of, until `stop`.
pub async fn run(state: Arc<NodeState>, stop: CancellationToken) {
    let mut link: Option<(String, TcpStream)> = None;
    let mut drained: BTreeSet<u16> = BTreeSet::new();
    loop {
        let moves = my_moves(&state);
        // A slot stays reported until the topology no longer moves it.
        drained.retain(|slot| moves.iter().any(|(s, _)| s == slot));
        state.cluster.set_drained(drained.iter().copied().collect());
        let next = moves.into_iter().find(|(slot, _)| !drained.contains(slot));
        let Some((slot, target)) = next else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(IDLE_POLL) => continue,
            }
        };
        let moved = tokio::select! {
            _ = stop.cancelled() => return,
            moved = move_slot(&state, slot, &target, &mut link) => moved,
        };
        match moved {
            Ok(true) => {
                tracing::info!(slot, target = %target.address(), "slot drained");
                drained.insert(slot);
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(slot, target = %target.address(), %error, "moving a batch failed; retrying");
                link = None;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

/// The slots this node (a master) is moving, with their targets, in slot order.
fn my_moves(state: &NodeState) -> Vec<(u16, NodeSpec)> {
    if state.replication.is_replica() {
        return Vec::new();
    }
    let snapshot = state.cluster.snapshot();
    let topology: &Topology = &snapshot.topology;
    let Some(me) = topology.index_of(state.cluster.myself()) else {
        return Vec::new();
    };
    topology
        .intent
        .migrations
        .iter()
        // A client's move (CLUSTER SETSLOT): the client sends the keys itself, with MIGRATE.
        .filter(|m| usize::from(m.source) == me && !m.by_client)
        .filter_map(|m| {
            let target = topology.nodes().get(usize::from(m.target))?;
            Some((m.slot, target.clone()))
        })
        .collect()
}

/// Moves `slot`'s keys to `target` batch by batch while the topology still moves it; true once
/// the slot has no key left here.
async fn move_slot(
    state: &NodeState,
    slot: u16,
    target: &NodeSpec,
    link: &mut Option<(String, TcpStream)>,
) -> std::io::Result<bool> {
    loop {
        if !my_moves(state).iter().any(|(s, _)| *s == slot) {
            return Ok(false);
        }
        let Some(batch) = take_batch(state, slot) else {
            return Ok(true);
        };
        let sent = send(state, target, slot, batch.commands, link).await;
        match sent {
            Ok(()) => {
                delete_sent(state, slot, &batch.keys);
                // The deletes on disk before the keys can be written on the target (they leave
                // transit): a crash here must not bring back keys the target has changed since.
                let synced = match &state.aof {
                    Some(aof) => aof.sync_now().await.map(|_| ()),
                    None => Ok(()),
                };
                state.keyspace.transit().end(slot);
                synced.map_err(std::io::Error::other)?;
            }
            Err(error) => {
                state.keyspace.transit().end(slot);
                return Err(error);
            }
        }
    }
}

/// One batch: the keys taken, and the commands that recreate them on the target.
struct Batch {
    keys: Vec<Bytes>,
    commands: Bytes,
}

/// Takes the next batch of `slot` under its gate and marks its keys in transit; `None` when the
/// slot has no key left.
fn take_batch(state: &NodeState, slot: u16) -> Option<Batch> {
    let _gate = state.keyspace.gates().exclusive(slot);
    let table = state.keyspace.lock(slot);
    let mut keys = Vec::new();
    let mut commands = BytesMut::new();
    for (key, entry) in table.iter() {
        if keys.len() == BATCH_KEYS || (!keys.is_empty() && commands.len() >= BATCH_BYTES) {
            break;
        }
        commands.extend_from_slice(&command_bytes(&[b"DEL", key]));
        encode_entry(key, entry, &mut commands);
        keys.push(Bytes::copy_from_slice(key));
    }
    if keys.is_empty() {
        return None;
    }
    state.keyspace.transit().begin(slot, keys.iter().cloned());
    Some(Batch {
        keys,
        commands: commands.freeze(),
    })
}

/// Deletes the keys of a batch the target acknowledged (logged, so the AOF and the replicas drop
/// them too).
fn delete_sent(state: &NodeState, slot: u16, keys: &[Bytes]) {
    let _gate = state.keyspace.gates().exclusive(slot);
    for key in keys {
        let del = vec![Bytes::from_static(b"DEL"), key.clone()];
        if let Err(error) = crate::cmd::apply_moved(state, del) {
            tracing::warn!(slot, %error, "deleting a moved key failed");
        }
    }
}

/// Sends one batch to `target`'s bus and waits for its acknowledgement, (re)connecting as needed.
async fn send(
    state: &NodeState,
    target: &NodeSpec,
    slot: u16,
    commands: Bytes,
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
    let slot_text = slot.to_string();
    let request = command_bytes(&[IMPORT_COMMAND, slot_text.as_bytes(), &commands]);
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
    let reply = import(state, args);
    if let (Frame::Simple(_), Some(aof)) = (&reply, &state.aof) {
        if let Err(error) = aof.sync_now().await {
            return Frame::error(format!("ERR import not durable: {error}"));
        }
    }
    reply
}

/// The target's side of `TESSERA.IMPORT <slot> <commands>`: applies the batch as this node's own
/// writes, under the slot's gate (no client sees half a key), if the topology moves `slot` here
/// (or already gave it here: a retried batch).
fn import(state: &NodeState, args: &[Bytes]) -> Frame {
    let [_, slot, commands] = args else {
        return Frame::error(tessera_proto::command::arity_error("tessera.import"));
    };
    let Some(slot) = std::str::from_utf8(slot)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| *s < tessera_proto::slot::SLOT_COUNT)
    else {
        return Frame::error("ERR invalid slot");
    };
    let snapshot = state.cluster.snapshot();
    let topology = &snapshot.topology;
    let me = topology.index_of(state.cluster.myself());
    let importing = topology
        .migration(slot)
        .is_some_and(|m| Some(usize::from(m.target)) == me);
    let owner = topology.owner_index(slot) == me && me.is_some();
    if !(importing || owner) {
        return Frame::error(format!("ERR this node is not importing slot {slot}"));
    }
    let mut input = BytesMut::from(&commands[..]);
    let limits = RequestLimits::default();
    let _gate = state.keyspace.gates().exclusive(slot);
    loop {
        match request::parse(&mut input, &limits) {
            Ok(Some(request)) => {
                if let Err(error) = crate::cmd::apply_moved(state, request.args) {
                    return Frame::error(format!("ERR import failed: {error}"));
                }
            }
            Ok(None) if input.is_empty() => return Frame::ok(),
            Ok(None) => return Frame::error("ERR truncated batch"),
            Err(error) => return Frame::error(format!("ERR bad batch: {error}")),
        }
    }
}
