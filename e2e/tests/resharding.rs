//! Online resharding, in-process: slots move from one master to another (MoveSlots) while a writer
//! runs through the proxy. Afterwards every key is where the topology says, with its last
//! acknowledged value, and the proxy's clients saw no error.

use std::thread;
use std::time::{Duration, Instant};

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::moves::Mover;
use tessera_e2e::reshard::{assert_loaded, cluster_check, load, node_id};
use tessera_e2e::resp::RespClient;
use tessera_e2e::shard::{assert_acked_present, connect, Writer};
use tessera_proto::slot::key_hash_slot;
use tessera_testkit::wait;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);
/// The slots moved: the first 100 of the first master.
const MOVED: std::ops::Range<u16> = 0..100;

#[test]
fn slots_move_under_a_writer_and_nothing_is_lost() {
    let cluster = InProcessCluster::up(NODE_TIMEOUT);
    let mover = Mover::new(&cluster.control_plane_url());
    let (source, target) = mover.ends(MOVED.start);

    // Keys everywhere, a few hundred of them in the slots that move.
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    let keys = load(&mut proxy, 20_000);
    let in_moved = |key: &String| MOVED.contains(&key_hash_slot(key.as_bytes()));
    let moving_keys = keys.iter().filter(|k| in_moved(k)).count();
    assert!(moving_keys > 50, "{moving_keys} keys in the moved slots");
    // A writer on keys of the moved slots and of others.
    let written: Vec<String> = keys
        .iter()
        .filter(|k| in_moved(k))
        .take(20)
        .chain(keys.iter().filter(|k| !in_moved(k)).take(20))
        .cloned()
        .collect();
    let writer = Writer::start(cluster.proxy_port, written.clone());
    thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    mover.start(MOVED, &target.id.to_string());
    mover.wait_done(MOVED, &target.id.to_string(), Duration::from_secs(30));
    eprintln!(
        "moved {} slots ({moving_keys} keys) in {:?}",
        MOVED.len(),
        started.elapsed()
    );
    thread::sleep(Duration::from_millis(300));
    let (errors, acked) = writer.finish();
    assert_eq!(errors, 0, "the proxy's clients saw errors");
    assert_acked_present(cluster.proxy_port, &acked);

    // Every key reads back; the moved slots' keys are on the target alone.
    assert_loaded(&mut proxy, keys.iter().filter(|k| !written.contains(k)));
    let count = |port: u16, slot: u16| -> u64 {
        let reply = connect(port, &cluster.node_secret).call_str(&[
            "CLUSTER",
            "COUNTKEYSINSLOT",
            &slot.to_string(),
        ]);
        reply
            .trim_start_matches(':')
            .trim_end()
            .parse()
            .expect("count")
    };
    let (on_source, on_target): (u64, u64) = MOVED
        .map(|s| (count(source.port, s), count(target.port, s)))
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    assert_eq!(on_source, 0, "the source kept keys of moved slots");
    assert_eq!(
        on_target, moving_keys as u64,
        "the target has every moved key once"
    );
    assert_eq!(proxy.call_str(&["DBSIZE"]), format!(":{}\r\n", keys.len()));
}

/// `clusterctl reshard` against real processes: the plan, the move with progress lines (not a
/// terminal), and afterwards `redis-cli --cluster check` at the nodes finds every slot covered
/// once and no slot open, with the keys where the slots are.
#[test]
fn clusterctl_reshard_moves_slots_between_processes() {
    let cluster = tessera_e2e::cluster::LocalCluster::up(NODE_TIMEOUT);
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    let keys = load(&mut proxy, 5_000);
    let id = |port: u16| node_id(port, &cluster.node_secret);
    let (from, to) = (id(cluster.node_ports[0]), id(cluster.node_ports[1]));
    let output = cluster.clusterctl(&[
        "reshard", "--from", &from, "--to", &to, "--slots", "500", "--yes",
    ]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "clusterctl reshard failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("Ready to move 500 slots."), "{text}");
    assert!(
        text.contains(&format!("Moving 500 slots [0-499] from {from}")),
        "{text}"
    );
    assert!(text.contains("[OK] 500 slots moved"), "{text}");

    let address = format!("127.0.0.1:{}", cluster.node_ports[0]);
    let check_text =
        cluster_check(&address, &cluster.node_secret).expect("redis-cli --cluster check");
    assert!(
        check_text.contains("[OK] All 16384 slots covered."),
        "{check_text}"
    );
    for shape in [
        "slots:[500-5460] (4961 slots) master",
        "slots:[0-499],[5461-10922] (5962 slots) master",
    ] {
        assert!(check_text.contains(shape), "{shape} in:\n{check_text}");
    }
    assert_loaded(&mut proxy, &keys);
}

/// The control plane, then a move's source, then its target, each SIGKILLed while slots move
/// (and started again): every move still ends with its slots owned by the target alone, and
/// every key reads back.
#[test]
fn moves_survive_the_control_plane_the_source_and_the_target_being_killed() {
    let cluster = tessera_e2e::cluster::LocalCluster::up(NODE_TIMEOUT);
    let mover = Mover::new(&format!("http://127.0.0.1:{}", cluster.cp_port));
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    let keys = load(&mut proxy, 30_000);
    let id = |port: u16| node_id(port, &cluster.node_secret);
    let ids: Vec<String> = cluster.node_ports.iter().map(|&p| id(p)).collect();
    let finished = |slots: std::ops::Range<u16>, target: &str| {
        mover.wait_done(slots, target, Duration::from_secs(90));
    };
    let killed = |service: &str| {
        cluster.launcher(&["stop", service, "--kill"]);
        cluster.launcher(&["start", service]);
    };

    mover.start(0..2000, &ids[1]);
    killed("control-plane");
    finished(0..2000, &ids[1]);

    mover.start(2000..4000, &ids[1]);
    thread::sleep(Duration::from_millis(100));
    killed("node1");
    finished(2000..4000, &ids[1]);

    mover.start(4000..5000, &ids[2]);
    thread::sleep(Duration::from_millis(100));
    killed("node3");
    finished(4000..5000, &ids[2]);

    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    proxy.set_read_timeout(Duration::from_secs(10));
    wait::until("the cluster serves again", Duration::from_secs(30), || {
        (proxy.call_str(&["GET", &keys[0]]) == format!("${}\r\n{}\r\n", keys[0].len(), keys[0]))
            .then_some(())
    });
    assert_loaded(&mut proxy, &keys);
    assert_eq!(proxy.call_str(&["DBSIZE"]), format!(":{}\r\n", keys.len()));
}

/// `clusterctl rebalance --weight ID=0` against real processes empties that master into the
/// others (the first step of removing it), while the cluster serves: every key stays readable
/// and `redis-cli --cluster check` finds every slot covered.
#[test]
fn clusterctl_rebalance_by_weight_empties_a_master() {
    let cluster = tessera_e2e::cluster::LocalCluster::up(NODE_TIMEOUT);
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    let keys = load(&mut proxy, 5_000);
    let emptied = node_id(cluster.node_ports[0], &cluster.node_secret);
    let weight = format!("{emptied}=0");
    let output = cluster.clusterctl(&["rebalance", "--weight", &weight]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "clusterctl rebalance failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains(">>> Rebalancing across 3 nodes. Total weight = 2.00"),
        "{text}"
    );
    let address = format!("127.0.0.1:{}", cluster.node_ports[0]);
    let check_text =
        cluster_check(&address, &cluster.node_secret).expect("redis-cli --cluster check");
    assert!(
        check_text.contains("[OK] All 16384 slots covered."),
        "{check_text}"
    );
    assert!(
        check_text.contains("slots: (0 slots) master"),
        "{check_text}"
    );
    // An empty master, as a node just started: what add-node (without --replica-of) checks.
    let added = cluster.clusterctl(&["add-node", &address]);
    let added_text = String::from_utf8_lossy(&added.stdout).into_owned();
    assert!(added.status.success(), "{added_text}");
    assert!(
        added_text.ends_with("[OK] New node added correctly.\n"),
        "{added_text}"
    );
    assert_loaded(&mut proxy, &keys);
    assert_eq!(proxy.call_str(&["DBSIZE"]), format!(":{}\r\n", keys.len()));

    // Emptied, it can be removed; a node that still serves slots cannot.
    let serving = node_id(cluster.node_ports[1], &cluster.node_secret);
    let refused = cluster.clusterctl(&["del-node", &serving]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not empty! Reshard data away"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let removed = cluster.clusterctl(&["del-node", &emptied]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    cluster.launcher(&["stop", "node1"]);
    let remaining = format!("127.0.0.1:{}", cluster.node_ports[1]);
    wait::until("two masters left", Duration::from_secs(30), || {
        cluster_check(&remaining, &cluster.node_secret)
            .ok()
            .filter(|text| text.contains("[OK] 5000 keys in 2 masters."))
    });
    assert_loaded(&mut proxy, &keys);
}
