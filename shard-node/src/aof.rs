//! The append-only file: every write, as the RESP command that replays it, fsynced per policy.
//! (Owned by the persistence work; this stub fixes the interface the data path calls.)

use bytes::Bytes;

pub struct Aof {}

impl Aof {
    /// Queues one write for the file. Called while the slot's lock is held, so the file's order
    /// per key is the order of application. Relative expiries must already be absolute.
    pub fn append(&self, args: &[Bytes]) {
        let _ = args;
        todo!()
    }
}
