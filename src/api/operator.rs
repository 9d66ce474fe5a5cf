//! What an operator (or a tenant, for its own) acts on: intents held for
//! approval, paused senders, sender domains' signal tiers and warm-up, and
//! ISP backoffs, read from the stage partitions this instance serves, and the commands that act on them, published to the
//! commands topic like `sendgate command` does (the stages check them
//! again: a command is never trusted for being sent through the API).

use super::LiveState;
use crate::model::SendIntent;
use crate::stage::pipeline::{self, domain_of};
use crate::stage::{keys, StageKind};
use crate::state::{CopyOnWrite, StageStore, StateValue};
use serde::{Deserialize, Serialize};

/// Most rows one listing returns.
pub const LIST_MAX: usize = 1_000;

/// Every held intent of `tenant` (all tenants: None) in this instance's
/// partitions, up to `limit`; the earlier releases' keys too.
pub fn held(live: &LiveState, tenant: Option<&str>, limit: usize) -> Result<Vec<SendIntent>, String> {
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::Sender].clone())));
    let prefix = match tenant {
        // The tenant's own keys only: its length-prefixed name ends the prefix.
        Some(t) => keys::held_intent(t, ""),
        None => b"t-held/".to_vec(),
    };
    let mut out = Vec::new();
    for p in live.served(StageKind::Sender) {
        let view = store.view(p);
        for prefix in [prefix.as_slice(), b"held/".as_slice()] {
            for key in view.scan(prefix, limit.saturating_sub(out.len())).map_err(|e| e.to_string())? {
                if let Some(StateValue::Intent(bytes)) = view.get(&key).map_err(|e| e.to_string())? {
                    let i = pipeline::decode_intent(&String::from_utf8_lossy(&key), &bytes).map_err(|e| e.to_string())?;
                    if tenant.is_none_or(|t| t == i.tenant) {
                        out.push(i);
                    }
                }
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// The held intent `intent_id` of `tenant`, if this instance keeps it.
pub fn find_held(live: &LiveState, tenant: &str, intent_id: &str) -> Result<Option<SendIntent>, String> {
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::Sender].clone())));
    for p in live.served(StageKind::Sender) {
        let view = store.view(p);
        for key in [keys::held_intent(tenant, intent_id), keys::legacy::held_intent(intent_id)] {
            if let Some(StateValue::Intent(bytes)) = view.get(&key).map_err(|e| e.to_string())? {
                let i = pipeline::decode_intent(intent_id, &bytes).map_err(|e| e.to_string())?;
                if i.tenant == tenant {
                    return Ok(Some(i));
                }
            }
        }
    }
    Ok(None)
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PausedOut {
    /// sender_domain:D or mailbox:A
    pub scope: String,
    pub since_ms: i64,
    /// Who paused it: an operator, or the guard itself (a signal tier).
    pub by: String,
    pub reason: String,
    /// The scope's sender domain.
    pub domain: String,
}

/// Every paused sender scope in this instance's partitions, up to `limit`.
pub fn paused(live: &LiveState, limit: usize) -> Result<Vec<PausedOut>, String> {
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::Sender].clone())));
    let mut out = Vec::new();
    for p in live.served(StageKind::Sender) {
        let view = store.view(p);
        for key in view.scan(b"pause/", limit.saturating_sub(out.len())).map_err(|e| e.to_string())? {
            if let Some(StateValue::Pause(s)) = view.get(&key).map_err(|e| e.to_string())? {
                let scope = String::from_utf8_lossy(&key["pause/".len()..]).into_owned();
                let domain = match scope.split_once(':') {
                    Some(("mailbox", m)) => domain_of(m).to_string(),
                    Some((_, d)) => d.to_string(),
                    None => String::new(),
                };
                out.push(PausedOut { scope, since_ms: s.since_ms, by: s.by, reason: s.reason, domain });
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WarmupOut {
    /// Day of the schedule (1 = the first).
    pub day: i64,
    /// The caps that bind today, per window ("hour", "day").
    pub caps: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DomainOut {
    pub domain: String,
    /// The tenant that owns the domain; none: shared.
    pub owner: Option<String>,
    pub signals: super::SignalsOut,
    /// Warm-up, while its schedule runs.
    pub warmup: Option<WarmupOut>,
}

/// Every sender domain with signals in this instance's partitions: its
/// bounce and complaint rates and tiers now, under its owner's policy (the
/// defaults for a shared domain), and its warm-up day and caps.
pub fn domains(live: &LiveState, now_ms: i64, limit: usize) -> Result<Vec<DomainOut>, String> {
    use crate::policy::PolicyBook;
    use crate::stage::signals;
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::Sender].clone())));
    let mut out = Vec::new();
    for p in live.served(StageKind::Sender) {
        let view = store.view(p);
        let mut book = PolicyBook::default();
        pipeline::load_policies(&view, &mut book).map_err(|e| e.to_string())?;
        for key in view.scan(b"sig/", limit.saturating_sub(out.len())).map_err(|e| e.to_string())? {
            let domain = String::from_utf8_lossy(&key[b"sig/".len()..]).into_owned();
            let owner = book.owner_of(&domain).map(str::to_string);
            let policy = book.effective(owner.as_deref().unwrap_or(""), &domain, "", None);
            let ring = signals::load(&view, &domain).map_err(|e| e.to_string())?;
            let rates = signals::totals(&ring, now_ms, policy.signals.window_hours);
            let (bt, ct) = signals::tiers(&rates, &policy.signals);
            let first_seen = view.get_time(&keys::first_seen(&domain)).map_err(|e| e.to_string())?;
            let warmup = crate::stage::sender::warmup_start(&policy, first_seen).and_then(|start| {
                let shift = crate::stage::sender::domain_engagement_shift(&view, &policy, &domain, now_ms).map(|s| s.0).unwrap_or(0);
                let caps = crate::stage::sender::warmup_caps(&policy, start, now_ms, shift);
                (!caps.is_empty()).then(|| WarmupOut { day: ((now_ms - start).div_euclid(86_400_000) + 1).max(1), caps: caps.into_iter().map(|(w, c)| (w.as_str().to_string(), c)).collect() })
            });
            let signals = super::SignalsOut::new(&rates, bt, ct, policy.signals.window_hours);
            out.push(DomainOut { domain, owner, signals, warmup });
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackoffOut {
    pub sender_domain: String,
    /// The recipient domain, or its provider group.
    pub recipient_group: String,
    /// Throttling deferrals in a row.
    pub consecutive: i32,
    /// Intents to the group are DEFERRED until then.
    pub until_ms: i64,
    /// The tenant that owns the sender domain; none: shared.
    pub owner: Option<String>,
}

/// Every ISP backoff still in force (until after `now_ms`) in this
/// instance's recipient-domain partitions.
pub fn backoffs(live: &LiveState, now_ms: i64, limit: usize) -> Result<Vec<BackoffOut>, String> {
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::RecipientDomain].clone())));
    let mut out = Vec::new();
    for p in live.served(StageKind::RecipientDomain) {
        let view = store.view(p);
        let mut book = crate::policy::PolicyBook::default();
        pipeline::load_policies(&view, &mut book).map_err(|e| e.to_string())?;
        // Past backoffs linger until a delivery resets them: scan a bounded
        // number of keys for the ones in force.
        for key in view.scan(b"bo/", LIST_MAX * 10).map_err(|e| e.to_string())? {
            if out.len() >= limit {
                break;
            }
            if let Some(StateValue::Backoff(b)) = view.get(&key).map_err(|e| e.to_string())? {
                if b.until_ms <= now_ms {
                    continue;
                }
                let rest = String::from_utf8_lossy(&key[b"bo/".len()..]).into_owned();
                let (sd, group) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
                out.push(BackoffOut { sender_domain: sd.to_string(), recipient_group: group.to_string(), consecutive: b.consecutive, until_ms: b.until_ms, owner: book.owner_of(sd).map(str::to_string) });
            }
        }
    }
    Ok(out)
}
