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

/// A limit as written: a number, "off", or a table with an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LimitSpec {
    Max(u64),
    Off(Off),
    Full { max: u64, #[serde(default)] on_breach: BreachAction },
}

/// The literal string "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Off {
    Off,
}

/// Which counters a limit key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitScope {
    Mailbox,
    SenderDomain,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Mailbox => "mailbox",
            LimitScope::SenderDomain => "sender_domain",
        }
    }
}

/// A parsed limit key such as `mailbox.outbound.day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitKey {
    pub scope: LimitScope,
    pub class: IntentClass,
    pub window: Window,
}

impl LimitKey {
    pub fn parse(s: &str) -> Result<LimitKey, String> {
        let help = "limit keys are SCOPE.CLASS.WINDOW with SCOPE mailbox or sender_domain, CLASS outbound or transactional, WINDOW minute, hour, day or month (e.g. mailbox.outbound.day)";
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 {
            return Err(format!("limit {s:?}: {help}"));
        }
        let scope = match parts[0] {
            "mailbox" => LimitScope::Mailbox,
            "sender_domain" => LimitScope::SenderDomain,
            _ => return Err(format!("limit {s:?}: unknown scope {:?}; {help}", parts[0])),
        };
        let class = match parts[1] {
            "outbound" => IntentClass::Outbound,
            "transactional" => IntentClass::Transactional,
            "reply" => return Err(format!("limit {s:?}: replies are never capped (they are still counted); {help}")),
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsSpec>,
}

impl PolicySpec {
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
            if let Err(e) = LimitKey::parse(key) {
                errors.push(e);
            }
            if let LimitSpec::Full { max: 0, .. } | LimitSpec::Max(0) = spec {
                // 0 is legal: it stops the class outright. Nothing to report.
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
