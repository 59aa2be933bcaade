//! Commands, one file per family. (Owned by the data-path work; this stub fixes the interface.)

use bytes::Bytes;

use crate::state::NodeState;

/// Applies one command read back from the append-only file: no cluster checks, not logged again.
/// Errs with Redis's error text when the command is not a valid write.
pub fn replay(state: &NodeState, args: Vec<Bytes>) -> Result<(), String> {
    let _ = (state, args);
    todo!()
}
