//! Where a command goes: a pure function of the arguments and a topology snapshot, table-tested.
//! Order of checks follows Redis in cluster mode: unknown command, arity, CROSSSLOT, then the
//! shared cluster-state rule (`Topology::route`).

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::command::{self, CommandSpec, CrossSlot, Routing, Server};
/// How split parts merge and fan-out replies combine: attributes of the shared command table.
pub use tessera_proto::command::{FanOut, Merge};
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::{Access, Health, NodeSpec, Topology};

/// The verdict for one command.
#[derive(Debug)]
pub enum Route<'t> {
    /// Answer this error (text without the leading `-`).
    Error(Cow<'static, str>),
    /// Send the command unchanged to `node`, which serves `slot`. `write`: the command writes
    /// (WAIT then counts `node` among the masters this client wrote to).
    Forward {
        node: &'t NodeSpec,
        slot: u16,
        write: bool,
    },
    /// A blocking command (BLPOP, ...) for `node`: it goes on a dedicated connection, and the
    /// backend timeout is extended by `timeout` (`None`: the command waits forever).
    Blocking {
        node: &'t NodeSpec,
        slot: u16,
        timeout: Option<Duration>,
    },
    /// Split by slot and merge the parts' replies.
    Split(SplitPlan<'t>),
    /// Send to every master serving slots and combine.
    FanOut(FanOut),
    /// Answer in the proxy.
    Local(&'static CommandSpec),
}

/// One same-slot part of a split command.
#[derive(Debug)]
pub struct Part<'t> {
    pub node: &'t NodeSpec,
    pub slot: u16,
    /// Indexes into the original arguments of the keys of this part (each followed by its value
    /// for MSET), in the order they were given.
    pub keys: Vec<usize>,
}

#[derive(Debug)]
pub struct SplitPlan<'t> {
    pub merge: Merge,
    /// The command writes (MSET, DEL, UNLINK, TOUCH).
    pub write: bool,
    /// Arguments taken with each key: 1 for MSET (the value), else 0.
    pub values_per_key: usize,
    pub parts: Vec<Part<'t>>,
}

/// The error for a command the proxy refuses.
pub fn unsupported_error(name: &str) -> String {
    format!("ERR command '{name}' is not supported by the Tessera proxy yet")
}

/// Routes one command (args\[0\] is its name). `health` is `topology.health()`, computed once
/// per snapshot (the cluster state must not be recounted over 16384 slots per command).
pub fn route<'t>(args: &[Bytes], topology: &'t Topology, health: &'t Health) -> Route<'t> {
    let view = View { topology, health };
    // Unknown command (or one Tessera does not serve), unknown subcommand, wrong arity: Redis's
    // texts, from the shared table.
    let spec = match command::resolve_served(Server::Proxy, args) {
        Ok(spec) => spec,
        Err(text) => return Route::Error(text.into()),
    };
    let access = if spec.is_write() {
        Access::Write
    } else {
        Access::Read
    };
    match spec.routing {
        Routing::Local => route_local(spec, args, view),
        Routing::Keyed => route_keyed(spec, args, view, access),
        Routing::Split(merge) => route_split(spec, merge, args, view, access),
        Routing::FanOut(kind) => Route::FanOut(kind),
        Routing::Refused => Route::Error(unsupported_error(spec.name).into()),
    }
}

/// CLUSTER COUNTKEYSINSLOT / GETKEYSINSLOT go to the slot's owner; everything else local. Arity
/// was checked by `resolve`.
fn route_local<'t>(spec: &'static CommandSpec, args: &[Bytes], view: View<'t>) -> Route<'t> {
    let with_count = match spec.name {
        "cluster|countkeysinslot" => false,
        "cluster|getkeysinslot" => true,
        _ => return Route::Local(spec),
    };
    let Some(slot) = parse_i64(&args[2]) else {
        return Route::Error(Cow::Borrowed("ERR value is not an integer or out of range"));
    };
    if with_count && parse_i64(&args[3]).is_none() {
        return Route::Error(Cow::Borrowed("ERR value is not an integer or out of range"));
    }
    if !(0..i64::from(tessera_proto::slot::SLOT_COUNT)).contains(&slot) {
        // Let the owner of any slot word the error exactly as Redis does; slot 0 stands in.
        return forward(view, 0, Access::Read);
    }
    forward(view, slot as u16, Access::Read)
}

fn route_keyed<'t>(
    spec: &'static CommandSpec,
    args: &[Bytes],
    view: View<'t>,
    access: Access,
) -> Route<'t> {
    let slot = match spec.key_slot(args) {
        Ok(found) => found.map(|k| k.slot),
        Err(CrossSlot) => return Route::Error(Cow::Borrowed(CROSSSLOT)),
    };
    let route = match slot {
        Some(slot) => forward(view, slot, access),
        None => any_master(view, access),
    };
    match route {
        // Every blocking command's name starts with `b` or `x`: a cheap filter first.
        Route::Forward { node, slot, .. }
            if matches!(spec.name.as_bytes()[0], b'b' | b'x')
                && spec.flags.contains(&"blocking") =>
        {
            match blocking_timeout(spec.name, args) {
                Some(timeout) => Route::Blocking {
                    node,
                    slot,
                    timeout,
                },
                None => Route::Forward {
                    node,
                    slot,
                    write: access == Access::Write,
                },
            }
        }
        route => route,
    }
}

/// For the blocking commands the proxy serves on a dedicated connection: how long the command
/// may block (`Some(None)`: forever, timeout 0), read by the rule the shard nodes apply
/// (`command::parse_timeout`). `None`: not such a command, or a timeout the node refuses at once: it then goes as a plain command, so the node answers
/// Redis's error in Redis's order (BZMPOP checks its other arguments first).
fn blocking_timeout(name: &str, args: &[Bytes]) -> Option<Option<Duration>> {
    if matches!(name, "xread" | "xreadgroup") {
        // Blocking only with BLOCK; without it the node answers at once.
        return command::stream_block(args);
    }
    command::parse_timeout(command::timeout_argument(name, args)?).ok()
}

/// `-CROSSSLOT` as Redis words it.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// A topology with its health, computed once per snapshot.
#[derive(Clone, Copy)]
struct View<'t> {
    topology: &'t Topology,
    health: &'t Health,
}

fn forward(view: View<'_>, slot: u16, access: Access) -> Route<'_> {
    match view.topology.route_with(view.health, slot, access) {
        Ok(node) => Route::Forward {
            node,
            slot,
            write: access == Access::Write,
        },
        Err(down) => Route::Error(Cow::Borrowed(down.message())),
    }
}

/// A keyless command that must still reach a shard: the master of the lowest served slot.
fn any_master(view: View<'_>, access: Access) -> Route<'_> {
    let slot = view.topology.first_assigned_slot().unwrap_or(0);
    forward(view, slot, access)
}

fn route_split<'t>(
    spec: &'static CommandSpec,
    merge: Merge,
    args: &[Bytes],
    view: View<'t>,
    access: Access,
) -> Route<'t> {
    // MSET takes a value with each key.
    let values_per_key = usize::from(merge == Merge::AllOk);
    if values_per_key == 1 && args.len() & 1 == 0 {
        // MSET with a key lacking its value: Redis refuses it whole (no part may run).
        return Route::Error(command::arity_error(spec.name).into());
    }
    let keys = spec.key_indexes(args);
    // Group by slot in order of first appearance; few slots per command is the norm, so a linear
    // scan beats a map.
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for &i in &keys {
        let Some(key) = args.get(i) else { continue };
        let slot = key_hash_slot(key);
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, members)) => members.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    if groups.len() <= 1 {
        let slot = groups.first().map(|g| g.0);
        return match slot {
            Some(slot) => forward(view, slot, access),
            None => any_master(view, access),
        };
    }
    let mut parts = Vec::with_capacity(groups.len());
    for (slot, keys) in groups {
        match view.topology.route_with(view.health, slot, access) {
            Ok(node) => parts.push(Part { node, slot, keys }),
            Err(down) => return Route::Error(Cow::Borrowed(down.message())),
        }
    }
    Route::Split(SplitPlan {
        merge,
        write: access == Access::Write,
        values_per_key,
        parts,
    })
}

/// A decimal integer argument, as Redis's `string2ll` accepts it.
pub use tessera_proto::resp::request::string_to_i64 as parse_i64;

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::topology::NodeId;

    fn node(n: u8, port: u16) -> NodeSpec {
        NodeSpec {
            config_epoch: u64::from(n),
            ..NodeSpec::master(NodeId::from_random_bytes([n; 20]), "127.0.0.1", port)
        }
    }

    /// Three masters split as `redis-cli --cluster create` does.
    fn three_masters() -> Topology {
        let slots = (0..16384usize)
            .map(|slot| {
                Some(match slot {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                })
            })
            .collect();
        Topology::created(vec![node(1, 7000), node(2, 7001), node(3, 7002)], slots)
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn describe(route: &Route<'_>) -> String {
        match route {
            Route::Error(e) => format!("-{e}"),
            Route::Forward { node, slot, .. } => format!("{}@{slot}", node.port),
            Route::Blocking {
                node,
                slot,
                timeout,
            } => format!("block {}@{slot} {timeout:?}", node.port),
            Route::Split(plan) => {
                let parts: Vec<String> = plan
                    .parts
                    .iter()
                    .map(|p| format!("{}@{}{:?}", p.node.port, p.slot, p.keys))
                    .collect();
                format!("split {:?} {}", plan.merge, parts.join(" "))
            }
            Route::FanOut(kind) => format!("fanout {kind:?}"),
            Route::Local(spec) => format!("local {}", spec.name),
        }
    }

    #[test]
    fn routing_table() {
        let t = three_masters();
        // somekey -> 11058, foo -> 12182, {a}x and {a}y share a slot, bar -> 5061, hello -> 866.
        let cases: &[(&[&str], &str)] = &[
            (&["GET", "somekey"], "7002@11058"),
            (&["get", "bar"], "7000@5061"),
            (&["SET", "foo", "1"], "7002@12182"),
            (&["GET"], "-ERR wrong number of arguments for 'get' command"),
            (
                &["NOSUCH", "a"],
                "-ERR unknown command 'NOSUCH', with args beginning with: 'a' ",
            ),
            (
                &["RENAME", "foo", "bar"],
                "-CROSSSLOT Keys in request don't hash to the same slot",
            ),
            (&["RENAME", "{a}x", "{a}y"], "7002@15495"),
            (&["MGET", "{a}x", "{a}y"], "7002@15495"),
            (
                &["MGET", "bar", "foo", "hello"],
                "split Values 7000@5061[1] 7002@12182[2] 7000@866[3]",
            ),
            (
                &["MSET", "bar", "1", "foo", "2", "bar", "3"],
                "split AllOk 7000@5061[1, 5] 7002@12182[3]",
            ),
            (
                &["DEL", "bar", "foo"],
                "split Sum 7000@5061[1] 7002@12182[2]",
            ),
            (&["DBSIZE"], "fanout DbSize"),
            (&["FLUSHALL"], "fanout Flush"),
            (&["SCAN", "0"], "fanout Scan"),
            (&["PING"], "local ping"),
            (&["CLUSTER", "INFO"], "local cluster|info"),
            (
                &["CLUSTER", "NOSUCH"],
                "-ERR unknown subcommand 'NOSUCH'. Try CLUSTER HELP.",
            ),
            // Not implemented by the nodes: unknown, as in a Redis without the command.
            (
                &["FCALL", "f", "1", "s"],
                "-ERR unknown command 'FCALL', with args beginning with: 'f' '1' 's' ",
            ),
            (
                &["EVAL"],
                "-ERR unknown command 'EVAL', with args beginning with: ",
            ),
            (
                &["MONITOR"],
                "-ERR unknown command 'MONITOR', with args beginning with: ",
            ),
            (
                &["CLIENT", "PAUSE", "10"],
                "-ERR command 'client|pause' is not supported by the Tessera proxy yet",
            ),
            (&["ACL", "WHOAMI"], "local acl|whoami"),
            (&["CLUSTER", "COUNTKEYSINSLOT", "5461"], "7001@5461"),
            (&["CLUSTER", "GETKEYSINSLOT", "16383", "10"], "7002@16383"),
            (
                &["CLUSTER", "COUNTKEYSINSLOT", "x"],
                "-ERR value is not an integer or out of range",
            ),
            (
                &["CLUSTER", "COUNTKEYSINSLOT"],
                "-ERR wrong number of arguments for 'cluster|countkeysinslot' command",
            ),
            (&["MULTI"], "local multi"),
            (&["PUBSUB", "NUMSUB", "a"], "fanout PubSub"),
            (&["PUBSUB", "HELP"], "7000@0"),
            (&["PUBLISH", "ch", "m"], "7000@0"),
            (&["SPUBLISH", "foo", "m"], "7002@12182"),
            (&["BLPOP", "bar", "0"], "block 7000@5061 None"),
            (
                &["BLPOP", "{a}x", "{a}y", "1.5"],
                "block 7002@15495 Some(1.5s)",
            ),
            (
                &["BLPOP", "bar", "foo", "1"],
                "-CROSSSLOT Keys in request don't hash to the same slot",
            ),
            (
                &["BZMPOP", "2", "1", "foo", "MIN"],
                "block 7002@12182 Some(2s)",
            ),
            // A timeout the node refuses goes as a plain command: the node words the error.
            (
                &["BLMOVE", "{a}x", "{a}y", "LEFT", "RIGHT", "x"],
                "7002@15495",
            ),
            (&["BLPOP", "bar", "-1"], "7000@5061"),
            (&["BLPOP", "bar", "inf"], "7000@5061"),
            // Redis's long-double syntax, read as the node reads it.
            (&["BLPOP", "bar", "0x1p3"], "block 7000@5061 Some(8s)"),
            (&["BLPOP", "bar", "1e1"], "block 7000@5061 Some(10s)"),
            (&["BRPOP", "bar", "0.0001"], "block 7000@5061 Some(1ms)"),
            // XREAD and XREADGROUP block with BLOCK only, in milliseconds.
            (
                &["XREAD", "BLOCK", "0", "STREAMS", "bar", "$"],
                "block 7000@5061 None",
            ),
            (
                &[
                    "XREADGROUP",
                    "GROUP",
                    "g",
                    "c",
                    "BLOCK",
                    "250",
                    "STREAMS",
                    "bar",
                    ">",
                ],
                "block 7000@5061 Some(250ms)",
            ),
            (&["XREAD", "STREAMS", "bar", "0"], "7000@5061"),
            (
                &["XREAD", "BLOCK", "-5", "STREAMS", "bar", "$"],
                "7000@5061",
            ),
        ];
        for (words, want) in cases {
            let a = args(words);
            assert_eq!(describe(&route(&a, &t, &t.health())), *want, "{words:?}");
        }
    }

    #[test]
    fn cluster_down_follows_the_shared_rule() {
        let mut t = three_masters();
        t.observed.nodes[0].fail = true;
        let a = args(&["GET", "foo"]);
        assert_eq!(
            describe(&route(&a, &t, &t.health())),
            "-CLUSTERDOWN The cluster is down"
        );
        t.intent.settings.require_full_coverage = false;
        assert_eq!(describe(&route(&a, &t, &t.health())), "7002@12182");
        let a = args(&["GET", "bar"]);
        assert_eq!(
            describe(&route(&a, &t, &t.health())),
            "-CLUSTERDOWN Hash slot not served"
        );
        // CROSSSLOT is decided before the cluster state.
        t.intent.settings.require_full_coverage = true;
        let a = args(&["RENAME", "foo", "bar"]);
        assert_eq!(
            describe(&route(&a, &t, &t.health())),
            "-CROSSSLOT Keys in request don't hash to the same slot"
        );
    }

    #[test]
    fn integers_parse_as_redis() {
        assert_eq!(parse_i64(b"12"), Some(12));
        assert_eq!(parse_i64(b"-3"), Some(-3));
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"012"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"1x"), None);
    }
}
