//! Wires a node together: node id, AOF replay, control plane registration, then serving.
//! (Owned by the cluster work.)

pub async fn run() {}
