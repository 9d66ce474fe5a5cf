//! Avro single-object encoding of every record sendgate reads or writes.
//!
//! A single-object record is `C3 01`, the 8-byte little-endian CRC-64-AVRO
//! (Rabin) fingerprint of the writer schema's canonical form, then the Avro
//! datum. The fingerprint lets a reader refuse a record written with a schema
//! it does not know, without a registry. Records written with the schema of
//! an earlier release (`schemas/previous/`) are resolved to the current one,
//! so an upgrade reads old input and restores old changelogs.

mod direct;
pub mod json_lines;
pub mod schemas;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::OnceLock;

pub use schemas::{standalone_schemas, PREVIOUS_SETS, SCHEMA_FILES};

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
    ShadowDecision,
    StageEnvelope,
    StateEntry,
}

impl RecordType {
    const ALL: [RecordType; 10] = [
        RecordType::SendIntent,
        RecordType::DeliveryEvent,
        RecordType::Decision,
        RecordType::Alert,
        RecordType::DeadLetter,
        RecordType::Command,
        RecordType::PolicyDocument,
        RecordType::ShadowDecision,
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
            RecordType::ShadowDecision => "shadow_decision.avsc",
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
            RecordType::ShadowDecision => "ShadowDecision",
            RecordType::StageEnvelope => "StageEnvelope",
            RecordType::StateEntry => "StateEntry",
        }
    }
}

struct Compiled {
    schema: Schema,
    /// The same schema with its named-type references inlined: what the
    /// direct encoder and decoder walk (see `direct`).
    inlined: Schema,
    fingerprint: [u8; 8],
    /// Writer schemas of earlier releases that differ from this one.
    older: Vec<Older>,
    /// For a type whose layout changed in a way Avro's resolution cannot
    /// follow: the last earlier layout (with today's public types), which
    /// older records are read in before `V3Envelope::reshape` reshapes them.
    earlier_layout: Option<EarlierLayout>,
}

struct Older {
    fingerprint: [u8; 8],
    schema: Schema,
    /// The same, inlined, when its records can be read directly into
    /// today's types (see [`reads_directly`]).
    direct: Option<Schema>,
}

struct EarlierLayout {
    schema: Schema,
    /// The same, inlined for the direct decoder: a record written with
    /// exactly this schema (the release just before the change, while the
    /// public types stay as they are) is read without a value tree.
    inlined: Schema,
    fingerprint: [u8; 8],
}

struct Registry {
    types: Vec<(RecordType, Compiled)>,
}

/// Schemas are immutable, compiled once: shared read-only data, not state.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let texts = standalone_schemas().expect("schemas/ shipped in the binary must splice");
        let previous: Vec<Vec<(&str, String)>> = PREVIOUS_SETS
            .iter()
            .map(|(v, set)| {
                schemas::splice_set(set)
                    .unwrap_or_else(|e| panic!("schema set {v} must splice: {e}"))
            })
            .collect();
        let types = RecordType::ALL
            .iter()
            .map(|t| {
                let text = &texts
                    .iter()
                    .find(|(n, _)| *n == t.file())
                    .expect("every type has a file")
                    .1;
                let schema = Schema::parse_str(text)
                    .unwrap_or_else(|e| panic!("schema {} does not parse: {e}", t.file()));
                let fingerprint = fingerprint_of(&schema);
                let inlined = direct::inline_references(&schema);
                let mut older: Vec<Older> = Vec::new();
                for set in &previous {
                    let Some((_, text)) = set.iter().find(|(n, _)| *n == t.file()) else {
                        continue;
                    };
                    let old = Schema::parse_str(text).unwrap_or_else(|e| {
                        panic!("earlier schema {} does not parse: {e}", t.file())
                    });
                    let fp = fingerprint_of(&old);
                    if fp != fingerprint && !older.iter().any(|o| o.fingerprint == fp) {
                        let direct = reads_directly(&old, &inlined);
                        older.push(Older { fingerprint: fp, schema: old, direct });
                    }
                }
                let earlier_layout = earlier_layout(*t).map(|text| {
                    let schema = Schema::parse_str(&text).unwrap_or_else(|e| {
                        panic!("the earlier layout of {} does not parse: {e}", t.file())
                    });
                    EarlierLayout {
                        inlined: direct::inline_references(&schema),
                        fingerprint: fingerprint_of(&schema),
                        schema,
                    }
                });
                (
                    *t,
                    Compiled {
                        schema,
                        inlined,
                        fingerprint,
                        older,
                        earlier_layout,
                    },
                )
            })
            .collect();
        Registry { types }
    })
}

/// An earlier schema whose record is today's without the optional fields
/// added at its end since (its fields are today's first ones, the same
/// types): a record written with it is read directly into today's type,
/// the missing fields taking their default (none), with no value tree. A
/// changelog of the release before is restored and read at full speed.
fn reads_directly(old: &Schema, current_inlined: &Schema) -> Option<Schema> {
    let old_inlined = direct::inline_references(old);
    let (Schema::Record(o), Schema::Record(c)) = (&old_inlined, current_inlined) else {
        return None;
    };
    let same_start = o.fields.len() < c.fields.len()
        && o.fields.iter().zip(&c.fields).all(|(a, b)| a.name == b.name && a.schema == b.schema);
    let added_are_optional = c.fields[o.fields.len().min(c.fields.len())..].iter().all(|f| {
        matches!(&f.schema, Schema::Union(u) if matches!(u.variants().first(), Some(Schema::Null)))
            && f.default == Some(serde_json::Value::Null)
    });
    (same_start && added_are_optional).then_some(old_inlined)
}

/// The stage envelope had a field per payload, exactly one set, up to the
/// schema set v3; since, its payload is one union field. Avro's resolution
/// cannot map several fields onto one union, so a record written before is
/// resolved to the v3 layout (spliced with today's public types, so that
/// fields they gained since take their defaults) and reshaped.
fn earlier_layout(t: RecordType) -> Option<String> {
    if t != RecordType::StageEnvelope {
        return None;
    }
    let (_, v3) = PREVIOUS_SETS.iter().find(|(v, _)| *v == "v3").expect("schema set v3 is shipped");
    let envelope = v3.iter().find(|(n, _)| *n == t.file()).expect("v3 has the stage envelope").1;
    let set: Vec<(&'static str, &str)> = SCHEMA_FILES
        .iter()
        .map(|(n, text)| (*n, if *n == t.file() { envelope } else { *text }))
        .collect();
    let spliced = schemas::splice_set(&set).expect("the v3 stage envelope splices with today's types");
    spliced.into_iter().find(|(n, _)| *n == t.file()).map(|(_, text)| text)
}

/// The stage envelope in the v3 layout: a field per payload.
#[derive(serde::Deserialize)]
struct V3Envelope {
    log_time_ms: i64,
    source: crate::model::SourceRef,
    route_key: Option<String>,
    shadow: Option<String>,
    intent: Option<crate::model::SendIntent>,
    delivery: Option<crate::model::DeliveryEvent>,
    command: Option<crate::model::Command>,
    policy: Option<crate::model::PolicyChange>,
    hop: Option<crate::model::IntentHop>,
    release: Option<crate::model::Release>,
}

impl V3Envelope {
    /// Today's envelope: the one payload field set becomes the payload.
    fn reshape(self) -> Result<crate::model::StageEnvelope, &'static str> {
        use crate::model::Payload;
        let mut set = [
            self.intent.map(Payload::Intent),
            self.delivery.map(Payload::Delivery),
            self.command.map(Payload::Command),
            self.policy.map(Payload::Policy),
            self.hop.map(Payload::Hop),
            self.release.map(Payload::Release),
        ]
        .into_iter()
        .flatten();
        let payload = set.next().ok_or("no payload field is set")?;
        if set.next().is_some() {
            return Err("more than one payload field is set");
        }
        let mut env = crate::model::StageEnvelope::new(self.log_time_ms, self.source, payload);
        env.route_key = self.route_key;
        env.shadow = self.shadow;
        Ok(env)
    }
}

fn fingerprint_of(schema: &Schema) -> [u8; 8] {
    let fp = schema.fingerprint::<Rabin>();
    let mut out = [0u8; 8];
    out.copy_from_slice(&fp.bytes);
    out
}

fn compiled(t: RecordType) -> &'static Compiled {
    &registry()
        .types
        .iter()
        .find(|(rt, _)| *rt == t)
        .expect("registered")
        .1
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

pub fn encode_into<T: Serialize>(
    t: RecordType,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let c = compiled(t);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&c.fingerprint);
    apache_avro::write_avro_datum_ref(&c.inlined, value, out)
        .map_err(|e| CodecError::Encode(t.name(), e.to_string()))?;
    Ok(())
}

pub fn decode<T: DeserializeOwned>(t: RecordType, bytes: &[u8]) -> Result<T, CodecError> {
    let c = compiled(t);
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        let head: String = bytes
            .iter()
            .take(2)
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(CodecError::BadMagic(if head.is_empty() {
            "an empty record".into()
        } else {
            head
        }));
    }
    let mut reader = &bytes[HEADER_LEN..];
    if bytes[2..HEADER_LEN] == c.fingerprint {
        let value = direct::from_datum::<T>(&c.inlined, &mut reader)
            .map_err(|e| CodecError::Datum(t.name(), e.to_string()))?;
        return no_trailing_bytes(t, reader).map(|()| value);
    }
    let Some(older) = c
        .older
        .iter()
        .find(|o| bytes[2..HEADER_LEN] == o.fingerprint[..])
    else {
        let fp: String = bytes[2..HEADER_LEN]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        return Err(CodecError::UnknownSchema(fp, t.name()));
    };
    let writer = &older.schema;
    if let Some(direct) = &older.direct {
        let value = direct::from_datum::<T>(direct, &mut reader)
            .map_err(|e| CodecError::Datum(t.name(), e.to_string()))?;
        return no_trailing_bytes(t, reader).map(|()| value);
    }
    if let Some(layout) = &c.earlier_layout {
        // Written before the layout changed: read in the old shape (the
        // layout just before directly, older ones resolved to it), reshape,
        // then read as the caller's type through today's encoding.
        let old: V3Envelope = if bytes[2..HEADER_LEN] == layout.fingerprint {
            direct::from_datum(&layout.inlined, &mut reader)
                .map_err(|e| CodecError::Datum(t.name(), e.to_string()))?
        } else {
            let value = apache_avro::from_avro_datum(writer, &mut reader, Some(&layout.schema))
                .map_err(|e| CodecError::Datum(t.name(), e.to_string()))?;
            apache_avro::from_value(&value).map_err(|e| CodecError::Shape(t.name(), e.to_string()))?
        };
        no_trailing_bytes(t, reader)?;
        let now = old.reshape().map_err(|why| CodecError::Shape(t.name(), why.to_string()))?;
        let mut datum = Vec::with_capacity(bytes.len());
        apache_avro::write_avro_datum_ref(&c.inlined, &now, &mut datum)
            .map_err(|e| CodecError::Encode(t.name(), e.to_string()))?;
        return direct::from_datum::<T>(&c.inlined, &mut &datum[..])
            .map_err(|e| CodecError::Datum(t.name(), e.to_string()));
    }
    // Written by an earlier release: resolve to the current schema.
    let value = apache_avro::from_avro_datum(writer, &mut reader, Some(&c.schema))
        .map_err(|e| CodecError::Datum(t.name(), e.to_string()))?;
    no_trailing_bytes(t, reader)?;
    apache_avro::from_value::<T>(&value).map_err(|e| CodecError::Shape(t.name(), e.to_string()))
}

/// A datum written with `writer` (a schema from a registry, say), resolved
/// against the current schema of `t` and re-encoded as single object. The
/// usual Avro resolution rules apply: fields the reader lacks are dropped,
/// fields the writer lacks take their defaults, names must agree.
pub fn reencode_from_writer(t: RecordType, writer: &Schema, datum: &[u8]) -> Result<Vec<u8>, CodecError> {
    let c = compiled(t);
    let mut reader = datum;
    let value = apache_avro::from_avro_datum(writer, &mut reader, Some(&c.schema))
        .map_err(|e| CodecError::Datum(t.name(), e.to_string()))?;
    no_trailing_bytes(t, reader)?;
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len() + 16);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&c.fingerprint);
    out.extend(apache_avro::to_avro_datum(&c.schema, value).map_err(|e| CodecError::Shape(t.name(), e.to_string()))?);
    Ok(out)
}

/// Today's record (`bytes`, single object) written again with the schema of
/// the earlier set `version` (`schemas/previous/<version>`), the top-level
/// fields that set lacks left out: what a release of that set would have
/// written. For upgrade checks of a layout that only gained fields.
pub fn rewrite_in_earlier_set(t: RecordType, version: &str, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let shape = |why: String| CodecError::Shape(t.name(), why);
    let (_, set) = PREVIOUS_SETS.iter().find(|(v, _)| *v == version).ok_or_else(|| shape(format!("no schema set {version}")))?;
    let spliced = schemas::splice_set(set).map_err(shape)?;
    let text = spliced.into_iter().find(|(n, _)| *n == t.file()).ok_or_else(|| shape(format!("set {version} has no {}", t.file())))?.1;
    let writer = Schema::parse_str(&text).map_err(|e| shape(e.to_string()))?;
    if bytes.len() < HEADER_LEN {
        return Err(shape("shorter than its header".into()));
    }
    let value = apache_avro::from_avro_datum(&compiled(t).schema, &mut &bytes[HEADER_LEN..], None).map_err(|e| CodecError::Datum(t.name(), e.to_string()))?;
    let (apache_avro::types::Value::Record(mut fields), Schema::Record(r)) = (value, &writer) else {
        return Err(shape("not a record".into()));
    };
    fields.retain(|(name, _)| r.fields.iter().any(|f| f.name == *name));
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&fingerprint_of(&writer));
    out.extend(apache_avro::to_avro_datum(&writer, apache_avro::types::Value::Record(fields)).map_err(|e| CodecError::Encode(t.name(), e.to_string()))?);
    Ok(out)
}

/// The current schema of a record type, as the binary uses it.
pub fn schema_of(t: RecordType) -> &'static Schema {
    &compiled(t).schema
}

fn no_trailing_bytes(t: RecordType, rest: &[u8]) -> Result<(), CodecError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(CodecError::Datum(
            t.name(),
            format!("{} trailing bytes after the datum", rest.len()),
        ))
    }
}

/// Checks that the direct codec writes exactly apache-avro's bytes for
/// `value` and reads them back as apache-avro's generic decoding does.
#[cfg(test)]
pub(crate) fn check_against_apache_avro<
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
>(
    t: RecordType,
    value: &T,
) {
    let c = compiled(t);
    let ours = encode(t, value).unwrap();
    let generic =
        apache_avro::to_avro_datum(&c.schema, variants_as_unions(apache_avro::to_value(value).unwrap())).unwrap();
    assert_eq!(
        ours[HEADER_LEN..],
        generic[..],
        "{} encodes as apache-avro does",
        t.name()
    );
    let theirs: T = apache_avro::from_value(
        &apache_avro::from_avro_datum(&c.schema, &mut &generic[..], None).unwrap(),
    )
    .unwrap();
    let direct: T = decode(t, &ours).unwrap();
    assert_eq!(direct, theirs, "{} decodes as apache-avro does", t.name());
    assert_eq!(&direct, value, "{} round-trips", t.name());
}

/// apache-avro's `to_value` writes a newtype variant as a record of its
/// type and value; its binary serializer, as the union branch of the same
/// index. The generic path of the check above takes the latter.
#[cfg(test)]
fn variants_as_unions(v: apache_avro::types::Value) -> apache_avro::types::Value {
    use apache_avro::types::Value;
    match v {
        Value::Record(fields) => match &fields[..] {
            [(t, Value::Enum(i, _)), (val, Value::Union(j, inner))] if t == "type" && val == "value" && i == j => {
                Value::Union(*j, Box::new(variants_as_unions((**inner).clone())))
            }
            _ => Value::Record(fields.into_iter().map(|(n, v)| (n, variants_as_unions(v))).collect()),
        },
        Value::Union(i, inner) => Value::Union(i, Box::new(variants_as_unions(*inner))),
        Value::Array(items) => Value::Array(items.into_iter().map(variants_as_unions).collect()),
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, variants_as_unions(v))).collect()),
        other => other,
    }
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
    fn a_writer_schema_with_fewer_and_extra_fields_resolves() {
        // What a producer with its own copy of the schema might register:
        // an extra field sendgate does not know, and no optional fields.
        let writer = Schema::parse_str(r#"{"type":"record","name":"SendIntent","namespace":"sendgate","fields":[
            {"name":"intent_id","type":"string"},{"name":"tenant","type":"string"},
            {"name":"sender","type":"string"},{"name":"recipient","type":"string"},
            {"name":"class","type":{"type":"enum","name":"IntentClass","symbols":["OUTBOUND","REPLY","TRANSACTIONAL"]}},
            {"name":"campaign","type":"string"},
            {"name":"requested_at_ms","type":"long"}]}"#).unwrap();
        let mut datum = Vec::new();
        let v = apache_avro::types::Value::Record(vec![
            ("intent_id".into(), "i-9".into()),
            ("tenant".into(), "acme".into()),
            ("sender".into(), "ana@acme.com".into()),
            ("recipient".into(), "bo@corp.example".into()),
            ("class".into(), apache_avro::types::Value::Enum(0, "OUTBOUND".into())),
            ("campaign".into(), "spring".into()),
            ("requested_at_ms".into(), apache_avro::types::Value::Long(42)),
        ]);
        datum.extend(apache_avro::to_avro_datum(&writer, v).unwrap());
        let bytes = reencode_from_writer(RecordType::SendIntent, &writer, &datum).unwrap();
        let back: SendIntent = decode(RecordType::SendIntent, &bytes).unwrap();
        assert_eq!(back.intent_id, "i-9");
        assert_eq!(back.template_id, None);
        assert!(!back.requires_approval);
        let wrong = Schema::parse_str(r#"{"type":"record","name":"SendIntent","namespace":"sendgate","fields":[{"name":"intent_id","type":"long"}]}"#).unwrap();
        let datum = apache_avro::to_avro_datum(&wrong, apache_avro::types::Value::Record(vec![("intent_id".into(), apache_avro::types::Value::Long(1))])).unwrap();
        assert!(reencode_from_writer(RecordType::SendIntent, &wrong, &datum).is_err(), "a writer schema that does not resolve is refused");
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

    fn source() -> SourceRef {
        SourceRef {
            topic: "t".into(),
            partition: 1,
            offset: 9,
        }
    }

    fn undo() -> Undo {
        Undo {
            key: "ctr/x".into(),
            kind: UndoKind::Counter,
            bucket_start_ms: 5,
            limit: 25,
        }
    }

    /// One envelope of each payload kind.
    fn envelopes() -> Vec<StageEnvelope> {
        let usage = Usage {
            scope: "mailbox:a@acme.com".into(),
            window: "day".into(),
            used: 1,
            limit: 25,
            remaining: 24,
        };
        let outcome = Decision {
            intent_id: "i".into(),
            tenant: "t".into(),
            sender: "a@acme.com".into(),
            recipient: "b@corp.example".into(),
            status: DecisionStatus::Deferred,
            reason: "isp_backoff".into(),
            retry_at_ms: Some(9),
            usage: vec![usage.clone()],
            policy_version: 4,
            decided_at_ms: 7,
            source: source(),
            stage: Some("recipient_domain".into()),
            replayed: false,
        };
        let payloads = vec![
            Payload::Intent(intent()),
            Payload::Delivery(DeliveryEvent {
                event_id: "e".into(),
                tenant: "acme".into(),
                sender: "ana@acme.com".into(),
                recipient: "bo@corp.example".into(),
                kind: DeliveryKind::Deferred,
                smtp_code: Some(421),
                enhanced_code: None,
                response: None,
                intent_id: None,
                occurred_at_ms: 3,
                retry_after_seconds: Some(60),
            }),
            Payload::Command(Command::new(CommandKind::Pause, "acme", "sender_domain:acme.com", "c1".into())),
            Payload::Policy(PolicyChange {
                scope: "default".into(),
                version: 3,
                spec_json: None,
            }),
            Payload::Hop(IntentHop {
                intent: intent(),
                approved: true,
                usage: vec![usage],
                policy_version: 4,
                route: vec!["recipient".into()],
                reservations: vec![Reservation {
                    stage: "sender".into(),
                    key: "acme.com".into(),
                    undo: vec![undo()],
                }],
            }),
            Payload::Release(Release {
                intent_id: "i".into(),
                undo: vec![undo()],
                outcome: Some(outcome),
            }),
        ];
        payloads
            .into_iter()
            .enumerate()
            .map(|(n, payload)| {
                let mut env = StageEnvelope::new(7, source(), payload);
                env.route_key = (n % 2 == 0).then(|| "acme.com".into());
                env.shadow = (n == 4).then(|| "tenant:acme".into());
                env
            })
            .collect()
    }

    #[test]
    fn every_envelope_payload_agrees_with_apache_avro() {
        for env in envelopes() {
            check_against_apache_avro(RecordType::StageEnvelope, &env);
        }
        let Payload::Release(r) = &envelopes()[5].payload else { unreachable!() };
        check_against_apache_avro(RecordType::Decision, r.outcome.as_ref().unwrap());
    }

    /// The v1 layout: the router's four payloads, no route key, hop or release.
    #[derive(Serialize)]
    struct V1Envelope {
        log_time_ms: i64,
        source: SourceRef,
        intent: Option<SendIntent>,
        delivery: Option<DeliveryEvent>,
        command: Option<Command>,
        policy: Option<PolicyChange>,
    }

    #[test]
    fn envelopes_in_the_v1_layout_are_resolved_and_read_into_the_union() {
        // Not the layout just before the union: through Avro's resolution.
        let old = V1Envelope { log_time_ms: 5, source: source(), intent: Some(intent()), delivery: None, command: None, policy: None };
        let back: StageEnvelope = decode(RecordType::StageEnvelope, &write_in("v1", &old)).unwrap();
        assert_eq!(back, StageEnvelope::new(5, source(), Payload::Intent(intent())));
        let two = V1Envelope { command: Some(Command::new(CommandKind::Pause, "acme", "tenant:acme", "c".into())), ..old };
        let err = decode::<StageEnvelope>(RecordType::StageEnvelope, &write_in("v1", &two)).unwrap_err();
        assert!(err.to_string().contains("more than one payload field is set"), "{err}");
    }

    #[test]
    fn state_entries_of_the_release_before_are_read_directly_as_avro_resolves_them() {
        use crate::state::{StateValue, WindowCounter};
        let (_, v4) = PREVIOUS_SETS.iter().find(|(v, _)| *v == "v4").unwrap();
        let text = schemas::splice_set(v4).unwrap().into_iter().find(|(n, _)| *n == "internal/state_entry.avsc").unwrap().1;
        let writer = Schema::parse_str(&text).unwrap();
        let fp = fingerprint_of(&writer);
        let c = compiled(RecordType::StateEntry);
        let older = c.older.iter().find(|o| o.fingerprint == fp).expect("the v4 state entry is an earlier layout");
        assert!(older.direct.is_some(), "only optional fields were added at its end: read directly");
        // A layout change Avro must resolve is not read directly.
        let envelope = compiled(RecordType::StageEnvelope);
        assert!(envelope.older.iter().all(|o| o.direct.is_none()));

        let values = [
            StateValue::Counter(WindowCounter { bucket_start_ms: 5, count: 3, alerted_pct: 80, pending: 2 }),
            StateValue::Intent(vec![4, 5]),
            StateValue::Clock(-7),
            StateValue::Marker,
        ];
        for v in values {
            // Today's record, less the field added since, written with the v4 schema.
            let framed = rewrite_in_earlier_set(RecordType::StateEntry, "v4", &v.encode()).unwrap();
            assert_eq!(framed[2..HEADER_LEN], fp);
            assert_eq!(StateValue::decode(&framed).unwrap(), v);
            let resolved = reencode_from_writer(RecordType::StateEntry, &writer, &framed[HEADER_LEN..]).unwrap();
            assert_eq!(StateValue::decode(&resolved).unwrap(), v, "the value tree reads the same");
        }
    }

    /// The v3 layout: a field per payload, exactly one set.
    #[derive(Serialize)]
    struct V3Envelope {
        log_time_ms: i64,
        source: SourceRef,
        route_key: Option<String>,
        shadow: Option<String>,
        intent: Option<SendIntent>,
        delivery: Option<DeliveryEvent>,
        command: Option<Command>,
        policy: Option<PolicyChange>,
        hop: Option<IntentHop>,
        release: Option<Release>,
    }

    fn write_v3<E: Serialize>(env: &E) -> Vec<u8> {
        write_in("v3", env)
    }

    /// An envelope written with the stage envelope schema of set `version`.
    fn write_in<E: Serialize>(version: &str, env: &E) -> Vec<u8> {
        let (_, set) = PREVIOUS_SETS.iter().find(|(v, _)| *v == version).unwrap();
        let text = schemas::splice_set(set).unwrap().into_iter().find(|(n, _)| *n == "internal/stage_envelope.avsc").unwrap().1;
        let schema = Schema::parse_str(&text).unwrap();
        let value = apache_avro::to_value(env).unwrap().resolve(&schema).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&fingerprint_of(&schema));
        out.extend(apache_avro::to_avro_datum(&schema, value).unwrap());
        out
    }

    #[test]
    fn envelopes_in_the_v3_layout_are_read_into_the_union() {
        for env in envelopes() {
            let mut old = V3Envelope {
                log_time_ms: env.log_time_ms,
                source: env.source.clone(),
                route_key: env.route_key.clone(),
                shadow: env.shadow.clone(),
                intent: None,
                delivery: None,
                command: None,
                policy: None,
                hop: None,
                release: None,
            };
            match env.payload.clone() {
                Payload::Intent(i) => old.intent = Some(i),
                Payload::Delivery(d) => old.delivery = Some(d),
                Payload::Command(c) => old.command = Some(c),
                Payload::Policy(p) => old.policy = Some(p),
                Payload::Hop(h) => old.hop = Some(h),
                Payload::Release(r) => old.release = Some(r),
            }
            let bytes = write_v3(&old);
            assert_ne!(bytes[2..HEADER_LEN], fingerprint(RecordType::StageEnvelope), "written in the earlier layout");
            let layout = compiled(RecordType::StageEnvelope).earlier_layout.as_ref().unwrap();
            assert_eq!(bytes[2..HEADER_LEN], layout.fingerprint, "exactly the layout just before: read by the direct decoder");
            let back: StageEnvelope = decode(RecordType::StageEnvelope, &bytes).unwrap();
            assert_eq!(back, env);
            // What a stage re-encodes from it is today's layout.
            let again = encode(RecordType::StageEnvelope, &back).unwrap();
            assert_eq!(again[2..HEADER_LEN], fingerprint(RecordType::StageEnvelope));
        }
        let mut none = V3Envelope { log_time_ms: 1, source: source(), route_key: None, shadow: None, intent: None, delivery: None, command: None, policy: None, hop: None, release: None };
        let err = decode::<StageEnvelope>(RecordType::StageEnvelope, &write_v3(&none)).unwrap_err();
        assert!(err.to_string().contains("no payload field is set"), "{err}");
        none.intent = Some(intent());
        none.release = Some(Release { intent_id: "i".into(), undo: vec![], outcome: None });
        let err = decode::<StageEnvelope>(RecordType::StageEnvelope, &write_v3(&none)).unwrap_err();
        assert!(err.to_string().contains("more than one payload field is set"), "{err}");
    }

    #[test]
    fn an_envelope_with_a_union_branch_past_the_last_is_refused() {
        let mut bytes = encode(RecordType::StageEnvelope, &envelopes()[0]).unwrap();
        // log_time 7 (0e), source "t" (02 74), partition 1 (02), offset 9
        // (12), route key set (02 + 10 bytes), shadow unset (00), branch 0.
        let at = HEADER_LEN + 1 + 2 + 1 + 1 + 1 + 1 + 8 + 1;
        assert_eq!(bytes[at], 0, "the payload's branch index");
        bytes[at] = 2 * 6; // zig-zag 6: one past Release
        let err = decode::<StageEnvelope>(RecordType::StageEnvelope, &bytes).unwrap_err();
        assert!(err.to_string().contains("union branch 6 does not exist"), "{err}");
    }

    #[test]
    fn every_public_type_agrees_with_apache_avro() {
        check_against_apache_avro(RecordType::SendIntent, &intent());
        // Unicode, empty and extreme values.
        let odd = SendIntent {
            intent_id: String::new(),
            tenant: "Zürich-Ω".into(),
            template_id: None,
            thread_id: Some("t\u{0}".into()),
            requested_at_ms: i64::MIN,
            requires_approval: true,
            ..intent()
        };
        check_against_apache_avro(RecordType::SendIntent, &odd);
        check_against_apache_avro(
            RecordType::SendIntent,
            &SendIntent {
                requested_at_ms: i64::MAX,
                ..intent()
            },
        );
        let ev = DeliveryEvent {
            event_id: "e".into(),
            tenant: "acme".into(),
            sender: "ana@acme.com".into(),
            recipient: "bo@corp.example".into(),
            kind: DeliveryKind::BounceHard,
            smtp_code: Some(550),
            enhanced_code: Some("5.1.1".into()),
            response: None,
            intent_id: Some("i-1".into()),
            occurred_at_ms: 99,
            retry_after_seconds: None,
        };
        check_against_apache_avro(RecordType::DeliveryEvent, &ev);
        // One entry: apache-avro's value path writes a map in hash order.
        let alert = Alert {
            alert_id: "a".into(),
            tenant: "t".into(),
            scope: "s".into(),
            kind: "k".into(),
            message: "m".into(),
            at_ms: -5,
            details: [("x".to_string(), "1".to_string())].into(),
        };
        check_against_apache_avro(RecordType::Alert, &alert);
        check_against_apache_avro(
            RecordType::Alert,
            &Alert {
                details: Default::default(),
                ..alert.clone()
            },
        );
        let many = Alert {
            details: (0..40).map(|i| (format!("k{i}"), "v".repeat(i))).collect(),
            ..alert
        };
        let bytes = encode(RecordType::Alert, &many).unwrap();
        let generic = apache_avro::from_avro_datum(
            &compiled(RecordType::Alert).schema,
            &mut &bytes[HEADER_LEN..],
            None,
        )
        .unwrap();
        assert_eq!(apache_avro::from_value::<Alert>(&generic).unwrap(), many);
        assert_eq!(decode::<Alert>(RecordType::Alert, &bytes).unwrap(), many);
        let dl = DeadLetter {
            topic: "x".into(),
            partition: 3,
            offset: 1 << 40,
            timestamp_ms: None,
            key: Some(vec![]),
            value: Some((0..=255).collect()),
            reason: "bad".into(),
            stage: "router".into(),
            original_size: None,
        };
        check_against_apache_avro(RecordType::DeadLetter, &dl);
        let doc = PolicyDocument {
            scope: "default".into(),
            spec_json: "{}".into(),
            source_name: Some("p.toml".into()),
        };
        check_against_apache_avro(RecordType::PolicyDocument, &doc);
        let cmd = Command {
            command_id: "c".into(),
            kind: CommandKind::Resume,
            tenant: "t".into(),
            target: "sender_domain:acme.com".into(),
            sender: None,
            reason: Some("r".into()),
            operator: None,
            list: None,
            mode: Some("deny".into()),
            until_ms: Some(-1),
        };
        check_against_apache_avro(RecordType::Command, &cmd);
    }

    #[test]
    fn records_written_by_an_earlier_release_still_decode() {
        // A command and a state entry as the first release wrote them.
        let (_, v1) = PREVIOUS_SETS[0];
        let set = schemas::splice_set(v1).unwrap();
        let old = |file: &str| {
            Schema::parse_str(&set.iter().find(|(n, _)| *n == file).unwrap().1).unwrap()
        };
        let write = |schema: &Schema, value: apache_avro::types::Value| {
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&fingerprint_of(schema));
            out.extend(apache_avro::to_avro_datum(schema, value).unwrap());
            out
        };
        use apache_avro::types::Value as V;
        let s = |x: &str| V::String(x.into());
        let cmd_v1 = V::Record(vec![
            ("command_id".into(), s("c1")),
            ("kind".into(), V::Enum(2, "RESUME".into())),
            ("tenant".into(), s("acme")),
            ("target".into(), s("sender_domain:acme.com")),
            ("sender".into(), V::Union(0, Box::new(V::Null))),
            ("reason".into(), V::Union(0, Box::new(V::Null))),
            ("operator".into(), V::Union(1, Box::new(s("ops")))),
        ]);
        let old_command = old("command.avsc");
        assert_ne!(
            fingerprint_of(&old_command),
            fingerprint(RecordType::Command),
            "the command schema changed since v1"
        );
        let cmd: Command = decode(RecordType::Command, &write(&old_command, cmd_v1)).unwrap();
        assert_eq!(
            (cmd.kind, cmd.target.as_str(), cmd.list, cmd.until_ms),
            (CommandKind::Resume, "sender_domain:acme.com", None, None)
        );
        // A delivery event from before retry_after_seconds: read as None.
        let old_event = old("delivery_event.avsc");
        assert_ne!(fingerprint_of(&old_event), fingerprint(RecordType::DeliveryEvent), "the delivery event schema changed since v1");
        let event_v1 = V::Record(vec![
            ("event_id".into(), s("e1")),
            ("intent_id".into(), V::Union(0, Box::new(V::Null))),
            ("tenant".into(), s("acme")),
            ("sender".into(), s("ana@acme.com")),
            ("recipient".into(), s("bo@x.com")),
            ("kind".into(), V::Enum(4, "REJECTED".into())),
            ("smtp_code".into(), V::Union(1, Box::new(V::Int(429)))),
            ("enhanced_code".into(), V::Union(0, Box::new(V::Null))),
            ("response".into(), V::Union(0, Box::new(V::Null))),
            ("occurred_at_ms".into(), V::Long(5)),
        ]);
        let ev: DeliveryEvent = decode(RecordType::DeliveryEvent, &write(&old_event, event_v1)).unwrap();
        assert_eq!((ev.kind, ev.smtp_code, ev.retry_after_seconds), (DeliveryKind::Rejected, Some(429), None));
        let state_v1 = old("internal/state_entry.avsc");
        let clock = crate::state::StateValue::Clock(77);
        let mut fields = Vec::new();
        if let apache_avro::Schema::Record(r) = &state_v1 {
            for f in &r.fields {
                let v = match f.name.as_str() {
                    "clock_ms" => V::Union(1, Box::new(V::Long(77))),
                    "marker" => V::Boolean(false),
                    _ => V::Union(0, Box::new(V::Null)),
                };
                fields.push((f.name.clone(), v));
            }
        }
        let bytes = write(&state_v1, V::Record(fields));
        assert_eq!(crate::state::StateValue::decode(&bytes).unwrap(), clock);
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
            original_size: None,
        };
        let back: DeadLetter = decode(
            RecordType::DeadLetter,
            &encode(RecordType::DeadLetter, &dl).unwrap(),
        )
        .unwrap();
        assert_eq!(back, dl);
    }

    #[test]
    fn wrong_schema_and_garbage_are_refused() {
        let bytes = encode(RecordType::SendIntent, &intent()).unwrap();
        assert!(matches!(
            decode::<DeliveryEvent>(RecordType::DeliveryEvent, &bytes),
            Err(CodecError::UnknownSchema(..))
        ));
        assert!(matches!(
            decode::<SendIntent>(RecordType::SendIntent, b"{\"json\":1}"),
            Err(CodecError::BadMagic(_))
        ));
        let mut truncated = bytes.clone();
        truncated.truncate(14);
        assert!(decode::<SendIntent>(RecordType::SendIntent, &truncated).is_err());
    }
}
