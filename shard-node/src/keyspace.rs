//! The per-slot keyspace. (Owned by the data-path work.)

pub struct Keyspace {}
