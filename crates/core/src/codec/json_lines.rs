//! JSON lines to contract records (`sendgate produce`): the record a line
//! describes, checked and encoded as the router will read it.

use crate::codec::{self, RecordType};
use crate::model::{Address, Command, DeliveryEvent, SendIntent};
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Intents,
    Delivery,
    Commands,
}

impl InputKind {
    pub fn topic_suffix(self) -> &'static str {
        match self {
            InputKind::Intents => "intents",
            InputKind::Delivery => "delivery",
            InputKind::Commands => "commands",
        }
    }
}

fn parse<T: DeserializeOwned>(mut v: Value, defaults: &[(&str, Value)]) -> Result<T, String> {
    if let Value::Object(o) = &mut v {
        for (k, d) in defaults {
            o.entry(k.to_string()).or_insert_with(|| d.clone());
        }
    } else {
        return Err("each line must be a JSON object".into());
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Encodes one JSON line: (key, Avro single-object bytes).
pub fn encode_line(kind: InputKind, line: &str, now_ms: i64) -> Result<(Vec<u8>, Vec<u8>), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    match kind {
        InputKind::Intents => {
            // requested_at_ms is informational (the client's clock): fill it in.
            let i: SendIntent = parse(v, &[("requested_at_ms", Value::from(now_ms)), ("requires_approval", Value::Bool(false))])?;
            Address::parse(&i.sender).map_err(|e| format!("sender: {e}"))?;
            let bytes = codec::encode(RecordType::SendIntent, &i).map_err(|e| e.to_string())?;
            Ok((i.sender.into_bytes(), bytes))
        }
        InputKind::Delivery => {
            let d: DeliveryEvent = parse(v, &[("occurred_at_ms", Value::from(now_ms))])?;
            let bytes = codec::encode(RecordType::DeliveryEvent, &d).map_err(|e| e.to_string())?;
            Ok((d.sender.into_bytes(), bytes))
        }
        InputKind::Commands => {
            let c: Command = parse(v, &[])?;
            let bytes = codec::encode(RecordType::Command, &c).map_err(|e| e.to_string())?;
            Ok((c.target.into_bytes(), bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_line_encodes_and_fills_the_client_clock() {
        let (k, v) = encode_line(InputKind::Intents, r#"{"intent_id":"a","tenant":"t","sender":"ana@acme.com","recipient":"b@corp.example","class":"OUTBOUND"}"#, 99).unwrap();
        assert_eq!(k, b"ana@acme.com");
        let i: SendIntent = codec::decode(RecordType::SendIntent, &v).unwrap();
        assert_eq!(i.requested_at_ms, 99);
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(encode_line(InputKind::Intents, "{", 0).unwrap_err().contains("not JSON"));
        assert!(encode_line(InputKind::Intents, r#"{"intent_id":"a"}"#, 0).unwrap_err().contains("missing field"));
        assert!(encode_line(InputKind::Intents, r#"{"intent_id":"a","tenant":"t","sender":"x","recipient":"b@c.d","class":"OUTBOUND"}"#, 0).unwrap_err().contains("sender"));
    }
}
