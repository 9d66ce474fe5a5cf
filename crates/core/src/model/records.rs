//! Rust mirrors of the Avro records in `schemas/`. Field names match the
//! schemas exactly; serde maps them to and from Avro values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IntentClass {
    Outbound,
    Reply,
    Transactional,
}

impl IntentClass {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentClass::Outbound => "outbound",
            IntentClass::Reply => "reply",
            IntentClass::Transactional => "transactional",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SendIntent {
    pub intent_id: String,
    pub tenant: String,
    pub sender: String,
    pub recipient: String,
    pub class: IntentClass,
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub content_hash: Option<String>,
    #[serde(default)]
    pub thread_id: Option<String>,
    #[serde(default)]
    pub requires_approval: bool,
    pub requested_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryKind {
    Delivered,
    BounceHard,
    BounceSoft,
    Deferred,
    Rejected,
    Complaint,
    Unsubscribe,
    Opened,
    Clicked,
    Replied,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    pub event_id: String,
    #[serde(default)]
    pub intent_id: Option<String>,
    pub tenant: String,
    pub sender: String,
    pub recipient: String,
    pub kind: DeliveryKind,
    #[serde(default)]
    pub smtp_code: Option<i32>,
    #[serde(default)]
    pub enhanced_code: Option<String>,
    #[serde(default)]
    pub response: Option<String>,
    pub occurred_at_ms: i64,
    /// How long the provider asked to wait (Retry-After), if it said.
    #[serde(default)]
    pub retry_after_seconds: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionStatus {
    Allowed,
    Deferred,
    Paused,
    Blocked,
    Held,
}

impl DecisionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionStatus::Allowed => "ALLOWED",
            DecisionStatus::Deferred => "DEFERRED",
            DecisionStatus::Paused => "PAUSED",
            DecisionStatus::Blocked => "BLOCKED",
            DecisionStatus::Held => "HELD",
        }
    }

    pub fn parse(s: &str) -> Option<DecisionStatus> {
        [DecisionStatus::Allowed, DecisionStatus::Deferred, DecisionStatus::Paused, DecisionStatus::Blocked, DecisionStatus::Held].into_iter().find(|d| d.as_str() == s)
    }

    /// ALLOWED and BLOCKED are final: a resubmitted intent gets them again.
    pub fn is_final(self) -> bool {
        matches!(self, DecisionStatus::Allowed | DecisionStatus::Blocked)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub scope: String,
    pub window: String,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    pub intent_id: String,
    pub tenant: String,
    pub sender: String,
    pub recipient: String,
    pub status: DecisionStatus,
    pub reason: String,
    #[serde(default)]
    pub retry_at_ms: Option<i64>,
    pub usage: Vec<Usage>,
    pub policy_version: i64,
    pub decided_at_ms: i64,
    pub source: SourceRef,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub alert_id: String,
    pub tenant: String,
    pub scope: String,
    pub kind: String,
    pub message: String,
    pub at_ms: i64,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// A candidate policy's would-be decision beside the enforced one
/// (`schemas/shadow_decision.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDecision {
    pub shadow_scope: String,
    pub intent_id: String,
    pub tenant: String,
    pub enforced: Decision,
    pub candidate: Decision,
    pub differs: bool,
    pub check: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    pub key: Option<Vec<u8>>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    pub value: Option<Vec<u8>>,
    pub reason: String,
    pub stage: String,
    /// Set when `value` holds only the beginning of the original.
    #[serde(default)]
    pub original_size: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandKind {
    Approve,
    Reject,
    Resume,
    Pause,
    AddRestriction,
    LiftRestriction,
    AddListEntry,
    RemoveListEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub command_id: String,
    pub kind: CommandKind,
    pub tenant: String,
    pub target: String,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub operator: Option<String>,
    /// List commands: allow, block or suppression.
    #[serde(default)]
    pub list: Option<String>,
    /// ADD_RESTRICTION: deny (default) or allow.
    #[serde(default)]
    pub mode: Option<String>,
    /// ADD_RESTRICTION: a deny that ends by itself.
    #[serde(default)]
    pub until_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    pub scope: String,
    pub spec_json: String,
    #[serde(default)]
    pub source_name: Option<String>,
}

/// A policy document (or its removal) broadcast into a stage's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    pub scope: String,
    pub version: i64,
    #[serde(default)]
    pub spec_json: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UndoKind {
    /// Decrement a window counter, if it is still in the same window.
    Counter,
    /// Delete a mark, if this intent set it.
    Mark,
}

/// One state change a release reverses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub key: String,
    pub kind: UndoKind,
    #[serde(default)]
    pub bucket_start_ms: i64,
    /// Sender-stage counters: the limit in force, for the quota alerts
    /// raised when the send is confirmed (0: none).
    #[serde(default)]
    pub limit: i64,
}

/// What one stage reserved for an intent, and where to send its release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub stage: String,
    pub key: String,
    pub undo: Vec<Undo>,
}

/// An intent on its way through the later stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentHop {
    pub intent: SendIntent,
    #[serde(default)]
    pub approved: bool,
    pub usage: Vec<Usage>,
    pub policy_version: i64,
    pub route: Vec<String>,
    pub reservations: Vec<Reservation>,
}

/// Sent back to a stage that reserved: undo (when a later stage denied),
/// and to the sender stage the final outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub intent_id: String,
    pub undo: Vec<Undo>,
    #[serde(default)]
    pub outcome: Option<Decision>,
}

/// One consumed record, as ingress and the stage tasks see it.
pub struct InputRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The broker's timestamp (LogAppendTime on input topics).
    pub timestamp_ms: Option<i64>,
}

impl SendIntent {
    /// An intent with no optional field set.
    pub fn new(intent_id: &str, tenant: &str, sender: &str, recipient: &str, class: IntentClass) -> SendIntent {
        SendIntent {
            intent_id: intent_id.into(),
            tenant: tenant.into(),
            sender: sender.into(),
            recipient: recipient.into(),
            class,
            template_id: None,
            content_hash: None,
            thread_id: None,
            requires_approval: false,
            requested_at_ms: 0,
        }
    }
}

impl Command {
    /// An operator command with no optional field set.
    pub fn new(kind: CommandKind, tenant: &str, target: &str, command_id: String) -> Command {
        Command { command_id, kind, tenant: tenant.into(), target: target.into(), sender: None, reason: None, operator: None, list: None, mode: None, until_ms: None }
    }
}

/// One record on a stage's partitioned topic: where it came from, and what
/// it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEnvelope {
    pub log_time_ms: i64,
    pub source: SourceRef,
    #[serde(default)]
    pub route_key: Option<String>,
    /// The candidate policy in shadow this record belongs to (None: enforced).
    #[serde(default)]
    pub shadow: Option<String>,
    pub payload: Payload,
}

/// What a stage record carries: exactly one of these, so a stage matches on
/// it and the compiler sees every kind handled. The Avro schema writes it as
/// a union whose branches are in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// A validated intent, from the router.
    Intent(SendIntent),
    /// A delivery event, from the router or the recipient stage.
    Delivery(DeliveryEvent),
    /// An operator command, from the router.
    Command(Command),
    /// A policy document taken up, from the router.
    Policy(PolicyChange),
    /// An intent the stages before allowed, from the stage before.
    Hop(IntentHop),
    /// A reservation's release or outcome, from a later stage.
    Release(Release),
}

impl StageEnvelope {
    pub fn new(log_time_ms: i64, source: SourceRef, payload: Payload) -> Self {
        StageEnvelope { log_time_ms, source, route_key: None, shadow: None, payload }
    }

    /// What this record is to the intent it concerns: its first evaluation
    /// ("in"), a hop on or its outcome. Part of the ids of the alerts it
    /// raises, so that those of each never collide.
    pub fn phase(&self) -> &'static str {
        match self.payload {
            Payload::Release(_) => "outcome",
            Payload::Hop(_) => "hop",
            _ => "in",
        }
    }

    pub fn delivery(&self) -> Option<&DeliveryEvent> {
        match &self.payload {
            Payload::Delivery(d) => Some(d),
            _ => None,
        }
    }

    pub fn command(&self) -> Option<&Command> {
        match &self.payload {
            Payload::Command(c) => Some(c),
            _ => None,
        }
    }

    pub fn policy(&self) -> Option<&PolicyChange> {
        match &self.payload {
            Payload::Policy(p) => Some(p),
            _ => None,
        }
    }

    pub fn hop(&self) -> Option<&IntentHop> {
        match &self.payload {
            Payload::Hop(h) => Some(h),
            _ => None,
        }
    }

    pub fn release(&self) -> Option<&Release> {
        match &self.payload {
            Payload::Release(r) => Some(r),
            _ => None,
        }
    }
}
