//! State keys of the sender stage. Plain byte strings with a prefix per
//! kind, so that one kind can be scanned (expiry index, policies).

use crate::clock::Window;
use crate::model::IntentClass;

pub const CLOCK: &[u8] = b"clock";

pub fn final_decision(intent_id: &str) -> Vec<u8> {
    format!("intent/{intent_id}").into_bytes()
}

pub fn held_intent(intent_id: &str) -> Vec<u8> {
    format!("held/{intent_id}").into_bytes()
}

pub const EXPIRY_PREFIX: &[u8] = b"exp/";

/// Expiry index entry: sorts by expiry time, so a scan stops at the first
/// entry that has not expired yet.
pub fn expiry(expires_at_ms: i64, intent_id: &str) -> Vec<u8> {
    format!("exp/{:016}/{intent_id}", expires_at_ms.max(0)).into_bytes()
}

pub fn parse_expiry(key: &[u8]) -> Option<(i64, String)> {
    let s = std::str::from_utf8(key).ok()?.strip_prefix("exp/")?;
    let (t, id) = s.split_once('/')?;
    Some((t.parse().ok()?, id.to_string()))
}

pub fn counter(scope: &str, class: IntentClass, window: Window) -> Vec<u8> {
    format!("ctr/{scope}/{}/{}", class.as_str(), window.as_str()).into_bytes()
}

pub fn signals(sender_domain: &str) -> Vec<u8> {
    format!("sig/{sender_domain}").into_bytes()
}

pub fn pause(scope: &str) -> Vec<u8> {
    format!("pause/{scope}").into_bytes()
}

pub const POLICY_PREFIX: &[u8] = b"policy/";

pub fn policy(scope: &str) -> Vec<u8> {
    format!("policy/{scope}").into_bytes()
}
