//! `sendgate backtest --policy FILE`: the recorded history under a candidate
//! policy, and how its decisions would change.
//!
//! A different policy changes decisions, and so the records passed between
//! stages: the recorded stage logs cannot be reused. The backtest feeds the
//! recorded input topics, in log-time order, through the whole pipeline in
//! memory twice — once as recorded, once with the candidate documents in
//! place of the recorded ones for their scopes — each intent decided before
//! the next is fed, and compares the two runs intent by intent. Both runs
//! use the same schedule, so every difference comes from the policy.
//!
//! That schedule is not the live one: live, the stages run side by side
//! and a stage partition's log interleaves hops and delivery events as
//! they happened to arrive. So the first run (the baseline) can differ
//! from the decisions the live processor recorded, most where a signal
//! crossed a threshold around an intent. The report shows the recorded
//! decisions beside the two runs, and for how many intents the baseline
//! agrees with them, so that a reader can tell the policy's effect from
//! the schedule's.

use super::replay::{within, Bound};
use crate::cli::kafka_io::{self, ReadRecord};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::{PolicySpec, Scope};
use crate::stage::driver::Driver;
use crate::stage::{SenderConfig, StageKind};
use crate::state::rocks::RocksStore;
use crate::state::BaseStore;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

pub struct BacktestOptions {
    pub candidate: Vec<(Scope, PolicySpec)>,
    pub from: Option<Bound>,
    pub to: Option<Bound>,
    pub scratch: PathBuf,
    pub sender: SenderConfig,
    pub keep: usize,
}

pub use super::compare::{Change, Comparison, DomainCounts};

#[derive(Debug, Default)]
pub struct BacktestReport {
    pub inputs: u64,
    /// The baseline (the recorded policies) against the candidate.
    pub comparison: Comparison,
    /// (status, reason) -> decisions the live processor recorded (in the
    /// same bounds).
    pub recorded: BTreeMap<(DecisionStatus, String), u64>,
    /// Compared intents whose baseline decision is one the live processor
    /// recorded for the same intent record.
    pub agreeing: u64,
}

fn source_key(s: &SourceRef) -> (String, i32, i64) {
    (s.topic.clone(), s.partition, s.offset)
}

pub fn backtest(cfg: &Config, opts: &BacktestOptions) -> Result<BacktestReport, String> {
    std::fs::create_dir_all(&opts.scratch).map_err(|e| format!("cannot create {}: {e}", opts.scratch.display()))?;
    let result = run(cfg, opts);
    let _ = std::fs::remove_dir_all(&opts.scratch);
    result
}

fn run(cfg: &Config, opts: &BacktestOptions) -> Result<BacktestReport, String> {
    let topo = cfg.topology()?;
    let ingress = cfg.ingress();
    let topics = [ingress.policies.clone(), ingress.commands.clone(), ingress.intents.clone(), ingress.delivery.clone()];

    // 1. Every input record, ordered by log time (then control records
    //    first, then topic, partition and offset), in a scratch store.
    let (inputs, _) = RocksStore::open(&opts.scratch.join("inputs")).map_err(|e| e.to_string())?;
    let mut n_inputs = 0u64;
    // Registry-framed input is converted as the router converts it; a
    // record the router refused stays as it is and is refused here too.
    let registry = crate::registry::SchemaRegistry::from_settings(&cfg.schema_registry)?;
    let record_types = [RecordType::PolicyDocument, RecordType::Command, RecordType::SendIntent, RecordType::DeliveryEvent];
    for (rank, topic) in topics.iter().enumerate() {
        let marks = kafka_io::watermarks(cfg, topic)?;
        let mut batch = Vec::new();
        kafka_io::read_ranges(cfg, topic, &marks, |r: ReadRecord| {
            let converted = match (&registry, r.payload) {
                (Some(reg), Some(p)) => match reg.to_single_object(record_types[rank], p) {
                    Some(Ok(bytes)) => Some(bytes),
                    Some(Err(crate::registry::Refusal::Unavailable(e))) => return Err(e),
                    Some(Err(crate::registry::Refusal::Record(_))) | None => None,
                },
                _ => None,
            };
            let r = ReadRecord { payload: converted.as_deref().or(r.payload), ..r };
            let key = format!("{:020}{rank}{:010}{:020}", r.timestamp_ms.unwrap_or(0).max(0), r.partition, r.offset).into_bytes();
            batch.push((key, Some(encode_input(&r))));
            n_inputs += 1;
            if batch.len() >= 10_000 {
                inputs.write(std::mem::take(&mut batch)).map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
        inputs.write(batch).map_err(|e| e.to_string())?;
    }

    // 2. The recorded decisions, by the intent record they answer (an
    //    intent held and then approved has two), in the scratch store.
    let decisions_topic = topo.full("decisions");
    let (recorded_store, _) = RocksStore::open(&opts.scratch.join("decisions")).map_err(|e| e.to_string())?;
    let mut recorded_counts: BTreeMap<(DecisionStatus, String), u64> = BTreeMap::new();
    let mut batch = Vec::new();
    kafka_io::read_ranges(cfg, &decisions_topic, &kafka_io::watermarks(cfg, &decisions_topic)?, |r: ReadRecord| {
        let d: Decision = codec::decode(RecordType::Decision, r.payload.unwrap_or_default()).map_err(|e| format!("{decisions_topic} [{}] @{}: {e}", r.partition, r.offset))?;
        if within(&opts.from, &opts.to, &d) {
            let mut key = recorded_prefix(&d.source);
            key.extend_from_slice(format!("{:010}{:020}", r.partition, r.offset).as_bytes());
            batch.push((key, Some(format!("{} {}", d.status.as_str(), d.reason).into_bytes())));
            *recorded_counts.entry((d.status, d.reason)).or_default() += 1;
        }
        if batch.len() >= 10_000 {
            recorded_store.write(std::mem::take(&mut batch)).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    recorded_store.write(batch).map_err(|e| e.to_string())?;

    // 3. Two pipelines, fed the same records.
    let partitions = topo.partitions("stage.sender");
    let stores = |name: &'static str| {
        let dir = opts.scratch.join(name);
        move |kind: StageKind| -> Box<dyn BaseStore> { Box::new(RocksStore::open(&dir.join(kind.name())).expect("scratch store opens").0) }
    };
    let mut recorded = Driver::with_stores(ingress.clone(), partitions, opts.sender.clone(), stores("recorded"));
    let mut candidate = Driver::with_stores(ingress.clone(), partitions, opts.sender.clone(), stores("candidate"));
    let overridden: Vec<String> = opts.candidate.iter().map(|(s, _)| s.to_string()).collect();
    let mut report = BacktestReport { inputs: n_inputs, recorded: recorded_counts, ..BacktestReport::default() };
    let mut waiting: (HashMap<(String, i32, i64), Decision>, HashMap<(String, i32, i64), Decision>) = (HashMap::new(), HashMap::new());
    let mut started = false;
    let mut cursor: Vec<u8> = Vec::new();
    loop {
        let rows = inputs.scan_from(&cursor, 10_000).map_err(|e| e.to_string())?;
        if rows.is_empty() {
            break;
        }
        for (key, value) in &rows {
            let (rank, partition, offset, timestamp_ms, rkey, payload) = decode_input(key, value)?;
            let rec = InputRecord { topic: &topics[rank], partition, offset, key: rkey.as_deref(), payload: payload.as_deref(), timestamp_ms: Some(timestamp_ms) };
            if !started {
                // The candidate documents are in force from the start.
                started = true;
                for (i, (scope, spec)) in opts.candidate.iter().enumerate() {
                    let doc = PolicyDocument { scope: scope.to_string(), spec_json: spec.to_canonical_json(), source_name: Some("backtest".into()) };
                    let bytes = codec::encode(RecordType::PolicyDocument, &doc).map_err(|e| e.to_string())?;
                    let scope_key = scope.to_string();
                    // Versions far above any recorded offset name the candidate.
                    let synthetic = InputRecord { topic: &topics[0], partition: 0, offset: 1_000_000_000_000 + i as i64, key: Some(scope_key.as_bytes()), payload: Some(&bytes), timestamp_ms: Some(timestamp_ms) };
                    candidate.submit(&synthetic);
                }
            }
            recorded.submit(&rec);
            let replaced = rank == 0 && rkey.as_deref().is_some_and(|k| Scope::parse(&String::from_utf8_lossy(k)).is_ok_and(|s| overridden.contains(&s.to_string())));
            if !replaced {
                candidate.submit(&rec);
            }
            recorded.run();
            candidate.run();
            for d in recorded.decisions.drain(..) {
                waiting.0.insert(source_key(&d.source), d);
            }
            for d in candidate.decisions.drain(..) {
                waiting.1.insert(source_key(&d.source), d);
            }
            recorded.alerts.clear();
            candidate.alerts.clear();
            let both: Vec<(String, i32, i64)> = waiting.0.keys().filter(|k| waiting.1.contains_key(*k)).cloned().collect();
            for k in both {
                let (a, b) = (waiting.0.remove(&k).expect("present"), waiting.1.remove(&k).expect("present"));
                tally(&mut report, opts, &recorded_store, a, b)?;
            }
        }
        let mut next = rows.last().expect("not empty").0.clone();
        next.push(0);
        cursor = next;
    }
    Ok(report)
}

/// Where the recorded decisions of one intent record are kept.
fn recorded_prefix(source: &SourceRef) -> Vec<u8> {
    format!("{}\0{:010}{:020}\0", source.topic, source.partition, source.offset).into_bytes()
}

fn tally(report: &mut BacktestReport, opts: &BacktestOptions, recorded: &RocksStore, a: Decision, b: Decision) -> Result<(), String> {
    if !within(&opts.from, &opts.to, &a) {
        return Ok(());
    }
    let prefix = recorded_prefix(&a.source);
    let baseline = format!("{} {}", a.status.as_str(), a.reason);
    if recorded.scan(&prefix, &prefix, usize::MAX).map_err(|e| e.to_string())?.iter().any(|(_, v)| *v == baseline.as_bytes()) {
        report.agreeing += 1;
    }
    report.comparison.add(&a, &b, opts.keep);
    Ok(())
}

/// partition, offset, timestamp, key, payload of an input record, as stored.
fn encode_input(r: &ReadRecord) -> Vec<u8> {
    let mut v = Vec::new();
    for part in [&r.key, &r.payload] {
        match part {
            Some(b) => {
                v.push(1);
                v.extend_from_slice(&(b.len() as u32).to_be_bytes());
                v.extend_from_slice(b);
            }
            None => v.push(0),
        }
    }
    v
}

type Input = (usize, i32, i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

fn decode_input(key: &[u8], v: &[u8]) -> Result<Input, String> {
    let k = std::str::from_utf8(key).map_err(|e| e.to_string())?;
    let bad = || format!("scratch input key {k:?} is malformed");
    let timestamp: i64 = k.get(0..20).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let rank: usize = k.get(20..21).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let partition: i32 = k.get(21..31).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let offset: i64 = k.get(31..51).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let mut parts = [None, None];
    let mut i = 0;
    for part in parts.iter_mut() {
        if *v.get(i).ok_or("scratch input value is truncated")? == 1 {
            let len = u32::from_be_bytes(v.get(i + 1..i + 5).ok_or("truncated")?.try_into().map_err(|_| "truncated")?) as usize;
            *part = Some(v.get(i + 5..i + 5 + len).ok_or("truncated")?.to_vec());
            i += 5 + len;
        } else {
            i += 1;
        }
    }
    let [key, payload] = parts;
    Ok((rank, partition, offset, timestamp, key, payload))
}
