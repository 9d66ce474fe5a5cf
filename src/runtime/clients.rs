//! Kafka client settings and contexts shared by every task.

use crate::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Message, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Mutex;

fn base(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap);
    // librdkafka logs through `log`; errors we act on are surfaced as results.
    c.set("log_level", "4");
    for (k, v) in &cfg.kafka {
        c.set(k, v);
    }
    c
}

/// A consumer of a task's inputs: group member, read-committed, no auto commit
/// (offsets go into the producer's transaction).
pub fn task_consumer_config(cfg: &Config, group: &str) -> ClientConfig {
    let mut c = base(cfg);
    c.set("group.id", group)
        // Static membership: a restarted instance (same instance_id) takes
        // its partitions back at once instead of waiting for the session of
        // its dead predecessor to time out.
        .set("group.instance.id", format!("{group}.{}", cfg.instance_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "15000")
        // A restore runs between polls; allow a long one before the group
        // considers this member dead.
        .set("max.poll.interval.ms", "600000")
        // Bounded prefetch: at most ~16 MiB buffered per task.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.wait.max.ms", "20");
    c
}

/// A consumer that reads a changelog partition to its end, outside any group.
pub fn restore_consumer_config(cfg: &Config, group: &str) -> ClientConfig {
    let mut c = base(cfg);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "65536");
    c
}

/// The task's producer: transactional under exactly-once; idempotent (no
/// duplicates from its own retries) under at-least-once.
pub fn task_producer_config(cfg: &Config, transactional_id: &str) -> ClientConfig {
    let mut c = base(cfg);
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

/// Rebalance events, recorded during `poll` and handled by the task loop
/// right after it, on the same thread.
#[derive(Debug)]
pub enum RebalanceEvent {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

#[derive(Default)]
pub struct TaskConsumerContext {
    events: Mutex<Vec<RebalanceEvent>>,
}

fn parts(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

impl TaskConsumerContext {
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().expect("not poisoned"))
    }
}

impl ClientContext for TaskConsumerContext {}

impl ConsumerContext for TaskConsumerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.events.lock().expect("not poisoned").push(RebalanceEvent::Revoked(parts(tpl)));
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.events.lock().expect("not poisoned").push(RebalanceEvent::Assigned(parts(tpl))),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
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
    log: Mutex<DeliveryLog>,
}

impl TxnProducerContext {
    pub fn new(changelog_topic: Option<String>) -> Self {
        TxnProducerContext { changelog_topic, log: Mutex::new(DeliveryLog::default()) }
    }
    pub fn take_log(&self) -> DeliveryLog {
        std::mem::take(&mut *self.log.lock().expect("not poisoned"))
    }
}

impl ClientContext for TxnProducerContext {}

impl ProducerContext for TxnProducerContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut log = self.log.lock().expect("not poisoned");
        match result {
            Ok(m) => {
                if self.changelog_topic.as_deref() == Some(m.topic()) {
                    let e = log.changelog_last.entry(m.partition()).or_insert(-1);
                    *e = (*e).max(m.offset());
                }
            }
            Err((e, m)) => log.failures.push(format!("{} [{}]: {e}", m.topic(), m.partition())),
        }
    }
}
