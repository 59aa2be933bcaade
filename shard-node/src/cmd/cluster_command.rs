//! CLUSTER subcommands answered from the topology the control plane publishes: INFO NODES SLOTS
//! SHARDS REPLICAS SLAVES MYID KEYSLOT COUNTKEYSINSLOT GETKEYSINSLOT; FAILOVER and REPLICATE are
//! checked here and carried out by the control plane, and so are SETSLOT, ADDSLOTS, DELSLOTS and
//! their RANGE forms (`cluster_slots`).

use bytes::Bytes;
use tessera_proto::pb;
use tessera_proto::resp::Frame;
use tessera_proto::slot::{key_hash_slot, SLOT_COUNT};
use tessera_proto::topology::{render, NodeId, Role};

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_NOT_INTEGER};
use super::{cluster_slots, subcommand_arity, unknown_subcommand, ClientSession, Ctx};
use crate::keyspace::now_ms;

pub fn cluster(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    // Redis's resharding protocol: the table has checked the arity.
    match lower.as_str() {
        "setslot" => return cluster_slots::setslot(ctx, session, args),
        "addslots" => return cluster_slots::assign(ctx, session, args, false, false),
        "delslots" => return cluster_slots::assign(ctx, session, args, true, false),
        "addslotsrange" => return cluster_slots::assign(ctx, session, args, false, true),
        "delslotsrange" => return cluster_slots::assign(ctx, session, args, true, true),
        _ => {}
    }
    if lower == "failover" {
        return match args.len() {
            2 | 3 => failover(ctx, args.get(2)),
            _ => subcommand_arity("cluster", sub),
        };
    }
    let want = match lower.as_str() {
        "info" | "nodes" | "slots" | "shards" | "myid" | "help" => 2,
        "keyslot" | "countkeysinslot" | "replicas" | "slaves" | "replicate" => 3,
        "getkeysinslot" => 4,
        _ => return unknown_subcommand("cluster", sub),
    };
    if args.len() != want {
        return subcommand_arity("cluster", sub);
    }
    let view = &ctx.state.cluster;
    match lower.as_str() {
        "info" => {
            let topology = view.topology();
            let text = render::cluster_info(&topology, Some(view.myself()), &view.message_stats());
            Frame::Verbatim(Bytes::from(text))
        }
        "nodes" => {
            let topology = view.topology();
            Frame::Verbatim(Bytes::from(render::cluster_nodes(
                &topology,
                Some(view.myself()),
                now_ms(),
            )))
        }
        "slots" => render::cluster_slots(&view.topology()),
        "shards" => {
            // This node's own offset is known here, fresher than the topology's last report.
            let mut topology = (*view.topology()).clone();
            if let Some(i) = topology.index_of(view.myself()) {
                if let Some(status) = topology.observed.nodes.get_mut(i) {
                    status.replication_offset = ctx.state.replication.offset();
                }
            }
            render::cluster_shards(&topology)
        }
        "replicas" | "slaves" => {
            let id = String::from_utf8_lossy(&args[2]);
            render::cluster_replicas(&view.topology(), Some(view.myself()), &id, now_ms())
                .unwrap_or_else(|error| Frame::error(error.to_string()))
        }
        "myid" => Frame::Bulk(Bytes::copy_from_slice(view.myself().as_str().as_bytes())),
        "keyslot" => Frame::Integer(i64::from(key_hash_slot(&args[2]))),
        "countkeysinslot" => match slot_arg(&args[2]) {
            Ok(slot) => Frame::Integer(ctx.state.keyspace.count_in_slot(slot) as i64),
            Err(e) => e,
        },
        "getkeysinslot" => getkeysinslot(ctx, &args[2], &args[3]),
        "replicate" => replicate(ctx, &args[2]),
        _ => help(),
    }
}

fn slot_arg(text: &[u8]) -> Result<u16, Frame> {
    let n = parse::parse_i64(text).ok_or_else(|| err(ERR_NOT_INTEGER))?;
    if !(0..i64::from(SLOT_COUNT)).contains(&n) {
        return Err(err("ERR Invalid slot"));
    }
    Ok(n as u16)
}

fn getkeysinslot(ctx: &Ctx<'_>, slot: &[u8], count: &[u8]) -> Frame {
    let Some(slot) = parse::parse_i64(slot) else {
        return err(ERR_NOT_INTEGER);
    };
    let Some(count) = parse::parse_i64(count) else {
        return err(ERR_NOT_INTEGER);
    };
    if !(0..i64::from(SLOT_COUNT)).contains(&slot) || count < 0 {
        return err("ERR Invalid slot or number of keys");
    }
    let guard = ctx.state.keyspace.lock(slot as u16);
    Frame::Array(
        guard
            .keys()
            .take(count as usize)
            .map(|k| Frame::Bulk(Bytes::copy_from_slice(k)))
            .collect(),
    )
}

/// CLUSTER FAILOVER [FORCE|TAKEOVER], sent to a replica: checked here with Redis's errors, then
/// handed to the control plane, which decides and fences every failover
/// (`control-plane/src/failover.rs`); +OK once accepted, as Redis answers before the failover
/// completes.
fn failover(ctx: &Ctx<'_>, option: Option<&Bytes>) -> Frame {
    let mode = match option {
        None => pb::FailoverMode::Default,
        Some(o) if parse::eq(o, "force") => pb::FailoverMode::Force,
        Some(o) if parse::eq(o, "takeover") => pb::FailoverMode::Takeover,
        Some(_) => return err(parse::ERR_SYNTAX),
    };
    let view = &ctx.state.cluster;
    let topology = view.topology();
    let Some(master) = view.assigned_role().master().cloned() else {
        return err("ERR You should send CLUSTER FAILOVER to a replica");
    };
    if topology.node(&master).is_none() {
        return err("ERR I'm a replica but my master is unknown to me");
    }
    let status = topology.status(&master);
    if mode == pb::FailoverMode::Default && (status.fail || status.pfail) {
        return err("ERR Master is down or failed, please use CLUSTER FAILOVER FORCE");
    }
    let Some(mut client) = view.control_plane() else {
        return err("ERR no control plane to ask for the failover");
    };
    let request = pb::FailoverRequest {
        replica_id: view.myself().to_string(),
        mode: mode as i32,
    };
    tokio::spawn(async move {
        match client.failover(request).await {
            Ok(_) => tracing::info!("failover done: this node is master"),
            Err(status) => tracing::warn!(error = %status.message(), "failover refused or failed"),
        }
    });
    Frame::ok()
}

/// CLUSTER REPLICATE <node-id>: checked here with Redis's errors, then asked of the control plane
/// (AddReplica); the role comes with the topology it publishes.
fn replicate(ctx: &Ctx<'_>, id: &Bytes) -> Frame {
    let view = &ctx.state.cluster;
    let topology = view.topology();
    let text = String::from_utf8_lossy(id);
    let Some(master) = NodeId::parse(&text).ok().and_then(|id| topology.node(&id)) else {
        return Frame::error(format!("ERR Unknown node {text}"));
    };
    if &master.id == view.myself() {
        return err("ERR Can't replicate myself");
    }
    if master.role == Role::Replica {
        return err("ERR I can only replicate a master, not a replica.");
    }
    let Some(me) = topology.node(view.myself()) else {
        return err("ERR this node is not in the cluster yet");
    };
    let my_index = topology.index_of(view.myself()).map(|i| i as u16);
    let owns_slots = my_index.is_some() && topology.intent.slots.contains(&my_index);
    if me.role == Role::Master && (owns_slots || !ctx.state.keyspace.is_empty()) {
        return err("ERR To set a master the node must be empty and without assigned slots.");
    }
    let Some(mut client) = view.control_plane() else {
        return err("ERR no control plane to ask");
    };
    let request = pb::AddReplicaRequest {
        address: me.address(),
        master_id: master.id.to_string(),
    };
    tokio::spawn(async move {
        if let Err(status) = client.add_replica(request).await {
            tracing::warn!(error = %status.message(), "CLUSTER REPLICATE refused");
        }
    });
    Frame::ok()
}

fn help() -> Frame {
    Frame::Array(
        [
            "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ADDSLOTS <slot> [<slot> ...]",
            "    Assign slots to current node.",
            "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
            "    Assign slots which are between <start-slot> and <end-slot> to current node.",
            "COUNTKEYSINSLOT <slot>",
            "    Return the number of keys in <slot>.",
            "DELSLOTS <slot> [<slot> ...]",
            "    Delete slots information from current node.",
            "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
            "    Delete slots information which are between <start-slot> and <end-slot> from current node.",
            "FAILOVER [FORCE|TAKEOVER]",
            "    Promote current replica node to being a master.",
            "GETKEYSINSLOT <slot> <count>",
            "    Return key names stored by current node in a slot.",
            "INFO",
            "    Return information about the cluster.",
            "KEYSLOT <key>",
            "    Return the hash slot for <key>.",
            "MYID",
            "    Return the node id.",
            "NODES",
            "    Return cluster configuration seen by node. Output format:",
            "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
            "REPLICATE <node-id>",
            "    Configure current node as replica to <node-id>.",
            "REPLICAS <node-id>",
            "    Return <node-id> replicas.",
            "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
            "    Set slot state.",
            "SLOTS",
            "    Return information about slots range mappings. Each range is made of:",
            "    start, end, master and replicas IP addresses, ports and ids",
            "SHARDS",
            "    Return information about slot range mappings and the nodes associated with them.",
            "HELP",
            "    Print this help.",
        ]
        .iter()
        .map(|line| Frame::Simple(Bytes::from_static(line.as_bytes())))
        .collect(),
    )
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("cluster", cluster),
    ("readonly", |_, session, _| {
        session.readonly = true;
        Frame::ok()
    }),
    ("readwrite", |_, session, _| {
        session.readonly = false;
        Frame::ok()
    }),
    ("asking", |_, session, _| {
        session.asking = true;
        Frame::ok()
    }),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn slot_arguments_are_checked_as_redis() {
        let s = state();
        assert_eq!(run(&s, "CLUSTER KEYSLOT foo{hash_tag}"), ":2515\r\n");
        assert_eq!(
            run(&s, "CLUSTER COUNTKEYSINSLOT -1"),
            "-ERR Invalid slot\r\n"
        );
        assert_eq!(
            run(&s, "CLUSTER GETKEYSINSLOT 16384 1"),
            "-ERR Invalid slot or number of keys\r\n"
        );
        assert_eq!(
            run(&s, "CLUSTER GETKEYSINSLOT 1 x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        run(&s, "SET {x}1 a");
        run(&s, "SET {x}2 a");
        assert_eq!(run(&s, "CLUSTER COUNTKEYSINSLOT 16287"), ":2\r\n");
        assert_eq!(
            run(&s, "CLUSTER GETKEYSINSLOT 16287 1").lines().next(),
            Some("*1")
        );
    }

    #[test]
    fn replicas_and_their_errors_as_redis() {
        use tessera_proto::topology::{NodeId, NodeSpec, Role, Topology};

        use crate::cluster::ClusterView;
        use crate::cmd::testing::MYSELF;

        let me = NodeId::parse(MYSELF).unwrap();
        let master = NodeId::from_random_bytes([2; 20]);
        let topology = Topology::created(
            vec![
                NodeSpec {
                    config_epoch: 3,
                    ..NodeSpec::master(master.clone(), "127.0.0.1", 7001)
                },
                NodeSpec {
                    role: Role::Replica,
                    master_id: Some(master.clone()),
                    ..NodeSpec::master(me.clone(), "127.0.0.1", 7000)
                },
            ],
            vec![Some(0); 16384].into(),
        );
        let mut s = state();
        s.cluster = ClusterView::standalone(me.clone(), topology);
        for sub in ["REPLICAS", "SLAVES"] {
            assert_eq!(
                run(&s, &format!("CLUSTER {sub} {master}")),
                format!(
                    "*1\r\n$131\r\n{me} 127.0.0.1:7000@17000 myself,slave {master} 0 0 3 connected\r\n"
                )
            );
        }
        assert_eq!(
            run(&s, &format!("CLUSTER REPLICAS {me}")),
            "-ERR The specified node is not a master\r\n"
        );
        assert_eq!(run(&s, "CLUSTER REPLICAS abc"), "-ERR Unknown node abc\r\n");
        assert_eq!(
            run(&s, "CLUSTER REPLICAS"),
            "-ERR wrong number of arguments for 'cluster|replicas' command\r\n"
        );
        // A client writing (or reading, without READONLY) to a replica is sent to its master.
        assert_eq!(run(&s, "SET foo 1"), "-MOVED 12182 127.0.0.1:7001\r\n");
        assert_eq!(run(&s, "GET foo"), "-MOVED 12182 127.0.0.1:7001\r\n");
        assert_eq!(s.cluster.my_master(), Some(master));
    }
}
