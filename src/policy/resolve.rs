//! The effective policy of an intent: its scopes' documents merged, most
//! specific first, over the built-in defaults.

use super::spec::*;
use crate::clock::{parse_hhmm, parse_weekday, BusinessHours};
use crate::model::IntentClass;
use crate::clock::Window;
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub key: LimitKey,
    pub max: u64,
    pub on_breach: BreachAction,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalPolicy {
    pub hard_bounce: TierThresholds,
    pub complaint: TierThresholds,
    pub min_volume: u64,
    pub window_hours: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EffectivePolicy {
    /// 0 for the built-in defaults; else the newest version among the documents used.
    pub version: i64,
    pub tz: Tz,
    pub business_hours: Option<BusinessHours>,
    /// Active limits (not "off"), in key order.
    pub limits: Vec<Limit>,
    pub signals: SignalPolicy,
}

impl EffectivePolicy {
    pub fn limits_for(&self, class: IntentClass) -> impl Iterator<Item = &Limit> {
        self.limits.iter().filter(move |l| l.key.class == class)
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
    PolicySpec {
        timezone: Some("UTC".into()),
        business_hours: Some(BusinessHoursSpec::Hours { start: "08:00".into(), end: "18:00".into(), days: vec!["mon".into(), "tue".into(), "wed".into(), "thu".into(), "fri".into()] }),
        limits,
        signals: Some(SignalsSpec {
            // Bounce 2% warn / 3% slow / 5% pause; complaint 0.05 / 0.08 / 0.1 %.
            hard_bounce: Some(TierThresholds { warn: 0.02, slow: 0.03, pause: 0.05 }),
            complaint: Some(TierThresholds { warn: 0.0005, slow: 0.0008, pause: 0.001 }),
            min_volume: Some(100),
            window_hours: Some(24),
        }),
    }
}

/// All policy documents a stage partition knows, with a bounded cache of
/// merged results (cleared on every change, so it can never be stale).
#[derive(Debug, Default)]
pub struct PolicyBook {
    docs: HashMap<Scope, (i64, PolicySpec)>,
    cache: HashMap<(String, String), Arc<EffectivePolicy>>,
}

const CACHE_MAX: usize = 10_000;

impl PolicyBook {
    pub fn set(&mut self, scope: Scope, version: i64, spec: Option<PolicySpec>) {
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

    pub fn effective(&mut self, tenant: &str, sender_domain: &str, mailbox: &str) -> Arc<EffectivePolicy> {
        let key = (tenant.to_string(), mailbox.to_string());
        if let Some(p) = self.cache.get(&key) {
            return p.clone();
        }
        let scopes = [
            Scope::Mailbox(mailbox.to_string()),
            Scope::SenderDomain(sender_domain.to_string()),
            Scope::Tenant(tenant.to_string()),
            Scope::Default,
        ];
        let layers: Vec<&(i64, PolicySpec)> = scopes.iter().filter_map(|s| self.docs.get(s)).collect();
        let eff = Arc::new(merge(&layers));
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, eff.clone());
        eff
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

    let mut keys: Vec<String> = specs.iter().flat_map(|s| s.limits.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    let mut limits: Vec<Limit> = keys
        .iter()
        .filter_map(|k| {
            let key = LimitKey::parse(k).ok()?;
            let spec = specs.iter().find_map(|s| s.limits.get(k))?;
            match spec {
                LimitSpec::Off(_) => None,
                LimitSpec::Max(m) => Some(Limit { key, max: *m, on_breach: BreachAction::Defer }),
                LimitSpec::Full { max, on_breach } => Some(Limit { key, max: *max, on_breach: *on_breach }),
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
    };
    EffectivePolicy { version, tz, business_hours, limits, signals }
}

fn window_rank(w: Window) -> u8 {
    match w {
        Window::Minute => 0,
        Window::Hour => 1,
        Window::Day => 2,
        Window::Month => 3,
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
    fn most_specific_scope_wins_field_by_field() {
        let mut book = PolicyBook::default();
        book.set(Scope::Tenant("acme".into()), 3, Some(spec("timezone = \"Europe/Berlin\"\nlimits = { \"mailbox.outbound.day\" = 50 }")));
        book.set(Scope::Mailbox("ana@acme.com".into()), 7, Some(spec("business_hours = \"off\"\nlimits = { \"mailbox.outbound.day\" = 10, \"mailbox.outbound.hour\" = \"off\" }")));
        let ana = book.effective("acme", "acme.com", "ana@acme.com");
        assert_eq!(ana.version, 7);
        assert_eq!(ana.tz, chrono_tz::Europe::Berlin);
        assert!(ana.business_hours.is_none());
        assert!(ana.limits.iter().all(|l| l.key.to_string() != "mailbox.outbound.hour"));
        assert_eq!(ana.limits.iter().find(|l| l.key.to_string() == "mailbox.outbound.day").unwrap().max, 10);
        let bo = book.effective("acme", "acme.com", "bo@acme.com");
        assert_eq!(bo.version, 3);
        assert_eq!(bo.limits.iter().find(|l| l.key.to_string() == "mailbox.outbound.day").unwrap().max, 50);
        assert!(bo.business_hours.is_some());
        // A removal takes effect at once.
        book.set(Scope::Mailbox("ana@acme.com".into()), 8, None);
        assert_eq!(book.effective("acme", "acme.com", "ana@acme.com").version, 3);
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
