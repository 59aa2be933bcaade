//! Redis's renderings of a topology: CLUSTER INFO, NODES, SLOTS and SHARDS, byte for byte as
//! redis-server 7.0 prints them, so cluster-aware clients parse ours unchanged.

use std::fmt::Write;

use bytes::Bytes;

use crate::resp::Frame;

use super::{NodeId, NodeSpec, NodeStatus, Role, Topology};

/// Message counters CLUSTER INFO reports; the caller counts them.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageStats {
    pub ping_sent: u64,
    pub pong_sent: u64,
    pub ping_received: u64,
    pub pong_received: u64,
}

/// CLUSTER INFO text (lines ending in `\r\n`), as seen by `myself` (for cluster_my_epoch; `None`
/// reports 0).
///
/// As Redis 7.0, per-type message counters are printed only when non-zero, each total always. In
/// RESP3 Redis sends this as a verbatim string, in RESP2 as a bulk string.
pub fn cluster_info(topology: &Topology, myself: Option<&NodeId>, stats: &MessageStats) -> String {
    let health = topology.health();
    let my_epoch = myself.and_then(|id| topology.node(id)).map_or(0, |me| {
        // A replica reports its master's epoch.
        me.master_id
            .as_ref()
            .filter(|_| me.role == Role::Replica)
            .and_then(|master| topology.node(master))
            .unwrap_or(me)
            .config_epoch
    });
    let mut out = String::with_capacity(600);
    let mut field = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "{name}:{value}\r\n");
    };
    field("cluster_state", &if health.ok { "ok" } else { "fail" });
    field("cluster_slots_assigned", &health.slots_assigned);
    field("cluster_slots_ok", &health.slots_ok);
    field("cluster_slots_pfail", &health.slots_pfail);
    field("cluster_slots_fail", &health.slots_fail);
    field("cluster_known_nodes", &health.known_nodes);
    field("cluster_size", &health.size);
    field("cluster_current_epoch", &topology.intent.current_epoch);
    field("cluster_my_epoch", &my_epoch);
    for (name, value) in [
        ("cluster_stats_messages_ping_sent", stats.ping_sent),
        ("cluster_stats_messages_pong_sent", stats.pong_sent),
    ] {
        if value != 0 {
            field(name, &value);
        }
    }
    field(
        "cluster_stats_messages_sent",
        &(stats.ping_sent + stats.pong_sent),
    );
    for (name, value) in [
        ("cluster_stats_messages_ping_received", stats.ping_received),
        ("cluster_stats_messages_pong_received", stats.pong_received),
    ] {
        if value != 0 {
            field(name, &value);
        }
    }
    field(
        "cluster_stats_messages_received",
        &(stats.ping_received + stats.pong_received),
    );
    field("total_cluster_links_buffer_limit_exceeded", &0);
    out
}

/// CLUSTER NODES text (lines ending in `\n`), with `myself` flagged; `now_ms` is the Unix time in
/// ms used for the pong-received column.
///
/// Each line: `<id> <host>:<port>@<bus-port> <flags> <master-id|-> <ping-sent> <pong-recv>
/// <config-epoch> <link-state> <slot ranges...>`. A healthy node shows ping-sent 0 and pong-recv
/// `now_ms`; a `fail?`/`fail` node shows its last ping and last heartbeat and is `disconnected`;
/// `myself` shows 0 0 and is always `connected`. A replica shows `slave <master-id>`, its master's
/// config epoch (as Redis's clusterGenNodeDescription) and no slots.
pub fn cluster_nodes(topology: &Topology, myself: Option<&NodeId>, now_ms: u64) -> String {
    let mut out = String::with_capacity(topology.nodes().len() * 128);
    for index in 0..topology.nodes().len() {
        write_node_line(&mut out, topology, index, myself, now_ms);
        out.push('\n');
    }
    out
}

/// Why CLUSTER REPLICAS / SLAVES has no answer; the text is Redis's error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicasError {
    #[error("ERR Unknown node {0}")]
    UnknownNode(String),
    #[error("ERR The specified node is not a master")]
    NotAMaster,
}

/// CLUSTER REPLICAS / CLUSTER SLAVES `<id>`: the CLUSTER NODES line (no newline) of each replica
/// of master `id`, as Redis answers (an array of bulk strings). `id` is taken as the client sent
/// it, so a malformed id is an unknown node, as in Redis.
pub fn cluster_replicas(
    topology: &Topology,
    myself: Option<&NodeId>,
    id: &str,
    now_ms: u64,
) -> Result<Frame, ReplicasError> {
    let index = topology
        .nodes()
        .iter()
        .position(|n| n.id.as_str() == id)
        .ok_or_else(|| ReplicasError::UnknownNode(id.to_string()))?;
    if topology.nodes()[index].role == Role::Replica {
        return Err(ReplicasError::NotAMaster);
    }
    let lines = topology
        .replicas_of(index)
        .map(|replica| {
            let mut line = String::with_capacity(128);
            write_node_line(&mut line, topology, replica, myself, now_ms);
            Frame::Bulk(Bytes::from(line))
        })
        .collect();
    Ok(Frame::Array(lines))
}

/// One CLUSTER NODES line, without its newline (see `cluster_nodes`).
fn write_node_line(
    out: &mut String,
    topology: &Topology,
    index: usize,
    myself: Option<&NodeId>,
    now_ms: u64,
) {
    let node = &topology.nodes()[index];
    let status = topology.status_at(index);
    let is_me = myself == Some(&node.id);
    let mut flags = Vec::with_capacity(3);
    if is_me {
        flags.push("myself");
    }
    flags.push(match node.role {
        Role::Master => "master",
        Role::Replica => "slave",
    });
    if status.pfail && !status.fail {
        flags.push("fail?");
    }
    if status.fail {
        flags.push("fail");
    }
    let failing = status.failing();
    let (ping, pong) = if is_me {
        (0, 0)
    } else if failing {
        (status.ping_sent_ms, status.last_heartbeat_ms)
    } else {
        (0, now_ms)
    };
    let master = match (&node.role, &node.master_id) {
        (Role::Replica, Some(id)) => topology.node(id),
        _ => None,
    };
    let master_column = match (&node.role, &node.master_id) {
        (Role::Replica, Some(id)) => id.as_str(),
        _ => "-",
    };
    let epoch = master.map_or(node.config_epoch, |m| m.config_epoch);
    let link = if failing && !is_me {
        "disconnected"
    } else {
        "connected"
    };
    let _ = write!(
        out,
        "{} {}:{}@{} {} {} {} {} {} {}",
        node.id,
        node.host,
        node.port,
        node.bus_port,
        flags.join(","),
        master_column,
        ping,
        pong,
        epoch,
        link
    );
    for (start, end) in topology.ranges_of(index) {
        if start == end {
            let _ = write!(out, " {start}");
        } else {
            let _ = write!(out, " {start}-{end}");
        }
    }
    if is_me {
        write_moving_slots(out, topology, index);
    }
}

/// Redis shows the slots moving in or out of a node on its own (`myself`) line only:
/// `[slot->-target]` for a slot it is migrating, `[slot-<-source]` for one it is importing.
fn write_moving_slots(out: &mut String, topology: &Topology, index: usize) {
    let id_of = |i: u16| topology.nodes().get(usize::from(i)).map(|n| &n.id);
    for migration in &topology.intent.migrations {
        if usize::from(migration.source) == index {
            if let Some(target) = id_of(migration.target) {
                let _ = write!(out, " [{}->-{}]", migration.slot, target);
            }
        } else if usize::from(migration.target) == index {
            if let Some(source) = id_of(migration.source) {
                let _ = write!(out, " [{}-<-{}]", migration.slot, source);
            }
        }
    }
}

/// CLUSTER SLOTS reply: per run of slots with one owner, `[start, end, master, replicas...]`,
/// each node as `[host, port, id, {}]` (the empty map is `*0` in RESP2). Replicas that are FAIL
/// are left out, as Redis does.
pub fn cluster_slots(topology: &Topology) -> Frame {
    let entries = topology
        .runs()
        .filter_map(|(start, end, owner)| {
            let owner = usize::from(owner?);
            let master = topology.nodes().get(owner)?;
            let mut entry = vec![
                Frame::Integer(i64::from(start)),
                Frame::Integer(i64::from(end)),
                slot_node(master),
            ];
            entry.extend(
                topology
                    .replicas_of(owner)
                    .filter(|&r| !topology.status_at(r).fail)
                    .map(|r| slot_node(&topology.nodes()[r])),
            );
            Some(Frame::Array(entry))
        })
        .collect();
    Frame::Array(entries)
}

fn slot_node(node: &NodeSpec) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(node.host.clone())),
        Frame::Integer(i64::from(node.port)),
        Frame::Bulk(Bytes::from(node.id.to_string())),
        Frame::Map(Vec::new()),
    ])
}

/// CLUSTER SHARDS reply (Redis 7.0 format): one map per master, `slots` as a flat list of
/// start/end pairs and `nodes` with the master first, then its replicas; each node's `health` is,
/// as Redis 7.0.15 words it, `fail` when FAIL, `loading` for a replica that has applied nothing of
/// its master's stream yet (offset 0), else `online`.
pub fn cluster_shards(topology: &Topology) -> Frame {
    let shards = topology
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, node)| node.role == Role::Master)
        .map(|(index, _)| {
            let slots = topology
                .ranges_of(index)
                .into_iter()
                .flat_map(|(start, end)| {
                    [
                        Frame::Integer(i64::from(start)),
                        Frame::Integer(i64::from(end)),
                    ]
                })
                .collect();
            let nodes = std::iter::once(index)
                .chain(topology.replicas_of(index))
                .map(|i| shard_node(&topology.nodes()[i], topology.status_at(i)))
                .collect();
            Frame::Map(vec![
                (bulk("slots"), Frame::Array(slots)),
                (bulk("nodes"), Frame::Array(nodes)),
            ])
        })
        .collect();
    Frame::Array(shards)
}

fn shard_node(node: &NodeSpec, status: &NodeStatus) -> Frame {
    let host = Frame::Bulk(Bytes::from(node.host.clone()));
    let offset = i64::try_from(status.replication_offset).unwrap_or(i64::MAX);
    Frame::Map(vec![
        (bulk("id"), Frame::Bulk(Bytes::from(node.id.to_string()))),
        (bulk("port"), Frame::Integer(i64::from(node.port))),
        (bulk("ip"), host.clone()),
        (bulk("endpoint"), host),
        (
            bulk("role"),
            bulk(if node.role == Role::Master {
                "master"
            } else {
                "replica"
            }),
        ),
        (bulk("replication-offset"), Frame::Integer(offset)),
        (
            bulk("health"),
            bulk(if status.fail {
                "fail"
            } else if node.role == Role::Replica && status.replication_offset == 0 {
                "loading"
            } else {
                "online"
            }),
        ),
    ])
}

fn bulk(text: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Protocol;
    use crate::topology::Settings;

    const IDS: [&str; 3] = [
        "d0c2da41f2c7b7fc7f8172cf97f3e4f57589cbc6",
        "4091c156379f1babc726ea372544f16f8aeb6114",
        "9dfacdf53f9ff0e6347c83a4702c2b8c7d221a55",
    ];

    fn node(i: usize) -> NodeSpec {
        NodeSpec {
            config_epoch: i as u64 + 1,
            ..NodeSpec::master(
                NodeId::parse(IDS[i]).unwrap(),
                "127.0.0.1",
                31101 + i as u16,
            )
        }
    }

    /// The cluster `redis-cli --cluster create` made of three redis-server 7.0.15 on 31101-31103.
    fn cluster() -> Topology {
        let mut t = Topology {
            version: 1,
            ..Topology::default()
        };
        t.intent.current_epoch = 3;
        t.intent.settings = Settings::default();
        t.intent.created = true;
        for i in 0..3 {
            t.push_node(node(i));
        }
        for (slot, owner) in t.intent.slots.iter_mut().enumerate() {
            *owner = Some(match slot {
                0..=5460 => 0,
                5461..=10922 => 1,
                _ => 2,
            });
        }
        t
    }

    #[test]
    fn info_as_redis_prints_it() {
        let stats = MessageStats {
            ping_sent: 32,
            pong_sent: 31,
            ping_received: 29,
            pong_received: 32,
        };
        let me = NodeId::parse(IDS[0]).unwrap();
        assert_eq!(
            cluster_info(&cluster(), Some(&me), &stats),
            "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:3\r\n\
             cluster_size:3\r\ncluster_current_epoch:3\r\ncluster_my_epoch:1\r\n\
             cluster_stats_messages_ping_sent:32\r\ncluster_stats_messages_pong_sent:31\r\n\
             cluster_stats_messages_sent:63\r\ncluster_stats_messages_ping_received:29\r\n\
             cluster_stats_messages_pong_received:32\r\ncluster_stats_messages_received:61\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n"
        );
    }

    #[test]
    fn info_of_a_failed_cluster() {
        let mut t = cluster();
        t.observed.nodes[0].pfail = true;
        t.observed.nodes[0].fail = true;
        let text = cluster_info(&t, None, &MessageStats::default());
        assert!(text.starts_with(
            "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10923\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:5461\r\ncluster_known_nodes:3\r\n\
             cluster_size:3\r\ncluster_current_epoch:3\r\ncluster_my_epoch:0\r\n\
             cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n"
        ));
    }

    #[test]
    fn nodes_as_redis_prints_them() {
        let mut t = cluster();
        t.observed.nodes[2].pfail = true;
        t.observed.nodes[2].ping_sent_ms = 1795647968470;
        t.observed.nodes[2].last_heartbeat_ms = 1795647966462;
        let me = NodeId::parse(IDS[0]).unwrap();
        assert_eq!(
            cluster_nodes(&t, Some(&me), 1795647970478),
            format!(
                "{} 127.0.0.1:31101@41101 myself,master - 0 0 1 connected 0-5460\n\
                 {} 127.0.0.1:31102@41102 master - 0 1795647970478 2 connected 5461-10922\n\
                 {} 127.0.0.1:31103@41103 master,fail? - 1795647968470 1795647966462 3 disconnected 10923-16383\n",
                IDS[0], IDS[1], IDS[2]
            )
        );
        t.observed.nodes[2].fail = true;
        t.intent.nodes[1].role = Role::Replica;
        t.intent.nodes[1].master_id = Some(me.clone());
        t.intent.slots[5461..=10922].fill(None);
        t.intent.slots[16383] = Some(0);
        assert_eq!(
            cluster_nodes(&t, None, 5),
            format!(
                "{} 127.0.0.1:31101@41101 master - 0 5 1 connected 0-5460 16383\n\
                 {} 127.0.0.1:31102@41102 slave {} 0 5 1 connected\n\
                 {} 127.0.0.1:31103@41103 master,fail - 1795647968470 1795647966462 3 disconnected 10923-16382\n",
                IDS[0], IDS[1], IDS[0], IDS[2]
            )
        );
    }

    #[test]
    fn slots_byte_for_byte() {
        let t = cluster();
        let resp2 = format!(
            "*3\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:31101\r\n$40\r\n{}\r\n*0\r\n\
             *3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:31102\r\n$40\r\n{}\r\n*0\r\n\
             *3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:31103\r\n$40\r\n{}\r\n*0\r\n",
            IDS[0], IDS[1], IDS[2]
        );
        let frame = cluster_slots(&t);
        assert_eq!(frame.to_bytes(Protocol::Resp2), resp2.as_bytes());
        assert_eq!(
            frame.to_bytes(Protocol::Resp3),
            resp2.replace("*0\r\n", "%0\r\n").as_bytes()
        );
    }

    #[test]
    fn slots_with_replicas_and_holes() {
        let mut t = cluster();
        t.intent.nodes[1].role = Role::Replica;
        t.intent.nodes[1].master_id = Some(t.intent.nodes[0].id.clone());
        t.intent.slots[5461..=10922].fill(None);
        let Frame::Array(entries) = cluster_slots(&t) else {
            panic!("not an array");
        };
        assert_eq!(entries.len(), 2);
        let Frame::Array(first) = &entries[0] else {
            panic!("not an array");
        };
        assert_eq!(first.len(), 4, "start, end, master, replica");
        t.observed.nodes[1].fail = true;
        let Frame::Array(entries) = cluster_slots(&t) else {
            panic!("not an array");
        };
        assert!(
            matches!(&entries[0], Frame::Array(e) if e.len() == 3),
            "failed replica left out"
        );
    }

    #[test]
    fn shards_byte_for_byte() {
        let t = cluster();
        let shard = |i: usize, start: u32, end: u32, map: &str| {
            format!(
                "{map}2\r\n$5\r\nslots\r\n*2\r\n:{start}\r\n:{end}\r\n$5\r\nnodes\r\n*1\r\n{map}{}\r\n\
                 $2\r\nid\r\n$40\r\n{}\r\n$4\r\nport\r\n:{}\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
                 $8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
                 $18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n",
                if map == "*" { 14 } else { 7 },
                IDS[i],
                31101 + i
            )
        };
        let want = |map: &str| {
            let map2 = if map == "*" { "*4\r\n" } else { "%2\r\n" };
            let fix = |s: String| s.replacen(&format!("{map}2\r\n"), map2, 1);
            format!(
                "*3\r\n{}{}{}",
                fix(shard(0, 0, 5460, map)),
                fix(shard(1, 5461, 10922, map)),
                fix(shard(2, 10923, 16383, map))
            )
        };
        let frame = cluster_shards(&t);
        assert_eq!(
            String::from_utf8_lossy(&frame.to_bytes(Protocol::Resp2)),
            want("*")
        );
        assert_eq!(
            String::from_utf8_lossy(&frame.to_bytes(Protocol::Resp3)),
            want("%")
        );
    }

    #[test]
    fn shards_health_and_replicas() {
        let mut t = cluster();
        t.observed.nodes[2].fail = true;
        t.intent.nodes[1].role = Role::Replica;
        t.intent.nodes[1].master_id = Some(t.intent.nodes[0].id.clone());
        let text =
            String::from_utf8_lossy(&cluster_shards(&t).to_bytes(Protocol::Resp3)).into_owned();
        assert!(text.starts_with("*2\r\n"), "one shard per master");
        assert!(text.contains("$7\r\nreplica\r\n"));
        assert!(text.contains("$6\r\nhealth\r\n$4\r\nfail\r\n"));
        // A replica that has applied nothing yet is loading, as in Redis 7.0.
        assert!(text.contains("$6\r\nhealth\r\n$7\r\nloading\r\n"));
        t.observed.nodes[1].replication_offset = 14;
        let text =
            String::from_utf8_lossy(&cluster_shards(&t).to_bytes(Protocol::Resp3)).into_owned();
        assert!(!text.contains("loading"));
        assert!(text.contains("$18\r\nreplication-offset\r\n:14\r\n"));
    }

    /// Ids of a redis-server 7.0.15 cluster made by `redis-cli --cluster create` of six nodes
    /// 32101-32106 with `--cluster-replicas 1`: 32104 replicates 32101, 32105 32102, 32106 32103.
    const SIX: [&str; 6] = [
        "0adc24ee028051adfd15c89998566fad5ea114ef",
        "f1fdf08469ac5f3ac1abb00db5afdb7a618b677a",
        "5eeb6829f24c32a0eddf2fc1f45ad21dc38a417a",
        "c2a0e9c31d1b925638706468c055825481a753e8",
        "fdb134781e208cfab82e0d8e893b2a0fd829760f",
        "b68afc294b507c2ec1d6c1ca7dab01b8649d376c",
    ];

    fn six() -> Topology {
        let id = |i: usize| NodeId::parse(SIX[i]).unwrap();
        let nodes = (0..6)
            .map(|i| NodeSpec {
                config_epoch: i as u64 + 1,
                role: if i < 3 { Role::Master } else { Role::Replica },
                master_id: (i >= 3).then(|| id(i - 3)),
                ..NodeSpec::master(id(i), "127.0.0.1", 32101 + i as u16)
            })
            .collect();
        let slots = (0..16384usize)
            .map(|slot| {
                Some(match slot {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                })
            })
            .collect();
        let mut t = Topology::created(nodes, slots);
        t.intent.current_epoch = 6;
        for status in &mut t.observed.nodes {
            status.replication_offset = 14;
        }
        t
    }

    #[test]
    fn replica_lines_as_redis_prints_them() {
        let t = six();
        let me = NodeId::parse(SIX[3]).unwrap();
        let text = cluster_nodes(&t, Some(&me), 1796409130121);
        // Lines as redis-server printed them on 32104 (its order and its own pong time aside).
        for line in [
            format!(
                "{} 127.0.0.1:32101@42101 master - 0 1796409130121 1 connected 0-5460",
                SIX[0]
            ),
            format!(
                "{} 127.0.0.1:32104@42104 myself,slave {} 0 0 1 connected",
                SIX[3], SIX[0]
            ),
            format!(
                "{} 127.0.0.1:32105@42105 slave {} 0 1796409130121 2 connected",
                SIX[4], SIX[1]
            ),
            format!(
                "{} 127.0.0.1:32106@42106 slave {} 0 1796409130121 3 connected",
                SIX[5], SIX[2]
            ),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let info = cluster_info(&t, Some(&me), &MessageStats::default());
        assert!(info.contains(
            "cluster_known_nodes:6\r\ncluster_size:3\r\ncluster_current_epoch:6\r\ncluster_my_epoch:1\r\n"
        ));
    }

    #[test]
    fn replicas_of_a_master() {
        let t = six();
        let me = NodeId::parse(SIX[3]).unwrap();
        let reply = cluster_replicas(&t, Some(&me), SIX[0], 5).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reply.to_bytes(Protocol::Resp2)),
            format!(
                "*1\r\n$132\r\n{} 127.0.0.1:32104@42104 myself,slave {} 0 0 1 connected\r\n",
                SIX[3], SIX[0]
            )
        );
        assert_eq!(
            cluster_replicas(&t, None, SIX[3], 5)
                .unwrap_err()
                .to_string(),
            "ERR The specified node is not a master"
        );
        assert_eq!(
            cluster_replicas(&t, None, "abc", 5)
                .unwrap_err()
                .to_string(),
            "ERR Unknown node abc"
        );
        let mut lonely = cluster();
        lonely.intent.nodes[0].config_epoch = 1;
        assert_eq!(
            cluster_replicas(&lonely, None, IDS[0], 5).unwrap(),
            Frame::Array(Vec::new())
        );
    }

    #[test]
    fn slots_and_shards_list_replicas_after_their_master() {
        let t = six();
        let slots =
            String::from_utf8_lossy(&cluster_slots(&t).to_bytes(Protocol::Resp2)).into_owned();
        assert!(
            slots.starts_with(&format!(
                "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:32101\r\n$40\r\n{}\r\n*0\r\n\
             *4\r\n$9\r\n127.0.0.1\r\n:32104\r\n$40\r\n{}\r\n*0\r\n",
                SIX[0], SIX[3]
            )),
            "{slots}"
        );
        let shards =
            String::from_utf8_lossy(&cluster_shards(&t).to_bytes(Protocol::Resp2)).into_owned();
        assert!(shards.contains(&format!(
            "$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n{}\r\n",
            SIX[1]
        )));
        assert!(shards.contains(&format!(
            "*14\r\n$2\r\nid\r\n$40\r\n{}\r\n$4\r\nport\r\n:32105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
             $8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n\
             $18\r\nreplication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n",
            SIX[4]
        )));
    }

    #[test]
    fn virtual_masters_at_the_proxy_address() {
        let t = cluster();
        let proxy = NodeId::from_random_bytes([7; 20]);
        let view = t.as_proxy_view(proxy, "127.0.0.1", 6379);
        let ids: Vec<String> = IDS
            .iter()
            .map(|id| {
                NodeId::parse(id)
                    .unwrap()
                    .derive("127.0.0.1:6379")
                    .to_string()
            })
            .collect();
        assert_eq!(
            cluster_nodes(&view, Some(&view.intent.nodes[1].id), 9),
            format!(
                "{} 127.0.0.1:6379@16379 master - 0 9 1 connected 0-5460\n\
                 {} 127.0.0.1:6379@16379 myself,master - 0 0 2 connected 5461-10922\n\
                 {} 127.0.0.1:6379@16379 master - 0 9 3 connected 10923-16383\n",
                ids[0], ids[1], ids[2]
            )
        );
        let slots = cluster_slots(&view).to_bytes(Protocol::Resp2);
        let text = String::from_utf8_lossy(&slots);
        assert!(text.starts_with("*3\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:6379\r\n"));
        assert_eq!(text.matches(":6379\r\n").count(), 3);
    }

    #[test]
    fn moving_slots_on_myself_line_only() {
        use crate::topology::SlotMigration;
        let mut t = cluster();
        t.intent.migrations = vec![
            SlotMigration {
                slot: 7,
                source: 0,
                target: 1,
                by_client: false,
            },
            SlotMigration {
                slot: 6000,
                source: 1,
                target: 0,
                by_client: false,
            },
        ];
        let me = t.intent.nodes[0].id.clone();
        let text = cluster_nodes(&t, Some(&me), 9);
        let mine = text.lines().next().unwrap();
        assert!(
            mine.ends_with(&format!(" 0-5460 [7->-{}] [6000-<-{}]", IDS[1], IDS[1])),
            "{mine}"
        );
        assert!(!text.lines().skip(1).any(|l| l.contains('[')));
    }
}
