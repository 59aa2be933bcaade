//! Accept loop and server-wide counters. (Owned by the data-path work; this stub fixes the
//! interface.)

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::NodeState;

#[derive(Default)]
pub struct ServerStats {}

/// Serves clients on `listener` until `shutdown` is cancelled, then stops accepting, lets every
/// connection finish the commands it has read and write their replies, and returns once all
/// connection tasks have ended.
pub async fn serve(listener: TcpListener, state: Arc<NodeState>, shutdown: CancellationToken) {
    let _ = (listener, state, shutdown);
    todo!()
}
