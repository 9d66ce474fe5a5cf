//! Stage state: typed values, the store interface with its RocksDB and
//! in-memory implementations, and the per-transaction overlay.

pub mod rocks;
pub mod store;
pub mod value;

pub use store::{BaseStore, CopyOnWrite, MemStore, PartitionView, StageStore, StoreError};
pub use value::*;
