//! Input in the Confluent Schema Registry's wire format: a datum written
//! with some writer schema (the current one, or an earlier release's),
//! resolved to the current schema and re-encoded as single object, then
//! validated by the router like any input. Nothing may panic; a datum that
//! converts must decode.
#![no_main]
use apache_avro::Schema;
use libfuzzer_sys::fuzz_target;
use sendgate_core::codec::schemas::{splice_set, standalone_schemas, PREVIOUS_SETS};
use sendgate_core::codec::{reencode_from_writer, schema_of, RecordType};
use sendgate_core::model::InputRecord;
use sendgate_core::stage::ingress::Ingress;
use std::sync::OnceLock;

const TYPES: [(RecordType, &str, &str); 4] = [
    (RecordType::SendIntent, "send_intent.avsc", "ns.intents"),
    (RecordType::DeliveryEvent, "delivery_event.avsc", "ns.delivery"),
    (RecordType::Command, "command.avsc", "ns.commands"),
    (RecordType::PolicyDocument, "policy_document.avsc", "ns.policies"),
];

/// Per type, every writer schema a producer may have used.
fn writers() -> &'static Vec<Vec<Schema>> {
    static W: OnceLock<Vec<Vec<Schema>>> = OnceLock::new();
    W.get_or_init(|| {
        let mut sets = vec![standalone_schemas().unwrap()];
        sets.extend(PREVIOUS_SETS.iter().map(|(_, s)| splice_set(s).unwrap()));
        TYPES
            .iter()
            .map(|(t, file, _)| {
                let mut v = vec![schema_of(*t).clone()];
                v.extend(sets.iter().filter_map(|s| s.iter().find(|(n, _)| n == file)).map(|(_, text)| Schema::parse_str(text).unwrap()));
                v
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, datum)) = data.split_first() else { return };
    let i = (selector & 3) as usize;
    let (t, _, topic) = TYPES[i];
    let ws = &writers()[i];
    let writer = &ws[(selector as usize >> 2) % ws.len()];
    let Ok(bytes) = reencode_from_writer(t, writer, datum) else { return };
    let ingress = Ingress::for_namespace("ns");
    let rec = InputRecord { topic, partition: 0, offset: 7, key: Some(b"tenant:acme"), payload: Some(&bytes), timestamp_ms: Some(1_800_000_000_000) };
    let _ = ingress.route(&rec);
});
