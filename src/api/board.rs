//! Request-reply through the log. `POST /v1/intents` publishes intents to
//! the intents topic like any producer; the stages decide them as any
//! other; the answer is the decision record itself, read committed from the
//! decisions topic. A consumer of every decisions partition (from its end
//! at start-up, outside any group) keeps the most recent decisions in a
//! bounded board and wakes the requests waiting for them, so any instance
//! answers for any intent, whichever instance decided it.

use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::{Command, Decision, SendIntent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decisions kept for lookups and waiting requests (about 300 bytes each).
pub const BOARD_CAPACITY: usize = 100_000;

/// (tenant, intent id): intent ids are unique within a tenant only.
pub type IntentKey = (String, String);

struct Entry {
    /// Position in the order the board read decisions: a request takes
    /// only decisions read after it published (a resubmitted id's earlier
    /// decision is not the answer to this submission).
    seq: u64,
    decision: Arc<Decision>,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    by_key: HashMap<IntentKey, Entry>,
    /// Oldest first, for eviction; an entry replaced since is skipped.
    order: VecDeque<(IntentKey, u64)>,
}

pub struct Board {
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
    capacity: usize,
    /// The consumer knows where every partition's end was at start-up.
    positioned: Arc<AtomicBool>,
}

impl Board {
    pub fn new(capacity: usize) -> Board {
        Board { inner: Mutex::default(), changed: tokio::sync::Notify::new(), capacity: capacity.max(1), positioned: Arc::default() }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn positioned(&self) -> bool {
        self.positioned.load(Ordering::Relaxed)
    }

    /// The position of the last decision read; a request remembers it
    /// before publishing.
    pub fn seq(&self) -> u64 {
        self.inner.lock().expect("board lock").seq
    }

    pub fn insert(&self, d: Decision) {
        let key = (d.tenant.clone(), d.intent_id.clone());
        {
            let mut inner = self.inner.lock().expect("board lock");
            inner.seq += 1;
            let seq = inner.seq;
            inner.by_key.insert(key.clone(), Entry { seq, decision: Arc::new(d) });
            inner.order.push_back((key, seq));
            while inner.order.len() > self.capacity {
                let (old, old_seq) = inner.order.pop_front().expect("non-empty");
                if inner.by_key.get(&old).is_some_and(|e| e.seq == old_seq) {
                    inner.by_key.remove(&old);
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// The latest decision read for an intent.
    pub fn get(&self, key: &IntentKey) -> Option<Arc<Decision>> {
        self.inner.lock().expect("board lock").by_key.get(key).map(|e| e.decision.clone())
    }

    /// The latest decisions read, newest first, that `keep` accepts, up to
    /// `limit` (each intent's latest only).
    pub fn recent(&self, limit: usize, keep: impl Fn(&Decision) -> bool) -> Vec<Arc<Decision>> {
        let inner = self.inner.lock().expect("board lock");
        let mut out = Vec::new();
        for (key, seq) in inner.order.iter().rev() {
            if out.len() >= limit {
                break;
            }
            if let Some(e) = inner.by_key.get(key).filter(|e| e.seq == *seq) {
                if keep(&e.decision) {
                    out.push(e.decision.clone());
                }
            }
        }
        out
    }

    fn after(&self, keys: &[IntentKey], seq: u64) -> Vec<Option<Arc<Decision>>> {
        let inner = self.inner.lock().expect("board lock");
        keys.iter().map(|k| inner.by_key.get(k).filter(|e| e.seq > seq).map(|e| e.decision.clone())).collect()
    }

    /// Waits until every intent has a decision read after `seq`, or until
    /// `deadline`; what was found, in the order of `keys`.
    pub async fn wait_all(&self, keys: &[IntentKey], seq: u64, deadline: tokio::time::Instant) -> Vec<Option<Arc<Decision>>> {
        loop {
            // Registered before looking, so an insert between the look and
            // the wait still wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let found = self.after(keys, seq);
            if found.iter().all(Option::is_some) || tokio::time::Instant::now() >= deadline {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.after(keys, seq);
            }
        }
    }
}

/// Reads every partition of the decisions topic into `board` until
/// `shutdown`, on its own thread, from the ends at start-up.
pub fn spawn_reader(cfg: &Config, topic: String, board: Arc<Board>, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, String> {
    let positioned = board.positioned.clone();
    let sink = move |payload: &[u8]| match codec::decode::<Decision>(RecordType::Decision, payload) {
        Ok(d) => board.insert(d),
        Err(e) => {
            metrics::counter!("sendgate_api_undecodable_decisions_total").increment(1);
            tracing::debug!(error = %e, "decisions reader: a record that is not a decision");
        }
    };
    spawn_tail(cfg, "api-decisions", topic, 0, sink, positioned, shutdown)
}

/// Reads every partition of `topic`, read committed, from `back` records
/// before each partition's end at start-up, and hands each record's value
/// to `sink` until `shutdown`; `positioned` is set once the ends are found.
pub fn spawn_tail<F>(cfg: &Config, name: &'static str, topic: String, back: i64, mut sink: F, positioned: Arc<AtomicBool>, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, String>
where
    F: FnMut(&[u8]) + Send + 'static,
{
    let consumer = reader(cfg, name, 10)?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(200);
            while !shutdown.load(Ordering::Relaxed) {
                match assign_all(&consumer, &topic, |low, high| Offset::Offset((high - back).max(low))) {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, reader = name, "cannot find the topic's end yet; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            positioned.store(true, Ordering::Relaxed);
            while !shutdown.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => sink(m.payload().unwrap_or_default()),
                    Some(Err(e)) => tracing::warn!(error = %e, reader = name),
                    None => {}
                }
            }
        })
        .map_err(|e| e.to_string())
}

/// A consumer of the API's readers: assigned, never subscribed (no group
/// membership, no commits; the id only names the client to the broker,
/// and its ACL prefix), read committed.
pub fn reader(cfg: &Config, name: &str, fetch_wait_ms: u32) -> Result<BaseConsumer, String> {
    cfg.client_config()
        .set("group.id", format!("{}.api.{}", cfg.namespace, cfg.instance_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("queued.max.messages.kbytes", "16384")
        .set("log_level", "4")
        .create()
        .map_err(|e| format!("{name}: {e}"))
}

/// Assigns every partition of `topic` at `start(low, high)` of its
/// watermarks now.
pub fn assign_all(consumer: &BaseConsumer, topic: &str, start: impl Fn(i64, i64) -> Offset) -> Result<(), String> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let t = md.topics().first().ok_or("no metadata")?;
    if let Some(e) = t.error() {
        return Err(format!("{topic}: {e:?}"));
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).map_err(|e| e.to_string())?;
        tpl.add_partition_offset(topic, p.id(), start(low, high)).map_err(|e| e.to_string())?;
    }
    if tpl.count() == 0 {
        return Err(format!("{topic} has no partitions"));
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())
}

/// Publishes intents to the intents topic, keyed by sender as producers
/// are told to (docs/design.md), acknowledged by every in-sync replica.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    commands: String,
}

impl Publisher {
    pub fn new(cfg: &Config, topic: String, commands: String) -> Result<Publisher, String> {
        let producer = cfg
            .producer_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "15000")
            .set("queue.buffering.max.messages", "100000")
            .set("log_level", "4")
            .create()
            .map_err(|e| format!("intents publisher: {e}"))?;
        Ok(Publisher { producer, topic, commands })
    }

    /// Sends every intent, already encoded (`encoded[n]` is `intents[n]`'s
    /// value), and waits for every acknowledgement; the first failure, with
    /// the intent it concerns.
    pub async fn publish(&self, intents: &[SendIntent], encoded: &[Vec<u8>]) -> Result<(), String> {
        // All enqueued at once, then every acknowledgement awaited.
        let sends = intents.iter().zip(encoded).map(|(i, v)| self.producer.send(FutureRecord::to(&self.topic).key(i.sender.as_bytes()).payload(v), Duration::from_secs(5)));
        let outcomes = futures::future::join_all(sends).await;
        for (i, outcome) in intents.iter().zip(outcomes) {
            if let Err((e, _)) = outcome {
                return Err(format!("intent {} was not published: {e}", i.intent_id));
            }
        }
        Ok(())
    }

    /// Publishes an operator command, keyed by its target as the CLI does.
    pub async fn publish_command(&self, cmd: &Command) -> Result<(), String> {
        let value = codec::encode(RecordType::Command, cmd).map_err(|e| e.to_string())?;
        self.producer
            .send(FutureRecord::to(&self.commands).key(cmd.target.as_bytes()).payload(&value), Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("the command was not published: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn decision(tenant: &str, id: &str, status: DecisionStatus) -> Decision {
        Decision {
            intent_id: id.into(),
            tenant: tenant.into(),
            sender: "a@b.com".into(),
            recipient: "c@d.com".into(),
            status,
            reason: "r".into(),
            retry_at_ms: None,
            usage: Vec::new(),
            policy_version: 0,
            decided_at_ms: 0,
            source: SourceRef { topic: "t".into(), partition: 0, offset: 0 },
            stage: None,
            replayed: false,
        }
    }

    fn key(t: &str, i: &str) -> IntentKey {
        (t.into(), i.into())
    }

    #[tokio::test]
    async fn a_request_gets_only_decisions_read_after_it_published_and_tenants_apart() {
        let b = Arc::new(Board::new(10));
        b.insert(decision("acme", "1", DecisionStatus::Deferred));
        let seq = b.seq();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(b.wait_all(&[key("acme", "1")], seq, soon).await[0].is_none(), "the earlier decision is not this submission's");
        let b2 = b.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            b2.insert(decision("globex", "1", DecisionStatus::Blocked));
            b2.insert(decision("acme", "1", DecisionStatus::Allowed));
        });
        let got = b.wait_all(&[key("acme", "1")], seq, tokio::time::Instant::now() + Duration::from_secs(5)).await;
        writer.await.unwrap();
        assert_eq!(got[0].as_ref().map(|d| d.status), Some(DecisionStatus::Allowed));
        assert_eq!(b.get(&key("globex", "1")).map(|d| d.status), Some(DecisionStatus::Blocked));
    }

    #[test]
    fn the_board_keeps_the_latest_decisions_up_to_its_capacity() {
        let b = Board::new(3);
        for i in 0..5 {
            b.insert(decision("acme", &i.to_string(), DecisionStatus::Allowed));
        }
        b.insert(decision("acme", "3", DecisionStatus::Blocked));
        assert!(b.get(&key("acme", "0")).is_none() && b.get(&key("acme", "1")).is_none() && b.get(&key("acme", "2")).is_none());
        assert_eq!(b.get(&key("acme", "3")).map(|d| d.status), Some(DecisionStatus::Blocked));
        assert!(b.get(&key("acme", "4")).is_some());
        assert!(b.inner.lock().unwrap().by_key.len() <= 3);
    }
}
