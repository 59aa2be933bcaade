//! ROLE and INFO replication, field for field as Redis 7.0 prints them (checked against a
//! redis-server master and replica pair: `tests/replication.rs`).

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::{LinkState, ReplicaState, Replication, Role};

/// ROLE: `master`, offset, [ip, port, acked offset] per online replica (strings, as Redis); or
/// `slave`, master host, port, link state, offset (`-1` while it has no master connection).
pub fn role(repl: &Replication) -> Frame {
    let bulk = |s: String| Frame::Bulk(Bytes::from(s));
    match repl.role() {
        Role::Master => {
            let replicas = repl
                .replicas()
                .iter()
                .filter(|r| r.state() == ReplicaState::Online)
                .map(|r| {
                    Frame::Array(vec![
                        bulk(r.ip.clone()),
                        bulk(r.port.to_string()),
                        bulk(r.acked().to_string()),
                    ])
                })
                .collect();
            Frame::Array(vec![
                bulk("master".into()),
                Frame::Integer(repl.offset() as i64),
                Frame::Array(replicas),
            ])
        }
        Role::Replica(master) => {
            let state = repl.link().map_or(LinkState::Connect, |l| l.state());
            let offset = if state == LinkState::Connected {
                repl.offset() as i64
            } else {
                -1
            };
            Frame::Array(vec![
                bulk("slave".into()),
                bulk(master.host),
                Frame::Integer(i64::from(master.port)),
                bulk(state.as_str().into()),
                Frame::Integer(offset),
            ])
        }
    }
}

/// The fields of INFO replication, in Redis 7.0's order.
pub fn info_fields(repl: &Replication) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| fields.push((k.to_string(), v));
    let offset = repl.offset();
    match repl.role() {
        Role::Master => push("role", "master".into()),
        Role::Replica(master) => {
            let link = repl.link();
            let state = link.as_ref().map_or(LinkState::Connect, |l| l.state());
            push("role", "slave".into());
            push("master_host", master.host.clone());
            push("master_port", master.port.to_string());
            push(
                "master_link_status",
                if state == LinkState::Connected {
                    "up"
                } else {
                    "down"
                }
                .into(),
            );
            let last_io = link
                .as_ref()
                .and_then(|l| l.last_io())
                .map_or(-1, |at| at.elapsed().as_secs() as i64);
            push("master_last_io_seconds_ago", last_io.to_string());
            push(
                "master_sync_in_progress",
                u8::from(state == LinkState::Sync).to_string(),
            );
            push("slave_read_repl_offset", offset.to_string());
            push("slave_repl_offset", offset.to_string());
            if state != LinkState::Connected {
                let down = link
                    .as_ref()
                    .and_then(|l| l.down_since())
                    .map_or(-1, |at| at.elapsed().as_secs() as i64);
                push("master_link_down_since_seconds", down.to_string());
            }
            push("slave_priority", "100".into());
            push("slave_read_only", "1".into());
            push("replica_announced", "1".into());
        }
    }
    let replicas = repl.replicas();
    push("connected_slaves", replicas.len().to_string());
    for (i, r) in replicas.iter().enumerate() {
        let state = match r.state() {
            ReplicaState::WaitBgsave => "wait_bgsave",
            ReplicaState::SendBulk => "send_bulk",
            ReplicaState::Online => "online",
        };
        push(
            &format!("slave{i}"),
            format!(
                "ip={},port={},state={state},offset={},lag={}",
                r.ip,
                r.port,
                r.acked(),
                r.last_ack().elapsed().as_secs()
            ),
        );
    }
    let ids = repl.ids();
    let (size, first, histlen) = repl.log.backlog_info();
    push("master_failover_state", "no-failover".into());
    push("master_replid", ids.replid);
    push("master_replid2", ids.replid2);
    push("master_repl_offset", offset.to_string());
    push("second_repl_offset", ids.second_offset.to_string());
    push("repl_backlog_active", "1".into());
    push("repl_backlog_size", size.to_string());
    push(
        "repl_backlog_first_byte_offset",
        if histlen == 0 { 0 } else { first }.to_string(),
    );
    push("repl_backlog_histlen", histlen.to_string());
    fields
}
