//! `sendgate bench ...`: the instruments `scripts/bench.sh` measures with.
//!
//! - `passthrough`: the broker's own limit on this machine: the task loop
//!   sendgate's stages run (same clients, same settings, same commit
//!   interval), consuming the intents and transactionally producing one
//!   record each, with no state and no decoding.
//! - `collect`: reads a decisions topic read-committed while a system works
//!   through a backlog: decisions per second, missing and duplicated
//!   decisions, counts per status.
//! - `recount`: what the counts per status must be, recomputed from the
//!   intents with a model written apart from the stages (sender windows and
//!   approvals; the benchmark policy turns the other guards off).
//! - `latency`: intents at a fixed rate, and the time from each intent's
//!   scheduled append to its decision being readable, in an HdrHistogram.
//! - `fill-changelog` and `read-rate`: many active keys in a stage's
//!   changelog, and how fast a plain consumer reads a topic.

use super::kafka_io::{self, ReadOptions};
use super::load::{self, Workload};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::runtime::task::{supervise, Outbox, Processor, TaskError, TaskSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- passthrough

/// Copies each intent to the decisions topic, inside the same transactional
/// loop as the stages.
struct PassThrough {
    input: String,
    output: String,
    dead_letters: String,
}

impl Processor for PassThrough {
    fn name(&self) -> &'static str {
        "passthrough"
    }
    fn input_topics(&self) -> Vec<String> {
        vec![self.input.clone()]
    }
    fn dead_letter_topic(&self) -> String {
        self.dead_letters.clone()
    }
    fn on_assigned(&mut self, _: &[(String, i32)]) -> Result<(), TaskError> {
        Ok(())
    }
    fn on_revoked(&mut self, _: &[(String, i32)], _: bool) {}
    fn process(&mut self, rec: &InputRecord<'_>, out: &mut Outbox<'_>) -> Result<(), TaskError> {
        out.send(&self.output, None, rec.key.unwrap_or_default(), rec.payload, None)
    }
    fn prepare_commit(&mut self, _: &mut Outbox<'_>) -> Result<(), TaskError> {
        Ok(())
    }
    fn committed(&mut self, _: &HashMap<i32, i64>) -> Result<(), TaskError> {
        Ok(())
    }
    fn aborted(&mut self) {}
    fn close(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Runs `tasks` pass-through tasks (one thread each, one consumer group)
/// per hop until `shutdown` is set. With several hops the records pass
/// through a chain of topics (`bench.hop1`, ...), each hop its own group
/// and transactions, as an intent passes through sendgate's stages: the
/// floor of a topology of that many transactional hops.
pub fn passthrough(cfg: &Config, tasks: usize, hops: usize, shutdown: Arc<AtomicBool>) -> Result<(), String> {
    let topo = cfg.topology()?;
    cfg.require_bootstrap()?;
    let hops = hops.max(1);
    let hop_topic = |h: usize| format!("bench.hop{h}");
    if hops > 1 {
        let intents = topo.topics.iter().find(|t| t.name == "intents").ok_or("the topology has no intents topic")?;
        let chain = crate::topology::Topology {
            namespace: topo.namespace.clone(),
            topics: (1..hops).map(|h| crate::topology::TopicSpec { name: hop_topic(h), role: "benchmark".into(), ..intents.clone() }).collect(),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(crate::topology::apply(&chain, &cfg.client_config(), cfg.replication_factor))?;
    }
    let mut handles = Vec::new();
    for h in 0..hops {
        for i in 0..tasks.max(1) {
            let p = PassThrough {
                input: topo.full(&if h == 0 { "intents".to_string() } else { hop_topic(h) }),
                output: topo.full(&if h + 1 == hops { "decisions".to_string() } else { hop_topic(h + 1) }),
                dead_letters: topo.full("dead-letters"),
            };
            let task = if h == 0 { "passthrough".to_string() } else { format!("passthrough.hop{h}") };
            let s = TaskSettings::from_config(cfg, &task, &format!("{}.{i}", cfg.instance_id));
            // Each task is its own group member (and transactional producer).
            let cfg = Config { instance_id: format!("{}-{h}-{i}", cfg.instance_id), ..cfg.clone() };
            let stop = shutdown.clone();
            handles.push(std::thread::spawn(move || supervise(p, &cfg, s, &stop)));
        }
    }
    tracing::info!(tasks, hops, guarantee = %cfg.processing_guarantee, "pass-through running");
    let mut failures = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("panicked".into()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

// ---------------------------------------------------------------- reading outputs

/// The intent id and status of one output record: a Decision, or (from the
/// pass-through) the intent itself, reported as PASSED.
fn output_of(bytes: &[u8]) -> Option<(String, String, String)> {
    if let Ok(d) = codec::decode::<Decision>(RecordType::Decision, bytes) {
        return Some((d.intent_id, d.status.as_str().to_string(), d.reason));
    }
    codec::decode::<SendIntent>(RecordType::SendIntent, bytes).ok().map(|i| (i.intent_id, "PASSED".to_string(), "passthrough".to_string()))
}

/// A consumer of an output topic that hands over records as soon as they
/// are committed (latency is measured with it).
fn output_consumer(cfg: &Config, topic: &str, from_end: bool) -> Result<BaseConsumer, String> {
    cfg.require_bootstrap()?;
    let mut c = cfg.client_config();
    c.set("group.id", format!("{}.bench-reader", cfg.namespace))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .set("log_level", "3");
    let consumer: BaseConsumer = c.create().map_err(|e| format!("cannot create a consumer: {e}"))?;
    // The end resolved now, not at the first fetch: records committed in
    // between must not be skipped.
    let parts = kafka_io::watermarks(cfg, topic)?;
    let mut tpl = TopicPartitionList::new();
    for (p, (_, high)) in &parts {
        tpl.add_partition_offset(topic, *p, if from_end { Offset::Offset(*high) } else { Offset::Beginning }).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    Ok(consumer)
}

/// What `collect` saw.
#[derive(Debug, Default)]
pub struct Collected {
    pub records: u64,
    pub distinct: u64,
    pub seconds: f64,
    pub status: BTreeMap<String, u64>,
    pub reasons: BTreeMap<String, u64>,
    /// CPU time the whole machine spent over the same span, in seconds.
    pub machine_cpu_seconds: f64,
    /// The part of it spent by the broker process (with `broker_pid`).
    pub broker_cpu_seconds: f64,
}

/// CPU seconds used so far: by the whole machine (every core, from
/// /proc/stat) and by one process (its user and system time).
#[derive(Clone, Copy, Default)]
struct CpuSample {
    machine: f64,
    process: f64,
}

impl CpuSample {
    fn take(pid: Option<u32>) -> CpuSample {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| {
                let f: Vec<f64> = t.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                // Busy: everything but idle (4th) and iowait (5th).
                Some(f.iter().sum::<f64>() - f.get(3)? - f.get(4).unwrap_or(&0.0))
            })
            .unwrap_or(0.0);
        let process = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .and_then(|t| {
                // After the command name: state is field 3, utime 14, stime 15.
                let rest: Vec<&str> = t.rsplit_once(')')?.1.split_whitespace().collect();
                Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
            })
            .unwrap_or(0.0);
        CpuSample { machine: machine / hz, process: process / hz }
    }
}

/// Reads the decisions topic from its start until `expect` distinct intents
/// have a decision, or nothing new came for `idle`. The rate is over the
/// span from the first decision read to the last, so start-up (group join,
/// restore) is not counted against any system.
///
/// With `broker_pid`, it also samples CPU time at the first decision and
/// then at most every 100 ms, keeping the last sample taken at a new
/// decision: what the machine (and the broker) spent per decision.
pub fn collect(cfg: &Config, expect: u64, idle: Duration, broker_pid: Option<u32>) -> Result<Collected, String> {
    let topic = cfg.topology()?.full("decisions");
    let consumer = output_consumer(cfg, &topic, false)?;
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(expect as usize);
    let mut out = Collected::default();
    let (mut cpu_first, mut cpu_last, mut sampled) = (None::<CpuSample>, CpuSample::default(), Instant::now());
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let mut last_new = Instant::now();
    let started = Instant::now();
    while out.distinct < expect && last_new.elapsed() < idle {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.map_err(|e| format!("reading {topic}: {e}"))?;
        let now = Instant::now();
        last_new = now;
        out.records += 1;
        let Some((id, status, reason)) = m.payload().and_then(output_of) else { return Err(format!("{topic} [{}] @{}: not a decision", m.partition(), m.offset())) };
        if seen.insert(id) {
            if first.is_none() || now.duration_since(sampled) >= Duration::from_millis(100) || out.distinct + 1 == expect {
                cpu_last = CpuSample::take(broker_pid);
                cpu_first.get_or_insert(cpu_last);
                sampled = now;
            }
            first.get_or_insert(now);
            last = now;
            out.distinct += 1;
            *out.status.entry(status).or_default() += 1;
            *out.reasons.entry(reason).or_default() += 1;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err("collect: gave up after an hour".into());
        }
    }
    out.seconds = first
        .map(|f| last.duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    if let Some(c) = cpu_first {
        out.machine_cpu_seconds = cpu_last.machine - c.machine;
        out.broker_cpu_seconds = cpu_last.process - c.process;
    }
    Ok(out)
}

// ---------------------------------------------------------------- recount

/// The limits the recount applies: the built-in defaults for the sender
/// windows, as docs/policies.md lists them. Written out here, not read from
/// the policy code, so that the recount is a second implementation; a test
/// checks that the two agree.
pub const RECOUNT_LIMITS: &[(&str, IntentClass, &str, i64)] = &[
    ("mailbox", IntentClass::Outbound, "hour", 3),
    ("mailbox", IntentClass::Outbound, "day", 25),
    ("sender_domain", IntentClass::Outbound, "hour", 100),
    ("sender_domain", IntentClass::Outbound, "day", 1_000),
    ("mailbox", IntentClass::Transactional, "day", 1_000),
    ("sender_domain", IntentClass::Transactional, "hour", 1_000),
    ("sender_domain", IntentClass::Transactional, "day", 10_000),
];

/// Replays the intents topic in log order through a plain model of the
/// sender windows (UTC calendar hours and days of each intent's append
/// time) and approvals, and returns the expected count per status.
///
/// Exact when each sender domain's intents share a partition
/// (`load --key-by-sender-domain`) and no delivery event can change a
/// decision (`--deliveries-only`), under the benchmark policy.
pub fn recount(cfg: &Config) -> Result<BTreeMap<String, u64>, String> {
    let topic = cfg.topology()?.full("intents");
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut status: BTreeMap<String, u64> = BTreeMap::new();
    let opts = ReadOptions { from_beginning: true, start_offsets: None, max: None, idle_timeout: Some(Duration::from_secs(3)) };
    kafka_io::read_topic(cfg, &topic, &opts, |r| {
        let Some(bytes) = r.payload.as_deref() else { return Ok(()) };
        let intent: SendIntent = codec::decode(RecordType::SendIntent, bytes).map_err(|e| format!("{topic} @{}: {e}", r.offset))?;
        let t = r.timestamp_ms.ok_or("intent without a timestamp")?;
        let s = recount_one(&mut counts, &intent, t);
        *status.entry(s.to_string()).or_default() += 1;
        Ok(())
    })?;
    Ok(status)
}

pub(crate) fn recount_one(counts: &mut HashMap<String, i64>, intent: &SendIntent, t: i64) -> &'static str {
    if intent.requires_approval {
        return "HELD";
    }
    let full = RECOUNT_LIMITS.iter().filter(|(_, c, _, _)| *c == intent.class).any(|(scope, _, window, max)| counts.get(&recount_key(intent, t, scope, window)).copied().unwrap_or(0) >= *max);
    if full {
        return "DEFERRED";
    }
    for scope in ["mailbox", "sender_domain"] {
        for window in ["hour", "day"] {
            *counts.entry(recount_key(intent, t, scope, window)).or_default() += 1;
        }
    }
    "ALLOWED"
}

/// The recount's counter of `scope` ("mailbox" or "sender_domain") and
/// `window` ("hour" or "day", UTC) for an intent appended at `t`.
pub(crate) fn recount_key(intent: &SendIntent, t: i64, scope: &str, window: &str) -> String {
    let bucket = match window {
        "hour" => t.div_euclid(3_600_000),
        _ => t.div_euclid(86_400_000),
    };
    let who = if scope == "mailbox" { intent.sender.as_str() } else { intent.sender.rsplit('@').next().unwrap_or_default() };
    format!("{scope}:{who}/{:?}/{window}/{bucket}", intent.class)
}

// ---------------------------------------------------------------- latency

/// Latency figures in microseconds.
#[derive(Debug)]
pub struct Latency {
    pub sent: u64,
    pub received: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// Publishes `rate` intents per second for `seconds` (the workload of
/// `seed`, deliveries beside them as in the throughput runs) and measures
/// each from its *scheduled* send time to the moment its decision is
/// readable. Measuring from the schedule, not from when the producer got
/// to it, is what corrects for coordinated omission: a stall delays the
/// sends behind it, and their wait is counted.
pub fn latency(cfg: &Config, rate: f64, seconds: f64, seed: u64, drain: Duration) -> Result<Latency, String> {
    latency_of(cfg, rate, seconds, seed, true, drain)
}

/// [`latency`], with or without the delivery events beside the intents.
fn latency_of(cfg: &Config, rate: f64, seconds: f64, seed: u64, deliveries: bool, drain: Duration) -> Result<Latency, String> {
    let topo = cfg.topology()?;
    let n = (rate * seconds).round().max(1.0) as u64;
    let w = Workload { seed, intents: n, key_by_sender_domain: true, deliveries_only: true, events_per_intent: if deliveries { Workload::default().events_per_intent } else { 0.0 }, ..Workload::default() };
    // Generated up front (bounded: rate x seconds records), so that
    // generation does not steal time from the schedule.
    let mut records = Vec::with_capacity(n as usize * 2);
    load::generate(&w, |topic, k, v| {
        records.push((topic, k, v));
        Ok(())
    })?;
    let consumer = output_consumer(cfg, &topo.full("decisions"), true)?;
    let producer = bench_producer(cfg, 1)?;
    warm_up(&topo, &producer, &consumer, seed)?;

    // Intent i is scheduled at t0 + i / rate; its id ends in i. Nothing is
    // shared between the threads but t0, so the measurement itself does not
    // contend at high rates.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now() + Duration::from_millis(100);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let prefix = format!("load-{seed}-");
        std::thread::spawn(move || -> Result<(hdrhistogram::Histogram<u64>, u64), String> {
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
            let mut seen = vec![false; n as usize];
            let mut received = 0u64;
            let mut done_at: Option<Instant> = None;
            while received < n {
                if done.load(Ordering::Relaxed) && done_at.get_or_insert_with(Instant::now).elapsed() > drain {
                    break;
                }
                let Some(m) = consumer.poll(Duration::from_millis(50)) else { continue };
                let m = m.map_err(|e| e.to_string())?;
                let now = Instant::now();
                let Some((id, _, _)) = m.payload().and_then(output_of) else { continue };
                let Some(i) = id.strip_prefix(&prefix).and_then(|i| i.parse::<usize>().ok()).filter(|i| *i < seen.len()) else { continue };
                if !std::mem::replace(&mut seen[i], true) {
                    received += 1;
                    let at = t0 + interval.mul_f64(i as f64);
                    h.saturating_record(now.saturating_duration_since(at).as_micros() as u64);
                }
            }
            Ok((h, received))
        })
    };
    let mut sent = 0u64;
    let (intents, delivery) = (topo.full("intents"), topo.full("delivery"));
    for (topic, key, value) in &records {
        if *topic == "intents" {
            // Sends everything already due at once; sleeps only when ahead.
            let at = t0 + interval.mul_f64(sent as f64);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent += 1;
        }
        let full = if *topic == "intents" { &intents } else { &delivery };
        send_waiting(&producer, BaseRecord::to(full).key(key.as_slice()).payload(value.as_slice()))?;
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| format!("flush: {e}"))?;
    done.store(true, Ordering::Relaxed);
    let (h, received) = reader.join().map_err(|_| "latency reader panicked".to_string())??;
    Ok(Latency { sent, received, p50_us: h.value_at_quantile(0.5), p99_us: h.value_at_quantile(0.99), p999_us: h.value_at_quantile(0.999), max_us: h.max() })
}

/// `POST /v1/intents?wait_ms` round trips at a steady rate, beside the
/// topic-to-topic latency at the same rate in the same run (the baseline).
#[derive(Debug)]
pub struct RequestReply {
    pub topic: Latency,
    pub http: Latency,
    /// Answered 202: not decided within the wait.
    pub timed_out: u64,
}

/// Workers sending requests at once (a bound on connections and threads).
const RR_WORKERS: usize = 64;
/// Longest a request waits for its decision.
const RR_WAIT_MS: u64 = 10_000;

/// Measures topic-to-topic latency (intents produced, decisions read) and
/// then request-reply latency (each intent POSTed to the API with
/// `wait_ms`, its decision in the answer), both at `rate` for `seconds`,
/// each from its scheduled send (coordinated omission corrected), on
/// intents of the same shape (seeds `seed` and `seed + 1`).
pub fn request_reply(cfg: &Config, api: &str, token: &str, rate: f64, seconds: f64, seed: u64) -> Result<RequestReply, String> {
    let topic = latency_of(cfg, rate, seconds, seed, false, Duration::from_secs(30))?;
    let n = (rate * seconds).round().max(1.0) as u64;
    let w = Workload { seed: seed + 1, intents: n, events_per_intent: 0.0, key_by_sender_domain: true, ..Workload::default() };
    let mut bodies = Vec::with_capacity(n as usize);
    load::generate(&w, |topic, _, v| {
        if topic == "intents" {
            let i: SendIntent = codec::decode(RecordType::SendIntent, &v).map_err(|e| e.to_string())?;
            bodies.push(serde_json::to_string(&i).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    let url = format!("{}/v1/intents?wait_ms={RR_WAIT_MS}", api.trim_end_matches('/'));
    let auth = format!("Bearer {token}");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now() + Duration::from_millis(100);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, String)>(RR_WORKERS * 4);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..RR_WORKERS)
        .map(|_| {
            let (rx, url, auth) = (rx.clone(), url.clone(), auth.clone());
            std::thread::spawn(move || -> Result<(hdrhistogram::Histogram<u64>, u64, u64), String> {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_millis(RR_WAIT_MS + 10_000)).build();
                let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
                let (mut answered, mut timed_out) = (0u64, 0u64);
                loop {
                    let job = rx.lock().expect("job queue").recv();
                    let Ok((i, body)) = job else { break };
                    let r = agent.post(&url).set("authorization", &auth).set("content-type", "application/json").send_string(&body);
                    let now = Instant::now();
                    match r {
                        Ok(resp) if resp.status() == 200 => {
                            answered += 1;
                            h.saturating_record(now.saturating_duration_since(t0 + interval.mul_f64(i as f64)).as_micros() as u64);
                        }
                        Ok(_) => timed_out += 1,
                        Err(e) => return Err(format!("POST {url}: {e}")),
                    }
                }
                Ok((h, answered, timed_out))
            })
        })
        .collect();
    for (i, body) in bodies.into_iter().enumerate() {
        let at = t0 + interval.mul_f64(i as f64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tx.send((i, body)).map_err(|_| "every request worker stopped".to_string())?;
    }
    drop(tx);
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    let (mut received, mut timed_out) = (0u64, 0u64);
    for w in workers {
        let (wh, a, t) = w.join().map_err(|_| "a request worker panicked".to_string())??;
        h.add(wh).map_err(|e| e.to_string())?;
        received += a;
        timed_out += t;
    }
    let http = Latency { sent: n, received, p50_us: h.value_at_quantile(0.5), p99_us: h.value_at_quantile(0.99), p999_us: h.value_at_quantile(0.999), max_us: h.max() };
    Ok(RequestReply { topic, http, timed_out })
}

/// Sends a few intents of another seed and waits for their decisions: the
/// system under test has then joined its groups and restored, and the
/// consumer sits at the end of the decisions topic.
fn warm_up(topo: &crate::topology::Topology, producer: &BenchProducer, consumer: &BaseConsumer, seed: u64) -> Result<(), String> {
    let w = Workload { seed: seed ^ 0x5eed, intents: 20, events_per_intent: 0.0, key_by_sender_domain: true, ..Workload::default() };
    let mut ids = std::collections::HashSet::new();
    let topic = topo.full("intents");
    load::generate(&w, |_, k, v| {
        ids.insert(codec::decode::<SendIntent>(RecordType::SendIntent, &v).map_err(|e| e.to_string())?.intent_id);
        send_waiting(producer, BaseRecord::to(&topic).key(k.as_slice()).payload(v.as_slice()))
    })?;
    producer.flush(Duration::from_secs(30)).map_err(|e| format!("flush: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ids.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("warm-up: {} of 20 intents got no decision in 180 s; is the system under test running?", ids.len()));
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| e.to_string())?;
            if let Some((id, _, _)) = m.payload().and_then(output_of) {
                ids.remove(&id);
            }
        }
    }
    // Let the system finish the warm-up's commits before the clock starts.
    std::thread::sleep(Duration::from_secs(1));
    while consumer.poll(Duration::from_millis(100)).is_some() {}
    Ok(())
}

type BenchProducer = ThreadedProducer<rdkafka::producer::DefaultProducerContext>;

/// An idempotent producer for the generators; `linger_ms` trades latency
/// (the latency run) against batching (filling a changelog).
fn bench_producer(cfg: &Config, linger_ms: u32) -> Result<BenchProducer, String> {
    cfg.require_bootstrap()?;
    cfg.producer_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("log_level", "3")
        .create()
        .map_err(|e| format!("cannot create a producer: {e}"))
}

/// Sends a record, waiting (at most a minute) while the producer's bounded
/// queue is full.
fn send_waiting(producer: &BenchProducer, mut rec: BaseRecord<'_, [u8], [u8]>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) if Instant::now() < deadline => {
                rec = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("produce: {e}")),
        }
    }
}

// ---------------------------------------------------------------- restore

/// Writes `keys` distinct window counters (one per recipient, the shape of
/// the recipient stage's state) into a stage's changelog, spread over its
/// partitions. Returns the records written.
pub fn fill_changelog(cfg: &Config, stage: &str, keys: u64) -> Result<u64, String> {
    let topo = cfg.topology()?;
    let topic = topo.full(&format!("stage.{stage}.changelog"));
    let partitions = topo.partitions(&format!("stage.{stage}")).max(1);
    let producer = bench_producer(cfg, 20)?;
    let day = 1_763_942_400_000i64;
    for i in 0..keys {
        let key = crate::stage::keys::counter(&format!("recipient:person{i}@company{}.example", i % 20_000), "outbound", "day");
        let value = crate::state::StateValue::Counter(crate::state::WindowCounter { bucket_start_ms: day, count: 1 + (i % 9) as i64, alerted_pct: 0, pending: 0 }).encode();
        send_waiting(&producer, BaseRecord::to(&topic).key(key.as_slice()).payload(value.as_slice()).partition((i % partitions as u64) as i32))?;
    }
    producer.flush(Duration::from_secs(120)).map_err(|e| format!("flush: {e}"))?;
    Ok(keys)
}

/// Reads a whole topic with a plain read-committed consumer: (records, seconds).
pub fn read_rate(cfg: &Config, topic_suffix: &str) -> Result<(u64, f64), String> {
    let topic = cfg.topology()?.full(topic_suffix);
    let ranges = kafka_io::watermarks(cfg, &topic)?;
    let started = Instant::now();
    let n = kafka_io::read_ranges(cfg, &topic, &ranges, |_| Ok(()))?;
    Ok((n, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::LimitSpec;

    #[test]
    fn the_recount_limits_are_the_built_in_defaults() {
        let defaults = crate::policy::resolve::builtin_defaults();
        for (scope, class, window, max) in RECOUNT_LIMITS {
            let name = format!("{scope}.{}.{window}", class.as_str().to_lowercase());
            assert!(matches!(defaults.limits.get(&name), Some(LimitSpec::Max(m)) if *m as i64 == *max), "{name}");
        }
        let capped = defaults.limits.keys().filter(|k| k.starts_with("mailbox.") || k.starts_with("sender_domain.")).count();
        assert_eq!(capped, RECOUNT_LIMITS.len(), "every default sender window is in the recount");
    }

    #[test]
    fn the_recount_caps_each_window_and_holds_approvals() {
        let mut counts = HashMap::new();
        let t = 1_763_971_200_000; // an hour boundary
        let mut intent = SendIntent::new("i", "t", "ana@acme.com", "bo@x.com", IntentClass::Outbound);
        let decided: Vec<&str> = (0..5).map(|_| recount_one(&mut counts, &intent, t)).collect();
        assert_eq!(decided, ["ALLOWED", "ALLOWED", "ALLOWED", "DEFERRED", "DEFERRED"]);
        // The next hour has room again.
        assert_eq!(recount_one(&mut counts, &intent, t + 3_600_000), "ALLOWED");
        intent.requires_approval = true;
        assert_eq!(recount_one(&mut counts, &intent, t), "HELD");
        intent.requires_approval = false;
        intent.class = IntentClass::Reply;
        assert_eq!(recount_one(&mut counts, &intent, t), "ALLOWED");
    }
}
