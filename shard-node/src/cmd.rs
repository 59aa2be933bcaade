//! Commands, one file per family (each with its dispatch table), and the one path every client
//! command takes (`execute`): the shared command table, the cluster rule (`cluster_rule`), then the
//! family's handler (`dispatch`). `replay` applies commands read back from the append-only file.
//!
//! Writes are logged (`Txn::log`) while their slot's lock is held, in a form that replays to the same
//! state whenever it is replayed: relative expiries become absolute, and a write that changed nothing
//! is not logged. The same entries will feed replicas.

pub mod bitfield;
pub mod bits;
pub mod client_session;
pub mod cluster_command;
pub mod cluster_rule;
pub mod cluster_slots;
pub mod config;
pub mod connection;
pub mod context;
pub mod dispatch;
pub mod execute;
pub mod geo;
pub mod hash;
pub mod hyperloglog;
pub mod keys;
pub mod list;
pub mod memory;
pub mod multi_exec;
pub mod parse;
pub mod pqsort;
pub mod pubsub;
pub mod replication;
pub mod server;
pub mod set;
pub mod sort;
pub mod stream;
pub mod string;
pub mod string_range;
pub mod zset;

pub use client_session::ClientSession;
pub use cluster_rule::cluster_recheck;
pub(crate) use cluster_rule::{crossslot, key_slot, route};
pub use context::{Ctx, KnownSlot, Txn};
pub use execute::{apply_moved, execute, replay};
pub(crate) use execute::{container_name, execute_queued};

use tessera_proto::resp::Frame;

/// `ERR unknown subcommand 'x'. Try NAME HELP.` as Redis words it.
pub fn unknown_subcommand(name: &str, sub: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        name.to_ascii_uppercase()
    ))
}

/// `ERR wrong number of arguments for 'client|setname' command` as Redis words it.
pub fn subcommand_arity(name: &str, sub: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{}|{}' command",
        name,
        String::from_utf8_lossy(sub).to_ascii_lowercase()
    ))
}

/// Helpers for the command families' unit tests: a standalone node state and a one-line runner.
#[cfg(test)]
pub(crate) mod testing {
    use bytes::Bytes;
    use tessera_proto::resp::{Frame, Protocol};
    use tessera_proto::topology::{NodeId, NodeSpec, Topology};

    use super::{execute, ClientSession};
    use crate::cluster::ClusterView;
    use crate::keyspace::Keyspace;
    use crate::server::ServerStats;
    use crate::state::NodeState;

    pub const MYSELF: &str = "1111111111111111111111111111111111111111";

    /// A node owning every slot, without persistence.
    pub fn state() -> NodeState {
        let id = NodeId::parse(MYSELF).expect("valid id");
        let node = NodeSpec {
            config_epoch: 1,
            ..NodeSpec::master(id.clone(), "127.0.0.1", 7000)
        };
        let topology = Topology::created(vec![node], vec![Some(0); 16384].into());
        NodeState {
            keyspace: Keyspace::new(),
            cluster: ClusterView::standalone(id, topology),
            aof: None,
            stats: ServerStats::default(),
            config: Default::default(),
            evictor: Default::default(),
            pubsub: Default::default(),
            replication: Default::default(),
            migrate_links: Default::default(),
        }
    }

    /// Runs a space-separated command line and returns the RESP2 reply as text.
    pub fn run(state: &NodeState, line: &str) -> String {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect();
        let reply: Frame = execute(state, &mut ClientSession::detached(), &args);
        String::from_utf8_lossy(&reply.to_bytes(Protocol::Resp2)).into_owned()
    }
}
