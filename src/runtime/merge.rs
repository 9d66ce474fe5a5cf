//! Hands a task the records of several input partitions in log-time order.
//!
//! The client returns records in the order it fetched them: a fetch brings a
//! run of one partition, then a run of another. With no backlog that is
//! close to log-time order; when the router catches up a backlog (after an
//! outage, or under a load faster than the processor) it is not, and a run
//! of delivery events could reach the sender stage ahead of intents appended
//! before them, or a run of intents ahead of the bounces that came first.
//!
//! So the router buffers what it polls from the merged topics (intents and
//! delivery events) per partition and takes the record with the earliest
//! log time among the partitions' heads, as Kafka Streams does across a
//! task's partitions. A partition with nothing buffered may still hold an
//! earlier record at the broker: the merge waits for it, unless the
//! client's last fetch showed it caught up (nothing past what was polled),
//! and never longer than `MAX_WAIT`, or `MAX_WAIT_UNFETCHED` for a
//! partition the client has not fetched at all yet (then it goes on in
//! fetch order until the partition has caught up, and says so in a metric). A caught-up
//! partition's next record was appended after its last fetch, so the order
//! is exact up to that fetch's age (the fetch wait, 20 ms). The buffer is
//! bounded: past `MAX_BUFFERED` records the earliest head goes out anyway.
//!
//! The order only decides which record is routed first; the stage logs
//! record it, and decisions derive from the stage logs, so replays are
//! exact whatever the merge did.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::time::{Duration, Instant};

/// A record's log time (the input topics use LogAppendTime).
pub(super) fn timestamp_of(msg: &BorrowedMessage<'_>) -> Option<i64> {
    match msg.timestamp() {
        Timestamp::LogAppendTime(t) | Timestamp::CreateTime(t) => Some(t),
        Timestamp::NotAvailable => None,
    }
}

/// Longest the merge holds records back for a partition that may have
/// records at the broker and has none fetched: its lag is not known yet
/// (a task starting fetched one topic's partitions a quarter of a second
/// before the other's in the integration test), or its next fetch is on
/// the way.
pub const MAX_WAIT: Duration = Duration::from_millis(500);
/// Longest the merge holds records back for a partition the client has not
/// fetched at all since the task started: on a busy machine a starting
/// process's first fetch of some partitions came more than `MAX_WAIT`
/// after the others' (2 cores, five tasks joining at once, a backlog in
/// both topics), and the bounces appended before a backlog of intents
/// were routed after some of them.
pub const MAX_WAIT_UNFETCHED: Duration = Duration::from_secs(10);
/// Most records buffered across the merged partitions (bounded memory).
pub const MAX_BUFFERED: usize = 20_000;

/// (index of the topic among the merged ones, partition).
type Part = (usize, i32);

/// How far the client's fetches of a partition with nothing buffered got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    /// Nothing at the broker past what was polled, as of the last fetch.
    CaughtUp,
    /// More at the broker; the next fetch is on its way.
    Lagging,
    /// Not fetched since the task started: how far it lags is not known.
    Unfetched,
}

pub struct LogTimeMerge<'c> {
    /// The merged topics, with their names for the client's C interface.
    topics: Vec<(String, CString)>,
    queues: HashMap<Part, VecDeque<BorrowedMessage<'c>>>,
    /// Per partition, the offset after the last record polled (or the
    /// position the task starts from): how far this task has fetched.
    next: HashMap<Part, i64>,
    buffered: usize,
    /// Since when a lagging partition with nothing buffered has held the
    /// merge back.
    waiting_since: Option<Instant>,
    /// The wait ran out and the merge went on in fetch order (counted once
    /// per wait).
    gave_up: bool,
}

impl<'c> LogTimeMerge<'c> {
    pub fn new(topics: Vec<String>) -> Self {
        let topics = topics.into_iter().filter_map(|t| CString::new(t.clone()).ok().map(|c| (t, c))).collect();
        LogTimeMerge { topics, queues: HashMap::new(), next: HashMap::new(), buffered: 0, waiting_since: None, gave_up: false }
    }

    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|(t, _)| t == topic)
    }

    /// Takes a polled record; gives it back when its topic is not merged.
    pub fn push(&mut self, msg: BorrowedMessage<'c>) -> Option<BorrowedMessage<'c>> {
        let Some(t) = self.topic_index(msg.topic()) else {
            return Some(msg);
        };
        let part = (t, msg.partition());
        self.next.insert(part, msg.offset() + 1);
        self.queues.entry(part).or_default().push_back(msg);
        self.buffered += 1;
        None
    }

    /// Drops what is buffered of partitions the task no longer owns: their
    /// next owner reads them from the committed offsets.
    pub fn forget(&mut self, parts: &[(String, i32)]) {
        for (topic, partition) in parts {
            if let Some(t) = self.topic_index(topic) {
                if let Some(q) = self.queues.remove(&(t, *partition)) {
                    self.buffered -= q.len();
                }
                self.next.remove(&(t, *partition));
            }
        }
    }

    /// Whether a partition with nothing buffered has nothing more at the
    /// broker either, as of the client's last fetch of it.
    fn caught_up<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, part: Part) -> bool {
        self.fetch_state(consumer, part) == FetchState::CaughtUp
    }

    fn fetch_state<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, part: Part) -> FetchState {
        let (topic, c_topic) = &self.topics[part.0];
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `consumer` lives, the
        // topic is a NUL-terminated string that outlives the call, and the
        // call only copies the client's cached watermarks (updated by each
        // fetch response) into the two out-parameters.
        let err = unsafe { rdkafka::bindings::rd_kafka_get_watermark_offsets(consumer.client().native_ptr(), c_topic.as_ptr(), part.1, &mut low, &mut high) };
        if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
            return FetchState::Unfetched;
        }
        // Every record of a merged topic passes `push`, so this is as far
        // as the task has read the partition, handled or not.
        let next = match self.next.get(&part).copied() {
            Some(n) => n,
            None => {
                // Nothing read from it in this session: it starts at the
                // group's committed offset (or the log start).
                let start = match super::clients::committed_offset(consumer, topic, part.1).ok().flatten() {
                    Some(c) => c,
                    // None committed: the log start (auto.offset.reset is earliest).
                    None => match consumer.fetch_watermarks(topic, part.1, Duration::from_secs(2)) {
                        Ok((low, _)) => low,
                        Err(_) => return FetchState::Lagging,
                    },
                };
                self.next.insert(part, start);
                start
            }
        };
        if next >= high {
            FetchState::CaughtUp
        } else {
            FetchState::Lagging
        }
    }

    /// The records that can go now, earliest log time first, at most `max`:
    /// a head goes when no assigned partition with nothing buffered may
    /// still hold an earlier record (or the wait or the buffer ran out).
    pub fn take_ready<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, assigned: &HashSet<(String, i32)>, max: usize, now: Instant) -> Vec<BorrowedMessage<'c>> {
        let mut out = Vec::new();
        if self.buffered == 0 {
            return out;
        }
        let empty: Vec<Part> = assigned
            .iter()
            .filter_map(|(topic, p)| self.topic_index(topic).map(|t| (t, *p)))
            .filter(|part| self.queues.get(part).is_none_or(VecDeque::is_empty))
            .collect();
        let (mut lagging, mut max_wait) = (false, MAX_WAIT);
        for part in empty {
            match self.fetch_state(consumer, part) {
                FetchState::CaughtUp => {}
                FetchState::Lagging => lagging = true,
                FetchState::Unfetched => {
                    lagging = true;
                    max_wait = MAX_WAIT_UNFETCHED;
                    break;
                }
            }
        }
        if !lagging {
            // Whatever held the merge back has arrived: a later wait is a new one.
            self.waiting_since = None;
            self.gave_up = false;
        }
        while out.len() < max {
            // A record without a time has nothing to order by: it goes first.
            let Some(part) = self.queues.iter().filter_map(|(part, q)| q.front().map(|m| (timestamp_of(m).unwrap_or(i64::MIN), *part))).min().map(|(_, part)| part) else {
                break;
            };
            if lagging && self.buffered < MAX_BUFFERED {
                let since = *self.waiting_since.get_or_insert(now);
                if now.duration_since(since) < max_wait {
                    break;
                }
                if !self.gave_up {
                    self.gave_up = true;
                    metrics::counter!("sendgate_router_merge_waits_expired_total").increment(1);
                }
            }
            let q = self.queues.get_mut(&part).expect("the head's partition");
            out.push(q.pop_front().expect("a head"));
            self.buffered -= 1;
            if q.is_empty() && !lagging && !self.caught_up(consumer, part) {
                lagging = true;
            }
        }
        out
    }
}
