//! The harness of the failover stories (issue 14), shared by the stories on local processes
//! (`tests/process_failover.rs`) and in compose (`tests/compose_failover.rs`), so both measure and
//! check the same things:
//!
//! - `LostSlotsWriter`: one client of the proxy writing the failing shard's keys, each iteration
//!   `SET key n` (n grows across keys, so a key's values only grow) then `WAIT 1 WAIT_TIMEOUT`. It
//!   records every write as failed (an error or no reply: it may or may not have been applied),
//!   acknowledged (SET answered `+OK`) or confirmed (and WAIT answered >= 1: a replica has it);
//! - `shard::Writer` on the other shards' slots, where a failover must show no error at all;
//! - `Story` runs both around a `Fault`, measures the time to the first write to the lost slots,
//!   reads every key back through the proxy (`LostSlotsLog::losses`: what was lost, against the
//!   bound stated there), and prints one `Report` line;
//! - `assert_one_master_per_slot`: every node that is up names one and the same master for every
//!   slot, is `cluster_state:ok`, and the proxy holds the same epoch (it follows the topology);
//! - `wait_follows`: a node has come back as a replica of the given master with its link up (the
//!   shard is re-replicated), so the next fault starts from a healthy cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::endpoints::Endpoints;
use crate::resp::RespClient;
use crate::shard::{parse_cluster_nodes, Shard, Writer};
use crate::wait;

/// WAIT's timeout in the lost-slots writer. Short, because a master whose replica is gone (a
/// killed master's promoted replica, until the old master is back) answers only when it runs out,
/// and the writer should keep writing meanwhile; long enough that a healthy replica answers in time
/// on a busy machine. A WAIT that runs out leaves its write acknowledged but not confirmed.
pub const WAIT_TIMEOUT: Duration = Duration::from_millis(200);

/// How long the writers' clients wait for one reply: longer than the proxy's backend timeout
/// (5 s), so a reply that is merely slow is not taken for a lost connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// After a failed write, the writer pauses this long: failures come back at once while the slots
/// have no master, and a busy loop would starve the 2-core machine the services run on. It also
/// bounds how late the first write after a failover can be noticed.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

/// When a fault began and when it was in place (the command that makes it returned: a SIGKILL or
/// SIGSTOP delivered, a container cut off, a manual failover done). A write sent after `in_place`
/// cannot reach the faulty master any more.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub started: Instant,
    pub in_place: Instant,
}

impl Fault {
    /// Runs `inject` and notes when it began and when it returned.
    pub fn inject(inject: impl FnOnce()) -> Fault {
        let started = Instant::now();
        inject();
        Fault {
            started,
            in_place: Instant::now(),
        }
    }
}

/// What became of one SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An error reply, or no reply (the text says which): the write may or may not have been
    /// applied.
    Failed(String),
    /// SET answered `+OK`; WAIT did not confirm it (`wait` is its reply, or why there was none).
    Acked { wait: String },
    /// SET answered `+OK` and the WAIT after it answered >= 1.
    Confirmed,
}

/// One SET of the lost-slots writer.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// Index in the writer's keys.
    pub key: usize,
    pub value: u64,
    /// When the SET was sent, and when its reply came (or the client gave up).
    pub sent: Instant,
    pub done: Instant,
    pub outcome: Outcome,
}

impl WriteRecord {
    pub fn acked(&self) -> bool {
        !matches!(self.outcome, Outcome::Failed(_))
    }
}

/// A proxy client that reconnects after a lost connection (the proxy is not the fault, but a
/// reply that never comes must not end the story).
struct Client {
    port: u16,
    connection: Option<RespClient>,
}

impl Client {
    fn call(&mut self, args: &[&str]) -> Result<String, String> {
        if self.connection.is_none() {
            let mut client = RespClient::connect(self.port).map_err(|e| format!("connect: {e}"))?;
            client.set_read_timeout(REPLY_TIMEOUT);
            self.connection = Some(client);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = connection
            .send(&args)
            .map_err(|e| format!("send: {e}"))
            .and_then(|()| {
                connection
                    .read_reply()
                    .map_err(|e| format!("no reply: {e}"))
            });
        match reply {
            Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(None) => {
                self.connection = None;
                Err("connection closed".into())
            }
            Err(e) => {
                self.connection = None;
                Err(e)
            }
        }
    }
}

impl Client {
    /// A client of the node on `port`, logged in with the node secret; an error (not a panic)
    /// while the node is down, restarting or cut off, for probes that wait for it.
    fn node(port: u16, secret: &str) -> Result<Client, String> {
        let mut client = Client {
            port,
            connection: None,
        };
        match client.call(&["AUTH", secret])? {
            ok if ok == "+OK\r\n" => Ok(client),
            other => Err(format!("{port}: AUTH answers {other:?}")),
        }
    }

    /// The text of a bulk string reply to `args`.
    fn bulk(&mut self, args: &[&str]) -> Result<String, String> {
        let reply = self.call(args)?;
        let (header, rest) = reply.split_once("\r\n").unwrap_or_default();
        header
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|len| rest.get(..len))
            .map(str::to_string)
            .ok_or_else(|| format!("{}: {args:?} answers {reply:?}", self.port))
    }

    /// `field` of CLUSTER INFO.
    fn info_cluster(&mut self, field: &str) -> Result<Option<String>, String> {
        Ok(self.bulk(&["CLUSTER", "INFO"])?.lines().find_map(|l| {
            l.trim_end()
                .strip_prefix(&format!("{field}:"))
                .map(str::to_string)
        }))
    }

    /// `field` of `INFO section`.
    fn info(&mut self, section: &str, field: &str) -> Result<Option<String>, String> {
        Ok(self.bulk(&["INFO", section])?.lines().find_map(|l| {
            l.trim_end()
                .strip_prefix(&format!("{field}:"))
                .map(str::to_string)
        }))
    }
}

/// Writes the failing shard's keys through the proxy until stopped, each SET followed by WAIT,
/// recording every write (see the module's doc).
pub struct LostSlotsWriter {
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<WriteRecord>>>,
    handle: thread::JoinHandle<()>,
}

impl LostSlotsWriter {
    /// Writes fresh keys `{KEY}:w<n>` for each of `keys`, n unique in this process: the hash tag
    /// keeps KEY's slot, and values an earlier story left on KEY cannot pass for this writer's.
    pub fn start(proxy_port: u16, keys: Vec<String>) -> LostSlotsWriter {
        assert!(!keys.is_empty(), "a writer needs keys");
        static WRITERS: AtomicU64 = AtomicU64::new(0);
        let writer = WRITERS.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<String> = keys
            .iter()
            .map(|key| format!("{{{key}}}:w{writer}"))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (stop2, records2, keys2) = (stop.clone(), records.clone(), keys.clone());
        let wait_ms = WAIT_TIMEOUT.as_millis().to_string();
        let handle = thread::spawn(move || {
            let mut client = Client {
                port: proxy_port,
                connection: None,
            };
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                let key = (n as usize) % keys2.len();
                let sent = Instant::now();
                let set = client.call(&["SET", &keys2[key], &n.to_string()]);
                let done = Instant::now();
                let outcome = match set {
                    Ok(reply) if reply == "+OK\r\n" => {
                        match client.call(&["WAIT", "1", &wait_ms]) {
                            Ok(reply)
                                if reply
                                    .strip_prefix(':')
                                    .and_then(|r| r.trim_end().parse::<u64>().ok())
                                    .is_some_and(|replicas| replicas >= 1) =>
                            {
                                Outcome::Confirmed
                            }
                            Ok(reply) => Outcome::Acked {
                                wait: reply.trim_end().to_string(),
                            },
                            Err(e) => Outcome::Acked { wait: e },
                        }
                    }
                    Ok(reply) => Outcome::Failed(reply.trim_end().to_string()),
                    Err(e) => Outcome::Failed(e),
                };
                let failed = matches!(outcome, Outcome::Failed(_));
                records2.lock().expect("records").push(WriteRecord {
                    key,
                    value: n,
                    sent,
                    done,
                    outcome,
                });
                if failed {
                    thread::sleep(RETRY_PAUSE);
                }
            }
        });
        LostSlotsWriter {
            keys,
            stop,
            records,
            handle,
        }
    }

    /// How many writes sent at or after `since` match `which`.
    pub fn count_since(&self, since: Instant, which: impl Fn(&WriteRecord) -> bool) -> usize {
        self.records
            .lock()
            .expect("records")
            .iter()
            .filter(|r| r.sent >= since && which(r))
            .count()
    }

    /// When the first write sent once `fault` was in place was acknowledged.
    pub fn resumed(&self, fault: &Fault) -> Option<Instant> {
        self.records
            .lock()
            .expect("records")
            .iter()
            .find(|r| r.sent >= fault.in_place && r.acked())
            .map(|r| r.done)
    }

    /// Stops and hands over what was written.
    pub fn finish(self) -> LostSlotsLog {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("lost-slots writer thread");
        let writes = std::mem::take(&mut *self.records.lock().expect("records"));
        LostSlotsLog {
            keys: self.keys,
            writes,
        }
    }
}

/// Everything a `LostSlotsWriter` wrote.
pub struct LostSlotsLog {
    pub keys: Vec<String>,
    pub writes: Vec<WriteRecord>,
}

/// What a lost-slots writer's keys show once read back.
#[derive(Debug, Clone, Default)]
pub struct Losses {
    /// Writes sent, acknowledged, confirmed; SETs that failed.
    pub sent: usize,
    pub acked: usize,
    pub confirmed: usize,
    pub failed: usize,
    /// Distinct failure texts (SET) and unconfirming WAIT replies, with their counts.
    pub failures: BTreeMap<String, usize>,
    pub unconfirmed: BTreeMap<String, usize>,
    /// Confirmed writes lost (asserted 0 by `losses`).
    pub confirmed_lost: usize,
    /// Acknowledged, unconfirmed writes lost, and how many were at risk (the bound).
    pub unconfirmed_lost: usize,
    pub bound: usize,
}

impl Losses {
    /// Every acknowledged write lost, confirmed or not.
    pub fn acked_lost(&self) -> usize {
        self.confirmed_lost + self.unconfirmed_lost
    }

    fn add(&mut self, other: &Losses) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.confirmed += other.confirmed;
        self.failed += other.failed;
        for (text, n) in &other.failures {
            *self.failures.entry(text.clone()).or_default() += n;
        }
        for (text, n) in &other.unconfirmed {
            *self.unconfirmed.entry(text.clone()).or_default() += n;
        }
        self.confirmed_lost += other.confirmed_lost;
        self.unconfirmed_lost += other.unconfirmed_lost;
        self.bound += other.bound;
    }
}

impl LostSlotsLog {
    /// Reads every key back through the proxy and counts what was lost. A key's value only grows,
    /// so a write is lost exactly when the key now holds an older value.
    ///
    /// Asserted here:
    /// - each key holds a value that was written to it (or nothing, if no write took);
    /// - no confirmed write is lost: a replica had it, and the replica promoted is the one with
    ///   the highest offset;
    /// - the bound for acknowledged writes WAIT did not confirm: such a write may be lost only if
    ///   it was *at risk*, that is sent before the fault was in place and newer than the last write
    ///   confirmed before the fault. A WAIT that answered >= 1 covers every earlier write of the
    ///   connection to that master, since replication is one ordered stream; a write sent once the
    ///   fault is in place cannot reach the faulty master. `bound` counts the writes at risk:
    ///   those in flight, or whose WAIT was cut short, when the fault struck.
    pub fn losses(&self, proxy_port: u16, fault: &Fault) -> Losses {
        let mut proxy = RespClient::connect(proxy_port).expect("proxy");
        let stored: Vec<u64> = self
            .keys
            .iter()
            .map(|key| {
                let reply = proxy.call_str(&["GET", key]);
                if reply == "$-1\r\n" {
                    return 0;
                }
                let text = crate::shard::bulk_text(&reply);
                text.parse()
                    .unwrap_or_else(|_| panic!("GET {key}: {reply:?} is no value of the writer"))
            })
            .collect();
        let last_confirmed_before = self
            .writes
            .iter()
            .filter(|w| w.sent < fault.in_place && w.outcome == Outcome::Confirmed)
            .map(|w| w.value)
            .max()
            .unwrap_or(0);
        let at_risk = |w: &WriteRecord| w.sent < fault.in_place && w.value > last_confirmed_before;
        let mut losses = Losses {
            sent: self.writes.len(),
            ..Losses::default()
        };
        let mut written: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); self.keys.len()];
        for w in &self.writes {
            written[w.key].insert(w.value);
            let lost = w.value > stored[w.key];
            match &w.outcome {
                Outcome::Failed(text) => {
                    losses.failed += 1;
                    *losses.failures.entry(text.clone()).or_default() += 1;
                }
                Outcome::Confirmed => {
                    losses.acked += 1;
                    losses.confirmed += 1;
                    assert!(
                        !lost,
                        "confirmed write {}={} lost: the key holds {}",
                        self.keys[w.key], w.value, stored[w.key]
                    );
                }
                Outcome::Acked { wait } => {
                    losses.acked += 1;
                    *losses.unconfirmed.entry(wait.clone()).or_default() += 1;
                    if at_risk(w) {
                        losses.bound += 1;
                    }
                    if lost {
                        losses.unconfirmed_lost += 1;
                        assert!(
                            at_risk(w),
                            "acknowledged write {}={} lost (the key holds {}) though it was not \
                             at risk: sent {:?} {} the fault was in place, the last write confirmed \
                             before the fault was {last_confirmed_before}",
                            self.keys[w.key],
                            w.value,
                            stored[w.key],
                            if w.sent < fault.in_place {
                                fault.in_place - w.sent
                            } else {
                                w.sent - fault.in_place
                            },
                            if w.sent < fault.in_place { "before" } else { "after" },
                        );
                    }
                }
            }
        }
        for ((key, value), written) in self.keys.iter().zip(&stored).zip(&written) {
            assert!(
                *value == 0 || written.contains(value),
                "{key} holds {value}, which was never written to it"
            );
        }
        losses
    }
}

/// One story's measured outcome, printed as one line.
#[derive(Debug, Clone)]
pub struct Report {
    pub story: String,
    /// From the fault's start to the first acknowledged write to the lost slots sent after the
    /// fault was in place (the slowest shard's, when several failed).
    pub resumed: Duration,
    pub other_errors: u64,
    pub losses: Losses,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.losses;
        write!(
            f,
            "{}: resumed after {} ms, other-slot errors {}, confirmed lost {}, unconfirmed lost {} \
             (bound {})",
            self.story,
            self.resumed.as_millis(),
            self.other_errors,
            l.confirmed_lost,
            l.unconfirmed_lost,
            l.bound
        )?;
        write!(
            f,
            " | lost slots: {} sent, {} acked, {} confirmed, {} failed",
            l.sent, l.acked, l.confirmed, l.failed
        )?;
        if !l.failures.is_empty() {
            write!(f, "; failures {:?}", l.failures)?;
        }
        if !l.unconfirmed.is_empty() {
            write!(f, "; unconfirming WAIT replies {:?}", l.unconfirmed)?;
        }
        Ok(())
    }
}

/// A failover story under way: a lost-slots writer per failing shard, a writer on the other
/// shards' slots, and the fault once injected.
pub struct Story {
    name: String,
    proxy_port: u16,
    lost: Vec<LostSlotsWriter>,
    others: Writer,
    fault: Option<Fault>,
}

impl Story {
    /// Starts the writers and returns once each lost-slots writer has had writes confirmed (so
    /// WAIT works through the proxy and the replicas follow) and the other writer is writing.
    pub fn start(
        name: &str,
        proxy_port: u16,
        lost_keys: Vec<Vec<String>>,
        other_keys: Vec<String>,
    ) -> Story {
        let started = Instant::now();
        let story = Story {
            name: name.to_string(),
            proxy_port,
            lost: lost_keys
                .into_iter()
                .map(|keys| LostSlotsWriter::start(proxy_port, keys))
                .collect(),
            others: Writer::start(proxy_port, other_keys),
            fault: None,
        };
        story.wait_confirmed_since(started, 20, "writes confirmed before the fault");
        story
    }

    /// Waits until every lost-slots writer has had `count` writes sent at or after `since`
    /// confirmed by a replica.
    pub fn wait_confirmed_since(&self, since: Instant, count: usize, what: &str) {
        wait::until(what, Duration::from_secs(20), || {
            self.lost
                .iter()
                .all(|w| w.count_since(since, |r| r.outcome == Outcome::Confirmed) >= count)
                .then_some(())
        });
    }

    /// Injects the fault (see `Fault::inject`).
    pub fn fault(&mut self, inject: impl FnOnce()) -> Fault {
        assert!(self.fault.is_none(), "one fault per story");
        let fault = Fault::inject(inject);
        self.fault = Some(fault);
        fault
    }

    /// Waits until every lost-slots writer has had a write acknowledged that was sent once the
    /// fault was in place; returns the longest time from the fault's start to such a write, and
    /// from the fault in place.
    pub fn wait_resumed(&self, limit: Duration) -> (Duration, Duration) {
        let fault = self.fault.expect("a fault injected");
        let resumed = wait::until("writes to the lost slots resume", limit, || {
            self.lost
                .iter()
                .map(|w| w.resumed(&fault))
                .collect::<Option<Vec<Instant>>>()
                .and_then(|all| all.into_iter().max())
        });
        (resumed - fault.started, resumed - fault.in_place)
    }

    /// Waits until every lost-slots writer has had `count` writes acknowledged since the fault
    /// was in place: the new masters keep taking writes.
    pub fn wait_acked_after_fault(&self, count: usize) {
        let fault = self.fault.expect("a fault injected");
        wait::until(
            "more writes to the lost slots",
            Duration::from_secs(20),
            || {
                self.lost
                    .iter()
                    .all(|w| w.count_since(fault.in_place, WriteRecord::acked) >= count)
                    .then_some(())
            },
        );
    }

    /// Stops the writers, reads everything back and checks it (the other slots: no error, every
    /// acknowledged value present; the lost slots: `LostSlotsLog::losses`), and prints the report.
    pub fn finish(self) -> Report {
        let fault = self.fault.expect("a fault injected");
        let (other_errors, other_acked) = self.others.finish();
        let logs: Vec<LostSlotsLog> = self.lost.into_iter().map(LostSlotsWriter::finish).collect();
        let resumed = logs
            .iter()
            .map(|log| {
                log.writes
                    .iter()
                    .find(|w| w.sent >= fault.in_place && w.acked())
                    .map(|w| w.done - fault.started)
                    .expect("the lost slots resumed")
            })
            .max()
            .expect("a lost-slots writer");
        let mut losses = Losses::default();
        for log in &logs {
            losses.add(&log.losses(self.proxy_port, &fault));
        }
        let report = Report {
            story: self.name,
            resumed,
            other_errors,
            losses,
        };
        println!("{report}");
        assert_eq!(
            other_errors, 0,
            "the other shards' slots saw errors: {report}"
        );
        crate::shard::assert_acked_present(self.proxy_port, &other_acked);
        report
    }
}

impl Story {
    /// Once the fault is healed (the failed masters' processes run again and can reach the
    /// cluster): each failed shard's old master follows the replica promoted in its place, writes
    /// are confirmed by a replica again (the shard is re-replicated), then the writers stop and
    /// everything is checked (`finish`), and every node (`up`: all of them, after a heal) agrees
    /// on one master per slot, the promoted replica's where the old master's were (`before`).
    pub fn finish_healed(
        self,
        cluster: &Endpoints,
        failed: &[&Shard],
        before: &SlotMasters,
        up: &[usize],
        follow_limit: Duration,
    ) -> Report {
        for shard in failed {
            wait_follows(cluster, shard.master, &shard.replica_id, follow_limit);
        }
        self.wait_confirmed_since(Instant::now(), 3, "writes confirmed by the healed shard");
        let report = self.finish();
        let after = assert_one_master_per_slot(cluster, up);
        for shard in failed {
            assert_took_over(&after, before, &shard.master_id, &shard.replica_id);
        }
        report
    }
}

/// Slot ranges (inclusive) and the id of the master serving each, in slot order.
pub type SlotMasters = Vec<(u16, u16, String)>;

/// One node's view: its slot map, or why it does not hold one consistent map.
fn slot_view(cluster: &Endpoints, port: u16) -> Result<(String, SlotMasters), String> {
    let mut client = Client::node(port, &cluster.node_secret)?;
    if client.info_cluster("cluster_state")?.as_deref() != Some("ok") {
        return Err(format!("{port}: not cluster_state:ok"));
    }
    let epoch = client
        .info_cluster("cluster_current_epoch")?
        .unwrap_or_default();
    let lines = parse_cluster_nodes(&client.bulk(&["CLUSTER", "NODES"])?);
    let mut ranges: SlotMasters = Vec::new();
    for line in &lines {
        if line.slots.is_empty() {
            continue;
        }
        if !line.has_flag("master") || line.has_flag("fail") || line.has_flag("fail?") {
            return Err(format!(
                "{port}: slots on a node that is not a healthy master: {line:?}"
            ));
        }
        ranges.extend(line.slots.iter().map(|&(a, b)| (a, b, line.id.clone())));
    }
    ranges.sort();
    let mut merged: SlotMasters = Vec::new();
    let mut next = 0u32;
    for (a, b, id) in ranges {
        if u32::from(a) != next {
            return Err(format!("{port}: slot {next} has no single master"));
        }
        next = u32::from(b) + 1;
        match merged.last_mut() {
            Some(last) if last.2 == id => last.1 = b,
            _ => merged.push((a, b, id)),
        }
    }
    if next != 16384 {
        return Err(format!("{port}: slots from {next} have no master"));
    }
    let me = lines
        .iter()
        .find(|l| l.has_flag("myself"))
        .ok_or_else(|| format!("{port}: no myself line"))?;
    let serves = merged.iter().any(|(_, _, id)| *id == me.id);
    if serves != me.has_flag("master") {
        return Err(format!(
            "{port}: the node's own role ({:?}) disagrees with its slot map",
            me.flags
        ));
    }
    Ok((epoch, merged))
}

/// Waits until every node at `up` (indexes in `node_ports`) answers `cluster_state:ok` and names
/// one master per slot, the same everywhere, each master a node that serves as master in its own
/// view; and the proxy holds the same current epoch (its view follows the topology). Returns the
/// agreed map.
pub fn assert_one_master_per_slot(cluster: &Endpoints, up: &[usize]) -> SlotMasters {
    let mut last_problem = String::new();
    wait::until(
        "every node agrees on one master per slot",
        Duration::from_secs(30),
        || {
            let agreed = (|| {
                let views = up
                    .iter()
                    .map(|&i| slot_view(cluster, cluster.node_ports[i]))
                    .collect::<Result<Vec<_>, String>>()?;
                let (epoch, map) = views.first().cloned().ok_or("no node up")?;
                if let Some((e, m)) = views.iter().find(|v| v.0 != epoch || v.1 != map) {
                    return Err(format!(
                        "views differ: epoch {epoch} {map:?} and epoch {e} {m:?}"
                    ));
                }
                let proxy_epoch = cluster.info_field(cluster.proxy_port, "cluster_current_epoch");
                if proxy_epoch.as_deref() != Some(epoch.as_str()) {
                    return Err(format!(
                        "the proxy is at epoch {proxy_epoch:?}, the nodes at {epoch}"
                    ));
                }
                Ok(map)
            })();
            match agreed {
                Ok(map) => Some(map),
                Err(problem) => {
                    if problem != last_problem {
                        eprintln!("not yet agreed: {problem}");
                        last_problem = problem;
                    }
                    None
                }
            }
        },
    )
}

/// Asserts that `new` serves every slot of `before`'s ranges that `old_master` served.
pub fn assert_took_over(after: &SlotMasters, before: &SlotMasters, old_master: &str, new: &str) {
    for (a, b, _) in before.iter().filter(|(_, _, id)| id == old_master) {
        assert!(
            after.iter().any(|(x, y, id)| x <= a && b <= y && id == new),
            "slots {a}-{b} of {old_master} are not served by {new}: {after:?}"
        );
    }
}

/// Waits until the node at index `node` is a replica of `master_id` with its link up: a node
/// that was failed over came back and follows the new master.
pub fn wait_follows(cluster: &Endpoints, node: usize, master_id: &str, limit: Duration) {
    let port = cluster.node_ports[node];
    let probe = || -> Result<(bool, String), String> {
        let mut client = Client::node(port, &cluster.node_secret)?;
        let id = client.bulk(&["CLUSTER", "MYID"])?;
        let me = parse_cluster_nodes(&client.bulk(&["CLUSTER", "NODES"])?)
            .into_iter()
            .find(|l| l.id == id);
        let role = client.info("replication", "role")?;
        let link = client.info("replication", "master_link_status")?;
        let follows = me
            .as_ref()
            .is_some_and(|l| l.master_id.as_deref() == Some(master_id));
        let done = follows && role.as_deref() == Some("slave") && link.as_deref() == Some("up");
        Ok((done, format!("{me:?}, role {role:?}, link {link:?}")))
    };
    let mut last_seen = String::new();
    wait::until(
        &format!("node on {port} follows {master_id} with its link up"),
        limit,
        || {
            let (done, seen) = probe().unwrap_or_else(|e| (false, e));
            if seen != last_seen {
                eprintln!("node on {port}: {seen}");
                last_seen = seen;
            }
            done.then_some(())
        },
    );
}
