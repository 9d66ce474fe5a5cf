//! Typed state values and their Avro encoding (`schemas/internal/state_entry.avsc`).

use crate::codec::{self, CodecError, RecordType};
use crate::model::{PolicyChange, Undo};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounter {
    pub bucket_start_ms: i64,
    pub count: i64,
    #[serde(default)]
    pub alerted_pct: i32,
    /// Of `count`, reservations of intents still in flight (sender stage).
    #[serde(default)]
    pub pending: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalBucket {
    pub start_ms: i64,
    pub sends: i64,
    pub hard_bounces: i64,
    pub complaints: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRing {
    pub buckets: Vec<SignalBucket>,
    pub bounce_tier: String,
    pub complaint_tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    pub reason: String,
    pub since_ms: i64,
    pub by: String,
}

/// When an intent last used a once-per-period right (cooldown, dedupe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub at_ms: i64,
    pub intent_id: String,
}

/// A suppression, list entry or restriction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: String,
    pub reason: String,
    pub since_ms: i64,
    pub by: String,
    #[serde(default)]
    pub until_ms: Option<i64>,
}

/// ISP backoff of one (sender domain, recipient domain group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub consecutive: i32,
    pub until_ms: i64,
    pub last_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleSeen {
    pub group: String,
    pub at_ms: i64,
}

/// A subject's place on a trust ladder (see `stage::trust`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    pub step: i32,
    pub since_ms: i64,
    pub sends: i64,
    pub hard_bounces: i64,
    pub complaints: i64,
    pub touched_ms: i64,
}

/// One state value. The Avro record has one optional field per variant.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    Counter(WindowCounter),
    FinalDecision(Vec<u8>),
    Signals(SignalRing),
    Pause(PauseState),
    Policy(PolicyChange),
    /// A point in log time (the stream clock, a domain's first send).
    Clock(i64),
    /// An encoded SendIntent (held; in flight before the sender stage kept
    /// its reservation with it, or parked).
    Intent(Vec<u8>),
    /// An intent in flight through later stages (its encoded SendIntent),
    /// with what the sender stage reserved for it: the release that brings
    /// the outcome back settles this, so the hops and the release need not
    /// carry it.
    InFlight { intent: Vec<u8>, undo: Vec<Undo> },
    Mark(Mark),
    Entry(Entry),
    Backoff(Backoff),
    Throttles(Vec<ThrottleSeen>),
    /// An encoded StageEnvelope: an intent parked until in-flight
    /// reservations resolve.
    Parked(Vec<u8>),
    Trust(TrustState),
    Marker,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct StateEntry {
    #[serde(default)]
    counter: Option<WindowCounter>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    final_decision: Option<Vec<u8>>,
    #[serde(default)]
    signals: Option<SignalRing>,
    #[serde(default)]
    pause: Option<PauseState>,
    #[serde(default)]
    policy: Option<PolicyChange>,
    #[serde(default)]
    clock_ms: Option<i64>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    intent: Option<Vec<u8>>,
    #[serde(default)]
    mark: Option<Mark>,
    #[serde(default)]
    entry: Option<Entry>,
    #[serde(default)]
    backoff: Option<Backoff>,
    #[serde(default)]
    throttles: Option<Vec<ThrottleSeen>>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    parked: Option<Vec<u8>>,
    #[serde(default)]
    trust: Option<TrustState>,
    #[serde(default)]
    marker: bool,
    #[serde(default)]
    in_flight: Option<InFlightEntry>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct InFlightEntry {
    #[serde(with = "apache_avro::serde_avro_bytes")]
    intent: Vec<u8>,
    undo: Vec<Undo>,
}

impl StateValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = StateEntry::default();
        match self {
            StateValue::Counter(c) => e.counter = Some(*c),
            StateValue::FinalDecision(b) => e.final_decision = Some(b.clone()),
            StateValue::Signals(s) => e.signals = Some(s.clone()),
            StateValue::Pause(p) => e.pause = Some(p.clone()),
            StateValue::Policy(p) => e.policy = Some(p.clone()),
            StateValue::Clock(t) => e.clock_ms = Some(*t),
            StateValue::Intent(b) => e.intent = Some(b.clone()),
            StateValue::Mark(m) => e.mark = Some(m.clone()),
            StateValue::Entry(x) => e.entry = Some(x.clone()),
            StateValue::Backoff(b) => e.backoff = Some(*b),
            StateValue::Throttles(t) => e.throttles = Some(t.clone()),
            StateValue::Parked(b) => e.parked = Some(b.clone()),
            StateValue::Trust(t) => e.trust = Some(*t),
            StateValue::Marker => e.marker = true,
            StateValue::InFlight { intent, undo } => e.in_flight = Some(InFlightEntry { intent: intent.clone(), undo: undo.clone() }),
        }
        codec::encode(RecordType::StateEntry, &e).expect("state entries always fit their schema")
    }

    pub fn decode(bytes: &[u8]) -> Result<StateValue, CodecError> {
        let e: StateEntry = codec::decode(RecordType::StateEntry, bytes)?;
        Ok(if let Some(c) = e.counter {
            StateValue::Counter(c)
        } else if let Some(b) = e.final_decision {
            StateValue::FinalDecision(b)
        } else if let Some(s) = e.signals {
            StateValue::Signals(s)
        } else if let Some(p) = e.pause {
            StateValue::Pause(p)
        } else if let Some(p) = e.policy {
            StateValue::Policy(p)
        } else if let Some(t) = e.clock_ms {
            StateValue::Clock(t)
        } else if let Some(b) = e.intent {
            StateValue::Intent(b)
        } else if let Some(m) = e.mark {
            StateValue::Mark(m)
        } else if let Some(x) = e.entry {
            StateValue::Entry(x)
        } else if let Some(b) = e.backoff {
            StateValue::Backoff(b)
        } else if let Some(t) = e.throttles {
            StateValue::Throttles(t)
        } else if let Some(b) = e.parked {
            StateValue::Parked(b)
        } else if let Some(t) = e.trust {
            StateValue::Trust(t)
        } else if let Some(f) = e.in_flight {
            StateValue::InFlight { intent: f.intent, undo: f.undo }
        } else {
            StateValue::Marker
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips() {
        let values = vec![
            StateValue::Counter(WindowCounter { bucket_start_ms: 5, count: 3, alerted_pct: 80, pending: 2 }),
            StateValue::Parked(vec![7]),
            StateValue::FinalDecision(vec![1, 2, 3]),
            StateValue::Signals(SignalRing { buckets: vec![SignalBucket { start_ms: 1, sends: 2, hard_bounces: 3, complaints: 4 }], bounce_tier: "warn".into(), complaint_tier: "healthy".into() }),
            StateValue::Pause(PauseState { reason: "r".into(), since_ms: 9, by: "signals".into() }),
            StateValue::Policy(PolicyChange { scope: "default".into(), version: 2, spec_json: Some("{}".into()) }),
            StateValue::Clock(77),
            StateValue::Intent(vec![4, 5]),
            StateValue::Mark(Mark { at_ms: 3, intent_id: "i1".into() }),
            StateValue::Entry(Entry { kind: "block".into(), reason: "r".into(), since_ms: 1, by: "ops".into(), until_ms: Some(9) }),
            StateValue::Backoff(Backoff { consecutive: 2, until_ms: 120, last_ms: 60 }),
            StateValue::Throttles(vec![ThrottleSeen { group: "google".into(), at_ms: 5 }]),
            StateValue::Trust(TrustState { step: 1, since_ms: 2, sends: 3, hard_bounces: 4, complaints: 5, touched_ms: 6 }),
            StateValue::Marker,
            StateValue::InFlight {
                intent: vec![6, 7],
                undo: vec![
                    Undo { key: "ctr/mailbox:a@b.example/outbound/day".into(), kind: crate::model::UndoKind::Counter, bucket_start_ms: 86_400_000, limit: 25 },
                    Undo { key: "mark/x".into(), kind: crate::model::UndoKind::Mark, bucket_start_ms: 0, limit: 0 },
                ],
            },
        ];
        for v in values {
            assert_eq!(StateValue::decode(&v.encode()).unwrap(), v);
            let entry: StateEntry = codec::decode(RecordType::StateEntry, &v.encode()).unwrap();
            codec::check_against_apache_avro(RecordType::StateEntry, &entry);
        }
    }
}
