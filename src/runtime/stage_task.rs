//! A stage as a task: decodes stage envelopes, runs the pure stage logic
//! against RocksDB-backed state, emits decisions, alerts, records for other
//! stages and changelog records, and restores a partition's state from its
//! changelog on assignment.

use super::clients;
use super::task::{InputRecord, Outbox, Processor, TaskError};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::PolicyBook;
use crate::stage::driver::partition_for;
use crate::stage::pipeline::{self, Forward};
use crate::stage::{Stage, StageError, StageKind, StageOutput};
use crate::state::{ChangelogBatch, StageStore};
use crate::topology::Topology;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct StageTask {
    cfg: Config,
    kind: StageKind,
    stage: Box<dyn Stage + Send>,
    store: StageStore,
    books: HashMap<i32, PolicyBook>,
    input: String,
    changelog: String,
    decisions: String,
    alerts: String,
    shadow: String,
    dead_letters: String,
    /// (topic, partitions) of every stage, for records passed between them.
    stage_topics: HashMap<StageKind, (String, i32)>,
    out: StageOutput,
    buf: Vec<u8>,
    /// With standby replicas: the partitions this task owns, shared with
    /// the standby that keeps the others warm.
    standby: Option<super::standby::Owned>,
    /// The partitions this task owns and has restored: the API answers
    /// for these and announces them to the other instances.
    serving: super::standby::Owned,
}

/// Longest a restore may take before the task gives up and retries.
const RESTORE_DEADLINE: Duration = Duration::from_secs(30 * 60);
const RESTORE_BATCH: usize = 10_000;

impl StageTask {
    pub fn new(cfg: &Config, topo: &Topology, stage: Box<dyn Stage + Send>, store: StageStore) -> Self {
        let kind = stage.kind();
        StageTask {
            cfg: cfg.clone(),
            kind,
            stage,
            store,
            books: HashMap::new(),
            input: topo.full(&kind.topic()),
            changelog: topo.full(&kind.changelog()),
            decisions: topo.full("decisions"),
            alerts: topo.full("alerts"),
            shadow: topo.full("shadow-decisions"),
            dead_letters: topo.full("dead-letters"),
            stage_topics: topo.stage_topics(),
            out: StageOutput::default(),
            buf: Vec::with_capacity(512),
            standby: None,
            serving: super::standby::Owned::default(),
        }
    }

    /// Keeps warm copies of the partitions this task does not own: returns
    /// the standby to run on its own thread.
    pub fn with_standby(&mut self, topo: &Topology) -> super::standby::Standby {
        let owned = super::standby::Owned::default();
        self.standby = Some(owned.clone());
        super::standby::Standby::new(&self.cfg, self.kind.name(), self.changelog.clone(), topo.partitions(&self.kind.topic()), self.store.shared_base(), owned)
    }

    pub fn kind(&self) -> StageKind {
        self.kind
    }

    /// The partitions this task owns and has restored, for the API.
    pub fn serving(&self) -> super::standby::Owned {
        self.serving.clone()
    }

    /// The committed state, for the API.
    pub fn shared_state(&self) -> std::sync::Arc<dyn crate::state::BaseStore> {
        self.store.shared_base()
    }

    /// Reads the changelog partitions from their local checkpoints to their
    /// ends, all at once. Returns the number of records applied.
    fn restore(&mut self, consumer: &BaseConsumer<clients::ReaderContext>, ends: &BaseConsumer<clients::ReaderContext>, partitions: &[i32]) -> Result<u64, TaskError> {
        // partition -> (next offset to read, end offset)
        let mut todo: HashMap<i32, (i64, i64)> = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            let mut start = self.store.base().checkpoint(p)?.unwrap_or(0);
            // The high watermark, not the last stable offset: a transaction
            // the previous owner is still committing is read to its end.
            let (low, high) = ends.fetch_watermarks(&self.changelog, p, Duration::from_secs(30))?;
            if start > high || (start < low && start > 0) {
                // The changelog was recreated or truncated under us: the local
                // copy cannot be resumed from; restore it in full.
                tracing::warn!(partition = p, checkpoint = start, low, high, "checkpoint outside the changelog; restoring the partition in full");
                self.store.drop_partition(p)?;
                start = 0;
            }
            if start < high {
                let from = start.max(low);
                todo.insert(p, (from, high));
                tpl.add_partition_offset(&self.changelog, p, Offset::Offset(from))?;
            }
        }
        if todo.is_empty() {
            return Ok(0);
        }
        consumer.assign(&tpl)?;
        // Compactions wait while the changelog is written in bulk: on two
        // cores shared with the broker they took as much CPU as the restore
        // itself (RocksDB's background threads, 40 % of the process's
        // samples in a restore of 10M keys), rewriting files the restore
        // was still adding to. They catch up once it is done, whatever
        // ended it.
        let base = self.store.shared_base();
        base.bulk_load(true)?;
        let restored = self.read_to_ends(consumer, todo);
        let resumed = base.bulk_load(false);
        let restored = restored?;
        resumed?;
        consumer.unassign()?;
        Ok(restored)
    }

    /// The restore's reading: every assigned partition from its start to its
    /// end (`todo`: partition -> (next offset, end)), in batches.
    fn read_to_ends(&mut self, consumer: &BaseConsumer<clients::ReaderContext>, mut todo: HashMap<i32, (i64, i64)>) -> Result<u64, TaskError> {
        let deadline = Instant::now() + RESTORE_DEADLINE;
        let mut batches: HashMap<i32, ChangelogBatch> = HashMap::new();
        let mut restored = 0u64;
        let mut polls = 0u32;
        while !todo.is_empty() {
            // The clock read every 1,024 polls, not at every record: it was
            // 7 % of the restoring thread's samples. Idle, that is 100 s
            // late at most, on a deadline of 30 minutes.
            polls = polls.wrapping_add(1);
            if polls % 1024 == 0 && Instant::now() > deadline {
                return Err(TaskError::Retriable(format!("restore of {} did not finish in {:?}", self.changelog, RESTORE_DEADLINE)));
            }
            // Partitions that may be at their end: a partition is complete
            // once the consumer's position (past transaction markers and
            // aborted records) reaches the end read at the start. A
            // read-committed reader also stops short of a transaction still
            // open (at the last stable offset): that one is waited for,
            // committed or aborted, never taken as the end.
            let mut at_end = Vec::new();
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let p = m.partition();
                    let key = m.key().ok_or_else(|| TaskError::Fatal(format!("changelog record without key at {} [{p}] @{}", self.changelog, m.offset())))?;
                    let batch = batches.entry(p).or_default();
                    batch.push(p, key, m.payload());
                    restored += 1;
                    if let Some(t) = todo.get_mut(&p) {
                        t.0 = m.offset() + 1;
                    }
                    if batch.len() >= RESTORE_BATCH {
                        let next = todo.get(&p).map(|t| t.0).unwrap_or(m.offset() + 1);
                        self.store.restore_batch(p, batch, next)?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => at_end.push(p),
                Some(Err(e)) => return Err(e.into()),
                None => at_end.extend(todo.keys().copied()),
            }
            let mut finished = Vec::new();
            if !at_end.is_empty() {
                let positions = consumer.position()?;
                for p in at_end {
                    let position = positions.find_partition(&self.changelog, p).and_then(|e| e.offset().to_raw()).unwrap_or(-1);
                    if let Some(t) = todo.get_mut(&p) {
                        if position >= t.1 {
                            // Resume point: the position, past any trailing markers.
                            t.0 = t.0.max(position);
                            finished.push(p);
                        }
                    }
                }
            }
            for p in finished {
                if let Some((next, _)) = todo.remove(&p) {
                    self.store.restore_batch(p, &mut batches.remove(&p).unwrap_or_default(), next)?;
                }
            }
        }
        Ok(restored)
    }

    fn emit(&mut self, out: &mut Outbox<'_>) -> Result<(), TaskError> {
        // The wall clock only measures here; no decision reads it.
        let now_ms = crate::clock::wall_ms();
        for d in self.out.decisions.drain(..) {
            out.counts.add("sendgate_decisions_total", [("status", d.status.as_str()), ("reason", reason_label(&d.reason))]);
            if !d.replayed {
                // decided_at_ms is the log time of the record that decided
                // it (the intent's append, or the approval's).
                metrics::histogram!(crate::metrics::DECISION_LATENCY).record((now_ms - d.decided_at_ms).max(0) as f64 / 1000.0);
            }
            self.buf.clear();
            codec::encode_into(RecordType::Decision, &d, &mut self.buf).map_err(|e| TaskError::Fatal(e.to_string()))?;
            out.send(&self.decisions, None, d.sender.as_bytes(), Some(&self.buf), Some(d.decided_at_ms))?;
        }
        for a in self.out.alerts.drain(..) {
            out.counts.add("sendgate_alerts_total", [("kind", alert_label(&a.kind)), ("", "")]);
            self.buf.clear();
            codec::encode_into(RecordType::Alert, &a, &mut self.buf).map_err(|e| TaskError::Fatal(e.to_string()))?;
            out.send(&self.alerts, None, a.scope.as_bytes(), Some(&self.buf), Some(a.at_ms))?;
        }
        for s in self.out.shadow.drain(..) {
            let changed = if s.differs { "true" } else { "false" };
            out.counts.add("sendgate_shadow_decisions_total", [("changed", changed), ("", "")]);
            if s.differs {
                out.counts.add("sendgate_shadow_changes_total", [("status", s.candidate.status.as_str()), ("reason", reason_label(&s.candidate.reason))]);
            }
            self.buf.clear();
            codec::encode_into(RecordType::ShadowDecision, &s, &mut self.buf).map_err(|e| TaskError::Fatal(e.to_string()))?;
            out.send(&self.shadow, None, s.candidate.sender.as_bytes(), Some(&self.buf), Some(s.candidate.decided_at_ms))?;
        }
        for Forward { stage, key, envelope } in self.out.forwards.drain(..) {
            self.buf.clear();
            codec::encode_into(RecordType::StageEnvelope, &envelope, &mut self.buf).map_err(|e| TaskError::Fatal(e.to_string()))?;
            let (topic, partitions) = &self.stage_topics[&stage];
            // Keeps the intent's log time: the next stage's clock.
            out.send(topic, Some(partition_for(&key, *partitions)), key.as_bytes(), Some(&self.buf), Some(envelope.log_time_ms))?;
        }
        Ok(())
    }
}

/// Metric labels come from small fixed sets, never from input data.
fn reason_label(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ok",
        "daily_cap_reached",
        "hourly_limit_exceeded",
        "minute_limit_exceeded",
        "monthly_cap_reached",
        "outside_business_hours",
        "warmup_limit",
        "sender_domain_paused",
        "mailbox_paused",
        "sender_restricted",
        "pending_approval",
        "rejected_by_operator",
        "decision_pending",
        "recipient_suppressed",
        "blocked_by_list",
        "not_on_allow_list",
        "duplicate_content",
        "recipient_cooldown",
        "isp_backoff",
    ];
    KNOWN.iter().find(|k| **k == reason).copied().unwrap_or("other")
}

fn alert_label(kind: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "quota_80",
        "quota_100",
        "signal_tier_changed",
        "sender_paused",
        "sender_resumed",
        "limit_exceeded_allowed",
        "isp_throttling",
        "isp_backoff_escalated",
        "isp_backoff_cleared",
        "sender_paused_for_day",
        "held_expired",
        "shadow_differs",
        "unapproved_send",
        "trust_step_up",
        "trust_step_down",
    ];
    KNOWN.iter().find(|k| **k == kind).copied().unwrap_or("other")
}

impl Processor for StageTask {
    fn dead_letter_topic(&self) -> String {
        self.dead_letters.clone()
    }

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.input.clone()]
    }

    fn changelog_topic(&self) -> Option<String> {
        Some(self.changelog.clone())
    }

    fn on_assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), TaskError> {
        if let Some(owned) = &self.standby {
            // From here on the standby leaves these partitions alone; the
            // restore below continues from where it got to.
            owned.lock().expect("not poisoned").extend(partitions.iter().map(|(_, p)| *p));
            for (_, p) in partitions {
                self.store.release_partition(*p);
            }
        }
        let group = format!("{}.restore.{}", self.cfg.namespace, self.cfg.instance_id);
        let consumer: BaseConsumer<clients::ReaderContext> = clients::restore_consumer_config(&self.cfg, &group).create_with_context(clients::ReaderContext).map_err(|e| TaskError::Fatal(format!("restore consumer: {e}")))?;
        let ends: BaseConsumer<clients::ReaderContext> = clients::end_offsets_config(&self.cfg, &group).create_with_context(clients::ReaderContext).map_err(|e| TaskError::Fatal(format!("restore consumer: {e}")))?;
        let started = Instant::now();
        let ids: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        let n = self.restore(&consumer, &ends, &ids)?;
        for p in &ids {
            let mut book = PolicyBook::default();
            pipeline::load_policies(&self.store.view(*p), &mut book).map_err(|e| TaskError::Fatal(e.to_string()))?;
            self.books.insert(*p, book);
        }
        self.serving.lock().expect("not poisoned").extend(ids.iter().copied());
        metrics::histogram!("sendgate_restore_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(stage = %self.kind.name(), partitions = ids.len(), records = n, ms = started.elapsed().as_millis() as u64, "state restored from changelog");
        Ok(())
    }

    fn on_revoked(&mut self, partitions: &[(String, i32)], handed_over: bool) {
        {
            let mut serving = self.serving.lock().expect("not poisoned");
            for (_, p) in partitions {
                serving.remove(p);
            }
        }
        if let Some(owned) = &self.standby {
            // Kept, and kept up to date by the standby from this task's last
            // commit on.
            let mut owned = owned.lock().expect("not poisoned");
            for (_, p) in partitions {
                self.books.remove(p);
                self.store.release_partition(*p);
                owned.remove(p);
            }
            return;
        }
        for (_, p) in partitions {
            self.books.remove(p);
            // Another instance may own it next and its deletes may be
            // compacted away before it comes back: never resume from this
            // copy; restore in full if it returns.
            if handed_over {
                if let Err(e) = self.store.drop_partition(*p) {
                    tracing::error!(partition = p, error = %e, "could not drop handed-over state; it will be restored over");
                }
            }
        }
    }

    fn process(&mut self, rec: &InputRecord<'_>, out: &mut Outbox<'_>) -> Result<(), TaskError> {
        let started = Instant::now();
        let env: StageEnvelope = match rec.payload.map(|b| codec::decode(RecordType::StageEnvelope, b)) {
            Some(Ok(env)) => env,
            Some(Err(e)) => return out.dead_letter(&self.dead_letters, rec, e.to_string(), self.kind.name()),
            None => return out.dead_letter(&self.dead_letters, rec, "empty stage record".into(), self.kind.name()),
        };
        let book = self.books.entry(rec.partition).or_default();
        self.store.begin_record(rec.partition);
        let mut view = self.store.view(rec.partition);
        match pipeline::process(self.stage.as_ref(), &mut view, book, &env, &mut self.out) {
            Ok(()) => {}
            Err(StageError::BadRecord(reason)) => {
                self.out.clear();
                self.store.rollback_record(rec.partition);
                return out.dead_letter(&self.dead_letters, rec, reason, self.kind.name());
            }
            Err(StageError::Store(e)) => return Err(TaskError::Fatal(e.to_string())),
        }
        self.emit(out)?;
        metrics::histogram!("sendgate_processing_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn prepare_commit(&mut self, out: &mut Outbox<'_>) -> Result<(), TaskError> {
        let changelog = self.changelog.clone();
        for (p, writes) in self.store.prepare_commit() {
            for (k, v) in writes {
                out.send(&changelog, Some(*p), k, v.as_deref(), None)?;
            }
        }
        Ok(())
    }

    fn committed(&mut self, changelog_last: &HashMap<i32, i64>) -> Result<(), TaskError> {
        let next: HashMap<i32, i64> = changelog_last.iter().map(|(p, o)| (*p, o + 1)).collect();
        self.store.commit(&next)?;
        Ok(())
    }

    fn aborted(&mut self) {
        self.store.abort();
        self.out.clear();
        // Policy books may hold changes of the aborted transaction: rebuild
        // them from committed state when the partitions are assigned again.
        self.books.clear();
    }

    fn close(&mut self) -> Result<(), TaskError> {
        self.store.flush()?;
        Ok(())
    }
}
