//! The effective policy of an intent: its scopes' documents merged, most
//! specific first, over the built-in defaults.

use super::spec::*;
use crate::clock::{parse_hhmm, parse_weekday, BusinessHours};
use crate::model::IntentClass;
use crate::clock::Window;
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub key: LimitKey,
    pub max: u64,
    pub on_breach: BreachAction,
    /// Class `all` only: replies count, and are capped, too.
    pub replies: bool,
    /// Smoothed (GCRA) with this burst, rather than a count per window.
    pub smooth: Option<u64>,
}

impl Limit {
    /// Whether an intent of `class` counts toward this limit.
    pub fn covers(&self, class: IntentClass) -> bool {
        self.key.class.covers(class, self.replies)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalPolicy {
    pub hard_bounce: TierThresholds,
    pub complaint: TierThresholds,
    pub min_volume: u64,
    pub window_hours: u32,
    /// A pause set by the signals lifts itself after this long (None: never).
    pub auto_resume_ms: Option<i64>,
    /// Below `min_volume`, a rate counts once this many of its events are in the window (0: never).
    pub min_events: u64,
    pub per_mailbox: bool,
    /// Today's (hard bounce, complaint) rates that pause for the rest of the day.
    pub rest_of_day: Option<(Option<f64>, Option<f64>)>,
    pub engagement: Option<Engagement>,
}

/// The engagement signal: engaged events (opens, clicks, replies) over the
/// sends of the last 7 days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Engagement {
    pub hold_below: f64,
    pub advance_above: f64,
    pub min_sends: u64,
}

/// A week, in hours: the engagement signal's window.
pub const ENGAGEMENT_HOURS: u32 = 168;

impl SignalPolicy {
    /// Hours of buckets a ring keeps: the window, and a whole local day
    /// for the rest-of-day rule.
    pub fn keep_hours(&self) -> u32 {
        let day = if self.rest_of_day.is_some() { self.window_hours.max(25) } else { self.window_hours };
        if self.engagement.is_some() { day.max(ENGAGEMENT_HOURS) } else { day }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Warmup {
    /// Local date the domain started sending; None: its first intent.
    pub started_on: Option<chrono::NaiveDate>,
    pub steps: Vec<WarmupStep>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecipientRules {
    pub cooldown_ms: i64,
    pub dedupe_ms: i64,
    pub allow_list_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    pub initial_ms: i64,
    pub max_ms: i64,
    pub escalate_after: u32,
    pub throttle_codes: Vec<i32>,
    pub pause_after_domains: u32,
    pub pause_window_ms: i64,
    /// After a backoff ends, how long the rate takes to step back up (0: at once).
    pub ramp_ms: i64,
    pub ramp_start_per_minute: u64,
}

/// Reconciliation of delivery events with decisions (see `stage::reconcile`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconcilePolicy {
    pub enabled: bool,
    pub wait_ms: i64,
    pub require_intent_id: bool,
    /// Unapproved sends of a mailbox in a day that pause it (0: never).
    pub pause_mailbox_after: u32,
}

/// One trust ladder (see `stage::trust`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    /// (name, hour cap, day cap) per step.
    pub steps: Vec<(String, Option<u64>, Option<u64>)>,
    pub advance_after_sends: u64,
    pub advance_after_ms: i64,
    pub max_hard_bounce_rate: f64,
    pub max_complaint_rate: f64,
    pub demote_after_events: u32,
}

impl Ladder {
    fn from_plan(p: LadderPlan) -> Ladder {
        Ladder {
            steps: p.steps.unwrap_or_default().into_iter().map(|s| (s.name, s.hour, s.day)).collect(),
            advance_after_sends: p.advance_after_sends.unwrap_or(20),
            advance_after_ms: p.advance_after_hours.unwrap_or(24) as i64 * 3_600_000,
            max_hard_bounce_rate: p.max_hard_bounce_rate.unwrap_or(0.02),
            max_complaint_rate: p.max_complaint_rate.unwrap_or(0.001),
            demote_after_events: p.demote_after_events.unwrap_or(2).max(1),
        }
    }
}

/// The ladders in force, by subject kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustLadders {
    pub mailbox: Option<Ladder>,
    pub sender_domain: Option<Ladder>,
    pub recipient: Option<Ladder>,
}

/// How retry times of deferred intents are spread (see `stage::retry`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub spread: f64,
    pub max_spread_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EffectivePolicy {
    /// 0 for the built-in defaults; else the newest version among the documents used.
    pub version: i64,
    pub tz: Tz,
    pub business_hours: Option<BusinessHours>,
    /// Active limits (not "off"), longest window first.
    pub limits: Vec<Limit>,
    pub signals: SignalPolicy,
    pub warmup: Option<Warmup>,
    /// Each new mailbox's ramp, beside its domain's.
    pub mailbox_warmup: Option<Warmup>,
    pub recipients: RecipientRules,
    /// Recipient domain -> provider group.
    pub provider_of: HashMap<String, String>,
    pub public_domains: HashSet<String>,
    pub exclude_public_domains: bool,
    pub backoff: BackoffPolicy,
    /// Feedback rules: the most specific document's, then the built-in
    /// throttle rules (see `stage::feedback`).
    pub feedback: Vec<crate::stage::feedback::FeedbackRule>,
    pub retry: RetryPolicy,
    /// How long an intent stays held for approval (0: for ever).
    pub held_expire_ms: i64,
    /// The windows whose limits raise quota alerts.
    pub quota_alert_windows: Vec<Window>,
    pub reconcile: ReconcilePolicy,
    pub trust: TrustLadders,
}

impl EffectivePolicy {
    pub fn limits_for(&self, class: IntentClass) -> impl Iterator<Item = &Limit> {
        self.limits.iter().filter(move |l| l.covers(class))
    }

    pub fn limits_at(&self, class: IntentClass, scopes: &'static [LimitScope]) -> impl Iterator<Item = &Limit> {
        self.limits.iter().filter(move |l| l.covers(class) && scopes.contains(&l.key.scope))
    }

    /// Whether the recipient stage judges one recipient's intents of this
    /// class by their order: a per-recipient window, a cooldown, a content
    /// dedupe or a recipient trust ladder. Only then must a later intent to
    /// a recipient wait behind an earlier one that waits for outcomes.
    pub fn recipient_order_matters(&self, class: IntentClass) -> bool {
        self.limits_at(class, &[LimitScope::Recipient]).any(|l| l.max > 0)
            || self.recipients.cooldown_ms > 0
            || self.recipients.dedupe_ms > 0
            || self.trust.recipient.is_some()
    }

    /// The group a recipient domain's shared limits and backoff are kept
    /// under: its provider group, or the domain itself.
    pub fn recipient_group(&self, recipient_domain: &str) -> String {
        match self.provider_of.get(recipient_domain) {
            Some(g) => format!("provider:{g}"),
            None => recipient_domain.to_string(),
        }
    }

    pub fn is_public(&self, recipient_domain: &str) -> bool {
        self.public_domains.contains(recipient_domain)
    }
}

/// The built-in defaults, from published deliverability guidance for app and agent mail.
pub fn builtin_defaults() -> PolicySpec {
    let mut limits = BTreeMap::new();
    let mut set = |k: &str, v: u64| {
        limits.insert(k.to_string(), LimitSpec::Max(v));
    };
    // 25 cold sends per mailbox per day, 3 per hour in business hours.
    set("mailbox.outbound.day", 25);
    set("mailbox.outbound.hour", 3);
    // 100/hour per sending domain (a common guardrail default); 1,000/day.
    set("sender_domain.outbound.hour", 100);
    set("sender_domain.outbound.day", 1_000);
    // Transactional mail has its own, much larger budget.
    set("mailbox.transactional.day", 1_000);
    set("sender_domain.transactional.hour", 1_000);
    set("sender_domain.transactional.day", 10_000);
    // 10 per recipient address per day; 50 per hour to one recipient domain.
    set("recipient.outbound.day", 10);
    set("recipient.transactional.day", 10);
    set("recipient_domain.outbound.hour", 50);
    let group = |ds: &[&str]| ds.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    let mut providers = BTreeMap::new();
    providers.insert("google".to_string(), group(&["gmail.com", "googlemail.com"]));
    providers.insert("microsoft".to_string(), group(&["outlook.com", "hotmail.com", "live.com", "msn.com"]));
    providers.insert("yahoo".to_string(), group(&["yahoo.com", "ymail.com", "rocketmail.com", "aol.com"]));
    providers.insert("apple".to_string(), group(&["icloud.com", "me.com", "mac.com"]));
    let public = group(&[
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "icloud.com",
        "me.com", "mac.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com", "yandex.ru", "mail.ru", "zoho.com", "fastmail.com",
        "qq.com", "163.com",
    ]);
    PolicySpec {
        timezone: Some("UTC".into()),
        business_hours: Some(BusinessHoursSpec::Hours { start: "08:00".into(), end: "18:00".into(), days: vec!["mon".into(), "tue".into(), "wed".into(), "thu".into(), "fri".into()] }),
        limits,
        signals: Some(SignalsSpec {
            // Bounce 2% warn / 3% slow / 5% pause; complaint 0.05 / 0.08 / 0.1 %.
            hard_bounce: Some(TierThresholds { warn: 0.02, slow: 0.03, pause: 0.05 }),
            complaint: Some(TierThresholds { warn: 0.0005, slow: 0.0008, pause: 0.001 }),
            // No minimum of sends: the minimum of bad events below does
            // that work without silencing the guard at low volume.
            min_volume: Some(0),
            window_hours: Some(24),
            auto_resume_minutes: Some(0),
            // A rate counts from three bad events on: three hard bounces in
            // a first week of 40 sends pause, one or two bounces in ten
            // sends or two complaints in a thousand do not
            // (docs/policies.md, Signals).
            min_events: Some(3),
            per_mailbox: Some(true),
            rest_of_day: None,
            engagement: None,
        }),
        // A new sending domain: 20 per hour for its first 7 days.
        warmup: Some(WarmupSpec::Plan(WarmupPlan { preset: None, started_on: None, steps: Some(vec![WarmupStep { until_day: 7, hour: Some(20), day: None }]) })),
        recipients: Some(RecipientsSpec { cooldown_minutes: Some(10), dedupe_hours: Some(24), allow_list_only: Some(false) }),
        providers,
        public_domains: Some(public),
        exclude_public_domains: Some(true),
        // 421/450/452: 60 s doubling to 30 min; escalate after 6 in a row;
        // throttling from 3 recipient domains within an hour pauses the sender domain.
        isp_backoff: Some(BackoffSpec {
            initial_seconds: Some(60),
            max_seconds: Some(1_800),
            escalate_after: Some(6),
            throttle_codes: Some(vec![421, 450, 452]),
            pause_after_domains: Some(3),
            pause_window_minutes: Some(60),
            // Back from a backoff over 20 minutes: 5 a minute, doubling
            // every 5 minutes, rather than everything queued at once.
            ramp_minutes: Some(20),
            ramp_start_per_minute: Some(5),
        }),
        feedback: None,
        quota_preset: None,
        // A new mailbox's ramp is opt-in (preset "inbox": 50 a day for two
        // weeks): the default 25 cold sends a day already sit under it.
        mailbox_warmup: None,
        // Deferred agents come back over the first quarter of the window
        // after it ends (at most an hour), not all at its first instant.
        retry: Some(RetrySpec { spread: Some(0.25), max_spread_minutes: Some(60) }),
        // A send nobody looked at in three days is stale: it is blocked.
        held: Some(HeldSpec { expire_hours: Some(72) }),
        // Quota alerts for the budgets a person plans by; an hourly pacing
        // limit reached twice an hour per mailbox is not news.
        alerts: Some(AlertsSpec { quota_windows: Some(vec!["day".into(), "month".into()]) }),
        // Every delivery event is checked against the decisions; an event
        // whose decision has not come waits five minutes for it. Alerts
        // only: a pause on unapproved sends is a policy's choice.
        reconcile: Some(ReconcileSpec { enabled: Some(true), wait_seconds: Some(300), require_intent_id: Some(false), pause_mailbox_after: Some(0) }),
        // The trust ladders are opt-in (preset "standard"): the default
        // windows and the domain warm-up already hold a new sender back.
        trust: None,
        owner: None,
    }
}

/// All policy documents a stage partition knows, with a bounded cache of
/// merged results (cleared on every change, so it can never be stale).
#[derive(Debug, Default)]
pub struct PolicyBook {
    docs: HashMap<Scope, (i64, PolicySpec)>,
    /// The mailboxes and recipient domains with a document of their own
    /// (asked on every record, by `&str`).
    mailboxes: std::collections::HashSet<String>,
    recipient_domains: std::collections::HashSet<String>,
    /// Sender domain -> owning tenant, from the sender_domain documents that
    /// name one: asked on every intent, so kept apart, by `&str`.
    owners: HashMap<String, String>,
    /// By the scopes that have documents: tenant, sender domain, and the
    /// mailbox and recipient domain only when they have one of their own
    /// (so the many mailboxes without one share their domain's entry),
    /// built in `key_buf` (tagged and length-prefixed, so no two scope
    /// lists share a key): a hit allocates nothing.
    cache: HashMap<Vec<u8>, Arc<EffectivePolicy>, foldhash::fast::RandomState>,
    key_buf: Vec<u8>,
    /// Candidate policies in shadow, by the scope they are a candidate for.
    shadows: BTreeMap<String, Box<Shadow>>,
    /// A stopped or replaced candidate's state is being purged (see
    /// `stage::shadow::purge_step`), and where the purge has got to.
    pub purging: bool,
    pub purge_cursor: Option<(Vec<u8>, Vec<u8>)>,
}

/// A candidate document in shadow: the book it is judged under is the
/// enforced book with the candidate in place of its scope's document.
#[derive(Debug)]
pub struct Shadow {
    pub scope: Scope,
    pub version: i64,
    pub book: PolicyBook,
}

const CACHE_MAX: usize = 10_000;

/// Most candidate policies in shadow at once: each one decides every intent
/// in its scope a second time, with its own state.
pub const MAX_SHADOWS: usize = 4;

/// The key prefix of a candidate document on the policies topic
/// (`shadow/tenant:acme`), and of the scope of its policy change.
pub const SHADOW_PREFIX: &str = "shadow/";

impl PolicyBook {
    pub fn set(&mut self, scope: Scope, version: i64, spec: Option<PolicySpec>) {
        let own = match &scope {
            Scope::Mailbox(m) => Some((&mut self.mailboxes, m)),
            Scope::RecipientDomain(d) => Some((&mut self.recipient_domains, d)),
            _ => None,
        };
        if let Some((set, name)) = own {
            match spec {
                Some(_) => set.insert(name.clone()),
                None => set.remove(name),
            };
        }
        if let Scope::SenderDomain(d) = &scope {
            match spec.as_ref().and_then(|s| s.owner.clone()) {
                Some(owner) => self.owners.insert(d.clone(), owner),
                None => self.owners.remove(d),
            };
        }
        // Every candidate is judged beside the enforced documents as they
        // change, except its own scope's, which it replaces.
        for shadow in self.shadows.values_mut() {
            if shadow.scope != scope {
                shadow.book.set(scope.clone(), version, spec.clone());
            }
        }
        match spec {
            Some(s) => {
                self.docs.insert(scope, (version, s));
            }
            None => {
                self.docs.remove(&scope);
            }
        }
        self.cache.clear();
    }

    /// Publishes (Some) or stops (None) a candidate document in shadow for
    /// `scope`. Returns false, changing nothing, for a new candidate when
    /// [`MAX_SHADOWS`] are already in shadow.
    pub fn set_shadow(&mut self, scope: Scope, version: i64, spec: Option<PolicySpec>) -> bool {
        let name = scope.to_string();
        let Some(spec) = spec else {
            self.shadows.remove(&name);
            return true;
        };
        if !self.shadows.contains_key(&name) && self.shadows.len() >= MAX_SHADOWS {
            return false;
        }
        let mut book = PolicyBook::default();
        for (s, (v, d)) in &self.docs {
            if *s != scope {
                book.set(s.clone(), *v, Some(d.clone()));
            }
        }
        book.set(scope.clone(), version, Some(spec));
        self.shadows.insert(name, Box::new(Shadow { scope, version, book }));
        true
    }

    pub fn has_shadows(&self) -> bool {
        !self.shadows.is_empty()
    }

    /// The candidates in shadow, by scope name.
    pub fn shadows(&self) -> impl Iterator<Item = (&String, &Shadow)> {
        self.shadows.iter().map(|(k, v)| (k, &**v))
    }

    pub fn shadow_mut(&mut self, scope: &str) -> Option<&mut Shadow> {
        self.shadows.get_mut(scope).map(|b| &mut **b)
    }

    /// The effective policy of an intent or event. A recipient domain's own
    /// document ranks below the mailbox's and above the sender domain's:
    /// it is the most specific word on traffic to that destination.
    pub fn effective(&mut self, tenant: &str, sender_domain: &str, mailbox: &str, recipient_domain: Option<&str>) -> Arc<EffectivePolicy> {
        // Only a recipient domain with a document of its own needs its own entry.
        let rd = recipient_domain.filter(|d| self.recipient_domains.contains(*d));
        let mb = Some(mailbox).filter(|m| self.mailboxes.contains(*m));
        self.key_buf.clear();
        for part in [Some(tenant), Some(sender_domain), mb, rd] {
            match part {
                None => self.key_buf.push(0),
                Some(p) => {
                    self.key_buf.push(1);
                    self.key_buf.extend_from_slice(&(p.len() as u32).to_be_bytes());
                    self.key_buf.extend_from_slice(p.as_bytes());
                }
            }
        }
        if let Some(p) = self.cache.get(self.key_buf.as_slice()) {
            return p.clone();
        }
        let eff = Arc::new(self.resolve(tenant, sender_domain, mailbox, rd));
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(self.key_buf.clone(), eff.clone());
        eff
    }

    /// The effective policy, merged afresh (no cache: for readers that only
    /// borrow the book).
    pub fn resolve(&self, tenant: &str, sender_domain: &str, mailbox: &str, recipient_domain: Option<&str>) -> EffectivePolicy {
        let rd = recipient_domain.filter(|d| self.recipient_domains.contains(*d));
        let mut scopes = vec![Scope::Mailbox(mailbox.to_string())];
        if let Some(d) = rd {
            scopes.push(Scope::RecipientDomain(d.to_string()));
        }
        scopes.extend([Scope::SenderDomain(sender_domain.to_string()), Scope::Tenant(tenant.to_string()), Scope::Default]);
        let layers: Vec<&(i64, PolicySpec)> = scopes.iter().filter_map(|s| self.docs.get(s)).collect();
        merge(&layers)
    }

    /// The tenant that owns a sender domain, if its document claims it.
    pub fn owner_of(&self, sender_domain: &str) -> Option<&str> {
        self.owners.get(sender_domain).map(String::as_str)
    }

    /// The documents in force, by scope (for `policy show` and audits).
    pub fn documents(&self) -> impl Iterator<Item = (&Scope, &(i64, PolicySpec))> {
        self.docs.iter()
    }
}

/// Merges documents (most specific first) over the defaults.
pub fn merge(layers: &[&(i64, PolicySpec)]) -> EffectivePolicy {
    let defaults = builtin_defaults();
    let version = layers.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let specs: Vec<&PolicySpec> = layers.iter().map(|(_, s)| s).chain(std::iter::once(&defaults)).collect();

    let tz: Tz = specs.iter().find_map(|s| s.timezone.as_deref()).and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC);
    let business_hours = match specs.iter().find_map(|s| s.business_hours.as_ref()) {
        Some(BusinessHoursSpec::Hours { start, end, days }) => {
            let mut mask = [false; 7];
            for d in days.iter().filter_map(|d| parse_weekday(d)) {
                mask[d.num_days_from_monday() as usize] = true;
            }
            match (parse_hhmm(start), parse_hhmm(end)) {
                (Some(s), Some(e)) => Some(BusinessHours { start: s, end: e, days: mask }),
                _ => None,
            }
        }
        _ => None,
    };

    // Each document's limits: its quota preset's, then its own over them.
    let layer_limits: Vec<BTreeMap<String, LimitSpec>> = specs
        .iter()
        .map(|s| {
            let mut m: BTreeMap<String, LimitSpec> = s
                .quota_preset
                .as_deref()
                .and_then(quota_preset)
                .unwrap_or_default()
                .into_iter()
                // A provider counts every message it carries.
                .map(|(k, max)| (k.to_string(), LimitSpec::Full { max, on_breach: BreachAction::Defer, replies: Some(true), smooth: None, burst: None }))
                .collect();
            for (k, v) in &s.limits {
                // A plain number over a preset's limit changes the number,
                // not what it counts.
                let v = match (m.get(k), v) {
                    (Some(LimitSpec::Full { replies, .. }), LimitSpec::Max(max)) => LimitSpec::Full { max: *max, on_breach: BreachAction::Defer, replies: *replies, smooth: None, burst: None },
                    _ => v.clone(),
                };
                m.insert(k.clone(), v);
            }
            m
        })
        .collect();
    let mut keys: Vec<&String> = layer_limits.iter().flat_map(|l| l.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut limits: Vec<Limit> = keys
        .iter()
        .filter_map(|k| {
            let key = LimitKey::parse(k).ok()?;
            let spec = layer_limits.iter().find_map(|l| l.get(*k))?;
            match spec {
                LimitSpec::Off(_) => None,
                LimitSpec::Max(m) => Some(Limit { key, max: *m, on_breach: BreachAction::Defer, replies: false, smooth: None }),
                LimitSpec::Full { max, on_breach, replies, smooth, burst } => {
                    let smooth = smooth.unwrap_or(false).then(|| burst.unwrap_or(1).max(1));
                    Some(Limit { key, max: *max, on_breach: *on_breach, replies: replies.unwrap_or(false), smooth })
                }
            }
        })
        .collect();
    // Longest windows first: when several bind, the decision names the one
    // whose capacity returns last, and usage reads day before hour.
    limits.sort_by_key(|l| (std::cmp::Reverse(window_rank(l.key.window)), l.key.scope, l.key.class));

    let sigs: Vec<&SignalsSpec> = specs.iter().filter_map(|s| s.signals.as_ref()).collect();
    let signals = SignalPolicy {
        hard_bounce: sigs.iter().find_map(|s| s.hard_bounce).expect("defaults set it"),
        complaint: sigs.iter().find_map(|s| s.complaint).expect("defaults set it"),
        min_volume: sigs.iter().find_map(|s| s.min_volume).expect("defaults set it"),
        window_hours: sigs.iter().find_map(|s| s.window_hours).expect("defaults set it"),
        auto_resume_ms: sigs.iter().find_map(|s| s.auto_resume_minutes).filter(|m| *m > 0).map(|m| m as i64 * 60_000),
        min_events: sigs.iter().find_map(|s| s.min_events).unwrap_or(0),
        per_mailbox: sigs.iter().find_map(|s| s.per_mailbox).unwrap_or(false),
        rest_of_day: match sigs.iter().find_map(|s| s.rest_of_day) {
            Some(RestOfDaySpec::Rates { hard_bounce, complaint }) => Some((hard_bounce, complaint)),
            _ => None,
        },
        engagement: match sigs.iter().find_map(|s| s.engagement) {
            Some(EngagementSpec::Thresholds { hold_below, advance_above, min_sends }) => {
                Some(Engagement { hold_below: hold_below.unwrap_or(0.05), advance_above: advance_above.unwrap_or(0.2), min_sends: min_sends.unwrap_or(50) })
            }
            _ => None,
        },
    };

    let plan_of = |spec: Option<&WarmupSpec>| match spec {
        Some(WarmupSpec::Plan(plan)) => {
            let steps = match (&plan.preset, &plan.steps) {
                (Some(p), _) => warmup_preset(p).unwrap_or_default(),
                (None, Some(st)) => st.clone(),
                (None, None) => Vec::new(),
            };
            let started_on = plan.started_on.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            (!steps.is_empty()).then_some(Warmup { started_on, steps })
        }
        _ => None,
    };
    let warmup = plan_of(specs.iter().find_map(|s| s.warmup.as_ref()));
    let mailbox_warmup = plan_of(specs.iter().find_map(|s| s.mailbox_warmup.as_ref()));

    let rs: Vec<&RecipientsSpec> = specs.iter().filter_map(|s| s.recipients.as_ref()).collect();
    let recipients = RecipientRules {
        cooldown_ms: rs.iter().find_map(|r| r.cooldown_minutes).unwrap_or(0) as i64 * 60_000,
        dedupe_ms: rs.iter().find_map(|r| r.dedupe_hours).unwrap_or(0) as i64 * 3_600_000,
        allow_list_only: rs.iter().find_map(|r| r.allow_list_only).unwrap_or(false),
    };

    // Provider groups merge by group name: a more specific document can
    // redefine one group and keep the others.
    let mut groups: BTreeMap<&String, &Vec<String>> = BTreeMap::new();
    for spec in specs.iter().rev() {
        for (g, ds) in &spec.providers {
            groups.insert(g, ds);
        }
    }
    let mut provider_of = HashMap::new();
    for (g, ds) in groups {
        for d in ds {
            if let Ok(d) = crate::model::address::normalise_domain(d) {
                provider_of.insert(d, g.clone());
            }
        }
    }
    let public_domains = specs
        .iter()
        .find_map(|s| s.public_domains.as_ref())
        .map(|ds| ds.iter().filter_map(|d| crate::model::address::normalise_domain(d).ok()).collect())
        .unwrap_or_default();
    let exclude_public_domains = specs.iter().find_map(|s| s.exclude_public_domains).unwrap_or(true);

    let bs: Vec<&BackoffSpec> = specs.iter().filter_map(|s| s.isp_backoff.as_ref()).collect();
    let backoff = BackoffPolicy {
        initial_ms: bs.iter().find_map(|b| b.initial_seconds).unwrap_or(60) as i64 * 1000,
        max_ms: bs.iter().find_map(|b| b.max_seconds).unwrap_or(1_800) as i64 * 1000,
        escalate_after: bs.iter().find_map(|b| b.escalate_after).unwrap_or(6),
        throttle_codes: bs.iter().find_map(|b| b.throttle_codes.clone()).unwrap_or_default(),
        pause_after_domains: bs.iter().find_map(|b| b.pause_after_domains).unwrap_or(0),
        pause_window_ms: bs.iter().find_map(|b| b.pause_window_minutes).unwrap_or(60) as i64 * 60_000,
        ramp_ms: bs.iter().find_map(|b| b.ramp_minutes).unwrap_or(0) as i64 * 60_000,
        ramp_start_per_minute: bs.iter().find_map(|b| b.ramp_start_per_minute).unwrap_or(5).max(1) as u64,
    };
    // The most specific document's rules (validated when published: one
    // that no longer compiles is left out), then the throttle codes.
    let mut feedback: Vec<crate::stage::feedback::FeedbackRule> = specs.iter().find_map(|s| s.feedback.as_ref()).map(|rules| rules.iter().filter_map(|r| r.compile().ok()).collect()).unwrap_or_default();
    feedback.extend(backoff.throttle_codes.iter().map(|c| crate::stage::feedback::FeedbackRule {
        kinds: vec![crate::model::DeliveryKind::Deferred, crate::model::DeliveryKind::BounceSoft],
        code: Some(*c),
        enhanced: None,
        response: None,
        action: crate::stage::feedback::FeedbackAction::Backoff,
    }));
    let rt: Vec<&RetrySpec> = specs.iter().filter_map(|s| s.retry.as_ref()).collect();
    let retry = RetryPolicy {
        spread: rt.iter().find_map(|r| r.spread).unwrap_or(0.0),
        max_spread_ms: rt.iter().find_map(|r| r.max_spread_minutes).unwrap_or(0) as i64 * 60_000,
    };
    let held_expire_ms = specs.iter().find_map(|s| s.held.as_ref().and_then(|h| h.expire_hours)).unwrap_or(0) as i64 * 3_600_000;
    let quota_alert_windows = specs.iter().find_map(|s| s.alerts.as_ref().and_then(|a| a.quota_windows.as_ref())).map(|ws| ws.iter().filter_map(|w| Window::parse(w)).collect()).unwrap_or_default();
    let rc: Vec<&ReconcileSpec> = specs.iter().filter_map(|s| s.reconcile.as_ref()).collect();
    let reconcile = ReconcilePolicy {
        enabled: rc.iter().find_map(|r| r.enabled).unwrap_or(false),
        wait_ms: rc.iter().find_map(|r| r.wait_seconds).unwrap_or(300).min(86_400) as i64 * 1000,
        require_intent_id: rc.iter().find_map(|r| r.require_intent_id).unwrap_or(false),
        pause_mailbox_after: rc.iter().find_map(|r| r.pause_mailbox_after).unwrap_or(0),
    };
    // Each ladder from the most specific document that names it; one that
    // no longer resolves (validated when published) is off.
    let ladder = |kind: &str, get: fn(&TrustSpec) -> Option<&LadderSpec>| -> Option<Ladder> {
        let spec = specs.iter().find_map(|s| s.trust.as_ref().and_then(get))?;
        spec.resolve(kind).ok().flatten().map(Ladder::from_plan)
    };
    let trust = TrustLadders { mailbox: ladder("mailbox", |t| t.mailbox.as_ref()), sender_domain: ladder("sender_domain", |t| t.sender_domain.as_ref()), recipient: ladder("recipient", |t| t.recipient.as_ref()) };
    EffectivePolicy { version, tz, business_hours, limits, signals, warmup, mailbox_warmup, recipients, provider_of, public_domains, exclude_public_domains, backoff, feedback, retry, held_expire_ms, quota_alert_windows, reconcile, trust }
}

fn window_rank(w: Window) -> u8 {
    match w {
        Window::Second => 0,
        Window::Minute => 1,
        Window::Hour => 2,
        Window::Day => 3,
        Window::Rolling24h => 4,
        Window::Month => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> PolicySpec {
        let s: PolicySpec = toml::from_str(toml_text).unwrap();
        s.validate().unwrap();
        s
    }

    #[test]
    fn defaults_match_the_design() {
        let p = merge(&[]);
        assert_eq!(p.version, 0);
        let get = |k: &str| p.limits.iter().find(|l| l.key.to_string() == k).map(|l| l.max);
        assert_eq!(get("mailbox.outbound.day"), Some(25));
        assert_eq!(get("mailbox.outbound.hour"), Some(3));
        assert_eq!(get("sender_domain.outbound.hour"), Some(100));
        assert_eq!(get("sender_domain.outbound.day"), Some(1000));
        assert!(p.business_hours.is_some());
        assert_eq!(p.signals.hard_bounce.pause, 0.05);
        assert_eq!(p.signals.complaint.pause, 0.001);
    }

    #[test]
    fn the_cache_keeps_each_scope_apart() {
        let mut book = PolicyBook::default();
        book.set(Scope::Tenant("a".into()), 2, Some(spec("timezone = \"Europe/Berlin\"")));
        book.set(Scope::RecipientDomain("gmail.com".into()), 4, Some(spec("timezone = \"Asia/Tokyo\"")));
        // Run together, these two (tenant, mailbox) pairs would read alike.
        assert_eq!(book.effective("a", "x.com", "bc@x.com", None).version, 2);
        assert_eq!(book.effective("ab", "x.com", "c@x.com", None).version, 0);
        assert_eq!(book.effective("a", "x.com", "bc@x.com", Some("gmail.com")).version, 4);
        assert_eq!(book.effective("a", "x.com", "bc@x.com", Some("yahoo.com")).version, 2);
        // A withdrawn recipient-domain document no longer applies.
        book.set(Scope::RecipientDomain("gmail.com".into()), 5, None);
        assert_eq!(book.effective("a", "x.com", "bc@x.com", Some("gmail.com")).version, 2);
        // A mailbox with a document of its own has its own entry; the others
        // of its domain share one, and the domain's document applies to them.
        book.set(Scope::SenderDomain("x.com".into()), 6, Some(spec("timezone = \"Europe/Paris\"")));
        book.set(Scope::Mailbox("own@x.com".into()), 7, Some(spec("timezone = \"Asia/Tokyo\"")));
        assert_eq!(book.effective("a", "x.com", "own@x.com", None).version, 7);
        let (one, two) = (book.effective("a", "x.com", "bc@x.com", None), book.effective("a", "x.com", "de@x.com", None));
        assert_eq!((one.version, one.tz), (6, chrono_tz::Europe::Paris));
        assert!(Arc::ptr_eq(&one, &two));
        assert_eq!(book.effective("a", "y.com", "bc@y.com", None).version, 2);
        book.set(Scope::Mailbox("own@x.com".into()), 8, None);
        assert_eq!(book.effective("a", "x.com", "own@x.com", None).version, 6);
    }

    #[test]
    fn most_specific_scope_wins_field_by_field() {
        let mut book = PolicyBook::default();
        book.set(Scope::Tenant("acme".into()), 3, Some(spec("timezone = \"Europe/Berlin\"\nlimits = { \"mailbox.outbound.day\" = 50 }")));
        book.set(Scope::Mailbox("ana@acme.com".into()), 7, Some(spec("business_hours = \"off\"\nlimits = { \"mailbox.outbound.day\" = 10, \"mailbox.outbound.hour\" = \"off\" }")));
        let ana = book.effective("acme", "acme.com", "ana@acme.com", None);
        assert_eq!(ana.version, 7);
        assert_eq!(ana.tz, chrono_tz::Europe::Berlin);
        assert!(ana.business_hours.is_none());
        assert!(ana.limits.iter().all(|l| l.key.to_string() != "mailbox.outbound.hour"));
        assert_eq!(ana.limits.iter().find(|l| l.key.to_string() == "mailbox.outbound.day").unwrap().max, 10);
        let bo = book.effective("acme", "acme.com", "bo@acme.com", None);
        assert_eq!(bo.version, 3);
        assert_eq!(bo.limits.iter().find(|l| l.key.to_string() == "mailbox.outbound.day").unwrap().max, 50);
        assert!(bo.business_hours.is_some());
        // A removal takes effect at once.
        book.set(Scope::Mailbox("ana@acme.com".into()), 8, None);
        assert_eq!(book.effective("acme", "acme.com", "ana@acme.com", None).version, 3);
    }

    #[test]
    fn bad_documents_say_what_to_fix() {
        let s: PolicySpec = toml::from_str("timezone = \"Mars/Olympus\"\nlimits = { \"mailbox.outbound.week\" = 5 }\nbusiness_hours = { start = \"18:00\", end = \"08:00\" }").unwrap();
        let errs = s.validate().unwrap_err();
        assert!(errs.iter().any(|e| e.contains("IANA")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("unknown window")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("before end")), "{errs:?}");
        assert!(toml::from_str::<PolicySpec>("colour = \"red\"").is_err());
    }
}
