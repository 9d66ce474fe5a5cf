//! The recipient-domain stage, keyed by recipient domain or its provider
//! group: ISP backoff after throttling deferrals, per (sender domain,
//! recipient domain) and per (tenant, recipient domain) windows.
//!
//! It is last: its budget is shared by every sender that writes to the
//! domain, so only intents that passed everything else spend it, and a
//! backoff is a temporary answer that should not mask a final one.

use super::keys;
use super::pipeline::{domain_of, Cx, Stage, StageError, StageKind, Verdict};
use super::feedback::is_throttle;
use super::windows::{self, WindowCheck};
use crate::model::*;
use crate::clock::Window;
use crate::policy::spec::LimitClass;
use crate::policy::{BreachAction, EffectivePolicy, Limit, LimitKey, LimitScope};
use crate::state::{Backoff, StateValue};

pub struct RecipientDomainStage;

/// How a group reads in scopes: `provider:google` or `recipient_domain:corp.example`.
fn group_label(group: &str) -> String {
    if group.starts_with("provider:") {
        group.to_string()
    } else {
        format!("recipient_domain:{group}")
    }
}

/// The per-minute rate allowed to a group `now`, while its backoff (ended
/// at `until_ms`) ramps back up: the policy's start, doubling every quarter
/// of the ramp. None before the end or once the ramp is over.
pub fn ramp_per_minute(policy: &EffectivePolicy, until_ms: i64, now: i64) -> Option<u64> {
    let ramp = policy.backoff.ramp_ms;
    if ramp <= 0 || now < until_ms || now >= until_ms + ramp {
        return None;
    }
    let step = (ramp / 4).max(60_000);
    Some(policy.backoff.ramp_start_per_minute.saturating_mul(1 << ((now - until_ms) / step).min(16)))
}

/// Whether any recipient-domain window applies to an intent of `class` to
/// `recipient_domain`. Consumer mailbox providers are millions of
/// independent inboxes: a per-domain limit there protects nobody (their
/// backoff still applies).
pub fn limits_apply(policy: &EffectivePolicy, class: IntentClass, recipient_domain: &str) -> bool {
    !(policy.exclude_public_domains && policy.is_public(recipient_domain)) && policy.limits_at(class, &[LimitScope::RecipientDomain, LimitScope::TenantRecipientDomain]).next().is_some()
}

impl Stage for RecipientDomainStage {
    fn kind(&self) -> StageKind {
        StageKind::RecipientDomain
    }

    fn check(&self, cx: &mut Cx<'_, '_>, hop: &IntentHop) -> Result<Verdict, StageError> {
        let i = &hop.intent;
        let group = cx.env.route_key.clone().unwrap_or_else(|| domain_of(&i.recipient).to_string());
        let sd = domain_of(&i.sender);
        let rd = domain_of(&i.recipient);
        let policy = cx.book.effective(&i.tenant, sd, &i.sender, Some(rd));
        let v = policy.version;

        let mut checks = Vec::new();
        if let Some(StateValue::Backoff(b)) = cx.view.get(&keys::backoff(sd, &group))? {
            cx.note(&i.intent_id, "isp_backoff", if b.until_ms > cx.now { "denied" } else { "pass" }, || format!("{group}: {} throttles in a row, backing off until {}", b.consecutive, crate::clock::format_ms(b.until_ms)));
            if b.until_ms > cx.now {
                return Ok(Verdict::Deny { status: DecisionStatus::Deferred, reason: "isp_backoff".into(), retry_at_ms: Some(b.until_ms), usage: Vec::new(), version: v });
            }
            // Back from a backoff: the rate steps up again, a minute's
            // window at a time, rather than everything deferred at once.
            if let Some(max) = ramp_per_minute(&policy, b.until_ms, cx.now) {
                let limit = Limit { key: LimitKey { scope: LimitScope::RecipientDomain, class: LimitClass::All, window: Window::Minute }, max, on_breach: BreachAction::Defer, replies: false, smooth: None };
                checks.push(WindowCheck::load(cx, chrono_tz::UTC, &limit, format!("sender_domain:{sd}/{}", group_label(&group)), "ramp", max, "isp_backoff_ramp")?);
            }
        }

        if limits_apply(&policy, i.class, rd) {
            // Shared windows follow the zone of their owner: the sender
            // domain's, or the tenant's.
            let sd_tz = cx.book.effective(&i.tenant, sd, "", None).tz;
            let tenant_tz = cx.book.effective(&i.tenant, "", "", None).tz;
            for limit in policy.limits_at(i.class, &[LimitScope::RecipientDomain, LimitScope::TenantRecipientDomain]) {
                let (scope, tz) = match limit.key.scope {
                    LimitScope::RecipientDomain => (format!("sender_domain:{sd}/{}", group_label(&group)), sd_tz),
                    _ => (format!("tenant:{}/{}", i.tenant, group_label(&group)), tenant_tz),
                };
                checks.push(WindowCheck::load(cx, tz, limit, scope, limit.key.class.as_str(), limit.max, limit.key.window.breach_reason())?);
            }
        }
        windows::note(cx, &i.intent_id, &checks, false);
        if let Some((status, reason, retry_at_ms)) = windows::judge(&checks, hop.approved, |end, len| super::retry::after_window(&policy, i, end, len)) {
            let usage = checks.iter().map(WindowCheck::usage).collect();
            return Ok(Verdict::Deny { status, reason: reason.into(), retry_at_ms, usage, version: v });
        }
        let undo = windows::reserve(cx, &mut checks, &policy, &i.tenant, &i.intent_id);
        Ok(Verdict::Pass { undo, usage: checks.iter().map(WindowCheck::usage).collect(), version: v })
    }

    fn on_delivery(&self, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent) -> Result<(), StageError> {
        let group = cx.env.route_key.clone().unwrap_or_else(|| domain_of(&ev.recipient).to_string());
        let sd = domain_of(&ev.sender);
        let policy = cx.book.effective(&ev.tenant, sd, &ev.sender, Some(domain_of(&ev.recipient)));
        let key = keys::backoff(sd, &group);
        let scope = format!("sender_domain:{sd}/{}", group_label(&group));
        let current = match cx.view.get(&key)? {
            Some(StateValue::Backoff(b)) => Some(b),
            _ => None,
        };
        if ev.kind == DeliveryKind::Delivered {
            // A successful delivery means the provider accepts mail again
            // (once the backoff is over, its ramp runs its course).
            if current.is_some_and(|b| b.until_ms > cx.now) {
                cx.view.delete(&key);
                cx.alert(&ev.tenant, &scope, "isp_backoff_cleared", format!("{scope}: a delivery succeeded; backoff reset"), &[]);
            }
            return Ok(());
        }
        if !is_throttle(ev, &policy) {
            return Ok(());
        }
        let b = &policy.backoff;
        let consecutive = current.map(|c| c.consecutive).unwrap_or(0).saturating_add(1);
        // 60 s, 120 s, 240 s ... up to the ceiling.
        let delay = b.initial_ms.saturating_mul(1i64 << (consecutive - 1).clamp(0, 30)).min(b.max_ms);
        // At least as long as the provider asked (Retry-After).
        let delay = delay.max(ev.retry_after_seconds.unwrap_or(0) as i64 * 1_000);
        let state = Backoff { consecutive, until_ms: cx.now + delay, last_ms: cx.now };
        cx.view.put(&key, StateValue::Backoff(state));
        // With no news for a whole ceiling after it ends, the sequence is over.
        // (and not before its ramp is over).
        cx.expire_at(state.until_ms + b.max_ms.max(b.ramp_ms), &key, Some(state.last_ms));
        let code = ev.smtp_code.map(|c| c.to_string()).unwrap_or_default();
        let details = [("consecutive", consecutive.to_string()), ("backoff_ms", delay.to_string()), ("until_ms", state.until_ms.to_string()), ("smtp_code", code.clone())];
        if consecutive == 1 {
            cx.alert(&ev.tenant, &scope, "isp_throttling", format!("{scope}: throttled ({code} {}); backing off {} s", ev.enhanced_code.as_deref().unwrap_or(""), delay / 1000), &details);
        } else if consecutive as u32 == b.escalate_after {
            cx.alert(&ev.tenant, &scope, "isp_backoff_escalated", format!("{scope}: {consecutive} throttles in a row; backing off {} s", delay / 1000), &details);
        }
        Ok(())
    }
}
