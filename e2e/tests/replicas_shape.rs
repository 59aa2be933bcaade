//! Replicas as a real Redis Cluster shows them: six redis-server 7.0 made a cluster by
//! `redis-cli --cluster create ... --cluster-replicas 1`, and six of our nodes made one by the
//! control plane with one replica per master, compared reply by reply (CLUSTER NODES from a
//! master and from a replica, SLOTS, SHARDS, REPLICAS) after naming every node by its place in
//! the layout (M0-M2 by their slots, R0-R2 by their master) and masking what differs by nature
//! (times, offsets, health). Then `redis-cli --cluster check` against our nodes lists the replicas with
//! `S:` lines, as it does against Redis.
//!
//! redis-cli assigns replicas at random on one host (its anti-affinity swaps), so which node
//! replicates which differs between the two; the labels make the shapes comparable anyway.

use std::collections::HashMap;
use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::redis;
use tessera_e2e::resp::RespClient;
use tessera_proto::resp::frame::{parse, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_testkit::{wait, RedisServer};

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// Our nodes refuse clients without the node secret; the Redis nodes get it as requirepass and
/// masterauth, so one client and one redis-cli command line serve both.
static SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn secret() -> &'static str {
    SECRET.get().expect("secret set")
}

/// A client that has sent AUTH.
fn connect(port: u16) -> RespClient {
    let mut client = RespClient::connect(port).expect("connect");
    assert_eq!(client.call_str(&["AUTH", secret()]), "+OK\r\n");
    client
}

/// redis-cli with the secret.
fn cli(args: &[&str]) -> String {
    let mut all = vec!["-a", secret(), "--no-auth-warning"];
    all.extend_from_slice(args);
    redis::cli(&all)
}

/// Node labels by id, and by port, read from one node's CLUSTER NODES.
struct Labels {
    by_id: HashMap<String, String>,
    by_port: HashMap<u16, String>,
}

impl Labels {
    fn read(port: u16) -> Labels {
        let text = nodes_text(port);
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        // Masters by their first slot.
        let mut masters: Vec<&Vec<&str>> = lines.iter().filter(|f| f[3] == "-").collect();
        masters.sort_by_key(|f| {
            f.get(8)
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u32>().ok())
        });
        let mut labels = Labels {
            by_id: HashMap::new(),
            by_port: HashMap::new(),
        };
        let port_of = |f: &Vec<&str>| -> u16 {
            let address = f[1].split('@').next().unwrap_or_default();
            address
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .parse()
                .unwrap_or(0)
        };
        for (k, master) in masters.iter().enumerate() {
            labels.by_id.insert(master[0].to_string(), format!("M{k}"));
            labels.by_port.insert(port_of(master), format!("M{k}"));
        }
        for replica in lines.iter().filter(|f| f[3] != "-") {
            let label = labels.by_id[replica[3]].replace('M', "R");
            labels.by_id.insert(replica[0].to_string(), label.clone());
            labels.by_port.insert(port_of(replica), label);
        }
        labels
    }

    /// `port` of the node labelled `label`.
    fn port(&self, label: &str) -> u16 {
        self.by_port
            .iter()
            .find(|(_, l)| l.as_str() == label)
            .map(|(p, _)| *p)
            .expect("labelled node")
    }

    fn id(&self, label: &str) -> &str {
        self.by_id
            .iter()
            .find(|(_, l)| l.as_str() == label)
            .map(|(id, _)| id.as_str())
            .expect("labelled node")
    }
}

fn nodes_text(port: u16) -> String {
    let mut client = connect(port);
    let reply = client.call(&[b"CLUSTER", b"NODES"]);
    let Frame::Bulk(text) = parsed(&reply) else {
        panic!(
            "CLUSTER NODES on {port} is not a bulk string: {:?}",
            String::from_utf8_lossy(&reply)
        );
    };
    String::from_utf8_lossy(&text).into_owned()
}

fn parsed(bytes: &[u8]) -> Frame {
    parse(bytes, &FrameLimits::default())
        .expect("valid RESP")
        .expect("a whole reply")
        .0
}

/// CLUSTER NODES lines with ids and ports labelled and ping/pong times masked, sorted. Epochs are
/// compared: both give every node 1..=6 in the order created, a replica showing its master's.
fn nodes_shape(port: u16, labels: &Labels) -> Vec<String> {
    let mut lines: Vec<String> = nodes_text(port)
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split(' ').map(str::to_string).collect();
            fields[0] = labels.by_id[&fields[0]].clone();
            let (address, bus) = fields[1].split_once('@').expect("bus port");
            let node_port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
            let bus: u32 = bus.parse().unwrap();
            assert_eq!(bus, u32::from(node_port) + 10000, "{line}");
            fields[1] = format!("127.0.0.1:{0}@bus-of-{0}", labels.by_port[&node_port]);
            if fields[3] != "-" {
                fields[3] = labels.by_id[&fields[3]].clone();
            }
            fields[4] = "PING".into();
            fields[5] = "PONG".into();
            fields.join(" ")
        })
        .collect();
    lines.sort();
    lines
}

/// A reply with ids and ports labelled and offsets and health masked; shard lists sorted.
fn frame_shape(frame: Frame, labels: &Labels) -> Frame {
    fn walk(frame: Frame, labels: &Labels, mask_next: &mut bool) -> Frame {
        let masked = std::mem::take(mask_next);
        match frame {
            Frame::Bulk(b) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                if masked {
                    return Frame::bulk("MASKED");
                }
                if text == "replication-offset" || text == "health" {
                    *mask_next = true;
                }
                match labels.by_id.get(&text) {
                    Some(label) => Frame::bulk(label.clone()),
                    None => Frame::Bulk(b),
                }
            }
            Frame::Integer(_) if masked => Frame::Integer(-1),
            Frame::Integer(n) => match u16::try_from(n).ok().and_then(|p| labels.by_port.get(&p)) {
                Some(label) => Frame::bulk(format!("port-of-{label}")),
                None => Frame::Integer(n),
            },
            Frame::Array(items) => Frame::Array(
                items
                    .into_iter()
                    .map(|f| walk(f, labels, mask_next))
                    .collect(),
            ),
            Frame::Map(pairs) => Frame::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| {
                        let k = walk(k, labels, mask_next);
                        (k, walk(v, labels, mask_next))
                    })
                    .collect(),
            ),
            other => other,
        }
    }
    let mut shaped = walk(frame, labels, &mut false);
    if let Frame::Array(items) = &mut shaped {
        items.sort_by_key(|f| format!("{f:?}"));
    }
    shaped
}

fn call_frame(port: u16, args: &[&[u8]]) -> Frame {
    let mut client = connect(port);
    parsed(&client.call(args))
}

/// `redis-cli --cluster check` output with ids and ports labelled and key counts masked, sorted
/// by line (the node order follows each cluster's CLUSTER NODES order).
fn check_shape(port: u16, labels: &Labels) -> Vec<String> {
    let text = cli(&["--cluster", "check", &format!("127.0.0.1:{port}")]);
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut line = line.to_string();
            for (id, label) in &labels.by_id {
                line = line.replace(id.as_str(), label).replace(&id[..8], label);
            }
            for (p, label) in &labels.by_port {
                line = line.replace(&format!(":{p}"), &format!(":{label}"));
            }
            line
        })
        .filter(|l| !l.contains("keys"))
        .map(|l| {
            // The seed node differs: keep the words.
            if l.starts_with(">>> Performing Cluster Check") {
                ">>> Performing Cluster Check".to_string()
            } else {
                l
            }
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn replicas_are_shown_as_a_real_redis_cluster_shows_them() {
    let ours = InProcessCluster::start_with_replicas(6, 1, NODE_TIMEOUT).expect("our cluster");
    SECRET.set(ours.node_secret.clone()).expect("set once");

    // The real cluster.
    let servers: Vec<RedisServer> = (0..6)
        .map(|_| {
            RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                "--requirepass",
                secret(),
                "--masterauth",
                secret(),
            ])
            .expect("start redis-server")
        })
        .collect();
    let mut create = vec![
        "-a".to_string(),
        secret().to_string(),
        "--no-auth-warning".to_string(),
        "--cluster".to_string(),
        "create".to_string(),
    ];
    create.extend(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)));
    create.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
    let args: Vec<&str> = create.iter().map(String::as_str).collect();
    let output = redis::run("redis-cli", &args);
    assert!(output.status.success(), "{output:?}");
    let redis_ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    wait::until(
        "the Redis cluster to be ok and synced",
        Duration::from_secs(30),
        || {
            let ok = redis_ports.iter().all(|&p| {
                let info = cli(&["-p", &p.to_string(), "CLUSTER", "INFO"]);
                let shards = cli(&["-p", &p.to_string(), "CLUSTER", "SHARDS"]);
                info.contains("cluster_state:ok")
                    && nodes_text(p).lines().count() == 6
                    && !shards.contains("loading")
            });
            ok.then_some(())
        },
    );

    let theirs = Labels::read(redis_ports[0]);
    let mine = Labels::read(ours.node_ports[0]);
    assert_eq!(theirs.by_id.len(), 6);
    assert_eq!(mine.by_id.len(), 6);

    // CLUSTER NODES as seen by a master and by a replica.
    for label in ["M1", "R2"] {
        assert_eq!(
            nodes_shape(mine.port(label), &mine),
            nodes_shape(theirs.port(label), &theirs),
            "CLUSTER NODES seen by {label}"
        );
    }
    // CLUSTER SLOTS and SHARDS (RESP2).
    for args in [
        vec![b"CLUSTER".to_vec(), b"SLOTS".to_vec()],
        vec![b"CLUSTER".to_vec(), b"SHARDS".to_vec()],
    ] {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        for label in ["M0", "R1"] {
            assert_eq!(
                frame_shape(call_frame(mine.port(label), &args), &mine),
                frame_shape(call_frame(theirs.port(label), &args), &theirs),
                "{args:?} seen by {label}"
            );
        }
    }
    for (sub, of) in [("REPLICAS", "M2"), ("SLAVES", "M0")] {
        for asked in ["M1", "R0"] {
            let ask = |labels: &Labels, port: u16| {
                let lines = call_frame(
                    port,
                    &[b"CLUSTER", sub.as_bytes(), labels.id(of).as_bytes()],
                );
                let Frame::Array(lines) = lines else {
                    panic!("not an array: {lines:?}")
                };
                assert_eq!(lines.len(), 1);
                let Frame::Bulk(line) = &lines[0] else {
                    panic!("not a bulk string")
                };
                let fields: Vec<String> = String::from_utf8_lossy(line)
                    .split(' ')
                    .map(|f| {
                        labels
                            .by_id
                            .get(f)
                            .cloned()
                            .unwrap_or_else(|| f.to_string())
                    })
                    .collect();
                (
                    fields[0].clone(),
                    fields[2].clone(),
                    fields[3].clone(),
                    fields.len(),
                )
            };
            assert_eq!(
                ask(&mine, mine.port(asked)),
                ask(&theirs, theirs.port(asked)),
                "CLUSTER {sub} {of} asked of {asked}"
            );
        }
        // Errors, byte for byte: a replica's id, and an id nobody has.
        for (their_id, my_id) in [(theirs.id("R0"), mine.id("R0")), ("nope", "nope")] {
            let ask = |port: u16, id: &str| {
                let reply = connect(port).call(&[b"CLUSTER", sub.as_bytes(), id.as_bytes()]);
                String::from_utf8_lossy(&reply).replace(id, "<id>")
            };
            assert_eq!(
                ask(mine.port("M0"), my_id),
                ask(theirs.port("M0"), their_id),
                "CLUSTER {sub} {their_id}"
            );
        }
    }

    // Each node's health by Redis's rule: masters online, replicas loading until they have
    // applied some of their master's stream, then online; none failed.
    let shards = cli(&["-p", &mine.port("M0").to_string(), "CLUSTER", "SHARDS"]);
    let healthy = shards.matches("online").count() + shards.matches("loading").count();
    assert_eq!(healthy, 6, "{shards}");
    assert!(!shards.contains("fail"), "{shards}");

    // A write to a replica is sent to its master, as Redis does.
    for labels in [&mine, &theirs] {
        let mut client = connect(labels.port("R0"));
        let reply = client.call_str(&["SET", "{a}", "1"]);
        // Slot 15495 of "{a}" is M2's.
        assert_eq!(
            reply,
            format!("-MOVED 15495 127.0.0.1:{}\r\n", labels.port("M2"))
        );
    }

    // redis-cli --cluster check lists our replicas with S: lines, as Redis's.
    let mine_check = check_shape(mine.port("M0"), &mine);
    assert_eq!(mine_check, check_shape(theirs.port("M0"), &theirs));
    assert_eq!(
        mine_check.iter().filter(|l| l.starts_with("S: ")).count(),
        3,
        "{mine_check:#?}"
    );

    // The proxy's own view shows the replicas too, at its address; redis-cli's check lists them.
    let proxy = ours.proxy_port.to_string();
    let nodes = redis::cli(&["-p", &proxy, "CLUSTER", "NODES"]);
    assert_eq!(
        nodes.lines().filter(|l| l.contains(" slave ")).count(),
        3,
        "{nodes}"
    );
    let slots = redis::cli(&["-p", &proxy, "CLUSTER", "SLOTS"]);
    assert_eq!(
        slots.matches(&proxy).count(),
        6,
        "master and replica per range: {slots}"
    );
    let check = redis::cli(&["--cluster", "check", &format!("127.0.0.1:{proxy}")]);
    assert_eq!(check.matches("\nS: ").count(), 3, "{check}");
    assert_eq!(
        check.matches("1 additional replica(s)").count(),
        3,
        "{check}"
    );
}
