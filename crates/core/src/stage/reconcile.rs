//! Reconciliation: what was sent against what was allowed.
//!
//! Every delivery event that shows a send (DELIVERED, a bounce, a deferral,
//! a rejection) reaches the sender stage, where every intent's outcome
//! comes back, and is joined with its intent's decision there. A send with
//! no ALLOWED decision behind it is unapproved: an intent that was DEFERRED,
//! PAUSED, HELD or BLOCKED, an id never seen, a recipient or mailbox other
//! than the one allowed, or a send after a pause that began after the
//! decision. Each is counted per tenant, mailbox and sender domain (a day
//! at a time), raises an `unapproved_send` alert (once per intent), and can
//! pause the mailbox (`reconcile.pause_mailbox_after`).
//!
//! Events may come before their decision: an app that does not wait for
//! its answer, or a pipeline that reports faster than the stages decide.
//! An event whose intent is still being decided, or not yet seen, waits for
//! the decision (`reconcile.wait_seconds`, 5 minutes by default, at most a
//! day): an ALLOWED outcome clears it silently, any other outcome makes it
//! unapproved at once, and one still undecided when the time is up is
//! unapproved as `no_decision`. The wait is an expiry index entry, so it
//! runs on log time and a replay meets it at the same record.

use super::context::{domain_of, Cx, StageError};
use super::keys;
use crate::clock::{window_end, window_start, Window};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::EffectivePolicy;
use crate::state::{Entry, StateValue, StoreError};

/// What reconciliation reads and does in the sender stage's records: an
/// intent's final decision, its pending (undecided) record, a pause.
/// Implemented by the sender stage, which calls this module; declared here
/// so that this module does not depend on it in turn.
pub trait SenderRecords {
    fn final_decision(&self, cx: &Cx<'_, '_>, tenant: &str, intent_id: &str) -> Result<Option<Decision>, StoreError>;
    /// The stored intent still being decided, if any (`take`: and forget it).
    fn pending(&self, cx: &mut Cx<'_, '_>, tenant: &str, intent_id: &str, take: bool) -> Result<Option<Vec<u8>>, StoreError>;
    /// Pauses `scope` (once), with an alert saying `message`.
    fn pause(&self, cx: &mut Cx<'_, '_>, tenant: &str, scope: &str, reason: &str, by: &str, message: String) -> Result<(), StoreError>;
}

/// How long an intent's last non-final outcome, and the flag of an
/// unapproved send (one alert per intent), are kept.
pub const REMEMBER_MS: i64 = 3 * 86_400_000;

/// Whether an event of this kind shows that a send was attempted.
pub fn is_send(kind: DeliveryKind) -> bool {
    matches!(kind, DeliveryKind::Delivered | DeliveryKind::BounceHard | DeliveryKind::BounceSoft | DeliveryKind::Deferred | DeliveryKind::Rejected)
}

/// A delivery event at the sender stage.
pub fn on_event(stage: &impl SenderRecords, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent, policy: &EffectivePolicy) -> Result<(), StageError> {
    // Real sends follow the enforced decisions: a candidate policy in
    // shadow (its own state, a namespace) does not judge them.
    if !policy.reconcile.enabled || !is_send(ev.kind) || cx.view.is_namespaced() {
        return Ok(());
    }
    let Some(id) = ev.intent_id.as_deref() else {
        if policy.reconcile.require_intent_id {
            flag(stage, cx, ev, policy, "no_intent_id", "the event names no intent".into())?;
        }
        return Ok(());
    };
    // Found unapproved already, or waiting: one verdict per intent.
    if cx.view.get(&keys::reconciled(&ev.tenant, id))?.is_some() || cx.view.get(&keys::reconcile_wait(&ev.tenant, id))?.is_some() {
        return Ok(());
    }
    if let Some(d) = stage.final_decision(cx, &ev.tenant, id)? {
        return Ok(settle(stage, cx, ev, policy, &d)?);
    }
    if stage.pending(cx, &ev.tenant, id, false)?.is_none() {
        if let Some(StateValue::Entry(e)) = cx.view.get(&keys::outcome_seen(&ev.tenant, id))? {
            let reason = unapproved_reason(DecisionStatus::parse(&e.kind).unwrap_or(DecisionStatus::Deferred));
            flag(stage, cx, ev, policy, reason, format!("its decision was {} {}", e.kind, e.reason))?;
            return Ok(());
        }
    }
    // Being decided, or not seen yet: wait for the decision.
    let key = keys::reconcile_wait(&ev.tenant, id);
    let bytes = codec::encode(RecordType::StageEnvelope, cx.env).map_err(|e| StageError::BadRecord(e.to_string()))?;
    cx.view.put(&key, StateValue::Parked(bytes));
    cx.expire_at(cx.now + policy.reconcile.wait_ms, &key, None);
    Ok(())
}

/// An intent's decision at the sender stage (before it is kept).
pub fn on_outcome(stage: &impl SenderRecords, cx: &mut Cx<'_, '_>, d: &Decision) -> Result<(), StoreError> {
    if cx.view.is_namespaced() {
        return Ok(());
    }
    let policy = cx.book.effective(&d.tenant, domain_of(&d.sender), &d.sender, None);
    let wait = keys::reconcile_wait(&d.tenant, &d.intent_id);
    let waiting = match cx.view.get(&wait)? {
        Some(StateValue::Parked(bytes)) => {
            cx.view.delete(&wait);
            waiting_event(&bytes)
        }
        _ => None,
    };
    // (Turned off while an event waited: it is dropped.)
    if !policy.reconcile.enabled {
        return Ok(());
    }
    if !d.status.is_final() {
        let key = keys::outcome_seen(&d.tenant, &d.intent_id);
        cx.view.put(&key, StateValue::Entry(Entry { kind: d.status.as_str().into(), reason: d.reason.clone(), since_ms: cx.now, by: "decision".into(), until_ms: None }));
        cx.expire_at(cx.now + REMEMBER_MS, &key, Some(cx.now));
    }
    let Some(ev) = waiting else { return Ok(()) };
    let policy = cx.book.effective(&ev.tenant, domain_of(&ev.sender), &ev.sender, None);
    settle(stage, cx, &ev, &policy, d)
}

/// An event waited for its decision as long as the policy lets it.
pub fn on_wait_expired(stage: &impl SenderRecords, cx: &mut Cx<'_, '_>, bytes: &[u8]) -> Result<(), StoreError> {
    let Some(ev) = waiting_event(bytes) else { return Ok(()) };
    let policy = cx.book.effective(&ev.tenant, domain_of(&ev.sender), &ev.sender, None);
    if !policy.reconcile.enabled {
        return Ok(());
    }
    let id = ev.intent_id.clone().unwrap_or_default();
    if let Some(d) = stage.final_decision(cx, &ev.tenant, &id)? {
        return settle(stage, cx, &ev, &policy, &d);
    }
    if stage.pending(cx, &ev.tenant, &id, false)?.is_some() {
        // Still being decided (the later stages are behind): its outcome
        // will settle the event; wait again, as long again.
        let key = keys::reconcile_wait(&ev.tenant, &id);
        cx.view.put(&key, StateValue::Parked(bytes.to_vec()));
        cx.expire_at(cx.now + policy.reconcile.wait_ms, &key, None);
        return Ok(());
    }
    let (reason, detail) = match cx.view.get(&keys::outcome_seen(&ev.tenant, &id))? {
        Some(StateValue::Entry(e)) => (unapproved_reason(DecisionStatus::parse(&e.kind).unwrap_or(DecisionStatus::Deferred)), format!("its decision was {} {}", e.kind, e.reason)),
        _ => ("no_decision", format!("no decision for intent {id} within {} s of the event", policy.reconcile.wait_ms / 1000)),
    };
    flag(stage, cx, &ev, &policy, reason, detail)
}

fn waiting_event(bytes: &[u8]) -> Option<DeliveryEvent> {
    match codec::decode::<StageEnvelope>(RecordType::StageEnvelope, bytes) {
        Ok(StageEnvelope { payload: Payload::Delivery(ev), .. }) => Some(ev),
        Ok(_) => {
            tracing::warn!("a record waiting for its decision is not a delivery event; dropped");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "a delivery event waiting for its decision could not be read; dropped");
            None
        }
    }
}

fn unapproved_reason(status: DecisionStatus) -> &'static str {
    match status {
        DecisionStatus::Deferred => "sent_while_deferred",
        DecisionStatus::Paused => "sent_while_paused",
        DecisionStatus::Held => "sent_while_held",
        DecisionStatus::Blocked => "sent_while_blocked",
        DecisionStatus::Allowed => "allowed",
    }
}

/// Judges a send under its intent's decision `d`: unapproved (flagged),
/// or approved. A send judged while a pause newer than its decision is in
/// force is settled for good either way, so that the pipeline's later
/// events for it (a deferral, then the delivery) are not judged again
/// against the pause.
fn settle(stage: &impl SenderRecords, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent, policy: &EffectivePolicy, d: &Decision) -> Result<(), StoreError> {
    if d.status != DecisionStatus::Allowed {
        return flag(stage, cx, ev, policy, unapproved_reason(d.status), format!("its decision was {} {}", d.status.as_str(), d.reason));
    }
    if d.recipient != ev.recipient {
        return flag(stage, cx, ev, policy, "recipient_not_allowed", format!("intent {} was allowed for {}, not {}", d.intent_id, d.recipient, ev.recipient));
    }
    if d.sender != ev.sender {
        return flag(stage, cx, ev, policy, "sender_not_allowed", format!("intent {} was allowed from {}, not {}", d.intent_id, d.sender, ev.sender));
    }
    // Sent (by the pipeline's own clock) after a pause that began after the decision.
    for scope in [format!("mailbox:{}", ev.sender), format!("sender_domain:{}", domain_of(&ev.sender))] {
        let Some(StateValue::Pause(p)) = cx.view.get(&keys::pause(&scope))? else { continue };
        if p.since_ms <= d.decided_at_ms {
            continue;
        }
        if ev.occurred_at_ms > p.since_ms {
            let detail = format!("{scope} was paused ({}) at {}, after the decision and before the send", p.reason, crate::clock::format_ms(p.since_ms));
            return flag(stage, cx, ev, policy, "sent_after_pause", detail);
        }
        // Sent before the pause: settled, the MTA's retries are not new sends.
        mark_settled(cx, &ev.tenant, &d.intent_id);
        return Ok(());
    }
    Ok(())
}

/// Counts, alerts and, by policy, pauses an unapproved send.
fn flag(stage: &impl SenderRecords, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent, policy: &EffectivePolicy, reason: &str, detail: String) -> Result<(), StoreError> {
    let id = ev.intent_id.as_deref().unwrap_or(&ev.event_id);
    if cx.view.get(&keys::reconciled(&ev.tenant, id))?.is_some() {
        return Ok(());
    }
    mark_settled(cx, &ev.tenant, id);
    let domain = domain_of(&ev.sender).to_string();
    let mailbox = format!("mailbox:{}", ev.sender);
    let day = window_start(Window::Day, policy.tz, cx.now);
    let mut today = Vec::with_capacity(2);
    for scope in [mailbox.clone(), format!("sender_domain:{domain}")] {
        let key = keys::unapproved(&ev.tenant, &scope);
        let mut c = cx.view.get_counter(&key, day)?;
        c.count += 1;
        cx.view.put(&key, StateValue::Counter(c));
        if c.count == 1 {
            // Gone the day after; a later day's count is left alone.
            cx.expire_at(window_end(Window::Day, policy.tz, cx.now) + 86_400_000, &key, Some(day));
        }
        today.push(c.count);
    }
    cx.alert(
        &ev.tenant,
        &mailbox,
        "unapproved_send",
        format!(
            "{mailbox} sent to {} ({:?}, event {}) without an ALLOWED decision for intent {id}: {detail} ({} unapproved send(s) from this mailbox today)",
            ev.recipient, ev.kind, ev.event_id, today[0]
        ),
        &[
            ("reason", reason.to_string()),
            ("intent_id", id.to_string()),
            ("event_id", ev.event_id.clone()),
            ("event_kind", format!("{:?}", ev.kind)),
            ("recipient", ev.recipient.clone()),
            ("sender_domain", domain.clone()),
            ("mailbox_today", today[0].to_string()),
            ("sender_domain_today", today[1].to_string()),
        ],
    );
    let n = policy.reconcile.pause_mailbox_after;
    if n > 0 && today[0] >= i64::from(n) {
        stage.pause(cx, &ev.tenant, &mailbox, "unapproved_sends", "reconcile", format!("{mailbox} paused: {} unapproved sends today (reconcile.pause_mailbox_after = {n}); a resume command lifts it", today[0]))?;
    }
    Ok(())
}

/// An intent's send is judged for good: later events for it are not.
fn mark_settled(cx: &mut Cx<'_, '_>, tenant: &str, intent_id: &str) {
    let done = keys::reconciled(tenant, intent_id);
    cx.view.put(&done, StateValue::Marker);
    cx.expire_at(cx.now + REMEMBER_MS, &done, None);
}
