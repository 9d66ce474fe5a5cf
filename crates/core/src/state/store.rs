//! The key-value store beneath a stage, and the transaction overlay above it.
//!
//! `BaseStore` is the durable materialisation (RocksDB, or memory for tests
//! and replays). It only ever receives writes that Kafka has committed:
//! during a transaction, writes live in the `Overlay`; at commit they become
//! changelog records inside the Kafka transaction, and only after the commit
//! succeeds are they written to the base store together with the changelog
//! checkpoint. So local state is never ahead of the committed log.

use super::value::StateValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store I/O failed: {0}")]
    Io(String),
    #[error("state value under {key:?} does not decode: {why}")]
    Corrupt { key: String, why: String },
}

/// Keys are namespaced by stage partition: 4 bytes big-endian, then the key.
pub fn full_key(partition: i32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&(partition as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Reserved in-partition key of the changelog checkpoint (next offset to read).
pub const CHECKPOINT_KEY: &[u8] = b"\x00checkpoint";

pub trait BaseStore: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically applies puts (Some) and deletes (None).
    fn write(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError>;
    /// Keys and values with this prefix, from `from` (itself under the
    /// prefix) on, in key order, at most `limit`.
    fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;
    /// Removes every key of a partition (state handed to another instance, or wiped).
    fn drop_partition(&self, partition: i32) -> Result<(), StoreError>;
    /// Makes everything written so far durable (clean shutdown).
    fn flush(&self) -> Result<(), StoreError>;

    /// The store's size on disk and in memory (bytes), when it can tell.
    fn approximate_bytes(&self) -> Option<u64> {
        None
    }

    fn checkpoint(&self, partition: i32) -> Result<Option<i64>, StoreError> {
        Ok(self.get(&full_key(partition, CHECKPOINT_KEY))?.and_then(|b| b.try_into().ok()).map(i64::from_be_bytes))
    }

    /// A restore is about to write a changelog in bulk (`true`), or is
    /// done (`false`): a store that compacts may hold compactions back
    /// meanwhile.
    fn bulk_load(&self, _on: bool) -> Result<(), StoreError> {
        Ok(())
    }

    /// Atomically applies committed changelog records (see
    /// `ChangelogBatch`). A store that can take borrowed keys and values
    /// (RocksDB copies them into its own batch) overrides this.
    fn write_changelog(&self, batch: &ChangelogBatch) -> Result<(), StoreError> {
        self.write(batch.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect())
    }
}

/// Committed changelog records on their way into the base store, in a
/// restore or a standby replica: every full key (partition prefix
/// included) and value in one buffer that is reused batch after batch.
/// Each record used to be three allocations and three copies (its key and
/// value taken from the consumer's message, the key again with its prefix)
/// before RocksDB copied it once more; a restore is millions of records.
#[derive(Default)]
pub struct ChangelogBatch {
    bytes: Vec<u8>,
    /// Per record: where its full key ends in `bytes`, and where its value
    /// ends (None: a tombstone). Each starts where the one before ended.
    ends: Vec<(usize, Option<usize>)>,
}

impl ChangelogBatch {
    pub fn push(&mut self, partition: i32, key: &[u8], value: Option<&[u8]>) {
        self.bytes.extend_from_slice(&(partition as u32).to_be_bytes());
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        let value_end = value.map(|v| {
            self.bytes.extend_from_slice(v);
            self.bytes.len()
        });
        self.ends.push((key_end, value_end));
    }

    /// The partition's changelog checkpoint: the offset to resume from.
    pub fn push_checkpoint(&mut self, partition: i32, next_offset: i64) {
        self.push(partition, CHECKPOINT_KEY, Some(&next_offset.to_be_bytes()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Empties the batch and keeps its buffers for the next.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// (full key, value or None for a tombstone), in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let key = &self.bytes[start..key_end];
            let value = value_end.map(|end| &self.bytes[key_end..end]);
            start = value_end.unwrap_or(key_end);
            (key, value)
        })
    }
}

/// In-memory base store: tests, the topology driver and scratch replays.
#[derive(Default)]
pub struct MemStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl BaseStore for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().expect("not poisoned").get(key).cloned())
    }
    fn write(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut m = self.map.lock().expect("not poisoned");
        for (k, v) in batch {
            match v {
                Some(v) => m.insert(k, v),
                None => m.remove(&k),
            };
        }
        Ok(())
    }
    fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let m = self.map.lock().expect("not poisoned");
        Ok(m.range(from.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
    fn drop_partition(&self, partition: i32) -> Result<(), StoreError> {
        let prefix = full_key(partition, b"");
        self.map.lock().expect("not poisoned").retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Uncommitted writes of one partition, in first-write order (so the
/// changelog records of a transaction come out in a deterministic order).
#[derive(Default)]
pub struct Overlay {
    /// Ordered, so that a prefix scan of the overlay is a range query.
    index: BTreeMap<Vec<u8>, usize>,
    /// (key, value or tombstone); a slot no longer in the index was rolled back.
    entries: Vec<(Vec<u8>, Option<StateValue>)>,
    /// The current record's writes: (key, what the overlay held before, if anything).
    journal: Vec<(Vec<u8>, Option<Option<StateValue>>)>,
}

impl Overlay {
    fn get(&self, key: &[u8]) -> Option<&Option<StateValue>> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }
    fn set(&mut self, key: &[u8], value: Option<StateValue>) {
        match self.index.get(key) {
            Some(&i) => {
                let before = std::mem::replace(&mut self.entries[i].1, value);
                self.journal.push((key.to_vec(), Some(before)));
            }
            None => {
                self.index.insert(key.to_vec(), self.entries.len());
                self.entries.push((key.to_vec(), value));
                self.journal.push((key.to_vec(), None));
            }
        }
    }
    /// Undoes the current record's writes.
    fn rollback(&mut self) {
        while let Some((key, before)) = self.journal.pop() {
            match before {
                Some(v) => {
                    if let Some(&i) = self.index.get(&key) {
                        self.entries[i].1 = v;
                    }
                }
                None => {
                    self.index.remove(&key);
                }
            }
        }
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    fn take(&mut self) -> Vec<(Vec<u8>, Option<StateValue>)> {
        let index = std::mem::take(&mut self.index);
        self.journal.clear();
        std::mem::take(&mut self.entries).into_iter().enumerate().filter(|(i, (k, _))| index.get(k) == Some(i)).map(|(_, e)| e).collect()
    }
}

/// Changelog records of one partition, encoded, waiting for the commit.
pub type PendingWrites = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Most decoded committed values a stage keeps in memory.
const VALUE_CACHE_MAX: usize = 100_000;

/// A hash map with foldhash: the standard SipHash was a visible cost for
/// the short keys of the hot path.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Decoded committed values by partition and key (None: known absent).
///
/// Two generations, each up to half the bound: when the young one fills it
/// becomes the old one and the old one is dropped, and a key found in the
/// old one moves back into the young. So keys in use stay cached across a
/// turnover (a cache that started over when full made every hot key miss
/// at once), at the cost of one more lookup on a miss.
#[derive(Default)]
struct ValueCache {
    young: FastMap<i32, FastMap<Vec<u8>, Option<StateValue>>>,
    old: FastMap<i32, FastMap<Vec<u8>, Option<StateValue>>>,
    young_len: usize,
}

impl ValueCache {
    fn get(&mut self, partition: i32, key: &[u8]) -> Option<Option<StateValue>> {
        if let Some(v) = self.young.get(&partition).and_then(|m| m.get(key)) {
            return Some(v.clone());
        }
        // A key is in one generation at most: moving it from the old one
        // leaves no copy behind.
        let (key, v) = self.old.get_mut(&partition).and_then(|m| m.remove_entry(key))?;
        self.insert_young(partition, key, v.clone());
        Some(v)
    }

    fn put(&mut self, partition: i32, key: &[u8], value: Option<StateValue>) {
        if let Some(v) = self.young.get_mut(&partition).and_then(|m| m.get_mut(key)) {
            *v = value;
            return;
        }
        // A stale copy in the old generation must not come back later.
        if let Some(m) = self.old.get_mut(&partition) {
            m.remove(key);
        }
        self.insert_young(partition, key.to_vec(), value);
    }

    /// Adds a key the young generation does not hold, turning the
    /// generations over first if it is full.
    fn insert_young(&mut self, partition: i32, key: Vec<u8>, value: Option<StateValue>) {
        if self.young_len >= VALUE_CACHE_MAX / 2 {
            // The dropped generation's tables become the new young one's,
            // emptied but with their capacity: growing fresh tables anew at
            // every turnover was a visible cost (rehashing, page faults).
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.values_mut().for_each(FastMap::clear);
            self.young_len = 0;
        }
        self.young.entry(partition).or_default().insert(key, value);
        self.young_len += 1;
    }

    fn forget_partition(&mut self, partition: i32) {
        self.old.remove(&partition);
        if let Some(m) = self.young.remove(&partition) {
            self.young_len = self.young_len.saturating_sub(m.len());
        }
    }
}

/// A stage's state: the base store plus one overlay per partition.
pub struct StageStore {
    base: Arc<dyn BaseStore>,
    overlays: FastMap<i32, Overlay>,
    pending: HashMap<i32, PendingWrites>,
    /// Decoded committed values, so that a hot key is not read from RocksDB
    /// and Avro-decoded on every record. A cache of the base store only: it
    /// changes no answer. Bounded.
    cache: std::cell::RefCell<ValueCache>,
    /// The decoded values of `pending`, for the cache once they commit.
    pending_values: Vec<(i32, Vec<u8>, Option<StateValue>)>,
    /// Per partition, a time before which no expiry entry is due (see
    /// `PartitionView::sweep_floor`). A hint only: absent means unknown.
    sweep_floors: FastMap<i32, i64>,
}

impl StageStore {
    pub fn new(base: Box<dyn BaseStore>) -> Self {
        StageStore {
            base: Arc::from(base),
            overlays: FastMap::default(),
            pending: HashMap::new(),
            cache: Default::default(),
            pending_values: Vec::new(),
            sweep_floors: FastMap::default(),
        }
    }

    fn cache_put(&self, partition: i32, key: &[u8], value: Option<StateValue>) {
        self.cache.borrow_mut().put(partition, key, value);
    }

    fn forget_partition(&mut self, partition: i32) {
        self.sweep_floors.remove(&partition);
        self.cache.get_mut().forget_partition(partition);
    }

    pub fn base(&self) -> &dyn BaseStore {
        self.base.as_ref()
    }

    /// The committed state, for readers beside the task (the API): it only
    /// ever holds what Kafka has committed.
    pub fn shared_base(&self) -> Arc<dyn BaseStore> {
        self.base.clone()
    }

    pub fn view(&mut self, partition: i32) -> PartitionView<'_> {
        PartitionView { store: self, partition, ns: Vec::new() }
    }

    /// Moves every partition's overlay into encoded pending writes and returns
    /// them (partition, key, value) for the changelog.
    pub fn prepare_commit(&mut self) -> &HashMap<i32, PendingWrites> {
        for (p, overlay) in self.overlays.iter_mut() {
            if overlay.is_empty() {
                continue;
            }
            let pending_values = &mut self.pending_values;
            let (base, cache) = (&self.base, &self.cache);
            let encoded = overlay.take().into_iter().filter_map(|(k, v)| {
                // A delete of a key committed state does not hold (written
                // and deleted within this transaction, or never there)
                // changes nothing: no tombstone for the changelog to carry.
                let needless_tombstone = v.is_none()
                    && match cache.borrow_mut().get(*p, &k) {
                        Some(known) => known.is_none(),
                        None => matches!(base.get(&full_key(*p, &k)), Ok(None)),
                    };
                let bytes = v.as_ref().map(StateValue::encode);
                pending_values.push((*p, k.clone(), v));
                (!needless_tombstone).then_some((k, bytes))
            });
            self.pending.entry(*p).or_default().extend(encoded);
        }
        &self.pending
    }

    /// The transaction committed: write its changes and the new checkpoints
    /// (next changelog offset per partition) to the base store in one batch.
    pub fn commit(&mut self, checkpoints: &HashMap<i32, i64>) -> Result<(), StoreError> {
        let mut batch = Vec::new();
        for (p, writes) in self.pending.drain() {
            batch.extend(writes.into_iter().map(|(k, v)| (full_key(p, &k), v)));
        }
        for (p, next) in checkpoints {
            batch.push((full_key(*p, CHECKPOINT_KEY), Some(next.to_be_bytes().to_vec())));
        }
        if !batch.is_empty() {
            self.base.write(batch)?;
        }
        for (p, k, v) in std::mem::take(&mut self.pending_values) {
            self.cache_put(p, &k, v);
        }
        Ok(())
    }

    /// A record begins: its writes can be undone alone (see `rollback_record`).
    pub fn begin_record(&mut self, partition: i32) {
        if let Some(o) = self.overlays.get_mut(&partition) {
            o.journal.clear();
        }
    }

    /// The record could not be acted on (a dead letter): undo its writes,
    /// so none of it takes effect.
    pub fn rollback_record(&mut self, partition: i32) {
        if let Some(o) = self.overlays.get_mut(&partition) {
            o.rollback();
        }
        // The record's sweep is undone with it.
        self.sweep_floors.remove(&partition);
    }

    /// The transaction aborted: forget everything it wrote.
    pub fn abort(&mut self) {
        self.overlays.clear();
        self.pending.clear();
        self.pending_values.clear();
        // Entries the aborted transaction swept are back.
        self.sweep_floors.clear();
    }

    /// Restore: applies one partition's committed changelog records straight
    /// to the base store, with the offset to resume from; empties `batch`.
    pub fn restore_batch(&mut self, partition: i32, batch: &mut ChangelogBatch, next_offset: i64) -> Result<(), StoreError> {
        self.forget_partition(partition);
        batch.push_checkpoint(partition, next_offset);
        let written = self.base.write_changelog(batch);
        batch.clear();
        written
    }

    /// Forgets what this store holds in memory for a partition (its open
    /// writes, cached values, sweep floor), keeping the base store's copy:
    /// a standby replica writes under it while it is not owned.
    pub fn release_partition(&mut self, partition: i32) {
        self.overlays.remove(&partition);
        self.pending.remove(&partition);
        self.pending_values.retain(|(p, _, _)| *p != partition);
        self.forget_partition(partition);
    }

    pub fn drop_partition(&mut self, partition: i32) -> Result<(), StoreError> {
        self.overlays.remove(&partition);
        self.pending.remove(&partition);
        self.pending_values.retain(|(p, _, _)| *p != partition);
        self.forget_partition(partition);
        self.base.drop_partition(partition)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.base.flush()
    }
}

/// What a stage's logic sees: one partition's state, typed, with its
/// uncommitted writes.
pub struct PartitionView<'a> {
    store: &'a mut StageStore,
    partition: i32,
    /// Prefixed to every key: the state of a candidate policy in shadow
    /// lives beside the enforced state, under its own namespace, and the
    /// stage code cannot tell the difference (empty: the enforced state).
    ns: Vec<u8>,
}

impl PartitionView<'_> {
    /// The same partition's state under a namespace (see `ns`): what it
    /// writes, reads and scans never meets a key outside it.
    pub fn namespaced(&mut self, ns: &[u8]) -> PartitionView<'_> {
        let mut full = self.ns.clone();
        full.extend_from_slice(ns);
        PartitionView { store: &mut *self.store, partition: self.partition, ns: full }
    }

    /// Whether this is a namespace's view (a candidate policy's state).
    pub fn is_namespaced(&self) -> bool {
        !self.ns.is_empty()
    }

    fn key<'k>(&self, key: &'k [u8]) -> std::borrow::Cow<'k, [u8]> {
        if self.ns.is_empty() {
            std::borrow::Cow::Borrowed(key)
        } else {
            let mut k = Vec::with_capacity(self.ns.len() + key.len());
            k.extend_from_slice(&self.ns);
            k.extend_from_slice(key);
            std::borrow::Cow::Owned(k)
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<StateValue>, StoreError> {
        let key = &*self.key(key);
        if let Some(v) = self.store.overlays.get(&self.partition).and_then(|o| o.get(key)) {
            return Ok(v.clone());
        }
        if let Some(v) = self.store.cache.borrow_mut().get(self.partition, key) {
            return Ok(v);
        }
        let value = match self.store.base.get(&full_key(self.partition, key))? {
            None => None,
            Some(bytes) => Some(StateValue::decode(&bytes).map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), why: e.to_string() })?),
        };
        self.store.cache_put(self.partition, key, value.clone());
        Ok(value)
    }

    /// No expiry entry of this partition is due before this time, as far as
    /// the stage has told the store (`set_sweep_floor`, `lower_sweep_floor`);
    /// None when unknown. Lets the per-record expiry sweep skip its scan
    /// without changing what it finds.
    pub fn sweep_floor(&self) -> Option<i64> {
        if !self.ns.is_empty() {
            // Kept for the enforced state only: a namespace always scans.
            return None;
        }
        self.store.sweep_floors.get(&self.partition).copied()
    }

    pub fn set_sweep_floor(&mut self, floor: Option<i64>) {
        if !self.ns.is_empty() {
            return;
        }
        match floor {
            Some(f) => self.store.sweep_floors.insert(self.partition, f),
            None => self.store.sweep_floors.remove(&self.partition),
        };
    }

    /// An entry due at `at` was written: the floor is at most `at`.
    pub fn lower_sweep_floor(&mut self, at: i64) {
        if !self.ns.is_empty() {
            return;
        }
        if let Some(f) = self.store.sweep_floors.get_mut(&self.partition) {
            *f = (*f).min(at);
        }
    }

    /// A point in time (or a count) kept under `key`, if any.
    pub fn get_time(&self, key: &[u8]) -> Result<Option<i64>, StoreError> {
        Ok(match self.get(key)? {
            Some(StateValue::Clock(t)) => Some(t),
            _ => None,
        })
    }

    /// The counter under `key` if it is in the window starting at
    /// `bucket_start_ms`; a fresh one otherwise (a past window's count is over).
    pub fn get_counter(&self, key: &[u8], bucket_start_ms: i64) -> Result<super::WindowCounter, StoreError> {
        Ok(match self.get(key)? {
            Some(StateValue::Counter(c)) if c.bucket_start_ms == bucket_start_ms => c,
            _ => super::WindowCounter { bucket_start_ms, count: 0, alerted_pct: 0, pending: 0 },
        })
    }

    pub fn put(&mut self, key: &[u8], value: StateValue) {
        let key = self.key(key).into_owned();
        self.store.overlays.entry(self.partition).or_default().set(&key, Some(value));
    }

    pub fn delete(&mut self, key: &[u8]) {
        let key = self.key(key).into_owned();
        self.store.overlays.entry(self.partition).or_default().set(&key, None);
    }

    /// The first `limit` keys under a prefix (without the partition prefix),
    /// in key order, as the partition's state stands now: committed keys
    /// merged with this transaction's writes and deletes. The answer does not
    /// depend on where commits fell, so logic built on it replays exactly.
    pub fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.scan_from(prefix, prefix, limit)
    }

    /// As `scan`, from the key `from` on. Keys removed in order (an index
    /// swept from its start, a queue) should be scanned from a cursor past
    /// them: the store then never walks over their tombstones.
    pub fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        if !self.ns.is_empty() {
            let n = self.ns.len();
            let keys = self.scan_raw(&self.key(prefix), &self.key(from), limit)?;
            return Ok(keys.into_iter().map(|k| k[n..].to_vec()).collect());
        }
        self.scan_raw(prefix, from, limit)
    }

    fn scan_raw(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        // A merge of two ordered streams that stops at `limit` keys: the
        // overlay's range is walked lazily, never collected whole (within a
        // busy transaction it holds thousands of index entries), and the
        // base is read in chunks that grow only when the overlay's
        // tombstones hide what was read.
        let overlay = self.store.overlays.get(&self.partition);
        let mut chunk = limit.max(1);
        loop {
            let rows = self.store.base.scan(&full_key(self.partition, prefix), &full_key(self.partition, from), chunk)?;
            let base_done = rows.len() < chunk;
            let mut base = rows.iter().map(|(k, _)| &k[4..]).peekable();
            let mut ov = overlay
                .into_iter()
                .flat_map(|o| o.index.range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded)).map(move |(k, &i)| (k.as_slice(), o.entries[i].1.is_some())))
                .take_while(|(k, _)| k.starts_with(prefix))
                .peekable();
            let mut out: Vec<Vec<u8>> = Vec::with_capacity(limit.min(64));
            let complete = loop {
                if out.len() >= limit {
                    break true;
                }
                let (b, o) = (base.peek().copied(), ov.peek().copied());
                match (b, o) {
                    (None, None) => break base_done,
                    // Unread base keys may come before this overlay key.
                    (None, Some(_)) if !base_done => break false,
                    (Some(bk), Some((ok, live))) if ok <= bk => {
                        if ok == bk {
                            base.next();
                        }
                        ov.next();
                        if live {
                            out.push(ok.to_vec());
                        }
                    }
                    (Some(bk), _) => {
                        base.next();
                        out.push(bk.to_vec());
                    }
                    (None, Some((ok, live))) => {
                        ov.next();
                        if live {
                            out.push(ok.to_vec());
                        }
                    }
                }
            };
            if complete {
                return Ok(out);
            }
            chunk = chunk.saturating_mul(4);
        }
    }
}

/// A private, writable view of a shared store: reads fall through to the
/// shared store, writes stay here. What-if evaluations run on it against
/// live state without changing anything.
pub struct CopyOnWrite {
    shared: Arc<dyn BaseStore>,
    local: Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl CopyOnWrite {
    pub fn new(shared: Arc<dyn BaseStore>) -> Self {
        CopyOnWrite { shared, local: Mutex::new(BTreeMap::new()) }
    }
}

impl BaseStore for CopyOnWrite {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.local.lock().expect("not poisoned").get(key) {
            return Ok(v.clone());
        }
        self.shared.get(key)
    }
    fn write(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut local = self.local.lock().expect("not poisoned");
        for (k, v) in batch {
            local.insert(k, v);
        }
        Ok(())
    }
    fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let local = self.local.lock().expect("not poisoned");
        let deleted = local.range(from.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).filter(|(_, v)| v.is_none()).count();
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self.shared.scan(prefix, from, limit.saturating_add(deleted))?.into_iter().collect();
        for (k, v) in local.range(from.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
    fn drop_partition(&self, _partition: i32) -> Result<(), StoreError> {
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A restored batch lands as the records it was built from, tombstones
    /// and empty values included, with its checkpoint; the batch is empty
    /// and reusable after.
    #[test]
    fn a_restored_changelog_batch_writes_its_records_and_checkpoint() {
        let mut store = StageStore::new(Box::new(MemStore::default()));
        let base = store.shared_base();
        base.write(vec![(full_key(3, b"gone"), Some(b"old".to_vec()))]).unwrap();
        let mut batch = ChangelogBatch::default();
        batch.push(3, b"a", Some(b"1"));
        batch.push(3, b"gone", None);
        batch.push(3, b"empty", Some(b""));
        batch.push(3, b"a", Some(b"2"));
        let seen: Vec<_> = batch.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
        assert_eq!(
            seen,
            vec![
                (full_key(3, b"a"), Some(b"1".to_vec())),
                (full_key(3, b"gone"), None),
                (full_key(3, b"empty"), Some(vec![])),
                (full_key(3, b"a"), Some(b"2".to_vec())),
            ]
        );
        store.restore_batch(3, &mut batch, 42).unwrap();
        assert!(batch.is_empty());
        assert_eq!(base.get(&full_key(3, b"a")).unwrap(), Some(b"2".to_vec()), "the later record of a key wins");
        assert_eq!(base.get(&full_key(3, b"gone")).unwrap(), None);
        assert_eq!(base.get(&full_key(3, b"empty")).unwrap(), Some(vec![]));
        assert_eq!(base.checkpoint(3).unwrap(), Some(42));

        batch.push(3, b"b", Some(b"x"));
        store.restore_batch(3, &mut batch, 43).unwrap();
        assert_eq!(base.get(&full_key(3, b"b")).unwrap(), Some(b"x".to_vec()));
        assert_eq!(base.checkpoint(3).unwrap(), Some(43));
    }

    proptest! {
        /// The merged scan equals a scan of the state as it would read once
        /// the overlay is applied, whatever mix of base keys, overlay writes
        /// and overlay tombstones lies in the range.
        #[test]
        fn scan_from_merges_the_overlay_into_the_base(
            base_keys in proptest::collection::btree_set(0u16..400, 0..120),
            writes in proptest::collection::vec((0u16..400, any::<bool>()), 0..200),
            from in 0u16..400,
            limit in 1usize..40,
        ) {
            let key = |n: u16| format!("x/{n:04}").into_bytes();
            let base = MemStore::default();
            base.write(base_keys.iter().map(|n| (full_key(3, &key(*n)), Some(StateValue::Clock(1).encode()))).collect()).unwrap();
            let mut store = StageStore::new(Box::new(base));
            let mut model: std::collections::BTreeSet<u16> = base_keys.clone();
            {
                let mut view = store.view(3);
                for (n, live) in &writes {
                    if *live {
                        view.put(&key(*n), StateValue::Clock(2));
                        model.insert(*n);
                    } else {
                        view.delete(&key(*n));
                        model.remove(n);
                    }
                }
            }
            let view = store.view(3);
            let got = view.scan_from(b"x/", &key(from), limit).unwrap();
            let want: Vec<Vec<u8>> = model.range(from..).take(limit).map(|n| key(*n)).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_delete_of_a_key_committed_state_never_held_writes_no_tombstone() {
        let mut store = StageStore::new(Box::new(MemStore::default()));
        let changelog = |store: &mut StageStore| -> Vec<(Vec<u8>, bool)> { store.prepare_commit().get(&0).map(|w| w.iter().map(|(k, v)| (k.clone(), v.is_some())).collect()).unwrap_or_default() };
        // Committed: "kept".
        store.view(0).put(b"kept", StateValue::Clock(1));
        assert_eq!(changelog(&mut store), vec![(b"kept".to_vec(), true)]);
        store.commit(&HashMap::from([(0, 1)])).unwrap();
        // Next transaction: a key written and deleted within it, a key never
        // written, and the committed key deleted.
        let mut v = store.view(0);
        v.put(b"in-flight", StateValue::Clock(2));
        v.delete(b"in-flight");
        v.delete(b"never");
        v.delete(b"kept");
        assert_eq!(changelog(&mut store), vec![(b"kept".to_vec(), false)], "only the committed key's tombstone");
        store.commit(&HashMap::from([(0, 2)])).unwrap();
        assert_eq!(store.view(0).get(b"kept").unwrap(), None);
        // Known absent from the cache alone, without asking the base store.
        store.view(0).delete(b"kept");
        assert!(changelog(&mut store).is_empty());
    }

    #[test]
    fn the_value_cache_keeps_keys_in_use_across_a_turnover_and_never_a_stale_one() {
        let mut c = ValueCache::default();
        let key = |n: usize| format!("k{n}").into_bytes();
        c.put(1, b"hot", Some(StateValue::Clock(1)));
        c.put(1, b"stale", Some(StateValue::Clock(1)));
        // Fill the young generation to the brim, reading "hot" on the way:
        // it is promoted each time it is found in the old one.
        for n in 0..VALUE_CACHE_MAX * 2 {
            c.put(2, &key(n), None);
            assert_eq!(c.get(1, b"hot"), Some(Some(StateValue::Clock(1))), "after {n} puts");
        }
        assert!(c.young_len <= VALUE_CACHE_MAX / 2);
        let total: usize = c.young.values().chain(c.old.values()).map(|m| m.len()).sum();
        assert!(total <= VALUE_CACHE_MAX, "bounded: {total}");
        // Untouched keys age out.
        assert_eq!(c.get(1, b"stale"), None);
        // A newer value replaces an old-generation copy for good.
        c.put(3, b"x", Some(StateValue::Clock(1)));
        for n in 0..VALUE_CACHE_MAX / 2 {
            c.put(4, &key(n), None);
        }
        c.put(3, b"x", Some(StateValue::Clock(2)));
        assert_eq!(c.get(3, b"x"), Some(Some(StateValue::Clock(2))));
        for n in 0..VALUE_CACHE_MAX / 2 {
            c.put(5, &key(n), None);
        }
        assert_eq!(c.get(3, b"x"), Some(Some(StateValue::Clock(2))));
        c.forget_partition(3);
        assert_eq!(c.get(3, b"x"), None);
    }
}
