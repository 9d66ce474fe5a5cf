//! Candidate policies in shadow: decided beside the enforced policy on live
//! traffic, enforcing nothing.
//!
//! A candidate document published for a scope (`shadow/SCOPE` on the
//! policies topic) makes every stage decide each record in that scope twice:
//! as today, and again under the candidate, in a state of its own (a key
//! namespace of the same partition, so the candidate keeps its own counters,
//! pauses and held intents, and reserves nothing in the enforced ones). The
//! candidate's intents travel between stages as envelopes tagged with its
//! scope. Its decisions never reach the decisions topic and its alerts page
//! no one: the sender stage, where every outcome comes back, pairs each
//! would-be decision with the enforced decision for the same intent record
//! and emits the pair to the shadow-decisions topic.
//!
//! The candidate's state starts empty when it is published, as a backtest
//! of it over the same input from that point would: its first windows count
//! only what it saw. Everything is derived from the stage logs, so the audit
//! replay reproduces the pairs as it does the decisions.

use super::keys;
use super::context::{domain_of, index_expiry, Stage, StageError, StageKind, StageOutput};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::PolicyBook;
use crate::state::{PartitionView, StateValue, StoreError};
use std::collections::BTreeMap;

/// How long one half of a pair waits for the other. The two run side by
/// side, so a half waits this long only when the other never comes (an
/// intent the enforced policy held and an operator approved, which the
/// candidate had allowed at once): then it is dropped.
pub const PAIR_WAIT_MS: i64 = 3_600_000;
/// A count of differences restarts this long after its first (and its
/// alerts with it, at 1, 10, 100, ...).
const DIFFERENCE_COUNT_MS: i64 = 30 * 86_400_000;

/// Decides one record in one state (the enforced one, or a candidate's):
/// the pipeline's `process_in`, handed in by the pipeline, which calls this
/// module, so that this module does not call back into it.
pub type Decide = fn(&dyn Stage, &mut PartitionView<'_>, &mut PolicyBook, &StageEnvelope, &mut StageOutput) -> Result<(), StageError>;

/// Handles a record when candidates are in shadow, or a candidate's own record.
pub fn process(decide: Decide, stage: &dyn Stage, view: &mut PartitionView<'_>, book: &mut PolicyBook, env: &StageEnvelope, out: &mut StageOutput) -> Result<(), StageError> {
    if let Some(scope) = env.shadow.as_deref() {
        // A candidate's intent passed on, or its release. Once the candidate
        // is stopped, what it still had in flight is dropped.
        return in_shadow(decide, stage, view, book, scope, env, out);
    }
    let first = out.decisions.len();
    decide(stage, view, book, env, out)?;
    if env.policy().is_some() {
        return Ok(());
    }
    if stage.kind() == StageKind::Sender {
        let mut enforced: Vec<Decision> = out.decisions[first..].to_vec();
        enforced.extend(env.release().and_then(|r| r.outcome.clone()));
        for d in enforced {
            let scopes: Vec<(String, i64)> = book.shadows().filter(|(_, s)| s.scope.covers(&d.tenant, &d.sender, &d.recipient)).map(|(n, s)| (n.clone(), s.version)).collect();
            for (scope, version) in scopes {
                pair(&mut view.namespaced(&keys::shadow_namespace(&scope, version)), out, env, &scope, Side::Enforced, d.clone())?;
            }
        }
    }
    for scope in covering(book, env, stage.kind()) {
        in_shadow(decide, stage, view, book, &scope, env, out)?;
    }
    Ok(())
}

/// The candidates a fresh record (one the router sent) concerns: intents
/// and delivery events in their scope, and the commands of their tenant.
/// Intents passed on, releases and the deliveries the recipient stage
/// passes on to the recipient-domain stage are the enforced pipeline's
/// own: the candidate has its own copies of them.
fn covering(book: &PolicyBook, env: &StageEnvelope, kind: StageKind) -> Vec<String> {
    // (tenant, sender, recipient) of an intent or event; a command, its tenant alone.
    let (tenant, addresses) = match &env.payload {
        Payload::Delivery(_) if kind == StageKind::RecipientDomain => return Vec::new(),
        Payload::Intent(i) => (&i.tenant, Some((&i.sender, &i.recipient))),
        Payload::Delivery(d) => (&d.tenant, Some((&d.sender, &d.recipient))),
        Payload::Command(c) => (&c.tenant, None),
        Payload::Policy(_) | Payload::Hop(_) | Payload::Release(_) => return Vec::new(),
    };
    book.shadows()
        .filter(|(_, s)| match addresses {
            Some((sender, recipient)) => s.scope.covers(tenant, sender, recipient),
            None => !matches!(&s.scope, crate::policy::Scope::Tenant(t) if t != tenant),
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// Decides a record under a candidate, in its own state.
fn in_shadow(decide: Decide, stage: &dyn Stage, view: &mut PartitionView<'_>, book: &mut PolicyBook, scope: &str, env: &StageEnvelope, out: &mut StageOutput) -> Result<(), StageError> {
    let Some(shadow) = book.shadow_mut(scope) else { return Ok(()) };
    let ns = keys::shadow_namespace(scope, shadow.version);
    let mut sout = StageOutput::default();
    let result = {
        let mut sview = view.namespaced(&ns);
        decide(stage, &mut sview, &mut shadow.book, env, &mut sout)
    };
    match result {
        Ok(()) => {}
        // The enforced pipeline took this record: what the candidate cannot
        // act on (a record of its own is another matter) is skipped rather
        // than dead-lettered with the enforced decisions.
        Err(StageError::BadRecord(_)) if env.shadow.is_none() => return Ok(()),
        Err(e) => return Err(e),
    }
    for mut f in sout.forwards {
        f.envelope.shadow = Some(scope.to_string());
        out.forwards.push(f);
    }
    if stage.kind() == StageKind::Sender {
        let mut decided = sout.decisions;
        if env.shadow.is_some() {
            decided.extend(env.release().and_then(|r| r.outcome.clone()));
        }
        for d in decided {
            pair(&mut view.namespaced(&ns), out, env, scope, Side::Candidate, d)?;
        }
    }
    // Decisions at later stages come back to the sender stage as outcomes;
    // the candidate's alerts are dropped: a policy in shadow pages no one.
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Enforced,
    Candidate,
}

/// Keeps one half of a pair, or completes it with the other and emits it.
/// `view` is the candidate's namespace: the halves, the counts of
/// differences and their expiry entries live with the rest of its state
/// (swept with it, and purged with it), never in the enforced state.
fn pair(view: &mut PartitionView<'_>, out: &mut StageOutput, env: &StageEnvelope, scope: &str, side: Side, d: Decision) -> Result<(), StoreError> {
    let (mine, theirs) = if side == Side::Enforced { (b'e', b'c') } else { (b'c', b'e') };
    let other_key = keys::shadow_half(theirs, scope, &d.tenant, &d.intent_id, &d.source);
    let now = view.get_time(keys::CLOCK)?.unwrap_or(i64::MIN).max(env.log_time_ms);
    if let Some(StateValue::FinalDecision(bytes)) = view.get(&other_key)? {
        view.delete(&other_key);
        let other: Decision = codec::decode(RecordType::Decision, &bytes).map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(&other_key).into_owned(), why: e.to_string() })?;
        let (enforced, candidate) = if side == Side::Enforced { (d, other) } else { (other, d) };
        return emit(view, out, env, now, scope, enforced, candidate);
    }
    let key = keys::shadow_half(mine, scope, &d.tenant, &d.intent_id, &d.source);
    let bytes = codec::encode(RecordType::Decision, &d).expect("a decision always fits its schema");
    view.put(&key, StateValue::FinalDecision(bytes));
    index_expiry(view, now, now + PAIR_WAIT_MS, &key, None);
    Ok(())
}

fn emit(view: &mut PartitionView<'_>, out: &mut StageOutput, env: &StageEnvelope, now: i64, scope: &str, enforced: Decision, candidate: Decision) -> Result<(), StoreError> {
    let differs = (enforced.status, &enforced.reason) != (candidate.status, &candidate.reason);
    let check = differing_check(&enforced, &candidate);
    if differs {
        let domain = domain_of(&enforced.sender).to_string();
        let key = keys::shadow_differences(scope, candidate.policy_version, &enforced.tenant, &domain);
        let n = view.get_time(&key)?.unwrap_or(0) + 1;
        view.put(&key, StateValue::Clock(n));
        if n == 1 {
            index_expiry(view, now, now + DIFFERENCE_COUNT_MS, &key, None);
        }
        // At the first difference, then at every power of ten.
        if is_power_of_ten(n) {
            let summary = |d: &Decision| format!("{} {}", d.status.as_str(), d.reason);
            let details = BTreeMap::from([
                ("differences".to_string(), n.to_string()),
                ("sender_domain".to_string(), domain.clone()),
                ("candidate_version".to_string(), candidate.policy_version.to_string()),
                ("intent_id".to_string(), enforced.intent_id.clone()),
                ("enforced".to_string(), summary(&enforced)),
                ("candidate".to_string(), summary(&candidate)),
                ("check".to_string(), check.clone()),
            ]);
            let s = &env.source;
            let phase = env.phase();
            out.alerts.push(Alert {
                alert_id: format!("shadow/{}:{scope}/{phase}/{}/{}/{}/{}", scope.len(), s.topic, s.partition, s.offset, out.alerts.len()),
                tenant: enforced.tenant.clone(),
                scope: scope.to_string(),
                kind: "shadow_differs".to_string(),
                message: format!(
                    "the candidate policy in shadow for {scope} would have decided {n} intent(s) of tenant {} from sender_domain:{domain} differently; the latest: enforced {}, candidate {} ({check})",
                    enforced.tenant,
                    summary(&enforced),
                    summary(&candidate)
                ),
                at_ms: now,
                details,
            });
        }
    }
    out.shadow.push(ShadowDecision { shadow_scope: scope.to_string(), intent_id: enforced.intent_id.clone(), tenant: enforced.tenant.clone(), enforced, candidate, differs, check });
    Ok(())
}

/// The check that differed between two decisions of one intent, as
/// `stage: STATUS reason` of the side that denied (the candidate's when
/// both did); empty when they agree.
pub fn differing_check(enforced: &Decision, candidate: &Decision) -> String {
    if (enforced.status, &enforced.reason) == (candidate.status, &candidate.reason) {
        return String::new();
    }
    let denied = if candidate.status != DecisionStatus::Allowed { candidate } else { enforced };
    format!("{}: {} {}", denied.stage.as_deref().unwrap_or("sender"), denied.status.as_str(), denied.reason)
}

fn is_power_of_ten(mut n: i64) -> bool {
    while n >= 10 && n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

/// Keys of a stopped or replaced candidate's namespace removed per record
/// while a purge is pending: its state goes in bounded steps.
const PURGE_PER_RECORD: usize = 64;

/// Before a candidate change is applied: a candidate stopped or replaced
/// by a new version leaves its namespace to be purged.
pub fn on_policy_change(view: &mut PartitionView<'_>, book: &mut PolicyBook, change: &PolicyChange) {
    let Some(scope) = change.scope.strip_prefix(crate::policy::resolve::SHADOW_PREFIX) else { return };
    let Some(old) = book.shadows().find(|(n, _)| n.as_str() == scope).map(|(_, s)| s.version) else { return };
    if old != change.version {
        let ns = keys::shadow_namespace(scope, old);
        view.put(&keys::shadow_purge(&ns), StateValue::Marker);
        book.purging = true;
    }
}

/// One step of a pending purge (see [`on_policy_change`]). The cursor is
/// kept in the book only: after a restore the purge walks its namespace
/// from the start again, deleting the same keys.
pub fn purge_step(view: &mut PartitionView<'_>, book: &mut PolicyBook) -> Result<(), StoreError> {
    let Some(marker) = view.scan(keys::SHADOW_PURGE_PREFIX, 1)?.into_iter().next() else {
        book.purging = false;
        return Ok(());
    };
    let ns = marker[keys::SHADOW_PURGE_PREFIX.len()..].to_vec();
    let from = match book.purge_cursor.take() {
        Some((of, cursor)) if of == ns => cursor,
        _ => ns.clone(),
    };
    let found = view.scan_from(&ns, &from, PURGE_PER_RECORD)?;
    for k in &found {
        view.delete(k);
    }
    match found.last() {
        Some(last) if found.len() == PURGE_PER_RECORD => {
            let mut next = last.clone();
            next.push(0);
            book.purge_cursor = Some((ns, next));
        }
        _ => view.delete(&marker),
    }
    Ok(())
}
