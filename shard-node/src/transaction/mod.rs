//! What MULTI / EXEC need below the commands (the commands themselves are `cmd::multi_exec`):
//!
//! - `gate`: a per-slot exclusion every keyed command passes through, which EXEC takes for the
//!   whole transaction, so no other client's command on that slot runs between its commands while
//!   each command still takes the slot's lock as it always does (a keyless command such as
//!   FLUSHALL inside EXEC would otherwise deadlock on a slot lock held across the transaction);
//! - `watch`: WATCH's record of which keys a client watches, marked as Redis's touchWatchedKey
//!   marks them when a write changes one;
//! - `Multi`: the commands a client queued since MULTI;
//! - `Unit`: the writes of a running EXEC, kept back so they reach the append-only file as one
//!   MULTI ... EXEC unit (never interleaved with other clients' writes, which a crash could cut).

pub mod gate;
pub mod watch;

use std::cell::RefCell;

use bytes::Bytes;
use tessera_proto::command::CommandSpec;

pub use gate::SlotGates;
pub use watch::{WatchRegistry, Watched};

/// A command queued between MULTI and EXEC, already resolved and checked.
pub struct Queued {
    pub spec: &'static CommandSpec,
    pub args: Vec<Bytes>,
}

/// A client's open transaction.
#[derive(Default)]
pub struct Multi {
    pub queued: Vec<Queued>,
    /// Redis's CLIENT_DIRTY_EXEC: a command was refused while queueing, so EXEC answers
    /// EXECABORT.
    pub refused: bool,
}

/// The writes of one EXEC, in order, appended to the log when it ends.
#[derive(Default)]
pub struct Unit {
    records: RefCell<Vec<Vec<Bytes>>>,
}

impl Unit {
    pub fn push(&self, args: &[Bytes]) {
        self.records.borrow_mut().push(args.to_vec());
    }

    /// The records to log: one write alone, several wrapped in MULTI ... EXEC so that replay
    /// applies all or none of them.
    pub fn into_records(self) -> Vec<Vec<Bytes>> {
        let mut records = self.records.into_inner();
        if records.len() > 1 {
            records.insert(0, vec![Bytes::from_static(b"MULTI")]);
            records.push(vec![Bytes::from_static(b"EXEC")]);
        }
        records
    }
}
