//! `sendgate audit explain INTENT_ID`: why an intent got its decision.
//!
//! Finds the intent's latest decision on the decisions topic, replays the
//! stage logs with every check recorded, and reports, per stage, the checks
//! of the last evaluation of the intent (each window with its used and
//! limit before and after), the policy documents in force, the check that
//! decided, and the delivery events behind the sender domain's signal rates
//! at that moment.

use super::replay::{committed_ranges, StageLog};
use crate::cli::kafka_io::{self, ReadRecord};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::Scope;
use crate::stage::pipeline::{domain_of, Trace};
use crate::stage::{SenderConfig, StageKind};
use crate::stage::driver::partition_for;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

/// Most delivery events listed behind the signal rates.
const EVENTS_SHOWN: usize = 20;

pub struct Explanation {
    pub decision: Decision,
    /// (scope, version) of every document that applied.
    pub documents: Vec<(String, i64)>,
    /// Per stage, the checks of its last evaluation of the intent.
    pub checks: BTreeMap<StageKind, Vec<Trace>>,
    /// The check that decided: (stage, check, outcome, detail); None when all passed.
    pub decided_by: Option<Trace>,
    /// Hard bounces and complaints of the sender domain in the signal window, latest last.
    pub signal_events: Vec<(String, DeliveryKind, i64, String)>,
}

/// Of a recorded decision, what finding an intent's latest one needs (the
/// rest of each record is skipped, not decoded).
#[derive(serde::Deserialize)]
struct Candidate {
    intent_id: String,
    tenant: String,
    decided_at_ms: i64,
}

/// `tenant`: that tenant's intent only (intent ids are unique within a
/// tenant); None: the latest decision of any tenant's intent of that id.
pub fn explain(cfg: &Config, tenant: Option<&str>, intent_id: &str, scratch: PathBuf, sender: SenderConfig) -> Result<Explanation, String> {
    let topo = cfg.topology()?;
    let decisions_topic = topo.full("decisions");
    let whole = kafka_io::watermarks(cfg, &decisions_topic)?;
    let mut latest: Option<(i64, Decision)> = None;
    kafka_io::read_ranges(cfg, &decisions_topic, &whole, |r: ReadRecord| {
        let bytes = r.payload.unwrap_or_default();
        let c: Candidate = codec::decode(RecordType::Decision, bytes).map_err(|e| e.to_string())?;
        if c.intent_id == intent_id && tenant.is_none_or(|t| t == c.tenant) && latest.as_ref().is_none_or(|(at, _)| c.decided_at_ms >= *at) {
            latest = Some((c.decided_at_ms, codec::decode(RecordType::Decision, bytes).map_err(|e| e.to_string())?));
        }
        Ok(())
    })?;
    let (_, decision) = latest.ok_or_else(|| format!("no decision for intent {intent_id:?} on {decisions_topic}"))?;

    let ranges = committed_ranges(cfg)?;
    std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    // Per stage, the last evaluation's log time and checks (an intent
    // evaluated again may be on another partition of the same stage, when
    // its recipient group changed with the policy).
    let checks: Mutex<BTreeMap<StageKind, (i64, Vec<Trace>)>> = Mutex::new(BTreeMap::new());
    let documents: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());
    // The signal window in force at the decision (hours).
    let window_hours: Mutex<u32> = Mutex::new(24);
    let events: Mutex<VecDeque<(String, DeliveryKind, i64, String)>> = Mutex::new(VecDeque::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let sender_domain = domain_of(&decision.sender).to_string();
    let relevant_scopes = |rd: &str| -> Vec<Scope> {
        vec![
            Scope::Default,
            Scope::Tenant(decision.tenant.clone()),
            Scope::SenderDomain(sender_domain.clone()),
            Scope::Mailbox(decision.sender.clone()),
            Scope::RecipientDomain(rd.to_string()),
        ]
    };
    // Only the stage partitions the intent passed through can hold its
    // checks, and each partition's state comes from its own log alone: so
    // the intent is followed along its path, as the live processor routed
    // it. It enters at its sender domain's partition of the sender stage;
    // every record a stage sends on about it (a hop to the next stage, a
    // release back) names a stage and a key, and the key gives the
    // partition, with the live processor's partitioner. Each round replays
    // the partitions the previous one found, in parallel.
    let partition_of = |kind: StageKind, key: &str| (kind, partition_for(key, topo.partitions(&kind.topic())));
    let mut visited: BTreeSet<(StageKind, i32)> = BTreeSet::new();
    let mut round: BTreeSet<(StageKind, i32)> = BTreeSet::from([partition_of(StageKind::Sender, &sender_domain)]);
    while !round.is_empty() {
        visited.extend(round.iter().copied());
        let found: Mutex<BTreeSet<(StageKind, i32)>> = Mutex::new(BTreeSet::new());
        std::thread::scope(|s| {
            for &(kind, p) in &round {
                let Some((_, topic, r)) = ranges.iter().find(|(k, _, _)| *k == kind) else {
                    continue;
                };
                let Some(&range) = r.get(&p) else {
                    continue;
                };
                let (checks, documents, events, errors, decision, scratch, sender, sender_domain, window_hours, found) = (&checks, &documents, &events, &errors, &decision, &scratch, &sender, &sender_domain, &window_hours, &found);
                let (relevant_scopes, partition_of) = (&relevant_scopes, &partition_of);
                s.spawn(move || {
                    let part = HashMap::from([(p, range)]);
                    let state_dir = scratch.join(format!("{}-{p}", kind.name()));
                    let log = StageLog { cfg, kind, topic, ranges: &part, state_dir: &state_dir, sender, trace: Some(intent_id) };
                    let result = log.run(|step| {
                        if let Some(mine) = step.out.trace.as_ref().filter(|t| !t.is_empty()) {
                            // The sender stage's last evaluation sets the signal window.
                            if kind == StageKind::Sender {
                                *window_hours.lock().expect("not poisoned") = step.book.resolve(&decision.tenant, sender_domain, &decision.sender, None).signals.window_hours;
                            }
                            let mut checks = checks.lock().expect("not poisoned");
                            if checks.get(&kind).is_none_or(|(at, _)| step.env.log_time_ms >= *at) {
                                checks.insert(kind, (step.env.log_time_ms, mine.clone()));
                            }
                        }
                        for f in &step.out.forwards {
                            let about_it = f.envelope.hop().is_some_and(|h| h.intent.intent_id == intent_id) || f.envelope.release().is_some_and(|r| r.intent_id == intent_id);
                            if about_it {
                                found.lock().expect("not poisoned").insert(partition_of(f.stage, &f.key));
                            }
                        }
                        if step.out.decisions.iter().any(|d| d.source == decision.source) {
                            let rd = domain_of(&decision.recipient);
                            let scopes = relevant_scopes(rd);
                            let mut docs: Vec<(String, i64)> = step.book.documents().filter(|(sc, _)| scopes.contains(sc)).map(|(sc, (v, _))| (sc.to_string(), *v)).collect();
                            docs.sort();
                            *documents.lock().expect("not poisoned") = docs;
                        }
                        // The events behind the signal rates: the sender domain's
                        // hard bounces and complaints up to the decision.
                        if kind == StageKind::Sender {
                            if let Some(ev) = step.env.delivery() {
                                if domain_of(&ev.sender) == sender_domain && matches!(ev.kind, DeliveryKind::BounceHard | DeliveryKind::Complaint) && step.env.log_time_ms <= decision.decided_at_ms {
                                    let mut q = events.lock().expect("not poisoned");
                                    q.push_back((ev.event_id.clone(), ev.kind, step.env.log_time_ms, ev.recipient.clone()));
                                    if q.len() > EVENTS_SHOWN {
                                        q.pop_front();
                                    }
                                }
                            }
                        }
                        Ok(())
                    });
                    if let Err(e) = result {
                        errors.lock().expect("not poisoned").push(format!("{} [{p}]: {e}", kind.name()));
                    }
                });
            }
        });
        if !errors.lock().expect("not poisoned").is_empty() {
            break;
        }
        round = found.into_inner().expect("not poisoned").difference(&visited).copied().collect();
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if let Some(e) = errors.into_inner().expect("not poisoned").into_iter().next() {
        return Err(e);
    }
    let checks: BTreeMap<StageKind, Vec<Trace>> = checks.into_inner().expect("not poisoned").into_iter().map(|(k, (_, ts))| (k, ts)).collect();
    let deciding = decision.stage.as_deref().and_then(StageKind::parse);
    let decided_by = deciding
        .and_then(|k| checks.get(&k))
        .and_then(|ts| ts.iter().find(|t| t.check != "verdict" && t.check != "policy" && t.check != "signals" && t.outcome != "pass"))
        .cloned()
        .or_else(|| deciding.and_then(|k| checks.get(&k)).and_then(|ts| ts.iter().find(|t| t.check == "verdict" && t.outcome != "pass")).cloned());
    // Keep only events inside the signal window of the decision.
    let window_ms = window_hours.into_inner().expect("not poisoned") as i64 * 3_600_000;
    let signal_events = events.into_inner().expect("not poisoned").into_iter().filter(|(_, _, at, _)| *at > decision.decided_at_ms - window_ms).collect();
    Ok(Explanation { decision, documents: documents.into_inner().expect("not poisoned"), checks, decided_by, signal_events })
}
