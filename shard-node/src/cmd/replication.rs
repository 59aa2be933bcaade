//! Replication commands on the client port: REPLICAOF / SLAVEOF (refused, as on a Redis cluster
//! node: roles come from the topology, through `Replication::follow` / `promote`), ROLE and WAIT.
//! PSYNC and REPLCONF are node-internal and served on the cluster bus only (`bus`).

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::parse::{err, parse_i64};
use super::{ClientSession, Ctx};
use crate::replication::{report, Replication, WaitFor};

/// Redis's replicaofCommand in cluster mode, for REPLICAOF and SLAVEOF alike.
pub fn replicaof() -> Frame {
    err("ERR REPLICAOF not allowed in cluster mode.")
}

pub fn role(ctx: &Ctx<'_>) -> Frame {
    report::role(&ctx.state.replication)
}

/// WAIT numreplicas timeout, as Redis 7.0's waitCommand: on a replica an error; else the number
/// of replicas that acknowledged this client's last write, at once when enough have (or the
/// client may not block), otherwise once enough have or the timeout (ms, 0: none) passed. The
/// blocking part is the connection's (`session.waiting`).
pub fn wait(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let repl = &ctx.state.replication;
    match wait_for(repl, args, session.woff) {
        Err(reply) => reply,
        Ok(Err(acked)) => Frame::Integer(acked as i64),
        Ok(Ok(_)) if session.deny_blocking => Frame::Integer(repl.count_acked(session.woff) as i64),
        Ok(Ok(wait)) => {
            session.waiting = Some(wait);
            repl.request_acks();
            // Not sent: the connection answers once the wait is over.
            Frame::Null
        }
    }
}

/// WAIT numreplicas timeout for everything up to `offset`, checked as Redis 7.0's waitCommand
/// (its errors, in its order): the count at once when enough replicas acknowledged `offset`
/// (`Ok(Err)`), else what to wait for (`Ok(Ok)`). The client's WAIT and the cluster bus's (for
/// the proxy) share it.
pub(crate) fn wait_for(
    repl: &Replication,
    args: &[Bytes],
    offset: u64,
) -> Result<Result<WaitFor, usize>, Frame> {
    if repl.is_replica() {
        return Err(err(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis \
             4.0 if a replica is configured to be writable (which is not the default) writes to \
             replicas are just local and are not propagated.",
        ));
    }
    let Some(replicas) = parse_i64(&args[1]) else {
        return Err(err("ERR value is not an integer or out of range"));
    };
    let Some(timeout) = parse_i64(&args[2]) else {
        return Err(err("ERR timeout is not an integer or out of range"));
    };
    if timeout < 0 {
        return Err(err("ERR timeout is negative"));
    }
    let acked = repl.count_acked(offset);
    if replicas <= acked as i64 {
        return Ok(Err(acked));
    }
    let deadline = (timeout > 0)
        .then(|| tokio::time::Instant::now() + std::time::Duration::from_millis(timeout as u64));
    Ok(Ok(WaitFor {
        offset,
        replicas: replicas as usize,
        deadline,
    }))
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("replicaof", |_, _, _| replicaof()),
    ("slaveof", |_, _, _| replicaof()),
    ("role", |ctx, _, _| role(ctx)),
    ("wait", wait),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn a_standalone_master_answers_as_redis() {
        let s = state();
        assert_eq!(
            run(&s, "REPLICAOF NO ONE"),
            "-ERR REPLICAOF not allowed in cluster mode.\r\n"
        );
        assert_eq!(
            run(&s, "SLAVEOF 127.0.0.1 6379"),
            "-ERR REPLICAOF not allowed in cluster mode.\r\n"
        );
        assert_eq!(run(&s, "ROLE"), "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
        run(&s, "SET a 1");
        assert_eq!(run(&s, "ROLE"), "*3\r\n$6\r\nmaster\r\n:27\r\n*0\r\n");
        // No replica: a detached session cannot block, so it answers at once.
        assert_eq!(run(&s, "WAIT 1 0"), ":0\r\n");
        assert_eq!(run(&s, "WAIT 0 0"), ":0\r\n");
        assert_eq!(
            run(&s, "WAIT x 0"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&s, "WAIT 1 x"),
            "-ERR timeout is not an integer or out of range\r\n"
        );
        assert_eq!(run(&s, "WAIT 1 -1"), "-ERR timeout is negative\r\n");
        let info = run(&s, "INFO replication");
        assert!(info.contains("role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:"), "{info}");
        assert!(info.contains("master_repl_offset:27\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:27\r\n"), "{info}");
    }
}
