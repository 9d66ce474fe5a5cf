//! Avro single-object encoding of every record sendgate reads or writes.
//!
//! A single-object record is `C3 01`, the 8-byte little-endian CRC-64-AVRO
//! (Rabin) fingerprint of the writer schema's canonical form, then the Avro
//! datum. The fingerprint lets a reader refuse a record written with a schema
//! it does not know, without a registry.

mod schemas;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::OnceLock;

pub use schemas::{standalone_schemas, SCHEMA_FILES};

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// The record types of the contract and of the internal topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    SendIntent,
    DeliveryEvent,
    Decision,
    Alert,
    DeadLetter,
    Command,
    PolicyDocument,
    StageEnvelope,
    StateEntry,
}

impl RecordType {
    const ALL: [RecordType; 9] = [
        RecordType::SendIntent,
        RecordType::DeliveryEvent,
        RecordType::Decision,
        RecordType::Alert,
        RecordType::DeadLetter,
        RecordType::Command,
        RecordType::PolicyDocument,
        RecordType::StageEnvelope,
        RecordType::StateEntry,
    ];

    fn file(self) -> &'static str {
        match self {
            RecordType::SendIntent => "send_intent.avsc",
            RecordType::DeliveryEvent => "delivery_event.avsc",
            RecordType::Decision => "decision.avsc",
            RecordType::Alert => "alert.avsc",
            RecordType::DeadLetter => "dead_letter.avsc",
            RecordType::Command => "command.avsc",
            RecordType::PolicyDocument => "policy_document.avsc",
            RecordType::StageEnvelope => "internal/stage_envelope.avsc",
            RecordType::StateEntry => "internal/state_entry.avsc",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordType::SendIntent => "SendIntent",
            RecordType::DeliveryEvent => "DeliveryEvent",
            RecordType::Decision => "Decision",
            RecordType::Alert => "Alert",
            RecordType::DeadLetter => "DeadLetter",
            RecordType::Command => "Command",
            RecordType::PolicyDocument => "PolicyDocument",
            RecordType::StageEnvelope => "StageEnvelope",
            RecordType::StateEntry => "StateEntry",
        }
    }
}

struct Compiled {
    schema: Schema,
    fingerprint: [u8; 8],
    /// The schema names a type defined in another of its fields.
    has_references: bool,
}

struct Registry {
    types: Vec<(RecordType, Compiled)>,
}

/// Schemas are immutable, compiled once: shared read-only data, not state.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let texts = standalone_schemas().expect("schemas/ shipped in the binary must splice");
        let types = RecordType::ALL
            .iter()
            .map(|t| {
                let text = &texts.iter().find(|(n, _)| *n == t.file()).expect("every type has a file").1;
                let schema = Schema::parse_str(text).unwrap_or_else(|e| panic!("schema {} does not parse: {e}", t.file()));
                let fp = schema.fingerprint::<Rabin>();
                let mut fingerprint = [0u8; 8];
                fingerprint.copy_from_slice(&fp.bytes);
                let has_references = references_a_type(&schema);
                (*t, Compiled { schema, fingerprint, has_references })
            })
            .collect();
        Registry { types }
    })
}

/// Whether a schema uses a named type by reference (defined in another field).
fn references_a_type(s: &Schema) -> bool {
    match s {
        Schema::Ref { .. } => true,
        Schema::Record(r) => r.fields.iter().any(|f| references_a_type(&f.schema)),
        Schema::Array(a) => references_a_type(&a.items),
        Schema::Map(m) => references_a_type(&m.types),
        Schema::Union(u) => u.variants().iter().any(references_a_type),
        _ => false,
    }
}

fn compiled(t: RecordType) -> &'static Compiled {
    &registry().types.iter().find(|(rt, _)| *rt == t).expect("registered").1
}

/// Fails at start-up, not on the first record, if a schema is broken.
pub fn check_schemas() -> Result<(), String> {
    let texts = standalone_schemas()?;
    for (name, text) in texts {
        Schema::parse_str(&text).map_err(|e| format!("{name}: {e}"))?;
    }
    let _ = registry();
    Ok(())
}

pub fn fingerprint(t: RecordType) -> [u8; 8] {
    compiled(t).fingerprint
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not Avro single-object encoded (expected header C3 01, got {0})")]
    BadMagic(String),
    #[error("written with an unknown schema (fingerprint {0}); expected {1}")]
    UnknownSchema(String, &'static str),
    #[error("Avro datum does not decode as {0}: {1}")]
    Datum(&'static str, String),
    #[error("value does not fit the {0} schema: {1}")]
    Shape(&'static str, String),
    #[error("could not encode {0}: {1}")]
    Encode(&'static str, String),
}

pub fn encode<T: Serialize>(t: RecordType, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    encode_into(t, value, &mut out)?;
    Ok(out)
}

pub fn encode_into<T: Serialize>(t: RecordType, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let c = compiled(t);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&c.fingerprint);
    if c.has_references {
        // The direct serializer cannot follow a reference to a type defined
        // elsewhere in the schema; the value path resolves them.
        let v = apache_avro::to_value(value).map_err(|e| CodecError::Encode(t.name(), e.to_string()))?;
        let bytes = apache_avro::to_avro_datum(&c.schema, v).map_err(|e| CodecError::Encode(t.name(), e.to_string()))?;
        out.extend_from_slice(&bytes);
    } else {
        apache_avro::write_avro_datum_ref(&c.schema, value, out).map_err(|e| CodecError::Encode(t.name(), e.to_string()))?;
    }
    Ok(())
}

pub fn decode<T: DeserializeOwned>(t: RecordType, bytes: &[u8]) -> Result<T, CodecError> {
    let c = compiled(t);
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        let head: String = bytes.iter().take(2).map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ");
        return Err(CodecError::BadMagic(if head.is_empty() { "an empty record".into() } else { head }));
    }
    if bytes[2..HEADER_LEN] != c.fingerprint {
        let fp: String = bytes[2..HEADER_LEN].iter().map(|b| format!("{b:02x}")).collect();
        return Err(CodecError::UnknownSchema(fp, t.name()));
    }
    let mut reader = &bytes[HEADER_LEN..];
    let value = apache_avro::from_avro_datum(&c.schema, &mut reader, None).map_err(|e| CodecError::Datum(t.name(), e.to_string()))?;
    if !reader.is_empty() {
        return Err(CodecError::Datum(t.name(), format!("{} trailing bytes after the datum", reader.len())));
    }
    apache_avro::from_value::<T>(&value).map_err(|e| CodecError::Shape(t.name(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn intent() -> SendIntent {
        SendIntent {
            intent_id: "i-1".into(),
            tenant: "acme".into(),
            sender: "ana@acme.com".into(),
            recipient: "bo@corp.example".into(),
            class: IntentClass::Outbound,
            template_id: Some("t1".into()),
            content_hash: None,
            thread_id: None,
            requires_approval: false,
            requested_at_ms: 42,
        }
    }

    #[test]
    fn every_schema_parses_standalone() {
        check_schemas().unwrap();
    }

    #[test]
    fn intent_round_trips_with_single_object_header() {
        let bytes = encode(RecordType::SendIntent, &intent()).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(&bytes[2..10], &fingerprint(RecordType::SendIntent));
        let back: SendIntent = decode(RecordType::SendIntent, &bytes).unwrap();
        assert_eq!(back, intent());
    }

    #[test]
    fn envelope_and_state_round_trip() {
        let mut env = StageEnvelope::new(7, SourceRef { topic: "t".into(), partition: 1, offset: 9 });
        env.intent = Some(intent());
        env.policy = Some(PolicyChange { scope: "default".into(), version: 3, spec_json: None });
        env.route_key = Some("acme.com".into());
        let usage = Usage { scope: "mailbox:a@acme.com".into(), window: "day".into(), used: 1, limit: 25, remaining: 24 };
        let undo = Undo { key: "ctr/x".into(), kind: UndoKind::Counter, bucket_start_ms: 5 };
        env.hop = Some(IntentHop {
            intent: intent(),
            approved: true,
            usage: vec![usage.clone()],
            policy_version: 4,
            route: vec!["recipient".into()],
            reservations: vec![Reservation { stage: "sender".into(), key: "acme.com".into(), undo: vec![undo.clone()] }],
        });
        let outcome = Decision {
            intent_id: "i".into(),
            tenant: "t".into(),
            sender: "a@acme.com".into(),
            recipient: "b@corp.example".into(),
            status: DecisionStatus::Deferred,
            reason: "isp_backoff".into(),
            retry_at_ms: Some(9),
            usage: vec![usage],
            policy_version: 4,
            decided_at_ms: 7,
            source: SourceRef { topic: "t".into(), partition: 1, offset: 9 },
            stage: Some("recipient_domain".into()),
            replayed: false,
        };
        env.release = Some(Release { intent_id: "i".into(), undo: vec![undo], outcome: Some(outcome) });
        let bytes = encode(RecordType::StageEnvelope, &env).unwrap();
        let back: StageEnvelope = decode(RecordType::StageEnvelope, &bytes).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn dead_letter_keeps_original_bytes() {
        let dl = DeadLetter {
            topic: "x".into(),
            partition: 0,
            offset: 1,
            timestamp_ms: Some(5),
            key: None,
            value: Some(vec![0, 1, 2, 255]),
            reason: "bad".into(),
            stage: "router".into(),
        };
        let back: DeadLetter = decode(RecordType::DeadLetter, &encode(RecordType::DeadLetter, &dl).unwrap()).unwrap();
        assert_eq!(back, dl);
    }

    #[test]
    fn wrong_schema_and_garbage_are_refused() {
        let bytes = encode(RecordType::SendIntent, &intent()).unwrap();
        assert!(matches!(decode::<DeliveryEvent>(RecordType::DeliveryEvent, &bytes), Err(CodecError::UnknownSchema(..))));
        assert!(matches!(decode::<SendIntent>(RecordType::SendIntent, b"{\"json\":1}"), Err(CodecError::BadMagic(_))));
        let mut truncated = bytes.clone();
        truncated.truncate(14);
        assert!(decode::<SendIntent>(RecordType::SendIntent, &truncated).is_err());
    }
}
