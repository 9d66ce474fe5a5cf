//! What sendgate reads back from its own topics: stage envelopes (a stage's
//! input) and state entries (a changelog being restored). Written by
//! sendgate alone, but read from a broker: a corrupt record must be an
//! error, never a panic or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendgate_core::codec::{decode, fingerprint, RecordType};
use sendgate_core::model::StageEnvelope;
use sendgate_core::state::StateValue;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let t = if selector & 1 == 0 { RecordType::StageEnvelope } else { RecordType::StateEntry };
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&fingerprint(t));
    bytes.extend_from_slice(body);
    if t == RecordType::StageEnvelope {
        let _ = decode::<StageEnvelope>(t, &bytes);
    } else {
        let _ = StateValue::decode(&bytes);
    }
});
