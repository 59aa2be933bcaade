//! The node's dispatch table: each command family's file lists its commands and handlers
//! (`COMMANDS`), gathered here once (adding a family is adding its file and one line in
//! `FAMILIES`). A command finds its handler by its entry's position in the shared command table,
//! one index per request, not a chain of name compares.

use std::sync::OnceLock;

use bytes::Bytes;
use tessera_proto::command::{self, CommandSpec};
use tessera_proto::resp::Frame;

use super::{
    bitfield, bits, cluster_command, config, connection, container_name, geo, hash, hyperloglog,
    keys, list, memory, multi_exec, pubsub, replication, server, set, sort, stream, string,
    string_range, zset, ClientSession, Ctx,
};

/// A command's handler; `execute` has checked the arity and the cluster rule. A container
/// command's handler (CLUSTER, CLIENT, CONFIG, ...) answers its subcommands.
pub type Handler = fn(&Ctx<'_>, &mut ClientSession, &[Bytes]) -> Frame;

/// A top-level command's name (lowercase, as in the command table) and its handler.
pub type DispatchEntry = (&'static str, Handler);

/// Every family's commands. EXEC is not among them: `execute` runs it before the cluster rule.
const FAMILIES: &[&[DispatchEntry]] = &[
    connection::COMMANDS,
    multi_exec::COMMANDS,
    server::COMMANDS,
    config::COMMANDS,
    memory::COMMANDS,
    string::COMMANDS,
    string_range::COMMANDS,
    bits::COMMANDS,
    bitfield::COMMANDS,
    hyperloglog::COMMANDS,
    list::COMMANDS,
    hash::COMMANDS,
    set::COMMANDS,
    keys::COMMANDS,
    zset::COMMANDS,
    geo::COMMANDS,
    sort::COMMANDS,
    stream::COMMANDS,
    pubsub::COMMANDS,
    cluster_command::COMMANDS,
    replication::COMMANDS,
];

/// The handlers by the position of their command in `command::all()`, built once.
fn handlers() -> &'static [Option<Handler>] {
    static HANDLERS: OnceLock<Vec<Option<Handler>>> = OnceLock::new();
    HANDLERS.get_or_init(|| {
        let all = command::all();
        let mut handlers = vec![None; all.len()];
        for &(name, handler) in FAMILIES.iter().copied().flatten() {
            if let Some(index) = all.iter().position(|spec| spec.name == name) {
                handlers[index] = Some(handler);
            }
        }
        handlers
    })
}

/// The position in `command::all()` of `spec`, or of its container for a subcommand. Entries
/// come from that very table, so the address gives the position; a copy of an entry (or a
/// subcommand) is found by name instead.
fn position(spec: &CommandSpec) -> Option<usize> {
    let all = command::all();
    let offset = (spec as *const CommandSpec as usize).wrapping_sub(all.as_ptr() as usize);
    let index = offset / std::mem::size_of::<CommandSpec>();
    if all.get(index).is_some_and(|top| std::ptr::eq(top, spec)) {
        return Some(index);
    }
    let name = container_name(spec);
    all.iter().position(|top| top.name == name)
}

/// Runs the command `spec` names (a subcommand runs its container's handler).
pub(super) fn dispatch(
    ctx: &Ctx<'_>,
    session: &mut ClientSession,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Frame {
    let handler = position(spec).and_then(|index| handlers().get(index).copied().flatten());
    match handler {
        Some(handler) => handler(ctx, session, args),
        None => Frame::error(command::unknown_command_error(args)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tessera_proto::command::{self, Server};

    use super::{position, FAMILIES};

    /// The commands `execute` runs itself rather than through a family's handler.
    const RUN_BY_EXECUTE: &[&str] = &["exec"];

    /// The command table is the one truth of what a node serves: every command it says a node
    /// implements has a handler here (or is EXEC), and every handler's command is in the table
    /// as implemented, once.
    #[test]
    fn the_table_and_the_handlers_agree() {
        let mut handled = BTreeSet::new();
        for (name, _) in FAMILIES.iter().copied().flatten() {
            assert!(handled.insert(*name), "{name} has two handlers");
            let spec = command::lookup(name.as_bytes())
                .unwrap_or_else(|| panic!("{name} has a handler but no table entry"));
            assert_eq!(
                spec.name, *name,
                "handlers are named as the table names them"
            );
            assert!(
                spec.served_by(Server::ShardNode),
                "{name} has a handler but the table says no node implements it"
            );
        }
        for spec in command::served(Server::ShardNode) {
            assert!(
                handled.contains(spec.name) || RUN_BY_EXECUTE.contains(&spec.name),
                "the table says a node implements {} but it has no handler",
                spec.name
            );
        }
    }

    #[test]
    fn position_finds_entries_copies_and_subcommands() {
        let all = command::all();
        for (index, spec) in all.iter().enumerate() {
            assert_eq!(position(spec), Some(index), "{}", spec.name);
            let copy = *spec;
            assert_eq!(position(&copy), Some(index), "a copy of {}", spec.name);
        }
        let info = command::lookup(b"cluster|info").expect("entry");
        let cluster = all.iter().position(|s| s.name == "cluster");
        assert_eq!(position(info), cluster);
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
            ("bitfield", 2),
            ("bitfield_ro", 2),
            ("pfadd", 2),
            ("pfcount", 2),
            ("pfmerge", 2),
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
            ("geoadd", 5),
            ("geopos", 2),
            ("geodist", 4),
            ("geohash", 2),
            ("georadius", 6),
            ("georadius_ro", 6),
            ("georadiusbymember", 5),
            ("georadiusbymember_ro", 5),
            ("geosearch", 2),
            ("geosearchstore", 3),
            ("sort", 2),
            ("sort_ro", 2),
            ("xadd", 5),
            ("xtrim", 4),
            ("xrange", 4),
            ("xrevrange", 4),
            ("xlen", 2),
            ("xdel", 3),
            ("xsetid", 3),
            ("xgroup", 2),
            ("xack", 4),
            ("xpending", 3),
            ("xclaim", 6),
            ("xautoclaim", 6),
            ("xinfo", 2),
            ("xread", 4),
            ("xreadgroup", 7),
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
