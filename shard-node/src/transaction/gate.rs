//! The per-slot exclusion that makes EXEC atomic: every keyed command holds its slot's gate shared
//! while it runs, EXEC holds it exclusively for the whole transaction. Commands keep taking the
//! slot's lock per command as before, so commands that lock other slots (FLUSHALL, KEYS) can run
//! inside a transaction without deadlocking.
//!
//! Lock order: a gate is always taken before any slot lock, and several gates only in ascending
//! slot order (`enter_all`), and nobody holding a gate exclusively waits on another gate.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tessera_proto::slot::SLOT_COUNT;

pub struct SlotGates {
    gates: Box<[RwLock<()>]>,
}

impl Default for SlotGates {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotGates {
    pub fn new() -> SlotGates {
        SlotGates {
            gates: (0..SLOT_COUNT).map(|_| RwLock::new(())).collect(),
        }
    }

    /// Held by one command on `slot`: waits while a transaction runs there.
    pub fn enter(&self, slot: u16) -> RwLockReadGuard<'_, ()> {
        self.gates[(slot % SLOT_COUNT) as usize].read()
    }

    /// Held by a command that writes every slot (FLUSHALL): waits for running transactions.
    pub fn enter_all(&self) -> Vec<RwLockReadGuard<'_, ()>> {
        self.gates.iter().map(|gate| gate.read()).collect()
    }

    /// Waits until every command that holds a gate now has finished (each gate taken exclusively
    /// in turn, then released): a barrier after which no write that started before it runs.
    pub fn wait_for_commands(&self) {
        for gate in self.gates.iter() {
            drop(gate.write());
        }
    }

    /// Held by EXEC for its whole transaction on `slot`.
    pub fn exclusive(&self, slot: u16) -> RwLockWriteGuard<'_, ()> {
        self.gates[(slot % SLOT_COUNT) as usize].write()
    }
}
