//! The sender stage, keyed by sender domain: intent-id idempotency,
//! restrictions, pauses, approval holds, business hours, warm-up, mailbox
//! and sender-domain windows, and the signal budgets (bounces, complaints,
//! ISP throttling across recipient domains).
//!
//! It is the first stage, so the checks that spend nothing (idempotency,
//! restrictions, pause, approval, business hours) run before any capacity is
//! reserved anywhere, and it is where the outcome of every intent comes back.

use super::keys;
use super::pipeline::{self, domain_of, Cx, InFlight, Stage, StageError, StageKind, Verdict};
use super::feedback::FeedbackAction;
use super::signals::{self, Signal, Tier};
use super::windows::{self, WindowCheck};
use crate::clock::{resolve_local, window_end, window_start, Window};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::spec::LimitClass;
use crate::policy::resolve::Warmup;
use crate::policy::{BreachAction, EffectivePolicy, Limit, LimitKey, LimitScope, Scope};
use crate::state::{Entry, PauseState, StateValue, StoreError, ThrottleSeen};

const DAY_MS: i64 = 86_400_000;
/// A resubmitted intent whose first submission is still being decided is
/// told to come back after this long.
const PENDING_RETRY_MS: i64 = 1_000;
/// Most intents a partition keeps waiting for in-flight reservations; past
/// it, an intent is decided at once (deferred: the safe side). Every
/// outcome re-decides all of them, so this also bounds that work.
const PARK_MAX: i64 = 64;

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

pub struct SenderStage {
    pub config: SenderConfig,
}

impl SenderStage {
    pub fn new(config: SenderConfig) -> Self {
        SenderStage { config }
    }

    fn decide_here(&self, cx: &mut Cx<'_, '_>, intent: &SendIntent, status: DecisionStatus, reason: &str, retry_at_ms: Option<i64>, usage: Vec<Usage>, version: i64) -> Result<(), StoreError> {
        if cx.tracing(&intent.intent_id) {
            cx.note(&intent.intent_id, "verdict", format!("{} {reason}", status.as_str()), || format!("decided by the sender stage under policy version {version}"));
        }
        let d = pipeline::new_decision(intent, cx.now, &cx.source, StageKind::Sender, status, reason, retry_at_ms, usage, version);
        self.record_outcome(cx, intent, &d)?;
        cx.out.decisions.push(d);
        Ok(())
    }

    /// Keeps what the outcome of an intent means for later: final decisions
    /// for idempotency, held intents for the operator.
    fn record_outcome(&self, cx: &mut Cx<'_, '_>, intent: &SendIntent, d: &Decision) -> Result<(), StoreError> {
        super::reconcile::on_outcome(self, cx, d)?;
        match d.status {
            s if s.is_final() => {
                let bytes = codec::encode(RecordType::Decision, d).expect("a decision always fits its schema");
                let key = keys::intent_state(&d.tenant, &d.intent_id);
                cx.view.put(&key, StateValue::FinalDecision(bytes));
                cx.expire_at(cx.now + self.config.idempotency_retention_ms, &key, None);
                cx.view.delete(&keys::held_intent(&d.tenant, &d.intent_id));
            }
            DecisionStatus::Held => {
                let key = keys::held_intent(&intent.tenant, &intent.intent_id);
                let fresh = !matches!(cx.view.get(&key), Ok(Some(_)));
                cx.view.put(&key, StateValue::Intent(pipeline::encode_intent(intent)));
                // Held until approved, rejected or, counted from when it
                // was first held, the policy's time runs out.
                let ttl = cx.book.effective(&intent.tenant, domain_of(&intent.sender), &intent.sender, None).held_expire_ms;
                if fresh && ttl > 0 {
                    cx.expire_at(cx.now + ttl, &key, None);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Decides an intent, or parks it. `in_turn`: it is decided now as the
    /// earliest waiting intent to its recipient (see [`Self::waits_behind`]).
    fn evaluate(&self, cx: &mut Cx<'_, '_>, intent: &SendIntent, approved: bool, in_turn: bool) -> Result<(), StageError> {
        // Idempotency: a final decision is repeated, and touches no counter.
        if let Some(mut d) = self.final_decision(cx, &intent.tenant, &intent.intent_id)? {
            if d.sender != intent.sender || d.recipient != intent.recipient {
                // The same id for another send of the same tenant: neither a
                // replay of the first one's decision nor a second decision
                // under its key.
                if cx.tracing(&intent.intent_id) {
                    cx.note(&intent.intent_id, "verdict", "BLOCKED intent_id_reused".to_string(), || "an earlier intent of this tenant with this id was decided for another sender or recipient".to_string());
                }
                let d = pipeline::new_decision(intent, cx.now, &cx.source, StageKind::Sender, DecisionStatus::Blocked, "intent_id_reused", None, Vec::new(), d.policy_version);
                cx.out.decisions.push(d);
                return Ok(());
            }
            d.replayed = true;
            d.source = cx.source.clone();
            cx.out.decisions.push(d);
            return Ok(());
        }
        if self.pending(cx, &intent.tenant, &intent.intent_id, false)?.is_some() {
            let version = cx.book.effective(&intent.tenant, domain_of(&intent.sender), &intent.sender, None).version;
            let d = pipeline::new_decision(intent, cx.now, &cx.source, StageKind::Sender, DecisionStatus::Deferred, "decision_pending", Some(cx.now + PENDING_RETRY_MS), Vec::new(), version);
            cx.out.decisions.push(d);
            return Ok(());
        }
        let sender = Address::from_normalised(&intent.sender).ok_or_else(|| StageError::BadRecord(format!("sender {:?} is not a normalised address", intent.sender)))?;
        let domain = sender.domain().to_string();
        let policy = cx.book.effective(&intent.tenant, &domain, sender.as_str(), None);
        let v = policy.version;
        // 0. A domain a tenant owns sends that tenant's mail only.
        if cx.book.owner_of(&domain).is_some_and(|owner| owner != intent.tenant) {
            cx.note(&intent.intent_id, "owner", "denied", || format!("sender_domain:{domain} is owned by another tenant"));
            self.decide_here(cx, intent, DecisionStatus::Blocked, "sender_domain_owned_by_another_tenant", None, Vec::new(), v)?;
            return Ok(());
        }
        let capped = intent.class != IntentClass::Reply;

        cx.note(&intent.intent_id, "policy", "pass", || {
            let rules: Vec<String> = policy.limits_for(intent.class).map(|l| format!("{}={}({})", l.key, l.max, l.on_breach.as_str())).collect();
            format!("version {v}; zone {}; business hours {}; limits {}", policy.tz, if policy.business_hours.is_some() { "on" } else { "off" }, rules.join(", "))
        });
        // 1. Restrictions: the most specific match wins.
        if let Some(r) = self.restriction(cx, &intent.tenant, &sender)? {
            cx.note(&intent.intent_id, "restriction", "denied", || format!("{} since {} by {}: {}", r.kind, crate::clock::format_ms(r.since_ms), r.by, r.reason));
            match r.until_ms {
                Some(until) => self.decide_here(cx, intent, DecisionStatus::Deferred, "sender_restricted", Some(until), Vec::new(), v)?,
                None => self.decide_here(cx, intent, DecisionStatus::Paused, "sender_restricted", None, Vec::new(), v)?,
            }
            return Ok(());
        }

        // 2. Pause: the sender domain or the mailbox needs a resume. Replies go on.
        // A pause for the rest of the day says when it ends.
        if capped {
            let domain_scope = format!("sender_domain:{domain}");
            let mailbox_scope = format!("mailbox:{}", sender.as_str());
            self.auto_resume(cx, &policy, &intent.tenant, &domain_scope, &keys::signals(&domain), Some(&domain))?;
            self.auto_resume(cx, &policy, &intent.tenant, &mailbox_scope, &keys::mailbox_signals(sender.as_str()), Some(sender.as_str()))?;
            for (scope, reason) in [(&domain_scope, "sender_domain_paused"), (&mailbox_scope, "mailbox_paused")] {
                if cx.view.get(&keys::pause(scope))?.is_some() {
                    self.decide_here(cx, intent, DecisionStatus::Paused, reason, None, Vec::new(), v)?;
                    return Ok(());
                }
            }
            for (scope, reason) in [(&domain_scope, "sender_domain_paused_for_day"), (&mailbox_scope, "mailbox_paused_for_day")] {
                if let Some(until) = cx.view.get_time(&keys::day_pause(scope))?.filter(|until| *until > cx.now) {
                    cx.note(&intent.intent_id, "rest_of_day", "denied", || format!("{scope} paused by today's rates until {}", crate::clock::format_ms(until)));
                    let retry = super::retry::after_window(&policy, intent, until, DAY_MS);
                    self.decide_here(cx, intent, DecisionStatus::Paused, reason, Some(retry), Vec::new(), v)?;
                    return Ok(());
                }
            }
        }

        // 3. Approval: a person sees a risky send before any capacity is spent.
        if intent.requires_approval && !approved {
            self.decide_here(cx, intent, DecisionStatus::Held, "pending_approval", None, Vec::new(), v)?;
            return Ok(());
        }

        // 4. Business hours (cold outbound only), in the tenant's zone.
        if intent.class == IntentClass::Outbound {
            if let Some(bh) = &policy.business_hours {
                if !bh.is_open(policy.tz, cx.now) {
                    self.decide_here(cx, intent, DecisionStatus::Deferred, "outside_business_hours", bh.next_opening(policy.tz, cx.now).map(|t| super::retry::at_opening(&policy, intent, t)), Vec::new(), v)?;
                    return Ok(());
                }
            }
        }

        // 5. Order: an earlier intent of this tenant to this recipient waits
        // for reservations in flight; this one waits behind it, so that the
        // later stages (the recipient's caps, its cooldown) judge one
        // sender domain's intents to a recipient in the order they came.
        // (Only where the recipient stage judges by order: otherwise waiting
        // would change nothing there and only hold the intent back.)
        if capped && !in_turn && self.waits_behind(cx, &intent.tenant, &intent.recipient)? && cx.book.effective(&intent.tenant, &domain, sender.as_str(), Some(domain_of(&intent.recipient))).recipient_order_matters(intent.class) {
            cx.note(&intent.intent_id, "order", "waiting", || format!("an earlier intent to {} waits for reservations in flight", intent.recipient));
            if self.park(cx, intent, approved, &keys::recipient_order_queue(&intent.tenant, &intent.recipient))? {
                return Ok(());
            }
        }

        // 6. Windows, warm-up included: check all, then reserve all or none.
        // The domain's signals under the domain's policy, the mailbox's
        // under its own; the most restrictive tier of all wins.
        let domain_policy = cx.book.effective(&intent.tenant, &domain, "", None);
        let mut tier = self.signal_tier(cx, &intent.intent_id, &format!("sender_domain:{domain}"), &keys::signals(&domain), &domain_policy)?;
        if policy.signals.per_mailbox {
            tier = tier.max(self.signal_tier(cx, &intent.intent_id, &format!("mailbox:{}", sender.as_str()), &keys::mailbox_signals(sender.as_str()), &policy)?);
        }
        // The slow tier halves every sender limit (never below one send).
        let halve = |max: u64| if tier >= Tier::Slow && max > 0 { (max / 2).max(1) } else { max };
        // A mailbox's windows follow its own zone; the domain's, the zone of
        // the domain's policy (not of the mailbox that happens to send).
        let domain_tz = domain_policy.tz;
        let mut checks = Vec::new();
        for limit in policy.limits_at(intent.class, &[LimitScope::Mailbox, LimitScope::SenderDomain]) {
            let (scope, tz) = match limit.key.scope {
                LimitScope::Mailbox => (format!("mailbox:{}", sender.as_str()), policy.tz),
                _ => (format!("sender_domain:{domain}"), domain_tz),
            };
            let reason = limit.key.window.breach_reason();
            checks.push(WindowCheck::load(cx, tz, limit, scope, limit.key.class.as_str(), halve(limit.max), reason)?);
        }
        if capped {
            // The domain's ramp, from the domain's first intent; a new
            // mailbox's, from its own.
            // Engagement (opt-in) may hold the domain a step back or let it take the next early.
            let (shift, rate) = domain_engagement_shift(cx.view, &domain_policy, &domain, cx.now)?;
            if let Some(rate) = rate {
                cx.note(&intent.intent_id, "engagement", ["held", "as scheduled", "ahead"][(shift + 1) as usize], || format!("sender_domain:{domain}: {:.1}% engaged over 7 days", rate * 100.0));
            }
            for (limit, max) in self.warmup_limits(cx, policy.warmup.as_ref(), policy.tz, &domain, intent.class, shift)? {
                checks.push(WindowCheck::load(cx, domain_tz, &limit, format!("warmup:sender_domain:{domain}"), "all", halve(max), "warmup_limit")?);
            }
            for (limit, max) in self.warmup_limits(cx, policy.mailbox_warmup.as_ref(), policy.tz, sender.as_str(), intent.class, 0)? {
                checks.push(WindowCheck::load(cx, policy.tz, &limit, format!("warmup:mailbox:{}", sender.as_str()), "all", halve(max), "warmup_limit")?);
            }
            // The trust ladders: the caps of the step each subject is at.
            let subjects = super::trust::subjects(&intent.tenant, sender.as_str(), &domain, &intent.recipient, &policy, &domain_policy);
            checks.extend(super::trust::checks(cx, intent, &subjects, halve)?);
        }
        let verdict = windows::judge(&checks, approved, |end, len| super::retry::after_window(&policy, intent, end, len));
        windows::note(cx, &intent.intent_id, &checks, false);
        if let Some((status, reason, retry)) = verdict {
            // Full only because of intents still in flight, which a later
            // stage may yet release: wait for their outcome rather than
            // defer an intent that would fit.
            if let Some(c) = windows::waiting_on_in_flight(&checks, approved) {
                let counter = String::from_utf8_lossy(&c.key).into_owned();
                if self.park(cx, intent, approved, &counter)? {
                    return Ok(());
                }
            }
            let usage = checks.iter().map(WindowCheck::usage).collect();
            self.decide_here(cx, intent, status, reason, retry, usage, v)?;
            return Ok(());
        }
        let mut undo = windows::reserve(cx, &mut checks, &policy, &intent.tenant, &intent.intent_id);
        if !capped {
            // Replies are never capped, but they are counted.
            for (scope, tz) in [(format!("mailbox:{}", sender.as_str()), policy.tz), (format!("sender_domain:{domain}"), domain_tz)] {
                undo.push(windows::count_uncapped(cx, tz, &scope, IntentClass::Reply.as_str(), Window::Day)?);
            }
        }
        let usage = checks.iter().map(WindowCheck::usage).collect();

        // 7. Pass it on; the outcome comes back here.
        let mut route = Vec::new();
        // (A reply reaches the tenant stage only for a total that caps replies.)
        if policy.limits_at(intent.class, &[LimitScope::Tenant]).next().is_some() {
            route.push(StageKind::Tenant.name().to_string());
        }
        route.push(StageKind::Recipient.name().to_string());
        if self.needs_recipient_domain_stage(cx, intent, &domain)? {
            route.push(StageKind::RecipientDomain.name().to_string());
        }
        // No expiry: the outcome always comes back (it travels in the same
        // transactions), and it removes the key. The reservation stays here
        // with it: the outcome's release settles it, and the hops and the
        // release need not carry it (they name this stage, with nothing to undo).
        cx.view.put(&keys::intent_state(&intent.tenant, &intent.intent_id), StateValue::InFlight { intent: pipeline::encode_intent(intent), undo });
        let hop = IntentHop { intent: intent.clone(), approved, usage: Vec::new(), policy_version: 0, route, reservations: Vec::new() };
        pipeline::pass_on(cx, hop, domain, Vec::new(), usage, v);
        Ok(())
    }

    /// Whether an intent must pass the recipient-domain stage: one of its
    /// windows applies, or its (sender domain, provider group) was
    /// throttled within the longest backoff, so a backoff may be in force
    /// there (a backoff ends at most `max_ms` after the throttle that
    /// started it). Otherwise the recipient stage is its last, one hop and
    /// one commit sooner. The throttles are the ones the recipient-domain
    /// stage counts, under the same policy: both stages receive them.
    fn needs_recipient_domain_stage(&self, cx: &mut Cx<'_, '_>, intent: &SendIntent, domain: &str) -> Result<bool, StoreError> {
        let rd = domain_of(&intent.recipient);
        let policy = cx.book.effective(&intent.tenant, domain, &intent.sender, Some(rd));
        if super::recipient_domain::limits_apply(&policy, intent.class, rd) {
            return Ok(true);
        }
        let last = cx.view.get_time(&keys::last_throttle(domain, &policy.recipient_group(rd)))?;
        // (A backoff ends at most `max_ms` after its throttle, then its ramp follows.)
        Ok(last.is_some_and(|at| at + policy.backoff.max_ms + policy.backoff.ramp_ms > cx.now))
    }

    /// Keeps an intent until the reservations in flight resolve. False when
    /// the partition already keeps as many as it may.
    fn park(&self, cx: &mut Cx<'_, '_>, intent: &SendIntent, approved: bool, counter: &str) -> Result<bool, StoreError> {
        let count = clock_value(cx, keys::PARKED_COUNT)?;
        if count >= PARK_MAX {
            return Ok(false);
        }
        let seq = clock_value(cx, keys::PARKED_SEQ)?;
        let hop = IntentHop { intent: intent.clone(), approved, usage: Vec::new(), policy_version: 0, route: Vec::new(), reservations: Vec::new() };
        let env = StageEnvelope::new(cx.log_time_ms, cx.source.clone(), Payload::Hop(hop));
        let bytes = codec::encode(RecordType::StageEnvelope, &env).expect("an envelope always fits its schema");
        cx.view.put(&keys::parked(counter, seq), StateValue::Parked(bytes));
        cx.view.put(keys::PARKED_SEQ, StateValue::Clock(seq + 1));
        cx.view.put(keys::PARKED_COUNT, StateValue::Clock(count + 1));
        if !keys::is_recipient_order_queue(counter) {
            self.add_parked_to(cx, intent, 1)?;
        }
        // A resubmission meanwhile is told the decision is pending.
        cx.view.put(&keys::intent_state(&intent.tenant, &intent.intent_id), StateValue::Intent(pipeline::encode_intent(intent)));
        Ok(true)
    }

    /// An outcome settled the reservations of some counters: the intents
    /// parked on them may now be decided. A released reservation frees one
    /// place: the oldest waiting intent is decided again. When nothing is in
    /// flight any more, or what is confirmed already fills the window, no
    /// waiting intent can be helped by waiting: they are all decided again.
    fn unpark(&self, cx: &mut Cx<'_, '_>, undo: &[Undo], confirmed: bool) -> Result<(), StageError> {
        if clock_value(cx, keys::PARKED_COUNT)? == 0 {
            return Ok(());
        }
        for u in undo.iter().filter(|u| u.kind == UndoKind::Counter) {
            let (pending, confirmed_count) = match cx.view.get(u.key.as_bytes())? {
                Some(StateValue::Counter(c)) => (c.pending, c.count - c.pending as i64),
                _ => (0, 0),
            };
            let all = pending == 0 || (u.limit > 0 && confirmed_count >= u.limit);
            if !all && confirmed {
                continue;
            }
            self.decide_parked(cx, &u.key, if all { PARK_MAX as usize } else { 1 })?;
        }
        Ok(())
    }

    /// Decides again, oldest first, up to `n` intents parked on a counter,
    /// each at its own origin and under the state as it is now.
    fn decide_parked(&self, cx: &mut Cx<'_, '_>, counter: &str, n: usize) -> Result<(), StageError> {
        // A queue: read from its head, never over the entries already taken.
        let head_key = keys::parked_head(counter);
        let head = clock_value(cx, &head_key)?;
        let waiting = cx.view.scan_from(&keys::parked_on(counter), &keys::parked(counter, head), n)?;
        let Some(last) = waiting.last() else { return Ok(()) };
        let last_seq = std::str::from_utf8(last).ok().and_then(|k| k.rsplit('/').next()?.parse::<i64>().ok()).unwrap_or(head);
        cx.view.put(&head_key, StateValue::Clock(last_seq + 1));
        // A queue idle for a week holds nothing: its head goes too.
        cx.expire_at(cx.now + 7 * DAY_MS, &head_key, Some(last_seq + 1));
        let count = clock_value(cx, keys::PARKED_COUNT)?;
        cx.view.put(keys::PARKED_COUNT, StateValue::Clock((count - waiting.len() as i64).max(0)));
        let (source, log_time) = (cx.source.clone(), cx.log_time_ms);
        let following = keys::is_recipient_order_queue(counter);
        for key in waiting {
            let Some(StateValue::Parked(bytes)) = cx.view.get(&key)? else { continue };
            cx.view.delete(&key);
            let env: StageEnvelope = codec::decode(RecordType::StageEnvelope, &bytes).map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(&key).into_owned(), why: e.to_string() })?;
            let Payload::Hop(hop) = env.payload else { continue };
            self.pending(cx, &hop.intent.tenant, &hop.intent.intent_id, true)?;
            if !following {
                self.add_parked_to(cx, &hop.intent, -1)?;
            }
            cx.source = env.source;
            cx.log_time_ms = env.log_time_ms;
            let r = self.evaluate(cx, &hop.intent, hop.approved, true);
            cx.source = source.clone();
            cx.log_time_ms = log_time;
            r?;
            if !following {
                self.release_followers(cx, &hop.intent.tenant, &hop.intent.recipient)?;
            }
        }
        Ok(())
    }

    /// Whether a new intent to a recipient must wait behind earlier ones:
    /// one of them is parked on a window, or waits behind one that is.
    fn waits_behind(&self, cx: &mut Cx<'_, '_>, tenant: &str, recipient: &str) -> Result<bool, StoreError> {
        if clock_value(cx, keys::PARKED_COUNT)? == 0 {
            return Ok(false);
        }
        Ok(clock_value(cx, &keys::parked_to(tenant, recipient))? > 0 || self.followers_wait(cx, tenant, recipient)?)
    }

    /// Whether intents wait in a recipient's order queue.
    fn followers_wait(&self, cx: &mut Cx<'_, '_>, tenant: &str, recipient: &str) -> Result<bool, StoreError> {
        let queue = keys::recipient_order_queue(tenant, recipient);
        let head = clock_value(cx, &keys::parked_head(&queue))?;
        Ok(!cx.view.scan_from(&keys::parked_on(&queue), &keys::parked(&queue, head), 1)?.is_empty())
    }

    /// Counts the intents to a recipient parked on a window (not behind
    /// another intent).
    fn add_parked_to(&self, cx: &mut Cx<'_, '_>, intent: &SendIntent, delta: i64) -> Result<(), StoreError> {
        let key = keys::parked_to(&intent.tenant, &intent.recipient);
        match clock_value(cx, &key)? + delta {
            n if n > 0 => cx.view.put(&key, StateValue::Clock(n)),
            _ => cx.view.delete(&key),
        }
        Ok(())
    }

    /// The intents that waited behind a recipient's parked intent, decided
    /// in their order now that it is decided, until one of them parks on a
    /// window in turn (the rest wait behind it).
    fn release_followers(&self, cx: &mut Cx<'_, '_>, tenant: &str, recipient: &str) -> Result<(), StageError> {
        let queue = keys::recipient_order_queue(tenant, recipient);
        for _ in 0..PARK_MAX {
            if clock_value(cx, &keys::parked_to(tenant, recipient))? > 0 || !self.followers_wait(cx, tenant, recipient)? {
                break;
            }
            self.decide_parked(cx, &queue, 1)?;
        }
        Ok(())
    }

    /// The warm-up limits of a sender domain or a mailbox (`who`) at its
    /// age now, if it is warming up under `plan`.
    fn warmup_limits(&self, cx: &mut Cx<'_, '_>, plan: Option<&Warmup>, tz: chrono_tz::Tz, who: &str, class: IntentClass, shift: i32) -> Result<Vec<(Limit, u64)>, StoreError> {
        let Some(w) = plan else { return Ok(Vec::new()) };
        let start = match w.started_on {
            Some(date) => resolve_local(tz, date.and_hms_opt(0, 0, 0).expect("midnight exists")),
            None => {
                let key = keys::first_seen(who);
                match cx.view.get_time(&key)? {
                    Some(t) => t,
                    None => {
                        cx.view.put(&key, StateValue::Clock(cx.now));
                        cx.now
                    }
                }
            }
        };
        let limit = |window, max: u64| (Limit { key: LimitKey { scope: LimitScope::SenderDomain, class: LimitClass::of(class), window }, max, on_breach: BreachAction::Defer, replies: false, smooth: None }, max);
        Ok(steps_at(w, start, cx.now, shift).into_iter().map(|(win, max)| limit(win, max)).collect())
    }

    /// The restriction that applies to a sender: address, then its domain
    /// and parent domains, then the tenant. The first found decides; an
    /// allow entry is an exemption.
    fn restriction(&self, cx: &Cx<'_, '_>, tenant: &str, sender: &Address) -> Result<Option<Entry>, StoreError> {
        let mut scopes = vec![format!("address:{}", sender.as_str())];
        let mut d = sender.domain();
        loop {
            scopes.push(format!("domain:{d}"));
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => break,
            }
        }
        scopes.push(format!("tenant:{tenant}"));
        for s in scopes {
            if let Some(StateValue::Entry(e)) = cx.view.get(&keys::restriction(tenant, &s))? {
                if e.until_ms.is_some_and(|u| u <= cx.now) {
                    continue;
                }
                return Ok((e.kind == "deny").then_some(e));
            }
        }
        Ok(None)
    }

    /// Opt-in: a pause the signals set lifts itself after the policy's
    /// delay, with a fresh observation (the scope's ring and the throttles
    /// seen for `throttles_of`, the domain or mailbox).
    fn auto_resume(&self, cx: &mut Cx<'_, '_>, policy: &EffectivePolicy, tenant: &str, scope: &str, ring_key: &[u8], throttles_of: Option<&str>) -> Result<(), StoreError> {
        let Some(after) = policy.signals.auto_resume_ms else { return Ok(()) };
        if let Some(StateValue::Pause(p)) = cx.view.get(&keys::pause(scope))? {
            if p.by == "signals" && cx.now >= p.since_ms + after {
                cx.view.delete(&keys::pause(scope));
                cx.view.delete(ring_key);
                if let Some(domain) = throttles_of {
                    cx.view.delete(&keys::throttles(domain));
                }
                cx.alert(tenant, scope, "sender_resumed", format!("{scope} resumed automatically {} min after its {} pause", after / 60_000, p.reason), &[("by", "auto_resume".into())]);
            }
        }
        Ok(())
    }

    /// The signal tier of one scope's ring now (noted in an audit's trace).
    fn signal_tier(&self, cx: &mut Cx<'_, '_>, intent_id: &str, scope: &str, key: &[u8], policy: &EffectivePolicy) -> Result<Tier, StoreError> {
        let sig = &policy.signals;
        let ring = signals::load_key(cx.view, key)?;
        let rates = signals::totals(&ring, cx.now, sig.window_hours);
        let (bt, ct) = signals::tiers(&rates, sig);
        cx.note(intent_id, "signals", bt.max(ct).as_str(), || {
            format!(
                "{scope}, last {} h: {} sends, {} hard bounces ({:.3}%, {}), {} complaints ({:.3}%, {}); minimum volume {}, or {} events",
                sig.window_hours,
                rates.sends,
                rates.hard_bounces,
                rates.bounce_rate() * 100.0,
                bt.as_str(),
                rates.complaints,
                rates.complaint_rate() * 100.0,
                ct.as_str(),
                sig.min_volume,
                sig.min_events
            )
        });
        Ok(bt.max(ct))
    }

    pub(super) fn pause(&self, cx: &mut Cx<'_, '_>, tenant: &str, scope: &str, reason: &str, by: &str, message: String) -> Result<(), StoreError> {
        let key = keys::pause(scope);
        if cx.view.get(&key)?.is_none() {
            cx.view.put(&key, StateValue::Pause(PauseState { reason: reason.into(), since_ms: cx.now, by: by.into() }));
            cx.alert(tenant, scope, "sender_paused", message, &[("reason", reason.into()), ("by", by.into())]);
        }
        Ok(())
    }

    /// A bad signal counts against the sender domain (under the domain's
    /// policy) and, with `per_mailbox`, against the mailbox that sent (under
    /// the mailbox's): each has its own tiers, pause and rest-of-day rule.
    fn on_signal(&self, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent, domain: &str, signal: Signal) -> Result<(), StageError> {
        let domain_policy = cx.book.effective(&ev.tenant, domain, "", None);
        self.judge_signals(cx, &ev.tenant, &format!("sender_domain:{domain}"), &keys::signals(domain), &domain_policy, signal)?;
        let mailbox_policy = cx.book.effective(&ev.tenant, domain, &ev.sender, None);
        if mailbox_policy.signals.per_mailbox {
            self.judge_signals(cx, &ev.tenant, &format!("mailbox:{}", ev.sender), &keys::mailbox_signals(&ev.sender), &mailbox_policy, signal)?;
        }
        Ok(())
    }

    /// Records a signal in one scope's ring and acts on what it now shows:
    /// a tier change alerts, the pause tier pauses the scope until a resume,
    /// and today's rate over the rest-of-day rule pauses it until its local
    /// midnight.
    fn judge_signals(&self, cx: &mut Cx<'_, '_>, tenant: &str, scope: &str, key: &[u8], policy: &EffectivePolicy, signal: Signal) -> Result<(), StageError> {
        let sig = &policy.signals;
        let mut ring = signals::load_key(cx.view, key)?;
        signals::record(&mut ring, signal, cx.now, sig.keep_hours());
        let rates = signals::totals(&ring, cx.now, sig.window_hours);
        let (bt, ct) = signals::tiers(&rates, sig);
        for (name, old, new, rate) in [("hard_bounce", Tier::parse(&ring.bounce_tier), bt, rates.bounce_rate()), ("complaint", Tier::parse(&ring.complaint_tier), ct, rates.complaint_rate())] {
            if old != new {
                cx.alert(
                    tenant,
                    scope,
                    "signal_tier_changed",
                    format!("{scope} {name} rate {:.3}% over {} sends: {} -> {}", rate * 100.0, rates.sends, old.as_str(), new.as_str()),
                    &[("signal", name.into()), ("from", old.as_str().into()), ("to", new.as_str().into()), ("rate", format!("{rate:.6}")), ("sends", rates.sends.to_string())],
                );
            }
        }
        ring.bounce_tier = bt.as_str().into();
        ring.complaint_tier = ct.as_str().into();
        let today = signals::over_today(&ring, cx.now, window_start(Window::Day, policy.tz, cx.now), sig);
        cx.view.put(key, StateValue::Signals(ring));
        if bt.max(ct) == Tier::Pause {
            let why = if bt == Tier::Pause { "hard_bounce_rate" } else { "complaint_rate" };
            let msg = format!(
                "{scope} paused: {why} over the pause threshold ({:.3}% bounces, {:.3}% complaints over {} sends); a resume command lifts it",
                rates.bounce_rate() * 100.0,
                rates.complaint_rate() * 100.0,
                rates.sends
            );
            self.pause(cx, tenant, scope, why, "signals", msg)?;
        } else if let Some((why, today)) = today {
            let until = window_end(Window::Day, policy.tz, cx.now);
            let day_key = keys::day_pause(scope);
            if cx.view.get_time(&day_key)? != Some(until) {
                cx.view.put(&day_key, StateValue::Clock(until));
                cx.expire_at(until, &day_key, Some(until));
                cx.alert(
                    tenant,
                    scope,
                    "sender_paused_for_day",
                    format!(
                        "{scope} paused for the rest of the day: {why} today {:.3}% bounces, {:.3}% complaints over {} sends; sending resumes at {}",
                        today.bounce_rate() * 100.0,
                        today.complaint_rate() * 100.0,
                        today.sends,
                        crate::clock::format_ms(until)
                    ),
                    &[("reason", why.into()), ("until_ms", until.to_string())],
                );
            }
        }
        Ok(())
    }

    /// Throttling from several recipient domains at once means the sender's
    /// reputation is slipping everywhere, not with one provider: pause it.
    /// Remembers when a (sender domain, provider group) was last throttled
    /// as the recipient-domain stage judges it (its policy, with the
    /// recipient domain's documents), for [`Self::needs_recipient_domain_stage`].
    fn note_throttle(&self, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent, domain: &str) -> Result<(), StoreError> {
        let rd = domain_of(&ev.recipient);
        let policy = cx.book.effective(&ev.tenant, domain, &ev.sender, Some(rd));
        if super::feedback::is_throttle(ev, &policy) {
            let key = keys::last_throttle(domain, &policy.recipient_group(rd));
            cx.view.put(&key, StateValue::Clock(cx.now));
            cx.expire_at(cx.now + policy.backoff.max_ms.max(DAY_MS), &key, Some(cx.now));
        }
        Ok(())
    }

    fn on_throttle(&self, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent, domain: &str, policy: &EffectivePolicy) -> Result<(), StageError> {
        let b = &policy.backoff;
        if b.pause_after_domains == 0 {
            return Ok(());
        }
        let group = policy.recipient_group(domain_of(&ev.recipient));
        // The domain's breaker, and (with per_mailbox) the mailbox's own:
        // throttling from several providers at one mailbox is that
        // mailbox's problem first.
        self.throttle_breaker(cx, &ev.tenant, &format!("sender_domain:{domain}"), &keys::throttles(domain), &group, b)?;
        if policy.signals.per_mailbox {
            self.throttle_breaker(cx, &ev.tenant, &format!("mailbox:{}", ev.sender), &keys::throttles(&ev.sender), &group, b)?;
        }
        Ok(())
    }

    /// Notes a throttle from `group` for a scope; throttling from
    /// `pause_after_domains` groups within the window pauses the scope.
    fn throttle_breaker(&self, cx: &mut Cx<'_, '_>, tenant: &str, scope: &str, key: &[u8], group: &str, b: &crate::policy::resolve::BackoffPolicy) -> Result<(), StageError> {
        let mut seen = match cx.view.get(key)? {
            Some(StateValue::Throttles(t)) => t,
            _ => Vec::new(),
        };
        let since = cx.now - b.pause_window_ms;
        seen.retain(|t| t.at_ms > since && t.group != group);
        seen.push(ThrottleSeen { group: group.to_string(), at_ms: cx.now });
        // Bounded: only the threshold's worth of most recent groups matter.
        while seen.len() > b.pause_after_domains as usize {
            seen.remove(0);
        }
        if seen.len() >= b.pause_after_domains as usize {
            let groups: Vec<&str> = seen.iter().map(|t| t.group.as_str()).collect();
            let msg = format!("{scope} paused: throttled by {} recipient domains within {} min ({}); a resume command lifts it", seen.len(), b.pause_window_ms / 60_000, groups.join(", "));
            self.pause(cx, tenant, scope, "isp_throttling", "signals", msg)?;
        }
        cx.view.put(key, StateValue::Throttles(seen));
        Ok(())
    }

    /// The final decision kept for a tenant's intent id: under its key, or
    /// under the key of the releases before tenant-scoped ids if it is this
    /// tenant's (another tenant's decision there is not this intent's).
    pub(super) fn final_decision(&self, cx: &Cx<'_, '_>, tenant: &str, intent_id: &str) -> Result<Option<Decision>, StoreError> {
        let decode = |bytes: Vec<u8>| codec::decode::<Decision>(RecordType::Decision, &bytes).map_err(|e| StoreError::Corrupt { key: intent_id.to_string(), why: e.to_string() });
        if let Some(StateValue::FinalDecision(bytes)) = cx.view.get(&keys::intent_state(tenant, intent_id))? {
            return decode(bytes).map(Some);
        }
        if let Some(StateValue::FinalDecision(bytes)) = cx.view.get(&keys::legacy::final_decision(intent_id))? {
            return Ok(Some(decode(bytes)?).filter(|d| d.tenant == tenant));
        }
        Ok(None)
    }

    /// A tenant's intent in flight (its stored bytes), under its key or the
    /// keys of earlier releases (a separate key; before that, one without
    /// the tenant); `take`: also forget it (its final decision, if it has
    /// one, is then put under the same key).
    pub(super) fn pending(&self, cx: &mut Cx<'_, '_>, tenant: &str, intent_id: &str, take: bool) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.in_flight(cx, tenant, intent_id, take)?.map(|f| f.intent))
    }

    /// The same, with the reservation kept beside it (none when an earlier
    /// build kept the intent alone).
    fn in_flight(&self, cx: &mut Cx<'_, '_>, tenant: &str, intent_id: &str, take: bool) -> Result<Option<InFlight>, StoreError> {
        let mut found = None;
        for key in [keys::intent_state(tenant, intent_id), keys::earlier_pending_intent(tenant, intent_id)] {
            match cx.view.get(&key)? {
                Some(StateValue::InFlight { intent, undo }) => found = Some((key, InFlight { intent, undo })),
                Some(StateValue::Intent(intent)) => found = Some((key, InFlight { intent, undo: Vec::new() })),
                _ => continue,
            }
            break;
        }
        if found.is_none() {
            let legacy = keys::legacy::pending_intent(intent_id);
            if let Some(StateValue::Intent(intent)) = cx.view.get(&legacy)? {
                if pipeline::decode_intent(intent_id, &intent).is_ok_and(|i| i.tenant == tenant) {
                    found = Some((legacy, InFlight { intent, undo: Vec::new() }));
                }
            }
        }
        Ok(found.map(|(key, entry)| {
            if take {
                cx.view.delete(&key);
            }
            entry
        }))
    }

    /// A tenant's held intent, moved from the key of the releases before
    /// tenant-scoped ids if it is there. Another tenant's held intent with
    /// the same id is not found: the answer does not tell it exists.
    fn held(&self, cx: &mut Cx<'_, '_>, tenant: &str, intent_id: &str) -> Result<Option<Vec<u8>>, StageError> {
        let key = keys::held_intent(tenant, intent_id);
        // The first release kept held intents as plain bytes too.
        if let Some(StateValue::Intent(bytes) | StateValue::FinalDecision(bytes)) = cx.view.get(&key)? {
            return Ok(Some(bytes));
        }
        let legacy = keys::legacy::held_intent(intent_id);
        if let Some(StateValue::Intent(bytes) | StateValue::FinalDecision(bytes)) = cx.view.get(&legacy)? {
            if pipeline::decode_intent(intent_id, &bytes)?.tenant == tenant {
                cx.view.delete(&legacy);
                cx.view.put(&key, StateValue::Intent(bytes.clone()));
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    fn on_held_command(&self, cx: &mut Cx<'_, '_>, cmd: &Command) -> Result<(), StageError> {
        // A command acts within its tenant only.
        let Some(bytes) = self.held(cx, &cmd.tenant, &cmd.target)? else {
            return Err(StageError::BadRecord(format!(
                "no held intent {:?} of tenant {:?} in this partition (decided already, another tenant's, or the command's sender is wrong?); nothing changed",
                cmd.target, cmd.tenant
            )));
        };
        if self.pending(cx, &cmd.tenant, &cmd.target, false)?.is_some() {
            return Err(StageError::BadRecord(format!("intent {:?} is being decided after an earlier approval; wait for its decision", cmd.target)));
        }
        let intent = pipeline::decode_intent(&cmd.target, &bytes)?;
        if cmd.kind == CommandKind::Approve {
            // Decided under the same guards. It stays held (and approvable)
            // unless the approved evaluation ends final.
            return self.evaluate(cx, &intent, true, false);
        }
        let version = cx.book.effective(&intent.tenant, domain_of(&intent.sender), &intent.sender, None).version;
        self.decide_here(cx, &intent, DecisionStatus::Blocked, "rejected_by_operator", None, Vec::new(), version)?;
        Ok(())
    }
}

impl Stage for SenderStage {
    fn kind(&self) -> StageKind {
        StageKind::Sender
    }

    fn on_intent(&self, cx: &mut Cx<'_, '_>, intent: &SendIntent) -> Result<(), StageError> {
        self.evaluate(cx, intent, false, false)
    }

    fn check(&self, _cx: &mut Cx<'_, '_>, hop: &IntentHop) -> Result<Verdict, StageError> {
        Err(StageError::BadRecord(format!("the sender stage is first; it is never passed an intent ({})", hop.intent.intent_id)))
    }

    fn on_held_expired(&self, cx: &mut Cx<'_, '_>, bytes: &[u8]) -> Result<(), StoreError> {
        let intent = match pipeline::decode_intent("held", bytes) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "an expired held intent could not be read; dropped");
                return Ok(());
            }
        };
        if self.pending(cx, &intent.tenant, &intent.intent_id, false)?.is_some() {
            // Approved in time and still being decided: not expired. It
            // stays held (approvable) in case that decision is not final.
            cx.view.put(&keys::held_intent(&intent.tenant, &intent.intent_id), StateValue::Intent(bytes.to_vec()));
            return Ok(());
        }
        let policy = cx.book.effective(&intent.tenant, domain_of(&intent.sender), &intent.sender, None);
        let scope = format!("mailbox:{}", intent.sender);
        cx.alert(
            &intent.tenant,
            &scope,
            "held_expired",
            format!("intent {} held for approval was neither approved nor rejected within {} h: blocked", intent.intent_id, policy.held_expire_ms / 3_600_000),
            &[("intent_id", intent.intent_id.clone())],
        );
        self.decide_here(cx, &intent, DecisionStatus::Blocked, "approval_expired", None, Vec::new(), policy.version)
    }

    fn on_wait_expired(&self, cx: &mut Cx<'_, '_>, envelope: &[u8]) -> Result<(), StoreError> {
        super::reconcile::on_wait_expired(self, cx, envelope)
    }

    fn take_in_flight(&self, cx: &mut Cx<'_, '_>, release: &Release) -> Result<Option<InFlight>, StoreError> {
        // Only the outcome takes it (its tenant scopes the key).
        let Some(d) = &release.outcome else { return Ok(None) };
        self.in_flight(cx, &d.tenant, &release.intent_id, true)
    }

    fn on_released(&self, cx: &mut Cx<'_, '_>, release: &Release, intent: Option<&[u8]>, undo: &[Undo]) -> Result<(), StageError> {
        let Some(d) = &release.outcome else { return Ok(()) };
        let intent = match intent {
            Some(bytes) => pipeline::decode_intent(&release.intent_id, bytes)?,
            // Cannot happen while outcomes travel with the reservations; if it
            // does, the outcome still counts, from what the decision says.
            _ => {
                tracing::warn!(intent_id = %release.intent_id, "outcome of an intent not in flight");
                SendIntent::new(&d.intent_id, &d.tenant, &d.sender, &d.recipient, IntentClass::Outbound)
            }
        };
        if d.status == DecisionStatus::Allowed {
            // The send counts toward the signal denominator.
            let domain = domain_of(&intent.sender).to_string();
            let domain_policy = cx.book.effective(&intent.tenant, &domain, "", None);
            let mut rings = vec![(keys::signals(&domain), domain_policy.signals.keep_hours())];
            let policy = cx.book.effective(&intent.tenant, &domain, &intent.sender, None);
            if policy.signals.per_mailbox {
                rings.push((keys::mailbox_signals(&intent.sender), policy.signals.keep_hours()));
            }
            for (key, hours) in rings {
                let mut ring = signals::load_key(cx.view, &key)?;
                signals::record(&mut ring, Signal::Send, cx.now, hours);
                cx.view.put(&key, StateValue::Signals(ring));
            }
            if intent.class != IntentClass::Reply {
                let subjects = super::trust::subjects(&intent.tenant, &intent.sender, &domain, &intent.recipient, &policy, &domain_policy);
                super::trust::on_allowed(cx, &intent.tenant, &subjects)?;
            }
        }
        self.record_outcome(cx, &intent, d)?;
        self.unpark(cx, undo, d.status == DecisionStatus::Allowed)
    }

    fn on_delivery(&self, cx: &mut Cx<'_, '_>, ev: &DeliveryEvent) -> Result<(), StageError> {
        let domain = domain_of(&ev.sender).to_string();
        if cx.book.owner_of(&domain).is_some_and(|owner| owner != ev.tenant) {
            return Err(StageError::BadRecord(format!("a delivery event of tenant {:?} for sender_domain:{domain}, which another tenant owns: it moves no signal", ev.tenant)));
        }
        let policy = cx.book.effective(&ev.tenant, &domain, &ev.sender, None);
        super::reconcile::on_event(self, cx, ev, &policy)?;
        self.note_throttle(cx, ev, &domain)?;
        match ev.kind {
            // Engagement (routed here only when the processor is asked to):
            // counted for the domain when its policy reads it.
            DeliveryKind::Opened | DeliveryKind::Clicked | DeliveryKind::Replied => {
                let domain_policy = cx.book.effective(&ev.tenant, &domain, "", None);
                if domain_policy.signals.engagement.is_some() {
                    let key = keys::engagement(&domain);
                    let mut ring = signals::load_key(cx.view, &key)?;
                    signals::record(&mut ring, Signal::Engaged, cx.now, domain_policy.signals.keep_hours());
                    cx.view.put(&key, StateValue::Signals(ring));
                }
            }
            // A rejection is a bounce the provider gave at once.
            DeliveryKind::BounceHard | DeliveryKind::Rejected | DeliveryKind::Complaint => {
                let complaint = ev.kind == DeliveryKind::Complaint;
                self.on_signal(cx, ev, &domain, if complaint { Signal::Complaint } else { Signal::HardBounce })?;
                let domain_policy = cx.book.effective(&ev.tenant, &domain, "", None);
                let subjects = super::trust::subjects(&ev.tenant, &ev.sender, &domain, &ev.recipient, &policy, &domain_policy);
                super::trust::on_bad(cx, &ev.tenant, &subjects, complaint)?;
            }
            // Soft bounces and deferrals move no budget; engagement does not come here.
            _ => {}
        }
        // What the answer says, by rule (a recipient domain's document may
        // have rules for its provider's answers).
        let rules = cx.book.effective(&ev.tenant, &domain, &ev.sender, Some(domain_of(&ev.recipient)));
        let action = super::feedback::action_of(&rules, ev);
        let answer = || format!("{} {} {}", ev.smtp_code.map(|c| c.to_string()).unwrap_or_default(), ev.enhanced_code.as_deref().unwrap_or(""), ev.response.as_deref().unwrap_or("")).trim().to_string();
        match action {
            Some(FeedbackAction::Backoff) => self.on_throttle(cx, ev, &domain, &policy),
            Some(a @ (FeedbackAction::PauseMailbox | FeedbackAction::PauseDomain)) => {
                let scope = if a == FeedbackAction::PauseMailbox { format!("mailbox:{}", ev.sender) } else { format!("sender_domain:{domain}") };
                let msg = format!("{scope} paused by a feedback rule ({}): {:?} answered {:?}; a resume command lifts it", a.as_str(), domain_of(&ev.recipient), answer());
                Ok(self.pause(cx, &ev.tenant, &scope, "isp_feedback", "feedback", msg)?)
            }
            _ => Ok(()),
        }
    }

    fn on_command(&self, cx: &mut Cx<'_, '_>, cmd: &Command) -> Result<(), StageError> {
        match cmd.kind {
            CommandKind::Pause | CommandKind::Resume => {
                let scope = Scope::parse(&cmd.target).map_err(StageError::BadRecord)?;
                let scope_str = scope.to_string();
                let domain = match &scope {
                    Scope::SenderDomain(d) => d.as_str(),
                    Scope::Mailbox(m) => domain_of(m),
                    _ => "",
                };
                if cx.book.owner_of(domain).is_some_and(|owner| owner != cmd.tenant) {
                    return Err(StageError::BadRecord(format!("{scope_str} belongs to sender_domain:{domain}, which another tenant owns: only its owner pauses or resumes it; nothing changed")));
                }
                let key = keys::pause(&scope_str);
                if cmd.kind == CommandKind::Pause {
                    let by = cmd.operator.clone().unwrap_or_else(|| "operator".into());
                    let reason = cmd.reason.clone().unwrap_or_else(|| "operator".into());
                    self.pause(cx, &cmd.tenant, &scope_str, &reason, &by, format!("{scope_str} paused by {by}"))?;
                } else if cx.view.get(&key)?.is_some() || cx.view.get(&keys::day_pause(&scope_str))?.is_some() {
                    // A resume lifts a pause for the rest of the day too.
                    cx.view.delete(&key);
                    cx.view.delete(&keys::day_pause(&scope_str));
                    // A resume starts a fresh observation: the old rates led to the pause.
                    match &scope {
                        Scope::SenderDomain(d) => {
                            cx.view.delete(&keys::signals(d));
                            cx.view.delete(&keys::throttles(d));
                        }
                        Scope::Mailbox(m) => {
                            cx.view.delete(&keys::mailbox_signals(m));
                            cx.view.delete(&keys::throttles(m));
                        }
                        _ => {}
                    }
                    cx.alert(&cmd.tenant, &scope_str, "sender_resumed", format!("{scope_str} resumed by an operator"), &[("command_id", cmd.command_id.clone())]);
                }
                Ok(())
            }
            CommandKind::Approve | CommandKind::Reject => self.on_held_command(cx, cmd),
            CommandKind::AddRestriction | CommandKind::LiftRestriction => {
                let key = keys::restriction(&cmd.tenant, &cmd.target);
                if cmd.kind == CommandKind::LiftRestriction {
                    cx.view.delete(&key);
                    return Ok(());
                }
                let mode = cmd.mode.clone().unwrap_or_else(|| "deny".into());
                let entry = Entry { kind: mode, reason: cmd.reason.clone().unwrap_or_default(), since_ms: cx.now, by: cmd.operator.clone().unwrap_or_else(|| "operator".into()), until_ms: cmd.until_ms };
                if let Some(until) = cmd.until_ms {
                    cx.expire_at(until, &key, Some(cx.now));
                }
                cx.view.put(&key, StateValue::Entry(entry));
                Ok(())
            }
            other => Err(StageError::BadRecord(format!("command {other:?} does not belong to the sender stage"))),
        }
    }
}

/// A partition-level number kept as a `Clock` value (0 when absent).
fn clock_value(cx: &Cx<'_, '_>, key: &[u8]) -> Result<i64, StoreError> {
    Ok(cx.view.get_time(key)?.unwrap_or(0))
}

/// The warm-up caps (day, hour) of a sender domain whose warm-up started
/// at `start_ms`, at `now_ms`; none once the schedule is over or without
/// one. Shared with the API's usage, which must show the caps a decision
/// would use.
pub fn warmup_caps(policy: &EffectivePolicy, start_ms: i64, now_ms: i64, shift: i32) -> Vec<(Window, u64)> {
    policy.warmup.as_ref().map(|w| steps_at(w, start_ms, now_ms, shift)).unwrap_or_default()
}

/// The caps of a warm-up plan that started at `start_ms`, at `now_ms`,
/// moved `shift` steps by engagement (-1: held a step back, which past the
/// schedule's end means its last step; +1: the next one early, which on
/// the last step means done).
fn steps_at(w: &Warmup, start_ms: i64, now_ms: i64, shift: i32) -> Vec<(Window, u64)> {
    let age_day = ((now_ms - start_ms).div_euclid(DAY_MS) + 1).max(1);
    let at = w.steps.iter().position(|s| age_day <= s.until_day as i64).unwrap_or(w.steps.len());
    let Some(step) = w.steps.get((at as i64 + shift as i64).clamp(0, w.steps.len() as i64) as usize) else { return Vec::new() };
    [(Window::Day, step.day), (Window::Hour, step.hour)].into_iter().filter_map(|(win, max)| max.map(|m| (win, m))).collect()
}

/// How a sender domain's engagement moves its warm-up now (see
/// `signals::engagement_shift`), from the state the sender stage keeps;
/// shared with the API's usage.
pub fn domain_engagement_shift(view: &crate::state::PartitionView<'_>, policy: &EffectivePolicy, domain: &str, now: i64) -> Result<(i32, Option<f64>), StoreError> {
    if policy.signals.engagement.is_none() {
        return Ok((0, None));
    }
    let sent = signals::load(view, domain)?;
    let engaged = signals::load_key(view, &keys::engagement(domain))?;
    Ok(signals::engagement_shift(&sent, &engaged, now, &policy.signals))
}

/// When a sender domain's warm-up started: the policy's `started_on`
/// (midnight in its zone), else the first intent seen from it.
pub fn warmup_start(policy: &EffectivePolicy, first_seen_ms: Option<i64>) -> Option<i64> {
    let w = policy.warmup.as_ref()?;
    match w.started_on {
        Some(date) => Some(resolve_local(policy.tz, date.and_hms_opt(0, 0, 0).expect("midnight exists"))),
        None => first_seen_ms,
    }
}

/// Reconciliation's view of this stage's records (see
/// [`super::reconcile::SenderRecords`]).
impl super::reconcile::SenderRecords for SenderStage {
    fn final_decision(&self, cx: &Cx<'_, '_>, tenant: &str, intent_id: &str) -> Result<Option<Decision>, StoreError> {
        SenderStage::final_decision(self, cx, tenant, intent_id)
    }

    fn pending(&self, cx: &mut Cx<'_, '_>, tenant: &str, intent_id: &str, take: bool) -> Result<Option<Vec<u8>>, StoreError> {
        SenderStage::pending(self, cx, tenant, intent_id, take)
    }

    fn pause(&self, cx: &mut Cx<'_, '_>, tenant: &str, scope: &str, reason: &str, by: &str, message: String) -> Result<(), StoreError> {
        SenderStage::pause(self, cx, tenant, scope, reason, by, message)
    }
}
