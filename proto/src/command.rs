//! The command table: every command Tessera knows, with Redis's arity, flags and key positions.
//! Shard nodes use it to check arity and answer COMMAND; the proxy uses it to find a command's keys
//! and decide how to route it. The table itself (`command/table.rs`) is generated from a real
//! redis-server by `proto/tools/gen_command_table.py`.

mod errors;
mod keys;
pub mod reply;
mod scan;
mod table;
mod timeout;

pub use errors::{
    arity_error, unknown_command_error, unknown_command_error_bytes, unknown_subcommand_error,
};
pub use keys::{Begin, Find, KeySpec};
pub use scan::{parse_cursor, parse_scan, ScanArgs, ScanError, ScanOptions};
pub use timeout::{parse_timeout, stream_block, timeout_argument, TimeoutError};

use std::cmp::Ordering;

use bytes::Bytes;

use crate::slot::key_hash_slot;

/// The one slot of a command's keys, with its first key (whose bytes gave it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySlot<'a> {
    pub slot: u16,
    pub first_key: &'a Bytes,
}

/// A command's keys hash to more than one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CROSSSLOT Keys in request don't hash to the same slot")]
pub struct CrossSlot;

/// How the proxy handles a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Sent to the owner of its key's slot (all keys must share one slot, else CROSSSLOT).
    Keyed,
    /// Keys may span slots: split per slot and the parts' replies merged (MGET, MSET, DEL,
    /// UNLINK, EXISTS, TOUCH).
    Split(Merge),
    /// Sent to every master and the replies combined (DBSIZE, KEYS, FLUSHALL, PUBSUB NUMSUB, ...).
    FanOut(FanOut),
    /// Answered by the proxy itself (PING, ECHO, HELLO, CLUSTER, CLIENT, COMMAND, INFO, ...).
    Local,
    /// Refused by the proxy with an honest error: it cannot serve it correctly yet (CLIENT PAUSE,
    /// ...).
    Refused,
}

/// How the parts of a split command are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// MGET: the parts' arrays, put back in key order.
    Values,
    /// MSET: OK when every part says OK.
    AllOk,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the parts' integers.
    Sum,
}

/// Whole-keyspace commands and how the masters' replies are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    DbSize,
    /// FLUSHALL / FLUSHDB: OK when every master says OK.
    Flush,
    Keys,
    RandomKey,
    Scan,
    /// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB: every master's view,
    /// combined (union of channels, sums of counts).
    PubSub,
}

/// Which of Tessera's RESP servers answers: what a client may run and COMMAND advertises
/// differs between them (a node has no ACL; the proxy answers ACL itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    ShardNode,
    Proxy,
}

/// One command's entry, as Redis describes it in COMMAND INFO. Container commands (CLUSTER,
/// CLIENT, CONFIG, OBJECT, ...) list their subcommands, named `container|sub` as Redis does.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Lowercase name; `container|sub` for a subcommand (Redis's "fullname").
    pub name: &'static str,
    /// Redis's arity: N means exactly N arguments (name included), -N means at least N.
    pub arity: i32,
    /// Redis's flags as COMMAND INFO shows them (`write`, `readonly`, `denyoom`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key (0: no keys), the last key (-1: the last argument) and the step,
    /// Redis's legacy triple; `key_specs` is the complete description.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// Redis's ACL categories without the `@` (`string`, `read`, `fast`, ...).
    pub acl_categories: &'static [&'static str],
    /// Redis's command tips (`nondeterministic_output`, `request_policy:all_shards`, ...).
    pub tips: &'static [&'static str],
    /// Where the keys are, as Redis 7's key specs say.
    pub key_specs: &'static [KeySpec],
    /// COMMAND DOCS summary, group, version and complexity.
    pub summary: &'static str,
    pub group: &'static str,
    pub since: &'static str,
    pub complexity: &'static str,
    /// Whether a shard node implements it (a container's subcommands follow the container).
    pub on_node: bool,
    pub routing: Routing,
    /// Sorted by name; empty unless this is a container command.
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// Whether `server` serves this command: a node the commands it implements, the proxy those
    /// and the ones it answers itself. Only these are advertised by COMMAND and run; any other
    /// answers Redis's "unknown command", as a Redis without the command would.
    pub fn served_by(&self, server: Server) -> bool {
        match server {
            Server::ShardNode => self.on_node,
            Server::Proxy => self.on_node || self.routing == Routing::Local,
        }
    }

    /// Whether `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= self.arity.unsigned_abs() as usize
        }
    }

    /// Indexes into `args` of this command's keys (empty when it has none), in key-spec order.
    /// For a container command the subcommand named by `args[1]` decides. Shard channels
    /// (SPUBLISH, SSUBSCRIBE: `not_key` specs) count as keys, since they route by slot too.
    /// Arguments that do not fit the command's syntax give no keys, as in Redis.
    pub fn key_indexes(&self, args: &[Bytes]) -> Vec<usize> {
        if !self.subcommands.is_empty() {
            return match args.get(1).and_then(|sub| self.subcommand(sub)) {
                Some(sub) => sub.key_indexes(args),
                None => Vec::new(),
            };
        }
        let mut keys = Vec::new();
        for spec in self.key_specs {
            if spec.find_keys(args, &mut keys).is_err() {
                return Vec::new();
            }
        }
        match self.name {
            "sort" | "sort_ro" => keys.extend(keys::sort_store_key(args)),
            // `MIGRATE host port "" db timeout KEYS k1 k2`: the empty key is a placeholder.
            "migrate" if args.get(3).is_some_and(|k| k.is_empty()) => keys.retain(|&i| i != 3),
            _ => {}
        }
        keys
    }

    /// The one slot of the command's keys (`None`: keyless), as Redis's getNodeByQuery finds it:
    /// `CrossSlot` when they span several. One-key commands (GET, SET, ...) skip building the list
    /// of key indexes: every command a proxy routes or a node checks comes through here.
    pub fn key_slot<'a>(&self, args: &'a [Bytes]) -> Result<Option<KeySlot<'a>>, CrossSlot> {
        let slot_of = |index: usize| {
            args.get(index).map(|key| KeySlot {
                slot: key_hash_slot(key),
                first_key: key,
            })
        };
        if let Some(index) = self.single_key_index(args.len()) {
            return Ok(slot_of(index));
        }
        let mut found: Option<KeySlot> = None;
        for index in self.key_indexes(args) {
            let Some(this) = slot_of(index) else { continue };
            match found {
                None => found = Some(this),
                Some(first) if first.slot != this.slot => return Err(CrossSlot),
                Some(_) => {}
            }
        }
        Ok(found)
    }

    /// The index of the command's one key when a single key spec puts it at a fixed position
    /// (GET, SET, INCR, ...) and `argc` arguments hold it: the same answer as `key_indexes`,
    /// without building a list, for the cluster rule every command passes. `None`: ask
    /// `key_indexes`.
    pub fn single_key_index(&self, argc: usize) -> Option<usize> {
        if !self.subcommands.is_empty() || matches!(self.name, "sort" | "sort_ro" | "migrate") {
            return None;
        }
        match self.key_specs {
            [KeySpec {
                begin: Begin::Index(index),
                find:
                    Find::Range {
                        last_key: 0,
                        key_step,
                        ..
                    },
                ..
            }] if *key_step > 0 && *index > 0 => {
                let index = usize::try_from(*index).ok()?;
                (index < argc).then_some(index)
            }
            _ => None,
        }
    }

    /// Whether it runs at once inside MULTI instead of being queued, as Redis's processCommand
    /// decides (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET).
    pub fn runs_inside_multi(&self) -> bool {
        matches!(
            self.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        )
    }

    /// Whether a RESP2 client in subscribed mode may run it, as Redis's processCommand decides.
    pub fn allowed_when_subscribed(&self) -> bool {
        matches!(
            self.name,
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

    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// The subcommand `name` (any case) of this container command.
    pub fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        let prefix = self.name.len() + 1;
        self.subcommands
            .binary_search_by(|sub| {
                cmp_lowercase(sub.name.as_bytes().get(prefix..).unwrap_or_default(), name)
            })
            .ok()
            .map(|i| &self.subcommands[i])
    }
}
/// Compares a lowercase table name with `name` in any case, without allocating.
fn cmp_lowercase(table: &[u8], name: &[u8]) -> Ordering {
    table
        .iter()
        .copied()
        .cmp(name.iter().map(u8::to_ascii_lowercase))
}

/// The entry for `name`, matched case-insensitively. `container|sub` finds a subcommand.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    if let Some(bar) = name.iter().position(|&b| b == b'|') {
        return lookup(&name[..bar])?.subcommand(&name[bar + 1..]);
    }
    let commands = all();
    commands
        .binary_search_by(|spec| cmp_lowercase(spec.name.as_bytes(), name))
        .ok()
        .map(|i| &commands[i])
}

/// Every top-level entry Redis knows, sorted by name, served by Tessera or not.
pub fn all() -> &'static [CommandSpec] {
    table::COMMANDS
}

/// The top-level entries `server` serves, sorted by name, for COMMAND and COMMAND COUNT.
pub fn served(server: Server) -> impl Iterator<Item = &'static CommandSpec> {
    all().iter().filter(move |spec| spec.served_by(server))
}

/// `lookup` among the commands `server` serves (COMMAND INFO, DOCS, GETKEYS).
pub fn lookup_served(server: Server, name: &[u8]) -> Option<&'static CommandSpec> {
    lookup(name).filter(|spec| spec.served_by(server))
}

/// `resolve` for a client of `server`: a command it does not serve is unknown, checked before
/// the arity as Redis checks a command it lacks.
pub fn resolve_served(server: Server, args: &[Bytes]) -> Result<&'static CommandSpec, String> {
    resolve_among(args, Some(server))
}

/// Finds the entry a client's command runs, as Redis's `processCommand` does: the command, or for
/// a container with arguments its subcommand; then checks the arity. `Err` holds Redis's error
/// text (prefix included): unknown command, unknown subcommand, or wrong number of arguments
/// (named `container|sub` for subcommands).
pub fn resolve(args: &[Bytes]) -> Result<&'static CommandSpec, String> {
    resolve_among(args, None)
}

/// `resolve` among the commands `server` serves (`None`: every command Redis knows).
fn resolve_among(args: &[Bytes], server: Option<Server>) -> Result<&'static CommandSpec, String> {
    let Some(name) = args.first() else {
        return Err(unknown_command_error(args));
    };
    let Some(command) = lookup_top(name) else {
        return Err(unknown_command_error(args));
    };
    if server.is_some_and(|server| !command.served_by(server)) {
        return Err(unknown_command_error(args));
    }
    let spec = match args.get(1) {
        Some(sub) if !command.subcommands.is_empty() => command
            .subcommand(sub)
            .ok_or_else(|| unknown_subcommand_error(args))?,
        _ => command,
    };
    if !spec.arity_ok(args.len()) {
        return Err(arity_error(spec.name));
    }
    Ok(spec)
}

/// `lookup` without the `container|sub` form: a client's `cluster|info` is an unknown command.
/// Runs for every request: the name is lowercased once into a stack buffer and looked for among
/// the few entries of its length and first letter (a binary search over the whole table, with
/// its compares, cost ~380 instructions).
fn lookup_top(name: &[u8]) -> Option<&'static CommandSpec> {
    let commands = all();
    let mut buffer = [0u8; LOWERCASE_NAME_MAX];
    let Some(lower) = buffer.get_mut(..name.len()) else {
        return None; // longer than every name in the table
    };
    for (to, from) in lower.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    let lower = &*lower;
    let bucket = name_buckets().get(bucket_of(lower)?)?;
    bucket
        .iter()
        .map(|&i| &commands[usize::from(i)])
        .find(|spec| spec.name.as_bytes() == lower)
}

/// Longer than every command name (checked by a test).
const LOWERCASE_NAME_MAX: usize = 32;

/// The bucket of a lowercase name: its length and first letter. `None`: no entry can match.
fn bucket_of(lower: &[u8]) -> Option<usize> {
    let first = *lower.first()?;
    first
        .is_ascii_lowercase()
        .then(|| lower.len() * 26 + usize::from(first - b'a'))
}

/// The table's top-level entries by `bucket_of` their name, as indexes into `all()`.
fn name_buckets() -> &'static [Vec<u16>] {
    static BUCKETS: std::sync::OnceLock<Vec<Vec<u16>>> = std::sync::OnceLock::new();
    BUCKETS.get_or_init(|| {
        let mut buckets = vec![Vec::new(); (LOWERCASE_NAME_MAX + 1) * 26];
        for (i, spec) in all().iter().enumerate() {
            let bucket = bucket_of(spec.name.as_bytes()).and_then(|b| buckets.get_mut(b));
            if let (Some(bucket), Ok(i)) = (bucket, u16::try_from(i)) {
                bucket.push(i);
            }
        }
        buckets
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn key_slot_is_the_one_slot_of_the_keys() {
        let slot_of = |line: &str| {
            let args = split(line);
            let found = lookup(&args[0]).expect("entry").key_slot(&args)?;
            Ok(found.map(|k| {
                assert_eq!(key_hash_slot(k.first_key), k.slot, "{line}");
                k.slot
            }))
        };
        let foo = Some(key_hash_slot(b"foo"));
        assert_eq!(slot_of("GET foo"), Ok(foo));
        assert_eq!(slot_of("SET foo bar"), Ok(foo));
        assert_eq!(slot_of("MSET {foo}a 1 {foo}b 2"), Ok(foo));
        assert_eq!(slot_of("MSET {foo}a 1 {bar}b 2"), Err(CrossSlot));
        assert_eq!(slot_of("RENAME foo bar"), Err(CrossSlot));
        assert_eq!(slot_of("PING"), Ok(None));
        assert_eq!(
            CrossSlot.to_string(),
            "CROSSSLOT Keys in request don't hash to the same slot"
        );
    }

    fn keys_of(line: &str) -> Vec<String> {
        let args = split(line);
        let spec = lookup(&args[0]).unwrap_or_else(|| panic!("no entry for {line}"));
        spec.key_indexes(&args)
            .into_iter()
            .map(|i| String::from_utf8_lossy(&args[i]).into_owned())
            .collect()
    }

    #[test]
    fn keys_match_command_getkeys() {
        // Expected values: `COMMAND GETKEYS <line>` on redis-server 7.0.15.
        let cases: &[(&str, &[&str])] = &[
            ("get k", &["k"]),
            ("set k v ex 10", &["k"]),
            ("mset a 1 b 2 c 3", &["a", "b", "c"]),
            ("mget a b c", &["a", "b", "c"]),
            ("del a b", &["a", "b"]),
            ("blpop a b 0", &["a", "b"]),
            ("brpop a 1.5", &["a"]),
            ("zunionstore d 2 a b weights 1 2", &["d", "a", "b"]),
            ("zinterstore d 1 a", &["d", "a"]),
            ("zdiffstore d 2 a b", &["d", "a", "b"]),
            ("zunion 2 a b withscores", &["a", "b"]),
            ("zinter 1 a", &["a"]),
            ("zdiff 2 a b", &["a", "b"]),
            ("zintercard 2 a b limit 1", &["a", "b"]),
            ("sintercard 3 a b c", &["a", "b", "c"]),
            ("lmpop 2 a b left count 2", &["a", "b"]),
            ("blmpop 0 2 a b right", &["a", "b"]),
            ("zmpop 1 a min", &["a"]),
            ("bzmpop 1.5 2 a b max", &["a", "b"]),
            ("eval s 2 a b x y", &["a", "b"]),
            ("evalsha s 1 a", &["a"]),
            ("eval_ro s 0", &[]),
            ("fcall f 1 a x", &["a"]),
            ("lmove a b left right", &["a", "b"]),
            ("blmove a b left right 0", &["a", "b"]),
            ("rpoplpush a b", &["a", "b"]),
            ("smove a b m", &["a", "b"]),
            ("rename a b", &["a", "b"]),
            ("copy a b", &["a", "b"]),
            ("xread count 2 streams s1 s2 0 0", &["s1", "s2"]),
            ("xreadgroup group g c streams s1 0", &["s1"]),
            ("object encoding k", &["k"]),
            ("memory usage k", &["k"]),
            ("sort k by w get x store d limit 0 1", &["k", "d"]),
            ("sort k", &["k"]),
            ("sort_ro k by x", &["k"]),
            ("georadius k 0 0 1 km store d", &["k", "d"]),
            ("bitop and d a b", &["d", "a", "b"]),
            ("pfmerge d a b", &["d", "a", "b"]),
            ("pfcount a b", &["a", "b"]),
            ("watch a b", &["a", "b"]),
            ("xinfo stream s", &["s"]),
            ("migrate h 1 k 0 5", &["k"]),
            ("migrate h 1  0 5 keys a b", &["a", "b"]),
            ("exists a b", &["a", "b"]),
            ("touch a", &["a"]),
            ("unlink a b", &["a", "b"]),
            ("getex k persist", &["k"]),
            ("hset h f v", &["h"]),
            ("sinterstore d a b", &["d", "a", "b"]),
            ("sdiff a b", &["a", "b"]),
            ("msetnx a 1 b 2", &["a", "b"]),
            ("lcs a b", &["a", "b"]),
            ("zrangestore d s 0 1", &["d", "s"]),
            ("geosearchstore d s frommember m byradius 1 km", &["d", "s"]),
            ("debug object k", &[]),
            ("bzpopmin a b 0", &["a", "b"]),
            ("setrange k 0 v", &["k"]),
            ("expire k 10", &["k"]),
            ("type k", &["k"]),
            ("restore k 0 v", &["k"]),
            ("ping", &[]),
            ("cluster info", &[]),
            // Not keys for Redis, but routed by slot: shard channels.
            ("spublish ch m", &["ch"]),
            ("ssubscribe a b", &["a", "b"]),
            // Syntax errors give no keys.
            ("zunionstore d 0 a", &[]),
            ("eval s 5 a", &[]),
            ("eval s -1 a", &[]),
            ("eval s x a", &[]),
            ("object", &[]),
            ("object nosuch k", &[]),
        ];
        for (line, want) in cases {
            assert_eq!(keys_of(line), want.to_vec(), "{line}");
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_sorted() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert_eq!(
            lookup(b"cluster|INFO").map(|s| s.name),
            Some("cluster|info")
        );
        assert!(lookup(b"nosuch").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(b"cluster|nosuch").is_none());
        assert!(all().windows(2).all(|w| w[0].name < w[1].name));
        for spec in all() {
            assert_eq!(
                lookup(spec.name.as_bytes()).map(|s| s.name),
                Some(spec.name)
            );
            assert!(spec.subcommands.windows(2).all(|w| w[0].name < w[1].name));
            for sub in spec.subcommands {
                assert_eq!(lookup(sub.name.as_bytes()).map(|s| s.name), Some(sub.name));
            }
        }
        assert_eq!(all().len(), 240, "COMMAND COUNT of redis-server 7.0.15");
    }

    #[test]
    fn table_values_are_redis_values() {
        let get = lookup(b"get").unwrap();
        assert_eq!(
            (get.arity, get.first_key, get.last_key, get.step),
            (2, 1, 1, 1)
        );
        assert_eq!(get.flags, &["readonly", "fast"]);
        assert_eq!(get.acl_categories, &["read", "string", "fast"]);
        assert_eq!((get.group, get.since), ("string", "1.0.0"));
        assert!(!get.is_write());
        assert!(lookup(b"set").unwrap().is_write());
        let info = lookup(b"cluster|info").unwrap();
        assert_eq!(info.arity, 2);
    }

    #[test]
    fn arity() {
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2));
        assert!(!get.arity_ok(1));
        assert!(!get.arity_ok(3));
        let mset = lookup(b"mset").unwrap();
        assert!(!mset.arity_ok(2));
        assert!(mset.arity_ok(3));
        assert!(
            mset.arity_ok(4),
            "the table checks counts only; MSET checks pairs itself"
        );
    }

    #[test]
    fn routing() {
        let route = |name: &str| lookup(name.as_bytes()).unwrap().routing;
        assert_eq!(route("mget"), Routing::Split(Merge::Values));
        assert_eq!(route("mset"), Routing::Split(Merge::AllOk));
        for name in ["del", "unlink", "exists", "touch"] {
            assert_eq!(route(name), Routing::Split(Merge::Sum), "{name}");
        }
        assert_eq!(route("dbsize"), Routing::FanOut(FanOut::DbSize));
        assert_eq!(route("keys"), Routing::FanOut(FanOut::Keys));
        assert_eq!(route("scan"), Routing::FanOut(FanOut::Scan));
        assert_eq!(route("randomkey"), Routing::FanOut(FanOut::RandomKey));
        assert_eq!(route("flushall"), Routing::FanOut(FanOut::Flush));
        assert_eq!(route("flushdb"), Routing::FanOut(FanOut::Flush));
        assert_eq!(route("pubsub|numsub"), Routing::FanOut(FanOut::PubSub));
        assert_eq!(route("pubsub|help"), Routing::Keyed);
        for name in [
            "ping",
            "echo",
            "hello",
            "cluster",
            "cluster|info",
            "client",
            "multi",
            "subscribe",
            "acl",
            "time",
        ] {
            assert_eq!(route(name), Routing::Local, "{name}");
        }
        assert_eq!(route("client|pause"), Routing::Refused);
        for name in ["get", "set", "zunionstore", "eval", "blpop", "publish"] {
            assert_eq!(route(name), Routing::Keyed, "{name}");
        }
    }

    #[test]
    fn multi_and_subscribed_mode_rules_are_redis_rules() {
        let spec = |name: &str| lookup(name.as_bytes()).unwrap();
        for name in ["exec", "discard", "multi", "watch", "quit", "reset"] {
            assert!(spec(name).runs_inside_multi(), "{name}");
        }
        for name in [
            "ping",
            "subscribe",
            "sunsubscribe",
            "punsubscribe",
            "quit",
            "reset",
        ] {
            assert!(spec(name).allowed_when_subscribed(), "{name}");
        }
        for name in ["get", "unwatch", "publish", "echo"] {
            assert!(!spec(name).runs_inside_multi(), "{name}");
            assert!(!spec(name).allowed_when_subscribed(), "{name}");
        }
    }

    #[test]
    fn served_by_each_server() {
        let served = |server, name: &str| lookup(name.as_bytes()).unwrap().served_by(server);
        for name in [
            "get",
            "blpop",
            "cluster|info",
            "reset",
            "exec",
            "client|setname",
        ] {
            assert!(served(Server::ShardNode, name), "{name}");
            assert!(served(Server::Proxy, name), "{name}");
        }
        for name in ["acl", "time"] {
            assert!(!served(Server::ShardNode, name), "{name}");
            assert!(served(Server::Proxy, name), "{name}");
        }
        for name in [
            "eval",
            "fcall",
            "pfdebug",
            "pfselftest",
            "monitor",
            "lolwut",
        ] {
            assert!(!served(Server::ShardNode, name), "{name}");
            assert!(!served(Server::Proxy, name), "{name}");
        }
        assert!(served(Server::Proxy, "client|pause"), "refused, yet known");
        let r = |server, line: &str| resolve_served(server, &split(line)).map(|s| s.name);
        // Unknown before the arity check, as a Redis without the command answers.
        assert_eq!(
            r(Server::ShardNode, "FCALL"),
            Err("ERR unknown command 'FCALL', with args beginning with: ".into())
        );
        assert_eq!(
            r(Server::Proxy, "eval s 0"),
            Err("ERR unknown command 'eval', with args beginning with: 's' '0' ".into())
        );
        assert_eq!(
            r(Server::ShardNode, "ACL WHOAMI"),
            Err("ERR unknown command 'ACL', with args beginning with: 'WHOAMI' ".into())
        );
        assert_eq!(r(Server::Proxy, "ACL WHOAMI"), Ok("acl|whoami"));
        assert_eq!(r(Server::ShardNode, "get k"), Ok("get"));
        assert_eq!(
            r(Server::ShardNode, "get"),
            Err("ERR wrong number of arguments for 'get' command".into())
        );
        assert_eq!(
            lookup_served(Server::ShardNode, b"fcall").map(|s| s.name),
            None
        );
        assert_eq!(
            lookup_served(Server::ShardNode, b"GET").map(|s| s.name),
            Some("get")
        );
        assert!(served(Server::ShardNode, "get"));
        let node = super::served(Server::ShardNode).count();
        let proxy = super::served(Server::Proxy).count();
        assert_eq!((node, proxy), (212, 214), "ACL and TIME on the proxy only");
        // Per-node replication commands: on a node, and refused (yet known) by the proxy.
        assert_eq!(lookup(b"wait").unwrap().routing, Routing::Local);
        for name in ["role", "replicaof", "slaveof"] {
            assert!(served(Server::ShardNode, name), "{name}");
            assert_eq!(
                lookup(name.as_bytes()).unwrap().routing,
                Routing::Refused,
                "{name}"
            );
        }
    }

    #[test]
    fn resolve_reports_redis_errors() {
        let r = |line: &str| resolve(&split(line)).map(|s| s.name);
        assert_eq!(r("GET k"), Ok("get"));
        assert_eq!(r("cluster INFO"), Ok("cluster|info"));
        assert_eq!(
            r("get"),
            Err("ERR wrong number of arguments for 'get' command".into())
        );
        assert_eq!(
            r("cluster"),
            Err("ERR wrong number of arguments for 'cluster' command".into())
        );
        assert_eq!(
            r("CLUSTER INFO x"),
            Err("ERR wrong number of arguments for 'cluster|info' command".into())
        );
        assert_eq!(
            r("config gEt"),
            Err("ERR wrong number of arguments for 'config|get' command".into())
        );
        assert_eq!(
            r("Cluster blah"),
            Err("ERR unknown subcommand 'blah'. Try CLUSTER HELP.".into())
        );
        assert_eq!(
            r("cluster|info"),
            Err("ERR unknown command 'cluster|info', with args beginning with: ".into())
        );
        assert_eq!(
            r("foo a b"),
            Err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ".into())
        );
        assert!(resolve(&[]).is_err());
    }

    #[test]
    fn unknown_command_truncation_matches_redis() {
        let args = |v: &[&[u8]]| {
            v.iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect::<Vec<_>>()
        };
        let a100 = "a".repeat(100);
        let b25 = "b".repeat(25);
        assert_eq!(
            unknown_command_error(&args(&[
                b"foo",
                a100.as_bytes(),
                "b".repeat(100).as_bytes(),
                b"c"
            ])),
            format!("ERR unknown command 'foo', with args beginning with: '{a100}' '{b25}' ")
        );
        let a126 = "a".repeat(126);
        let a128 = "a".repeat(128);
        assert_eq!(
            unknown_command_error(&args(&[b"foo", a126.as_bytes(), b"b"])),
            format!("ERR unknown command 'foo', with args beginning with: '{a126}' ")
        );
        assert_eq!(
            unknown_command_error(&args(&[b"foo", "x".repeat(200).as_bytes(), b"y"])),
            format!(
                "ERR unknown command 'foo', with args beginning with: '{}' ",
                "x".repeat(128)
            )
        );
        assert_eq!(
            unknown_command_error(&args(&["f".repeat(200).as_bytes()])),
            format!(
                "ERR unknown command '{}', with args beginning with: ",
                "f".repeat(128)
            )
        );
        assert_eq!(a128.len(), 128);
        assert_eq!(
            unknown_command_error(&args(&[b"fo\r\no", b"a\0b"])),
            "ERR unknown command 'fo  o', with args beginning with: 'a' "
        );
        assert_eq!(
            unknown_subcommand_error(&args(&[b"cluster", "x".repeat(200).as_bytes()])),
            format!(
                "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                "x".repeat(128)
            )
        );
    }

    #[test]
    fn single_key_index_agrees_with_key_indexes() {
        // Every entry, at every argument count up to 8: the shortcut answers only where the
        // general search finds exactly that one key.
        let mut shortcuts = 0;
        for spec in all().iter().chain(all().iter().flat_map(|c| c.subcommands)) {
            for argc in 1..=8 {
                let args: Vec<Bytes> = std::iter::once(Bytes::from_static(spec.name.as_bytes()))
                    .chain((1..argc).map(|i| Bytes::from(format!("a{i}"))))
                    .collect();
                if let Some(index) = spec.single_key_index(argc) {
                    shortcuts += 1;
                    assert_eq!(
                        spec.key_indexes(&args),
                        vec![index],
                        "{} argc {argc}",
                        spec.name
                    );
                }
            }
        }
        assert!(shortcuts > 100, "the shortcut covers GET, SET and the like");
    }

    #[test]
    fn lookup_top_is_case_insensitive_at_any_length() {
        assert_eq!(lookup_top(b"GeT").map(|s| s.name), Some("get"));
        assert_eq!(lookup_top(b"CLUSTER").map(|s| s.name), Some("cluster"));
        assert!(lookup_top(b"").is_none());
        assert!(lookup_top("g".repeat(40).as_bytes()).is_none());
        assert!(lookup_top(b"1get").is_none());
        for spec in all() {
            assert!(spec.name.len() < LOWERCASE_NAME_MAX, "{}", spec.name);
            assert!(bucket_of(spec.name.as_bytes()).is_some(), "{}", spec.name);
            let upper = spec.name.to_ascii_uppercase();
            assert_eq!(
                lookup_top(upper.as_bytes()).map(|s| s.name),
                Some(spec.name)
            );
        }
    }
}
