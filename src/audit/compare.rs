//! One report format for what a candidate policy changes: the backtest
//! (the recorded input replayed under it) and the shadow report (its
//! would-be decisions on live traffic) fill the same [`Comparison`] and
//! print it the same way, as text or JSON.

use crate::model::{Decision, DecisionStatus, SourceRef};
use crate::stage::pipeline::domain_of;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Counts of one sender domain: (allowed, denied) before and under the candidate.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct DomainCounts {
    pub allowed: (u64, u64),
    pub denied: (u64, u64),
}

/// One intent the candidate decides differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub intent_id: String,
    pub source: SourceRef,
    pub before: (DecisionStatus, String),
    pub after: (DecisionStatus, String),
    /// The check that differed (see `stage::shadow::differing_check`).
    pub check: String,
}

/// Decisions before (the policy in force, or the backtest's baseline) and
/// under a candidate, intent by intent.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub compared: u64,
    pub changed: u64,
    /// (status, reason) -> (before, under the candidate).
    pub by_outcome: BTreeMap<(DecisionStatus, String), (u64, u64)>,
    pub by_sender_domain: BTreeMap<String, DomainCounts>,
    /// The first changes, at most `keep`.
    pub first: Vec<Change>,
}

impl Comparison {
    /// Counts one intent's two decisions; keeps its change among the first `keep`.
    pub fn add(&mut self, before: &Decision, after: &Decision, keep: usize) {
        self.compared += 1;
        self.by_outcome.entry((before.status, before.reason.clone())).or_default().0 += 1;
        self.by_outcome.entry((after.status, after.reason.clone())).or_default().1 += 1;
        let dc = self.by_sender_domain.entry(domain_of(&before.sender).to_string()).or_default();
        let allowed = |d: &Decision| d.status == DecisionStatus::Allowed;
        if allowed(before) { dc.allowed.0 += 1 } else { dc.denied.0 += 1 }
        if allowed(after) { dc.allowed.1 += 1 } else { dc.denied.1 += 1 }
        if (before.status, &before.reason) != (after.status, &after.reason) {
            self.changed += 1;
            if self.first.len() < keep {
                self.first.push(Change {
                    intent_id: before.intent_id.clone(),
                    source: before.source.clone(),
                    before: (before.status, before.reason.clone()),
                    after: (after.status, after.reason.clone()),
                    check: crate::stage::shadow::differing_check(before, after),
                });
            }
        }
    }

    /// The two summary lines.
    pub fn summary(&self, before: &str) -> String {
        format!("decisions compared   {}\ndecisions changed    {} (the candidate against the {before})\n", self.compared, self.changed)
    }

    /// The tables and the first changes. `recorded`: a column of what the
    /// live processor recorded (the backtest has it).
    pub fn tables(&self, before: &str, recorded: Option<&BTreeMap<(DecisionStatus, String), u64>>) -> String {
        let mut s = String::new();
        let rec_head = if recorded.is_some() { format!(" {:>10}", "recorded") } else { String::new() };
        let _ = writeln!(s, "\n{:<10} {:<28}{rec_head} {:>10} {:>10}", "status", "reason", before, "candidate");
        let none = BTreeMap::new();
        let rec = recorded.unwrap_or(&none);
        let outcomes: BTreeSet<&(DecisionStatus, String)> = self.by_outcome.keys().chain(rec.keys()).collect();
        let mut by_status: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        for outcome in outcomes {
            let r = rec.get(outcome).copied().unwrap_or(0);
            let (a, b) = self.by_outcome.get(outcome).copied().unwrap_or((0, 0));
            let rec_cell = if recorded.is_some() { format!(" {r:>10}") } else { String::new() };
            let _ = writeln!(s, "{:<10} {:<28}{rec_cell} {a:>10} {b:>10}", outcome.0.as_str(), outcome.1);
            let e = by_status.entry(outcome.0.as_str()).or_default();
            e.0 += r;
            e.1 += a;
            e.2 += b;
        }
        s.push('\n');
        for (status, (r, a, b)) in &by_status {
            let rec_part = if recorded.is_some() { format!(" recorded {r}") } else { String::new() };
            let _ = writeln!(s, "total {status:<10}{rec_part} {before} {a} candidate {b}");
        }
        let _ = writeln!(s, "\n{:<40} {:>17} {:>17}", "sender domain", "allowed now/cand", "denied now/cand");
        for (domain, c) in &self.by_sender_domain {
            let _ = writeln!(s, "{:<40} {:>8}/{:<8} {:>8}/{:<8}", domain, c.allowed.0, c.allowed.1, c.denied.0, c.denied.1);
        }
        if !self.first.is_empty() {
            let _ = writeln!(s, "\nfirst changes ({before} -> candidate):");
            for c in &self.first {
                let _ = writeln!(
                    s,
                    "  {} ({} [{}] @{}): {} {} -> {} {}   [{}]",
                    c.intent_id,
                    c.source.topic,
                    c.source.partition,
                    c.source.offset,
                    c.before.0.as_str(),
                    c.before.1,
                    c.after.0.as_str(),
                    c.after.1,
                    c.check
                );
            }
        }
        s
    }

    /// The same report as JSON.
    pub fn to_json(&self, before: &str, recorded: Option<&BTreeMap<(DecisionStatus, String), u64>>) -> serde_json::Value {
        let outcomes: Vec<serde_json::Value> = self
            .by_outcome
            .iter()
            .map(|((status, reason), (a, b))| {
                let mut o = json!({ "status": status.as_str(), "reason": reason, before: a, "candidate": b });
                if let Some(r) = recorded {
                    o["recorded"] = json!(r.get(&(*status, reason.clone())).copied().unwrap_or(0));
                }
                o
            })
            .collect();
        let domains: Vec<serde_json::Value> = self
            .by_sender_domain
            .iter()
            .map(|(d, c)| json!({ "sender_domain": d, "allowed": { before: c.allowed.0, "candidate": c.allowed.1 }, "denied": { before: c.denied.0, "candidate": c.denied.1 } }))
            .collect();
        let changes: Vec<serde_json::Value> = self
            .first
            .iter()
            .map(|c| {
                json!({
                    "intent_id": c.intent_id,
                    "source": { "topic": c.source.topic, "partition": c.source.partition, "offset": c.source.offset },
                    before: { "status": c.before.0.as_str(), "reason": c.before.1 },
                    "candidate": { "status": c.after.0.as_str(), "reason": c.after.1 },
                    "check": c.check,
                })
            })
            .collect();
        json!({ "compared": self.compared, "changed": self.changed, "outcomes": outcomes, "sender_domains": domains, "changes": changes })
    }
}
