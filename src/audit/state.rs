//! The state check of `audit replay`: a stage partition's state as its log
//! implies it (replayed into scratch state) compared, key by key and byte
//! for byte, with its state as the changelog records it (what a restore of
//! that partition would load).
//!
//! The live task writes one changelog record per changed key per
//! transaction, in the same transaction as the stage offsets it consumed
//! (`StageStore::prepare_commit`), so the changelog read to the point the
//! committed stage offsets stand for holds exactly the state of the records
//! before them. A difference therefore means that a crash, a fencing, an
//! abort or a restore left kept state that the log does not imply (or that
//! the stage code is not a function of its log). What the check assumes
//! (the processor stopped or idle) and what it leaves out: docs/design.md,
//! "Audits and what-ifs".

use crate::cli::kafka_io::{self, ReadRecord};
use crate::config::Config;
use crate::stage::StageKind;
use crate::state::store::{full_key, CHECKPOINT_KEY};
use crate::state::{BaseStore, StateValue, StoreError};
use std::collections::{BTreeMap, HashMap};

/// One key whose state differs.
#[derive(Debug, Clone, PartialEq)]
pub struct StateDifference {
    pub stage: StageKind,
    pub partition: i32,
    /// The state key, readable: lossy UTF-8, control bytes escaped.
    pub key: String,
    pub found: Found,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The replay holds the key; the changelog does not (or deleted it).
    OnlyReplayed,
    /// The changelog holds the key; the replay does not.
    OnlyInChangelog,
    /// Both hold it with other bytes: (replayed, changelog), each decoded
    /// where it decodes, shortened.
    Differs(String, String),
}

/// How replayed state compares with the changelog, over one stage partition
/// or (merged) many.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StateComparison {
    pub partitions: u64,
    /// Keys held by the replay, the changelog or both.
    pub keys: u64,
    pub only_replayed: u64,
    pub only_in_changelog: u64,
    pub differing: u64,
    /// The first differences, at most the `keep` they were compared with.
    pub first: Vec<StateDifference>,
}

impl StateComparison {
    pub fn differences(&self) -> u64 {
        self.only_replayed + self.only_in_changelog + self.differing
    }

    /// Adds another partition's comparison, keeping at most `keep` examples.
    pub fn merge(&mut self, other: StateComparison, keep: usize) {
        self.partitions += other.partitions;
        self.keys += other.keys;
        self.only_replayed += other.only_replayed;
        self.only_in_changelog += other.only_in_changelog;
        self.differing += other.differing;
        let room = keep.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
    }

    fn found(&mut self, stage: StageKind, partition: i32, key: &[u8], found: Found, keep: usize) {
        match found {
            Found::OnlyReplayed => self.only_replayed += 1,
            Found::OnlyInChangelog => self.only_in_changelog += 1,
            Found::Differs(..) => self.differing += 1,
        }
        if self.first.len() < keep {
            self.first.push(StateDifference { stage, partition, key: readable(key), found });
        }
    }
}

/// A state key as an operator can read it: most keys are text, some start
/// with a control byte (a candidate's namespace, the checkpoint).
pub fn readable(key: &[u8]) -> String {
    let text = format!("{:?}", String::from_utf8_lossy(key));
    text[1..text.len() - 1].to_string()
}

/// Two encodings of the same state value: a changelog record an earlier
/// release wrote with its schema (an upgrade's changelog) holds the same
/// value in other bytes than the replay, which writes today's.
fn same_value(a: &[u8], b: &[u8]) -> bool {
    matches!((StateValue::decode(a), StateValue::decode(b)), (Ok(x), Ok(y)) if x == y)
}

/// A state value for a report: decoded where it decodes, and short.
fn describe(bytes: &[u8]) -> String {
    const MAX: usize = 160;
    let text = match StateValue::decode(bytes) {
        Ok(v) => format!("{v:?}"),
        Err(_) => format!("{} bytes that do not decode", bytes.len()),
    };
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The state one changelog partition records: its records in `range`
/// (from its start to its end), read-committed (aborted transactions are no
/// state), the last value per key, a tombstone deleting its key. As a
/// restore of the partition loads it. In memory: one partition's state at
/// a time.
pub fn changelog_state(cfg: &Config, topic: &str, partition: i32, range: (i64, i64)) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut state = BTreeMap::new();
    kafka_io::read_ranges(cfg, topic, &HashMap::from([(partition, range)]), |r: ReadRecord| {
        let key = r.key.ok_or_else(|| format!("changelog record without key at {topic} [{}] @{}", r.partition, r.offset))?;
        match r.payload {
            Some(value) => state.insert(key.to_vec(), value.to_vec()),
            None => state.remove(key),
        };
        Ok(())
    })?;
    Ok(state)
}

/// Keys (with values) of the replayed store read at a time.
const SCAN_CHUNK: usize = 4096;

/// Compares one partition's replayed state (in `replayed`, under the
/// partition's key prefix) with the state its changelog records.
pub fn compare_partition(
    replayed: &dyn BaseStore,
    stage: StageKind,
    partition: i32,
    mut changelog: BTreeMap<Vec<u8>, Vec<u8>>,
    keep: usize,
) -> Result<StateComparison, StoreError> {
    let mut c = StateComparison { partitions: 1, ..StateComparison::default() };
    let prefix = full_key(partition, b"");
    let mut from = prefix.clone();
    loop {
        let rows = replayed.scan(&prefix, &from, SCAN_CHUNK)?;
        for (full, value) in &rows {
            let key = &full[prefix.len()..];
            // The checkpoint is the store's own bookkeeping (how far into
            // the changelog a restore got), written beside the state and
            // never a changelog record: it is no state of the stage. The
            // replay commits with no checkpoints, so it should not be
            // there; it is left out wherever it comes from.
            if key == CHECKPOINT_KEY {
                continue;
            }
            c.keys += 1;
            match changelog.remove(key) {
                Some(recorded) if recorded == *value || same_value(&recorded, value) => {}
                Some(recorded) => c.found(stage, partition, key, Found::Differs(describe(value), describe(&recorded)), keep),
                None => c.found(stage, partition, key, Found::OnlyReplayed, keep),
            }
        }
        match rows.last() {
            Some((last, _)) if rows.len() == SCAN_CHUNK => {
                // The next key after the last one read.
                from = last.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    // What is left the replay does not hold.
    for key in changelog.into_keys() {
        c.keys += 1;
        c.found(stage, partition, &key, Found::OnlyInChangelog, keep);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemStore;

    #[test]
    fn a_missing_key_an_extra_key_and_a_changed_value_are_each_found() {
        let value = |n: i64| StateValue::Clock(n).encode();
        let replayed = MemStore::default();
        replayed
            .write(vec![
                (full_key(3, b"same"), Some(value(1))),
                (full_key(3, b"changed"), Some(value(2))),
                (full_key(3, b"\x02shadow/only-replayed"), Some(value(3))),
                // Bookkeeping, and another partition's state: not compared.
                (full_key(3, CHECKPOINT_KEY), Some(7i64.to_be_bytes().to_vec())),
                (full_key(4, b"other partition"), Some(value(4))),
            ])
            .unwrap();
        let changelog = BTreeMap::from([
            (b"same".to_vec(), value(1)),
            (b"changed".to_vec(), value(20)),
            (b"only-in-changelog".to_vec(), value(5)),
        ]);
        let c = compare_partition(&replayed, StageKind::Sender, 3, changelog, 10).unwrap();
        assert_eq!((c.partitions, c.keys, c.only_replayed, c.only_in_changelog, c.differing, c.differences()), (1, 4, 1, 1, 1, 3), "{c:?}");
        let found: Vec<(&str, &Found)> = c.first.iter().map(|d| (d.key.as_str(), &d.found)).collect();
        assert_eq!(
            found,
            vec![
                ("\\u{2}shadow/only-replayed", &Found::OnlyReplayed),
                ("changed", &Found::Differs("Clock(2)".into(), "Clock(20)".into())),
                ("only-in-changelog", &Found::OnlyInChangelog),
            ]
        );
        // The same state on both sides: nothing to report.
        let same = BTreeMap::from([(b"same".to_vec(), value(1)), (b"changed".to_vec(), value(2)), (b"\x02shadow/only-replayed".to_vec(), value(3))]);
        let c = compare_partition(&replayed, StageKind::Sender, 3, same, 10).unwrap();
        assert_eq!((c.keys, c.differences()), (3, 0));
        // The same value written with the schema of the release before (the
        // state entry less the fields added since): no difference.
        let now = value(1);
        let earlier = crate::codec::rewrite_in_earlier_set(crate::codec::RecordType::StateEntry, "v4", &now).unwrap();
        assert_ne!(earlier, now);
        let c = compare_partition(&replayed, StageKind::Sender, 3, BTreeMap::from([(b"same".to_vec(), earlier)]), 10).unwrap();
        assert_eq!((c.differing, c.only_replayed), (0, 2), "{c:?}");
        // At most `keep` examples, every difference counted.
        let mut all = StateComparison::default();
        all.merge(compare_partition(&replayed, StageKind::Sender, 3, BTreeMap::new(), 1).unwrap(), 1);
        all.merge(compare_partition(&replayed, StageKind::Sender, 4, BTreeMap::new(), 1).unwrap(), 1);
        assert_eq!((all.partitions, all.only_replayed, all.first.len()), (2, 4, 1));
    }
}
