//! The policy document: what one scope sets. Every field is optional; the
//! effective policy of an intent merges the documents of its scopes, most
//! specific first, over the built-in defaults (see `resolve`).

use crate::clock::{parse_hhmm, parse_weekday, Window};
use crate::model::IntentClass;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a policy document applies. Most specific wins:
/// mailbox > sender domain > tenant > default.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Default,
    Tenant(String),
    SenderDomain(String),
    Mailbox(String),
    RecipientDomain(String),
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        let s = s.trim();
        if s == "default" {
            return Ok(Scope::Default);
        }
        let (kind, value) = s.split_once(':').ok_or_else(|| {
            format!("scope {s:?} must be 'default' or KIND:VALUE with KIND one of tenant, sender_domain, mailbox, recipient_domain")
        })?;
        if value.is_empty() {
            return Err(format!("scope {s:?} has an empty value"));
        }
        match kind {
            "tenant" => Ok(Scope::Tenant(value.to_string())),
            "sender_domain" => crate::model::address::normalise_domain(value)
                .map(Scope::SenderDomain)
                .map_err(|e| format!("scope {s:?}: {e}")),
            "recipient_domain" => crate::model::address::normalise_domain(value)
                .map(Scope::RecipientDomain)
                .map_err(|e| format!("scope {s:?}: {e}")),
            "mailbox" => crate::model::Address::parse(value)
                .map(|a| Scope::Mailbox(a.as_str().to_string()))
                .map_err(|e| format!("scope {s:?}: {e}")),
            other => Err(format!("scope kind {other:?} is unknown; use tenant, sender_domain, mailbox or recipient_domain")),
        }
    }
}

impl Scope {
    /// Whether this scope's document applies to a send of `tenant` from
    /// `sender` to `recipient` (normalised addresses).
    pub fn covers(&self, tenant: &str, sender: &str, recipient: &str) -> bool {
        let domain = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
        match self {
            Scope::Default => true,
            Scope::Tenant(t) => t == tenant,
            Scope::SenderDomain(d) => domain(sender) == *d,
            Scope::Mailbox(m) => m == sender,
            Scope::RecipientDomain(d) => domain(recipient) == *d,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Default => f.write_str("default"),
            Scope::Tenant(t) => write!(f, "tenant:{t}"),
            Scope::SenderDomain(d) => write!(f, "sender_domain:{d}"),
            Scope::Mailbox(m) => write!(f, "mailbox:{m}"),
            Scope::RecipientDomain(d) => write!(f, "recipient_domain:{d}"),
        }
    }
}

/// What happens when a limit would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachAction {
    /// DEFERRED until the window ends (the default).
    #[default]
    Defer,
    /// HELD for a person to approve or reject.
    Hold,
    /// ALLOWED, with an alert.
    Alert,
}

impl BreachAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BreachAction::Defer => "defer",
            BreachAction::Hold => "hold",
            BreachAction::Alert => "alert",
        }
    }
}

/// A limit as written: a number, "off", or a table with an action (and,
/// for class `all`, whether replies count and are capped too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LimitSpec {
    Max(u64),
    Off(Off),
    Full {
        max: u64,
        #[serde(default)]
        on_breach: BreachAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replies: Option<bool>,
        /// Spread the window's capacity evenly (GCRA): one every
        /// window / max, with up to `burst` at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        smooth: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burst: Option<u64>,
    },
}

/// Which intents a limit counts: one class, or every capped class together
/// (a mailbox's total, as a provider counts it; replies too if asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitClass {
    Outbound,
    Transactional,
    All,
}

impl LimitClass {
    pub fn of(class: IntentClass) -> LimitClass {
        match class {
            IntentClass::Transactional => LimitClass::Transactional,
            _ => LimitClass::Outbound,
        }
    }

    /// The counter's name (`ctr/SCOPE/NAME/WINDOW`).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitClass::Outbound => "outbound",
            LimitClass::Transactional => "transactional",
            LimitClass::All => "all",
        }
    }

    /// Whether an intent of `class` counts toward a limit of this class.
    pub fn covers(self, class: IntentClass, replies: bool) -> bool {
        match (self, class) {
            (LimitClass::All, IntentClass::Reply) => replies,
            (LimitClass::All, _) => true,
            (LimitClass::Outbound, IntentClass::Outbound) | (LimitClass::Transactional, IntentClass::Transactional) => true,
            _ => false,
        }
    }
}

/// The literal string "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Off {
    Off,
}

/// Which counters a limit key names, and so which stage keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitScope {
    Mailbox,
    SenderDomain,
    Tenant,
    Recipient,
    /// Per (sender domain, recipient domain or its provider group).
    RecipientDomain,
    /// Per (tenant, recipient domain or its provider group).
    TenantRecipientDomain,
}

impl LimitScope {
    pub const ALL: [LimitScope; 6] = [LimitScope::Mailbox, LimitScope::SenderDomain, LimitScope::Tenant, LimitScope::Recipient, LimitScope::RecipientDomain, LimitScope::TenantRecipientDomain];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Mailbox => "mailbox",
            LimitScope::SenderDomain => "sender_domain",
            LimitScope::Tenant => "tenant",
            LimitScope::Recipient => "recipient",
            LimitScope::RecipientDomain => "recipient_domain",
            LimitScope::TenantRecipientDomain => "tenant_recipient_domain",
        }
    }
}

/// A parsed limit key such as `mailbox.outbound.day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitKey {
    pub scope: LimitScope,
    pub class: LimitClass,
    pub window: Window,
}

impl LimitKey {
    pub fn parse(s: &str) -> Result<LimitKey, String> {
        let help = "limit keys are SCOPE.CLASS.WINDOW with SCOPE mailbox, sender_domain, tenant, recipient, recipient_domain or tenant_recipient_domain, CLASS outbound, transactional or all, WINDOW second, minute, hour, day, month or rolling_24h (e.g. mailbox.outbound.day, mailbox.all.rolling_24h)";
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 {
            return Err(format!("limit {s:?}: {help}"));
        }
        let scope = LimitScope::ALL.into_iter().find(|sc| sc.as_str() == parts[0]).ok_or_else(|| format!("limit {s:?}: unknown scope {:?}; {help}", parts[0]))?;
        let class = match parts[1] {
            "outbound" => LimitClass::Outbound,
            "transactional" => LimitClass::Transactional,
            "all" => LimitClass::All,
            "reply" => return Err(format!("limit {s:?}: replies are capped only within a total: class all with replies = true (they are always counted); {help}")),
            _ => return Err(format!("limit {s:?}: unknown class {:?}; {help}", parts[1])),
        };
        let window = Window::parse(parts[2]).ok_or_else(|| format!("limit {s:?}: unknown window {:?}; {help}", parts[2]))?;
        Ok(LimitKey { scope, class, window })
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.scope.as_str(), self.class.as_str(), self.window.as_str())
    }
}

/// Warm-up of a new sender domain, as written: "off", or a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WarmupSpec {
    Off(Off),
    Plan(WarmupPlan),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupPlan {
    /// A ramp table by infrastructure: shared, dedicated_new_domain or
    /// dedicated_established_domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// YYYY-MM-DD (tenant-local) the domain started sending; default: the
    /// log time of its first intent seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<WarmupStep>>,
}

/// Limits while the domain's age (day 1 = its first 24 hours) is at most `until_day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupStep {
    pub until_day: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u64>,
}

/// Ramp tables by infrastructure type (day 1 / week 1 / week 4 daily
/// limits, the weeks between stepped evenly).
pub fn warmup_preset(name: &str) -> Option<Vec<WarmupStep>> {
    if name == "inbox" {
        // A new inbox: at most 50 a day for its first two weeks, then up to
        // the 200-250 a day a warmed inbox sends.
        return Some([(14, 50), (21, 100), (28, 150)].into_iter().map(|(until_day, day)| WarmupStep { until_day, hour: None, day: Some(day) }).collect());
    }
    let (d1, w1, w4) = match name {
        "shared" => (20, 50, 200),
        "dedicated_new_domain" => (50, 100, 500),
        "dedicated_established_domain" => (100, 300, 2_000),
        _ => return None,
    };
    let step = (w4 - w1) / 3;
    Some(
        [(1, d1), (7, w1), (14, w1 + step), (21, w1 + 2 * step), (28, w4)]
            .into_iter()
            .map(|(until_day, day)| WarmupStep { until_day, hour: None, day: Some(day) })
            .collect(),
    )
}

pub const QUOTA_PRESETS: [&str; 6] = ["google_workspace", "gmail", "microsoft_365", "microsoft_365_new_mailbox", "ses_sandbox", "ses_production_start"];

/// The published sending limits of mail providers, per sending account
/// (every message counts, replies included). A document sets the preset of
/// the scope it is written for: a `mailbox:` or `sender_domain:` document
/// (mailbox limits apply to each mailbox under it), or a tenant's for SES,
/// whose quotas are per account.
pub fn quota_preset(name: &str) -> Option<Vec<(&'static str, u64)>> {
    Some(match name {
        // Google Workspace: 2,000 messages a day per user.
        "google_workspace" => vec![("mailbox.all.day", 2_000)],
        // Consumer Gmail: 500 a day.
        "gmail" => vec![("mailbox.all.day", 500)],
        // Exchange Online: 30 a minute and 10,000 recipients a day per
        // mailbox, 2,000 external recipients in any 24 hours.
        "microsoft_365" => vec![("mailbox.all.minute", 30), ("mailbox.all.day", 10_000), ("mailbox.all.rolling_24h", 2_000)],
        // A new Microsoft 365 mailbox is throttled long before that: about
        // 200 a day until it has a history.
        "microsoft_365_new_mailbox" => vec![("mailbox.all.minute", 30), ("mailbox.all.rolling_24h", 200)],
        // Amazon SES in the sandbox: 200 a day, 1 a second, per account.
        "ses_sandbox" => vec![("tenant.all.rolling_24h", 200), ("tenant.all.second", 1)],
        // Amazon SES when production access starts: 50,000 a day, 14 a second.
        "ses_production_start" => vec![("tenant.all.rolling_24h", 50_000), ("tenant.all.second", 14)],
        _ => return None,
    })
}

/// Per-recipient rules other than caps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientsSpec {
    /// The same template to the same recipient at most once per this many minutes (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_minutes: Option<u32>,
    /// Identical content_hash to the same recipient at most once per this many hours (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_hours: Option<u32>,
    /// Only recipients on the tenant's allow list may be sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_list_only: Option<bool>,
}

/// ISP feedback: backoff on throttling deferrals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u32>,
    /// Consecutive throttles after which an escalation alert is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after: Option<u32>,
    /// SMTP codes that mean "slow down" (5xx never does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_codes: Option<Vec<i32>>,
    /// Throttling from this many recipient domain groups within the window pauses the sender domain (0 = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_domains: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_window_minutes: Option<u32>,
    /// After a backoff ends, the rate to the group steps back up over this
    /// many minutes (0: at once), from `ramp_start_per_minute`, doubling
    /// every quarter of the ramp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_start_per_minute: Option<u32>,
}

/// A feedback rule as written: what to match (all given must match) and
/// the action (see `stage::feedback`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRuleSpec {
    /// Delivery kinds (deferred, bounce_soft, bounce_hard, rejected, ...);
    /// default: deferred, bounce_soft, bounce_hard and rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    /// The SMTP reply code (or an ESP's HTTP status, e.g. 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The enhanced status code or a prefix of it: "4.7.26", or "5.7".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    /// A regular expression the response text must match ("(?i)" for any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// backoff, pause_mailbox, pause_domain, suppress_recipient or ignore.
    pub action: String,
}

impl FeedbackRuleSpec {
    /// The rule as the stages use it, or what is wrong with it.
    pub fn compile(&self) -> Result<crate::stage::feedback::FeedbackRule, String> {
        use crate::stage::feedback::{parse_kind, FeedbackAction, FeedbackRule, Pattern};
        let action: FeedbackAction = serde_json::from_value(serde_json::Value::String(self.action.clone()))
            .map_err(|_| format!("action {:?} is unknown; use backoff, pause_mailbox, pause_domain, suppress_recipient or ignore", self.action))?;
        if self.kinds.is_none() && self.code.is_none() && self.enhanced.is_none() && self.response.is_none() {
            return Err("a rule must match on something: kinds, code, enhanced or response".into());
        }
        let kinds = self
            .kinds
            .iter()
            .flatten()
            .map(|k| parse_kind(k).ok_or_else(|| format!("kind {k:?} is not a delivery kind (deferred, bounce_soft, bounce_hard, rejected, complaint, ...)")))
            .collect::<Result<Vec<_>, _>>()?;
        let enhanced = match &self.enhanced {
            Some(e) => {
                let parts: Vec<String> = e.trim().split('.').map(str::to_string).collect();
                if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(format!("enhanced {e:?} must be an enhanced status code or a prefix of one, e.g. 4.7.26 or 5.7"));
                }
                Some(parts)
            }
            None => None,
        };
        let response = self.response.as_deref().map(Pattern::new).transpose()?;
        Ok(FeedbackRule { kinds, code: self.code, enhanced, response, action })
    }
}

/// Business hours as written: "off", or start/end/days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BusinessHoursSpec {
    Off(Off),
    Hours {
        start: String,
        end: String,
        #[serde(default = "default_days")]
        days: Vec<String>,
    },
}

fn default_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"].iter().map(|s| s.to_string()).collect()
}

/// Thresholds of one signal, as rates (0.05 = 5%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierThresholds {
    pub warn: f64,
    pub slow: f64,
    pub pause: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_bounce: Option<TierThresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complaint: Option<TierThresholds>,
    /// Sends in the window before a rate counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_volume: Option<u64>,
    /// How far back "recent" reaches, in hours (1..=168).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_hours: Option<u32>,
    /// Opt-in: a pause set by the signals lifts itself after this many
    /// minutes (0 or absent: only a resume command lifts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resume_minutes: Option<u32>,
    /// Low volume: below `min_volume` sends, a signal's rate still counts
    /// once the window holds this many of its events (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_events: Option<u64>,
    /// Each mailbox keeps signals of its own beside its domain's, and its
    /// own tiers and pause (the breaker that trips first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_mailbox: Option<bool>,
    /// Opt-in: today's rate (since local midnight) over this pauses the
    /// mailbox or domain for the rest of the day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_of_day: Option<RestOfDaySpec>,
    /// Opt-in: opens, clicks and replies over the sends of the last 7 days
    /// hold a warm-up step or allow the next one (the processor must route
    /// engagement events: SENDGATE_ENGAGEMENT_EVENTS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement: Option<EngagementSpec>,
}

/// The engagement signal as written: "off", or its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EngagementSpec {
    Off(Off),
    Thresholds {
        /// Below this rate the domain stays a step back in its warm-up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold_below: Option<f64>,
        /// At or above it the domain may take its next step early.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        advance_above: Option<f64>,
        /// Sends in the 7 days before the rate counts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_sends: Option<u64>,
    },
}

/// The "rest of the day" rule as written: "off", or the rates that trip it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RestOfDaySpec {
    Off(Off),
    Rates {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hard_bounce: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        complaint: Option<f64>,
    },
}

/// When deferred intents are told to come back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// The share of the binding window over which retry times are spread
    /// after its end, by a hash of the intent (0: all at the end; at most 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
    /// The longest spread, in minutes, whatever the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spread_minutes: Option<u32>,
}

/// Intents held for approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldSpec {
    /// A held intent nobody approved or rejected within this many hours is
    /// BLOCKED approval_expired (0: it waits for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_hours: Option<u32>,
}

/// Reconciliation of what was sent (delivery events) against what was
/// allowed (decisions); see `stage::reconcile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSpec {
    /// Off: delivery events are not checked against decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long an event for an intent not yet decided (or not yet seen)
    /// waits for its decision before it counts as unapproved (at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u32>,
    /// An event that names no intent is an unapproved send (off: it is not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_intent_id: Option<bool>,
    /// This many unapproved sends from one mailbox in a day pause it (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_mailbox_after: Option<u32>,
}

/// The trust ladders: new mailboxes, sender domains and recipients start
/// supervised and step up on healthy signals (see `stage::trust`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<LadderSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_domain: Option<LadderSpec>,
    /// Per recipient of a tenant's sender domain: a first contact gets a
    /// few sends in its first hour and day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<LadderSpec>,
}

/// A ladder: a preset name ("standard", or "off"), or its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LadderSpec {
    Preset(String),
    Plan(LadderPlan),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderPlan {
    /// From a preset, with the fields below overriding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The steps, first (new) to last; a step without caps is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<TrustStepSpec>>,
    /// Sends allowed at a step before it may step up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance_after_sends: Option<u64>,
    /// Hours at a step before it may step up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance_after_hours: Option<u32>,
    /// Hard bounces (and rejections) over the step's sends at most this to
    /// step up; above it, with `demote_after_events` bad events, a step down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hard_bounce_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_complaint_rate: Option<f64>,
    /// Bad events (bounces, complaints) at a step before a rate over its
    /// maximum steps down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demote_after_events: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustStepSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u64>,
}

/// The ladders of the preset `standard`, by subject kind: (steps as (name,
/// hour, day), sends and hours to step up).
pub fn ladder_preset(kind: &str, name: &str) -> Option<LadderPlan> {
    let step = |name: &str, hour: Option<u64>, day: Option<u64>| TrustStepSpec { name: name.into(), hour, day };
    if name != "standard" {
        return None;
    }
    let (steps, sends, hours) = match kind {
        // A new inbox: 5 an hour and 20 a day until 20 healthy sends over a
        // day at the step; then 20 and 100 until 20 more over another day.
        "mailbox" => (vec![step("supervised", Some(5), Some(20)), step("probation", Some(20), Some(100)), step("trusted", None, None)], 20, 24),
        "sender_domain" => (vec![step("supervised", Some(20), Some(100)), step("probation", Some(100), Some(1_000)), step("trusted", None, None)], 100, 72),
        // A first contact: 2 an hour and 3 a day, as agent mail platforms
        // ramp a new recipient; known after 3 sends over a day with no
        // bounce or complaint.
        "recipient" => (vec![step("first_contact", Some(2), Some(3)), step("known", Some(5), Some(10)), step("trusted", None, None)], 3, 24),
        _ => return None,
    };
    Some(LadderPlan {
        preset: None,
        steps: Some(steps),
        advance_after_sends: Some(sends),
        advance_after_hours: Some(hours),
        max_hard_bounce_rate: Some(0.02),
        max_complaint_rate: Some(0.001),
        demote_after_events: Some(2),
    })
}

impl LadderSpec {
    /// The plan this spec stands for (None: off), or what is wrong with it.
    pub fn resolve(&self, kind: &str) -> Result<Option<LadderPlan>, String> {
        let plan = match self {
            LadderSpec::Preset(p) if p == "off" => return Ok(None),
            LadderSpec::Preset(p) => ladder_preset(kind, p).ok_or_else(|| format!("trust.{kind}: unknown preset {p:?}; use \"standard\", \"off\" or a table of steps"))?,
            LadderSpec::Plan(p) => {
                let base = match &p.preset {
                    Some(name) => ladder_preset(kind, name).ok_or_else(|| format!("trust.{kind}: unknown preset {name:?}; use \"standard\""))?,
                    None => LadderPlan::default(),
                };
                LadderPlan {
                    preset: None,
                    steps: p.steps.clone().or(base.steps),
                    advance_after_sends: p.advance_after_sends.or(base.advance_after_sends),
                    advance_after_hours: p.advance_after_hours.or(base.advance_after_hours),
                    max_hard_bounce_rate: p.max_hard_bounce_rate.or(base.max_hard_bounce_rate),
                    max_complaint_rate: p.max_complaint_rate.or(base.max_complaint_rate),
                    demote_after_events: p.demote_after_events.or(base.demote_after_events),
                }
            }
        };
        let steps = plan.steps.as_deref().unwrap_or_default();
        if steps.len() < 2 {
            return Err(format!("trust.{kind}: a ladder needs at least two steps (the first supervised, the last its goal)"));
        }
        if steps.len() > 8 {
            return Err(format!("trust.{kind}: at most 8 steps"));
        }
        for s in steps {
            if s.name.trim().is_empty() || s.name.len() > 32 {
                return Err(format!("trust.{kind}: every step needs a name of 1 to 32 characters"));
            }
            if s.hour == Some(0) || s.day == Some(0) {
                return Err(format!("trust.{kind}: step {:?}: a cap of 0 would never let it send; leave it out for no cap", s.name));
            }
        }
        for (name, r) in [("max_hard_bounce_rate", plan.max_hard_bounce_rate), ("max_complaint_rate", plan.max_complaint_rate)] {
            if r.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err(format!("trust.{kind}.{name} must be between 0 and 1"));
            }
        }
        Ok(Some(plan))
    }
}

/// Which alerts are raised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    /// The windows whose limits raise quota_80 / quota_100 alerts (once per
    /// window period each): any of minute, hour, day, month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_windows: Option<Vec<String>>,
}

/// One scope's policy document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// IANA zone name, e.g. Europe/Berlin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHoursSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, LimitSpec>,
    /// A mail provider's published sending limits, as limits of this
    /// document (its own `limits` win key by key); see [`quota_preset`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupSpec>,
    /// Warm-up of each new mailbox, from its first intent (or `started_on`),
    /// beside its domain's: a new inbox on a warmed domain ramps too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_warmup: Option<WarmupSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<RecipientsSpec>,
    /// Provider groups: recipient domains served by one mailbox provider,
    /// which share the recipient-domain limits and backoff (group -> domains).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, Vec<String>>,
    /// Consumer mailbox domains (gmail.com, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_domains: Option<Vec<String>>,
    /// Recipient-domain limits do not apply to public domains (backoff still does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_public_domains: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isp_backoff: Option<BackoffSpec>,
    /// ISP and ESP feedback rules, first match wins, before the built-in
    /// throttle rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Vec<FeedbackRuleSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustSpec>,
    /// In a `sender_domain:` document only: the tenant that owns the domain.
    /// Only its intents are sent from it, only its delivery events move its
    /// signals, only its commands pause or resume it (docs/design.md, Tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl PolicySpec {
    /// Checks that depend on the document's scope.
    pub fn validate_for(&self, scope: &crate::policy::Scope) -> Result<(), String> {
        match (&self.owner, scope) {
            (Some(o), crate::policy::Scope::SenderDomain(_)) if o.trim().is_empty() => Err("owner must name a tenant".into()),
            (Some(_), crate::policy::Scope::SenderDomain(_)) | (None, _) => Ok(()),
            (Some(_), other) => Err(format!("owner claims a sender domain for a tenant: it belongs in a sender_domain: document, not in {other}")),
        }
    }

    /// Every problem in the document, each saying what to fix.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let Some(tz) = &self.timezone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                errors.push(format!("timezone {tz:?} is not an IANA zone name (e.g. Europe/Berlin, America/New_York, UTC)"));
            }
        }
        if let Some(BusinessHoursSpec::Hours { start, end, days }) = &self.business_hours {
            let s = parse_hhmm(start);
            let e = parse_hhmm(end);
            if s.is_none() {
                errors.push(format!("business_hours.start {start:?} must be HH:MM (24-hour)"));
            }
            if e.is_none() {
                errors.push(format!("business_hours.end {end:?} must be HH:MM (24-hour)"));
            }
            if let (Some(s), Some(e)) = (s, e) {
                if s >= e {
                    errors.push(format!("business_hours: start {start} must be before end {end}"));
                }
            }
            if days.is_empty() {
                errors.push("business_hours.days is empty; list at least one day or set business_hours = \"off\"".into());
            }
            for d in days {
                if parse_weekday(d).is_none() {
                    errors.push(format!("business_hours.days: {d:?} is not a weekday (mon..sun)"));
                }
            }
        }
        for (key, spec) in &self.limits {
            match LimitKey::parse(key) {
                Err(e) => errors.push(e),
                Ok(k) => {
                    if let LimitSpec::Full { replies: Some(_), .. } = spec {
                        if k.class != LimitClass::All {
                            errors.push(format!("limit {key:?}: replies applies to class all only (a total across classes)"));
                        }
                    }
                    if let LimitSpec::Full { max, smooth, burst, .. } = spec {
                        if smooth.unwrap_or(false) && (k.window.is_rolling() || *max == 0) {
                            errors.push(format!("limit {key:?}: smooth needs a calendar window and a max above 0"));
                        }
                        if burst.is_some() && !smooth.unwrap_or(false) {
                            errors.push(format!("limit {key:?}: burst applies to a smooth limit only (smooth = true)"));
                        }
                        if *burst == Some(0) {
                            errors.push(format!("limit {key:?}: burst must be at least 1"));
                        }
                    }
                }
            }
            // 0 is legal: it stops the class outright.
        }
        if let Some(p) = &self.quota_preset {
            if quota_preset(p).is_none() {
                errors.push(format!("quota_preset {p:?} is unknown; use one of {}", QUOTA_PRESETS.join(", ")));
            }
        }
        for (field, spec) in [("warmup", &self.warmup), ("mailbox_warmup", &self.mailbox_warmup)] {
            let Some(WarmupSpec::Plan(plan)) = spec else { continue };
            if let Some(p) = &plan.preset {
                if warmup_preset(p).is_none() {
                    errors.push(format!("{field}.preset {p:?} is unknown; use shared, dedicated_new_domain, dedicated_established_domain or inbox"));
                }
                if plan.steps.is_some() {
                    errors.push(format!("{field}: set either preset or steps, not both"));
                }
            }
            if let Some(d) = &plan.started_on {
                if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                    errors.push(format!("{field}.started_on {d:?} must be a date YYYY-MM-DD"));
                }
            }
            if let Some(steps) = &plan.steps {
                if steps.is_empty() {
                    errors.push(format!("{field}.steps is empty; list at least one step or set {field} = \"off\""));
                }
                for (i, st) in steps.iter().enumerate() {
                    if st.hour.is_none() && st.day.is_none() {
                        errors.push(format!("{field}.steps[{i}]: set hour, day or both"));
                    }
                    if st.until_day == 0 || (i > 0 && st.until_day <= steps[i - 1].until_day) {
                        errors.push(format!("{field}.steps[{i}]: until_day must be at least 1 and rise from step to step"));
                    }
                }
            }
        }
        for (group, domains) in &self.providers {
            if group.is_empty() || group.contains('/') {
                errors.push(format!("providers: group name {group:?} must be non-empty and contain no '/'"));
            }
            for d in domains {
                if crate::model::address::normalise_domain(d).is_err() {
                    errors.push(format!("providers.{group}: {d:?} is not a domain"));
                }
            }
        }
        for d in self.public_domains.iter().flatten() {
            if crate::model::address::normalise_domain(d).is_err() {
                errors.push(format!("public_domains: {d:?} is not a domain"));
            }
        }
        if let Some(b) = &self.isp_backoff {
            if let (Some(i), Some(m)) = (b.initial_seconds, b.max_seconds) {
                if i > m {
                    errors.push(format!("isp_backoff: initial_seconds {i} is above max_seconds {m}"));
                }
            }
            if b.initial_seconds == Some(0) {
                errors.push("isp_backoff.initial_seconds must be at least 1".into());
            }
            for c in b.throttle_codes.iter().flatten() {
                if !(400..500).contains(c) {
                    errors.push(format!("isp_backoff.throttle_codes: {c} is not a 4xx code (5xx is a rejection, never a throttle)"));
                }
            }
        }
        if let Some(rules) = &self.feedback {
            if rules.len() > crate::stage::feedback::RULES_MAX {
                errors.push(format!("feedback: at most {} rules", crate::stage::feedback::RULES_MAX));
            }
            for (i, r) in rules.iter().enumerate() {
                if let Err(e) = r.compile() {
                    errors.push(format!("feedback[{i}]: {e}"));
                }
            }
        }
        for w in self.alerts.iter().flat_map(|a| a.quota_windows.iter().flatten()) {
            if !Window::parse(w).is_some_and(|w| !w.is_rolling()) {
                errors.push(format!("alerts.quota_windows: {w:?} is not a calendar window (second, minute, hour, day, month; a rolling window raises no quota alert)"));
            }
        }
        if let Some(r) = &self.reconcile {
            if r.wait_seconds.is_some_and(|w| w > 86_400) {
                errors.push("reconcile.wait_seconds must be at most 86400 (a day)".into());
            }
        }
        if let Some(t) = &self.trust {
            for (kind, l) in [("mailbox", &t.mailbox), ("sender_domain", &t.sender_domain), ("recipient", &t.recipient)] {
                if let Some(Err(e)) = l.as_ref().map(|l| l.resolve(kind)) {
                    errors.push(e);
                }
            }
        }
        if let Some(r) = &self.retry {
            if r.spread.is_some_and(|x| !(x.is_finite() && (0.0..=1.0).contains(&x))) {
                errors.push("retry.spread is a share of the window between 0 and 1, e.g. 0.25".into());
            }
        }
        if let Some(sig) = &self.signals {
            for (name, t) in [("hard_bounce", sig.hard_bounce), ("complaint", sig.complaint)] {
                if let Some(t) = t {
                    let ok = |x: f64| x.is_finite() && x > 0.0 && x <= 1.0;
                    if !(ok(t.warn) && ok(t.slow) && ok(t.pause)) {
                        errors.push(format!("signals.{name}: thresholds are rates in (0, 1], e.g. 0.02 for 2%"));
                    } else if !(t.warn <= t.slow && t.slow <= t.pause) {
                        errors.push(format!("signals.{name}: thresholds must rise: warn <= slow <= pause"));
                    }
                }
            }
            if let Some(RestOfDaySpec::Rates { hard_bounce, complaint }) = sig.rest_of_day {
                if hard_bounce.is_none() && complaint.is_none() {
                    errors.push("signals.rest_of_day: set hard_bounce, complaint or both (rates, e.g. 0.05), or \"off\"".into());
                }
                if [hard_bounce, complaint].into_iter().flatten().any(|x| !(x.is_finite() && x > 0.0 && x <= 1.0)) {
                    errors.push("signals.rest_of_day: rates are in (0, 1], e.g. 0.05 for 5%".into());
                }
            }
            if let Some(EngagementSpec::Thresholds { hold_below, advance_above, .. }) = sig.engagement {
                let (h, a) = (hold_below.unwrap_or(0.05), advance_above.unwrap_or(0.2));
                if !(h.is_finite() && a.is_finite() && (0.0..=1.0).contains(&h) && (0.0..=1.0).contains(&a) && h <= a) {
                    errors.push("signals.engagement: hold_below and advance_above are rates in [0, 1], hold_below <= advance_above".into());
                }
            }
            if let Some(h) = sig.window_hours {
                if !(1..=168).contains(&h) {
                    errors.push(format!("signals.window_hours {h} must be between 1 and 168"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn to_canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a policy spec always serialises")
    }

    pub fn from_json(json: &str) -> Result<PolicySpec, String> {
        let spec: PolicySpec = serde_json::from_str(json).map_err(|e| format!("policy spec is not valid: {e}"))?;
        spec.validate().map_err(|errs| errs.join("; "))?;
        Ok(spec)
    }
}
