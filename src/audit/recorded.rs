//! The recorded decisions as the replay looks them up: by the intent record
//! each one answers, a digest of its bytes and where it lies on the
//! decisions topic (a differing one is read again for its fields).
//!
//! Up to a bound they are kept in memory (about 60 bytes each); an audit
//! past it keeps them in a scratch RocksDB instead, slower per look-up but
//! bounded in memory whatever the audit's length.

use crate::model::SourceRef;
use crate::state::rocks::RocksStore;
use crate::state::store::FastMap;
use crate::state::BaseStore;
use std::path::Path;
use std::sync::Mutex;

/// A recorded decision as the replay keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedRef {
    /// `digest` of the record's bytes.
    pub digest: [u8; 16],
    pub partition: i32,
    pub offset: i64,
}

/// A 128-bit SipHash of a record's bytes: equal digests stand for equal
/// bytes (a chance collision is about 2^-128).
pub fn digest(bytes: &[u8]) -> [u8; 16] {
    use std::hash::Hasher;
    let mut h = siphasher::sip128::SipHasher13::new_with_keys(0, 0);
    h.write(bytes);
    siphasher::sip128::Hasher128::finish128(&h).as_bytes()
}

impl RecordedRef {
    fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(28);
        v.extend_from_slice(&self.digest);
        v.extend_from_slice(&self.partition.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v
    }

    fn from_bytes(b: &[u8]) -> Option<RecordedRef> {
        Some(RecordedRef {
            digest: b.get(..16)?.try_into().ok()?,
            partition: i32::from_be_bytes(b.get(16..20)?.try_into().ok()?),
            offset: i64::from_be_bytes(b.get(20..28)?.try_into().ok()?),
        })
    }
}

/// The scratch key of a decision: the intent record it answers.
fn scratch_key(s: &SourceRef) -> Vec<u8> {
    let mut k = Vec::with_capacity(s.topic.len() + 13);
    k.extend_from_slice(s.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&s.partition.to_be_bytes());
    k.extend_from_slice(&s.offset.to_be_bytes());
    k
}

/// In memory: source topics are few (one intents topic), so each is kept
/// once and a key is its index with the partition and offset.
#[derive(Default)]
pub struct InMemory {
    topics: Vec<String>,
    by_source: FastMap<(u32, i32, i64), RecordedRef>,
}

impl InMemory {
    fn topic_index(&mut self, topic: &str) -> u32 {
        match self.topics.iter().position(|t| t == topic) {
            Some(i) => i as u32,
            None => {
                self.topics.push(topic.to_string());
                (self.topics.len() - 1) as u32
            }
        }
    }
}

pub enum RecordedIndex {
    Memory(Mutex<InMemory>),
    Scratch(RocksStore),
}

impl RecordedIndex {
    /// For `expected` decisions (an upper bound): in memory if at most
    /// `in_memory_max`, else in a scratch RocksDB at `scratch`.
    pub fn new(expected: u64, in_memory_max: u64, scratch: &Path) -> Result<Self, String> {
        if expected <= in_memory_max {
            let mut m = InMemory::default();
            m.by_source.reserve(expected as usize);
            return Ok(RecordedIndex::Memory(Mutex::new(m)));
        }
        let (store, _) = RocksStore::open(scratch).map_err(|e| e.to_string())?;
        Ok(RecordedIndex::Scratch(store))
    }

    /// Adds a batch (from any thread).
    pub fn add(&self, batch: Vec<(SourceRef, RecordedRef)>) -> Result<(), String> {
        match self {
            RecordedIndex::Memory(m) => {
                let mut m = m.lock().expect("not poisoned");
                for (source, r) in batch {
                    let t = m.topic_index(&source.topic);
                    m.by_source.insert((t, source.partition, source.offset), r);
                }
                Ok(())
            }
            RecordedIndex::Scratch(store) => store
                .write(batch.into_iter().map(|(s, r)| (scratch_key(&s), Some(r.to_bytes()))).collect())
                .map_err(|e| e.to_string()),
        }
    }

    /// The recorded decision that answers this intent record, if any (the
    /// lock is uncontended: one thread compares).
    pub fn get(&self, source: &SourceRef) -> Result<Option<RecordedRef>, String> {
        match self {
            RecordedIndex::Memory(m) => {
                let m = m.lock().expect("not poisoned");
                let topic = m.topics.iter().position(|t| *t == source.topic);
                Ok(topic.and_then(|t| m.by_source.get(&(t as u32, source.partition, source.offset)).copied()))
            }
            RecordedIndex::Scratch(store) => match store.get(&scratch_key(source)).map_err(|e| e.to_string())? {
                None => Ok(None),
                Some(v) => RecordedRef::from_bytes(&v).map(Some).ok_or_else(|| "a scratch entry of the recorded decisions is cut short".to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(topic: &str, partition: i32, offset: i64) -> SourceRef {
        SourceRef { topic: topic.into(), partition, offset }
    }

    #[test]
    fn memory_and_scratch_answer_alike() {
        let dir = std::env::temp_dir().join(format!("sendgate-recorded-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let entries: Vec<(SourceRef, RecordedRef)> = (0..1000)
            .map(|i| (source(if i % 3 == 0 { "a.intents" } else { "b.intents" }, i % 4, i64::from(i) * 7), RecordedRef { digest: digest(&i.to_be_bytes()), partition: i % 6, offset: i64::from(i) }))
            .collect();
        for (max, what) in [(u64::MAX, "memory"), (0, "scratch")] {
            let index = RecordedIndex::new(entries.len() as u64, max, &dir.join(what)).unwrap();
            assert_eq!(matches!(index, RecordedIndex::Memory(_)), what == "memory");
            index.add(entries[..500].to_vec()).unwrap();
            index.add(entries[500..].to_vec()).unwrap();
            for (s, r) in &entries {
                assert_eq!(index.get(s).unwrap(), Some(*r), "{what}: {s:?}");
            }
            assert_eq!(index.get(&source("a.intents", 0, 1)).unwrap(), None, "{what}");
            assert_eq!(index.get(&source("c.intents", 0, 0)).unwrap(), None, "{what}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
