//! `GET /v1/usage`: used, limit and remaining per window of a scope, with
//! the numbers the next decision would use (warm-up caps, and the slow
//! tier's halving, included), the signal tiers and any pause.

use super::LiveState;
use crate::clock::{window_end, window_start, Window};
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

impl SignalsOut {
    pub fn new(rates: &signals::Rates, bounce_tier: Tier, complaint_tier: Tier, window_hours: u32) -> SignalsOut {
        SignalsOut {
            window_hours,
            sends: rates.sends,
            hard_bounces: rates.hard_bounces,
            complaints: rates.complaints,
            bounce_rate: rates.bounce_rate(),
            complaint_rate: rates.complaint_rate(),
            bounce_tier: bounce_tier.as_str().to_string(),
            complaint_tier: complaint_tier.as_str().to_string(),
        }
    }
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
    /// Recipient domains: intents from the sender domain to the group are
    /// DEFERRED until then (an ISP backoff after throttling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_until_ms: Option<i64>,
    /// Recipient domains: a public mailbox provider, whose per-domain
    /// limits do not apply (`exclude_public_domains`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub public_provider: bool,
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
        // The sender stage's rule: the domain's signals under the domain's
        // policy, a mailbox's own under its policy, the worse tier binding.
        // A mailbox's usage shows its own signals.
        let domain_policy = book.effective(tenant, &domain, "", None);
        let mut rings = vec![(keys::signals(&domain), domain_policy.signals)];
        if !mailbox.is_empty() && policy.signals.per_mailbox {
            rings.push((keys::mailbox_signals(&mailbox), policy.signals));
        }
        for (key, sig) in rings {
            let ring = signals::load_key(&view, &key).map_err(|e| e.to_string())?;
            let rates = signals::totals(&ring, now_ms, sig.window_hours);
            let (bt, ct) = signals::tiers(&rates, &sig);
            tier = tier.max(bt.max(ct));
            signals_out = Some(SignalsOut::new(&rates, bt, ct, sig.window_hours));
        }
        for s in [format!("sender_domain:{domain}"), format!("mailbox:{mailbox}")] {
            if let Some(StateValue::Pause(p)) = get(&keys::pause(&s))? {
                paused = Some(format!("{s} paused since {} by {} ({})", crate::clock::format_ms(p.since_ms), p.by, p.reason));
            } else if let Some(StateValue::Clock(until)) = get(&keys::day_pause(&s))?.filter(|v| matches!(v, StateValue::Clock(u) if *u > now_ms)) {
                paused = Some(format!("{s} paused for the rest of the day by today's rates, until {}", crate::clock::format_ms(until)));
            }
        }
    }
    let (scope_kind, label) = match scope {
        Scope::Mailbox(m) => (LimitScope::Mailbox, format!("mailbox:{m}")),
        Scope::SenderDomain(d) => (LimitScope::SenderDomain, format!("sender_domain:{d}")),
        _ => (LimitScope::Tenant, format!("tenant:{tenant}")),
    };
    let mut windows = Vec::new();
    for limit in policy.limits.iter().filter(|l| l.key.scope == scope_kind) {
        let max = if kind == StageKind::Sender && tier >= Tier::Slow && limit.max > 0 { (limit.max / 2).max(1) } else { limit.max } as i64;
        let (used, resets_at_ms) = window_used(&view, &label, limit, policy.tz, now_ms)?;
        // A smoothed limit's room is its burst.
        let max = limit.smooth.map(|b| b as i64).unwrap_or(max);
        windows.push(WindowUsage { scope: label.clone(), class: limit.key.class.as_str(), window: limit.key.window.as_str(), used, limit: max, remaining: (max - used).max(0), resets_at_ms });
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
            let (shift, _) = crate::stage::sender::domain_engagement_shift(&view, &domain_policy, &domain, now_ms).map_err(|e| e.to_string())?;
            for (w, cap) in warmup_caps(&domain_policy, start, now_ms, shift) {
                let max = if tier >= Tier::Slow { (cap / 2).max(1) } else { cap } as i64;
                let used = view.get_counter(&keys::counter(&label, "all", w.as_str()), window_start(w, domain_policy.tz, now_ms)).map_err(|e| e.to_string())?.count;
                windows.push(WindowUsage { scope: label.clone(), class: "all", window: w.as_str(), used, limit: max, remaining: (max - used).max(0), resets_at_ms: window_end(w, domain_policy.tz, now_ms) });
            }
        }
    }
    Ok(UsageOut { scope: label, policy_version: policy.version, windows, signals: signals_out, paused, backoff_until_ms: None, public_provider: false })
}

/// The policies, from a partition this instance serves (every partition of
/// every stage has them all); the defaults when it serves none.
pub fn any_book(live: &LiveState) -> PolicyBook {
    let mut book = PolicyBook::default();
    if let Some((kind, p)) = StageKind::ALL.iter().find_map(|k| live.served(*k).first().map(|p| (*k, *p))) {
        let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&kind].clone())));
        if pipeline::load_policies(&store.view(p), &mut book).is_err() {
            return PolicyBook::default();
        }
    }
    book
}

/// A recipient-side scope of `GET /v1/usage`.
pub enum RecipientScope {
    /// `recipient:ADDRESS`, kept per tenant by the recipient stage.
    Recipient(String),
    /// `recipient_domain:DOMAIN`, kept per sender domain and per tenant
    /// (under the domain's provider group) by the recipient-domain stage.
    RecipientDomain(String),
}

impl RecipientScope {
    /// The stage and partition that keep it; `book` names the provider
    /// group (policies are the same in every partition).
    pub fn place(&self, book: &mut PolicyBook, tenant: &str, sender: &str, partitions: i32) -> (StageKind, i32) {
        match self {
            RecipientScope::Recipient(r) => (StageKind::Recipient, partition_for(r, partitions)),
            RecipientScope::RecipientDomain(d) => {
                let (sd, mailbox) = sender_parts(sender);
                (StageKind::RecipientDomain, partition_for(&book.effective(tenant, sd, mailbox, Some(d)).recipient_group(d), partitions))
            }
        }
    }
}

/// What a limit's window holds now, and when it next has room (a
/// calendar window: its end; a rolling one: when its oldest bucket leaves).
fn window_used(view: &crate::state::PartitionView<'_>, label: &str, limit: &crate::policy::Limit, tz: chrono_tz::Tz, now_ms: i64) -> Result<(i64, i64), String> {
    let w: Window = limit.key.window;
    let base = keys::counter(label, limit.key.class.as_str(), w.as_str());
    if let Some(burst) = limit.smooth {
        // A smoothed limit: how much of its burst is in use, and when one more fits.
        use crate::stage::windows::{smooth_interval, smooth_key, smooth_room, smooth_state};
        let interval = smooth_interval(w, tz, now_ms, limit.max);
        let state = smooth_state(view, &smooth_key(label, limit.key.class.as_str(), w), interval, now_ms).map_err(|e| e.to_string())?;
        return Ok(state.map(|c| smooth_room(&c, interval, burst, now_ms)).unwrap_or((0, now_ms)));
    }
    if w.is_rolling() {
        let buckets = crate::stage::windows::rolling_buckets(view, &base, now_ms).map_err(|e| e.to_string())?;
        let oldest = buckets.first().map(|b| b.0).unwrap_or_else(|| window_start(w, tz, now_ms));
        return Ok((buckets.iter().map(|b| b.1).sum(), oldest + crate::clock::ROLLING_BUCKETS * crate::clock::ROLLING_BUCKET_MS));
    }
    Ok((view.get_counter(&base, window_start(w, tz, now_ms)).map_err(|e| e.to_string())?.count, window_end(w, tz, now_ms)))
}

/// A sender given as an address or a domain: (domain, mailbox or "").
fn sender_parts(sender: &str) -> (&str, &str) {
    if sender.contains('@') {
        (domain_of(sender), sender)
    } else {
        (sender, "")
    }
}

/// The windows of a recipient or recipient domain under `tenant`'s policy
/// (and `sender`'s, an address or a domain, when given: a sender domain's
/// limits per recipient domain are counted per sender domain).
pub fn recipient_usage(live: &LiveState, scope: &RecipientScope, tenant: &str, sender: &str, now_ms: i64) -> Result<UsageOut, String> {
    let (sd, mailbox) = sender_parts(sender);
    let (kind, partition) = scope.place(&mut any_book(live), tenant, sender, live.partitions);
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&kind].clone())));
    let view = store.view(partition);
    let mut book = PolicyBook::default();
    pipeline::load_policies(&view, &mut book).map_err(|e| e.to_string())?;
    let tenant_tz = book.effective(tenant, "", "", None).tz;
    let counted = |label: &str, limit: &crate::policy::Limit, tz| -> Result<WindowUsage, String> {
        let (used, resets_at_ms) = window_used(&view, label, limit, tz, now_ms)?;
        let max = limit.smooth.unwrap_or(limit.max) as i64;
        Ok(WindowUsage { scope: label.to_string(), class: limit.key.class.as_str(), window: limit.key.window.as_str(), used, limit: max, remaining: (max - used).max(0), resets_at_ms })
    };
    let mut windows = Vec::new();
    match scope {
        RecipientScope::Recipient(r) => {
            let policy = book.effective(tenant, sd, mailbox, Some(domain_of(r)));
            let label = format!("tenant:{tenant}/recipient:{r}");
            for limit in policy.limits.iter().filter(|l| l.key.scope == LimitScope::Recipient) {
                windows.push(counted(&label, limit, tenant_tz)?);
            }
            Ok(UsageOut { scope: format!("recipient:{r}"), policy_version: policy.version, windows, signals: None, paused: None, backoff_until_ms: None, public_provider: false })
        }
        RecipientScope::RecipientDomain(d) => {
            let policy = book.effective(tenant, sd, mailbox, Some(d));
            let group = policy.recipient_group(d);
            let group_label = if group.starts_with("provider:") { group.clone() } else { format!("recipient_domain:{group}") };
            let public_provider = policy.exclude_public_domains && policy.is_public(d);
            if !public_provider {
                let sd_tz = book.effective(tenant, sd, "", None).tz;
                for limit in policy.limits.iter().filter(|l| matches!(l.key.scope, LimitScope::RecipientDomain | LimitScope::TenantRecipientDomain)) {
                    match limit.key.scope {
                        // Counted per sender domain: only with one.
                        LimitScope::RecipientDomain if sd.is_empty() => {}
                        LimitScope::RecipientDomain => windows.push(counted(&format!("sender_domain:{sd}/{group_label}"), limit, sd_tz)?),
                        _ => windows.push(counted(&format!("tenant:{tenant}/{group_label}"), limit, tenant_tz)?),
                    }
                }
            }
            let backoff_until_ms = match view.get(&keys::backoff(sd, &group)).map_err(|e| e.to_string())? {
                Some(StateValue::Backoff(b)) if !sd.is_empty() && b.until_ms > now_ms => Some(b.until_ms),
                _ => None,
            };
            Ok(UsageOut { scope: format!("recipient_domain:{d}"), policy_version: policy.version, windows, signals: None, paused: None, backoff_until_ms, public_provider })
        }
    }
}

