//! Server commands: COMMAND CONFIG INFO DBSIZE FLUSHALL FLUSHDB.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tessera_proto::command::{self, CommandSpec};
use tessera_proto::resp::Frame;

use super::parse::{self, err, ERR_SYNTAX};
use super::{subcommand_arity, unknown_subcommand, Ctx};
use crate::keyspace::glob;
use crate::server::REDIS_VERSION;

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

pub fn command(args: &[Bytes]) -> Frame {
    if args.len() == 1 {
        return Frame::Array(command::all().iter().map(command::reply::info).collect());
    }
    let sub = &args[1];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "count" if args.len() == 2 => Frame::Integer(command::all().len() as i64),
        "info" => {
            if args.len() == 2 {
                return Frame::Array(command::all().iter().map(command::reply::info).collect());
            }
            Frame::Array(
                args[2..]
                    .iter()
                    .map(|name| command::lookup(name).map_or(Frame::Null, command::reply::info))
                    .collect(),
            )
        }
        "docs" => {
            let specs: Vec<&CommandSpec> = if args.len() == 2 {
                command::all().iter().collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|name| command::lookup(name))
                    .collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|s| (bulk(s.name), command::reply::docs(s)))
                    .collect(),
            )
        }
        "list" if args.len() == 2 => {
            let names = command::all()
                .iter()
                .flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
                .map(|s| bulk(s.name));
            Frame::Array(names.collect())
        }
        "getkeys" if args.len() >= 3 => {
            let Some(spec) = command::lookup(&args[2]) else {
                return err("ERR Invalid command specified");
            };
            let target = &args[2..];
            if !spec.arity_ok(target.len()) {
                return err("ERR Invalid number of arguments specified for command");
            }
            let keys = spec.key_indexes(target);
            if keys.is_empty() {
                return err("ERR The command has no key arguments");
            }
            Frame::Array(
                keys.into_iter()
                    .filter_map(|i| target.get(i).cloned())
                    .map(Frame::Bulk)
                    .collect(),
            )
        }
        "count" | "list" | "getkeys" => subcommand_arity("command", sub),
        _ => unknown_subcommand("command", sub),
    }
}

/// CONFIG GET's parameters, with the values this node runs with.
fn config_params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let topology = ctx.state.cluster.topology();
    let settings = topology.settings;
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let port = topology
        .node(ctx.state.cluster.myself())
        .map_or(0, |n| n.port);
    vec![
        ("save", String::new()),
        ("appendonly", yes_no(ctx.state.aof.is_some())),
        ("appendfsync", "everysec".into()),
        ("port", port.to_string()),
        ("databases", "1".into()),
        ("cluster-enabled", "yes".into()),
        ("cluster-node-timeout", settings.node_timeout_ms.to_string()),
        (
            "cluster-require-full-coverage",
            yes_no(settings.require_full_coverage),
        ),
        (
            "cluster-allow-reads-when-down",
            yes_no(settings.allow_reads_when_down),
        ),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxclients", "10000".into()),
        ("timeout", "0".into()),
        ("tcp-keepalive", "300".into()),
        ("hz", "10".into()),
        ("proto-max-bulk-len", "536870912".into()),
        ("client-query-buffer-limit", "1073741824".into()),
    ]
}

pub fn config(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "get" if args.len() >= 3 => {
            let params = config_params(ctx);
            let mut out = Vec::new();
            for (name, value) in &params {
                let hit = args[2..].iter().any(|p| {
                    let p = p.to_ascii_lowercase();
                    glob::matches(&p, name.as_bytes())
                });
                if hit {
                    out.push((bulk(name), bulk(value)));
                }
            }
            Frame::Map(out)
        }
        "set" if args.len() >= 4 => Frame::error(format!(
            "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
            String::from_utf8_lossy(&args[2])
        )),
        "resetstat" if args.len() == 2 => {
            ctx.stats().reset();
            Frame::ok()
        }
        "rewrite" if args.len() == 2 => err("ERR The server is running without a config file"),
        "get" | "set" | "resetstat" | "rewrite" => subcommand_arity("config", sub),
        _ => unknown_subcommand("config", sub),
    }
}

pub fn dbsize(ctx: &Ctx<'_>) -> Frame {
    Frame::Integer(ctx.state.keyspace.len() as i64)
}

/// FLUSHALL / FLUSHDB [ASYNC|SYNC]: every slot is locked while the flush is logged and applied, so
/// no write of another client lands between the log entry and the clearing.
pub fn flush(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 2
        || (args.len() == 2 && !parse::eq(&args[1], "sync") && !parse::eq(&args[1], "async"))
    {
        return err(ERR_SYNTAX);
    }
    let mut guards = ctx.state.keyspace.lock_all();
    if ctx.propagate {
        if let Some(aof) = &ctx.state.aof {
            aof.append(&[Bytes::from_static(b"FLUSHALL")]);
        }
    }
    for guard in guards.iter_mut() {
        guard.clear();
    }
    Frame::ok()
}

const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

pub fn info(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "all" || w == "everything" || w == "default");
    let mut text = String::new();
    for section in SECTIONS {
        if !all && !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        info_section(ctx, section, &mut text);
    }
    Frame::Verbatim(Bytes::from(text))
}

fn info_section(ctx: &Ctx<'_>, section: &str, out: &mut String) {
    let stats = ctx.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed).to_string();
    let (title, fields): (&str, Vec<(&str, String)>) = match section {
        "server" => {
            let uptime = stats.started.elapsed().as_secs();
            let topology = ctx.state.cluster.topology();
            let port = topology
                .node(ctx.state.cluster.myself())
                .map_or(0, |n| n.port);
            (
                "Server",
                vec![
                    ("redis_version", REDIS_VERSION.to_string()),
                    ("redis_git_sha1", "00000000".into()),
                    ("redis_git_dirty", "0".into()),
                    ("redis_mode", "cluster".into()),
                    ("tessera_version", env!("CARGO_PKG_VERSION").into()),
                    ("os", std::env::consts::OS.into()),
                    ("arch_bits", "64".into()),
                    ("multiplexing_api", "epoll".into()),
                    ("process_id", std::process::id().to_string()),
                    ("run_id", ctx.state.cluster.myself().to_string()),
                    ("tcp_port", port.to_string()),
                    ("uptime_in_seconds", uptime.to_string()),
                    ("uptime_in_days", (uptime / 86_400).to_string()),
                    ("hz", "10".into()),
                    ("configured_hz", "10".into()),
                ],
            )
        }
        "clients" => (
            "Clients",
            vec![
                ("connected_clients", load(&stats.connected_clients)),
                ("cluster_connections", "0".into()),
                ("maxclients", "10000".into()),
                ("blocked_clients", "0".into()),
                ("tracking_clients", "0".into()),
            ],
        ),
        "memory" => {
            let rss = resident_bytes();
            (
                "Memory",
                vec![
                    ("used_memory", rss.to_string()),
                    ("used_memory_human", human_bytes(rss)),
                    ("used_memory_rss", rss.to_string()),
                    ("maxmemory", "0".into()),
                    ("maxmemory_human", "0B".into()),
                    ("maxmemory_policy", "noeviction".into()),
                    ("mem_allocator", "libc".into()),
                ],
            )
        }
        "persistence" => (
            "Persistence",
            vec![
                ("loading", "0".into()),
                ("aof_enabled", u8::from(ctx.state.aof.is_some()).to_string()),
            ],
        ),
        "stats" => (
            "Stats",
            vec![
                (
                    "total_connections_received",
                    load(&stats.connections_received),
                ),
                ("total_commands_processed", load(&stats.commands_processed)),
                ("instantaneous_ops_per_sec", "0".into()),
                ("rejected_connections", load(&stats.rejected_connections)),
                (
                    "expired_keys",
                    ctx.state.keyspace.expired_total().to_string(),
                ),
                ("evicted_keys", "0".into()),
                ("keyspace_hits", load(&stats.keyspace_hits)),
                ("keyspace_misses", load(&stats.keyspace_misses)),
            ],
        ),
        "replication" => (
            "Replication",
            vec![
                ("role", "master".into()),
                ("connected_slaves", "0".into()),
                ("master_repl_offset", "0".into()),
            ],
        ),
        "cluster" => ("Cluster", vec![("cluster_enabled", "1".into())]),
        "keyspace" => {
            let keys = ctx.state.keyspace.len();
            let mut fields = Vec::new();
            if keys > 0 {
                let expires = ctx.state.keyspace.volatile_len();
                fields.push(("db0", format!("keys={keys},expires={expires},avg_ttl=0")));
            }
            ("Keyspace", fields)
        }
        _ => return,
    };
    let _ = write!(out, "# {title}\r\n");
    for (key, value) in fields {
        let _ = write!(out, "{key}:{value}\r\n");
    }
}

/// Resident set size from /proc (0 where unavailable): what INFO reports as used memory, since
/// we do not count allocations ourselves.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Redis's bytesToHuman.
fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{n}B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.2}K", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", n / (1024.0 * 1024.0))
    } else {
        format!("{:.2}G", n / (1024.0 * 1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn flush_dbsize_and_errors() {
        let s = state();
        assert_eq!(run(&s, "SET a 1"), "+OK\r\n");
        assert_eq!(run(&s, "DBSIZE"), ":1\r\n");
        assert_eq!(run(&s, "FLUSHALL NOW"), "-ERR syntax error\r\n");
        assert_eq!(run(&s, "FLUSHDB ASYNC"), "+OK\r\n");
        assert_eq!(run(&s, "DBSIZE"), ":0\r\n");
        assert_eq!(
            run(&s, "CONFIG GET maxmemory"),
            "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
        );
        assert_eq!(
            run(&s, "CONFIG NOPE"),
            "-ERR unknown subcommand 'NOPE'. Try CONFIG HELP.\r\n"
        );
        assert_eq!(
            run(&s, "CONFIG GET"),
            "-ERR wrong number of arguments for 'config|get' command\r\n"
        );
        assert!(run(&s, "COMMAND INFO get nosuch").ends_with("$-1\r\n"));
    }

    #[test]
    fn info_sections() {
        let s = state();
        let text = run(&s, "INFO keyspace");
        assert!(text.ends_with("# Keyspace\r\n\r\n"), "{text}");
        run(&s, "SET a 1 EX 100");
        let text = run(&s, "INFO keyspace cluster");
        assert!(text.contains("# Cluster\r\ncluster_enabled:1\r\n\r\n# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=0\r\n"), "{text}");
        assert!(run(&s, "INFO nosuchsection").starts_with("$0\r\n"));
    }
}
