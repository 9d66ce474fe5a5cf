//! Rust mirrors of the Avro records in `schemas/`. Field names match the
//! schemas exactly; serde maps them to and from Avro values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

    /// ALLOWED and BLOCKED are final: a resubmitted intent gets them again.
    pub fn is_final(self) -> bool {
        matches!(self, DecisionStatus::Allowed | DecisionStatus::Blocked)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub scope: String,
    pub window: String,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// One validated, normalised input on a stage's partitioned topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEnvelope {
    pub log_time_ms: i64,
    pub source: SourceRef,
    #[serde(default)]
    pub intent: Option<SendIntent>,
    #[serde(default)]
    pub delivery: Option<DeliveryEvent>,
    #[serde(default)]
    pub command: Option<Command>,
    #[serde(default)]
    pub policy: Option<PolicyChange>,
}
