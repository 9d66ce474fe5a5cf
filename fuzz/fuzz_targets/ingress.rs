//! The router's validation of every input topic: Avro single-object
//! records (intents, delivery events, commands, policy documents) with
//! their keys. The first byte picks the topic, whether the record gets its
//! type's single-object header (most inputs are then well-formed Avro
//! headers with a fuzzed body) and whether it has a key; nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendgate_core::codec::{fingerprint, RecordType};
use sendgate_core::model::InputRecord;
use sendgate_core::stage::ingress::Ingress;

const TOPICS: [(&str, RecordType); 4] = [("ns.intents", RecordType::SendIntent), ("ns.delivery", RecordType::DeliveryEvent), ("ns.policies", RecordType::PolicyDocument), ("ns.commands", RecordType::Command)];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Some((&key_len, rest)) = rest.split_first() else { return };
    let (topic, t) = TOPICS[(selector & 3) as usize];
    let key_len = (key_len as usize).min(rest.len());
    let (key, body) = rest.split_at(key_len);
    let mut payload = Vec::with_capacity(body.len() + 10);
    if selector & 4 == 0 {
        payload.extend_from_slice(&[0xC3, 0x01]);
        payload.extend_from_slice(&fingerprint(t));
    }
    payload.extend_from_slice(body);
    let ingress = Ingress { engagement: selector & 8 != 0, deliveries_to_sender: selector & 16 != 0, ..Ingress::for_namespace("ns") };
    let rec = InputRecord { topic, partition: 0, offset: 41, key: (selector & 32 == 0).then_some(key), payload: Some(&payload), timestamp_ms: Some(1_800_000_000_000) };
    let _ = ingress.route(&rec);
});
