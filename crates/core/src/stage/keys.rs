//! State keys of the stages. Plain byte strings with a prefix per kind, so
//! that one kind can be scanned (expiry index, policies). Every key that
//! holds per-tenant data names the tenant.

pub const CLOCK: &[u8] = b"clock";

/// `prefix` then the parts joined by '/' (and a closing '/' if asked): what
/// `format!` would give, without its machinery on the hot path (a dozen
/// keys per intent).
fn join_key(prefix: &str, parts: &[&str], closing_slash: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.extend_from_slice(prefix.as_bytes());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(b'/');
        }
        k.extend_from_slice(p.as_bytes());
    }
    if closing_slash {
        k.push(b'/');
    }
    k
}

/// An intent-scoped key: intent ids are unique within a tenant only (two
/// tenants may both count from 1), so the key names the tenant, its length
/// first so that no two (tenant, id) pairs share a key whatever they hold.
fn intent_scoped(prefix: &str, tenant: &str, intent_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 6 + tenant.len() + intent_id.len());
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(tenant.len().to_string().as_bytes());
    k.push(b':');
    k.extend_from_slice(tenant.as_bytes());
    k.push(b'/');
    k.extend_from_slice(intent_id.as_bytes());
    k
}

/// An intent's one key at the sender stage: the intent while it is in
/// flight (passed on, or parked), then its final (ALLOWED or BLOCKED)
/// decision, kept for intent-id idempotency. One key for both, so an
/// allowed intent leaves two changelog records under it (the intent, then
/// the decision, which compaction keeps) and no tombstone between.
pub fn intent_state(tenant: &str, intent_id: &str) -> Vec<u8> {
    intent_scoped("t-intent/", tenant, intent_id)
}

/// An intent waiting for an operator's approval.
pub fn held_intent(tenant: &str, intent_id: &str) -> Vec<u8> {
    intent_scoped(HELD_PREFIX, tenant, intent_id)
}

const HELD_PREFIX: &str = "t-held/";

pub fn is_held_intent(key: &[u8]) -> bool {
    key.starts_with(HELD_PREFIX.as_bytes())
}

/// Where an intent in flight was kept before it shared [`intent_state`]'s
/// key with its final decision: read for state restored from an earlier
/// release, never written.
pub fn earlier_pending_intent(tenant: &str, intent_id: &str) -> Vec<u8> {
    intent_scoped("t-pend/", tenant, intent_id)
}

/// The keys of the releases before tenant-scoped intent ids, by intent id
/// alone. Still read (and deleted when their intent moves on), with the
/// stored record's tenant checked, so an upgraded deployment keeps its
/// idempotency, held intents and intents in flight; never written.
pub mod legacy {
    pub fn final_decision(intent_id: &str) -> Vec<u8> {
        super::join_key("intent/", &[intent_id], false)
    }
    pub fn held_intent(intent_id: &str) -> Vec<u8> {
        super::join_key("held/", &[intent_id], false)
    }
    pub fn pending_intent(intent_id: &str) -> Vec<u8> {
        super::join_key("pend/", &[intent_id], false)
    }
}

/// Intents waiting for the in-flight reservations of one window counter,
/// in arrival order: `park/{counter key}/{seq}`.
pub const PARKED_PREFIX: &[u8] = b"park/";

pub fn parked_on(counter: &str) -> Vec<u8> {
    join_key("park/", &[counter], true)
}

pub fn parked(counter: &str, seq: i64) -> Vec<u8> {
    format!("park/{counter}/{:016}", seq.max(0)).into_bytes()
}

/// The lowest sequence number that may still wait on a counter (the head
/// of its queue).
pub fn parked_head(counter: &str) -> Vec<u8> {
    join_key("parkhead/", &[counter], false)
}

/// How many parked intents of a tenant go to a recipient: while any does,
/// later intents to that recipient wait behind them, in the queue
/// [`recipient_order_queue`] names, so that the later stages (per-recipient
/// caps, cooldown) meet one sender domain's intents to a recipient in the
/// order they came.
pub fn parked_to(tenant: &str, recipient: &str) -> Vec<u8> {
    intent_scoped("parkto/", tenant, recipient)
}

/// The queue (a name in the space of window counter keys, which it never
/// meets) of the intents waiting behind a parked intent to a recipient.
pub fn recipient_order_queue(tenant: &str, recipient: &str) -> String {
    format!("order/{}:{tenant}/{recipient}", tenant.len())
}

pub fn is_recipient_order_queue(counter: &str) -> bool {
    counter.starts_with("order/")
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
    join_key("ctr/", &[scope, class, window], false)
}

/// One hour's bucket of a rolling window whose counter key is `base`
/// (zero-padded, so the buckets sort by time).
pub fn rolling_bucket(base: &[u8], start_ms: i64) -> Vec<u8> {
    let mut k = base.to_vec();
    k.extend_from_slice(format!("@{:020}", start_ms.max(0)).as_bytes());
    k
}

pub fn signals(sender_domain: &str) -> Vec<u8> {
    join_key("sig/", &[sender_domain], false)
}

/// Recipient domain groups that throttled a sender domain recently.
/// A mailbox's own signal ring (apart from `sig/`, which lists domains).
pub fn mailbox_signals(mailbox: &str) -> Vec<u8> {
    join_key("msig/", &[mailbox], false)
}

/// A sender domain's engagement ring: opens, clicks and replies by hour.
pub fn engagement(sender_domain: &str) -> Vec<u8> {
    join_key("eng/", &[sender_domain], false)
}

/// Until when a scope (`mailbox:A`, `sender_domain:D`) is paused for the
/// rest of its day by the rest-of-day rule.
pub fn day_pause(scope: &str) -> Vec<u8> {
    join_key("dpause/", &[scope], false)
}

/// The recipient domain groups that throttled a sender domain or (it has
/// an '@') a mailbox lately.
pub fn throttles(domain_or_mailbox: &str) -> Vec<u8> {
    join_key("thr/", &[domain_or_mailbox], false)
}

/// The sender stage's note of the last throttle from a (sender domain,
/// provider group): while a backoff may be in force there, intents to it
/// go through the recipient-domain stage.
pub fn last_throttle(sender_domain: &str, group: &str) -> Vec<u8> {
    join_key("lthr/", &[sender_domain, group], false)
}

pub fn pause(scope: &str) -> Vec<u8> {
    join_key("pause/", &[scope], false)
}

/// When a sender domain's (or a mailbox's: it has an '@') first intent
/// was seen: the warm-up clock.
pub fn first_seen(domain_or_mailbox: &str) -> Vec<u8> {
    join_key("first/", &[domain_or_mailbox], false)
}

/// A tenant's restriction on a sender scope: `address:A`, `domain:D` or
/// `tenant:T`. Per tenant: on a shared domain, one tenant's restriction or
/// exemption never reaches another's senders.
pub fn restriction(tenant: &str, scope: &str) -> Vec<u8> {
    join_key("rst/", &[tenant, scope], false)
}

pub fn suppression(tenant: &str, address: &str) -> Vec<u8> {
    join_key("sup/", &[tenant, address], false)
}

/// An allow or block list entry: an address, a domain or a TLD (".zip").
pub fn list_entry(tenant: &str, entry: &str) -> Vec<u8> {
    join_key("lst/", &[tenant, entry], false)
}

pub fn cooldown(tenant: &str, address: &str, template: &str) -> Vec<u8> {
    join_key("cool/", &[tenant, address, template], false)
}

pub fn content_seen(tenant: &str, address: &str, content_hash: &str) -> Vec<u8> {
    join_key("dup/", &[tenant, address, content_hash], false)
}

/// ISP backoff of a (sender domain, recipient domain group).
pub fn backoff(sender_domain: &str, group: &str) -> Vec<u8> {
    join_key("bo/", &[sender_domain, group], false)
}

/// The namespace of a candidate policy's state (see
/// `PartitionView::namespaced`): a leading control byte, so that no
/// prefix of the enforced state's keys is a prefix of it.
/// Each published version of a candidate has its own, so a candidate
/// published again starts empty.
pub fn shadow_namespace(scope: &str, version: i64) -> Vec<u8> {
    let mut k = SHADOW_NAMESPACE_PREFIX.to_vec();
    k.extend_from_slice(format!("{}:{scope}/{version}/", scope.len()).as_bytes());
    k
}

pub const SHADOW_NAMESPACE_PREFIX: &[u8] = b"\x02shadow/";

/// A candidate's namespace waiting to be purged (after it was stopped,
/// promoted or replaced): its value is the namespace.
pub fn shadow_purge(namespace: &[u8]) -> Vec<u8> {
    let mut k = SHADOW_PURGE_PREFIX.to_vec();
    k.extend_from_slice(namespace);
    k
}

pub const SHADOW_PURGE_PREFIX: &[u8] = b"shpurge/";

/// One half of a (enforced, candidate) pair of decisions for the intent
/// record at `source`, waiting for the other (`side`: b'e' or b'c').
pub fn shadow_half(side: u8, scope: &str, tenant: &str, intent_id: &str, source: &crate::model::SourceRef) -> Vec<u8> {
    let mut k = intent_scoped("shpair/", tenant, intent_id);
    k.push(b'/');
    k.push(side);
    k.extend_from_slice(format!("/{}:{scope}/{}/{}/{}", scope.len(), source.topic, source.partition, source.offset).as_bytes());
    k
}

/// How many intents of a tenant through a sender domain a candidate
/// policy would have decided differently (for its alerts).
pub fn shadow_differences(scope: &str, version: i64, tenant: &str, sender_domain: &str) -> Vec<u8> {
    format!("shdiff/{}:{scope}/{version}/{}:{tenant}/{sender_domain}", scope.len(), tenant.len()).into_bytes()
}

/// A delivery event waiting for its intent's decision (reconciliation).
pub fn reconcile_wait(tenant: &str, intent_id: &str) -> Vec<u8> {
    intent_scoped(RECONCILE_WAIT_PREFIX, tenant, intent_id)
}

const RECONCILE_WAIT_PREFIX: &str = "t-rwait/";

pub fn is_reconcile_wait(key: &[u8]) -> bool {
    key.starts_with(RECONCILE_WAIT_PREFIX.as_bytes())
}

/// An intent whose send was already found unapproved (one alert per intent).
pub fn reconciled(tenant: &str, intent_id: &str) -> Vec<u8> {
    intent_scoped("t-rdone/", tenant, intent_id)
}

/// The last decision of an intent that was not final (DEFERRED, PAUSED,
/// HELD), so that an event for it can say what it got.
pub fn outcome_seen(tenant: &str, intent_id: &str) -> Vec<u8> {
    intent_scoped("t-rseen/", tenant, intent_id)
}

/// Today's unapproved sends of a tenant's mailbox or sender domain (`scope`).
pub fn unapproved(tenant: &str, scope: &str) -> Vec<u8> {
    format!("unap/{}:{tenant}/{scope}", tenant.len()).into_bytes()
}

/// A subject's place on a trust ladder: `subject` is `mailbox:A`,
/// `sender_domain:D` or `recipient:N:TENANT/A` (a tenant's recipient, from
/// this partition's sender domain).
pub fn trust(subject: &str) -> Vec<u8> {
    join_key("trust/", &[subject], false)
}

pub const POLICY_PREFIX: &[u8] = b"policy/";

pub fn policy(scope: &str) -> Vec<u8> {
    join_key("policy/", &[scope], false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn joined_keys_read_as_their_formats() {
        assert_eq!(super::counter("sender_domain:a.com", "cold", "day"), b"ctr/sender_domain:a.com/cold/day");
        assert_eq!(super::parked_on("ctr/x"), b"park/ctr/x/");
        assert_eq!(super::content_seen("t", "b@c.com", "h"), b"dup/t/b@c.com/h");
        assert_eq!(super::legacy::final_decision("i-1"), b"intent/i-1");
        assert_eq!(super::intent_state("acme", "i-1"), b"t-intent/4:acme/i-1");
        // A tenant holding '/' or ':' cannot make two pairs share a key.
        assert_ne!(super::intent_state("a/b", "c"), super::intent_state("a", "b/c"));
        assert_ne!(super::held_intent("1:x", "y"), super::held_intent("1", "x/y"));
    }

    #[test]
    fn expiry_keys_round_trip_and_sort_by_time() {
        let a = super::expiry(5, b"ctr/x");
        let b = super::expiry(40, b"ctr/a");
        assert!(a < b);
        assert_eq!(super::parse_expiry(&a), Some((5, &b"ctr/x"[..])));
    }
}
