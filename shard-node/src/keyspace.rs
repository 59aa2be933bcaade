//! The per-slot keyspace. (Owned by the data-path work; this stub fixes the interface.)

pub struct Keyspace {}

impl Keyspace {
    pub fn new() -> Keyspace {
        todo!()
    }

    /// Keys held, all slots.
    pub fn len(&self) -> usize {
        todo!()
    }
}
