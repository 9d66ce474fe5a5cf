//! Trust ladders: a new mailbox, a new sender domain and a new recipient
//! start in a supervised step with tight caps, and step up on their own
//! when the sends at a step are enough, old enough and healthy; bad signals
//! step them back down. Each step up or down is an alert
//! (`trust_step_up`, `trust_step_down`), and `audit explain` shows the step
//! an intent was decided at.
//!
//! The ladders live at the sender stage, where every outcome comes back and
//! the bounces and complaints arrive: a mailbox's and a domain's ladder
//! belong to them as their signal budgets do; a recipient's belongs to the
//! tenant's relationship with that address from this sender domain (a first
//! contact is new to the tenant, whoever else wrote to it). A step's caps
//! are windows (an hour, a day) judged with the other sender windows; its
//! counts are the sends allowed and the bad events since the step began.
//! All of it is derived from the log: step changes happen at the record
//! that makes them due, so a replay meets them at the same point.

use super::keys;
use super::pipeline::Cx;
use super::windows::WindowCheck;
use crate::clock::Window;
use crate::model::*;
use crate::policy::resolve::Ladder;
use crate::policy::spec::LimitClass;
use crate::policy::{BreachAction, EffectivePolicy, Limit, LimitKey, LimitScope};
use crate::state::{StateValue, StoreError, TrustState};

/// A subject's ladder state is dropped this long after its last send (it
/// is new again), pushed back at most once a day: a recipient's after 90
/// days, a mailbox's or a domain's after 180.
const RECIPIENT_KEEP_MS: i64 = 90 * DAY_MS;
const SENDER_KEEP_MS: i64 = 180 * DAY_MS;
const DAY_MS: i64 = 86_400_000;
/// A step is judged for a step down once it has this many sends (or
/// `demote_after_events`, if more): bounces that come in just after a step
/// up belong to sends of the step before, and one or two of them over a
/// handful of sends say little.
const DEMOTE_MIN_SENDS: i64 = 5;

/// One subject of an intent on a ladder.
pub struct Subject<'p> {
    /// `mailbox:A`, `sender_domain:D` or `recipient:A`.
    pub name: String,
    pub key: Vec<u8>,
    pub ladder: &'p Ladder,
    pub tz: chrono_tz::Tz,
    /// How long after its last send its state is kept.
    pub keep_ms: i64,
}

/// The subjects of a send on the ladders in force: the mailbox's under its
/// policy, the domain's under the domain's, the recipient's under the
/// mailbox's.
pub fn subjects<'p>(tenant: &str, sender: &str, domain: &str, recipient: &str, policy: &'p EffectivePolicy, domain_policy: &'p EffectivePolicy) -> Vec<Subject<'p>> {
    let mut out = Vec::new();
    if let Some(l) = &policy.trust.mailbox {
        let name = format!("mailbox:{sender}");
        out.push(Subject { key: keys::trust(&name), name, ladder: l, tz: policy.tz, keep_ms: SENDER_KEEP_MS });
    }
    if let Some(l) = &domain_policy.trust.sender_domain {
        let name = format!("sender_domain:{domain}");
        out.push(Subject { key: keys::trust(&name), name, ladder: l, tz: domain_policy.tz, keep_ms: SENDER_KEEP_MS });
    }
    if let Some(l) = &policy.trust.recipient {
        // A tenant's own: its key names the tenant.
        let name = format!("recipient:{recipient}");
        out.push(Subject { key: keys::trust(&format!("recipient:{}:{tenant}/{recipient}", tenant.len())), name, ladder: l, tz: policy.tz, keep_ms: RECIPIENT_KEEP_MS });
    }
    out
}

/// A subject's state; a subject never seen is at the first step from now
/// (nothing is written until it sends).
pub fn load(cx: &Cx<'_, '_>, key: &[u8], ladder: &Ladder) -> Result<(TrustState, bool), StoreError> {
    Ok(match cx.view.get(key)? {
        // A ladder shortened since: its last step.
        Some(StateValue::Trust(t)) => (TrustState { step: t.step.clamp(0, ladder.steps.len() as i32 - 1), ..t }, true),
        _ => (TrustState { step: 0, since_ms: cx.now, sends: 0, hard_bounces: 0, complaints: 0, touched_ms: cx.now }, false),
    })
}

fn step_name(l: &Ladder, step: i32) -> &str {
    l.steps.get(step as usize).map(|s| s.0.as_str()).unwrap_or("?")
}

fn rate(n: i64, sends: i64) -> f64 {
    if sends <= 0 {
        if n > 0 { 1.0 } else { 0.0 }
    } else {
        n as f64 / sends as f64
    }
}

fn healthy(l: &Ladder, t: &TrustState) -> bool {
    rate(t.hard_bounces, t.sends) <= l.max_hard_bounce_rate && rate(t.complaints, t.sends) <= l.max_complaint_rate
}

/// Steps a subject up if its step is done: enough sends, long enough, healthy.
fn advance(cx: &mut Cx<'_, '_>, tenant: &str, s: &Subject<'_>, t: &mut TrustState) -> bool {
    let last = s.ladder.steps.len() as i32 - 1;
    if t.step >= last || (t.sends as u64) < s.ladder.advance_after_sends || cx.now - t.since_ms < s.ladder.advance_after_ms || !healthy(s.ladder, t) {
        return false;
    }
    let from = step_name(s.ladder, t.step).to_string();
    let done = *t;
    *t = TrustState { step: t.step + 1, since_ms: cx.now, sends: 0, hard_bounces: 0, complaints: 0, touched_ms: t.touched_ms };
    let to = step_name(s.ladder, t.step).to_string();
    cx.alert(
        tenant,
        &s.name,
        "trust_step_up",
        format!("{} stepped up from {from} to {to}: {} sends over {} h with {} hard bounce(s) and {} complaint(s)", s.name, done.sends, (cx.now - done.since_ms) / 3_600_000, done.hard_bounces, done.complaints),
        &[("from", from), ("to", to), ("sends", done.sends.to_string()), ("hard_bounces", done.hard_bounces.to_string()), ("complaints", done.complaints.to_string())],
    );
    true
}

fn save(cx: &mut Cx<'_, '_>, s: &Subject<'_>, mut t: TrustState, known: bool) {
    // The state goes `keep_ms` after its last send: the expiry entry is
    // renewed at most once a day (its stamp is the renewal's time).
    if !known || cx.now - t.touched_ms >= DAY_MS {
        t.touched_ms = cx.now;
        cx.expire_at(cx.now + s.keep_ms, &s.key, Some(cx.now));
    }
    cx.view.put(&s.key, StateValue::Trust(t));
}

/// The caps of each subject's step, as window checks beside the others
/// (stepping a subject up first if its step is done); notes the step of
/// each for `audit explain`.
pub fn checks(cx: &mut Cx<'_, '_>, intent: &SendIntent, subjects: &[Subject<'_>], halve: impl Fn(u64) -> u64) -> Result<Vec<WindowCheck>, StoreError> {
    let mut out = Vec::new();
    for s in subjects {
        let (mut t, known) = load(cx, &s.key, s.ladder)?;
        if known && advance(cx, &intent.tenant, s, &mut t) {
            save(cx, s, t, known);
        }
        let (name, hour, day) = s.ladder.steps.get(t.step as usize).cloned().unwrap_or_default();
        cx.note(&intent.intent_id, "trust", "pass", || {
            let caps: Vec<String> = [("hour", hour), ("day", day)].iter().filter_map(|(w, m)| m.map(|m| format!("{w} {m}"))).collect();
            format!(
                "{} at step {name} ({} of {}) since {}: {} sends, {} hard bounce(s), {} complaint(s) at this step; caps {}",
                s.name,
                t.step + 1,
                s.ladder.steps.len(),
                crate::clock::format_ms(t.since_ms),
                t.sends,
                t.hard_bounces,
                t.complaints,
                if caps.is_empty() { "none".to_string() } else { caps.join(", ") }
            )
        });
        for (window, max) in [(Window::Hour, hour), (Window::Day, day)] {
            let Some(max) = max else { continue };
            let limit = Limit { key: LimitKey { scope: LimitScope::Mailbox, class: LimitClass::of(intent.class), window }, max, on_breach: BreachAction::Defer, replies: false, smooth: None };
            out.push(WindowCheck::load(cx, s.tz, &limit, format!("trust:{}", s.key_scope()), "all", halve(max), "trust_step_limit")?);
        }
    }
    Ok(out)
}

impl Subject<'_> {
    /// The scope its step's counters are kept under (a recipient's names its tenant).
    fn key_scope(&self) -> String {
        String::from_utf8_lossy(self.key.strip_prefix(b"trust/").unwrap_or(&self.key)).into_owned()
    }
}

/// An allowed send counts at each subject's step, which may then be done.
pub fn on_allowed(cx: &mut Cx<'_, '_>, tenant: &str, subjects: &[Subject<'_>]) -> Result<(), StoreError> {
    for s in subjects {
        let (mut t, known) = load(cx, &s.key, s.ladder)?;
        t.sends += 1;
        advance(cx, tenant, s, &mut t);
        save(cx, s, t, known);
    }
    Ok(())
}

/// A hard bounce (or rejection) or a complaint counts against each subject
/// that has sent; over the ladder's rates, with enough bad events, it steps
/// down one step and starts that step afresh.
pub fn on_bad(cx: &mut Cx<'_, '_>, tenant: &str, subjects: &[Subject<'_>], complaint: bool) -> Result<(), StoreError> {
    for s in subjects {
        let (mut t, known) = load(cx, &s.key, s.ladder)?;
        if !known {
            continue;
        }
        if complaint {
            t.complaints += 1;
        } else {
            t.hard_bounces += 1;
        }
        let bad = t.hard_bounces + t.complaints;
        let judged = t.sends >= DEMOTE_MIN_SENDS.max(i64::from(s.ladder.demote_after_events));
        if t.step > 0 && judged && bad >= i64::from(s.ladder.demote_after_events) && !healthy(s.ladder, &t) {
            let from = step_name(s.ladder, t.step).to_string();
            let was = t;
            t = TrustState { step: t.step - 1, since_ms: cx.now, sends: 0, hard_bounces: 0, complaints: 0, touched_ms: t.touched_ms };
            let to = step_name(s.ladder, t.step).to_string();
            cx.alert(
                tenant,
                &s.name,
                "trust_step_down",
                format!("{} stepped down from {from} to {to}: {} hard bounce(s) and {} complaint(s) in {} sends at {from}", s.name, was.hard_bounces, was.complaints, was.sends),
                &[("from", from), ("to", to), ("sends", was.sends.to_string()), ("hard_bounces", was.hard_bounces.to_string()), ("complaints", was.complaints.to_string())],
            );
        }
        save(cx, s, t, known);
    }
    Ok(())
}
