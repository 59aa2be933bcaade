//! Server commands: COMMAND INFO DBSIZE FLUSHALL FLUSHDB BGREWRITEAOF (CONFIG is in `config`), and what INFO reports that is
//! kept here: per-command counters (commandstats), the moving ops/sec rate and the memory peak.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tessera_proto::command::{self, CommandSpec, Server};
use tessera_proto::resp::Frame;
use tessera_proto::slot::SLOT_COUNT;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_SYNTAX};
use super::Ctx;
use crate::state::NodeState;
use tessera_proto::REDIS_VERSION;

/// COMMAND and its subcommands, over the commands a node serves only.
pub fn command(args: &[Bytes]) -> Frame {
    command::reply::command(Server::ShardNode, args)
}

/// BGREWRITEAOF: hands the request to the AOF's rewrite task (`aof::rewrite`).
pub fn bgrewriteaof(ctx: &Ctx<'_>) -> Frame {
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
    ctx.state.keyspace.watches().touch_existing(&guards);
    if ctx.propagate {
        ctx.state
            .replication
            .log
            .append(&[Bytes::from_static(b"FLUSHALL")]);
    }
    for guard in guards.iter_mut() {
        guard.clear();
    }
    Frame::ok()
}

/// Every section INFO knows, in the order Redis prints them.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "commandstats",
    "cluster",
    "keyspace",
];

/// What `INFO`, `INFO default` print: all but commandstats, as Redis.
fn is_default_section(section: &str) -> bool {
    section != "commandstats"
}

pub fn info(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let mut text = String::new();
    for section in SECTIONS {
        let chosen =
            all || (default && is_default_section(section)) || wanted.iter().any(|w| w == section);
        if !chosen {
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
                (
                    "blocked_clients",
                    ctx.state.keyspace.blocking().blocked_clients().to_string(),
                ),
                ("tracking_clients", "0".into()),
            ],
        ),
        "memory" => ("Memory", memory_fields(ctx)),
        "persistence" => ("Persistence", persistence_fields(ctx)),
        "stats" => (
            "Stats",
            vec![
                (
                    "total_connections_received",
                    load(&stats.connections_received),
                ),
                ("total_commands_processed", load(&stats.commands_processed)),
                (
                    "instantaneous_ops_per_sec",
                    stats.commands.ops_per_sec().to_string(),
                ),
                ("rejected_connections", load(&stats.rejected_connections)),
                (
                    "expired_keys",
                    ctx.state.keyspace.expired_total().to_string(),
                ),
                (
                    "evicted_keys",
                    ctx.state.evictor.evicted_total().to_string(),
                ),
                ("keyspace_hits", load(&stats.keyspace_hits)),
                ("keyspace_misses", load(&stats.keyspace_misses)),
            ],
        ),
        "replication" => {
            let _ = write!(out, "# Replication\r\n");
            for (key, value) in crate::replication::report::info_fields(&ctx.state.replication) {
                let _ = write!(out, "{key}:{value}\r\n");
            }
            return;
        }
        "commandstats" => {
            let _ = write!(out, "# Commandstats\r\n");
            stats.commands.render(out);
            return;
        }
        "cluster" => ("Cluster", vec![("cluster_enabled", "1".into())]),
        "keyspace" => {
            let keys = ctx.state.keyspace.len();
            let mut fields = Vec::new();
            if keys > 0 {
                let expires = ctx.state.keyspace.volatile_len();
                let avg_ttl = avg_ttl_ms(ctx);
                fields.push((
                    "db0",
                    format!("keys={keys},expires={expires},avg_ttl={avg_ttl}"),
                ));
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

/// Most keys with a TTL `avg_ttl` looks at, and most entries it examines in all.
const AVG_TTL_SAMPLES: u64 = 1_000;
const AVG_TTL_EXAMINED: usize = 20_000;
/// Entries examined per slot, so the sample spreads over many slots rather than a few large ones.
const AVG_TTL_PER_SLOT: usize = 64;

/// The average remaining TTL in milliseconds of keys with one (0 when none). Redis keeps a moving
/// estimate from the keys its expiry cycle samples; we sample when asked instead: the first
/// entries of each slot holding keys with a TTL, bounded as above, so INFO stays cheap however
/// many keys the node holds (each slot's lock is held only while its few entries are read).
fn avg_ttl_ms(ctx: &Ctx<'_>) -> u64 {
    let now = ctx.now_ms;
    let (mut sum, mut found, mut examined) = (0u128, 0u64, 0usize);
    for slot in 0..SLOT_COUNT {
        if found >= AVG_TTL_SAMPLES || examined >= AVG_TTL_EXAMINED {
            break;
        }
        let guard = ctx.state.keyspace.lock(slot);
        if guard.volatile_len() == 0 {
            continue;
        }
        for (_, entry) in guard.iter().take(AVG_TTL_PER_SLOT) {
            examined += 1;
            if let Some(at) = entry.expires_at_ms.filter(|at| *at > now) {
                sum += u128::from(at - now);
                found += 1;
            }
        }
    }
    if found == 0 {
        0
    } else {
        (sum / u128::from(found)) as u64
    }
}

/// INFO persistence, with the fields Redis 7.0 prints. The node has no RDB: the rdb_* fields read
/// as on a Redis that never saved (its last save time is the start, as Redis sets it), and there
/// is no fork, so no copy-on-write figures. AOF writes go through a writer thread, so
/// aof_buffer_length is what was appended but not yet written.
fn persistence_fields(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let started_unix = (ctx.now_ms / 1000).saturating_sub(ctx.stats().started.elapsed().as_secs());
    let aof = ctx.state.aof.as_deref();
    let status = aof.map(|a| a.rewrite_status());
    let progress = aof.map(|a| a.progress());
    let ok_err = |ok: bool| if ok { "ok" } else { "err" }.to_string();
    let secs_or_unknown = |secs: Option<u64>| secs.map_or("-1".to_string(), |s| s.to_string());
    let mut fields = vec![
        ("loading", "0".to_string()),
        ("async_loading", "0".into()),
        ("current_cow_peak", "0".into()),
        ("current_cow_size", "0".into()),
        ("current_cow_size_age", "0".into()),
        ("current_fork_perc", "0.00".into()),
        ("current_save_keys_processed", "0".into()),
        ("current_save_keys_total", "0".into()),
        ("rdb_changes_since_last_save", "0".into()),
        ("rdb_bgsave_in_progress", "0".into()),
        ("rdb_last_save_time", started_unix.to_string()),
        ("rdb_last_bgsave_status", "ok".into()),
        ("rdb_last_bgsave_time_sec", "-1".into()),
        ("rdb_current_bgsave_time_sec", "-1".into()),
        ("rdb_saves", "0".into()),
        ("rdb_last_cow_size", "0".into()),
        ("rdb_last_load_keys_expired", "0".into()),
        ("rdb_last_load_keys_loaded", "0".into()),
        ("aof_enabled", u8::from(aof.is_some()).to_string()),
        (
            "aof_rewrite_in_progress",
            u8::from(status.as_ref().is_some_and(|s| s.in_progress)).to_string(),
        ),
        (
            "aof_rewrite_scheduled",
            u8::from(status.as_ref().is_some_and(|s| s.scheduled)).to_string(),
        ),
        (
            "aof_last_rewrite_time_sec",
            secs_or_unknown(status.as_ref().and_then(|s| s.last_duration_secs)),
        ),
        (
            "aof_current_rewrite_time_sec",
            secs_or_unknown(
                status
                    .as_ref()
                    .and_then(|s| s.started_at)
                    .map(|at| at.elapsed().as_secs()),
            ),
        ),
        (
            "aof_last_bgrewrite_status",
            ok_err(status.as_ref().is_none_or(|s| s.last_ok)),
        ),
        (
            "aof_rewrites",
            status.as_ref().map_or(0, |s| s.completed).to_string(),
        ),
        (
            "aof_rewrites_consecutive_failures",
            status
                .as_ref()
                .map_or(0, |s| s.consecutive_failures)
                .to_string(),
        ),
        (
            "aof_last_write_status",
            ok_err(progress.as_ref().is_none_or(|p| p.error.is_none())),
        ),
        ("aof_last_cow_size", "0".into()),
        ("module_fork_in_progress", "0".into()),
        ("module_fork_last_cow_size", "0".into()),
    ];
    if let (Some(aof), Some(status), Some(progress)) = (aof, status, progress) {
        fields.extend([
            ("aof_current_size", progress.file_size.to_string()),
            ("aof_base_size", status.base_size.to_string()),
            ("aof_pending_rewrite", "0".into()),
            (
                "aof_buffer_length",
                aof.offset().saturating_sub(progress.written).to_string(),
            ),
            ("aof_pending_bio_fsync", "0".into()),
            ("aof_delayed_fsync", "0".into()),
        ]);
    }
    fields
}

/// INFO memory. `used_memory` is the heap the process has allocated, as the counting allocator
/// sees it (`crate::allocator`), Redis's zmalloc figure: what maxmemory is checked against, and it
/// falls as keys are deleted, which the resident set (`used_memory_rss`) does not.
fn memory_fields(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let MemoryFigures { used, rss, peak } = memory_figures();
    let maxmemory = ctx.state.config.maxmemory();
    let system = total_system_memory();
    let peak_perc = if peak == 0 {
        0.0
    } else {
        used as f64 * 100.0 / peak as f64
    };
    let ratio = if used == 0 {
        0.0
    } else {
        rss as f64 / used as f64
    };
    vec![
        ("used_memory", used.to_string()),
        ("used_memory_human", human_bytes(used)),
        ("used_memory_rss", rss.to_string()),
        ("used_memory_rss_human", human_bytes(rss)),
        ("used_memory_peak", peak.to_string()),
        ("used_memory_peak_human", human_bytes(peak)),
        ("used_memory_peak_perc", format!("{peak_perc:.2}%")),
        ("total_system_memory", system.to_string()),
        ("total_system_memory_human", human_bytes(system)),
        ("maxmemory", maxmemory.to_string()),
        ("maxmemory_human", human_bytes(maxmemory)),
        (
            "maxmemory_policy",
            ctx.state.config.policy().name().to_string(),
        ),
        ("mem_fragmentation_ratio", format!("{ratio:.2}")),
        (
            "mem_fragmentation_bytes",
            rss.saturating_sub(used).to_string(),
        ),
        ("mem_allocator", "libc".into()),
    ]
}

/// The process's memory as INFO and MEMORY STATS report it, in bytes.
pub struct MemoryFigures {
    /// What we count as used: the heap allocated (see `memory_fields`).
    pub used: u64,
    pub rss: u64,
    /// The largest `used` seen by INFO, MEMORY STATS or the periodic `cron` (per process).
    pub peak: u64,
}

/// The peak is per process, like the memory it measures.
static PEAK_MEMORY: AtomicU64 = AtomicU64::new(0);

pub fn memory_figures() -> MemoryFigures {
    let (used, peak) = sample_peak_memory();
    MemoryFigures {
        used,
        rss: resident_bytes(),
        peak,
    }
}

/// Memory in use now and the peak including it. Cheap (no system call): the cron samples it
/// every 100 ms, and only INFO and MEMORY STATS read the resident set size from /proc.
fn sample_peak_memory() -> (u64, u64) {
    let used = crate::evict::used_memory();
    let peak = PEAK_MEMORY.fetch_max(used, Ordering::Relaxed).max(used);
    (used, peak)
}

/// Work INFO's figures need done periodically (every 100 ms, from the server's background task):
/// a sample of the command rate and of memory for the peak.
pub fn cron(state: &NodeState) {
    let processed = state.stats.commands_processed.load(Ordering::Relaxed);
    state.stats.commands.sample_ops(Instant::now(), processed);
    sample_peak_memory();
}

/// Resident set size from /proc (0 where unavailable).
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

/// The machine's memory from /proc/meminfo (0 where unavailable).
fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kb| kb * 1024)
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

/// Counters of one entry of the command table.
#[derive(Default)]
struct CommandCounters {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// Per-command counters for INFO commandstats: one set per entry of the shared command table,
/// subcommands included, found by the entry's position in the table, so the hot path adds to a
/// few atomics with no lock and no map lookup.
pub struct CommandStats {
    counters: Box<[CommandCounters]>,
    /// Only the periodic sampler and INFO touch it.
    ops: Mutex<OpsRate>,
}

impl Default for CommandStats {
    fn default() -> Self {
        let len = flat_len();
        CommandStats {
            counters: (0..len).map(|_| CommandCounters::default()).collect(),
            ops: Mutex::new(OpsRate::default()),
        }
    }
}

impl CommandStats {
    /// A command that ran for `elapsed`; `failed` when it answered an error.
    pub fn record(&self, spec: &'static CommandSpec, elapsed: Duration, failed: bool) {
        let Some(c) = index_of(spec).and_then(|i| self.counters.get(i)) else {
            return;
        };
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.usec
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if failed {
            c.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A command refused before it ran (CROSSSLOT, MOVED, CLUSTERDOWN).
    pub fn reject(&self, spec: &'static CommandSpec) {
        if let Some(c) = index_of(spec).and_then(|i| self.counters.get(i)) {
            c.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A command the table refused (wrong arity): counted as rejected on the command or
    /// subcommand it named, as Redis counts it; an unknown name or subcommand counts nowhere.
    pub fn reject_unresolved(&self, args: &[Bytes]) {
        let Some(spec) = args
            .first()
            .and_then(|name| command::lookup_served(Server::ShardNode, name))
        else {
            return;
        };
        let target = match args.get(1) {
            Some(sub) if !spec.subcommands.is_empty() => spec.subcommand(sub),
            _ => Some(spec),
        };
        if let Some(target) = target {
            self.reject(target);
        }
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for c in self.counters.iter() {
            for counter in [&c.calls, &c.usec, &c.rejected, &c.failed] {
                counter.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Records the total of commands processed at `now` for the moving rate.
    pub fn sample_ops(&self, now: Instant, processed: u64) {
        self.ops.lock().sample(now, processed);
    }

    /// Commands per second over the last 16 samples, as Redis's instantaneous_ops_per_sec.
    pub fn ops_per_sec(&self) -> u64 {
        self.ops.lock().rate()
    }

    /// The `cmdstat_<name>:...` lines of the commands that were called, rejected or failed.
    fn render(&self, out: &mut String) {
        let bases = bases();
        for (i, spec) in command::all().iter().enumerate() {
            let entries = std::iter::once(spec).chain(spec.subcommands.iter());
            for (j, entry) in entries.enumerate() {
                let Some(c) = self.counters.get(bases[i] + j) else {
                    continue;
                };
                let calls = c.calls.load(Ordering::Relaxed);
                let usec = c.usec.load(Ordering::Relaxed);
                let rejected = c.rejected.load(Ordering::Relaxed);
                let failed = c.failed.load(Ordering::Relaxed);
                if calls == 0 && rejected == 0 && failed == 0 {
                    continue;
                }
                let per_call = if calls == 0 {
                    0.0
                } else {
                    usec as f64 / calls as f64
                };
                let _ = write!(
                    out,
                    "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
                     rejected_calls={rejected},failed_calls={failed}\r\n",
                    entry.name
                );
            }
        }
    }
}

/// Redis's instantaneous metric: 16 samples of the rate between consecutive readings.
#[derive(Default)]
struct OpsRate {
    last: Option<(Instant, u64)>,
    samples: [u64; 16],
    next: usize,
}

impl OpsRate {
    fn sample(&mut self, now: Instant, count: u64) {
        if let Some((at, before)) = self.last {
            let ms = now.saturating_duration_since(at).as_millis() as u64;
            if ms == 0 {
                return;
            }
            self.samples[self.next] = count.saturating_sub(before) * 1000 / ms;
            self.next = (self.next + 1) % self.samples.len();
        }
        self.last = Some((now, count));
    }

    fn rate(&self) -> u64 {
        self.samples.iter().sum::<u64>() / self.samples.len() as u64
    }
}

/// Where each top-level entry of the command table starts in the flattened table (the entry,
/// then its subcommands).
fn bases() -> &'static [usize] {
    static BASES: OnceLock<Vec<usize>> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut next = 0;
        command::all()
            .iter()
            .map(|spec| {
                let base = next;
                next += 1 + spec.subcommands.len();
                base
            })
            .collect()
    })
}

fn flat_len() -> usize {
    command::all()
        .iter()
        .map(|spec| 1 + spec.subcommands.len())
        .sum()
}

/// The position of `spec` in `table`, by address: the table is static, so this is arithmetic.
fn position(table: &'static [CommandSpec], spec: &CommandSpec) -> Option<usize> {
    let offset = (spec as *const CommandSpec as usize).wrapping_sub(table.as_ptr() as usize);
    let i = offset / std::mem::size_of::<CommandSpec>();
    table.get(i).filter(|s| std::ptr::eq(*s, spec)).map(|_| i)
}

/// The index of `spec` in the flattened command table.
fn index_of(spec: &'static CommandSpec) -> Option<usize> {
    let all = command::all();
    // A byte search: `split_once` with a char pattern costs more, and this runs per command.
    match spec.name.bytes().position(|b| b == b'|') {
        None => position(all, spec).map(|i| bases()[i]),
        Some(bar) => {
            let parent = spec.name.get(..bar)?;
            let parent = command::lookup(parent.as_bytes())?;
            let i = position(all, parent)?;
            let j = position(parent.subcommands, spec)?;
            Some(bases()[i] + 1 + j)
        }
    }
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("command", |_, _, args| command(args)),
    ("info", |ctx, _, args| info(ctx, args)),
    ("dbsize", |ctx, _, _| dbsize(ctx)),
    ("flushall", |ctx, _, args| flush(ctx, args)),
    ("flushdb", |ctx, _, args| flush(ctx, args)),
    ("bgrewriteaof", |ctx, _, _| bgrewriteaof(ctx)),
];

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
        // avg_ttl is the real remaining time: 100 s less the few milliseconds since the SET.
        let expected =
            "# Cluster\r\ncluster_enabled:1\r\n\r\n# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=";
        assert!(text.contains(expected), "{text}");
        let ttl: u64 = text
            .rsplit_once("avg_ttl=")
            .and_then(|(_, rest)| rest.trim_end().parse().ok())
            .unwrap_or(0);
        assert!((99_000..=100_000).contains(&ttl), "{text}");
        assert!(run(&s, "INFO nosuchsection").starts_with("$0\r\n"));
    }
}
