//! The fault harness's instruments: `verify`, which checks every decision
//! against the inputs after a run, and `probe`, which measures how long
//! the processor takes to answer again after a fault.
//!
//! `verify` reads the intents topic and recomputes, with the recount model
//! of the sender windows (a second implementation, see `bench`), what each
//! intent's decision and the counters it reports must be; then it reads the
//! decisions topic read-committed and reports:
//! - missing: an intent without a decision;
//! - duplicates: an intent with more than one decision record;
//! - unexpected: a decision for an intent that was never published;
//! - status mismatches: a decision other than the recount's;
//! - counter mismatches: a window's `used` in a decision other than the
//!   recount's counter at that point (a reservation counted twice after a
//!   crash, or lost).
//!
//! Exact for workloads the recount predicts (`load --key-by-sender-domain
//! --deliveries-only` under bench/policy-sender.toml, where only the sender
//! stage denies), which is what the harness runs. (With later stages
//! denying, an allowed intent's counters would also hold reservations
//! still in flight that a later stage releases.)

use crate::bench::{recount_key, RecountLogic, RecountModel};
use sendgate::cli::kafka_io::{self, ReadOptions};
use sendgate::codec::{self, RecordType};
use sendgate::config::Config;
use sendgate::model::*;
use sendgate::stage::driver::partition_for;
use rdkafka::producer::FutureRecord;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// What one intent's decision must be.
struct Expected {
    status: &'static str,
    /// The recount's counters as the decision reports them: after this
    /// intent's reservation when allowed. Indexed as `counter_slot` says.
    counters: [i64; 4],
}

/// Where a decision's usage entry sits in `Expected::counters`, if the
/// recount models it.
fn counter_slot(u: &Usage) -> Option<usize> {
    let scope = if u.scope.starts_with("mailbox:") {
        0
    } else if u.scope.starts_with("sender_domain:") && !u.scope.contains('/') {
        2
    } else {
        return None;
    };
    match u.window.as_str() {
        "hour" => Some(scope),
        "day" => Some(scope + 1),
        _ => None,
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub intents: u64,
    pub decision_records: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub status_mismatches: u64,
    pub counter_mismatches: u64,
    pub counters_checked: u64,
    /// The first differences, for the reader.
    pub examples: Vec<String>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.missing + self.duplicates + self.unexpected + self.status_mismatches + self.counter_mismatches == 0 && self.intents > 0
    }

    fn note(&mut self, what: String) {
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

/// A decision's window counters against the recount's.
///
/// An allowed intent's counters are exact: the recount reserves in log
/// order, as the stage does, each intent in the windows of its own log
/// time. The stage uses its partition's stream clock, which is the same
/// but for an intent parked across a window's end (decided in the new
/// window when the outcomes it waited for come back): so a workload judged
/// this way stays within one clock hour (scripts/faults.sh waits for the
/// hour to turn when it must). A deferred intent may have waited for the
/// outcome of intents in flight (the stage parks it rather than defer an
/// intent that might fit), and other intents may have reserved in
/// windows that did not bind meanwhile. So for a deferred intent the full
/// windows are exact, and there must be one, and the others can only have
/// grown.
fn check_counters(report: &mut Report, d: &Decision, e: &Expected) {
    let full = d.usage.iter().filter(|u| u.used >= u.limit).count();
    for u in &d.usage {
        let Some(slot) = counter_slot(u) else { continue };
        report.counters_checked += 1;
        let want = e.counters[slot];
        let ok = match d.status {
            DecisionStatus::Deferred if u.used >= u.limit => u.used == want,
            DecisionStatus::Deferred => u.used >= want,
            _ => u.used == want,
        };
        if !ok {
            report.counter_mismatches += 1;
            report.note(format!("counter: {} ({}) reports {} {} used {} of {}, the recount has {}", d.intent_id, d.status.as_str(), u.scope, u.window, u.used, u.limit, want));
        }
    }
    let window_reason = ["minute_limit_exceeded", "hourly_limit_exceeded", "daily_cap_reached", "monthly_cap_reached"].contains(&d.reason.as_str());
    if d.status == DecisionStatus::Deferred && window_reason && full == 0 {
        report.counter_mismatches += 1;
        report.note(format!("counter: {} is deferred ({}) with no full window", d.intent_id, d.reason));
    }
}

/// With `recount` false, only what holds for any workload is checked:
/// missing, duplicated and unexpected decisions.
pub fn verify(cfg: &Config, idle: Duration, recount: bool) -> Result<Report, String> {
    let topo = cfg.topology()?;
    let mut report = Report::default();

    // 1. From the inputs: what every decision must be.
    let mut model = RecountModel::new(RecountLogic::Sender);
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let opts = ReadOptions { from_beginning: true, start_offsets: None, max: None, idle_timeout: Some(idle) };
    let topic = topo.full("intents");
    kafka_io::read_topic(cfg, &topic, &opts, |r| {
        let Some(bytes) = r.payload.as_deref() else { return Ok(()) };
        let intent: SendIntent = codec::decode(RecordType::SendIntent, bytes).map_err(|e| format!("{topic} [{}] @{}: {e}", r.partition, r.offset))?;
        let t = r.timestamp_ms.ok_or("intent without a timestamp")?;
        let status = if recount { model.decide(&intent, t) } else { "" };
        let mut counters = [0i64; 4];
        for (i, (scope, window)) in [("mailbox", "hour"), ("mailbox", "day"), ("sender_domain", "hour"), ("sender_domain", "day")].iter().enumerate() {
            counters[i] = model.count(&recount_key(&intent, t, scope, window));
        }
        if expected.insert(intent.intent_id.clone(), Expected { status, counters }).is_some() {
            return Err(format!("intent id {} published twice: the workload is not one the verifier can judge", intent.intent_id));
        }
        Ok(())
    })?;
    report.intents = expected.len() as u64;

    // 2. From the outputs, read-committed: what was decided.
    let mut seen: HashMap<String, u32> = HashMap::with_capacity(expected.len());
    let topic = topo.full("decisions");
    kafka_io::read_topic(cfg, &topic, &opts, |r| {
        let d: Decision = codec::decode(RecordType::Decision, r.payload.as_deref().unwrap_or_default()).map_err(|e| format!("{topic} [{}] @{}: {e}", r.partition, r.offset))?;
        report.decision_records += 1;
        let n = seen.entry(d.intent_id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            report.duplicates += 1;
            report.note(format!("duplicate: {} decided again ({}) at [{}] @{}", d.intent_id, d.status.as_str(), r.partition, r.offset));
            return Ok(());
        }
        let Some(e) = expected.get(&d.intent_id) else {
            report.unexpected += 1;
            report.note(format!("unexpected: a decision for {}, which no input holds", d.intent_id));
            return Ok(());
        };
        if !recount {
            return Ok(());
        }
        if d.status.as_str() != e.status {
            report.status_mismatches += 1;
            report.note(format!("status: {} is {} ({}), the recount says {}", d.intent_id, d.status.as_str(), d.reason, e.status));
        }
        check_counters(&mut report, &d, e);
        Ok(())
    })?;
    for id in expected.keys() {
        if !seen.contains_key(id) {
            report.missing += 1;
            if report.missing <= 5 {
                report.note(format!("missing: no decision for {id}"));
            }
        }
    }
    Ok(report)
}

/// A plain outbound intent (tenant "probe").
fn outbound(intent_id: String, sender: String, recipient: String) -> SendIntent {
    SendIntent { intent_id, tenant: "probe".into(), sender, recipient, class: IntentClass::Outbound, template_id: None, content_hash: None, thread_id: None, requires_approval: false, requested_at_ms: 0 }
}

/// Publishes one intent to each intents partition, each bound for a
/// different sender-stage partition, and waits until all are decided.
/// Returns the time from publishing to the last decision: right after a
/// fault, how long until every part of the pipeline answers again.
pub fn probe(cfg: &Config, label: &str, timeout: Duration) -> Result<Duration, String> {
    let topo = cfg.topology()?;
    let inputs = topo.partitions("intents");
    let stages = topo.partitions(&sendgate::stage::StageKind::Sender.topic());
    // Timed from here: right after a broker restart the topics' leaders
    // may not be back yet, and that wait is part of the answer (it is
    // retried until the timeout, not reported as a failure at once).
    let started = Instant::now();
    let start = loop {
        match kafka_io::watermarks(cfg, &topo.full("decisions")) {
            Ok(w) => break w.into_iter().map(|(p, (_, high))| (p, high)).collect(),
            Err(e) if started.elapsed() < timeout => {
                tracing::debug!(error = %e, "probe: the decisions topic is not readable yet");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(format!("probe {label}: the decisions topic could not be read within {timeout:?}: {e}")),
        }
    };
    let producer = kafka_io::producer(cfg)?;
    let mut ids = HashSet::new();
    let mut sends = Vec::new();
    for i in 0..inputs.max(stages) {
        // The first probe domain that lands on sender-stage partition i.
        let domain = (0..).map(|k| format!("probe{k}.example")).find(|d| partition_for(d, stages) == i % stages).expect("some domain lands on every partition");
        let intent = outbound(format!("probe-{label}-{i}"), format!("probe-{label}@{domain}"), format!("check{i}@probe-recipient{i}.example"));
        let bytes = codec::encode(RecordType::SendIntent, &intent).map_err(|e| e.to_string())?;
        ids.insert(intent.intent_id.clone());
        sends.push((i % inputs, domain, bytes));
    }
    let topic = topo.full("intents");
    for (partition, key, bytes) in &sends {
        let rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic).partition(*partition).key(key.as_str()).payload(bytes.as_slice());
        futures::executor::block_on(producer.send(rec, timeout)).map_err(|(e, _)| format!("probe: cannot publish: {e}"))?;
    }
    let decided = sendgate::cli::collect::decisions_for(cfg, &start, &ids, timeout)?;
    if decided.len() < ids.len() {
        return Err(format!("probe {label}: {} of {} decided within {timeout:?}", decided.len(), ids.len()));
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(scope: &str, window: &str, used: i64, limit: i64) -> Usage {
        Usage { scope: scope.into(), window: window.into(), used, limit, remaining: (limit - used).max(0) }
    }

    fn decision(status: DecisionStatus, reason: &str, usage: Vec<Usage>) -> Decision {
        let intent = outbound("i-1".into(), "a@d.example".into(), "r@x.example".into());
        let source = SourceRef { topic: "intents".into(), partition: 0, offset: 0 };
        sendgate::stage::pipeline::new_decision(&intent, 0, &source, sendgate::stage::StageKind::Sender, status, reason, None, usage, 1)
    }

    fn mismatches(d: &Decision, counters: [i64; 4]) -> u64 {
        let mut r = Report::default();
        check_counters(&mut r, d, &Expected { status: d.status.as_str(), counters });
        r.counter_mismatches
    }

    #[test]
    fn an_allowed_intent_reports_exactly_the_recounted_windows() {
        let d = decision(DecisionStatus::Allowed, "ok", vec![usage("mailbox:a@d.example", "hour", 2, 3), usage("sender_domain:d.example", "day", 7, 1000)]);
        assert_eq!(mismatches(&d, [2, 2, 7, 7]), 0);
        // A reservation counted twice (a repeat after a crash) is caught.
        assert_eq!(mismatches(&d, [1, 1, 7, 7]), 1);
    }

    #[test]
    fn a_deferred_intent_is_exact_in_its_full_window_and_may_have_waited_in_others() {
        let d = decision(DecisionStatus::Deferred, "hourly_limit_exceeded", vec![usage("mailbox:a@d.example", "hour", 3, 3), usage("sender_domain:d.example", "hour", 5, 100)]);
        // Two intents of other mailboxes reserved while it waited: fine.
        assert_eq!(mismatches(&d, [3, 3, 3, 3]), 0);
        // The full window off by one is not.
        assert_eq!(mismatches(&d, [4, 4, 3, 3]), 1);
        // Nor is a window that shrank.
        assert_eq!(mismatches(&d, [3, 3, 6, 6]), 1);
        // Nor a deferral on a window that is not full.
        let d = decision(DecisionStatus::Deferred, "hourly_limit_exceeded", vec![usage("mailbox:a@d.example", "hour", 2, 3)]);
        assert_eq!(mismatches(&d, [2, 2, 0, 0]), 1);
    }
}
