//! Stage state: typed values, the store interface with its in-memory
//! implementation, and the per-transaction overlay. The RocksDB store is in
//! the `sendgate` crate (`sendgate::state::rocks`), which owns the disk.

pub mod store;
pub mod value;

pub use store::{BaseStore, ChangelogBatch, CopyOnWrite, MemStore, PartitionView, StageStore, StoreError};
pub use value::*;

/// What to tell the operator when a state error is a full disk: the process
/// stops rather than decide on state it cannot keep, and nothing is lost,
/// since the open transaction is never committed and the state is rebuilt
/// from the changelog on the next start.
pub fn disk_full_hint(error: &str) -> Option<&'static str> {
    let full = error.contains("No space left on device") || error.contains("NoSpace");
    full.then_some(
        "the filesystem under state_dir is full; sendgate stops without committing the open transaction (nothing is lost) \
         and restores its state from the changelog when started again once there is space",
    )
}

/// A store I/O error's text, with [`disk_full_hint`] appended when it is one.
pub fn io_error(text: String) -> StoreError {
    match disk_full_hint(&text) {
        Some(hint) => StoreError::Io(format!("{text}: {hint}")),
        None => StoreError::Io(text),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_disk_is_named_in_the_error() {
        assert!(super::disk_full_hint("IO error: No space left on device: While appending to file: 000012.sst").is_some());
        assert!(super::disk_full_hint("Corruption: bad block").is_none());
        assert!(super::io_error("IO error: No space left on device".into()).to_string().contains("the filesystem under state_dir is full"));
        assert!(!super::io_error("Corruption: bad block".into()).to_string().contains("state_dir is full"));
    }
}
