//! Accept loop and server-wide counters. (Owned by the data-path work.)

#[derive(Default)]
pub struct ServerStats {}
