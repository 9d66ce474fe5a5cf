//! The exactly-once loop every task runs, and the supervisor that restarts
//! it after a broker outage or a failed transaction.
//!
//! One task = one consumer in a group + one transactional producer, on its own
//! thread. Records are processed into an open transaction; every
//! `commit_interval` (or `max_batch_records`) the processor's changelog
//! records are produced, the consumed offsets are added to the transaction,
//! and it commits. Only then does the processor write its local state. Any
//! failure aborts: nothing of the transaction is visible to read-committed
//! readers, local state never saw it, and the consumer resumes from the last
//! committed offsets.
//!
//! Under `processing_guarantee = "at_least_once"` the same loop runs without
//! a transaction: a commit flushes the producer and then commits the
//! offsets, so a crash repeats the records since the last commit. It exists
//! to measure what exactly-once costs, and for users who accept repeats.

use super::clients::{self, RebalanceEvent, TaskConsumerContext, TxnProducerContext};
use super::merge::{timestamp_of, LogTimeMerge};
use super::unreadable;
use crate::config::Config;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The broker is away, a transaction failed or the group moved: rebuild
    /// the clients and carry on from the last commit.
    #[error("retriable: {0}")]
    Retriable(String),
    /// Local state is unusable or the configuration is wrong: stop the process.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl From<KafkaError> for TaskError {
    fn from(e: KafkaError) -> Self {
        TaskError::Retriable(e.to_string())
    }
}

impl From<crate::state::StoreError> for TaskError {
    fn from(e: crate::state::StoreError) -> Self {
        // (A full disk's error already says so: `state::io_error`.)
        TaskError::Fatal(e.to_string())
    }
}

pub use crate::model::InputRecord;

/// Counter increments of the open transaction: published only when it
/// commits, so work redone after an abort is not counted twice.
#[derive(Default)]
pub struct PendingCounts(HashMap<(&'static str, [(&'static str, &'static str); 2]), u64>);

impl PendingCounts {
    /// `labels`: up to two (name, value) pairs; unused ones are ("", "").
    pub fn add(&mut self, name: &'static str, labels: [(&'static str, &'static str); 2]) {
        *self.0.entry((name, labels)).or_default() += 1;
    }

    fn publish(&mut self) {
        for ((name, labels), n) in self.0.drain() {
            let labels: Vec<metrics::Label> = labels.iter().filter(|(k, _)| !k.is_empty()).map(|(k, v)| metrics::Label::new(*k, *v)).collect();
            metrics::counter!(name, labels).increment(n);
        }
    }
}

/// Where a processor writes its outputs, inside the open transaction.
pub struct Outbox<'a> {
    producer: &'a ThreadedProducer<TxnProducerContext>,
    pub counts: &'a mut PendingCounts,
}

impl Outbox<'_> {
    pub fn send(&mut self, topic: &str, partition: Option<i32>, key: &[u8], value: Option<&[u8]>, timestamp_ms: Option<i64>) -> Result<(), TaskError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(t) = timestamp_ms {
            record = record.timestamp(t);
        }
        // The producer queue is bounded; when it is full, wait for deliveries
        // to drain it rather than drop anything. Bounded by the deadline.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.context().sent();
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) if Instant::now() < deadline => {
                    record = r;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(TaskError::Retriable(format!("produce to {topic}: {e}"))),
            }
        }
    }
}

/// The most of an original value a dead letter carries: a dead letter must
/// itself fit the producer's and the topic's 1 MB limit, whatever the
/// input's size was (DeadLetter.original_size then says how large it was).
pub const DEAD_LETTER_VALUE_MAX: usize = 64 * 1024;
/// Keys longer than this are cut too (the key of the dead letter itself).
pub const DEAD_LETTER_KEY_MAX: usize = 1024;
/// Reasons longer than this are cut (a reason quotes record fields, which
/// are bounded one by one; this bounds their sum).
pub const DEAD_LETTER_REASON_MAX: usize = 4096;

impl Outbox<'_> {
    /// Sends an input record that could not be used to the dead-letter
    /// topic, with the reason and its original key and bytes (cut to
    /// [`DEAD_LETTER_VALUE_MAX`]).
    pub fn dead_letter(&mut self, dead_letter_topic: &str, rec: &InputRecord<'_>, reason: String, stage: &'static str) -> Result<(), TaskError> {
        let reason = crate::model::clip(&reason, DEAD_LETTER_REASON_MAX);
        tracing::warn!(topic = rec.topic, partition = rec.partition, offset = rec.offset, stage, reason = %crate::redact::text(&reason), "dead letter");
        self.counts.add("sendgate_dead_letters_total", [("stage", stage), ("", "")]);
        let key = rec.key.map(|k| &k[..k.len().min(DEAD_LETTER_KEY_MAX)]);
        let original_size = rec.payload.filter(|v| v.len() > DEAD_LETTER_VALUE_MAX).map(|v| v.len() as i64);
        let dl = crate::model::DeadLetter {
            topic: rec.topic.to_string(),
            partition: rec.partition,
            offset: rec.offset,
            timestamp_ms: rec.timestamp_ms,
            key: key.map(<[u8]>::to_vec),
            value: rec.payload.map(|v| v[..v.len().min(DEAD_LETTER_VALUE_MAX)].to_vec()),
            reason,
            stage: stage.to_string(),
            original_size,
        };
        let bytes = crate::codec::encode(crate::codec::RecordType::DeadLetter, &dl).map_err(|e| TaskError::Fatal(e.to_string()))?;
        self.send(dead_letter_topic, None, key.unwrap_or_default(), Some(&bytes), None)
    }
}

pub trait Processor {
    fn name(&self) -> &'static str;
    fn input_topics(&self) -> Vec<String>;
    /// Input partitions drained before every poll of the others: control
    /// records (policies, commands) appended before an intent are then
    /// handled before it, so "apply a policy, then send" means what it says.
    fn priority_partitions(&self) -> Vec<(String, i32)> {
        Vec::new()
    }
    /// Input topics whose partitions are handled merged by log time rather
    /// than in the order they were fetched (see [`super::merge`]).
    fn merged_topics(&self) -> Vec<String> {
        Vec::new()
    }
    /// The changelog topic whose delivered offsets become checkpoints.
    fn changelog_topic(&self) -> Option<String> {
        None
    }
    /// Where input the client cannot read at all is reported
    /// ([`super::unreadable`]).
    fn dead_letter_topic(&self) -> String;
    /// Newly assigned input partitions: bring their state up to date before
    /// any of their records is processed.
    fn on_assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), TaskError>;
    /// Partitions taken away. `handed_over`: by a rebalance (another
    /// instance may own them next), rather than by this task stopping.
    fn on_revoked(&mut self, partitions: &[(String, i32)], handed_over: bool);
    fn process(&mut self, record: &InputRecord<'_>, out: &mut Outbox<'_>) -> Result<(), TaskError>;
    /// Produce the transaction's changelog records.
    fn prepare_commit(&mut self, out: &mut Outbox<'_>) -> Result<(), TaskError>;
    /// The transaction committed; `changelog_last` is the last changelog
    /// offset written per partition.
    fn committed(&mut self, changelog_last: &HashMap<i32, i64>) -> Result<(), TaskError>;
    /// The transaction aborted: forget its effects.
    fn aborted(&mut self);
    /// Clean stop: make local state durable.
    fn close(&mut self) -> Result<(), TaskError>;
}

pub struct TaskSettings {
    pub group: String,
    pub transactional_id: String,
    pub commit_interval: Duration,
    pub max_batch_records: usize,
    /// Commit early once the input is drained and the transaction is this
    /// old; None: by the interval only.
    pub idle_commit: Option<Duration>,
    /// Commit at once when every assigned partition is read to its end
    /// and the open transaction is small (`commit_when_caught_up`).
    pub caught_up_commit: bool,
    /// false: at-least-once (flush, then commit the offsets).
    pub exactly_once: bool,
    /// Longest the commit of a hand-over (revocation, stop) may take.
    pub drain_deadline: Duration,
    /// What the task says of itself to `/readyz`.
    pub health: Arc<TaskHealth>,
    /// The blocking client call in progress, for the watchdog.
    pub watch: Arc<super::watchdog::CallWatch>,
}

/// A task's readiness, as its own thread last saw it: it has joined its
/// group and taken on (restored) what it was given, and its last poll found
/// nothing more to read. Read by the API's `/readyz`.
#[derive(Debug, Default)]
pub struct TaskHealth {
    joined: AtomicBool,
    caught_up: AtomicBool,
}

impl TaskHealth {
    /// Joined, restored, and caught up with its input at its last poll.
    pub fn ready(&self) -> bool {
        self.joined.load(Ordering::Relaxed) && self.caught_up.load(Ordering::Relaxed)
    }

    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }
}

impl TaskSettings {
    /// A task's settings from the configuration: group `<namespace>.<task>`,
    /// transactional id `<namespace>.<task>.<member>`.
    pub fn from_config(cfg: &Config, task: &str, member: &str) -> Self {
        TaskSettings {
            group: format!("{}.{task}", cfg.namespace),
            transactional_id: format!("{}.{task}.{member}", cfg.namespace),
            commit_interval: Duration::from_millis(cfg.commit_interval_ms),
            max_batch_records: cfg.max_batch_records,
            idle_commit: (cfg.idle_commit_ms > 0).then(|| Duration::from_millis(cfg.idle_commit_ms)),
            caught_up_commit: cfg.commit_when_caught_up,
            exactly_once: cfg.exactly_once(),
            drain_deadline: Duration::from_millis(cfg.drain_deadline_ms),
            health: Arc::default(),
            watch: Arc::default(),
        }
    }
}

const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// Most records in a transaction committed early because the task is
/// caught up: a bigger one is a backlog's, committed at the interval.
const CAUGHT_UP_COMMIT_MAX: usize = 1_000;

/// Every assigned partition is read to the end the broker last reported
/// for it (its high watermark in the latest fetch response; read committed,
/// the position passes the markers of committed transactions, and stops
/// short of an open one, which keeps this false until it commits). Not the
/// client's local queue running dry, which a backlog does between fetches.
fn at_end<C: rdkafka::consumer::ConsumerContext>(consumer: &BaseConsumer<C>, assigned: &HashSet<(String, i32)>) -> bool {
    let Ok(positions) = consumer.position() else { return false };
    let mut seen = 0;
    for e in positions.elements() {
        if !assigned.contains(&(e.topic().to_string(), e.partition())) {
            continue;
        }
        seen += 1;
        let Some((low, high)) = clients::cached_watermarks(consumer, e.topic(), e.partition()) else { return false };
        match e.offset() {
            rdkafka::Offset::Offset(p) if high >= 0 && p >= high => {}
            // Nothing read in this session: at the end only if there is nothing.
            rdkafka::Offset::Invalid if high >= 0 && high <= low => {}
            _ => return false,
        }
    }
    seen == assigned.len()
}

/// Most records taken from the consumer's buffer in one go.
const POLL_BATCH: usize = 500;
/// How soon the loop looks again at records the merge holds back.
const MERGE_RECHECK: Duration = Duration::from_millis(5);

/// Runs until `shutdown` is set (Ok) or something fails (Err).
fn run_once<P: Processor>(p: &mut P, cfg: &Config, s: &TaskSettings, shutdown: &AtomicBool) -> Result<(), TaskError> {
    // A new consumer: not ready until it has joined and caught up again.
    s.health.joined.store(false, Ordering::Relaxed);
    let producer: ThreadedProducer<TxnProducerContext> = clients::task_producer_config(cfg, &s.transactional_id)
        .create_with_context(TxnProducerContext::new(p.changelog_topic()))
        .map_err(|e| TaskError::Fatal(format!("producer config: {e}")))?;
    if s.exactly_once {
        // Fences any earlier producer with this id and aborts its open transaction.
        let _watched = s.watch.during("init_transactions", TXN_TIMEOUT);
        producer.init_transactions(TXN_TIMEOUT)?;
    }
    let consumer: Arc<BaseConsumer<TaskConsumerContext>> = Arc::new(
        clients::task_consumer_config(cfg, &s.group)
            .create_with_context(TaskConsumerContext::new(p.name()))
            .map_err(|e| TaskError::Fatal(format!("consumer config: {e}")))?,
    );
    // Declared after the consumer, so dropped before it: rebalances during
    // the consumer's close are applied at once instead of waiting for a
    // loop that has ended.
    let _closing = ClosingGuard(&consumer);
    let topics = p.input_topics();
    consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut priority: Vec<PriorityPartition> = p
        .priority_partitions()
        .into_iter()
        .filter_map(|(topic, partition)| consumer.split_partition_queue(&topic, partition).map(|queue| PriorityPartition { topic, partition, queue, covered_until_ms: i64::MIN }))
        .collect();

    // Watermark queries on their own connection: on the group consumer's
    // they would queue behind its long-polling fetches.
    let watermarks: BaseConsumer<clients::ReaderContext> = clients::restore_consumer_config(cfg, &s.group).create_with_context(clients::ReaderContext).map_err(|e| TaskError::Fatal(format!("consumer config: {e}")))?;
    let mut batch = Vec::with_capacity(POLL_BATCH);
    let merged = p.merged_topics();
    let merging = !merged.is_empty();
    let mut merge = LogTimeMerge::new(merged);
    let mut st = TxnState { exactly_once: s.exactly_once, ..TxnState::default() };
    let mut assigned: HashSet<(String, i32)> = HashSet::new();
    // Rebalance events taken from the client and not yet acted on.
    let mut pending: VecDeque<RebalanceEvent> = VecDeque::new();
    // The last poll found nothing more to read.
    let mut drained = false;

    let result = (|| -> Result<(), TaskError> {
        loop {
            let stopping = shutdown.load(Ordering::Relaxed);
            if let Some(started) = st.started {
                if stopping
                    || started.elapsed() >= s.commit_interval
                    || st.records >= s.max_batch_records
                    || (drained && s.idle_commit.is_some_and(|d| started.elapsed() >= d))
                    || (s.caught_up_commit && drained && st.records <= CAUGHT_UP_COMMIT_MAX && merge.is_empty() && at_end(&consumer, &assigned))
                {
                    commit(p, &producer, &consumer, &mut st, &s.watch, if stopping { s.drain_deadline } else { TXN_TIMEOUT })?;
                    continue;
                }
            } else if stopping {
                return Ok(());
            }
            let wait = match st.started {
                Some(started) => {
                    // Drained, a transaction open: wake for the idle commit.
                    let until = match s.idle_commit {
                        // Shorter than the interval (checked at start-up).
                        Some(d) if drained => d,
                        _ => s.commit_interval,
                    };
                    until.saturating_sub(started.elapsed()).min(Duration::from_millis(100))
                }
                None => Duration::from_millis(100),
            };
            // Records held back by the merge: look again soon.
            let wait = if merge.is_empty() { wait } else { wait.min(MERGE_RECHECK) };
            let polled = consumer.poll(wait);
            drained = polled.is_none();
            s.health.caught_up.store(drained, Ordering::Relaxed);
            // A batch the client cannot read: handled after what was
            // fetched before it.
            let mut unreadable_error = None;
            if let Some(msg) = polled {
                // Take what is already fetched, up to a batch, without waiting.
                let room = s.max_batch_records.saturating_sub(st.records).clamp(1, POLL_BATCH);
                let mut next = Some(msg);
                while let Some(m) = next.take() {
                    match m {
                        Ok(m) => batch.push(m),
                        Err(e) if unreadable::is_unreadable(&e) => {
                            unreadable_error = Some(e);
                            break;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    if batch.len() >= room {
                        break;
                    }
                    next = consumer.poll(Duration::ZERO);
                    if next.is_none() {
                        drained = true;
                    }
                }
            }
            if merging {
                // The merged topics' records go through the merge; what it
                // can hand out now follows anything else polled.
                let fetched = std::mem::replace(&mut batch, Vec::with_capacity(POLL_BATCH));
                batch.extend(fetched.into_iter().filter_map(|m| merge.push(m)));
                let room = s.max_batch_records.saturating_sub(st.records).max(1).saturating_sub(batch.len()).max(1);
                batch.extend(merge.take_ready(&consumer, &assigned, room, Instant::now()));
            }
            let batch_was_empty = batch.is_empty();
            if !batch.is_empty() {
                // The ordering barrier: every control record appended before a
                // record is handled before it. One catch-up covers the batch (its
                // latest timestamp), so a live stream costs one watermark query
                // per batch instead of one per record.
                if !priority.is_empty() {
                    let t = batch.iter().map(|m| timestamp_of(m).unwrap_or(i64::MAX)).max().unwrap_or(i64::MAX);
                    for pp in priority.iter_mut() {
                        if pp.covered_until_ms < t && assigned.contains(&(pp.topic.clone(), pp.partition)) {
                            catch_up(p, &producer, &consumer, &watermarks, pp, &mut st, t)?;
                        }
                    }
                }
                // Every record in hand is from an owned partition: a revoked
                // partition stays assigned until the events below hand it over.
                for msg in batch.drain(..) {
                    handle(p, &producer, &msg, &mut st)?;
                }
            }
            if let Some(e) = unreadable_error {
                skip_unreadable(p, &producer, &consumer, &watermarks, cfg, s, &assigned, &priority, &mut st, &e)?;
            } else if batch_was_empty && drained {
                // Idle: take any control records that arrived.
                for pp in &priority {
                    if assigned.contains(&(pp.topic.clone(), pp.partition)) {
                        while let Some(m) = pp.queue.poll(Duration::ZERO) {
                            handle(p, &producer, &m?, &mut st)?;
                        }
                    }
                }
            }
            pending.extend(consumer.context().take_events());
            while let Some(event) = pending.pop_front() {
                let outcome = match &event {
                    RebalanceEvent::Revoked { parts, lost } => {
                        // Hand over cleanly: what was done for them commits,
                        // so the next owner starts right after it. Lost ones
                        // (the group gave them away already) cannot be
                        // committed for: the open transaction is aborted
                        // below and the task starts over from the committed
                        // offsets.
                        let committed = if *lost && st.started.is_some() {
                            Err(TaskError::Retriable(format!("{} partitions lost to the group with a transaction open", parts.len())))
                        } else {
                            commit(p, &producer, &consumer, &mut st, &s.watch, s.drain_deadline)
                        };
                        tracing::info!(task = p.name(), partitions = parts.len(), lost, "partitions revoked");
                        for part in parts {
                            assigned.remove(part);
                            st.positions.remove(part);
                        }
                        // Polled, not handled, not committed: the next owner reads them.
                        merge.forget(parts);
                        for pp in priority.iter_mut() {
                            pp.covered_until_ms = i64::MIN;
                        }
                        p.on_revoked(parts, true);
                        // Always handed over, even when the commit failed: the
                        // client waits for this call (a close would wait forever).
                        clients::apply(&consumer, parts, false).map_err(TaskError::from).and(committed)
                    }
                    RebalanceEvent::Assigned(parts) => {
                        tracing::info!(task = p.name(), partitions = parts.len(), "partitions assigned");
                        // The open transaction commits first: a restore can
                        // outlast its timeout, and holds up its readers.
                        let committed = commit(p, &producer, &consumer, &mut st, &s.watch, TXN_TIMEOUT);
                        // State first: no record of a partition is fetched
                        // before its state is restored.
                        s.health.caught_up.store(false, Ordering::Relaxed);
                        let taken = committed.and_then(|()| p.on_assigned(parts)).and_then(|()| clients::apply(&consumer, parts, true).map_err(TaskError::from)).map(|()| assigned.extend(parts.iter().cloned()));
                        // Joined once its first assignment (even an empty one) is taken on.
                        s.health.joined.store(taken.is_ok(), Ordering::Relaxed);
                        taken
                    }
                    RebalanceEvent::Failed(e) => Err(TaskError::Retriable(e.clone())),
                };
                if let Err(e) = outcome {
                    // An assignment not taken on is still owed to the client;
                    // the close below settles it.
                    if matches!(event, RebalanceEvent::Assigned(_)) {
                        pending.push_front(event);
                    }
                    return Err(e);
                }
            }
        }
    })();

    if let Err(e) = &result {
        tracing::warn!(task = p.name(), error = %crate::redact::text(&e.to_string()), "task failed; aborting the open transaction");
        if st.started.is_some() && st.exactly_once {
            let _watched = s.watch.during("abort_transaction", Duration::from_secs(10));
            let _ = producer.abort_transaction(Duration::from_secs(10));
            metrics::counter!("sendgate_transactions_total", "outcome" => "aborted").increment(1);
        }
        p.aborted();
    }
    // Every rebalance the client still waits for is settled now (the close
    // would otherwise wait for it forever); later ones are applied as they come.
    consumer.context().set_closing();
    pending.extend(consumer.context().take_events());
    for event in pending.drain(..) {
        let settled = match &event {
            RebalanceEvent::Assigned(parts) => clients::apply(&consumer, parts, true),
            RebalanceEvent::Revoked { parts, .. } => {
                p.on_revoked(parts, true);
                clients::apply(&consumer, parts, false)
            }
            RebalanceEvent::Failed(_) => consumer.unassign(),
        };
        if let Err(e) = settled {
            tracing::warn!(task = p.name(), error = %e, "settling a rebalance while stopping");
        }
    }
    let assigned: Vec<(String, i32)> = consumer.assignment().map(|t| t.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()).unwrap_or_default();
    p.on_revoked(&assigned, false);
    consumer.unsubscribe();
    result
}

struct ClosingGuard<'a>(&'a BaseConsumer<TaskConsumerContext>);

impl Drop for ClosingGuard<'_> {
    fn drop(&mut self) {
        self.0.context().set_closing();
    }
}

/// The open transaction's bookkeeping.
#[derive(Default)]
struct TxnState {
    /// Next offset to commit per input partition.
    offsets: HashMap<(String, i32), i64>,
    /// Next offset per input partition, across commits (for the barrier).
    positions: HashMap<(String, i32), i64>,
    started: Option<Instant>,
    records: usize,
    counts: PendingCounts,
    exactly_once: bool,
}

/// A control partition read through its own queue.
struct PriorityPartition {
    topic: String,
    partition: i32,
    queue: PartitionQueue<TaskConsumerContext>,
    /// Every record of this partition appended before this time (broker
    /// clock, ms) has been handled.
    covered_until_ms: i64,
}

/// Longest the barrier waits for a control partition before going on (and
/// saying so): a control partition that cannot be read must not stop intents.
const BARRIER_MAX_WAIT: Duration = Duration::from_secs(5);

/// Reads a control partition up to its current end: everything appended to
/// it before now is then handled.
///
/// `record_time` is the broker timestamp of the record waiting behind the
/// barrier: the control partition's end, read after that record was fetched,
/// covers everything appended to it before that time. A control partition
/// that cannot be read is logged and skipped, never allowed to stop intents.
#[allow(clippy::too_many_arguments)]
fn catch_up<P: Processor>(
    p: &mut P,
    producer: &ThreadedProducer<TxnProducerContext>,
    consumer: &BaseConsumer<TaskConsumerContext>,
    watermarks: &BaseConsumer<clients::ReaderContext>,
    pp: &mut PriorityPartition,
    st: &mut TxnState,
    record_time: i64,
) -> Result<(), TaskError> {
    let (low, high) = match watermarks.fetch_watermarks(&pp.topic, pp.partition, Duration::from_secs(2)) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(topic = %pp.topic, partition = pp.partition, error = %e, "control partition unreadable; going on without it");
            return Ok(());
        }
    };
    let key = (pp.topic.clone(), pp.partition);
    let deadline = Instant::now() + BARRIER_MAX_WAIT;
    loop {
        let position = match st.positions.get(&key) {
            Some(pos) => *pos,
            None => {
                // Nothing read from it yet in this session: start from the
                // group's committed offset (or the log start, as auto.offset.reset says).
                let pos = match clients::committed_offset(consumer, &pp.topic, pp.partition) {
                    Ok(committed) => committed.unwrap_or(low),
                    Err(e) => {
                        tracing::warn!(topic = %pp.topic, partition = pp.partition, error = %e, "control partition offsets unreadable; going on without it");
                        return Ok(());
                    }
                };
                st.positions.insert(key.clone(), pos);
                pos
            }
        };
        // An empty partition is caught up before its fetch position is known.
        if position >= high || high <= low {
            pp.covered_until_ms = record_time;
            return Ok(());
        }
        if Instant::now() > deadline {
            tracing::warn!(topic = %pp.topic, partition = pp.partition, position, high, "control partition did not catch up; going on without it");
            return Ok(());
        }
        if let Some(m) = pp.queue.poll(Duration::from_millis(50)) {
            handle(p, producer, &m?, st)?;
        }
    }
}

/// Dead-letters the range of offsets the client cannot read and seeks past
/// it, inside the open transaction. Priority partitions are read through
/// their own queues and are not searched here.
#[allow(clippy::too_many_arguments)]
fn skip_unreadable<P: Processor>(
    p: &mut P,
    producer: &ThreadedProducer<TxnProducerContext>,
    consumer: &BaseConsumer<TaskConsumerContext>,
    watermarks: &BaseConsumer<clients::ReaderContext>,
    cfg: &Config,
    s: &TaskSettings,
    assigned: &HashSet<(String, i32)>,
    priority: &[PriorityPartition],
    st: &mut TxnState,
    error: &KafkaError,
) -> Result<(), TaskError> {
    let parts: Vec<(String, i32)> = assigned.iter().filter(|(t, n)| !priority.iter().any(|pp| &pp.topic == t && pp.partition == *n)).cloned().collect();
    let candidates = unreadable::next_offsets(consumer, watermarks, &parts);
    let Some(range) = unreadable::locate(cfg, &s.group, &candidates)? else {
        // Reported, then not reproduced (an error queued before an earlier
        // skip, say): nothing is stuck.
        tracing::warn!(task = p.name(), %error, "the client reported an unreadable batch that no partition reproduces; going on");
        return Ok(());
    };
    if st.started.is_none() {
        producer.context().take_log();
        if st.exactly_once {
            producer.begin_transaction()?;
        }
        st.started = Some(Instant::now());
    }
    let rec = InputRecord { topic: &range.topic, partition: range.partition, offset: range.from, key: None, payload: None, timestamp_ms: None };
    let reason = format!("offsets {} to {} could not be read by the Kafka client and were skipped: {}", range.from, range.next - 1, range.reason);
    tracing::error!(task = p.name(), topic = %range.topic, partition = range.partition, from = range.from, next = range.next, reason = %range.reason, "skipping records the client cannot read");
    let mut out = Outbox { producer, counts: &mut st.counts };
    out.dead_letter(&p.dead_letter_topic(), &rec, reason, p.name())?;
    out.counts.add(crate::metrics::UNREADABLE_RECORDS, [("", ""); 2]);
    let key = (range.topic.clone(), range.partition);
    st.offsets.insert(key.clone(), range.next);
    st.positions.insert(key, range.next);
    st.records += 1;
    consumer.seek(&range.topic, range.partition, Offset::Offset(range.next), Duration::from_secs(5))?;
    Ok(())
}

fn handle<P: Processor>(p: &mut P, producer: &ThreadedProducer<TxnProducerContext>, msg: &BorrowedMessage<'_>, st: &mut TxnState) -> Result<(), TaskError> {
    if st.started.is_none() {
        // Reports of an earlier, aborted transaction (purged messages) must
        // not be read as this one's.
        producer.context().take_log();
        if st.exactly_once {
            producer.begin_transaction()?;
        }
        st.started = Some(Instant::now());
    }
    let rec = InputRecord { topic: msg.topic(), partition: msg.partition(), offset: msg.offset(), key: msg.key(), payload: msg.payload(), timestamp_ms: timestamp_of(msg) };
    let mut out = Outbox { producer, counts: &mut st.counts };
    p.process(&rec, &mut out)?;
    let key = (msg.topic().to_string(), msg.partition());
    st.offsets.insert(key.clone(), msg.offset() + 1);
    st.positions.insert(key, msg.offset() + 1);
    st.records += 1;
    Ok(())
}

/// Commits the open transaction, if there is one, within `timeout`.
fn commit<P: Processor>(p: &mut P, producer: &ThreadedProducer<TxnProducerContext>, consumer: &BaseConsumer<TaskConsumerContext>, st: &mut TxnState, watch: &super::watchdog::CallWatch, timeout: Duration) -> Result<(), TaskError> {
    if st.started.is_none() {
        return Ok(());
    }
    let started = Instant::now();
    // One deadline across the phases, not a timeout for each.
    let deadline = started + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut out = Outbox { producer, counts: &mut st.counts };
    p.prepare_commit(&mut out)?;
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in st.offsets.iter() {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    let log = if st.exactly_once {
        let group = consumer.group_metadata().ok_or_else(|| TaskError::Retriable("consumer has no group metadata yet".into()))?;
        // Every record of the transaction is in the log before its offsets
        // are: if the offsets are accepted (this member still owns the
        // partitions), the next owner's restore, which reads the changelog
        // to its end as of its assignment, covers all of its records.
        wait_delivered(producer, left())?;
        let watched = watch.during("send_offsets_to_transaction", left());
        producer.send_offsets_to_transaction(&tpl, &group, left())?;
        drop(watched);
        let watched = watch.during("commit_transaction", left());
        let outcome = producer.commit_transaction(left());
        drop(watched);
        let log = producer.context().take_log();
        if let Err(e) = outcome {
            metrics::counter!("sendgate_transactions_total", "outcome" => "failed").increment(1);
            return Err(TaskError::Retriable(format!("commit failed: {e}")));
        }
        if !log.failures.is_empty() {
            // Cannot happen after a successful commit; refuse to trust it if it does.
            return Err(TaskError::Fatal(format!("deliveries failed in a committed transaction: {}", log.failures.join("; "))));
        }
        log
    } else {
        // At-least-once: every output delivered, then the offsets.
        wait_delivered(producer, left())?;
        let log = producer.context().take_log();
        if !log.failures.is_empty() {
            return Err(TaskError::Retriable(format!("deliveries failed: {}", log.failures.join("; "))));
        }
        if tpl.count() > 0 {
            consumer.commit(&tpl, CommitMode::Sync).map_err(|e| TaskError::Retriable(format!("offset commit failed: {e}")))?;
        }
        log
    };
    metrics::counter!("sendgate_transactions_total", "outcome" => "committed").increment(1);
    st.counts.publish();
    metrics::histogram!("sendgate_transaction_commit_seconds").record(started.elapsed().as_secs_f64());
    st.offsets.clear();
    st.started = None;
    st.records = 0;
    p.committed(&log.changelog_last)
}

/// Waits until every record sent is acknowledged and its delivery report
/// handled. The client's own flush, called beside the producer's polling
/// thread, sleeps in 100 ms slices while that thread takes the reports:
/// 100 ms added to every commit. A loop on the client's in-flight count
/// with short sleeps cost a wake-up every 200 µs of every commit; the
/// delivery callback wakes this once, when the last report is handled.
fn wait_delivered(producer: &ThreadedProducer<TxnProducerContext>, timeout: Duration) -> Result<(), TaskError> {
    producer.context().wait_reported(timeout).map_err(|out| TaskError::Retriable(format!("{out} records not acknowledged in {timeout:?}")))
}

/// Runs a task until shutdown, rebuilding its clients after retriable
/// failures with capped exponential backoff. Every failure is logged.
pub fn supervise<P: Processor>(mut p: P, cfg: &Config, s: TaskSettings, shutdown: &AtomicBool) -> Result<(), TaskError> {
    const FIRST_BACKOFF: Duration = Duration::from_millis(200);
    // However this returns, the watchdog's stop deadline stops waiting for it.
    let watch = s.watch.clone();
    let _ended = watch.until_ended();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let outcome = run_once(&mut p, cfg, &s, shutdown);
        // A task that ran healthily for a while starts its backoff afresh.
        if started.elapsed() > Duration::from_secs(60) {
            backoff = FIRST_BACKOFF;
        }
        match outcome {
            Ok(()) => {
                p.close()?;
                tracing::info!(task = p.name(), "task stopped cleanly");
                return Ok(());
            }
            Err(TaskError::Fatal(e)) => {
                let _ = p.close();
                return Err(TaskError::Fatal(e));
            }
            Err(TaskError::Retriable(e)) => {
                metrics::counter!("sendgate_task_restarts_total", "task" => p.name()).increment(1);
                let error = e.to_string();
                // A refused ACL heals only when an administrator grants it:
                // keep retrying (the grant may be on its way), and say which.
                let hint = if error.to_ascii_lowercase().contains("authorization failed") { " (sendgate's principal lacks a Kafka ACL: `sendgate config acls` prints the grants it needs)" } else { "" };
                tracing::warn!(task = p.name(), error = %crate::redact::text(&error), backoff_ms = backoff.as_millis() as u64, "task restarting{hint}");
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if shutdown.load(Ordering::Relaxed) {
                        // Between attempts nothing is open: the stop is clean.
                        p.close()?;
                        tracing::info!(task = p.name(), "task stopped cleanly");
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
