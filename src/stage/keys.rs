//! State keys of the stages. Plain byte strings with a prefix per kind, so
//! that one kind can be scanned (expiry index, policies). Every key that
//! holds per-tenant data names the tenant.

pub const CLOCK: &[u8] = b"clock";

/// A final (ALLOWED or BLOCKED) decision kept for intent-id idempotency.
pub fn final_decision(intent_id: &str) -> Vec<u8> {
    format!("intent/{intent_id}").into_bytes()
}

/// An intent waiting for an operator's approval.
pub fn held_intent(intent_id: &str) -> Vec<u8> {
    format!("held/{intent_id}").into_bytes()
}

/// An intent the sender stage passed on, until its outcome comes back.
pub fn pending_intent(intent_id: &str) -> Vec<u8> {
    format!("pend/{intent_id}").into_bytes()
}

/// Intents waiting for the in-flight reservations of one window counter,
/// in arrival order: `park/{counter key}/{seq}`.
pub const PARKED_PREFIX: &[u8] = b"park/";

pub fn parked_on(counter: &str) -> Vec<u8> {
    format!("park/{counter}/").into_bytes()
}

pub fn parked(counter: &str, seq: i64) -> Vec<u8> {
    format!("park/{counter}/{:016}", seq.max(0)).into_bytes()
}

/// The lowest sequence number that may still wait on a counter (the head
/// of its queue).
pub fn parked_head(counter: &str) -> Vec<u8> {
    format!("parkhead/{counter}").into_bytes()
}

/// Of a partition's parked intents: how many, and the next sequence number.
pub const PARKED_COUNT: &[u8] = b"parked-count";
pub const PARKED_SEQ: &[u8] = b"parked-seq";

/// The expiry time the sweep has reached: entries before it are gone.
pub const EXPIRY_CURSOR: &[u8] = b"expiry-cursor";

pub const EXPIRY_PREFIX: &[u8] = b"exp/";

/// Expiry index entry: sorts by expiry time, so a sweep stops at the first
/// entry that has not expired yet.
pub fn expiry(expires_at_ms: i64, key: &[u8]) -> Vec<u8> {
    let mut k = format!("exp/{:016}/", expires_at_ms.max(0)).into_bytes();
    k.extend_from_slice(key);
    k
}

/// (expiry time, the key it expires).
pub fn parse_expiry(key: &[u8]) -> Option<(i64, &[u8])> {
    let rest = key.strip_prefix(EXPIRY_PREFIX)?;
    let t = std::str::from_utf8(rest.get(..16)?).ok()?.parse().ok()?;
    Some((t, rest.get(17..)?))
}

pub fn counter(scope: &str, class: &str, window: &str) -> Vec<u8> {
    format!("ctr/{scope}/{class}/{window}").into_bytes()
}

pub fn signals(sender_domain: &str) -> Vec<u8> {
    format!("sig/{sender_domain}").into_bytes()
}

/// Recipient domain groups that throttled a sender domain recently.
pub fn throttles(sender_domain: &str) -> Vec<u8> {
    format!("thr/{sender_domain}").into_bytes()
}

pub fn pause(scope: &str) -> Vec<u8> {
    format!("pause/{scope}").into_bytes()
}

/// When a sender domain's first intent was seen (the warm-up clock).
pub fn first_seen(sender_domain: &str) -> Vec<u8> {
    format!("first/{sender_domain}").into_bytes()
}

/// A tenant's restriction on a sender scope: `address:A`, `domain:D` or
/// `tenant:T`. Per tenant: on a shared domain, one tenant's restriction or
/// exemption never reaches another's senders.
pub fn restriction(tenant: &str, scope: &str) -> Vec<u8> {
    format!("rst/{tenant}/{scope}").into_bytes()
}

pub fn suppression(tenant: &str, address: &str) -> Vec<u8> {
    format!("sup/{tenant}/{address}").into_bytes()
}

/// An allow or block list entry: an address, a domain or a TLD (".zip").
pub fn list_entry(tenant: &str, entry: &str) -> Vec<u8> {
    format!("lst/{tenant}/{entry}").into_bytes()
}

pub fn cooldown(tenant: &str, address: &str, template: &str) -> Vec<u8> {
    format!("cool/{tenant}/{address}/{template}").into_bytes()
}

pub fn content_seen(tenant: &str, address: &str, content_hash: &str) -> Vec<u8> {
    format!("dup/{tenant}/{address}/{content_hash}").into_bytes()
}

/// ISP backoff of a (sender domain, recipient domain group).
pub fn backoff(sender_domain: &str, group: &str) -> Vec<u8> {
    format!("bo/{sender_domain}/{group}").into_bytes()
}

pub const POLICY_PREFIX: &[u8] = b"policy/";

pub fn policy(scope: &str) -> Vec<u8> {
    format!("policy/{scope}").into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn expiry_keys_round_trip_and_sort_by_time() {
        let a = super::expiry(5, b"ctr/x");
        let b = super::expiry(40, b"ctr/a");
        assert!(a < b);
        assert_eq!(super::parse_expiry(&a), Some((5, &b"ctr/x"[..])));
    }
}
