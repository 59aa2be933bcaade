//! `clusterctl` as an operator runs it (the built binary) against a real control plane with fake
//! heartbeating nodes: create (declined, then --yes), check, info, nodes, set/get, and errors.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::{addresses, node_id, register, Beaters, Server};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs clusterctl with `args` against `url`, feeding `stdin` (bounded by the binary's own
/// timeouts; it never waits longer than its --wait).
async fn clusterctl(url: &str, args: &[&str], stdin: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clusterctl"));
    command
        .arg("--control-plane")
        .arg(url)
        .args(args)
        .env_remove("TESSERA_CONTROL_PLANE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = stdin.to_string();
    let output: Output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("spawn clusterctl");
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(input.as_bytes());
        }
        child.wait_with_output().expect("clusterctl output")
    })
    .await
    .expect("blocking task");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_check_info_nodes_set() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let server = Server::start(dir.path(), Duration::from_secs(60)).await;
    let url = server.url();
    let mut client = server.client().await;
    for n in 1..=3 {
        register(&mut client, n).await;
    }
    let beaters = Beaters::start(
        client.clone(),
        vec![1, 2, 3],
        vec![1, 2, 3],
        Arc::new(AtomicBool::new(false)),
    );
    let nodes = addresses(&[1, 2, 3]);
    let mut create: Vec<&str> = vec!["create"];
    create.extend(nodes.iter().map(String::as_str));
    create.extend(["--replicas", "0"]);

    // Declined: the plan is shown, nothing is applied, exit 1.
    let declined = clusterctl(&url, &create, "no\n").await;
    assert_eq!(
        declined.code,
        Some(1),
        "{}{}",
        declined.stdout,
        declined.stderr
    );
    let id1 = node_id(1).to_string();
    let want_plan = format!(
        ">>> Performing hash slots allocation on 3 nodes...\n\
         Master[0] -> Slots 0 - 5460\n\
         Master[1] -> Slots 5461 - 10922\n\
         Master[2] -> Slots 10923 - 16383\n\
         M: {id1} 127.0.0.1:7000\n   slots:[0-5460] (5461 slots) master\n"
    );
    assert!(
        declined.stdout.starts_with(&want_plan),
        "{}",
        declined.stdout
    );
    assert!(declined
        .stdout
        .ends_with("Can I set the above configuration? (type 'yes' to accept): "));

    // Check before creation: no slots covered, exit 1.
    let check = clusterctl(&url, &["check"], "").await;
    assert_eq!(check.code, Some(1));
    assert!(check
        .stdout
        .contains("[ERR] Not all 16384 slots are covered by nodes."));

    // Accepted with --yes.
    let mut yes = create.clone();
    yes.push("--yes");
    let created = clusterctl(&url, &yes, "").await;
    assert_eq!(
        created.code,
        Some(0),
        "{}{}",
        created.stdout,
        created.stderr
    );
    let out = &created.stdout;
    assert!(out.starts_with(&want_plan), "{out}");
    assert!(!out.contains("Can I set"), "{out}");
    for line in [
        "   slots:[5461-10922] (5462 slots) master\n",
        ">>> Nodes configuration updated\n>>> Assign a different config epoch to each node\nWaiting for the cluster to join\n",
        ">>> Performing Cluster Check (using node 127.0.0.1:7000)\n",
        "[OK] All nodes agree about slots configuration.\n>>> Check for open slots...\n>>> Check slots coverage...\n[OK] All 16384 slots covered.\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // Again: refused with the control plane's words.
    let again = clusterctl(&url, &yes, "").await;
    assert_eq!(again.code, Some(1));
    assert_eq!(again.stderr, "[ERR] cluster already created\n");

    // check.
    let check = clusterctl(&url, &["check"], "").await;
    assert_eq!(check.code, Some(0), "{}{}", check.stdout, check.stderr);
    let short: String = id1.chars().take(8).collect();
    assert!(check.stdout.starts_with(&format!(
        "127.0.0.1:7000 ({short}...) -> 1 keys | 5461 slots | 0 slaves.\n"
    )));
    assert!(check
        .stdout
        .contains("[OK] 6 keys in 3 masters.\n0.00 keys per slot on average.\n"));
    assert!(check.stdout.ends_with("[OK] All 16384 slots covered.\n"));

    // info and nodes.
    let info = clusterctl(&url, &["info"], "").await;
    assert_eq!(info.code, Some(0), "{}", info.stderr);
    for field in [
        "cluster_state:ok\r\n",
        "cluster_slots_assigned:16384\r\n",
        "cluster_known_nodes:3\r\n",
        "cluster_size:3\r\n",
        "cluster_current_epoch:3\r\n",
    ] {
        assert!(
            info.stdout.contains(field),
            "missing {field:?} in {}",
            info.stdout
        );
    }
    let listed = clusterctl(&url, &["nodes"], "").await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 3, "{}", listed.stdout);
    assert!(listed
        .stdout
        .contains(&format!("{id1} 127.0.0.1:7000@17000 master - ")));
    assert!(!listed.stdout.contains("myself"));

    // set / get.
    let set = clusterctl(&url, &["set", "require-full-coverage", "no"], "").await;
    assert_eq!((set.code, set.stdout.as_str()), (Some(0), "OK\n"));
    let set = clusterctl(&url, &["set", "node-timeout", "5000"], "").await;
    assert_eq!((set.code, set.stdout.as_str()), (Some(0), "OK\n"));
    let get = clusterctl(&url, &["get"], "").await;
    assert_eq!(
        get.stdout,
        "require-full-coverage no\nallow-reads-when-down no\nnode-timeout 5000\n"
    );
    let bad = clusterctl(&url, &["set", "require-full-coverage", "maybe"], "").await;
    assert_eq!(bad.code, Some(1));
    assert_eq!(
        bad.stderr,
        "[ERR] invalid value \"maybe\" for require-full-coverage: want yes or no\n"
    );

    beaters.stop().await;
    server.stop().await;

    // No control plane: a clear error, exit 1.
    let gone = clusterctl(&url, &["info"], "").await;
    assert_eq!(gone.code, Some(1));
    assert!(
        gone.stderr
            .starts_with("[ERR] cannot reach the control plane at"),
        "{}",
        gone.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_replicas_and_add_node() {
    let dir = tessera_testkit::temp_dir("control-plane");
    let server = Server::start(dir.path(), Duration::from_secs(60)).await;
    let url = server.url();
    let mut client = server.client().await;
    for n in 1..=7 {
        register(&mut client, n).await;
    }
    // Node 7 holds no keys, so it may become a replica.
    let beaters = Beaters::start_with_keys(
        client.clone(),
        (1..=7).collect(),
        (1..=7).collect(),
        Arc::new(AtomicBool::new(false)),
        |n| if n == 7 { 0 } else { u64::from(n) },
    );
    let ids: Vec<String> = (1..=7).map(|n| node_id(n).to_string()).collect();
    let nodes = addresses(&[1, 2, 3, 4, 5, 6]);
    let mut create: Vec<&str> = vec!["create"];
    create.extend(nodes.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
    let created = clusterctl(&url, &create, "").await;
    assert_eq!(
        created.code,
        Some(0),
        "{}{}",
        created.stdout,
        created.stderr
    );
    // redis-cli 7.0.15's lines for six nodes on one host, with these nodes' ids.
    let want_plan = format!(
        ">>> Performing hash slots allocation on 6 nodes...\n\
         Master[0] -> Slots 0 - 5460\n\
         Master[1] -> Slots 5461 - 10922\n\
         Master[2] -> Slots 10923 - 16383\n\
         Adding replica 127.0.0.1:7004 to 127.0.0.1:7000\n\
         Adding replica 127.0.0.1:7005 to 127.0.0.1:7001\n\
         Adding replica 127.0.0.1:7003 to 127.0.0.1:7002\n\
         >>> Trying to optimize slaves allocation for anti-affinity\n\
         [WARNING] Some slaves are in the same host as their master\n\
         M: {} 127.0.0.1:7000\n   slots:[0-5460] (5461 slots) master\n\
         M: {} 127.0.0.1:7001\n   slots:[5461-10922] (5462 slots) master\n\
         M: {} 127.0.0.1:7002\n   slots:[10923-16383] (5461 slots) master\n\
         S: {} 127.0.0.1:7003\n   replicates {}\n\
         S: {} 127.0.0.1:7004\n   replicates {}\n\
         S: {} 127.0.0.1:7005\n   replicates {}\n\
         >>> Nodes configuration updated\n",
        ids[0], ids[1], ids[2], ids[3], ids[2], ids[4], ids[0], ids[5], ids[1]
    );
    assert!(created.stdout.starts_with(&want_plan), "{}", created.stdout);
    assert!(
        created.stdout.contains(&format!(
            "M: {} 127.0.0.1:7000\n   slots:[0-5460] (5461 slots) master\n   1 additional replica(s)\n",
            ids[0]
        )),
        "{}",
        created.stdout
    );
    assert!(created.stdout.ends_with("[OK] All 16384 slots covered.\n"));

    // add-node: refused in Redis's words, then accepted.
    let refused = clusterctl(
        &url,
        &["add-node", "127.0.0.1:7006", "--replica-of", &ids[3]],
        "",
    )
    .await;
    assert_eq!(refused.code, Some(1));
    assert_eq!(
        refused.stderr,
        "[ERR] I can only replicate a master, not a replica.\n"
    );
    let added = clusterctl(
        &url,
        &["add-node", "127.0.0.1:7006", "--replica-of", &ids[1]],
        "",
    )
    .await;
    assert_eq!(added.code, Some(0), "{}{}", added.stdout, added.stderr);
    assert_eq!(
        added.stdout,
        ">>> Adding node 127.0.0.1:7006 to cluster\n\
         >>> Configure node as replica of 127.0.0.1:7001.\n\
         [OK] New node added correctly.\n"
    );
    let check = clusterctl(&url, &["check"], "").await;
    assert_eq!(check.code, Some(0), "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(&format!(
        "S: {} 127.0.0.1:7006\n   slots: (0 slots) slave\n   replicates {}\n",
        ids[6], ids[1]
    )));
    assert!(check.stdout.contains("   2 additional replica(s)\n"));
    assert!(check.stdout.contains("| 5462 slots | 2 slaves.\n"));
    let info = clusterctl(&url, &["info"], "").await;
    assert!(info
        .stdout
        .contains("cluster_known_nodes:7\r\ncluster_size:3\r\n"));
    // Without --replica-of: a check that the node is an empty master, as redis-cli's words say.
    let plain = clusterctl(&url, &["add-node", "127.0.0.1:7006"], "").await;
    assert_eq!(plain.code, Some(1));
    assert!(
        plain
            .stderr
            .starts_with("[ERR] Node 127.0.0.1:7006 is not empty."),
        "{}",
        plain.stderr
    );
    let unknown = clusterctl(&url, &["add-node", "127.0.0.1:7999"], "").await;
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown
            .stderr
            .contains("no registered node at 127.0.0.1:7999"),
        "{}",
        unknown.stderr
    );

    beaters.stop().await;
    server.stop().await;
}
