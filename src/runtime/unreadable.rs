//! Records the Kafka client cannot hand over at all: a batch that does not
//! decompress or does not parse. librdkafka reports such a batch as an error
//! without its partition or offset, and fetches it again and again, so a
//! task that only restarted would meet it for ever and every record behind
//! it would wait. Instead the task finds the partition and the batch's
//! extent with a probe consumer outside the group, dead-letters the range
//! with the client's reason and seeks past it, inside its transaction (the
//! dead letter and the new offset commit together).

use crate::config::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// How long one probe waits for the partition to answer.
const PROBE_WAIT: Duration = Duration::from_secs(5);
/// Most probes spent on finding one batch's end (a binary search over the
/// partition's offsets needs about 40 for a trillion).
const MAX_PROBES: usize = 64;

/// Whether a consume error means the batch at the fetch position can never
/// be read by this client (as opposed to a broker or network failure).
pub fn is_unreadable(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BadCompression | RDKafkaErrorCode::BadMessage | RDKafkaErrorCode::InvalidMessage | RDKafkaErrorCode::NotImplemented | RDKafkaErrorCode::UnsupportedCompressionType)
    ) && !matches!(e, KafkaError::PartitionEOF(_))
}

/// A range of offsets that cannot be read: `from` up to, not including, `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRange {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub next: i64,
    pub reason: String,
}

enum Probe {
    Unreadable(String),
    Readable,
    NoAnswer,
}

/// Reads one partition from `offset` until it yields a record, its end, or
/// an unreadable batch.
fn probe(c: &BaseConsumer<super::clients::ReaderContext>, topic: &str, partition: i32, offset: i64) -> Result<Probe, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    c.assign(&tpl)?;
    let deadline = Instant::now() + PROBE_WAIT;
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.topic() == topic && m.partition() == partition => return Ok(Probe::Readable),
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return Ok(Probe::Readable),
            Some(Err(e)) if is_unreadable(&e) => return Ok(Probe::Unreadable(e.to_string())),
            _ => {}
        }
    }
    Ok(Probe::NoAnswer)
}

/// Finds which of `candidates` (topic, partition, the offset the task reads
/// next) is stuck at an unreadable batch, and the first readable offset
/// after it. None when no candidate reproduces the failure (it was
/// transient: the caller restarts as for any other failure).
pub fn locate(cfg: &Config, group: &str, candidates: &[(String, i32, i64)]) -> Result<Option<UnreadableRange>, KafkaError> {
    let c: BaseConsumer<super::clients::ReaderContext> = super::clients::restore_consumer_config(cfg, group).create_with_context(super::clients::ReaderContext)?;
    for (topic, partition, position) in candidates {
        let Probe::Unreadable(reason) = probe(&c, topic, *partition, *position)? else {
            continue;
        };
        let (_, high) = c.fetch_watermarks(topic, *partition, Duration::from_secs(5))?;
        // Binary search for the first offset past the batch: every offset
        // inside it fails alike (the broker answers with the whole batch),
        // the first one after it reads.
        let (mut bad, mut good) = (*position, high.max(*position + 1));
        let mut probes = 0;
        while good - bad > 1 && probes < MAX_PROBES {
            let mid = bad + (good - bad) / 2;
            match probe(&c, topic, *partition, mid)? {
                Probe::Unreadable(_) => bad = mid,
                Probe::Readable => good = mid,
                Probe::NoAnswer => return Ok(None),
            }
            probes += 1;
        }
        let _ = c.unassign();
        return Ok(Some(UnreadableRange { topic: topic.clone(), partition: *partition, from: *position, next: good, reason }));
    }
    let _ = c.unassign();
    Ok(None)
}

/// The offset the task reads next in each of `partitions`: the consumer's
/// position, else the group's committed offset, else the log start.
pub fn next_offsets<C: rdkafka::consumer::ConsumerContext>(consumer: &BaseConsumer<C>, watermarks: &BaseConsumer<super::clients::ReaderContext>, partitions: &[(String, i32)]) -> Vec<(String, i32, i64)> {
    let positions = consumer.position().unwrap_or_default();
    partitions
        .iter()
        .filter_map(|(topic, partition)| {
            let at = positions.find_partition(topic, *partition).and_then(|e| e.offset().to_raw()).filter(|o| *o >= 0);
            let at = match at {
                Some(o) => Some(o),
                None => super::clients::committed_offset(consumer, topic, *partition).ok().flatten(),
            };
            let at = match at {
                Some(o) => o,
                None => watermarks.fetch_watermarks(topic, *partition, Duration::from_secs(5)).ok()?.0,
            };
            Some((topic.clone(), *partition, at))
        })
        .collect()
}
