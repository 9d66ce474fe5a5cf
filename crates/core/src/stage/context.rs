//! What a stage's handlers work with: the [`Stage`] trait they implement,
//! the stage kinds and their order, what handling one record puts out
//! (forwards, decisions, alerts, trace), and the context ([`Cx`]) through
//! which a handler reads and writes the partition's state. Below the
//! pipeline, the shadow and the window logic, which all use it.

use super::keys;
use crate::model::*;
use crate::policy::PolicyBook;
use crate::state::{PartitionView, StateValue, StoreError};
use std::collections::BTreeMap;

/// The logic of one stage.
pub trait Stage {
    fn kind(&self) -> StageKind;

    /// A fresh intent from the router (the first stage only).
    fn on_intent(&self, _cx: &mut Cx<'_, '_>, intent: &SendIntent) -> Result<(), StageError> {
        Err(StageError::BadRecord(format!("stage {} does not take fresh intents ({})", self.kind().name(), intent.intent_id)))
    }

    /// An intent an earlier stage passed on: check it and reserve.
    fn check(&self, cx: &mut Cx<'_, '_>, hop: &IntentHop) -> Result<Verdict, StageError>;

    fn on_delivery(&self, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent) -> Result<(), StageError>;

    fn on_command(&self, _cx: &mut Cx<'_, '_>, cmd: &Command) -> Result<(), StageError> {
        Err(StageError::BadRecord(format!("command {:?} does not belong to stage {}", cmd.kind, self.kind().name())))
    }

    /// A held intent's approval time ran out (its stored bytes): the sender
    /// stage decides it. Raised by the expiry sweep of whatever record came
    /// next, so a replay meets it at the same point.
    fn on_held_expired(&self, _cx: &mut Cx<'_, '_>, _intent: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }

    /// A delivery event waited for its intent's decision as long as the
    /// policy lets it (its stored envelope): the sender stage reconciles it.
    fn on_wait_expired(&self, _cx: &mut Cx<'_, '_>, _envelope: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes what this stage kept of a released intent instead of sending it
    /// along (the sender stage: the intent in flight and its reservation);
    /// none at the stages whose release carries their reservation.
    fn take_in_flight(&self, _cx: &mut Cx<'_, '_>, _release: &Release) -> Result<Option<InFlight>, StoreError> {
        Ok(None)
    }

    /// After a release's undo (`undo`: carried, or kept with `intent`, the
    /// encoded intent taken from the state) is applied: the sender stage
    /// records the outcome.
    fn on_released(&self, _cx: &mut Cx<'_, '_>, _release: &Release, _intent: Option<&[u8]>, _undo: &[Undo]) -> Result<(), StageError> {
        Ok(())
    }
}

/// An intent a stage keeps while it travels through the later stages: its
/// encoded SendIntent and what the stage reserved for it (none when an
/// earlier build kept it, whose hops carried the reservation).
pub struct InFlight {
    pub intent: Vec<u8>,
    pub undo: Vec<Undo>,
}

/// The domain of a normalised address.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// The keyed stages, in the order an intent visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageKind {
    /// Keyed by sender domain.
    Sender,
    /// Keyed by tenant; visited only when a tenant-wide limit applies.
    Tenant,
    /// Keyed by recipient address.
    Recipient,
    /// Keyed by recipient domain (or its provider group).
    RecipientDomain,
}

impl StageKind {
    pub const ALL: [StageKind; 4] = [StageKind::Sender, StageKind::Tenant, StageKind::Recipient, StageKind::RecipientDomain];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Sender => "sender",
            StageKind::Tenant => "tenant",
            StageKind::Recipient => "recipient",
            StageKind::RecipientDomain => "recipient_domain",
        }
    }

    pub fn parse(name: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Suffix of the stage's partitioned input topic.
    pub fn topic(self) -> String {
        format!("stage.{}", self.name())
    }

    pub fn changelog(self) -> String {
        format!("stage.{}.changelog", self.name())
    }
}

/// A record for another stage's partitioned topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub stage: StageKind,
    pub key: String,
    pub envelope: StageEnvelope,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct StageOutput {
    pub decisions: Vec<Decision>,
    pub alerts: Vec<Alert>,
    pub forwards: Vec<Forward>,
    /// Candidate policies' would-be decisions beside the enforced ones
    /// (the sender stage pairs them; see `super::shadow`).
    pub shadow: Vec<ShadowDecision>,
    /// When set (audits), every check the stage made, in order.
    pub trace: Option<Vec<Trace>>,
    /// With a trace, only this intent's checks are recorded: an explanation
    /// of one intent need not build the text of every other's.
    pub trace_only: Option<String>,
}

impl StageOutput {
    pub fn clear(&mut self) {
        self.decisions.clear();
        self.alerts.clear();
        self.forwards.clear();
        self.shadow.clear();
        if let Some(t) = &mut self.trace {
            t.clear();
        }
    }
}

/// One check a stage made on an intent, for `audit explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub stage: StageKind,
    pub intent_id: String,
    /// What was checked: `window`, `pause`, `suppression`, ...
    pub check: String,
    /// `pass`, or what it decided (`DEFERRED hourly_limit_exceeded`).
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record is valid Avro but cannot be acted on (goes to the dead-letter topic).
    #[error("{0}")]
    BadRecord(String),
}

/// A stage's answer to an intent passed on to it.
pub enum Verdict {
    /// Every check passed and `undo` reverses what was reserved.
    Pass { undo: Vec<Undo>, usage: Vec<Usage>, version: i64 },
    Deny { status: DecisionStatus, reason: String, retry_at_ms: Option<i64>, usage: Vec<Usage>, version: i64 },
}

/// What a stage's handlers work with while handling one record.
pub struct Cx<'a, 'v> {
    pub view: &'a mut PartitionView<'v>,
    pub book: &'a mut PolicyBook,
    /// The partition's stream time: the largest log time it has seen.
    pub now: i64,
    pub env: &'a StageEnvelope,
    pub out: &'a mut StageOutput,
    pub kind: StageKind,
    /// The origin and log time of the intent being decided: the record's
    /// own, or a parked intent's when it is decided later.
    pub source: SourceRef,
    pub log_time_ms: i64,
}

impl Cx<'_, '_> {
    /// What this record is to the intent it concerns, so that alerts raised
    /// by its first evaluation, its outcome and a later re-decision of the
    /// same intent never share an id.
    fn phase(&self) -> &'static str {
        if self.source != self.env.source {
            "parked"
        } else {
            self.env.phase()
        }
    }

    /// Whether an audit asked for this intent's checks to be recorded.
    pub fn tracing(&self, intent_id: &str) -> bool {
        self.out.trace.is_some() && self.out.trace_only.as_deref().is_none_or(|only| only == intent_id)
    }

    /// Records a check (only when an audit asked for a trace of the intent).
    pub fn note(&mut self, intent_id: &str, check: &str, outcome: impl Into<String>, detail: impl FnOnce() -> String) {
        if !self.tracing(intent_id) {
            return;
        }
        if let Some(t) = &mut self.out.trace {
            t.push(Trace { stage: self.kind, intent_id: intent_id.to_string(), check: check.to_string(), outcome: outcome.into(), detail: detail() });
        }
    }

    /// Raises an alert whose id derives from the record that raised it.
    pub fn alert(&mut self, tenant: &str, scope: &str, kind: &str, message: String, details: &[(&str, String)]) {
        let n = self.out.alerts.len();
        let s = &self.source;
        self.out.alerts.push(Alert {
            alert_id: format!("{}/{}/{}/{}/{}/{n}", self.kind.name(), self.phase(), s.topic, s.partition, s.offset),
            tenant: tenant.to_string(),
            scope: scope.to_string(),
            kind: kind.to_string(),
            message,
            at_ms: self.now,
            details: details.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        });
    }

    /// Sends an envelope to another stage, keeping this record's log time and origin.
    pub fn forward(&mut self, stage: StageKind, key: String, payload: Payload) {
        let mut env = StageEnvelope::new(self.log_time_ms, self.source.clone(), payload);
        env.route_key = Some(key.clone());
        self.out.forwards.push(Forward { stage, key, envelope: env });
    }

    /// Adds an expiry index entry: at `at_ms`, `key` is deleted if its value
    /// still carries `stamp` (None: whatever it holds).
    pub fn expire_at(&mut self, at_ms: i64, key: &[u8], stamp: Option<i64>) {
        index_expiry(self.view, self.now, at_ms, key, stamp);
    }
}

/// Adds an expiry index entry (see [`Cx::expire_at`]).
pub fn index_expiry(view: &mut PartitionView<'_>, now: i64, at_ms: i64, key: &[u8], stamp: Option<i64>) {
    // Never behind the sweep (which is never ahead of now).
    let at_ms = at_ms.max(now);
    let v = match stamp {
        Some(s) => StateValue::Clock(s),
        None => StateValue::Marker,
    };
    view.put(&keys::expiry(at_ms, key), v);
    view.lower_sweep_floor(at_ms);
}
