//! What every Tessera service shares about the wire: the gRPC API (`pb`), the RESP codec (`resp`),
//! the control plane's client (`control_plane`), a client of etcd's v3 API (`etcd`, for the control
//! plane's etcd store), key -> slot hashing (`slot`), the command table
//! (`command`) and the cluster topology with its Redis renderings (`topology`); and how every
//! binary starts (`process`: logs and runtime).

/// The Redis version Tessera's servers answer as (INFO's redis_version, HELLO's version): the
/// redis-server whose replies are the specification (Debian's 7.0 package).
pub const REDIS_VERSION: &str = "7.0.15";

pub mod client;
pub mod command;
pub mod control_plane;
pub mod etcd;
pub mod glob;
pub mod long_double;
pub mod output_budget;
pub mod pb;
pub mod process;
pub mod resp;
pub mod service_flags;
pub mod slot;
pub mod topology;
