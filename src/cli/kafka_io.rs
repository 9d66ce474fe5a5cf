//! Plain (non-transactional) Kafka I/O for the command-line tools.

use crate::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

fn base(cfg: &Config) -> Result<ClientConfig, String> {
    cfg.require_bootstrap()?;
    let mut c = cfg.client_config();
    c.set("log_level", "3");
    Ok(c)
}

pub fn producer(cfg: &Config) -> Result<FutureProducer, String> {
    cfg.require_bootstrap()?;
    let mut c = cfg.producer_config();
    c.set("log_level", "3")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .map_err(|e| format!("cannot create a producer: {e}"))
}

/// Sends records and waits for every acknowledgement. Returns the failures.
pub async fn send_all(producer: &FutureProducer, topic: &str, records: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Vec<String> {
    let mut futures = Vec::with_capacity(records.len());
    for (key, value) in &records {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key.as_slice());
        if let Some(v) = value {
            rec = rec.payload(v.as_slice());
        }
        futures.push(producer.send(rec, Duration::from_secs(60)));
        // Keep the number of unacknowledged sends bounded.
        if futures.len() >= 10_000 {
            let drained: Vec<_> = std::mem::take(&mut futures);
            if let Some(e) = futures::future::join_all(drained).await.into_iter().find_map(|r| r.err()) {
                return vec![format!("{topic}: {}", e.0)];
            }
        }
    }
    let mut failures = Vec::new();
    for r in futures::future::join_all(futures).await {
        if let Err((e, _)) = r {
            failures.push(format!("{topic}: {e}"));
        }
    }
    let _ = producer.flush(Duration::from_secs(30));
    failures
}

/// One record read from a topic.
pub struct ReadRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// Borrowed from the consumer's message: a reader that keeps them
    /// copies them (copying every record's bytes was a visible cost).
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

pub struct ReadOptions {
    pub from_beginning: bool,
    /// Start at these offsets (by partition) instead; overrides `from_beginning`.
    pub start_offsets: Option<std::collections::HashMap<i32, i64>>,
    /// Stop after this many records.
    pub max: Option<u64>,
    /// Stop after this long without a new record.
    pub idle_timeout: Option<Duration>,
}

/// Reads a whole topic (every partition) read-committed, outside any group,
/// calling `f` per record until a stop condition holds.
pub fn read_topic(cfg: &Config, topic: &str, opts: &ReadOptions, mut f: impl FnMut(ReadRecord<'_>) -> Result<(), String>) -> Result<u64, String> {
    let consumer: BaseConsumer = base(cfg)?
        .set("group.id", format!("{}.cli-reader", cfg.namespace))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(15)).map_err(|e| format!("cannot read metadata of {topic}: {e}"))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("no topic {topic}"))?;
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(format!("topic {topic} does not exist; run `sendgate topics apply`"));
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        let off = match opts.start_offsets.as_ref().and_then(|m| m.get(&p.id())) {
            Some(o) => Offset::Offset(*o),
            None if opts.from_beginning || opts.start_offsets.is_some() => Offset::Beginning,
            None => Offset::End,
        };
        tpl.add_partition_offset(topic, p.id(), off).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut n = 0u64;
    let mut last = Instant::now();
    loop {
        if opts.max.is_some_and(|m| n >= m) {
            break;
        }
        if opts.idle_timeout.is_some_and(|t| last.elapsed() >= t) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            Some(Ok(m)) => {
                last = Instant::now();
                n += 1;
                let timestamp_ms = match m.timestamp() {
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                    Timestamp::NotAvailable => None,
                };
                f(ReadRecord { partition: m.partition(), offset: m.offset(), timestamp_ms, key: m.key(), payload: m.payload() })?;
            }
        }
    }
    Ok(n)
}

/// The current end offset of every partition of a topic: read from there to
/// see only what comes next.
pub fn end_offsets(cfg: &Config, topic: &str) -> Result<std::collections::HashMap<i32, i64>, String> {
    let consumer: BaseConsumer = base(cfg)?.set("group.id", format!("{}.cli-reader", cfg.namespace)).create().map_err(|e| format!("cannot create a consumer: {e}"))?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(15)).map_err(|e| format!("cannot read metadata of {topic}: {e}"))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("no topic {topic}"))?;
    let mut out = std::collections::HashMap::new();
    for p in t.partitions() {
        let (_, high) = watermarks_of(&consumer, topic, p.id())?;
        out.insert(p.id(), high);
    }
    Ok(out)
}

/// A consumer context that treats reaching the end of a partition as the
/// signal it is (see `read_ranges`), not as an error worth logging.
struct EndAware;

impl rdkafka::ClientContext for EndAware {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::KafkaError::{Global, PartitionEOF};
        if !matches!(error, PartitionEOF(_) | Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(%error, reason, "kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndAware {}

/// Reads exactly the offsets `[start, end)` of each given partition,
/// read-committed, outside any group; returns when every range is done
/// (a transaction marker may hold the last offsets of a range).
pub fn read_ranges(cfg: &Config, topic: &str, ranges: &std::collections::HashMap<i32, (i64, i64)>, mut f: impl FnMut(ReadRecord<'_>) -> Result<(), String>) -> Result<u64, String> {
    let mut todo: std::collections::HashMap<i32, i64> = ranges.iter().filter(|(_, (s, e))| s < e).map(|(p, (_, e))| (*p, *e)).collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let consumer: BaseConsumer<EndAware> = base(cfg)?
        .set("group.id", format!("{}.cli-reader", cfg.namespace))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        // A reader of one partition would otherwise get 1 MiB per round trip
        // (the default), a few thousand records, and wait on the broker
        // between them.
        .set("max.partition.fetch.bytes", "16777216")
        // A range that ends in a transaction marker ends with an empty
        // fetch: the broker would hold it for fetch.wait.max.ms (500 ms by
        // default) before the end of the partition shows.
        .set("fetch.wait.max.ms", "10")
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.queue.backoff.ms", crate::runtime::clients::FETCH_QUEUE_BACKOFF_MS)
        .create_with_context(EndAware)
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for (p, (start, end)) in ranges {
        if start < end {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*start)).map_err(|e| e.to_string())?;
        }
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut n = 0u64;
    // Set when a poll comes back empty, cleared by a record (not stamped on
    // every record: reading the clock per record was a visible cost).
    let mut idle_since: Option<Instant> = None;
    while !todo.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                // Nothing for a while: the rest of every range is markers or
                // aborted records a read-committed reader skips.
                if idle_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                todo.remove(&p);
            }
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            Some(Ok(m)) => {
                idle_since = None;
                let p = m.partition();
                let Some(end) = todo.get(&p).copied() else { continue };
                if m.offset() >= end {
                    todo.remove(&p);
                    continue;
                }
                n += 1;
                let timestamp_ms = match m.timestamp() {
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                    Timestamp::NotAvailable => None,
                };
                f(ReadRecord { partition: p, offset: m.offset(), timestamp_ms, key: m.key(), payload: m.payload() })?;
                if m.offset() + 1 >= end {
                    todo.remove(&p);
                }
            }
        }
    }
    Ok(n)
}

/// The offsets a consumer group has committed on a topic (partitions it has
/// not committed on are absent).
pub fn group_offsets(cfg: &Config, group: &str, topic: &str) -> Result<std::collections::HashMap<i32, i64>, String> {
    // Read committed (the client's default, stated): the offset fetch then
    // asks for stable offsets, so offsets of a transaction being committed
    // are waited for, never left out while its records are already readable.
    let consumer: BaseConsumer = base(cfg)?
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(15)).map_err(|e| format!("cannot read metadata of {topic}: {e}"))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("no topic {topic}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = patiently(|| format!("committed offsets of {group} on {topic}"), || consumer.committed_offsets(tpl.clone(), Duration::from_secs(15)))?;
    Ok(committed.elements().iter().filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0).map(|o| (e.partition(), o))).collect())
}

/// The (low, high) watermarks of every partition of a topic.
pub fn watermarks(cfg: &Config, topic: &str) -> Result<std::collections::HashMap<i32, (i64, i64)>, String> {
    let consumer: BaseConsumer = base(cfg)?.set("group.id", format!("{}.cli-reader", cfg.namespace)).create().map_err(|e| format!("cannot create a consumer: {e}"))?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(15)).map_err(|e| format!("cannot read metadata of {topic}: {e}"))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("no topic {topic}"))?;
    let mut out = std::collections::HashMap::new();
    for p in t.partitions() {
        out.insert(p.id(), watermarks_of(&consumer, topic, p.id())?);
    }
    Ok(out)
}

/// How long the tools keep asking while the cluster moves a leader or a
/// group coordinator: a broker that just came back takes its preferred
/// leaderships back within seconds, and an audit run right after a broker
/// fault should wait that out rather than fail.
const PATIENCE: Duration = Duration::from_secs(60);

/// Asks again, with a growing pause, while the answer is one a leader or
/// coordinator election gives (see `is_leadership_moving`), for at most
/// `PATIENCE`; any other error at once, worded by `what`.
fn patiently<T>(what: impl Fn() -> String, mut ask: impl FnMut() -> rdkafka::error::KafkaResult<T>) -> Result<T, String> {
    let deadline = Instant::now() + PATIENCE;
    let mut pause = Duration::from_millis(200);
    loop {
        match ask() {
            Ok(v) => return Ok(v),
            Err(e) if is_leadership_moving(&e) && Instant::now() + pause < deadline => {
                tracing::debug!(what = %what(), error = %e, "asking again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(3));
            }
            Err(e) => return Err(format!("{}: {e}", what())),
        }
    }
}

/// One partition's (low, high) watermarks.
fn watermarks_of(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64), String> {
    patiently(|| format!("watermarks of {topic} partition {partition}"), || consumer.fetch_watermarks(topic, partition, Duration::from_secs(15)))
}

/// Whether an error is one a leader election or a broker restart gives,
/// gone once the cluster settles.
fn is_leadership_moving(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::OffsetNotAvailable
                | C::BrokerNotAvailable
                | C::NetworkException
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NotCoordinator
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as C;

    #[test]
    fn a_moving_leader_is_asked_again_and_anything_else_fails_at_once() {
        let mut calls = 0;
        let got = patiently(
            || "watermarks of t partition 0".into(),
            || {
                calls += 1;
                if calls < 3 { Err(KafkaError::MetadataFetch(C::NotLeaderForPartition)) } else { Ok((0, 7)) }
            },
        );
        assert_eq!(got, Ok((0, 7)));
        assert_eq!(calls, 3);

        let mut calls = 0;
        let got: Result<(i64, i64), String> = patiently(
            || "watermarks of t partition 0".into(),
            || {
                calls += 1;
                Err(KafkaError::MetadataFetch(C::UnknownTopicOrPartition))
            },
        );
        assert_eq!(calls, 1, "an error no election explains is not asked again");
        assert!(got.unwrap_err().starts_with("watermarks of t partition 0: "));
    }
}
