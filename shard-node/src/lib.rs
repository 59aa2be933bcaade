//! Tessera's shard node: a RESP server holding the keys of the hash slots the control plane assigns
//! it, kept on disk in an append-only file, and answering MOVED / CLUSTERDOWN by the shared rule.
//!
//! Layout: `node` wires everything (`run`); `cluster` follows the control plane (registration,
//! topology watch, heartbeats, peer probes, write lease); `aof` persists writes; `replication`
//! holds the ordered write log every write goes through and serves or follows a master; `server` and
//! `connection` speak RESP to clients; `cmd` holds one file per command family; `keyspace` is the
//! per-slot store; `config` is the CLI/env configuration, `node_id` the id kept on disk, and `error`
//! the typed errors.

pub mod allocator;
pub mod aof;
pub mod bus;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod error;
pub mod evict;
pub mod hll;
pub mod keyspace;
pub mod migrate;
pub mod node;
pub mod node_id;
pub mod pubsub;
pub mod rdb;
pub mod replication;
pub mod server;
pub mod state;
pub mod transaction;

pub use config::Config;
pub use node::run;
