//! The node's configuration. (Owned by the cluster work.)

pub struct Config {}
