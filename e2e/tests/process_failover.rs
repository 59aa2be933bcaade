//! Failover of real processes (`deploy/local.sh` with TESSERA_REPLICAS=1: three masters, three
//! replicas), under a writer through the proxy on the other masters' slots:
//! - SIGKILL of a master: its port refuses, so its replica is promoted without waiting out the
//!   lease;
//! - SIGSTOP of a master: it may still hold a lease, so its replica is promoted only once the
//!   lease has surely run out (node-timeout plus a margin), never before; after SIGCONT it finds
//!   itself a replica and follows the new master.
//!
//! Both: writes acknowledged with `WAIT 1` survive, the other slots see no error, and every node
//! agrees on the slot's new master.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tessera_e2e::cluster::LocalCluster;
use tessera_e2e::resp::RespClient;
use tessera_e2e::shard::{connect, info_field, pick_shard, Shard, Writer};
use tessera_testkit::wait;

const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// The fencing wait of the control plane (control-plane/src/failover.rs).
fn lease_wait() -> Duration {
    NODE_TIMEOUT + NODE_TIMEOUT / 10 + Duration::from_millis(500)
}

fn pid_of(cluster: &LocalCluster, service: &str) -> u32 {
    let status = cluster.launcher(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    text.lines()
        .find_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [name, "running", "pid", pid, ..] if name == service => pid.parse().ok(),
                _ => None,
            },
        )
        .unwrap_or_else(|| panic!("no running {service} in:\n{text}"))
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{name} {pid}");
}

/// Sends SIGCONT when dropped, so a failing test never leaves a process stopped.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// Writes the shard's own keys on its master and waits until the replica has them.
fn write_acknowledged(cluster: &LocalCluster, shard: &Shard) {
    let mut master = connect(cluster.node_ports[shard.master], &cluster.node_secret);
    for key in &shard.own_keys {
        assert_eq!(master.call_str(&["SET", key, "kept"]), "+OK\r\n");
    }
    assert_eq!(master.call_str(&["WAIT", "1", "5000"]), ":1\r\n");
}

/// How long after `since` a SET of the shard's first key through the proxy succeeds.
fn time_to_first_write(cluster: &LocalCluster, shard: &Shard, since: Instant) -> Duration {
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    proxy.set_read_timeout(Duration::from_secs(10));
    wait::until(
        "writes to the lost slots resume",
        Duration::from_secs(30),
        || {
            (proxy.call_str(&["SET", &shard.own_keys[0], "kept"]) == "+OK\r\n")
                .then(|| since.elapsed())
        },
    )
}

/// Every acknowledged key reads back, and every node names the replica as the slot's master.
fn check_after(cluster: &LocalCluster, shard: &Shard) {
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("proxy");
    for key in &shard.own_keys {
        assert_eq!(
            proxy.call_str(&["GET", key]),
            "$4\r\nkept\r\n",
            "{key} lost"
        );
    }
    let new_master = format!(":{}@", cluster.node_ports[shard.replica]);
    wait::until(
        "every node agrees on the new master",
        Duration::from_secs(30),
        || {
            cluster
                .node_ports
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != shard.master)
                .all(|(_, &port)| {
                    connect(port, &cluster.node_secret)
                        .call_str(&["CLUSTER", "NODES"])
                        .lines()
                        .any(|l| l.contains(&new_master) && l.contains("master"))
                })
                .then_some(())
        },
    );
}

/// A six-process cluster, a shard whose keys its replica has acknowledged, a writer running on
/// the other slots, and the pid of the shard's master.
fn before_the_fault() -> (LocalCluster, Shard, Writer, u32) {
    let cluster = LocalCluster::up_with_replicas(NODE_TIMEOUT, 1);
    let shard = pick_shard(&cluster);
    write_acknowledged(&cluster, &shard);
    let others = Writer::start(cluster.proxy_port, shard.other_keys.clone());
    thread::sleep(Duration::from_millis(300));
    let pid = pid_of(&cluster, &format!("node{}", shard.master + 1));
    (cluster, shard, others, pid)
}

#[test]
fn a_killed_master_is_failed_over_without_waiting_out_its_lease() {
    let (cluster, shard, others, pid) = before_the_fault();
    let killed = Instant::now();
    signal(pid, "KILL");
    let resumed = time_to_first_write(&cluster, &shard, killed);
    eprintln!("SIGKILL: writes to the lost slots resumed after {resumed:?}");
    assert!(
        resumed < lease_wait(),
        "a killed master's replica is promoted before its lease could have run out ({resumed:?})"
    );
    thread::sleep(Duration::from_millis(300));
    let (errors, _) = others.finish();
    assert_eq!(errors, 0, "the other masters' slots saw errors");
    check_after(&cluster, &shard);
}

#[test]
fn a_hung_master_is_failed_over_only_after_its_lease() {
    let (cluster, shard, others, pid) = before_the_fault();
    let resume = Resume(pid);
    let stopped = Instant::now();
    signal(pid, "STOP");
    let resumed = time_to_first_write(&cluster, &shard, stopped);
    eprintln!("SIGSTOP: writes to the lost slots resumed after {resumed:?}");
    assert!(
        resumed >= NODE_TIMEOUT,
        "a hung master may still hold its lease: no promotion before node-timeout ({resumed:?})"
    );
    let (errors, _) = others.finish();
    assert_eq!(errors, 0, "the other masters' slots saw errors");
    check_after(&cluster, &shard);

    // Woken, the old master finds itself a replica of the new one and follows it.
    drop(resume);
    let mut old = connect(cluster.node_ports[shard.master], &cluster.node_secret);
    let replica_port = cluster.node_ports[shard.replica].to_string();
    wait::until(
        "the old master follows the new one",
        Duration::from_secs(30),
        || {
            (info_field(&mut old, "master_port").as_deref() == Some(replica_port.as_str())
                && info_field(&mut old, "master_link_status").as_deref() == Some("up"))
            .then_some(())
        },
    );
    assert!(old
        .call_str(&["SET", &shard.own_keys[0], "x"])
        .starts_with("-MOVED "));
}
