//! `GET /v1/usage`: used, limit and remaining per window of a scope, with
//! the numbers the next decision would use (warm-up caps, and the slow
//! tier's halving, included), the signal tiers and any pause.

use super::LiveState;
use crate::clock::{window_end, window_start, Window};
use crate::model::*;
use crate::policy::{LimitScope, PolicyBook, Scope};
use crate::stage::driver::partition_for;
use crate::stage::pipeline::{self, domain_of};
use crate::stage::signals::{self, Tier};
use crate::stage::sender::{warmup_caps, warmup_start};
use crate::stage::{keys, StageKind};
use crate::state::{CopyOnWrite, StageStore, StateValue};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowUsage {
    pub scope: String,
    pub class: &'static str,
    pub window: &'static str,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    pub resets_at_ms: i64,
}

#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SignalsOut {
    pub window_hours: u32,
    pub sends: i64,
    pub hard_bounces: i64,
    pub complaints: i64,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
    pub bounce_tier: String,
    pub complaint_tier: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageOut {
    pub scope: String,
    pub policy_version: i64,
    pub windows: Vec<WindowUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
}

/// The tenant that owns a sender domain, from the committed policies of the
/// sender stage partition that keeps it.
pub fn owner_of(live: &LiveState, domain: &str) -> Result<Option<String>, String> {
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::Sender].clone())));
    let view = store.view(partition_for(domain, live.partitions));
    let mut book = PolicyBook::default();
    pipeline::load_policies(&view, &mut book).map_err(|e| e.to_string())?;
    Ok(book.owner_of(domain).map(str::to_string))
}

pub fn usage(live: &LiveState, scope: &Scope, tenant: &str, now_ms: i64) -> Result<UsageOut, String> {
    let (kind, key, domain, mailbox) = match scope {
        Scope::Mailbox(m) => (StageKind::Sender, domain_of(m).to_string(), domain_of(m).to_string(), m.clone()),
        Scope::SenderDomain(d) => (StageKind::Sender, d.clone(), d.clone(), String::new()),
        Scope::Tenant(t) => (StageKind::Tenant, t.clone(), String::new(), String::new()),
        other => return Err(format!("usage is kept for mailbox:, sender_domain: and tenant: scopes, not {other}")),
    };
    let tenant = if let Scope::Tenant(t) = scope { t.as_str() } else { tenant };
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&kind].clone())));
    let view = store.view(partition_for(&key, live.partitions));
    let mut book = PolicyBook::default();
    pipeline::load_policies(&view, &mut book).map_err(|e| e.to_string())?;
    let policy = book.effective(tenant, &domain, &mailbox, None);
    let get = |k: &[u8]| view.get(k).map_err(|e| e.to_string());

    let mut tier = Tier::Healthy;
    let mut signals_out = None;
    let mut paused = None;
    if !domain.is_empty() {
        let ring = signals::load(&view, &domain).map_err(|e| e.to_string())?;
        let rates = signals::totals(&ring, now_ms, policy.signals.window_hours);
        let (bt, ct) = signals::tiers(&rates, &policy.signals);
        tier = bt.max(ct);
        signals_out = Some(SignalsOut {
            window_hours: policy.signals.window_hours,
            sends: rates.sends,
            hard_bounces: rates.hard_bounces,
            complaints: rates.complaints,
            bounce_rate: rates.bounce_rate(),
            complaint_rate: rates.complaint_rate(),
            bounce_tier: bt.as_str().to_string(),
            complaint_tier: ct.as_str().to_string(),
        });
        for s in [format!("sender_domain:{domain}"), format!("mailbox:{mailbox}")] {
            if let Some(StateValue::Pause(p)) = get(&keys::pause(&s))? {
                paused = Some(format!("{s} paused since {} by {} ({})", crate::clock::format_ms(p.since_ms), p.by, p.reason));
            }
        }
    }
    let (scope_kind, label) = match scope {
        Scope::Mailbox(m) => (LimitScope::Mailbox, format!("mailbox:{m}")),
        Scope::SenderDomain(d) => (LimitScope::SenderDomain, format!("sender_domain:{d}")),
        _ => (LimitScope::Tenant, format!("tenant:{tenant}")),
    };
    let mut windows = Vec::new();
    for class in [IntentClass::Outbound, IntentClass::Transactional] {
        for limit in policy.limits_for(class).filter(|l| l.key.scope == scope_kind) {
            let w: Window = limit.key.window;
            let max = if kind == StageKind::Sender && tier >= Tier::Slow && limit.max > 0 { (limit.max / 2).max(1) } else { limit.max } as i64;
            let used = view.get_counter(&keys::counter(&label, class.as_str(), w.as_str()), window_start(w, policy.tz, now_ms)).map_err(|e| e.to_string())?.count;
            windows.push(WindowUsage { scope: label.clone(), class: class.as_str(), window: w.as_str(), used, limit: max, remaining: (max - used).max(0), resets_at_ms: window_end(w, policy.tz, now_ms) });
        }
    }
    // A sender domain in warm-up: its caps bind beside the policy's limits,
    // halved in the slow tier like them (the sender stage's rule).
    if kind == StageKind::Sender {
        let domain_policy = book.effective(tenant, &domain, "", None);
        if domain_policy.warmup.is_some() {
            let first_seen = view.get_time(&keys::first_seen(&domain)).map_err(|e| e.to_string())?;
            // Not seen yet: the next intent starts the schedule.
            let start = warmup_start(&domain_policy, first_seen).unwrap_or(now_ms);
            let label = format!("warmup:sender_domain:{domain}");
            for (w, cap) in warmup_caps(&domain_policy, start, now_ms) {
                let max = if tier >= Tier::Slow { (cap / 2).max(1) } else { cap } as i64;
                let used = view.get_counter(&keys::counter(&label, "all", w.as_str()), window_start(w, domain_policy.tz, now_ms)).map_err(|e| e.to_string())?.count;
                windows.push(WindowUsage { scope: label.clone(), class: "all", window: w.as_str(), used, limit: max, remaining: (max - used).max(0), resets_at_ms: window_end(w, domain_policy.tz, now_ms) });
            }
        }
    }
    Ok(UsageOut { scope: label, policy_version: policy.version, windows, signals: signals_out, paused })
}

