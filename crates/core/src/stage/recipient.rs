//! The recipient stage, keyed by recipient address: suppression (hard
//! bounce, complaint, unsubscribe), allow and block lists, content dedupe,
//! cooldown per template and per-recipient windows.
//!
//! It comes before the recipient-domain stage so that final answers
//! (suppressed, listed, duplicate) are given before temporary ones, and a
//! runaway loop to one address is stopped before it spends the shared
//! recipient-domain budget.

use super::keys;
use super::pipeline::{domain_of, recipient_group, Cx, Stage, StageError, StageKind, Verdict};
use super::feedback::is_throttle;
use super::windows::{self, WindowCheck};
use crate::model::*;
use crate::policy::LimitScope;
use crate::state::{Entry, Mark, StateValue, StoreError};

pub struct RecipientStage;

/// Suppression kinds, strongest first. An unsubscribe stops cold outbound
/// only; a hard bounce or a complaint stops everything.
const SUPPRESSION_RANK: [&str; 5] = ["hard_bounce", "complaint", "isp_feedback", "operator", "unsubscribe"];

fn rank(kind: &str) -> usize {
    SUPPRESSION_RANK.iter().position(|k| *k == kind).unwrap_or(SUPPRESSION_RANK.len())
}

/// The list entry that applies to an address: the address itself, then its
/// domain and parent domains, then its TLD. The most specific match wins.
pub fn list_match(cx: &Cx<'_, '_>, tenant: &str, address: &str) -> Result<Option<Entry>, StoreError> {
    let mut candidates = vec![address.to_string()];
    let mut d = domain_of(address);
    loop {
        candidates.push(d.to_string());
        match d.split_once('.') {
            Some((_, parent)) => d = parent,
            None => break,
        }
    }
    // The last candidate is the bare TLD; lists write it with a leading dot.
    if let Some(tld) = candidates.pop() {
        candidates.push(format!(".{tld}"));
    }
    for c in candidates {
        if let Some(StateValue::Entry(e)) = cx.view.get(&keys::list_entry(tenant, &c))? {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

impl RecipientStage {
    fn deny(status: DecisionStatus, reason: &str, retry_at_ms: Option<i64>, version: i64) -> Verdict {
        Verdict::Deny { status, reason: reason.into(), retry_at_ms, usage: Vec::new(), version }
    }
}

impl Stage for RecipientStage {
    fn kind(&self) -> StageKind {
        StageKind::Recipient
    }

    fn check(&self, cx: &mut Cx<'_, '_>, hop: &IntentHop) -> Result<Verdict, StageError> {
        let i = &hop.intent;
        let policy = cx.book.effective(&i.tenant, domain_of(&i.sender), &i.sender, Some(domain_of(&i.recipient)));
        let v = policy.version;

        if let Some(StateValue::Entry(s)) = cx.view.get(&keys::suppression(&i.tenant, &i.recipient))? {
            cx.note(&i.intent_id, "suppression", if s.kind != "unsubscribe" || i.class == IntentClass::Outbound { "denied" } else { "pass" }, || format!("{} suppressed ({}) since {} by {}", i.recipient, s.kind, crate::clock::format_ms(s.since_ms), s.by));
            if s.kind != "unsubscribe" || i.class == IntentClass::Outbound {
                return Ok(Self::deny(DecisionStatus::Blocked, "recipient_suppressed", None, v));
            }
        }
        let listed = list_match(cx, &i.tenant, &i.recipient)?;
        if let Some(e) = &listed {
            cx.note(&i.intent_id, "list", if e.kind == "block" { "denied" } else { "pass" }, || format!("{} list entry since {} by {}", e.kind, crate::clock::format_ms(e.since_ms), e.by));
        }
        match listed {
            Some(e) if e.kind == "block" => return Ok(Self::deny(DecisionStatus::Blocked, "blocked_by_list", None, v)),
            Some(_) => {}
            None if policy.recipients.allow_list_only => return Ok(Self::deny(DecisionStatus::Blocked, "not_on_allow_list", None, v)),
            None => {}
        }

        let rules = policy.recipients;
        let dedupe_key = i.content_hash.as_deref().filter(|_| rules.dedupe_ms > 0).map(|h| keys::content_seen(&i.tenant, &i.recipient, h));
        if let Some(key) = &dedupe_key {
            if let Some(StateValue::Mark(m)) = cx.view.get(key)? {
                cx.note(&i.intent_id, "content_dedupe", if m.at_ms + rules.dedupe_ms > cx.now && m.intent_id != i.intent_id { "denied" } else { "pass" }, || format!("same content sent by {} at {}", m.intent_id, crate::clock::format_ms(m.at_ms)));
                if m.at_ms + rules.dedupe_ms > cx.now && m.intent_id != i.intent_id {
                    return Ok(Self::deny(DecisionStatus::Blocked, "duplicate_content", None, v));
                }
            }
        }
        let cooldown_key = i.template_id.as_deref().filter(|_| rules.cooldown_ms > 0).map(|t| keys::cooldown(&i.tenant, &i.recipient, t));
        if let Some(key) = &cooldown_key {
            if let Some(StateValue::Mark(m)) = cx.view.get(key)? {
                cx.note(&i.intent_id, "cooldown", if m.at_ms + rules.cooldown_ms > cx.now { "denied" } else { "pass" }, || format!("template last sent by {} at {}, cooldown {} min", m.intent_id, crate::clock::format_ms(m.at_ms), rules.cooldown_ms / 60_000));
                if m.at_ms + rules.cooldown_ms > cx.now {
                    return Ok(Self::deny(DecisionStatus::Deferred, "recipient_cooldown", Some(m.at_ms + rules.cooldown_ms), v));
                }
            }
        }

        // Per-recipient windows belong to the tenant: its zone.
        let tz = cx.book.effective(&i.tenant, "", "", None).tz;
        let mut checks = Vec::new();
        for limit in policy.limits_at(i.class, &[LimitScope::Recipient]) {
            let scope = format!("tenant:{}/recipient:{}", i.tenant, i.recipient);
            checks.push(WindowCheck::load(cx, tz, limit, scope, limit.key.class.as_str(), limit.max, limit.key.window.breach_reason())?);
        }
        windows::note(cx, &i.intent_id, &checks, false);
        if let Some((status, reason, retry_at_ms)) = windows::judge(&checks, hop.approved, |end, len| super::retry::after_window(&policy, i, end, len)) {
            let usage = checks.iter().map(WindowCheck::usage).collect();
            return Ok(Verdict::Deny { status, reason: reason.into(), retry_at_ms, usage, version: v });
        }
        let mut undo = windows::reserve(cx, &mut checks, &policy, &i.tenant, &i.intent_id);
        for (key, period) in [(dedupe_key, rules.dedupe_ms), (cooldown_key, rules.cooldown_ms)] {
            let Some(key) = key else { continue };
            cx.view.put(&key, StateValue::Mark(Mark { at_ms: cx.now, intent_id: i.intent_id.clone() }));
            cx.expire_at(cx.now + period, &key, Some(cx.now));
            undo.push(Undo { key: String::from_utf8_lossy(&key).into_owned(), kind: UndoKind::Mark, bucket_start_ms: 0, limit: 0 });
        }
        Ok(Verdict::Pass { undo, usage: checks.iter().map(WindowCheck::usage).collect(), version: v })
    }

    fn on_delivery(&self, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent) -> Result<(), StageError> {
        let sd = domain_of(&ev.sender);
        let policy = cx.book.effective(&ev.tenant, sd, &ev.sender, Some(domain_of(&ev.recipient)));
        let kind = match ev.kind {
            DeliveryKind::BounceHard => Some("hard_bounce"),
            DeliveryKind::Complaint => Some("complaint"),
            DeliveryKind::Unsubscribe => Some("unsubscribe"),
            // A rule may read a soft bounce or a rejection as "this address
            // is gone" (a 5.1.1 from an ESP's API, say).
            _ if super::feedback::action_of(&policy, ev) == Some(super::feedback::FeedbackAction::SuppressRecipient) => Some("isp_feedback"),
            _ => None,
        };
        if let Some(kind) = kind {
            let key = keys::suppression(&ev.tenant, &ev.recipient);
            let stronger = match cx.view.get(&key)? {
                Some(StateValue::Entry(old)) => rank(kind) < rank(&old.kind),
                _ => true,
            };
            if stronger {
                let reason = ev.enhanced_code.clone().or(ev.smtp_code.map(|c| c.to_string())).unwrap_or_default();
                cx.view.put(&key, StateValue::Entry(Entry { kind: kind.into(), reason, since_ms: cx.now, by: ev.event_id.clone(), until_ms: None }));
            }
            return Ok(());
        }
        // Throttles and deliveries drive the recipient domain's backoff: pass
        // them on, keyed by the domain's provider group.
        if ev.kind == DeliveryKind::Delivered || is_throttle(ev, &policy) {
            let key = recipient_group(cx.book, &ev.tenant, &ev.sender, &ev.recipient);
            let ev = ev.clone();
            cx.forward(StageKind::RecipientDomain, key, Payload::Delivery(ev));
        }
        Ok(())
    }

    fn on_command(&self, cx: &mut Cx<'_, '_>, cmd: &Command) -> Result<(), StageError> {
        let list = cmd.list.as_deref().unwrap_or("");
        let key = match list {
            "suppression" => keys::suppression(&cmd.tenant, &cmd.target),
            "allow" | "block" => keys::list_entry(&cmd.tenant, &cmd.target),
            other => return Err(StageError::BadRecord(format!("list {other:?} is unknown; use allow, block or suppression"))),
        };
        match cmd.kind {
            CommandKind::AddListEntry => {
                let kind = if list == "suppression" { "operator" } else { list };
                let by = cmd.operator.clone().unwrap_or_else(|| "operator".into());
                cx.view.put(&key, StateValue::Entry(Entry { kind: kind.into(), reason: cmd.reason.clone().unwrap_or_default(), since_ms: cx.now, by, until_ms: None }));
                Ok(())
            }
            CommandKind::RemoveListEntry => {
                cx.view.delete(&key);
                Ok(())
            }
            other => Err(StageError::BadRecord(format!("command {other:?} does not belong to the recipient stage"))),
        }
    }
}
