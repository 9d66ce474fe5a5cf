//! The sender stage: mailbox and sender-domain windows, business hours,
//! signal budgets, pause state and intent-id idempotency.
//!
//! `SenderStage::process` is a pure function of (state, record, log time,
//! policy): it reads and writes state only through the partition view and
//! returns decisions and alerts; the runtime does all I/O. Given the same
//! stage log it produces byte-identical outputs.

use super::keys;
use super::signals::{self, Signal, Tier};
use crate::clock::{window_end, window_start, Window};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::{BreachAction, Limit, LimitScope, PolicyBook, PolicySpec, Scope};
use crate::state::{PartitionView, PauseState, StateValue, StoreError, WindowCounter};
use std::collections::BTreeMap;

pub const STAGE_NAME: &str = "sender";

/// Most expired idempotency entries dropped while handling one record: the
/// sweep runs on every record, so it keeps up with any steady rate up to
/// this many expiries per record, and no one record does unbounded work.
const EXPIRY_SWEEP_MAX: usize = 8;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// How long an ALLOWED or BLOCKED intent id is remembered.
    pub idempotency_retention_ms: i64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig { idempotency_retention_ms: 7 * 24 * 3_600_000 }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct StageOutput {
    pub decisions: Vec<Decision>,
    pub alerts: Vec<Alert>,
}

impl StageOutput {
    pub fn clear(&mut self) {
        self.decisions.clear();
        self.alerts.clear();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record is valid Avro but cannot be acted on (goes to the dead-letter topic).
    #[error("{0}")]
    BadRecord(String),
}

pub struct SenderStage {
    pub config: SenderConfig,
}

/// Raises alerts with ids derived from the record that raised them.
struct Alerts<'a> {
    source: &'a SourceRef,
    at_ms: i64,
    out: &'a mut Vec<Alert>,
}

impl Alerts<'_> {
    fn raise(&mut self, tenant: &str, scope: &str, kind: &str, message: String, details: &[(&str, String)]) {
        let n = self.out.len();
        self.out.push(Alert {
            alert_id: format!("{}/{}/{}/{}", self.source.topic, self.source.partition, self.source.offset, n),
            tenant: tenant.to_string(),
            scope: scope.to_string(),
            kind: kind.to_string(),
            message,
            at_ms: self.at_ms,
            details: details.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        });
    }
}

/// One window a decision checked.
struct Check<'a> {
    limit: &'a Limit,
    scope: String,
    key: Vec<u8>,
    counter: WindowCounter,
    max: u64,
    end_ms: i64,
}

impl SenderStage {
    pub fn new(config: SenderConfig) -> Self {
        SenderStage { config }
    }

    /// Loads the partition's policy documents into `book` (after a restore).
    pub fn load_policies(view: &PartitionView<'_>, book: &mut PolicyBook) -> Result<(), StageError> {
        for key in view.scan(keys::POLICY_PREFIX, usize::MAX)? {
            if let Some(StateValue::Policy(change)) = view.get(&key)? {
                apply_policy_to_book(book, &change);
            }
        }
        Ok(())
    }

    pub fn process(&self, view: &mut PartitionView<'_>, book: &mut PolicyBook, env: &StageEnvelope, out: &mut StageOutput) -> Result<(), StageError> {
        // The stage clock: the largest log time seen in this partition. It only
        // moves forward, and it is part of the state, so a replay sees the same.
        let clock = match view.get(keys::CLOCK)? {
            Some(StateValue::Clock(t)) => t,
            _ => i64::MIN,
        };
        let now = clock.max(env.log_time_ms);
        if now != clock {
            view.put(keys::CLOCK, StateValue::Clock(now));
        }
        self.expire_idempotency(view, now)?;
        let mut alerts = Alerts { source: &env.source, at_ms: now, out: &mut out.alerts };
        if let Some(intent) = &env.intent {
            let d = self.on_intent(view, book, intent, now, &env.source, &mut alerts, false)?;
            out.decisions.push(d);
        } else if let Some(ev) = &env.delivery {
            self.on_delivery(view, book, ev, now, &mut alerts)?;
        } else if let Some(cmd) = &env.command {
            if let Some(d) = self.on_command(view, book, cmd, now, &env.source, &mut alerts)? {
                out.decisions.push(d);
            }
        } else if let Some(change) = &env.policy {
            view.put(&keys::policy(&change.scope), StateValue::Policy(change.clone()));
            apply_policy_to_book(book, change);
        } else {
            return Err(StageError::BadRecord("stage envelope carries no payload".into()));
        }
        Ok(())
    }

    fn expire_idempotency(&self, view: &mut PartitionView<'_>, now: i64) -> Result<(), StoreError> {
        for key in view.scan(keys::EXPIRY_PREFIX, EXPIRY_SWEEP_MAX)? {
            let Some((expires_at, intent_id)) = keys::parse_expiry(&key) else { continue };
            if expires_at > now {
                break;
            }
            view.delete(&key);
            view.delete(&keys::final_decision(&intent_id));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_intent(
        &self,
        view: &mut PartitionView<'_>,
        book: &mut PolicyBook,
        intent: &SendIntent,
        now: i64,
        source: &SourceRef,
        alerts: &mut Alerts<'_>,
        approved: bool,
    ) -> Result<Decision, StageError> {
        // Idempotency: a final decision is repeated, and touches no counter.
        if let Some(StateValue::FinalDecision(bytes)) = view.get(&keys::final_decision(&intent.intent_id))? {
            let mut d: Decision = codec::decode(RecordType::Decision, &bytes)
                .map_err(|e| StoreError::Corrupt { key: intent.intent_id.clone(), why: e.to_string() })?;
            d.replayed = true;
            d.source = source.clone();
            return Ok(d);
        }
        let sender = Address::from_normalised(&intent.sender).ok_or_else(|| StageError::BadRecord(format!("sender {:?} is not a normalised address", intent.sender)))?;
        let domain = sender.domain();
        let mailbox_scope = format!("mailbox:{}", sender.as_str());
        let domain_scope = format!("sender_domain:{domain}");
        let policy = book.effective(&intent.tenant, domain, sender.as_str());
        let mut decision = Decision {
            intent_id: intent.intent_id.clone(),
            tenant: intent.tenant.clone(),
            sender: intent.sender.clone(),
            recipient: intent.recipient.clone(),
            status: DecisionStatus::Allowed,
            reason: "ok".into(),
            retry_at_ms: None,
            usage: Vec::new(),
            policy_version: policy.version,
            decided_at_ms: now,
            source: source.clone(),
            stage: Some(STAGE_NAME.into()),
            replayed: false,
        };
        let capped = intent.class != IntentClass::Reply;

        // 1. Pause: the sender domain or the mailbox needs a resume. Replies go on.
        if capped {
            for scope in [&domain_scope, &mailbox_scope] {
                if view.get(&keys::pause(scope))?.is_some() {
                    decision.status = DecisionStatus::Paused;
                    decision.reason = if scope == &domain_scope { "sender_domain_paused" } else { "mailbox_paused" }.into();
                    return Ok(decision);
                }
            }
        }

        // 2. Approval: a person must see a risky send before any capacity is spent.
        if intent.requires_approval && !approved {
            view.put(&keys::held_intent(&intent.intent_id), StateValue::FinalDecision(codec::encode(RecordType::SendIntent, intent).expect("intent fits its schema")));
            decision.status = DecisionStatus::Held;
            decision.reason = "pending_approval".into();
            return Ok(decision);
        }

        // 3. Business hours (cold outbound only), in the tenant's zone.
        if intent.class == IntentClass::Outbound {
            if let Some(bh) = &policy.business_hours {
                if !bh.is_open(policy.tz, now) {
                    decision.status = DecisionStatus::Deferred;
                    decision.reason = "outside_business_hours".into();
                    decision.retry_at_ms = bh.next_opening(policy.tz, now);
                    return Ok(decision);
                }
            }
        }

        // 4. Windows: check all, then reserve all or none.
        let ring = match view.get(&keys::signals(domain))? {
            Some(StateValue::Signals(r)) => r,
            _ => signals::empty_ring(),
        };
        let (bt, ct) = signals::tiers(&signals::totals(&ring, now, policy.signals.window_hours), &policy.signals);
        let slow = bt.max(ct) >= Tier::Slow;
        let mut checks = Vec::new();
        for limit in policy.limits_for(intent.class) {
            let scope = match limit.key.scope {
                LimitScope::Mailbox => &mailbox_scope,
                LimitScope::SenderDomain => &domain_scope,
            };
            let key = keys::counter(scope, intent.class, limit.key.window);
            let start = window_start(limit.key.window, policy.tz, now);
            let counter = match view.get(&key)? {
                Some(StateValue::Counter(c)) if c.bucket_start_ms == start => c,
                _ => WindowCounter { bucket_start_ms: start, count: 0, alerted_pct: 0 },
            };
            // The slow tier halves every limit (never below one send).
            let max = if slow && limit.max > 0 { (limit.max / 2).max(1) } else { limit.max };
            checks.push(Check { limit, scope: scope.clone(), key, counter, max, end_ms: window_end(limit.key.window, policy.tz, now) });
        }
        let breached: Vec<&Check> = checks.iter().filter(|c| c.counter.count as u64 + 1 > c.max).collect();
        // The binding breach is the one whose capacity returns last. An
        // approved intent was held for exactly the review a hold asks for.
        let binding = |action: BreachAction| breached.iter().filter(|c| c.limit.on_breach == action).max_by_key(|c| c.end_ms).copied();
        if let Some(c) = binding(BreachAction::Defer) {
            decision.status = DecisionStatus::Deferred;
            decision.reason = c.limit.key.window.breach_reason().into();
            decision.retry_at_ms = Some(c.end_ms);
        } else if let Some(c) = binding(BreachAction::Hold).filter(|_| !approved) {
            decision.status = DecisionStatus::Held;
            decision.reason = c.limit.key.window.breach_reason().into();
            view.put(&keys::held_intent(&intent.intent_id), StateValue::FinalDecision(codec::encode(RecordType::SendIntent, intent).expect("intent fits its schema")));
        }
        let allowed = decision.status == DecisionStatus::Allowed;
        for c in &checks {
            let mut counter = c.counter;
            if allowed {
                counter.count += 1;
                self.quota_alerts(c, &mut counter, &intent.tenant, alerts);
                view.put(&c.key, StateValue::Counter(counter));
            }
            decision.usage.push(Usage {
                scope: c.scope.clone(),
                window: c.limit.key.window.as_str().into(),
                used: counter.count,
                limit: c.max as i64,
                remaining: (c.max as i64 - counter.count).max(0),
            });
        }
        for c in breached.iter().filter(|c| allowed && c.limit.on_breach == BreachAction::Alert) {
            alerts.raise(&intent.tenant, &c.scope, "limit_exceeded_allowed", format!("{} exceeded its {} limit of {}; allowed by policy (alert only)", c.scope, c.limit.key.window.as_str(), c.max), &[("intent_id", intent.intent_id.clone())]);
        }
        if !allowed {
            return Ok(decision);
        }

        // Replies are never capped, but they are counted.
        if !capped {
            for (scope, window) in [(&mailbox_scope, Window::Day), (&domain_scope, Window::Day)] {
                let key = keys::counter(scope, IntentClass::Reply, window);
                let start = window_start(window, policy.tz, now);
                let mut c = match view.get(&key)? {
                    Some(StateValue::Counter(c)) if c.bucket_start_ms == start => c,
                    _ => WindowCounter { bucket_start_ms: start, count: 0, alerted_pct: 0 },
                };
                c.count += 1;
                view.put(&key, StateValue::Counter(c));
            }
        }

        // The send counts toward the signal denominator.
        let mut ring = ring;
        signals::record(&mut ring, Signal::Send, now, policy.signals.window_hours);
        view.put(&keys::signals(domain), StateValue::Signals(ring));
        self.remember_final(view, &decision, now);
        Ok(decision)
    }

    fn remember_final(&self, view: &mut PartitionView<'_>, decision: &Decision, now: i64) {
        let bytes = codec::encode(RecordType::Decision, decision).expect("decision fits its schema");
        view.put(&keys::final_decision(&decision.intent_id), StateValue::FinalDecision(bytes));
        view.put(&keys::expiry(now + self.config.idempotency_retention_ms, &decision.intent_id), StateValue::Marker);
        view.delete(&keys::held_intent(&decision.intent_id));
    }

    fn quota_alerts(&self, c: &Check<'_>, counter: &mut WindowCounter, tenant: &str, alerts: &mut Alerts<'_>) {
        if c.max == 0 {
            return;
        }
        let pct = (counter.count as u64 * 100 / c.max) as i32;
        for threshold in [80, 100] {
            if pct >= threshold && counter.alerted_pct < threshold {
                counter.alerted_pct = threshold;
                alerts.raise(
                    tenant,
                    &c.scope,
                    if threshold == 80 { "quota_80" } else { "quota_100" },
                    format!("{} has used {} of its {} {} limit ({}%)", c.scope, counter.count, c.max, c.limit.key.window.as_str(), pct),
                    &[("window", c.limit.key.window.as_str().into()), ("used", counter.count.to_string()), ("limit", c.max.to_string()), ("window_end_ms", c.end_ms.to_string())],
                );
            }
        }
    }

    fn on_delivery(&self, view: &mut PartitionView<'_>, book: &mut PolicyBook, ev: &DeliveryEvent, now: i64, alerts: &mut Alerts<'_>) -> Result<(), StageError> {
        let signal = match ev.kind {
            DeliveryKind::BounceHard => Signal::HardBounce,
            DeliveryKind::Complaint => Signal::Complaint,
            // Soft bounces, deferrals and engagement do not move reputation budgets here.
            _ => return Ok(()),
        };
        let sender = Address::from_normalised(&ev.sender).ok_or_else(|| StageError::BadRecord(format!("sender {:?} is not a normalised address", ev.sender)))?;
        let domain = sender.domain();
        let policy = book.effective(&ev.tenant, domain, sender.as_str());
        let key = keys::signals(domain);
        let mut ring = match view.get(&key)? {
            Some(StateValue::Signals(r)) => r,
            _ => signals::empty_ring(),
        };
        signals::record(&mut ring, signal, now, policy.signals.window_hours);
        let rates = signals::totals(&ring, now, policy.signals.window_hours);
        let (bt, ct) = signals::tiers(&rates, &policy.signals);
        let scope = format!("sender_domain:{domain}");
        for (name, old, new, rate) in [("hard_bounce", Tier::parse(&ring.bounce_tier), bt, rates.bounce_rate()), ("complaint", Tier::parse(&ring.complaint_tier), ct, rates.complaint_rate())] {
            if old != new {
                alerts.raise(
                    &ev.tenant,
                    &scope,
                    "signal_tier_changed",
                    format!("{scope} {name} rate {:.3}% over {} sends: {} -> {}", rate * 100.0, rates.sends, old.as_str(), new.as_str()),
                    &[("signal", name.into()), ("from", old.as_str().into()), ("to", new.as_str().into()), ("rate", format!("{rate:.6}")), ("sends", rates.sends.to_string())],
                );
            }
        }
        ring.bounce_tier = bt.as_str().into();
        ring.complaint_tier = ct.as_str().into();
        view.put(&key, StateValue::Signals(ring));
        if bt.max(ct) == Tier::Pause && view.get(&keys::pause(&scope))?.is_none() {
            let why = if bt == Tier::Pause { "hard_bounce_rate" } else { "complaint_rate" };
            view.put(&keys::pause(&scope), StateValue::Pause(PauseState { reason: why.into(), since_ms: now, by: "signals".into() }));
            alerts.raise(
                &ev.tenant,
                &scope,
                "sender_paused",
                format!("{scope} paused: {why} over the pause threshold ({:.3}% bounces, {:.3}% complaints over {} sends); a resume command lifts it", rates.bounce_rate() * 100.0, rates.complaint_rate() * 100.0, rates.sends),
                &[("reason", why.into())],
            );
        }
        Ok(())
    }

    fn on_command(&self, view: &mut PartitionView<'_>, book: &mut PolicyBook, cmd: &Command, now: i64, source: &SourceRef, alerts: &mut Alerts<'_>) -> Result<Option<Decision>, StageError> {
        match cmd.kind {
            CommandKind::Pause | CommandKind::Resume => {
                let scope = Scope::parse(&cmd.target).map_err(StageError::BadRecord)?;
                let scope_str = scope.to_string();
                let key = keys::pause(&scope_str);
                let was_paused = view.get(&key)?.is_some();
                if cmd.kind == CommandKind::Pause {
                    if !was_paused {
                        view.put(&key, StateValue::Pause(PauseState { reason: cmd.reason.clone().unwrap_or_else(|| "operator".into()), since_ms: now, by: cmd.operator.clone().unwrap_or_else(|| "operator".into()) }));
                        alerts.raise(&cmd.tenant, &scope_str, "sender_paused", format!("{scope_str} paused by an operator"), &[("command_id", cmd.command_id.clone())]);
                    }
                } else if was_paused {
                    view.delete(&key);
                    // A resume starts a fresh observation: the old rates led to the pause.
                    if let Scope::SenderDomain(d) = &scope {
                        view.delete(&keys::signals(d));
                    }
                    alerts.raise(&cmd.tenant, &scope_str, "sender_resumed", format!("{scope_str} resumed by an operator"), &[("command_id", cmd.command_id.clone())]);
                }
                Ok(None)
            }
            CommandKind::Approve | CommandKind::Reject => {
                let Some(StateValue::FinalDecision(bytes)) = view.get(&keys::held_intent(&cmd.target))? else {
                    return Err(StageError::BadRecord(format!("no held intent {:?} in this partition (was it decided already, or is the command's sender wrong?)", cmd.target)));
                };
                let intent: SendIntent = codec::decode(RecordType::SendIntent, &bytes).map_err(|e| StoreError::Corrupt { key: cmd.target.clone(), why: e.to_string() })?;
                if cmd.kind == CommandKind::Approve {
                    // The held intent stays held (and approvable) unless the
                    // approved evaluation is final; an ALLOWED one removes it.
                    return Ok(Some(self.on_intent(view, book, &intent, now, source, alerts, true)?));
                }
                let decision = Decision {
                    intent_id: intent.intent_id.clone(),
                    tenant: intent.tenant.clone(),
                    sender: intent.sender.clone(),
                    recipient: intent.recipient.clone(),
                    status: DecisionStatus::Blocked,
                    reason: "rejected_by_operator".into(),
                    retry_at_ms: None,
                    usage: Vec::new(),
                    policy_version: 0,
                    decided_at_ms: now,
                    source: source.clone(),
                    stage: Some(STAGE_NAME.into()),
                    replayed: false,
                };
                self.remember_final(view, &decision, now);
                Ok(Some(decision))
            }
            other => Err(StageError::BadRecord(format!("command {other:?} is not handled by this version of sendgate"))),
        }
    }
}

fn apply_policy_to_book(book: &mut PolicyBook, change: &crate::model::PolicyChange) {
    let Ok(scope) = Scope::parse(&change.scope) else { return };
    // The router validated the document; one that fails here (a newer format
    // read by an older binary) is treated as removed rather than half-applied.
    let spec = change.spec_json.as_deref().and_then(|j| PolicySpec::from_json(j).ok());
    book.set(scope, change.version, spec);
}
