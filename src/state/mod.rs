//! Stage state: the core's store interface, in-memory store and transaction
//! overlay ([`sendgate_core::state`]), and the RocksDB store that keeps a
//! stage partition's state on disk ([`rocks`]).

pub use sendgate_core::state::*;

pub mod rocks;
