//! Code generated from `proto/tessera/cluster/v2/cluster.proto`. Handlers convert these to the
//! domain types of `topology` at the boundary and never pass them inward.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("tessera.cluster.v2");

/// Encoded descriptor set of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tessera_descriptor.bin"));
