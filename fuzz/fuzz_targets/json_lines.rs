//! `sendgate produce`'s JSON lines (intents, delivery events, commands),
//! encoded, then validated by the router as the records they become.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendgate_core::codec::json_lines::{encode_line, InputKind};
use sendgate_core::model::InputRecord;
use sendgate_core::stage::ingress::Ingress;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(line) = std::str::from_utf8(rest) else { return };
    let (kind, topic) = match selector % 3 {
        0 => (InputKind::Intents, "ns.intents"),
        1 => (InputKind::Delivery, "ns.delivery"),
        _ => (InputKind::Commands, "ns.commands"),
    };
    let Ok((key, value)) = encode_line(kind, line, 1_800_000_000_000) else { return };
    let ingress = Ingress { engagement: true, deliveries_to_sender: true, ..Ingress::for_namespace("ns") };
    let rec = InputRecord { topic, partition: 0, offset: 3, key: Some(&key), payload: Some(&value), timestamp_ms: Some(1_800_000_000_000) };
    let _ = ingress.route(&rec);
});
