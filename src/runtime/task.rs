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

use super::clients::{self, RebalanceEvent, TaskConsumerContext, TxnProducerContext};
use crate::config::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
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
        TaskError::Fatal(e.to_string())
    }
}

/// One consumed record, as a processor sees it.
pub struct InputRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The broker's timestamp (LogAppendTime on input topics).
    pub timestamp_ms: Option<i64>,
}

/// Where a processor writes its outputs, inside the open transaction.
pub struct Outbox<'a> {
    producer: &'a ThreadedProducer<TxnProducerContext>,
    pub sent: u64,
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
                    self.sent += 1;
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

pub trait Processor {
    fn name(&self) -> &'static str;
    fn input_topics(&self) -> Vec<String>;
    /// Input partitions drained before every poll of the others: control
    /// records (policies, commands) appended before an intent are then
    /// handled before it, so "apply a policy, then send" means what it says.
    fn priority_partitions(&self) -> Vec<(String, i32)> {
        Vec::new()
    }
    /// The changelog topic whose delivered offsets become checkpoints.
    fn changelog_topic(&self) -> Option<String> {
        None
    }
    /// Newly assigned input partitions: bring their state up to date before
    /// any of their records is processed.
    fn on_assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), TaskError>;
    fn on_revoked(&mut self, partitions: &[(String, i32)]);
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
}

const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs until `shutdown` is set (Ok) or something fails (Err).
fn run_once<P: Processor>(p: &mut P, cfg: &Config, s: &TaskSettings, shutdown: &AtomicBool) -> Result<(), TaskError> {
    let producer: ThreadedProducer<TxnProducerContext> = clients::transactional_producer_config(cfg, &s.transactional_id)
        .create_with_context(TxnProducerContext::new(p.changelog_topic()))
        .map_err(|e| TaskError::Fatal(format!("producer config: {e}")))?;
    // Fences any earlier producer with this id and aborts its open transaction.
    producer.init_transactions(TXN_TIMEOUT)?;
    let consumer: Arc<BaseConsumer<TaskConsumerContext>> = Arc::new(
        clients::task_consumer_config(cfg, &s.group)
            .create_with_context(TaskConsumerContext::default())
            .map_err(|e| TaskError::Fatal(format!("consumer config: {e}")))?,
    );
    let topics = p.input_topics();
    consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
    let priority: Vec<_> = p.priority_partitions().iter().filter_map(|(t, part)| consumer.split_partition_queue(t, *part)).collect();

    let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
    let mut txn_started: Option<Instant> = None;
    let mut in_txn_records = 0usize;

    let result = (|| -> Result<(), TaskError> {
        loop {
            let stopping = shutdown.load(Ordering::Relaxed);
            if let Some(started) = txn_started {
                if stopping || started.elapsed() >= s.commit_interval || in_txn_records >= s.max_batch_records {
                    commit(p, &producer, &consumer, &mut offsets)?;
                    txn_started = None;
                    in_txn_records = 0;
                    continue;
                }
            } else if stopping {
                return Ok(());
            }
            let wait = match txn_started {
                Some(started) => s.commit_interval.saturating_sub(started.elapsed()).min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            // Control records first, then at most one other record.
            let mut polled = None;
            for q in &priority {
                if let Some(m) = q.poll(Duration::ZERO) {
                    polled = Some(m);
                    break;
                }
            }
            let polled = match polled {
                Some(m) => Some(m),
                None => consumer.poll(wait),
            };
            for event in consumer.context().take_events() {
                match event {
                    RebalanceEvent::Revoked(parts) => {
                        // The partitions are gone: their uncommitted work must
                        // not be committed by us. Abort; the new owner (or we,
                        // on re-assignment) resumes from the committed offsets.
                        if txn_started.take().is_some() {
                            producer.abort_transaction(TXN_TIMEOUT)?;
                            p.aborted();
                            offsets.clear();
                            in_txn_records = 0;
                        }
                        p.on_revoked(&parts);
                    }
                    RebalanceEvent::Assigned(parts) => {
                        tracing::info!(task = p.name(), partitions = parts.len(), "partitions assigned");
                        p.on_assigned(&parts)?;
                    }
                }
            }
            let Some(msg) = polled else { continue };
            let msg = msg?;
            if txn_started.is_none() {
                producer.begin_transaction()?;
                txn_started = Some(Instant::now());
            }
            let timestamp_ms = match msg.timestamp() {
                Timestamp::LogAppendTime(t) | Timestamp::CreateTime(t) => Some(t),
                Timestamp::NotAvailable => None,
            };
            let rec = InputRecord { topic: msg.topic(), partition: msg.partition(), offset: msg.offset(), key: msg.key(), payload: msg.payload(), timestamp_ms };
            let mut out = Outbox { producer: &producer, sent: 0 };
            p.process(&rec, &mut out)?;
            offsets.insert((msg.topic().to_string(), msg.partition()), msg.offset() + 1);
            in_txn_records += 1;
        }
    })();

    if let Err(e) = &result {
        tracing::warn!(task = p.name(), error = %e, "task failed; aborting the open transaction");
        if txn_started.is_some() {
            let _ = producer.abort_transaction(Duration::from_secs(10));
        }
        p.aborted();
    }
    let assigned: Vec<(String, i32)> = consumer.assignment().map(|t| t.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()).unwrap_or_default();
    p.on_revoked(&assigned);
    consumer.unsubscribe();
    result
}

fn commit<P: Processor>(p: &mut P, producer: &ThreadedProducer<TxnProducerContext>, consumer: &BaseConsumer<TaskConsumerContext>, offsets: &mut HashMap<(String, i32), i64>) -> Result<(), TaskError> {
    let started = Instant::now();
    let mut out = Outbox { producer, sent: 0 };
    p.prepare_commit(&mut out)?;
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets.iter() {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    let group = consumer.group_metadata().ok_or_else(|| TaskError::Retriable("consumer has no group metadata yet".into()))?;
    producer.send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)?;
    let outcome = producer.commit_transaction(TXN_TIMEOUT);
    let log = producer.context().take_log();
    if let Err(e) = outcome {
        metrics::counter!("sendgate_transactions_total", "outcome" => "failed").increment(1);
        return Err(TaskError::Retriable(format!("commit failed: {e}")));
    }
    if !log.failures.is_empty() {
        // Cannot happen after a successful commit; refuse to trust it if it does.
        return Err(TaskError::Fatal(format!("deliveries failed in a committed transaction: {}", log.failures.join("; "))));
    }
    metrics::counter!("sendgate_transactions_total", "outcome" => "committed").increment(1);
    metrics::histogram!("sendgate_transaction_commit_seconds").record(started.elapsed().as_secs_f64());
    offsets.clear();
    p.committed(&log.changelog_last)
}

/// Runs a task until shutdown, rebuilding its clients after retriable
/// failures with capped exponential backoff. Every failure is logged.
pub fn supervise<P: Processor>(mut p: P, cfg: &Config, s: TaskSettings, shutdown: &AtomicBool) -> Result<(), TaskError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match run_once(&mut p, cfg, &s, shutdown) {
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
                tracing::warn!(task = p.name(), error = %e, backoff_ms = backoff.as_millis() as u64, "task restarting");
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if shutdown.load(Ordering::Relaxed) {
                        p.close()?;
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
