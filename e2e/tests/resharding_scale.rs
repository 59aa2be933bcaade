//! Resharding at scale, in-process: 1,000,000 keys; a fourth master is added and the cluster
//! rebalanced onto it while a writer, a reader and full SCANs run through the proxy; then the
//! fourth master is emptied the same way and removed. Afterwards every acknowledged key is present
//! exactly once with its last acknowledged value, the proxy's clients saw no error, and every full
//! SCAN, those running across the moves among them, saw every key.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::reshard::topology;
use tessera_e2e::shard::{assert_acked_present, connect, Writer};
use tessera_proto::pb;
use tessera_proto::pb::control_plane_client::ControlPlaneClient;
use tessera_proto::topology::NodeId;
use tessera_testkit::rng::Rng;
use tessera_testkit::wait;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);
const KEYS: u32 = 1_000_000;
/// Keys the writer overwrites in turn (apart from the loaded ones, which never change).
const WRITER_KEYS: usize = 200;
/// Bound on one rebalance.
const MOVE_LIMIT: Duration = Duration::from_secs(300);

fn key(i: u32) -> String {
    format!("k:{i}")
}

fn value(i: u32) -> String {
    format!("v:{i}")
}

fn proxy_connection(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection())
        .expect("a connection to the proxy")
}

/// Loads the keys through the proxy, pipelined a thousand at a time.
fn load(port: u16) {
    let mut proxy = proxy_connection(port);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("SET").arg(key(i)).arg(value(i)).ignore();
        }
        pipe.query::<()>(&mut proxy).expect("load");
    }
}

/// A thread running until `stop`, then handing back what it saw.
struct Background<T> {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<T>,
}

impl<T: Send + 'static> Background<T> {
    fn start(work: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static) -> Background<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Background {
            stop,
            handle: thread::spawn(move || work(flag)),
        }
    }

    fn finish(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("background thread")
    }
}

/// Reads random loaded keys until stopped: how many, and every wrong answer.
fn reader(port: u16, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let mut proxy = proxy_connection(port);
    let mut rng = Rng::new(7);
    let (mut reads, mut wrong) = (0u64, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let i = (rng.next() % u64::from(KEYS)) as u32;
        let got: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg(key(i)).query(&mut proxy);
        reads += 1;
        match got {
            Ok(Some(v)) if v == value(i) => {}
            other => wrong.push(format!("GET {}: {other:?}", key(i))),
        }
    }
    (reads, wrong)
}

/// One whole SCAN through the proxy: when it ran, and how many distinct loaded keys it saw.
#[derive(Debug)]
struct ScanRun {
    started: Instant,
    ended: Instant,
    seen: usize,
}

/// Full scans, one after another, into `runs` until stopped (a scan cut short by the stop is not
/// counted); an error reply ends the thread with it.
fn scanner(port: u16, stop: Arc<AtomicBool>, runs: Arc<Mutex<Vec<ScanRun>>>) -> Result<(), String> {
    let mut proxy = proxy_connection(port);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut seen: HashSet<u32> = HashSet::with_capacity(KEYS as usize);
        let mut cursor = 0u64;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut proxy)
                .map_err(|e| format!("SCAN {cursor}: {e}"))?;
            seen.extend(
                keys.iter()
                    .filter_map(|k| k.strip_prefix("k:")?.parse::<u32>().ok()),
            );
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let run = ScanRun {
            started,
            ended: Instant::now(),
            seen: seen.len(),
        };
        runs.lock().unwrap_or_else(|p| p.into_inner()).push(run);
    }
    Ok(())
}

fn control_plane(
    runtime: &tokio::runtime::Runtime,
    url: &str,
) -> ControlPlaneClient<tonic::transport::Channel> {
    runtime
        .block_on(ControlPlaneClient::connect(url.to_string()))
        .expect("control plane")
}

/// Rebalances (Rebalance call) and waits until no slot is moving; the time it took.
fn rebalance(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    request: pb::RebalanceRequest,
) -> (Instant, Instant) {
    let started = Instant::now();
    let mut client = control_plane(runtime, url);
    let plan = runtime
        .block_on(client.rebalance(request))
        .expect("Rebalance")
        .into_inner();
    assert!(!plan.moves.is_empty(), "nothing to move");
    wait::until("every planned slot moved", MOVE_LIMIT, || {
        topology(runtime, url)
            .intent
            .migrations
            .is_empty()
            .then_some(())
    });
    let ended = Instant::now();
    eprintln!("moved {} slots in {:?}", plan.moves.len(), ended - started);
    (started, ended)
}

/// Keys held by the node on each of `ports`.
fn dbsizes(ports: &[u16], secret: &str) -> Vec<u64> {
    ports
        .iter()
        .map(|&port| {
            let reply = connect(port, secret).call_str(&["DBSIZE"]);
            reply
                .trim_start_matches(':')
                .trim_end()
                .parse()
                .expect("DBSIZE")
        })
        .collect()
}

#[test]
fn a_million_keys_rebalanced_onto_a_new_master_and_back_under_load() {
    let mut cluster = InProcessCluster::up(NODE_TIMEOUT);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = cluster.control_plane_url();
    let port = cluster.proxy_port;
    let loading = Instant::now();
    load(port);
    eprintln!("loaded {KEYS} keys in {:?}", loading.elapsed());

    let writer_keys: Vec<String> = (0..WRITER_KEYS).map(|i| format!("w:{i}")).collect();
    let writer = Writer::start(port, writer_keys);
    let reads = Background::start(move |stop| reader(port, stop));
    let runs: Arc<Mutex<Vec<ScanRun>>> = Arc::default();
    let scan_runs = runs.clone();
    let scans = Background::start(move |stop| scanner(port, stop, scan_runs));

    // A fourth master joins empty, then takes its share.
    let added = cluster.add_node().expect("a fourth node");
    let added_port = cluster.node_ports[added];
    let added_id = wait::until(
        "the fourth node registered",
        Duration::from_secs(20),
        || {
            topology(&runtime, &url)
                .nodes()
                .iter()
                .find(|n| n.port == added_port)
                .map(|n| n.id.clone())
        },
    );
    let grow = rebalance(
        &runtime,
        &url,
        pb::RebalanceRequest {
            weights: vec![],
            use_empty_masters: true,
            threshold: 2.0,
            dry_run: false,
        },
    );
    let spread = dbsizes(&cluster.node_ports, &cluster.node_secret);
    eprintln!("keys per master after growing: {spread:?}");
    assert!(
        spread[added] > u64::from(KEYS) / 5,
        "the new master holds {} keys",
        spread[added]
    );

    // Then it gives everything back and leaves.
    let shrink = rebalance(
        &runtime,
        &url,
        pb::RebalanceRequest {
            weights: vec![pb::NodeWeight {
                node_id: added_id.to_string(),
                weight: 0.0,
            }],
            use_empty_masters: false,
            threshold: 2.0,
            dry_run: false,
        },
    );
    let after = topology(&runtime, &url);
    let index = after.index_of(&added_id).expect("still a member");
    assert!(
        after.ranges_of(index).is_empty(),
        "the fourth master still serves slots"
    );

    // Let the scan that ran across the last move finish.
    wait::until(
        "a full SCAN ended after the last move",
        Duration::from_secs(120),
        || {
            let runs = runs.lock().unwrap_or_else(|p| p.into_inner());
            (scans.handle.is_finished() || runs.iter().any(|r| r.ended > shrink.1)).then_some(())
        },
    );
    scans.finish().expect("SCAN through the proxy");
    let runs = std::mem::take(&mut *runs.lock().unwrap_or_else(|p| p.into_inner()));
    let (reads, wrong) = reads.finish();
    let (errors, acked) = writer.finish();

    remove(&runtime, &url, &added_id);
    cluster.stop_node(added).expect("stop the removed node");

    assert_eq!(errors, 0, "the writer saw errors");
    assert!(
        wrong.is_empty(),
        "{} of {reads} reads wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(reads > 0);
    for run in &runs {
        assert_eq!(run.seen, KEYS as usize, "a full SCAN missed keys: {run:?}");
    }
    for (name, (start, end)) in [("growing", grow), ("shrinking", shrink)] {
        assert!(
            runs.iter().any(|r| r.started < end && r.ended > start),
            "no full SCAN ran across the {name} move: {runs:?}"
        );
    }
    eprintln!("{} full scans, {reads} reads", runs.len());

    // Exactly once: the three masters hold every key between them, and each reads back.
    let ports: Vec<u16> = cluster.node_ports[..3].to_vec();
    let total: u64 = dbsizes(&ports, &cluster.node_secret).iter().sum();
    assert_eq!(
        total,
        u64::from(KEYS) + WRITER_KEYS as u64,
        "keys not held exactly once"
    );
    assert_acked_present(port, &acked);
    let mut proxy = proxy_connection(port);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|&i| key(i)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut proxy)
            .expect("MGET");
        for (&i, got) in chunk.iter().zip(values) {
            assert_eq!(got, Some(value(i)), "{}", key(i));
        }
    }
}

fn remove(runtime: &tokio::runtime::Runtime, url: &str, id: &NodeId) {
    let mut client = control_plane(runtime, url);
    runtime
        .block_on(client.remove_node(pb::RemoveNodeRequest {
            node_id: id.to_string(),
        }))
        .expect("RemoveNode");
}
