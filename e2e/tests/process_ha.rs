//! The highly available control plane as real processes (`deploy/local.sh` with
//! TESSERA_CP_HA=1: a three-member etcd, three control planes, three masters with a replica
//! each, a proxy; nodes, proxy and clusterctl given the list of control planes):
//! - the leading control plane SIGKILLed while a failover is in progress (a master hung with
//!   SIGSTOP, its failure seen by the leader): another control plane leads within the election
//!   TTL and finishes the failover; writes through the proxy resume on the promoted replica,
//!   and clusterctl, whose list may start with the dead control plane, names the new leader;
//! - one etcd member SIGKILLed: writes through the proxy see no error, and a change through
//!   clusterctl still succeeds.

use std::time::{Duration, Instant};

use tessera_e2e::cluster::{LocalCluster, Resume};
use tessera_e2e::failover::{assert_one_master_per_slot, Story};
use tessera_e2e::shard::{shards, Writer};
use tessera_testkit::wait;

/// Longer than a takeover (TTL, etcd's lease expiry, the new leader's reload): a master's write
/// lease is renewed by the leader's heartbeat answers, so a takeover slower than node-timeout
/// would stop every master's writes (that masters renew each other's leases while no control
/// plane answers is not built yet).
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease TTL local.sh is given by the harness (`TESSERA_ELECTION_TTL`).
const TTL: Duration = Duration::from_secs(2);

/// How long a story may wait for writes to resume: a takeover (TTL and etcd's lease expiry),
/// then the new leader's own node-timeout and fencing wait for the hung master, plus margin.
const RESUME_LIMIT: Duration = Duration::from_secs(40);

/// What `clusterctl info` says of each control plane: (URL, line), and which one leads.
fn control_planes(cluster: &LocalCluster) -> (Vec<(String, String)>, Option<usize>) {
    let output = cluster.clusterctl(&["info"]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<(String, String)> = text
        .lines()
        .skip_while(|line| *line != "# Control planes")
        .skip(1)
        .filter_map(|line| {
            let (url, rest) = line.split_once(' ')?;
            Some((url.to_string(), rest.to_string()))
        })
        .collect();
    let leading: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].1.starts_with("leader "))
        .collect();
    let leader = match leading[..] {
        [one] => Some(one),
        _ => None,
    };
    (lines, leader)
}

/// Waits until exactly one control plane leads and every reachable one names it; returns its
/// index (cp1 is 0).
fn wait_leader(cluster: &LocalCluster, limit: Duration) -> usize {
    wait::until("one control plane to lead", limit, || {
        let (lines, leader) = control_planes(cluster);
        let leader = leader?;
        let address = lines[leader]
            .1
            .split_whitespace()
            .find_map(|field| field.strip_prefix("address="))?
            .to_string();
        lines
            .iter()
            .filter(|(_, line)| !line.starts_with("unreachable"))
            .all(|(_, line)| {
                line.starts_with("leader ") || line.contains(&format!("leader={address}"))
            })
            .then_some(leader)
    })
}

#[test]
fn the_leader_killed_during_a_failover_and_the_next_one_finishes_it() {
    let cluster = LocalCluster::up_ha(NODE_TIMEOUT, 1);
    let all: Vec<usize> = (0..cluster.node_ports.len()).collect();
    let before = assert_one_master_per_slot(&cluster, &all);
    let shards = shards(&cluster);
    let shard = &shards[0];
    let leader = wait_leader(&cluster, Duration::from_secs(20));
    let leader_service = format!("cp{}", leader + 1);
    let leader_url = format!(
        "http://127.0.0.1:{}",
        cluster.ha.as_ref().expect("ha").cp_ports[leader]
    );
    eprintln!("{leader_service} leads");

    let mut story = Story::start(
        "leader killed during a failover",
        cluster.proxy_port,
        vec![shard.own_keys.clone()],
        shard.other_keys.clone(),
    );
    let master = format!("node{}", shard.master + 1);
    let resume = Resume {
        cluster: &cluster,
        service: master.clone(),
    };
    let mut seen = String::new();
    let fault = story.fault(|| {
        cluster.signal(&[&master], "STOP");
        // The leader's own view: once it marks the master failing, its failover is under way
        // (a hung master is promoted past only once its lease has surely run out).
        seen = wait::until(
            "the leader to see the master fail",
            Duration::from_secs(20),
            || {
                let output = std::process::Command::new(tessera_e2e::bin_dir().join("clusterctl"))
                    .args(["--control-plane", &leader_url, "nodes"])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&output.stdout).into_owned();
                let line = text.lines().find(|l| l.starts_with(&shard.master_id))?;
                let flags = line.split_whitespace().nth(2)?;
                flags.contains("fail").then(|| line.to_string())
            },
        );
        cluster.signal(&[&leader_service], "KILL");
    });
    eprintln!(
        "{leader_service} killed {:?} after the stop, master seen as: {seen}",
        fault.in_place - fault.started
    );
    let (resumed, _) = story.wait_resumed(RESUME_LIMIT);
    story.wait_acked_after_fault(3);
    eprintln!("writes resumed {resumed:?} after the master stopped");

    // Another control plane leads; clusterctl finds it whatever its list starts with.
    let next = wait_leader(&cluster, TTL * 5);
    assert_ne!(next, leader, "the killed control plane cannot lead");
    let (lines, _) = control_planes(&cluster);
    assert!(
        lines[leader].1.starts_with("unreachable"),
        "the killed control plane is shown unreachable: {lines:?}"
    );

    // Heal: the old master continues (and follows its promoted replica), the old leader
    // restarts as a follower.
    drop(resume);
    cluster.launcher(&["start", &leader_service]);
    let report = story.finish_healed(&cluster, &[shard], &before, &all, Duration::from_secs(30));
    assert_eq!(
        wait_leader(&cluster, TTL * 5),
        next,
        "the restarted one follows"
    );
    eprintln!("{report}");
}

#[test]
fn an_etcd_member_killed_stops_nothing() {
    let cluster = LocalCluster::up_ha(NODE_TIMEOUT, 1);
    let shards = tessera_e2e::shard::pick_shard(&cluster);
    let keys: Vec<String> = shards
        .own_keys
        .iter()
        .chain(&shards.other_keys)
        .cloned()
        .collect();
    wait_leader(&cluster, Duration::from_secs(20));
    let writer = Writer::start(cluster.proxy_port, keys);

    cluster.signal(&["etcd1"], "KILL");
    let killed = Instant::now();
    // A change through the control planes: the store keeps a quorum of two. Killing etcd's
    // raft leader costs an etcd election (about a second), which a retried call rides out.
    let changed = wait::until(
        "a setting change to succeed",
        Duration::from_secs(15),
        || {
            // Not node-timeout: a shorter one would cut short the leases granted before the
            // kill, a cost of the setting, not of the lost member.
            let output = cluster.clusterctl(&["set", "allow-reads-when-down", "yes"]);
            output.status.success().then_some(Instant::now())
        },
    );
    eprintln!("a change succeeded {:?} after the kill", changed - killed);
    let output = cluster.clusterctl(&["get"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("allow-reads-when-down yes"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let (lines, leader) = control_planes(&cluster);
    assert!(leader.is_some(), "one control plane leads: {lines:?}");

    // The data path never depended on etcd: no write failed.
    let (errors, acked) = writer.finish();
    assert_eq!(errors, 0, "writes through the proxy saw errors");
    tessera_e2e::shard::assert_acked_present(cluster.proxy_port, &acked);
}
