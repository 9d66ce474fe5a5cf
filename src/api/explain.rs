//! `GET /v1/explain/{intent_id}`: why an intent got its decision, as
//! `sendgate audit explain` tells it (the decision found on the decisions
//! topic, the stage logs replayed with every check recorded). A replay
//! reads the logs, so one runs at a time per instance; any instance can
//! answer, it needs no partition of its own.

use crate::config::Config;
use crate::model::{Decision, DeliveryKind};
use crate::stage::SenderConfig;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentOut {
    pub scope: String,
    pub version: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceOut {
    pub stage: &'static str,
    pub check: String,
    /// `pass`, or what it decided.
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalEventOut {
    pub event_id: String,
    pub kind: DeliveryKind,
    pub at_ms: i64,
    pub recipient: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExplainOut {
    pub decision: Decision,
    /// Every policy document that applied, over the built-in defaults.
    pub documents: Vec<DocumentOut>,
    /// Each stage's checks in its last evaluation of the intent, in order.
    pub checks: Vec<TraceOut>,
    /// The check that decided; none when every check passed.
    pub decided_by: Option<TraceOut>,
    /// The sender domain's hard bounces and complaints behind its signal
    /// rates at the decision, latest last.
    pub signal_events: Vec<SignalEventOut>,
}

fn trace(t: crate::stage::pipeline::Trace) -> TraceOut {
    TraceOut { stage: t.stage.name(), check: t.check, outcome: t.outcome, detail: t.detail }
}

/// One explanation at a time: a replay reads the stage logs.
pub struct Explainer {
    cfg: Config,
    sender: SenderConfig,
    slot: Arc<tokio::sync::Semaphore>,
    seq: AtomicU64,
}

impl Explainer {
    pub fn new(cfg: &Config, sender: SenderConfig) -> Explainer {
        Explainer { cfg: cfg.clone(), sender, slot: Arc::new(tokio::sync::Semaphore::new(1)), seq: AtomicU64::new(0) }
    }

    /// Ok(None): another explanation is running (ask again).
    pub async fn explain(&self, tenant: &str, intent_id: &str) -> Result<Option<ExplainOut>, String> {
        let Ok(permit) = self.slot.clone().try_acquire_owned() else { return Ok(None) };
        let scratch = self.cfg.state_dir.join(&self.cfg.namespace).join(format!("explain-{}", self.seq.fetch_add(1, Ordering::Relaxed)));
        let (cfg, sender, tenant, intent_id) = (self.cfg.clone(), self.sender.clone(), tenant.to_string(), intent_id.to_string());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let e = crate::audit::explain::explain(&cfg, Some(&tenant), &intent_id, scratch.clone(), sender);
            let _ = std::fs::remove_dir_all(&scratch);
            let e = e?;
            Ok(Some(ExplainOut {
                decision: e.decision,
                documents: e.documents.into_iter().map(|(scope, version)| DocumentOut { scope, version }).collect(),
                checks: e.checks.into_values().flatten().map(trace).collect(),
                decided_by: e.decided_by.map(trace),
                signal_events: e.signal_events.into_iter().map(|(event_id, kind, at_ms, recipient)| SignalEventOut { event_id, kind, at_ms, recipient }).collect(),
            }))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
