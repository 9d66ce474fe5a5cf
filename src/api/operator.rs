//! What an operator (or a tenant, for its own) acts on: intents held for
//! approval and paused senders, read from this instance's sender-stage
//! partitions, and the commands that act on them, published to the
//! commands topic like `sendgate command` does (the stages check them
//! again: a command is never trusted for being sent through the API).

use super::LiveState;
use crate::model::SendIntent;
use crate::stage::pipeline::{self, domain_of};
use crate::stage::{keys, StageKind};
use crate::state::{CopyOnWrite, StageStore, StateValue};
use serde::Serialize;

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
    for p in 0..live.partitions {
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
    for p in 0..live.partitions {
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    for p in 0..live.partitions {
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
