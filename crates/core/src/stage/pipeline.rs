//! What every stage shares: the envelope dispatch, the stream clock, policy
//! changes, the expiry sweep, and the reserve / release protocol between
//! stages (the [`Stage`] trait, the stage kinds and the handlers' context
//! are in [`super::context`], re-exported here).
//!
//! An intent enters the sender stage, which checks and reserves, keeps its
//! reservation with the intent in flight, then passes it on as an
//! `IntentHop`. Each later stage checks and reserves, and adds what it
//! reserved to the hop. The stage that denies emits the decision and sends a `Release` to
//! every stage that reserved, which undoes exactly its own reservation; the
//! last stage emits ALLOWED. The sender stage always gets the final outcome
//! back, for intent-id idempotency, held intents and the signal budgets.

use super::keys;
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::{PolicyBook, PolicySpec, Scope};
use crate::state::{PartitionView, StateValue, StoreError, WindowCounter};

pub use super::context::*;

/// Most expired entries dropped while handling one record: the sweep runs
/// on every record, so it keeps up with any steady rate up to this many
/// expiries per record, and no one record does unbounded work.
const EXPIRY_SWEEP_MAX: usize = 8;

/// Handles one stage record. A pure function of (state, record, policy):
/// the runtime does all I/O, and the same stage log gives the same outputs.
/// Candidate policies in shadow decide the same record again, each in its
/// own state (see [`super::shadow`]).
pub fn process(stage: &dyn Stage, view: &mut PartitionView<'_>, book: &mut PolicyBook, env: &StageEnvelope, out: &mut StageOutput) -> Result<(), StageError> {
    if book.purging {
        super::shadow::purge_step(view, book)?;
    }
    if env.shadow.is_some() || book.has_shadows() {
        return super::shadow::process(process_in, stage, view, book, env, out);
    }
    process_in(stage, view, book, env, out)
}

/// Handles one stage record in one state (the enforced one, or a candidate's).
pub(super) fn process_in(stage: &dyn Stage, view: &mut PartitionView<'_>, book: &mut PolicyBook, env: &StageEnvelope, out: &mut StageOutput) -> Result<(), StageError> {
    // The stream clock only moves forward, and it is part of the state, so a
    // replay sees the same.
    let clock = view.get_time(keys::CLOCK)?.unwrap_or(i64::MIN);
    let now = clock.max(env.log_time_ms);
    if now != clock {
        view.put(keys::CLOCK, StateValue::Clock(now));
    }
    let due = sweep_expired(view, now)?;
    let mut cx = Cx { view, book, now, env, out, kind: stage.kind(), source: env.source.clone(), log_time_ms: env.log_time_ms };
    for d in due {
        match d {
            Due::Held(bytes) => stage.on_held_expired(&mut cx, &bytes)?,
            Due::Waiting(bytes) => stage.on_wait_expired(&mut cx, &bytes)?,
        }
    }
    match &env.payload {
        Payload::Policy(change) => {
            // Kept only when taken up (a candidate past the most in shadow is
            // not), so that a restore takes up the same documents.
            super::shadow::on_policy_change(cx.view, cx.book, change);
            if apply_policy_to_book(cx.book, change) {
                cx.view.put(&keys::policy(&change.scope), StateValue::Policy(change.clone()));
            }
            Ok(())
        }
        Payload::Release(release) => {
            let confirmed = release.outcome.as_ref().is_some_and(|d| d.status == DecisionStatus::Allowed);
            let tenant = release.outcome.as_ref().map(|d| d.tenant.clone()).unwrap_or_default();
            let kept = stage.take_in_flight(&mut cx, release)?;
            let undo = match &kept {
                Some(k) if !k.undo.is_empty() => &k.undo,
                _ => &release.undo,
            };
            settle(&mut cx, undo, &release.intent_id, &tenant, confirmed)?;
            stage.on_released(&mut cx, release, kept.as_ref().map(|k| k.intent.as_slice()), undo)
        }
        Payload::Hop(hop) => match stage.check(&mut cx, hop)? {
            Verdict::Pass { undo, usage, version } => {
                cx.note(&hop.intent.intent_id, "verdict", "pass", || format!("policy version {version}; {} reservation(s)", undo.len()));
                let key = env.route_key.clone().unwrap_or_default();
                pass_on(&mut cx, hop.clone(), key, undo, usage, version);
                Ok(())
            }
            Verdict::Deny { status, reason, retry_at_ms, usage, version } => {
                if cx.tracing(&hop.intent.intent_id) {
                    cx.note(&hop.intent.intent_id, "verdict", format!("{} {reason}", status.as_str()), || format!("policy version {version}; releases go to {} earlier stage(s)", hop.reservations.len()));
                }
                finish(&mut cx, hop, status, &reason, retry_at_ms, usage, version);
                Ok(())
            }
        },
        Payload::Intent(intent) => stage.on_intent(&mut cx, intent),
        Payload::Delivery(ev) => stage.on_delivery(&mut cx, ev),
        Payload::Command(cmd) => stage.on_command(&mut cx, cmd),
    }
}

/// Loads the partition's policy documents into `book` (after a restore).
pub fn load_policies(view: &PartitionView<'_>, book: &mut PolicyBook) -> Result<(), StageError> {
    for key in view.scan(keys::POLICY_PREFIX, usize::MAX)? {
        if let Some(StateValue::Policy(change)) = view.get(&key)? {
            let _ = apply_policy_to_book(book, &change);
        }
    }
    book.purging = !view.scan(keys::SHADOW_PURGE_PREFIX, 1)?.is_empty();
    Ok(())
}

/// Applies a policy change; false when it is not taken up.
fn apply_policy_to_book(book: &mut PolicyBook, change: &PolicyChange) -> bool {
    let (shadow, scope) = match change.scope.strip_prefix(crate::policy::resolve::SHADOW_PREFIX) {
        Some(rest) => (true, rest),
        None => (false, change.scope.as_str()),
    };
    let Ok(scope) = Scope::parse(scope) else { return false };
    // The router validated the document; one that fails here (a newer format
    // read by an older binary) is treated as removed rather than half-applied.
    let spec = change.spec_json.as_deref().and_then(|j| PolicySpec::from_json(j).ok());
    if shadow {
        // Past the most candidates at once, a new one is not taken up (the
        // same on every partition: they all read the one policies partition
        // in order); `sendgate shadow start` refuses it before publishing.
        book.set_shadow(scope, change.version, spec)
    } else {
        book.set(scope, change.version, spec);
        true
    }
}

/// The value an expiry entry compares with (see `Cx::expire_at`).
fn stamp_of(v: &StateValue) -> Option<i64> {
    match v {
        StateValue::Counter(c) => Some(c.bucket_start_ms),
        StateValue::Mark(m) => Some(m.at_ms),
        StateValue::Entry(e) => Some(e.since_ms),
        StateValue::Backoff(b) => Some(b.last_ms),
        StateValue::Clock(t) => Some(*t),
        StateValue::Trust(t) => Some(t.touched_ms),
        _ => None,
    }
}

/// What expired and needs more than its deletion.
enum Due {
    /// A held intent (its bytes): it gets a decision.
    Held(Vec<u8>),
    /// A delivery event waiting for its decision (its envelope's bytes).
    Waiting(Vec<u8>),
}

/// Drops what is due; returns what among it needs acting on.
fn sweep_expired(view: &mut PartitionView<'_>, now: i64) -> Result<Vec<Due>, StoreError> {
    let mut held = Vec::new();
    // Entries go in time order: start at the time the sweep reached, never
    // walking over what it already removed.
    if view.sweep_floor().is_some_and(|floor| floor > now) {
        // Nothing is due yet: the scan would find nothing.
        return Ok(held);
    }
    let cursor = view.get_time(keys::EXPIRY_CURSOR)?.unwrap_or(0);
    let mut reached = cursor;
    let entries = view.scan_from(keys::EXPIRY_PREFIX, &keys::expiry(cursor, b""), EXPIRY_SWEEP_MAX)?;
    // What the scan shows about the rest: the first entry not yet due, none
    // left at all, or (a full batch, all due) unknown.
    let floor = match entries.iter().filter_map(|e| keys::parse_expiry(e)).map(|(at, _)| at).find(|at| *at > now) {
        Some(at) => Some(at),
        None if entries.len() < EXPIRY_SWEEP_MAX => Some(i64::MAX),
        None => None,
    };
    for entry in entries {
        let Some((at, key)) = keys::parse_expiry(&entry) else { continue };
        if at > now {
            break;
        }
        reached = at;
        let stamp = view.get_time(&entry)?;
        // The first release indexed idempotency entries by bare intent id.
        let key = if key.contains(&b'/') { key.to_vec() } else { keys::legacy::final_decision(&String::from_utf8_lossy(key)) };
        view.delete(&entry);
        let expired = match stamp {
            None => true,
            // Rewritten since (a newer window, a newer mark): it stays.
            Some(s) => view.get(&key)?.as_ref().and_then(stamp_of) == Some(s),
        };
        if expired {
            if keys::is_held_intent(&key) {
                if let Some(StateValue::Intent(bytes)) = view.get(&key)? {
                    held.push(Due::Held(bytes));
                }
            } else if keys::is_reconcile_wait(&key) {
                if let Some(StateValue::Parked(bytes)) = view.get(&key)? {
                    held.push(Due::Waiting(bytes));
                }
            }
            view.delete(&key);
        }
    }
    if reached != cursor {
        view.put(keys::EXPIRY_CURSOR, StateValue::Clock(reached));
    }
    view.set_sweep_floor(floor);
    Ok(held)
}

/// Settles a reservation. Released (`confirmed` false): counters still in
/// the same window go down by one, marks this intent set are removed;
/// anything changed since is left. Confirmed: the counts stay, are no longer
/// in flight, and may now cross a quota alert threshold.
pub fn settle(cx: &mut Cx<'_, '_>, undo: &[Undo], intent_id: &str, tenant: &str, confirmed: bool) -> Result<(), StoreError> {
    for u in undo {
        let key = u.key.as_bytes();
        match (u.kind, cx.view.get(key)?) {
            (UndoKind::Counter, Some(StateValue::Counter(c))) if c.bucket_start_ms == u.bucket_start_ms => {
                let mut c = WindowCounter { count: if confirmed { c.count } else { (c.count - 1).max(0) }, pending: (c.pending - 1).max(0), ..c };
                if confirmed && u.limit > 0 {
                    // Counter keys are ctr/{scope}/{class}/{window}.
                    let mut parts = u.key.trim_start_matches("ctr/").rsplitn(3, '/');
                    let (window, _class, scope) = (parts.next().unwrap_or(""), parts.next(), parts.next().unwrap_or(""));
                    super::windows::quota_alerts(cx, scope, window, &mut c, u.limit as u64, tenant);
                }
                cx.view.put(key, StateValue::Counter(c));
            }
            (UndoKind::Mark, Some(StateValue::Mark(m))) if m.intent_id == intent_id && !confirmed => cx.view.delete(key),
            _ => {}
        }
    }
    Ok(())
}

/// The routing key of an intent at a stage.
pub fn route_key(stage: StageKind, intent: &SendIntent, book: &mut PolicyBook) -> String {
    match stage {
        StageKind::Sender => domain_of(&intent.sender).to_string(),
        StageKind::Tenant => intent.tenant.clone(),
        StageKind::Recipient => intent.recipient.clone(),
        StageKind::RecipientDomain => recipient_group(book, &intent.tenant, &intent.sender, &intent.recipient),
    }
}

/// The key of the recipient-domain stage: the recipient domain's provider
/// group under the policy in force, or the domain itself.
pub fn recipient_group(book: &mut PolicyBook, tenant: &str, sender: &str, recipient: &str) -> String {
    let rd = domain_of(recipient);
    book.effective(tenant, domain_of(sender), sender, Some(rd)).recipient_group(rd)
}

/// Passes an intent this stage allowed to the next stage on its route, or
/// allows it when this was the last.
pub fn pass_on(cx: &mut Cx<'_, '_>, mut hop: IntentHop, key: String, undo: Vec<Undo>, usage: Vec<Usage>, version: i64) {
    // The sender stage is always told the outcome, even with nothing to undo.
    if !undo.is_empty() || cx.kind == StageKind::Sender {
        hop.reservations.push(Reservation { stage: cx.kind.name().to_string(), key, undo });
    }
    hop.usage.extend(usage);
    hop.policy_version = hop.policy_version.max(version);
    if hop.route.is_empty() {
        let version = hop.policy_version;
        finish(cx, &hop, DecisionStatus::Allowed, "ok", None, Vec::new(), version);
        return;
    }
    let next_name = hop.route.remove(0);
    let next = StageKind::parse(&next_name).unwrap_or(StageKind::RecipientDomain);
    let next_key = route_key(next, &hop.intent, cx.book);
    cx.forward(next, next_key, Payload::Hop(hop));
}

/// Emits the decision on an intent that reached this stage, and sends each
/// reserving stage its release (the undo only when the intent is denied).
#[allow(clippy::too_many_arguments)]
pub fn finish(cx: &mut Cx<'_, '_>, hop: &IntentHop, status: DecisionStatus, reason: &str, retry_at_ms: Option<i64>, own_usage: Vec<Usage>, version: i64) {
    let allowed = status == DecisionStatus::Allowed;
    // Earlier stages reported usage with this intent reserved; a denied
    // intent does not keep it.
    let mut usage: Vec<Usage> = hop.usage.iter().map(|u| if allowed { u.clone() } else { unreserved(u) }).collect();
    usage.extend(own_usage);
    let decision = new_decision(&hop.intent, cx.now, &cx.source, cx.kind, status, reason, retry_at_ms, usage, hop.policy_version.max(version));
    for r in &hop.reservations {
        let Some(stage) = StageKind::parse(&r.stage) else { continue };
        // The sender stage settles its reservation either way (it tracks
        // what is in flight); the others only need a release.
        let undo = if allowed && stage != StageKind::Sender { Vec::new() } else { r.undo.clone() };
        let outcome = (stage == StageKind::Sender).then(|| decision.clone());
        if undo.is_empty() && outcome.is_none() {
            continue;
        }
        let intent_id = hop.intent.intent_id.clone();
        cx.forward(stage, r.key.clone(), Payload::Release(Release { intent_id, undo, outcome }));
    }
    cx.out.decisions.push(decision);
}

fn unreserved(u: &Usage) -> Usage {
    let used = (u.used - 1).max(0);
    Usage { used, remaining: (u.limit - used).max(0), ..u.clone() }
}

#[allow(clippy::too_many_arguments)]
pub fn new_decision(intent: &SendIntent, now: i64, source: &SourceRef, stage: StageKind, status: DecisionStatus, reason: &str, retry_at_ms: Option<i64>, usage: Vec<Usage>, policy_version: i64) -> Decision {
    Decision {
        intent_id: intent.intent_id.clone(),
        tenant: intent.tenant.clone(),
        sender: intent.sender.clone(),
        recipient: intent.recipient.clone(),
        status,
        reason: reason.to_string(),
        retry_at_ms,
        usage,
        policy_version,
        decided_at_ms: now,
        source: source.clone(),
        stage: Some(stage.name().to_string()),
        replayed: false,
    }
}

/// Encodes an intent for keeping in state (held, in flight).
pub fn encode_intent(intent: &SendIntent) -> Vec<u8> {
    codec::encode(RecordType::SendIntent, intent).expect("an intent always fits its schema")
}

pub fn decode_intent(key: &str, bytes: &[u8]) -> Result<SendIntent, StoreError> {
    codec::decode(RecordType::SendIntent, bytes).map_err(|e| StoreError::Corrupt { key: key.to_string(), why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemStore, StageStore};

    /// The checks each intent gets, with a trace of `only` (None: all).
    fn traced(only: Option<&str>) -> Vec<(String, usize)> {
        let stage = super::super::make_stage(StageKind::Sender, super::super::SenderConfig::default());
        let mut store = StageStore::new(Box::new(MemStore::default()));
        let mut book = PolicyBook::default();
        let mut out = StageOutput { trace: Some(Vec::new()), trace_only: only.map(str::to_string), ..StageOutput::default() };
        let mut counts = Vec::new();
        for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
            let intent = SendIntent::new(id, "acme", "m@acme.com", &format!("p{n}@x.example"), IntentClass::Outbound);
            let mut env = StageEnvelope::new(1_800_000_000_000 + n as i64, SourceRef { topic: "intents".into(), partition: 0, offset: n as i64 }, Payload::Intent(intent));
            env.route_key = Some("acme.com".into());
            store.begin_record(0);
            out.clear();
            process(stage.as_ref(), &mut store.view(0), &mut book, &env, &mut out).unwrap();
            let trace = out.trace.as_ref().unwrap();
            assert!(trace.iter().all(|t| t.intent_id == id), "a record's trace is its own intent's");
            counts.push((id.to_string(), trace.len()));
        }
        counts
    }

    #[test]
    fn a_trace_of_one_intent_records_its_checks_alone_and_all_of_them() {
        let all = traced(None);
        assert!(all.iter().all(|(_, n)| *n > 0), "{all:?}");
        let only_b = traced(Some("b"));
        for ((id, n_all), (_, n_only)) in all.iter().zip(&only_b) {
            assert_eq!(*n_only, if id == "b" { *n_all } else { 0 }, "{id}: {only_b:?} against {all:?}");
        }
    }
}
