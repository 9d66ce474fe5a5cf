//! Standby replicas: warm copies of the stage partitions this instance does
//! not own (`standby_replicas = true`).
//!
//! One thread per stage tails the stage's changelog for every partition the
//! active task does not own and writes it to the same local store, with the
//! changelog checkpoint in the same batch, exactly as a restore does. When
//! the partition is assigned, the restore then starts from that checkpoint:
//! a failover replays the last moments of the changelog instead of all of it.
//!
//! Hand-over between the two: the active task marks a partition owned
//! (under the lock) before it restores, and the standby writes a batch only
//! while holding the lock and only for partitions not owned. So once a
//! partition is owned, no standby write can land under the active task's
//! state; on revocation the standby picks it up from the active task's last
//! committed checkpoint.

use super::clients;
use crate::config::Config;
use crate::state::{BaseStore, ChangelogBatch};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The partitions a stage's active task owns; the standby keeps the others.
pub type Owned = Arc<Mutex<HashSet<i32>>>;

/// Most records applied to one partition in one batch.
const BATCH: usize = 10_000;

pub struct Standby {
    cfg: Config,
    stage: &'static str,
    changelog: String,
    partitions: i32,
    base: Arc<dyn BaseStore>,
    owned: Owned,
}

impl Standby {
    pub fn new(cfg: &Config, stage: &'static str, changelog: String, partitions: i32, base: Arc<dyn BaseStore>, owned: Owned) -> Self {
        Standby { cfg: cfg.clone(), stage, changelog, partitions, base, owned }
    }

    /// Tails until `shutdown`; a failure (broker away) is logged and retried
    /// with a capped backoff, as a standby is only ever an optimisation.
    pub fn run(self, shutdown: &AtomicBool) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.load(Ordering::Relaxed) {
            match self.tail(shutdown) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(stage = self.stage, error = %e, backoff_ms = backoff.as_millis() as u64, "standby failed; retrying");
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn tail(&self, shutdown: &AtomicBool) -> Result<(), String> {
        let group = format!("{}.standby.{}", self.cfg.namespace, self.cfg.instance_id);
        let consumer: BaseConsumer<clients::ReaderContext> = clients::restore_consumer_config(&self.cfg, &group).create_with_context(clients::ReaderContext).map_err(|e| format!("standby consumer: {e}"))?;
        let mut tailing: BTreeSet<i32> = BTreeSet::new();
        let mut batches: HashMap<i32, (ChangelogBatch, i64)> = HashMap::new();
        while !shutdown.load(Ordering::Relaxed) {
            // Held while the assignment is worked out, so that a partition
            // dropped below cannot be the active task's meanwhile.
            let owned = self.owned.lock().expect("not poisoned");
            let wanted: BTreeSet<i32> = (0..self.partitions).filter(|p| !owned.contains(p)).collect();
            if wanted != tailing {
                // Every partition (re)starts from the store's checkpoint: the
                // active task's last commit for one just handed over.
                batches.clear();
                let mut tpl = TopicPartitionList::new();
                for p in &wanted {
                    let mut from = self.base.checkpoint(*p).map_err(|e| e.to_string())?;
                    if let Some(checkpoint) = from {
                        let (low, high) = consumer.fetch_watermarks(&self.changelog, *p, Duration::from_secs(5)).map_err(|e| e.to_string())?;
                        if checkpoint > high || (checkpoint < low && checkpoint > 0) {
                            // The changelog was recreated or truncated: this
                            // copy cannot be continued; rebuild it from the start.
                            tracing::warn!(stage = self.stage, partition = p, checkpoint, low, high, "standby copy outside the changelog; rebuilding it");
                            self.base.drop_partition(*p).map_err(|e| e.to_string())?;
                            from = None;
                        }
                    }
                    tpl.add_partition_offset(&self.changelog, *p, from.map(Offset::Offset).unwrap_or(Offset::Beginning)).map_err(|e| e.to_string())?;
                }
                consumer.assign(&tpl).map_err(|e| e.to_string())?;
                tracing::info!(stage = self.stage, partitions = ?wanted, "standby tailing");
                tailing = wanted;
            }
            drop(owned);
            // Gather what is fetched (bounded per partition), then apply it.
            let deadline = Instant::now() + Duration::from_millis(200);
            while Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let key = m.key().ok_or_else(|| format!("changelog record without key at {} [{}] @{}", self.changelog, m.partition(), m.offset()))?;
                        let (records, next) = batches.entry(m.partition()).or_default();
                        records.push(m.partition(), key, m.payload());
                        *next = m.offset() + 1;
                        if records.len() >= BATCH {
                            break;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => break,
                }
            }
            self.apply(&mut batches)?;
        }
        Ok(())
    }

    /// Writes each batch with its checkpoint, unless the active task took
    /// the partition meanwhile (it restores from the checkpoint itself).
    fn apply(&self, batches: &mut HashMap<i32, (ChangelogBatch, i64)>) -> Result<(), String> {
        let owned = self.owned.lock().expect("not poisoned");
        for (p, (records, next)) in batches.iter_mut() {
            if owned.contains(p) || records.is_empty() {
                records.clear();
                continue;
            }
            let n = records.len() as u64;
            records.push_checkpoint(*p, *next);
            let written = self.base.write_changelog(records);
            records.clear();
            written.map_err(|e| e.to_string())?;
            metrics::counter!("sendgate_standby_records_total", "stage" => self.stage).increment(n);
        }
        Ok(())
    }
}
