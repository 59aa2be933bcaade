//! Through the proxy while slots move (in-process, a real MoveSlots): SCAN returns every key that
//! exists throughout, MULTI/EXEC on a moving slot is applied exactly once and never aborted by
//! the move, sharded pub/sub follows the slot, and no client ever sees MOVED, ASK or TRYAGAIN.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::moves::{tag_for, Mover};
use tessera_e2e::resp::RespClient;
use tessera_e2e::shard::connect;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_testkit::wait;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);
/// The slots moved (the first master's), each filled with `PER_SLOT` keys so the move takes a
/// while (it moves keys in batches).
const MOVED: Range<u16> = 100..116;
const PER_SLOT: usize = 2500;
/// Longest a move may take.
const MOVE_LIMIT: Duration = Duration::from_secs(120);

/// A cluster with `MOVED` filled, and a move of them ready to start.
struct Moving {
    cluster: InProcessCluster,
    mover: Mover,
    target_id: String,
    target_port: u16,
    source_port: u16,
    /// The keys of `MOVED`, each holding its own name.
    keys: Vec<String>,
}

impl Moving {
    fn up() -> Moving {
        let cluster = InProcessCluster::up(NODE_TIMEOUT);
        let mover = Mover::new(&cluster.control_plane_url());
        let (source, target) = mover.ends(MOVED.start);
        let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
        let mut keys = Vec::new();
        for slot in MOVED {
            let tag = tag_for(slot);
            let slot_keys: Vec<String> = (0..PER_SLOT).map(|i| format!("{tag}:{i}")).collect();
            for chunk in slot_keys.chunks(500) {
                let mut args = vec!["MSET"];
                args.extend(chunk.iter().flat_map(|k| [k.as_str(), k.as_str()]));
                assert_eq!(proxy.call_str(&args), "+OK\r\n");
            }
            keys.extend(slot_keys);
        }
        Moving {
            cluster,
            mover,
            target_id: target.id.to_string(),
            target_port: target.port,
            source_port: source.port,
            keys,
        }
    }

    fn start(&self) {
        self.mover.start(MOVED, &self.target_id);
    }

    fn moving(&self) -> bool {
        !self.mover.done(MOVED, &self.target_id)
    }

    fn wait_done(&self) {
        let started = Instant::now();
        self.mover.wait_done(MOVED, &self.target_id, MOVE_LIMIT);
        eprintln!(
            "moved {} keys of {} slots in {:?}",
            self.keys.len(),
            MOVED.len(),
            started.elapsed()
        );
    }

    /// Keys of `MOVED` the target holds now.
    fn on_target(&self) -> u64 {
        let mut node = connect(self.target_port, &self.cluster.node_secret);
        MOVED
            .map(|slot| {
                let reply = node.call_str(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
                reply[1..].trim_end().parse::<u64>().expect("a count")
            })
            .sum()
    }
}

/// `step` run over and over on its own proxy connection until stopped; each run answers
/// Ok(acknowledged) or Err(what the client saw).
struct Loop {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(u64, Vec<String>)>,
}

impl Loop {
    fn start(
        proxy_port: u16,
        mut step: impl FnMut(&mut RespClient) -> Result<bool, String> + Send + 'static,
    ) -> Loop {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = thread::spawn(move || {
            let mut proxy = RespClient::connect(proxy_port).expect("proxy");
            let (mut acked, mut errors) = (0, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                match step(&mut proxy) {
                    Ok(true) => acked += 1,
                    Ok(false) => {}
                    Err(error) => errors.push(error),
                }
            }
            (acked, errors)
        });
        Loop { stop, handle }
    }

    /// Stops; the acknowledged runs.
    fn finish(self, name: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (acked, errors) = self.handle.join().expect("loop thread");
        assert!(
            errors.is_empty(),
            "{name}: {} errors, first ones: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        eprintln!("{name}: {acked} acknowledged");
        acked
    }
}

/// The reply as a frame.
fn parse(reply: &[u8]) -> Frame {
    match frame::parse(reply, &FrameLimits::default()) {
        Ok(Some((frame, _))) => frame,
        other => panic!("not a reply: {other:?}"),
    }
}

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// One full SCAN through the proxy: every key returned.
fn full_scan(proxy: &mut RespClient) -> HashSet<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut cursor = b"0".to_vec();
    for _ in 0..100_000 {
        let reply = proxy.call(&[b"SCAN", &cursor, b"COUNT", b"200"]);
        let Frame::Array(mut items) = parse(&reply) else {
            panic!("SCAN answered {}", text(&reply));
        };
        let (Some(Frame::Array(keys)), Some(Frame::Bulk(next))) = (items.pop(), items.pop()) else {
            panic!("SCAN answered {}", text(&reply));
        };
        seen.extend(keys.into_iter().map(|k| match k {
            Frame::Bulk(k) => k.to_vec(),
            other => panic!("a key: {other:?}"),
        }));
        if &next[..] == b"0" {
            return seen;
        }
        cursor = next.to_vec();
    }
    panic!("SCAN never finished");
}

#[test]
fn scan_across_a_move_returns_every_key_present_throughout() {
    let moving = Moving::up();
    let mut proxy = RespClient::connect(moving.cluster.proxy_port).expect("proxy");
    // Keys elsewhere too, so the walk crosses every master.
    let others: Vec<String> = (0..3000).map(|i| format!("other:{i}")).collect();
    for chunk in others.chunks(500) {
        let mut args = vec!["MSET"];
        args.extend(chunk.iter().flat_map(|k| [k.as_str(), k.as_str()]));
        assert_eq!(proxy.call_str(&args), "+OK\r\n");
    }
    let all: Vec<&String> = moving.keys.iter().chain(&others).collect();
    let total = moving.keys.len() as u64;

    moving.start();
    let deadline = Instant::now() + MOVE_LIMIT;
    let (mut scans, mut overlapped) = (0, 0);
    loop {
        assert!(Instant::now() < deadline, "the move never finished");
        let was_moving = moving.moving();
        let before = moving.on_target();
        let seen = full_scan(&mut proxy);
        let after = moving.on_target();
        scans += 1;
        let missing: Vec<&&String> = all
            .iter()
            .filter(|k| !seen.contains(k.as_bytes()))
            .collect();
        assert!(
            missing.is_empty(),
            "scan {scans} (target held {before}..{after} of {total} moving keys) missed {} keys, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        // The scan began while the slots moved and keys moved while it ran.
        if was_moving && before < total && after > before {
            overlapped += 1;
        }
        if !was_moving {
            break;
        }
    }
    moving.wait_done();
    eprintln!("{scans} full scans, {overlapped} overlapped the move");
    assert!(
        overlapped > 0,
        "no scan overlapped the move ({scans} scans)"
    );
}

/// MULTI / INCR / RPUSH / EXEC on keys of the moving slots (and WATCHed ones): no EXEC fails,
/// and the counters equal the acknowledged EXECs.
#[test]
fn transactions_on_a_moving_slot_apply_once_and_are_not_aborted() {
    let moving = Moving::up();
    let port = moving.cluster.proxy_port;
    let tags: Vec<String> = MOVED.step_by(4).map(tag_for).collect();
    let loops: Vec<(String, Loop)> = tags
        .iter()
        .map(|tag| {
            let (counter, list) = (format!("{tag}:counter"), format!("{tag}:list"));
            let run = Loop::start(port, move |proxy| {
                let replies = [
                    proxy.call_str(&["MULTI"]),
                    proxy.call_str(&["INCR", &counter]),
                    proxy.call_str(&["RPUSH", &list, "x"]),
                ];
                if replies != ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"] {
                    let _ = proxy.call_str(&["DISCARD"]);
                    return Err(format!("queuing: {replies:?}"));
                }
                let exec = proxy.call(&[b"EXEC"]);
                match parse(&exec) {
                    Frame::Array(items) if items.len() == 2 => Ok(true),
                    _ => Err(format!("EXEC: {}", text(&exec))),
                }
            });
            (tag.clone(), run)
        })
        .collect();
    let watched = format!("{}:watched", tags[0]);
    let watched_key = watched.clone();
    let watching = Loop::start(port, move |proxy| {
        let watch = proxy.call_str(&["WATCH", &watched_key]);
        let multi = proxy.call_str(&["MULTI"]);
        let incr = proxy.call_str(&["INCR", &watched_key]);
        if [&watch[..], &multi, &incr] != ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n"] {
            let _ = proxy.call_str(&["DISCARD"]);
            let _ = proxy.call_str(&["UNWATCH"]);
            return Err(format!("watch/queue: {watch:?} {multi:?} {incr:?}"));
        }
        let exec = proxy.call(&[b"EXEC"]);
        match parse(&exec) {
            Frame::Array(items) if items.len() == 1 => Ok(true),
            // A failed watch (the key migrated under it), as Redis answers.
            Frame::NullArray | Frame::Null => Ok(false),
            _ => Err(format!("EXEC: {}", text(&exec))),
        }
    });
    thread::sleep(Duration::from_millis(100));
    moving.start();
    moving.wait_done();
    thread::sleep(Duration::from_millis(200));

    let mut proxy = RespClient::connect(port).expect("proxy");
    for (tag, run) in loops {
        let acked = run.finish(&format!("transactions on {tag}"));
        assert!(acked > 0);
        assert_eq!(
            proxy.call_str(&["GET", &format!("{tag}:counter")]),
            format!("${}\r\n{acked}\r\n", acked.to_string().len()),
            "{tag}: the counter is not the acknowledged EXECs"
        );
        assert_eq!(
            proxy.call_str(&["LLEN", &format!("{tag}:list")]),
            format!(":{acked}\r\n"),
            "{tag}: the list is not the acknowledged EXECs"
        );
    }
    let acked = watching.finish("watched transactions");
    let value = if acked == 0 {
        "$-1\r\n".to_string()
    } else {
        format!("${}\r\n{acked}\r\n", acked.to_string().len())
    };
    assert_eq!(proxy.call_str(&["GET", &watched]), value);
}

/// An SSUBSCRIBEd client of a moving slot's channel stays subscribed across the move and gets
/// what is published after it; plain commands over moving and other slots (GET, INCR, MGET,
/// MSET) never see MOVED, ASK or TRYAGAIN.
#[test]
fn sharded_pubsub_follows_the_slot_and_plain_commands_never_see_redirects() {
    let moving = Moving::up();
    let port = moving.cluster.proxy_port;
    let tag = tag_for(MOVED.start + 3);
    let channel = format!("{tag}:channel");
    let mut subscriber = RespClient::connect(port).expect("proxy");
    let confirm = subscriber.call_str(&["SSUBSCRIBE", &channel]);
    assert!(confirm.contains("ssubscribe"), "{confirm}");
    // A client of the source itself is told the channel left with the slot, as Redis 7.0 does.
    let mut direct = connect(moving.source_port, &moving.cluster.node_secret);
    assert_eq!(
        direct.call_str(&["SSUBSCRIBE", &channel]),
        format!(
            "*3\r\n$10\r\nssubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
            channel.len()
        )
    );

    // A moving key, and one elsewhere, in every multi-key command.
    let still = "still:key".to_string();
    let moved_key = moving.keys[PER_SLOT * 5 + 7].clone();
    let counter = format!("{}:n", tag_for(MOVED.start + 9));
    let (other_counter, counter_name) = ("still:n".to_string(), counter.clone());
    let plain = Loop::start(port, move |proxy| {
        let replies = [
            proxy.call_str(&["GET", &moved_key]),
            proxy.call_str(&["INCR", &counter_name]),
            proxy.call_str(&["INCR", &other_counter]),
            proxy.call_str(&["MSET", &moved_key, &moved_key, &still, "v"]),
            proxy.call_str(&["MGET", &moved_key, &still]),
        ];
        if let Some(bad) = replies.iter().find(|r| r.starts_with('-')) {
            return Err(bad.trim_end().to_string());
        }
        // Counted: the INCR of the moving slot.
        Ok(replies[1].starts_with(':'))
    });
    thread::sleep(Duration::from_millis(100));
    moving.start();
    moving.wait_done();
    let incrs = plain.finish("plain commands");
    let notice = direct.read_reply().expect("a notice").expect("open");
    assert_eq!(
        text(&notice),
        format!(
            "*3\r\n$12\r\nsunsubscribe\r\n${}\r\n{channel}\r\n:0\r\n",
            channel.len()
        )
    );
    let mut proxy = RespClient::connect(port).expect("proxy");
    assert_eq!(
        proxy.call_str(&["GET", &counter]),
        format!("${}\r\n{incrs}\r\n", incrs.to_string().len())
    );

    // Published through the proxy at the new owner: once the proxy has resubscribed there (the
    // publish reaches one subscriber), every message arrives, and nothing else does.
    let publish = |proxy: &mut RespClient, i: usize| {
        proxy.call_str(&["SPUBLISH", &channel, &format!("m{i}")])
    };
    let mut attempt = 1000;
    let first = wait::until(
        "the subscription moved with the slot",
        Duration::from_secs(10),
        || {
            attempt += 1;
            (publish(&mut proxy, attempt) == ":1\r\n").then_some(attempt)
        },
    );
    let mut delivered = vec![format!("m{first}")];
    for i in 0..20 {
        assert_eq!(publish(&mut proxy, i), ":1\r\n", "publish {i}");
        delivered.push(format!("m{i}"));
    }
    subscriber.set_read_timeout(Duration::from_secs(5));
    let mut got = Vec::new();
    while got.last() != delivered.last() {
        let reply = subscriber.read_reply().expect("a message").expect("open");
        let Frame::Array(items) = parse(&reply) else {
            panic!("the subscriber got {}", text(&reply));
        };
        match &items[..] {
            [Frame::Bulk(kind), Frame::Bulk(c), Frame::Bulk(message)]
                if &kind[..] == b"smessage" && c[..] == *channel.as_bytes() =>
            {
                got.push(String::from_utf8_lossy(message).into_owned());
            }
            _ => panic!("the subscriber got {}", text(&reply)),
        }
    }
    // Messages published before the resubscription (answered :0) never arrive; the rest do.
    assert!(
        delivered.iter().all(|m| got.contains(m)),
        "{got:?} / {delivered:?}"
    );
}
