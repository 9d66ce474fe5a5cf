//! ISP and ESP feedback read for what it says. A delivery event's kind,
//! SMTP code, enhanced status code and response text are matched against
//! the policy's `feedback` rules, in order; the first that matches chooses
//! the action. The built-in rules, after the policy's, keep the behaviour
//! of `isp_backoff.throttle_codes`: a deferral or soft bounce with one of
//! those codes is a throttle (backoff).
//!
//! So `421 4.7.26` (the message failed authentication: fix SPF, DKIM or
//! DMARC, slowing down will not help) and `421 4.7.28` (too fast: back off)
//! can take different actions, and an ESP's API refusal (HTTP 429 as the
//! code of a `REJECTED` event) can be a backoff.

use crate::model::{DeliveryEvent, DeliveryKind};
use crate::policy::EffectivePolicy;
use serde::{Deserialize, Serialize};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackAction {
    /// Back off from the recipient domain (its provider group): ISP backoff.
    Backoff,
    /// Pause the sending mailbox until a resume.
    PauseMailbox,
    /// Pause the sender domain until a resume.
    PauseDomain,
    /// Suppress the recipient for the tenant (as a hard bounce does).
    SuppressRecipient,
    /// Nothing, not even a rule further down.
    Ignore,
}

impl FeedbackAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackAction::Backoff => "backoff",
            FeedbackAction::PauseMailbox => "pause_mailbox",
            FeedbackAction::PauseDomain => "pause_domain",
            FeedbackAction::SuppressRecipient => "suppress_recipient",
            FeedbackAction::Ignore => "ignore",
        }
    }
}

/// The delivery kinds a rule matches when it names none: the ones that
/// carry a provider's answer about a message that did not go through.
pub const DEFAULT_KINDS: [DeliveryKind; 4] = [DeliveryKind::Deferred, DeliveryKind::BounceSoft, DeliveryKind::BounceHard, DeliveryKind::Rejected];

/// Longest response pattern, and the most compiled program it may make.
pub const PATTERN_MAX: usize = 512;
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// Most rules in one document.
pub const RULES_MAX: usize = 64;

/// A response pattern, compiled once per effective policy.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        if pattern.len() > PATTERN_MAX {
            return Err(format!("a response pattern is at most {PATTERN_MAX} characters"));
        }
        regex::RegexBuilder::new(pattern).size_limit(PATTERN_SIZE_LIMIT).build().map(Pattern).map_err(|e| format!("response pattern {pattern:?}: {e}"))
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRule {
    pub kinds: Vec<DeliveryKind>,
    pub code: Option<i32>,
    /// Dotted components; a rule's `4.7` matches `4.7.26` and `4.7.28`.
    pub enhanced: Option<Vec<String>>,
    pub response: Option<Pattern>,
    pub action: FeedbackAction,
}

impl FeedbackRule {
    pub fn matches(&self, ev: &DeliveryEvent) -> bool {
        let kinds: &[DeliveryKind] = if self.kinds.is_empty() { &DEFAULT_KINDS } else { &self.kinds };
        kinds.contains(&ev.kind)
            && self.code.is_none_or(|c| ev.smtp_code == Some(c))
            && self.enhanced.as_ref().is_none_or(|want| ev.enhanced_code.as_deref().is_some_and(|got| {
                let got: Vec<&str> = got.trim().split('.').collect();
                want.len() <= got.len() && want.iter().zip(&got).all(|(w, g)| w == g)
            }))
            && self.response.as_ref().is_none_or(|p| ev.response.as_deref().is_some_and(|r| p.0.is_match(r)))
    }
}

/// A throttling deferral: a 4xx the policy names (421, 450, 452 by
/// default). A 5xx is a rejection, never a throttle.
pub fn is_throttle(ev: &DeliveryEvent, policy: &EffectivePolicy) -> bool {
    action_of(policy, ev) == Some(FeedbackAction::Backoff)
}

/// The action the first matching rule chooses, if any rule matches.
pub fn action_of(policy: &EffectivePolicy, ev: &DeliveryEvent) -> Option<FeedbackAction> {
    policy.feedback.iter().find(|r| r.matches(ev)).map(|r| r.action)
}

/// The kind a rule names, as written (`deferred`, `bounce_soft`, ...).
pub fn parse_kind(s: &str) -> Option<DeliveryKind> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::resolve::merge;
    use crate::policy::PolicySpec;

    fn ev(kind: DeliveryKind, code: Option<i32>, enhanced: Option<&str>, response: Option<&str>) -> DeliveryEvent {
        DeliveryEvent { event_id: "e".into(), intent_id: None, tenant: "t".into(), sender: "a@x.com".into(), recipient: "b@y.com".into(), kind, smtp_code: code, enhanced_code: enhanced.map(str::to_string), response: response.map(str::to_string), occurred_at_ms: 0, retry_after_seconds: None }
    }

    #[test]
    fn rules_match_in_order_over_the_built_in_throttle_codes() {
        let spec: PolicySpec = toml::from_str(
            r#"feedback = [
                { enhanced = "4.7.26", action = "pause_domain" },
                { code = 421, response = "(?i)try again later", action = "ignore" },
                { kinds = ["rejected"], code = 429, action = "backoff" },
                { kinds = ["bounce_hard", "rejected"], enhanced = "5.7", action = "pause_mailbox" },
            ]"#,
        )
        .unwrap();
        spec.validate().unwrap();
        let p = merge(&[&(1, spec)]);
        let of = |e: DeliveryEvent| action_of(&p, &e);
        assert_eq!(of(ev(DeliveryKind::Deferred, Some(421), Some("4.7.26"), None)), Some(FeedbackAction::PauseDomain));
        // 4.7.28 falls through to the built-in rule: 421 is a throttle.
        assert_eq!(of(ev(DeliveryKind::Deferred, Some(421), Some("4.7.28"), None)), Some(FeedbackAction::Backoff));
        assert_eq!(of(ev(DeliveryKind::Deferred, Some(421), None, Some("Service busy, TRY AGAIN LATER"))), Some(FeedbackAction::Ignore));
        assert_eq!(of(ev(DeliveryKind::Rejected, Some(429), None, None)), Some(FeedbackAction::Backoff));
        assert_eq!(of(ev(DeliveryKind::Deferred, Some(429), None, None)), None, "429 only as a rejection");
        assert_eq!(of(ev(DeliveryKind::BounceHard, Some(550), Some("5.7.1"), None)), Some(FeedbackAction::PauseMailbox));
        assert_eq!(of(ev(DeliveryKind::BounceHard, Some(550), Some("5.1.1"), None)), None);
        // Deliveries and engagement never match a rule that names no kind.
        assert_eq!(of(ev(DeliveryKind::Delivered, Some(421), Some("4.7.26"), None)), None);
        // The defaults alone: 421/450/452 deferrals and soft bounces are throttles.
        let d = merge(&[]);
        assert_eq!(action_of(&d, &ev(DeliveryKind::BounceSoft, Some(452), None, None)), Some(FeedbackAction::Backoff));
        assert_eq!(action_of(&d, &ev(DeliveryKind::BounceHard, Some(421), None, None)), None, "a hard bounce is never a throttle by default");
    }

    #[test]
    fn bad_rules_are_refused_with_what_to_fix() {
        for (rule, says) in [
            (r#"{ code = 421, action = "slow_down" }"#, "action"),
            (r#"{ action = "ignore" }"#, "match on"),
            (r#"{ kinds = ["bounced"], code = 1, action = "ignore" }"#, "kind"),
            (r#"{ response = "(unclosed", action = "ignore" }"#, "response pattern"),
            (r#"{ enhanced = "4.x.26", action = "ignore" }"#, "enhanced"),
        ] {
            let spec: PolicySpec = toml::from_str(&format!("feedback = [{rule}]")).unwrap();
            let errs = spec.validate().unwrap_err().join("; ");
            assert!(errs.contains(says), "{rule}: {errs}");
        }
    }
}
