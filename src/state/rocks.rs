//! RocksDB as the base store of a stage.
//!
//! The write-ahead log is off: the changelog topic is the durable copy, and a
//! batch carries its checkpoint with it. After a crash RocksDB comes back at
//! a consistent earlier batch (one column family, atomic batches), and the
//! restore replays the changelog from that batch's checkpoint.

use super::store::{full_key, BaseStore, ChangelogBatch, StoreError};
use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use std::path::Path;

pub struct RocksStore {
    db: DB,
    clean_marker: std::path::PathBuf,
}

/// Written after a clean close, removed while running. Without it the store
/// may be at any earlier batch (no WAL), and a compacted changelog may no
/// longer hold the tombstones needed to replay from that batch's checkpoint:
/// so an unclean store is wiped and restored from the changelog in full.
const CLEAN_MARKER: &str = "CLEAN_SHUTDOWN";

fn io(e: rocksdb::Error) -> StoreError {
    super::io_error(e.to_string())
}

impl RocksStore {
    /// Opens the store with 64 MiB memtables; returns whether it was wiped
    /// because the last stop was not clean.
    pub fn open(path: &Path) -> Result<(Self, bool), StoreError> {
        Self::open_with(path, DEFAULT_WRITE_BUFFER_BYTES)
    }

    /// As `open`, with memtables of `write_buffer_bytes` (at most two): the
    /// memory a stage's state holds before it is flushed to disk.
    pub fn open_with(path: &Path, write_buffer_bytes: usize) -> Result<(Self, bool), StoreError> {
        let clean_marker = path.with_file_name(format!("{}.{CLEAN_MARKER}", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
        let wiped = path.exists() && !clean_marker.exists();
        if wiped {
            std::fs::remove_dir_all(path).map_err(|e| StoreError::Io(format!("cannot wipe {} after an unclean stop: {e}", path.display())))?;
        }
        let _ = std::fs::remove_file(&clean_marker);
        std::fs::create_dir_all(path).map_err(|e| super::io_error(format!("cannot create {}: {e}", path.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Two cores: one background job each for flush and compaction is plenty.
        opts.set_max_background_jobs(2);
        // Bounded memory: memtables of write_buffer_bytes, at most 2 of them.
        opts.set_write_buffer_size(write_buffer_bytes);
        opts.set_max_write_buffer_number(2);
        opts.set_max_open_files(256);
        // Most reads of a stage ask for a key that is not there (a first
        // intent of a recipient, a content fingerprint, an idempotency key):
        // bloom filters answer those without searching the memtables and
        // every level's index and data blocks.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        let db = DB::open(&opts, path).map_err(|e| super::io_error(format!("cannot open RocksDB at {}: {e}", path.display())))?;
        Ok((RocksStore { db, clean_marker }, wiped))
    }
}

/// The memtable size unless configured (`state_write_buffer_mb`).
pub const DEFAULT_WRITE_BUFFER_BYTES: usize = 64 << 20;

/// The smallest key greater than every key with this prefix.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

impl RocksStore {
    /// Keys and values from `start` on, in key order, at most `limit`.
    pub fn scan_from(&self, start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator(rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(io)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

impl RocksStore {
    /// One atomic batch of puts (Some) and deletes (None), without the WAL
    /// (see the module's note).
    fn write_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, pairs: impl IntoIterator<Item = (K, Option<V>)>) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for (k, v) in pairs {
            match v {
                Some(v) => wb.put(k, v),
                None => wb.delete(k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(wb, &wo).map_err(io)
    }
}

impl BaseStore for RocksStore {
    /// The live data's estimated size plus the memtables': what the state
    /// takes, without the files compaction is about to delete.
    fn approximate_bytes(&self) -> Option<u64> {
        let live = self.db.property_int_value("rocksdb.estimate-live-data-size").ok().flatten()?;
        let mem = self.db.property_int_value("rocksdb.cur-size-all-mem-tables").ok().flatten().unwrap_or(0);
        Some(live + mem)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key).map_err(io)
    }

    fn write(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        self.write_pairs(batch)
    }

    /// Compactions off while a restore writes, on again after (see the
    /// restore in `runtime::stage_task`). With them off RocksDB also stops
    /// slowing writes for the level-0 files that pile up; those are merged
    /// once compactions resume.
    fn bulk_load(&self, on: bool) -> Result<(), StoreError> {
        self.db.set_options(&[("disable_auto_compactions", if on { "true" } else { "false" })]).map_err(io)
    }

    /// Keys and values go from the batch's buffer into RocksDB's own, with
    /// no copy between.
    fn write_changelog(&self, batch: &ChangelogBatch) -> Result<(), StoreError> {
        self.write_pairs(batch.iter())
    }

    fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        // Bounded above by the prefix's successor, so the iterator never
        // walks past the range (over other keys' tombstones).
        let mut ro = rocksdb::ReadOptions::default();
        if let Some(upper) = successor(prefix) {
            ro.set_iterate_upper_bound(upper);
        }
        let mut out = Vec::new();
        for item in self.db.iterator_opt(rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward), ro) {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn drop_partition(&self, partition: i32) -> Result<(), StoreError> {
        let from = full_key(partition, b"");
        let to = full_key(partition + 1, b"");
        let mut wb = WriteBatch::default();
        wb.delete_range(from, to);
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(wb, &wo).map_err(io)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(io)?;
        std::fs::write(&self.clean_marker, b"").map_err(|e| super::io_error(format!("cannot write {}: {e}", self.clean_marker.display())))
    }
}
