//! Kafka client settings and contexts shared by every task.

use crate::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

fn base(cfg: &Config) -> ClientConfig {
    let mut c = cfg.client_config();
    // librdkafka logs through `log`; errors we act on are surfaced as results.
    c.set("log_level", "4");
    c
}

/// A consumer of a task's inputs: group member, read-committed, no auto commit
/// (offsets go into the producer's transaction).
pub fn task_consumer_config(cfg: &Config, group: &str) -> ClientConfig {
    let mut c = base(cfg);
    if cfg.static_membership {
        // A restarted instance (same instance_id) takes its partitions back
        // at once instead of waiting for its dead predecessor's session to
        // time out. The price: a static member does not leave the group when
        // it stops, so its partitions wait out the session timeout.
        c.set("group.instance.id", format!("{group}.{}", cfg.instance_id));
    }
    if !cfg.kafka.contains_key("partition.assignment.strategy") {
        // Incremental: a member joining or leaving moves only the partitions
        // that change owner; the others keep processing through it.
        c.set("partition.assignment.strategy", "cooperative-sticky");
    }
    c.set("group.id", group)
        .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        // Members learn of a rebalance at their next heartbeat: at the
        // default 3 s, a member leaving cleanly cost the others up to 3 s
        // before they took its partitions.
        .set("heartbeat.interval.ms", (cfg.session_timeout_ms / 10).max(500).to_string())
        // A restore runs between polls; allow a long one before the group
        // considers this member dead.
        .set("max.poll.interval.ms", "600000")
        // Bounded prefetch: at most ~16 MiB buffered per task.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        // How long the broker holds a fetch that finds nothing: it answers
        // as soon as records are readable, so this bounds only idle fetches.
        // At 20 ms, five idle tasks sent about 250 fetches a second, and the
        // broker's transactions slowed with them: at 20 intents/s allowed
        // intents took p50 45 / p99 287 ms, at 100 ms 37 / 82 ms
        // (docs/benchmarks.md).
        .set("fetch.wait.max.ms", "100");
    c
}

/// A consumer that reads a changelog partition to its end, outside any group.
pub fn restore_consumer_config(cfg: &Config, group: &str) -> ClientConfig {
    let mut c = base(cfg);
    c.set("group.id", group)
        .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string())
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    c
}

/// A client for one question only: where a changelog partition ends, open
/// transactions included (the high watermark). A read-committed client
/// answers with the last stable offset instead, which stops short of a
/// transaction still being committed; a restore that took that for the end
/// missed the previous owner's last commit (its markers land just after its
/// commit call returns), while the input offsets, fetched as stable, began
/// after it: the long fault run found state that way with no record of it.
pub fn end_offsets_config(cfg: &Config, group: &str) -> ClientConfig {
    let mut c = restore_consumer_config(cfg, group);
    c.set("isolation.level", "read_uncommitted");
    c
}

/// The context of the readers outside any group (restores, standbys,
/// watermark queries): a partition's end is what they read to, and the
/// client's report of it is no error, so it is not logged as one (it was
/// an ERROR line at every restore).
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            tracing::trace!(%reason, "partition end reached");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// How long a consumer waits before fetching again once its prefetch queue
/// was full. librdkafka's default, 1 s, stalls any reader that works
/// slower than it fetches: it empties the queue and then waits out the
/// rest of the second (an audit replay spent 7 of its 8 s waiting so).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The task's producer: transactional under exactly-once; idempotent (no
/// duplicates from its own retries) under at-least-once.
pub fn task_producer_config(cfg: &Config, transactional_id: &str) -> ClientConfig {
    let mut c = cfg.producer_config();
    c.set("log_level", "4");
    if cfg.exactly_once() {
        c.set("transactional.id", transactional_id);
    }
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("transaction.timeout.ms", cfg.transaction_timeout_ms.to_string())
        .set("linger.ms", "5")
        // Right after a commit the coordinator answers CONCURRENT_TRANSACTIONS
        // until the commit markers are written; the default 100 ms backoff
        // then adds 100 ms to every transaction (the Java client shortened
        // it for the same reason).
        .set("retry.backoff.ms", "5")
        .set("retry.backoff.max.ms", "100")
        .set("batch.num.messages", "10000")
        // Bounded in-memory queue; a full queue is waited on, never dropped.
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.timeout.ms", cfg.transaction_timeout_ms.to_string());
    c
}

/// Rebalance events, recorded during `poll` and acted on by the task loop
/// right after it, on the same thread. The assignment itself changes only
/// when the loop says so (`apply`): partitions are handed over after the
/// open transaction has committed their work, and taken on after their
/// state is restored. The client waits for that call; it need not come from
/// inside the callback.
#[derive(Debug)]
pub enum RebalanceEvent {
    Assigned(Vec<(String, i32)>),
    /// `lost`: the group already gave them away (this member's session
    /// expired or it was fenced): their open work cannot be committed.
    Revoked { parts: Vec<(String, i32)>, lost: bool },
    Failed(String),
}

#[derive(Default)]
pub struct TaskConsumerContext {
    events: Mutex<Vec<RebalanceEvent>>,
    /// Set while the consumer closes: rebalances are then applied at once,
    /// as nothing is left to commit and the close waits for them.
    closing: AtomicBool,
    /// The task's name, for its consumer-lag gauge.
    task: &'static str,
}

/// How often the task consumer reports its statistics (the lag gauge).
pub const STATS_INTERVAL_MS: u32 = 5_000;

fn parts(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

impl TaskConsumerContext {
    pub fn new(task: &'static str) -> TaskConsumerContext {
        TaskConsumerContext { task, ..Default::default() }
    }

    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().expect("not poisoned"))
    }

    pub fn set_closing(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}

/// A partition's (low, high) watermarks as the latest fetch response
/// reported them (the client's cache: no request); None before any.
pub fn cached_watermarks<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partition: i32) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives, `topic`
    // is NUL-terminated and outlives the call, which only copies the
    // client's cached watermarks into the two out-parameters.
    let err = unsafe { rdkafka::bindings::rd_kafka_get_watermark_offsets(consumer.client().native_ptr(), topic.as_ptr(), partition, &mut low, &mut high) };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

/// The group's committed offset of a partition; None when it has none.
pub fn committed_offset<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partition: i32) -> rdkafka::error::KafkaResult<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer.committed_offsets(tpl, std::time::Duration::from_secs(2))?;
    Ok(committed.find_partition(topic, partition).and_then(|e| e.offset().to_raw()).filter(|o| *o >= 0))
}

/// Takes partitions on (`add`) or hands them over, incrementally under the
/// cooperative protocol and wholesale under the eager one.
pub fn apply<C: ConsumerContext>(consumer: &BaseConsumer<C>, partitions: &[(String, i32)], add: bool) -> rdkafka::error::KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    match (consumer.rebalance_protocol(), add) {
        (RebalanceProtocol::Cooperative, true) => consumer.incremental_assign(&tpl),
        (RebalanceProtocol::Cooperative, false) => consumer.incremental_unassign(&tpl),
        (_, true) => consumer.assign(&tpl),
        (_, false) => consumer.unassign(),
    }
}

impl ClientContext for TaskConsumerContext {
    /// The records the task has yet to read, summed over the partitions
    /// it is fetching (librdkafka's consumer_lag: high watermark, or the
    /// last stable offset read committed, less the position).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.fetch_state == "active" && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        metrics::gauge!(crate::metrics::CONSUMER_LAG, "task" => self.task).set(lag as f64);
    }
}

impl ConsumerContext for TaskConsumerContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let event = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => RebalanceEvent::Assigned(parts(tpl)),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => RebalanceEvent::Revoked { parts: parts(tpl), lost: consumer.assignment_lost() },
            e => RebalanceEvent::Failed(format!("rebalance failed: {e:?}")),
        };
        if self.closing.load(Ordering::Relaxed) {
            let result = match &event {
                RebalanceEvent::Assigned(p) => apply(consumer, p, true),
                RebalanceEvent::Revoked { parts: p, .. } => apply(consumer, p, false),
                RebalanceEvent::Failed(_) => consumer.unassign(),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "rebalance while closing");
            }
            return;
        }
        self.events.lock().expect("not poisoned").push(event);
    }
}

/// What the producer delivered in the current transaction: the last offset
/// per changelog partition (the next checkpoint), and any failure.
#[derive(Default, Debug)]
pub struct DeliveryLog {
    pub changelog_last: HashMap<i32, i64>,
    pub failures: Vec<String>,
}

pub struct TxnProducerContext {
    changelog_topic: Option<String>,
    reports: Mutex<Reports>,
    /// Signalled when the report a commit waits for is handled, so that it
    /// wakes once, when its last record is in, not on a polling timer.
    reported: Condvar,
    /// Records handed to the producer since it was made (see `sent`).
    sent: AtomicU64,
}

struct Reports {
    log: DeliveryLog,
    /// Delivery reports handled since the producer was made: each record
    /// the producer accepted gets exactly one, delivered, failed or purged.
    handled: u64,
    /// The count of handled reports a waiter waits for (u64::MAX: none).
    wake_at: u64,
}

impl Default for Reports {
    fn default() -> Self {
        Reports { log: DeliveryLog::default(), handled: 0, wake_at: u64::MAX }
    }
}

impl TxnProducerContext {
    pub fn new(changelog_topic: Option<String>) -> Self {
        TxnProducerContext { changelog_topic, reports: Mutex::new(Reports::default()), reported: Condvar::new(), sent: AtomicU64::new(0) }
    }

    pub fn take_log(&self) -> DeliveryLog {
        std::mem::take(&mut self.reports.lock().expect("not poisoned").log)
    }

    /// Counts a record the producer accepted.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Release);
    }

    /// Waits until every record accepted so far has had its delivery
    /// report handled. Err: `timeout` passed first, with this many still out.
    pub fn wait_reported(&self, timeout: Duration) -> Result<(), u64> {
        let deadline = Instant::now() + timeout;
        let sent = self.sent.load(Ordering::Acquire);
        let mut r = self.reports.lock().expect("not poisoned");
        r.wake_at = sent;
        let outcome = loop {
            if r.handled >= sent {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(sent - r.handled);
            }
            r = self.reported.wait_timeout(r, left).expect("not poisoned").0;
        };
        r.wake_at = u64::MAX;
        outcome
    }
}

impl ClientContext for TxnProducerContext {}

impl ProducerContext for TxnProducerContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut reports = self.reports.lock().expect("not poisoned");
        reports.handled += 1;
        let log = &mut reports.log;
        match result {
            Ok(m) => {
                if self.changelog_topic.as_deref() == Some(m.topic()) {
                    let e = log.changelog_last.entry(m.partition()).or_insert(-1);
                    *e = (*e).max(m.offset());
                }
            }
            Err((e, m)) => log.failures.push(format!("{} [{}]: {e}", m.topic(), m.partition())),
        }
        let wake = reports.handled >= reports.wake_at;
        drop(reports);
        if wake {
            self.reported.notify_all();
        }
    }
}
