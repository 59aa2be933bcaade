//! Commands, one file per family, and the one path every client command takes: look it up in the
//! shared command table, check its arity, apply the cluster rule (CROSSSLOT, CLUSTERDOWN, MOVED) in
//! one place, then dispatch by name. `replay` applies commands read back from the append-only file.
//!
//! Writes are logged (`Txn::log`) while their slot's lock is held, in a form that replays to the same
//! state whenever it is replayed: relative expiries become absolute, and a write that changed nothing
//! is not logged. The same entries will feed replicas.

pub mod bits;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod hash;
pub mod keys;
pub mod list;
pub mod memory;
pub mod parse;
pub mod pubsub;
pub mod server;
pub mod set;
pub mod string;
pub mod string_range;
pub mod transaction;
pub mod zset;

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tessera_proto::command::{self, CommandSpec, Server};
use tessera_proto::resp::{Frame, Protocol};
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::Access;

use crate::aof::Aof;
use crate::keyspace::access::Tracking;
use crate::keyspace::{now_ms, Entry, EntryRef, KeyExpired, SlotGuard};
use crate::server::{ClientInfo, ClientStatus, ServerStats};
use crate::state::NodeState;

/// What a connection carries between its commands.
pub struct Session {
    /// Shared with the server's client registry, for CLIENT LIST.
    pub info: Arc<Mutex<ClientInfo>>,
    pub id: u64,
    /// The protocol replies are encoded in; HELLO changes it.
    pub protocol: Protocol,
    /// Set by QUIT: the connection writes the reply, then closes.
    pub quit: bool,
    /// Left by a blocking command (BLPOP, ...) that found no data: the connection awaits it
    /// before it runs the client's next command (see `keyspace::blocking`).
    pub blocked: Option<crate::keyspace::blocking::Blocked>,
    /// Redis's CLIENT_DENY_BLOCKING: a blocking command answers as if it timed out at once (AOF
    /// replay and other detached sessions, and later MULTI).
    pub deny_blocking: bool,
    /// Sent the node secret (AUTH); only checked when the node has one.
    pub authenticated: bool,
    /// Channels, patterns and shard channels subscribed, and the mailbox messages arrive in.
    pub pubsub: crate::pubsub::ClientSubscriptions,
    /// The transaction opened by MULTI, until EXEC or DISCARD.
    pub multi: Option<crate::transaction::Multi>,
    /// The keys this client WATCHes.
    pub watched: crate::transaction::Watched,
    /// What `info.status` was last set to (see `publish_status`).
    published: ClientStatus,
}

impl Session {
    pub fn new(info: Arc<Mutex<ClientInfo>>) -> Session {
        let id = info.lock().id;
        Session {
            info,
            id,
            protocol: Protocol::Resp2,
            quit: false,
            blocked: None,
            deny_blocking: false,
            authenticated: false,
            pubsub: crate::pubsub::ClientSubscriptions::new(id),
            multi: None,
            watched: crate::transaction::Watched::default(),
            published: ClientStatus::default(),
        }
    }

    /// Shows this client's subscriptions, open transaction and blocking wait to CLIENT LIST.
    /// Called after every command: a comparison, and the shared lock only when one changed.
    pub fn publish_status(&mut self) {
        let (sub, psub, ssub) = self.pubsub.counts();
        let status = ClientStatus {
            sub,
            psub,
            ssub,
            multi: self.multi.as_ref().map(|multi| multi.queued.len()),
            blocked: self.blocked.is_some(),
        };
        if status != self.published {
            self.published = status;
            self.info.lock().status = status;
        }
    }

    /// Whether this client must still send the node secret (as Redis's `authRequired`): it has
    /// not, and the node has one. Such a client gets NOAUTH and may send small commands only.
    pub fn must_authenticate(&self, state: &NodeState) -> bool {
        !self.authenticated && state.stats.node_secret.is_some()
    }

    /// A session belonging to no connection (AOF replay, unit tests).
    pub fn detached() -> Session {
        let mut session = Session::new(Arc::new(Mutex::new(ClientInfo::new(
            0,
            String::new(),
            String::new(),
        ))));
        // Nobody would await a blocked command.
        session.deny_blocking = true;
        session
    }
}

/// What a command runs with.
pub struct Ctx<'a> {
    pub state: &'a NodeState,
    /// One clock reading per command, as Redis caches `mstime()` per call, so a command sees one
    /// consistent "now" across its keys.
    pub now_ms: u64,
    /// False while replaying the AOF: the command is already in the file.
    pub propagate: bool,
    /// evict: whether lookups update the keys' access metadata (false for the commands Redis
    /// looks keys up with LOOKUP_NOTOUCH: see `touches_keys`).
    pub touch: bool,
    /// Set while EXEC runs: writes are kept back to be logged as one unit, and clients blocked
    /// on keys are served only once the transaction is over, as Redis does.
    pub unit: Option<&'a crate::transaction::Unit>,
    /// The slot the cluster rule computed from the command's first key, so `lock` need not hash
    /// that key again.
    pub known_slot: Option<KnownSlot>,
}

/// A key's slot, remembered with the key's address: it applies only to that very slice (the same
/// bytes of the same request), never to another key that happens to be equal or not.
#[derive(Debug, Clone, Copy)]
pub struct KnownSlot {
    key_address: usize,
    key_len: usize,
    slot: u16,
}

impl KnownSlot {
    pub fn new(key: &[u8], slot: u16) -> KnownSlot {
        KnownSlot {
            key_address: key.as_ptr() as usize,
            key_len: key.len(),
            slot,
        }
    }

    fn of(&self, key: &[u8]) -> Option<u16> {
        (key.as_ptr() as usize == self.key_address && key.len() == self.key_len)
            .then_some(self.slot)
    }
}

impl<'a> Ctx<'a> {
    pub fn new(state: &'a NodeState, propagate: bool) -> Ctx<'a> {
        let now_ms = now_ms();
        crate::keyspace::access::note_command_time(now_ms);
        Ctx {
            state,
            now_ms,
            propagate,
            touch: true,
            unit: None,
            known_slot: None,
        }
    }

    /// Locks the slot of `key` for a read or a write.
    pub fn lock(&self, key: &[u8]) -> Txn<'a> {
        let known = self.known_slot.and_then(|known| known.of(key));
        self.lock_slot(known.unwrap_or_else(|| key_hash_slot(key)))
    }

    /// Locks `slot` for a read or a write.
    pub fn lock_slot(&self, slot: u16) -> Txn<'a> {
        Txn {
            guard: self.state.keyspace.lock(slot),
            now_ms: self.now_ms,
            lazy_expiry: self.propagate,
            aof: if self.propagate {
                self.state.aof.as_deref()
            } else {
                None
            },
            stats: &self.state.stats,
            touch: self.touch.then(|| self.state.config.tracking()),
            counted: Vec::new(),
            unit: self.unit,
            watches: self.state.keyspace.watches(),
        }
    }

    pub fn stats(&self) -> &'a ServerStats {
        &self.state.stats
    }
}

/// A locked slot as commands use it: lookups expire lazily (logging the DEL), reads count hits and
/// misses, and writes are logged while the lock is held.
pub struct Txn<'a> {
    guard: SlotGuard<'a>,
    now_ms: u64,
    /// Off while replaying: as Redis when loading, a key is never expired by replay's clock, since
    /// the log holds the DEL of every expiry that happened (else an INCR replayed after the TTL
    /// would act on a key that was still there when it first ran).
    lazy_expiry: bool,
    aof: Option<&'a Aof>,
    stats: &'a ServerStats,
    /// evict: how lookups update access metadata; `None` for commands that do not touch keys.
    touch: Option<Tracking>,
    /// evict: under an LFU policy, the keys whose access this command has counted already, or
    /// created: Redis looks a key up once per command, while a handler here may look it up again
    /// (LPUSH finds the list, creates it, finds it again to fill it); a counter must move as in
    /// Redis, once per command, and not at all for a key the command created.
    counted: Vec<Bytes>,
    /// The running EXEC's writes, when inside one.
    unit: Option<&'a crate::transaction::Unit>,
    watches: &'a crate::transaction::WatchRegistry,
}

impl<'a> Txn<'a> {
    /// The entry of `key` if it exists and has not expired; an expired one is removed and its
    /// deletion logged.
    pub fn live(&mut self, key: &[u8]) -> Option<EntryRef<'_>> {
        let entry = if self.lazy_expiry {
            match self.guard.get_unexpired(key, self.now_ms) {
                Ok(entry) => entry,
                Err(KeyExpired) => {
                    // (`log` by its parts: the entry borrows `self.guard` until returned.)
                    let del = [Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)];
                    log_write(self.watches, self.aof, self.unit, &del);
                    None
                }
            }
        } else {
            self.guard.get(key)
        };
        // evict: a lookup is an access, as Redis's lookupKey (LRU stamp or LFU counter).
        match (entry, self.touch) {
            (Some(entry), Some(Tracking::Lru)) => entry.access.touch(Tracking::Lru, self.now_ms),
            (Some(entry), Some(lfu)) if !self.counted.iter().any(|k| k == key) => {
                entry.access.touch(lfu, self.now_ms);
                self.counted.push(Bytes::copy_from_slice(key));
            }
            _ => {}
        }
        entry
    }

    /// `SlotGuard::insert`, noting under an LFU policy that this command created `key` (evict).
    pub fn insert(&mut self, key: Bytes, entry: Entry) -> Option<Entry> {
        if matches!(self.touch, Some(Tracking::Lfu { .. })) {
            self.counted.push(key.clone());
        }
        self.guard.insert(key, entry)
    }

    /// Like `live`, counting a keyspace hit or miss (INFO stats), as Redis's lookupKeyRead.
    pub fn read(&mut self, key: &[u8]) -> Option<EntryRef<'_>> {
        let stats = self.stats;
        let found = self.live(key);
        let counter = if found.is_some() {
            &stats.keyspace_hits
        } else {
            &stats.keyspace_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether `key` exists and has not expired.
    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.live(key).is_some()
    }

    /// Appends a write to the log (nothing when replaying or without persistence), and marks
    /// the clients WATCHing the keys it changed: every write that changed something is logged.
    pub fn log(&self, args: &[Bytes]) {
        log_write(self.watches, self.aof, self.unit, args);
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// `Txn::log`: marks the watchers of the written keys, then logs the write to the running EXEC's
/// unit or straight to the AOF.
fn log_write(
    watches: &crate::transaction::WatchRegistry,
    aof: Option<&Aof>,
    unit: Option<&crate::transaction::Unit>,
    args: &[Bytes],
) {
    watches.touch_written(args);
    if let Some(aof) = aof {
        match unit {
            Some(unit) => unit.push(args),
            None => aof.append(args),
        }
    }
}

impl<'a> Deref for Txn<'a> {
    type Target = SlotGuard<'a>;
    fn deref(&self) -> &SlotGuard<'a> {
        &self.guard
    }
}

impl DerefMut for Txn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

/// Serves the clients blocked on keys this command gave data to (a BLPOP waiting for the key an
/// LPUSH created, ...) before the slot's lock is released, so no other client can take the data
/// first: Redis serves them right after the command, in the order they blocked.
impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.unit.is_some() {
            // Inside EXEC: served when the transaction is over.
            return;
        }
        let registry = self.guard.blocking();
        if registry.has_ready() {
            registry.serve_ready(self.guard.slot(), self);
        }
    }
}

impl crate::keyspace::blocking::ServeTarget for Txn<'_> {
    fn has_key(&mut self, key: &[u8]) -> bool {
        self.exists(key)
    }

    fn offer(&mut self, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
        serve_blocked(self, key, args)
    }
}

/// Offers `key`, which just got data, to a client blocked in `args`, by the command's family;
/// `None` leaves it blocked. Each blocking family adds its commands here.
fn serve_blocked(txn: &mut Txn<'_>, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
    let name = args.first()?.to_ascii_lowercase();
    match &name[..] {
        b"blpop" | b"brpop" | b"blmpop" | b"blmove" | b"brpoplpush" => {
            list::serve_blocked(txn, key, args)
        }
        b"bzpopmin" | b"bzpopmax" | b"bzmpop" => zset::pop::serve_blocked(txn, key, args),
        _ => None,
    }
}

/// Runs one client command and returns its reply. Between MULTI and EXEC a command is checked
/// and queued instead (see `transaction`).
pub fn execute(state: &NodeState, session: &mut Session, args: &[Bytes]) -> Frame {
    // A peer's forwarded PUBLISH; only from a connection that has the node secret, if any.
    if !session.must_authenticate(state) {
        if let Some(reply) = pubsub::deliver_forwarded(state, args) {
            return reply;
        }
    }
    // The table resolves container subcommands and checks arity with Redis's exact errors.
    let spec = match command::resolve_served(Server::ShardNode, args) {
        Ok(spec) => spec,
        Err(text) => {
            state.stats.commands.reject_unresolved(args);
            return transaction::refuse(state, session, args, text);
        }
    };
    // The node secret, as Redis's requirepass: after unknown command and arity, before the
    // cluster rule; AUTH, HELLO, QUIT and RESET (flagged no_auth) pass.
    if session.must_authenticate(state) && !spec.flags.contains(&"no_auth") {
        state.stats.commands.reject(spec);
        transaction::refuse_queueing(session);
        return parse::err("NOAUTH Authentication required.");
    }
    // One clock reading serves CLIENT LIST's idle time and the lease the cluster rule checks.
    let now = Instant::now();
    session.info.lock().touch(spec.name, now);
    if spec.name == "exec" {
        if let Some(reply) = pubsub_refusal(session, spec) {
            state.stats.commands.reject(spec);
            return reply;
        }
        return run_counted(state, spec, now, || transaction::exec(state, session));
    }
    let known_slot = match cluster_check(state, spec, args, now) {
        Ok(known) => known,
        Err(reply) => {
            state.stats.commands.reject(spec);
            transaction::refuse_queueing(session);
            return reply;
        }
    };
    // evict: Redis's processCommand: with maxmemory set, evict before any command runs, and
    // refuse the commands that may add data (denyoom) when nothing more can be evicted.
    // The command's time (INFO commandstats) starts at its clock reading, or after eviction when
    // that ran: Redis does not count eviction in the command's time.
    let mut started = now;
    if state.config.maxmemory() > 0 {
        let outcome = state.evictor.perform(state);
        started = Instant::now();
        if outcome == crate::evict::Outcome::Fail && spec.flags.contains(&"denyoom") {
            state.stats.commands.reject(spec);
            transaction::refuse_queueing(session);
            return parse::err("OOM command not allowed when used memory > 'maxmemory'.");
        }
    }
    if let Some(reply) = pubsub_refusal(session, spec) {
        state.stats.commands.reject(spec);
        return reply;
    }
    if let Some(reply) = transaction::queue(session, spec, args) {
        return reply;
    }
    // No transaction runs on the slot while the command does (see `transaction::gate`).
    let gates = state.keyspace.gates();
    let _gate = match known_slot {
        Some(known) => Gate::Slot(gates.enter(known.slot)),
        None if spec.is_write() => Gate::All(gates.enter_all()),
        None => Gate::None,
    };
    run_counted(state, spec, started, || {
        let mut ctx = Ctx::new(state, true);
        ctx.touch = touches_keys(spec);
        ctx.known_slot = known_slot;
        dispatch(&ctx, session, spec, args)
    })
}

/// The transaction gates a command holds while it runs: its slot's alone for a keyed command
/// (no allocation on the common path), every slot's for a keyless write.
enum Gate<'a> {
    Slot(#[allow(dead_code)] parking_lot::RwLockReadGuard<'a, ()>),
    All(#[allow(dead_code)] Vec<parking_lot::RwLockReadGuard<'a, ()>>),
    None,
}

/// The error a RESP2 client in subscribed mode gets for a command it may not run there.
fn pubsub_refusal(session: &Session, spec: &CommandSpec) -> Option<Frame> {
    if !session.pubsub.restricts(session.protocol) || pubsub_context_allows(spec.name) {
        return None;
    }
    Some(Frame::error(format!(
        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are \
         allowed in this context",
        spec.name
    )))
}

/// Runs `run` as the command `spec`, counting it for INFO; its time is measured from `started`
/// (the command's own clock reading: one fewer per command).
fn run_counted(
    state: &NodeState,
    spec: &'static CommandSpec,
    started: Instant,
    run: impl FnOnce() -> Frame,
) -> Frame {
    state
        .stats
        .commands_processed
        .fetch_add(1, Ordering::Relaxed);
    let reply = run();
    let failed = matches!(reply, Frame::Error(_));
    state.stats.commands.record(spec, started.elapsed(), failed);
    reply
}

/// The container of a subcommand entry (`config` for `config|get`), else the entry's own name.
/// A byte search: `str::split` with a char pattern costs ~100 instructions more, and this runs
/// for every command.
pub(crate) fn container_name(spec: &CommandSpec) -> &'static str {
    let name = spec.name;
    match name.bytes().position(|b| b == b'|') {
        Some(bar) => name.get(..bar).unwrap_or(name),
        None => name,
    }
}

/// evict: whether `spec` updates the access metadata of the keys it looks up. Redis 7.0 looks
/// keys up with LOOKUP_NOTOUCH in TYPE, EXISTS, the TTL and EXPIRETIME families, OBJECT and
/// MEMORY USAGE (checked against redis-server: OBJECT FREQ stays at 5 after each of them, and
/// goes to 6 after EXPIRE, PERSIST, TOUCH or a read).
fn touches_keys(spec: &CommandSpec) -> bool {
    let name = container_name(spec);
    !matches!(
        name,
        "type" | "exists" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "object" | "memory"
    )
}

/// Whether a RESP2 client in subscribed mode may run `name`, as Redis's processCommand.
fn pubsub_context_allows(name: &str) -> bool {
    matches!(
        name,
        "ping"
            | "subscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "sunsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "quit"
            | "reset"
    )
}

/// Runs a command EXEC took from its queue: checked when queued, under the transaction's gate.
pub(crate) fn execute_queued(
    ctx: &Ctx<'_>,
    session: &mut Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Frame {
    run_counted(ctx.state, spec, Instant::now(), || {
        dispatch(ctx, session, spec, args)
    })
}

/// Applies one command read back from the append-only file: no cluster checks, not logged again.
/// Errs with Redis's error text when the command is not a valid write.
pub fn replay(state: &NodeState, args: Vec<Bytes>) -> Result<(), String> {
    let spec = command::resolve_served(Server::ShardNode, &args)?;
    if !spec.is_write() {
        return Err(format!("ERR '{}' is not a write command", spec.name));
    }
    let ctx = Ctx::new(state, false);
    match dispatch(&ctx, &mut Session::detached(), spec, &args) {
        Frame::Error(text) => Err(String::from_utf8_lossy(&text).into_owned()),
        _ => Ok(()),
    }
}

/// The cluster rule again for a client blocked in `args` (BLPOP, ...), as Redis's
/// clusterRedirectBlockedClientIfNeeded: a slot that moved away or went down while it waited
/// answers MOVED / CLUSTERDOWN instead of waiting on.
pub fn cluster_recheck(state: &NodeState, args: &[Bytes]) -> Option<Frame> {
    let spec = command::resolve_served(Server::ShardNode, args).ok()?;
    cluster_check(state, spec, args, Instant::now()).err()
}

/// The cluster rule for one command, as Redis's getNodeByQuery: keyless commands pass; all keys
/// must share one slot (CROSSSLOT); the slot's serving master must exist (CLUSTERDOWN) and be this
/// node (MOVED); and a node that lost the control plane refuses writes. The slot comes back
/// with the key it was hashed from, for the handler's `Ctx::lock`.
fn cluster_check(
    state: &NodeState,
    spec: &CommandSpec,
    args: &[Bytes],
    now: Instant,
) -> Result<Option<KnownSlot>, Frame> {
    let found = spec.key_slot(args).map_err(|_| crossslot())?;
    route_at(state, found.map(|k| k.slot), spec.is_write(), now)?;
    Ok(found.map(|k| KnownSlot::new(k.first_key, k.slot)))
}

/// The one slot of the keys of a command; CROSSSLOT when they span several.
pub(crate) fn key_slot(spec: &CommandSpec, args: &[Bytes]) -> Result<Option<u16>, Frame> {
    let found = spec.key_slot(args).map_err(|_| crossslot())?;
    Ok(found.map(|k| k.slot))
}

pub(crate) fn crossslot() -> Frame {
    parse::err("CROSSSLOT Keys in request don't hash to the same slot")
}

/// The cluster rule for commands on `slot` (`None`: keyless): the slot's serving master must exist
/// (CLUSTERDOWN) and be this node (MOVED); a node that lost the control plane refuses writes.
pub(crate) fn route(state: &NodeState, slot: Option<u16>, write: bool) -> Result<(), Frame> {
    route_at(state, slot, write, Instant::now())
}

/// `route` with the lease checked at `now`.
fn route_at(state: &NodeState, slot: Option<u16>, write: bool, now: Instant) -> Result<(), Frame> {
    if slot.is_none() && !write {
        return Ok(());
    }
    let snapshot = state.cluster.current();
    if let Some(slot) = slot {
        let access = if write { Access::Write } else { Access::Read };
        match snapshot.topology.route_with(&snapshot.health, slot, access) {
            Err(down) => return Err(parse::err(down.message())),
            Ok(owner) if &owner.id != state.cluster.myself() => {
                return Err(Frame::error(format!(
                    "MOVED {slot} {}:{}",
                    owner.host, owner.port
                )));
            }
            Ok(_) => {}
        }
    }
    if write && !state.cluster.writes_allowed_under(&snapshot.topology, now) {
        return Err(parse::err(
            "CLUSTERDOWN The cluster is down and only accepts read commands",
        ));
    }
    Ok(())
}

/// Runs the command `spec` names; arity and cluster rule already checked.
fn dispatch(ctx: &Ctx<'_>, session: &mut Session, spec: &CommandSpec, args: &[Bytes]) -> Frame {
    // A subcommand's entry is named `container|sub`; the container's handler takes it from there.
    let name = container_name(spec);
    match name {
        // connection
        "ping" if session.pubsub.restricts(session.protocol) => pubsub::subscribed_ping(args),
        "ping" => connection::ping(session, args),
        "echo" => connection::echo(args),
        "quit" => connection::quit(session),
        "reset" => connection::reset(ctx, session),
        "hello" => connection::hello(ctx, session, args),
        "auth" => connection::auth(ctx, session, args),
        "select" => connection::select(args),
        "client" => connection::client(ctx, session, args),
        // transactions (EXEC is run by `execute`)
        "multi" => transaction::multi(session),
        "discard" => transaction::discard(ctx, session),
        "watch" => transaction::watch(ctx, session, args),
        "unwatch" => transaction::unwatch(ctx, session),
        // server
        "command" => server::command(args),
        "config" => config::config(ctx, args),
        "info" => server::info(ctx, args),
        "dbsize" => server::dbsize(ctx),
        "memory" => memory::memory(ctx, args),
        "flushall" | "flushdb" => server::flush(ctx, args),
        "bgrewriteaof" => bgrewriteaof(ctx),
        // strings
        "get" => string::get(ctx, args),
        "set" => string::set(ctx, args),
        "setnx" => string::setnx(ctx, args),
        "setex" => string::setex(ctx, args, 1000),
        "psetex" => string::setex(ctx, args, 1),
        "getset" => string::getset(ctx, args),
        "getdel" => string::getdel(ctx, args),
        "mget" => string::mget(ctx, args),
        "mset" => string::mset(ctx, args),
        "incr" => string::incr_by(ctx, args, Some(1)),
        "decr" => string::incr_by(ctx, args, Some(-1)),
        "incrby" => string::incr_by(ctx, args, None),
        "decrby" => string::decr_by(ctx, args),
        "incrbyfloat" => string::incr_by_float(ctx, args),
        "append" => string::append(ctx, args),
        "strlen" => string::strlen(ctx, args),
        "getrange" | "substr" => string_range::getrange(ctx, args),
        "setrange" => string_range::setrange(ctx, args),
        "getex" => string_range::getex(ctx, args),
        "msetnx" => string_range::msetnx(ctx, args),
        "lcs" => string_range::lcs(ctx, args),
        // bitmaps
        "setbit" => bits::setbit(ctx, args),
        "getbit" => bits::getbit(ctx, args),
        "bitcount" => bits::bitcount(ctx, args),
        "bitpos" => bits::bitpos(ctx, args),
        "bitop" => bits::bitop(ctx, args),
        // lists
        "lpush" => list::push(ctx, args, list::End::Left, false),
        "rpush" => list::push(ctx, args, list::End::Right, false),
        "lpushx" => list::push(ctx, args, list::End::Left, true),
        "rpushx" => list::push(ctx, args, list::End::Right, true),
        "lpop" => list::pop(ctx, args, list::End::Left),
        "rpop" => list::pop(ctx, args, list::End::Right),
        "llen" => list::llen(ctx, args),
        "lindex" => list::lindex(ctx, args),
        "lrange" => list::lrange(ctx, args),
        "lpos" => list::lpos(ctx, args),
        "lset" => list::lset(ctx, args),
        "linsert" => list::linsert(ctx, args),
        "lrem" => list::lrem(ctx, args),
        "ltrim" => list::ltrim(ctx, args),
        "lmove" => list::lmove(ctx, args, None),
        "rpoplpush" => list::lmove(ctx, args, list::RPOPLPUSH),
        "lmpop" => list::lmpop(ctx, args),
        "blpop" => list::blpop(ctx, session, args, list::End::Left),
        "brpop" => list::blpop(ctx, session, args, list::End::Right),
        "blmpop" => list::blmpop(ctx, session, args),
        "blmove" => list::blmove(ctx, session, args, None),
        "brpoplpush" => list::blmove(ctx, session, args, list::RPOPLPUSH),
        // hashes
        "hset" => hash::hset(ctx, args, false),
        "hmset" => hash::hset(ctx, args, true),
        "hsetnx" => hash::hsetnx(ctx, args),
        "hget" => hash::hget(ctx, args),
        "hmget" => hash::hmget(ctx, args),
        "hgetall" => hash::hgetall(ctx, args, hash::Parts::Both),
        "hkeys" => hash::hgetall(ctx, args, hash::Parts::Fields),
        "hvals" => hash::hgetall(ctx, args, hash::Parts::Values),
        "hdel" => hash::hdel(ctx, args),
        "hexists" => hash::hexists(ctx, args),
        "hlen" => hash::hlen(ctx, args),
        "hstrlen" => hash::hstrlen(ctx, args),
        "hincrby" => hash::hincrby(ctx, args),
        "hincrbyfloat" => hash::hincrbyfloat(ctx, args),
        "hrandfield" => hash::hrandfield(ctx, args, session.protocol),
        "hscan" => hash::hscan(ctx, args),
        // sets
        "sadd" => set::sadd(ctx, args),
        "srem" => set::srem(ctx, args),
        "smembers" => set::smembers(ctx, args),
        "sismember" => set::sismember(ctx, args),
        "smismember" => set::smismember(ctx, args),
        "scard" => set::scard(ctx, args),
        "spop" => set::spop(ctx, args),
        "srandmember" => set::srandmember(ctx, args),
        "smove" => set::smove(ctx, args),
        "sinter" => set::combine_reply(ctx, args, set::SetOp::Inter),
        "sunion" => set::combine_reply(ctx, args, set::SetOp::Union),
        "sdiff" => set::combine_reply(ctx, args, set::SetOp::Diff),
        "sinterstore" => set::combine_store(ctx, args, set::SetOp::Inter),
        "sunionstore" => set::combine_store(ctx, args, set::SetOp::Union),
        "sdiffstore" => set::combine_store(ctx, args, set::SetOp::Diff),
        "sintercard" => set::sintercard(ctx, args),
        "sscan" => set::sscan(ctx, args),
        // keys
        "del" | "unlink" => keys::del(ctx, args),
        "exists" => keys::exists(ctx, args),
        "touch" => keys::touch(ctx, args),
        "expire" => keys::expire(ctx, args, keys::ExpireUnit::Seconds, false),
        "pexpire" => keys::expire(ctx, args, keys::ExpireUnit::Millis, false),
        "expireat" => keys::expire(ctx, args, keys::ExpireUnit::Seconds, true),
        "pexpireat" => keys::expire(ctx, args, keys::ExpireUnit::Millis, true),
        "ttl" => keys::ttl(ctx, args, keys::ExpireUnit::Seconds),
        "pttl" => keys::ttl(ctx, args, keys::ExpireUnit::Millis),
        "persist" => keys::persist(ctx, args),
        "type" => keys::type_of(ctx, args),
        "keys" => keys::keys(ctx, args),
        "scan" => keys::scan(ctx, args),
        "randomkey" => keys::randomkey(ctx),
        "rename" => keys::rename::rename(ctx, args, false),
        "renamenx" => keys::rename::rename(ctx, args, true),
        "copy" => keys::rename::copy(ctx, args),
        "expiretime" => keys::expiretime(ctx, args, keys::ExpireUnit::Seconds),
        "pexpiretime" => keys::expiretime(ctx, args, keys::ExpireUnit::Millis),
        "object" => keys::object::object(ctx, args),
        "dump" => keys::dump::dump(ctx, args),
        "restore" | "restore-asking" => keys::dump::restore(ctx, args),
        // sorted sets
        "zadd" => zset::basic::zadd(ctx, args),
        "zincrby" => zset::basic::zincrby(ctx, args),
        "zrem" => zset::basic::zrem(ctx, args),
        "zscore" => zset::basic::zscore(ctx, args),
        "zmscore" => zset::basic::zmscore(ctx, args),
        "zcard" => zset::basic::zcard(ctx, args),
        "zcount" => zset::basic::zcount(ctx, args),
        "zlexcount" => zset::basic::zlexcount(ctx, args),
        "zrank" => zset::basic::zrank(ctx, args, false),
        "zrevrank" => zset::basic::zrank(ctx, args, true),
        "zscan" => zset::basic::zscan(ctx, args),
        "zrange" | "zrangestore" | "zrangebyscore" | "zrevrangebyscore" | "zrangebylex"
        | "zrevrangebylex" | "zrevrange" => zset::range::zrange_named(ctx, session, args, name),
        "zremrangebyrank" => zset::range::zremrange(ctx, args, zset::range::RangeKind::Rank),
        "zremrangebyscore" => zset::range::zremrange(ctx, args, zset::range::RangeKind::Score),
        "zremrangebylex" => zset::range::zremrange(ctx, args, zset::range::RangeKind::Lex),
        "zpopmin" => zset::pop::zpop(ctx, session, args, false),
        "zpopmax" => zset::pop::zpop(ctx, session, args, true),
        "zmpop" => zset::pop::zmpop(ctx, args),
        "bzpopmin" => zset::pop::bzpop(ctx, session, args, false),
        "bzpopmax" => zset::pop::bzpop(ctx, session, args, true),
        "bzmpop" => zset::pop::bzmpop(ctx, session, args),
        "zrandmember" => zset::pop::zrandmember(ctx, session, args),
        "zunion" => zset::algebra::zunion(ctx, session, args),
        "zinter" => zset::algebra::zinter(ctx, session, args),
        "zdiff" => zset::algebra::zdiff(ctx, session, args),
        "zintercard" => zset::algebra::zintercard(ctx, session, args),
        "zunionstore" => zset::algebra::zunionstore(ctx, session, args),
        "zinterstore" => zset::algebra::zinterstore(ctx, session, args),
        "zdiffstore" => zset::algebra::zdiffstore(ctx, session, args),
        // pub/sub
        "subscribe" => pubsub::subscribe(ctx, session, args, crate::pubsub::Kind::Channel),
        "psubscribe" => pubsub::subscribe(ctx, session, args, crate::pubsub::Kind::Pattern),
        "ssubscribe" => pubsub::subscribe(ctx, session, args, crate::pubsub::Kind::Shard),
        "unsubscribe" => pubsub::unsubscribe(ctx, session, args, crate::pubsub::Kind::Channel),
        "punsubscribe" => pubsub::unsubscribe(ctx, session, args, crate::pubsub::Kind::Pattern),
        "sunsubscribe" => pubsub::unsubscribe(ctx, session, args, crate::pubsub::Kind::Shard),
        "publish" => pubsub::publish(ctx, args),
        "spublish" => pubsub::spublish(ctx, args),
        "pubsub" => pubsub::pubsub(ctx, args),
        // cluster
        "cluster" => cluster::cluster(ctx, args),
        "readonly" | "readwrite" | "asking" => Frame::ok(),
        _ => Frame::error(command::unknown_command_error(args)),
    }
}

/// BGREWRITEAOF: hands the request to the AOF's rewrite task (`aof::rewrite`).
fn bgrewriteaof(ctx: &Ctx<'_>) -> Frame {
    let Some(aof) = &ctx.state.aof else {
        tracing::warn!("BGREWRITEAOF refused: appendonly is off, there is no file to rewrite");
        return Frame::error(crate::aof::rewrite::Refused::Closed.to_string());
    };
    match aof.request_rewrite() {
        Ok(()) => Frame::Simple(Bytes::from_static(
            b"Background append only file rewriting started",
        )),
        Err(refused) => Frame::error(refused.to_string()),
    }
}

/// `ERR unknown subcommand 'x'. Try NAME HELP.` as Redis words it.
pub fn unknown_subcommand(name: &str, sub: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        name.to_ascii_uppercase()
    ))
}

/// `ERR wrong number of arguments for 'client|setname' command` as Redis words it.
pub fn subcommand_arity(name: &str, sub: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{}|{}' command",
        name,
        String::from_utf8_lossy(sub).to_ascii_lowercase()
    ))
}

/// Helpers for the command families' unit tests: a standalone node state and a one-line runner.
#[cfg(test)]
pub(crate) mod testing {
    use bytes::Bytes;
    use tessera_proto::resp::{Frame, Protocol};
    use tessera_proto::topology::{Node, NodeId, Role, Settings, Topology};

    use super::{execute, Session};
    use crate::cluster::ClusterView;
    use crate::keyspace::Keyspace;
    use crate::server::ServerStats;
    use crate::state::NodeState;

    pub const MYSELF: &str = "1111111111111111111111111111111111111111";

    /// A node owning every slot, without persistence.
    pub fn state() -> NodeState {
        let id = NodeId::parse(MYSELF).expect("valid id");
        let node = Node {
            id: id.clone(),
            host: "127.0.0.1".into(),
            port: 7000,
            bus_port: 17000,
            role: Role::Master,
            master_id: None,
            config_epoch: 1,
            pfail: false,
            fail: false,
            last_heartbeat_ms: 0,
            ping_sent_ms: 0,
            key_count: 0,
        };
        let topology = Topology {
            version: 1,
            current_epoch: 1,
            nodes: vec![node],
            slots: vec![Some(0); 16384].into_boxed_slice(),
            settings: Settings::default(),
            created: true,
        };
        NodeState {
            keyspace: Keyspace::new(),
            cluster: ClusterView::standalone(id, topology),
            aof: None,
            stats: ServerStats::default(),
            config: Default::default(),
            evictor: Default::default(),
            pubsub: Default::default(),
        }
    }

    /// Runs a space-separated command line and returns the RESP2 reply as text.
    pub fn run(state: &NodeState, line: &str) -> String {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect();
        let reply: Frame = execute(state, &mut Session::detached(), &args);
        String::from_utf8_lossy(&reply.to_bytes(Protocol::Resp2)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use tessera_proto::command;

    /// A remembered slot applies to the very key it was computed from, not to an equal key
    /// elsewhere (whose slot is the same, but the rule must not depend on that) nor to a part.
    #[test]
    fn a_known_slot_applies_to_its_own_key_only() {
        let args = [
            bytes::Bytes::from_static(b"SET"),
            bytes::Bytes::from(b"k1".to_vec()),
        ];
        let known = super::KnownSlot::new(&args[1], 7);
        assert_eq!(known.of(&args[1]), Some(7));
        assert_eq!(
            known.of(&args[1].clone()),
            Some(7),
            "a clone shares the bytes"
        );
        let equal = b"k1".to_vec();
        assert_eq!(known.of(&equal), None);
        assert_eq!(known.of(&args[1][..1]), None);
    }

    /// Every command dispatched here indexes its arguments up to the count below, trusting the
    /// table's arity check: pin that trust so a table change cannot turn into a panic.
    #[test]
    fn table_arities_cover_what_handlers_index() {
        let needs: &[(&str, i32)] = &[
            ("get", 2),
            ("set", 3),
            ("setnx", 3),
            ("setex", 4),
            ("psetex", 4),
            ("getset", 3),
            ("getdel", 2),
            ("mget", 2),
            ("mset", 3),
            ("incr", 2),
            ("decr", 2),
            ("incrby", 3),
            ("decrby", 3),
            ("incrbyfloat", 3),
            ("append", 3),
            ("strlen", 2),
            ("getrange", 4),
            ("substr", 4),
            ("setrange", 4),
            ("getex", 2),
            ("msetnx", 3),
            ("lcs", 3),
            ("setbit", 4),
            ("getbit", 3),
            ("bitcount", 2),
            ("bitpos", 3),
            ("bitop", 4),
            ("lpush", 3),
            ("rpush", 3),
            ("lpushx", 3),
            ("rpushx", 3),
            ("lpop", 2),
            ("rpop", 2),
            ("llen", 2),
            ("lindex", 3),
            ("lrange", 4),
            ("lpos", 3),
            ("lset", 4),
            ("linsert", 5),
            ("lrem", 4),
            ("ltrim", 4),
            ("lmove", 5),
            ("rpoplpush", 3),
            ("lmpop", 4),
            ("blpop", 3),
            ("brpop", 3),
            ("blmpop", 5),
            ("blmove", 6),
            ("brpoplpush", 4),
            ("hset", 4),
            ("hmset", 4),
            ("hsetnx", 4),
            ("hget", 3),
            ("hmget", 3),
            ("hgetall", 2),
            ("hkeys", 2),
            ("hvals", 2),
            ("hdel", 3),
            ("hexists", 3),
            ("hlen", 2),
            ("hstrlen", 3),
            ("hincrby", 4),
            ("hincrbyfloat", 4),
            ("hrandfield", 2),
            ("hscan", 3),
            ("sadd", 3),
            ("srem", 3),
            ("smembers", 2),
            ("sismember", 3),
            ("smismember", 3),
            ("scard", 2),
            ("spop", 2),
            ("srandmember", 2),
            ("smove", 4),
            ("sinter", 2),
            ("sunion", 2),
            ("sdiff", 2),
            ("sinterstore", 3),
            ("sunionstore", 3),
            ("sdiffstore", 3),
            ("sintercard", 3),
            ("sscan", 3),
            ("del", 2),
            ("unlink", 2),
            ("exists", 2),
            ("touch", 2),
            ("expire", 3),
            ("pexpire", 3),
            ("ttl", 2),
            ("pttl", 2),
            ("persist", 2),
            ("type", 2),
            ("keys", 2),
            ("scan", 2),
            ("randomkey", 1),
            ("expireat", 3),
            ("pexpireat", 3),
            ("rename", 3),
            ("renamenx", 3),
            ("copy", 3),
            ("expiretime", 2),
            ("pexpiretime", 2),
            ("object", 2),
            ("dump", 2),
            ("restore", 4),
            ("restore-asking", 4),
            ("cluster", 2),
            ("client", 2),
            ("config", 2),
            ("command", 1),
            ("info", 1),
            ("dbsize", 1),
            ("memory", 2),
            ("flushall", 1),
            ("flushdb", 1),
            ("ping", 1),
            ("echo", 2),
            ("quit", 1),
            ("hello", 1),
            ("auth", 2),
            ("select", 2),
            ("zadd", 4),
            ("zincrby", 4),
            ("zrem", 3),
            ("zscore", 3),
            ("zmscore", 3),
            ("zcard", 2),
            ("zcount", 4),
            ("zlexcount", 4),
            ("zrank", 3),
            ("zrevrank", 3),
            ("zscan", 3),
            ("zrange", 4),
            ("zrangestore", 5),
            ("zrangebyscore", 4),
            ("zrevrangebyscore", 4),
            ("zrangebylex", 4),
            ("zrevrangebylex", 4),
            ("zrevrange", 4),
            ("zremrangebyrank", 4),
            ("zremrangebyscore", 4),
            ("zremrangebylex", 4),
            ("zpopmin", 2),
            ("zpopmax", 2),
            ("zmpop", 4),
            ("bzpopmin", 3),
            ("bzpopmax", 3),
            ("bzmpop", 5),
            ("zrandmember", 2),
            ("zunion", 3),
            ("zinter", 3),
            ("zdiff", 3),
            ("zintercard", 3),
            ("zunionstore", 4),
            ("zinterstore", 4),
            ("zdiffstore", 4),
        ];
        for (name, min) in needs {
            let spec = command::lookup(name.as_bytes())
                .unwrap_or_else(|| panic!("{name} missing from the table"));
            assert!(
                spec.arity.abs() >= *min,
                "{name}: arity {} allows fewer than {min} arguments",
                spec.arity
            );
            assert!(
                !spec.arity_ok(*min as usize - 1) || *min == 1,
                "{name} accepts {} arguments",
                min - 1
            );
        }
    }
}
