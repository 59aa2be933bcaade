//! CONFIG GET / SET / RESETSTAT / REWRITE, over one table of the parameters a node answers.
//!
//! As Redis 7.0's config.c: CONFIG GET takes several names or glob patterns (case-insensitive;
//! an exact name is echoed as given, a pattern's matches by their own names; each parameter
//! once); CONFIG SET takes several pairs, checks every name first (the first unknown, immutable
//! or repeated one is the error), then every value, and only then applies them all, so a failed
//! CONFIG SET changes nothing. Settings the node cannot change while running (its port, the
//! cluster settings the control plane owns, ...) answer Redis's "can't set immutable config".

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::parse::{err, ERR_SYNTAX};
use super::{subcommand_arity, unknown_subcommand, Ctx};
use crate::aof::FsyncPolicy;
use crate::config::parse_memory;
use crate::evict::Policy;
use crate::keyspace::glob;
use crate::state::NodeState;

/// Checks a value (`apply` false) or applies a checked one (`apply` true); the error is the
/// part of Redis's message after the dash.
type Setter = fn(&NodeState, &[u8], bool) -> Result<(), String>;

/// One parameter: its name, how to read it, and how to set it (`None`: immutable).
struct Param {
    name: &'static str,
    get: fn(&NodeState) -> String,
    set: Option<Setter>,
}

const INT_MAX: i64 = i32::MAX as i64;

/// What CONFIG knows, in the order CONFIG GET * lists them.
const PARAMS: &[Param] = &[
    Param {
        name: "save",
        get: |_| String::new(),
        set: None,
    },
    Param {
        name: "appendonly",
        get: |s| yes_no(s.aof.is_some()),
        set: None,
    },
    Param {
        name: "appendfsync",
        get: |s| fsync_name(s.config.appendfsync()).into(),
        set: Some(set_appendfsync),
    },
    Param {
        name: "auto-aof-rewrite-percentage",
        get: |s| s.config.auto_rewrite().percentage.to_string(),
        set: Some(|s, v, apply| {
            let n = int_in(v, 0, INT_MAX)? as u32;
            if apply {
                s.config.set_auto_rewrite_percentage(n);
            }
            Ok(())
        }),
    },
    Param {
        name: "auto-aof-rewrite-min-size",
        get: |s| s.config.auto_rewrite().min_size.to_string(),
        set: Some(|s, v, apply| {
            let n = memory_in(v, i64::MAX as u64)?;
            if apply {
                s.config.set_auto_rewrite_min_size(n);
            }
            Ok(())
        }),
    },
    Param {
        name: "port",
        get: |s| my_port(s).to_string(),
        set: None,
    },
    Param {
        name: "databases",
        get: |_| "1".into(),
        set: None,
    },
    Param {
        name: "cluster-enabled",
        get: |_| "yes".into(),
        set: None,
    },
    Param {
        name: "cluster-node-timeout",
        get: |s| s.cluster.topology().settings().node_timeout_ms.to_string(),
        set: None,
    },
    Param {
        name: "cluster-require-full-coverage",
        get: |s| yes_no(s.cluster.topology().settings().require_full_coverage),
        set: None,
    },
    Param {
        name: "cluster-allow-reads-when-down",
        get: |s| yes_no(s.cluster.topology().settings().allow_reads_when_down),
        set: None,
    },
    Param {
        name: "maxmemory",
        get: |s| s.config.maxmemory().to_string(),
        set: Some(set_maxmemory),
    },
    Param {
        name: "maxmemory-policy",
        get: |s| s.config.policy().name().into(),
        set: Some(|s, v, apply| {
            let policy = Policy::parse(v).ok_or_else(|| one_of(&Policy::names()))?;
            if apply {
                s.config.set_policy(policy);
            }
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-samples",
        get: |s| s.config.samples().to_string(),
        set: Some(|s, v, apply| {
            let n = int_in(v, 1, INT_MAX)? as u32;
            if apply {
                s.config.set_samples(n);
            }
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-eviction-tenacity",
        get: |s| s.config.tenacity().to_string(),
        set: Some(|s, v, apply| {
            let n = int_in(v, 0, 100)? as u32;
            if apply {
                s.config.set_tenacity(n);
            }
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-clients",
        get: |_| "0".into(),
        set: None,
    },
    Param {
        name: "lfu-log-factor",
        get: |s| s.config.lfu_log_factor().to_string(),
        set: Some(|s, v, apply| {
            let n = int_in(v, 0, INT_MAX)? as u32;
            if apply {
                s.config.set_lfu_log_factor(n);
            }
            Ok(())
        }),
    },
    Param {
        name: "lfu-decay-time",
        get: |s| s.config.lfu_decay_time().to_string(),
        set: Some(|s, v, apply| {
            let n = int_in(v, 0, INT_MAX)? as u32;
            if apply {
                s.config.set_lfu_decay_time(n);
            }
            Ok(())
        }),
    },
    Param {
        name: "hll-sparse-max-bytes",
        get: |s| s.config.hll_sparse_max_bytes().to_string(),
        set: Some(|s, v, apply| {
            // Redis's size_t config bounded by LONG_MAX, read as a memory value.
            let n = memory_in(v, i64::MAX as u64)?;
            if apply {
                s.config.set_hll_sparse_max_bytes(n);
            }
            Ok(())
        }),
    },
    Param {
        name: "maxclients",
        get: |_| "10000".into(),
        set: None,
    },
    Param {
        name: "timeout",
        get: |_| "0".into(),
        set: None,
    },
    Param {
        name: "tcp-keepalive",
        get: |_| "300".into(),
        set: None,
    },
    Param {
        name: "hz",
        get: |_| "10".into(),
        set: None,
    },
    Param {
        name: "proto-max-bulk-len",
        get: |_| "536870912".into(),
        set: None,
    },
    Param {
        name: "client-query-buffer-limit",
        get: |_| "1073741824".into(),
        set: None,
    },
];

/// CONFIG subcommand ...; the table has checked the subcommand's arity.
pub fn config(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "get" if args.len() >= 3 => get(ctx.state, &args[2..]),
        "set" if args.len() >= 4 => set(ctx.state, args),
        "resetstat" if args.len() == 2 => {
            ctx.stats().reset();
            ctx.stats().commands.reset();
            ctx.state.evictor.reset_stats();
            Frame::ok()
        }
        // Honest: the node is configured by flags and environment, and has no file to rewrite.
        "rewrite" if args.len() == 2 => err("ERR The server is running without a config file"),
        "get" | "set" | "resetstat" | "rewrite" => subcommand_arity("config", sub),
        _ => unknown_subcommand("config", sub),
    }
}

/// The value of parameter `name` (for INFO and tests), if the node knows it.
pub fn value_of(state: &NodeState, name: &str) -> Option<String> {
    lookup(name.as_bytes()).map(|p| (p.get)(state))
}

fn lookup(name: &[u8]) -> Option<&'static Param> {
    PARAMS
        .iter()
        .find(|p| p.name.as_bytes().eq_ignore_ascii_case(name))
}

fn get(state: &NodeState, patterns: &[Bytes]) -> Frame {
    let mut matches: Vec<(Bytes, &'static Param)> = Vec::new();
    let taken = |matches: &Vec<(Bytes, &'static Param)>, p: &Param| {
        matches.iter().any(|(_, m)| std::ptr::eq(*m, p))
    };
    for pattern in patterns {
        let is_glob = pattern.iter().any(|b| matches!(b, b'[' | b'*' | b'?'));
        if !is_glob {
            if let Some(p) = lookup(pattern) {
                if !taken(&matches, p) {
                    matches.push((pattern.clone(), p));
                }
            }
            continue;
        }
        let lower = pattern.to_ascii_lowercase();
        for p in PARAMS {
            if !taken(&matches, p) && glob::matches(&lower, p.name.as_bytes()) {
                matches.push((Bytes::from_static(p.name.as_bytes()), p));
            }
        }
    }
    Frame::Map(
        matches
            .into_iter()
            .map(|(name, p)| (Frame::Bulk(name), Frame::Bulk(Bytes::from((p.get)(state)))))
            .collect(),
    )
}

fn set(state: &NodeState, args: &[Bytes]) -> Frame {
    if args.len() % 2 == 1 {
        return err(ERR_SYNTAX);
    }
    let mut chosen: Vec<(&Bytes, &Bytes, Setter, &'static Param)> = Vec::new();
    let mut problem: Option<Frame> = None;
    for pair in args[2..].chunks_exact(2) {
        let (name, value) = (&pair[0], &pair[1]);
        let Some(param) = lookup(name) else {
            problem.get_or_insert_with(|| {
                Frame::error(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    String::from_utf8_lossy(name)
                ))
            });
            continue;
        };
        if problem.is_some() {
            continue;
        }
        let Some(setter) = param.set else {
            problem = Some(failed(name, "can't set immutable config"));
            continue;
        };
        if chosen.iter().any(|(_, _, _, p)| std::ptr::eq(*p, param)) {
            problem = Some(failed(name, "duplicate parameter"));
            continue;
        }
        chosen.push((name, value, setter, param));
    }
    if let Some(problem) = problem {
        return problem;
    }
    for (name, value, setter, _) in &chosen {
        if let Err(reason) = setter(state, value, false) {
            return failed(name, &reason);
        }
    }
    for (name, value, setter, _) in &chosen {
        if let Err(reason) = setter(state, value, true) {
            // Checked above: only a bug gets here.
            tracing::error!(parameter = %String::from_utf8_lossy(name), %reason, "CONFIG SET failed after its check passed");
            return failed(name, &reason);
        }
    }
    Frame::ok()
}

fn failed(name: &[u8], reason: &str) -> Frame {
    Frame::error(format!(
        "ERR CONFIG SET failed (possibly related to argument '{}') - {reason}",
        String::from_utf8_lossy(name)
    ))
}

fn set_maxmemory(state: &NodeState, value: &[u8], apply: bool) -> Result<(), String> {
    let bytes = memory_in(value, u64::MAX)?;
    if apply {
        state.config.set_maxmemory(bytes);
        let used = crate::evict::used_memory();
        if bytes > 0 && bytes < used {
            tracing::warn!(
                maxmemory = bytes,
                used_memory = used,
                "the new maxmemory value set via CONFIG SET is smaller than the current memory \
                 usage: keys will be evicted, or writes refused, according to the policy"
            );
        }
    }
    Ok(())
}

fn set_appendfsync(state: &NodeState, value: &[u8], apply: bool) -> Result<(), String> {
    let policy = [FsyncPolicy::Everysec, FsyncPolicy::Always, FsyncPolicy::No]
        .into_iter()
        .find(|p| fsync_name(*p).as_bytes().eq_ignore_ascii_case(value))
        .ok_or_else(|| one_of("everysec, always, no"))?;
    if apply {
        state.config.set_appendfsync(policy);
        if let Some(aof) = &state.aof {
            aof.set_policy(policy);
        }
    }
    Ok(())
}

fn one_of(names: &str) -> String {
    format!("argument(s) must be one of the following: {names}")
}

/// An integer as Redis's numeric configs read it (string2ll, then the range).
fn int_in(value: &[u8], min: i64, max: i64) -> Result<i64, String> {
    let n = super::keys::object::string_to_i64(value)
        .ok_or_else(|| "argument couldn't be parsed into an integer".to_string())?;
    if n < min || n > max {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    Ok(n)
}

/// A size as Redis's memory configs read it (memtoull: digits and an optional unit, nothing
/// else), at most `max`.
fn memory_in(value: &[u8], max: u64) -> Result<u64, String> {
    let not_memory = || "argument must be a memory value".to_string();
    // memtoull reads no digits as 0.
    if value.is_empty() {
        return Ok(0);
    }
    let text = std::str::from_utf8(value).map_err(|_| not_memory())?;
    if text.trim() != text || !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(not_memory());
    }
    let n = parse_memory(text).map_err(|_| not_memory())?;
    if n > max {
        return Err(format!("argument must be between 0 and {max} inclusive"));
    }
    Ok(n)
}

fn fsync_name(policy: FsyncPolicy) -> &'static str {
    match policy {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Everysec => "everysec",
        FsyncPolicy::No => "no",
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn my_port(state: &NodeState) -> u16 {
    let topology = state.cluster.topology();
    topology.node(state.cluster.myself()).map_or(0, |n| n.port)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[("config", |ctx, _, args| config(ctx, args))];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn set_checks_every_name_then_every_value_and_applies_all_or_nothing() {
        let s = state();
        assert_eq!(
            run(&s, "CONFIG SET maxmemory 10mb maxmemory-policy allkeys-lru"),
            "+OK\r\n"
        );
        assert_eq!(
            run(&s, "CONFIG GET maxmemory"),
            "*2\r\n$9\r\nmaxmemory\r\n$8\r\n10485760\r\n"
        );
        // A bad value later in the command leaves the earlier, good one unapplied.
        assert_eq!(
            run(&s, "CONFIG SET maxmemory 1gb maxmemory-samples 0"),
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory-samples') - \
             argument must be between 1 and 2147483647 inclusive\r\n"
        );
        assert_eq!(s.config.maxmemory(), 10 * 1024 * 1024);
        assert_eq!(
            run(&s, "CONFIG SET port 1 nosuch 2"),
            "-ERR CONFIG SET failed (possibly related to argument 'port') - can't set \
             immutable config\r\n"
        );
        assert_eq!(
            run(&s, "CONFIG SET nosuch 2 port 1"),
            "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n"
        );
        assert_eq!(run(&s, "CONFIG SET maxmemory 1 x"), "-ERR syntax error\r\n");
        assert_eq!(
            run(&s, "CONFIG SET maxmemory 1.5mb"),
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument \
             must be a memory value\r\n"
        );
    }

    #[test]
    fn get_matches_names_and_patterns_once_each() {
        let s = state();
        assert_eq!(
            run(&s, "CONFIG GET MAXMEMORY maxmemory"),
            "*2\r\n$9\r\nMAXMEMORY\r\n$1\r\n0\r\n"
        );
        let text = run(&s, "CONFIG GET lfu-* lfu-log-factor");
        assert_eq!(
            text,
            "*4\r\n$14\r\nlfu-log-factor\r\n$2\r\n10\r\n$14\r\nlfu-decay-time\r\n$1\r\n1\r\n"
        );
        assert_eq!(run(&s, "CONFIG GET nosuch"), "*0\r\n");
    }
}
