//! Scenario tests of every guard, through the whole pipeline in memory
//! (ingress, the four stages, releases), with no broker. One file per concern.

use super::driver::Driver;
use super::SenderConfig;
use crate::clock::resolve_local;
use crate::model::*;
use chrono::NaiveDate;

mod delivery_signals;
mod properties;
mod recipient_guards;
mod reconcile;
mod sender_guards;
mod shadow;
mod tenants;
mod trust;

/// A policy that switches off the time-dependent defaults, so a test sets
/// exactly what it exercises and passes at any hour.
pub const QUIET: &str = "business_hours = \"off\"\nwarmup = \"off\"";

/// A UTC time.
pub fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    resolve_local(chrono_tz::UTC, NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap())
}

/// Asserts a retry time falls in the spread after `end` (`retry.spread` of
/// the window, at most an hour, by default): a quarter of `window_ms`
/// capped at an hour.
#[track_caller]
pub fn assert_retry_after(retry_at_ms: Option<i64>, end: i64, window_ms: i64) {
    let span = (window_ms / 4).min(3_600_000);
    let r = retry_at_ms.expect("a deferral says when to come back");
    assert!((end..end + span).contains(&r), "retry at {r} is not in [{end}, {})", end + span);
}

pub const HOUR: i64 = 3_600_000;

pub fn intent(id: &str, sender: &str, recipient: &str, class: IntentClass) -> SendIntent {
    SendIntent::new(id, "acme", sender, recipient, class)
}

pub fn event(sender: &str, recipient: &str, kind: DeliveryKind, smtp_code: Option<i32>) -> DeliveryEvent {
    DeliveryEvent {
        event_id: format!("e-{sender}-{recipient}-{kind:?}"),
        intent_id: None,
        tenant: "acme".into(),
        sender: sender.into(),
        recipient: recipient.into(),
        kind,
        smtp_code,
        enhanced_code: None,
        response: None,
        occurred_at_ms: 0,
        retry_after_seconds: None,
    }
}

pub fn command(kind: CommandKind, target: &str) -> Command {
    Command { operator: Some("ops".into()), ..Command::new(kind, "acme", target, format!("c-{kind:?}-{target}")) }
}

pub struct H {
    pub d: Driver,
    alerts_seen: usize,
}

impl H {
    pub fn new() -> Self {
        Self::with(SenderConfig::default())
    }

    pub fn with(cfg: SenderConfig) -> Self {
        H { d: Driver::new(3, cfg), alerts_seen: 0 }
    }

    /// A policy document for a scope, in force from `at`.
    pub fn policy(&mut self, at: i64, scope: &str, toml_text: &str) {
        self.d.policy(scope, toml_text, at);
        self.d.run();
    }

    /// Submits an intent and runs the pipeline; returns its decision.
    pub fn send(&mut self, at: i64, i: &SendIntent) -> Decision {
        let before = self.d.decisions.len();
        self.d.intent(i, at);
        self.d.run();
        let new: Vec<&Decision> = self.d.decisions[before..].iter().filter(|d| d.intent_id == i.intent_id).collect();
        assert_eq!(new.len(), 1, "exactly one decision per intent, got {new:?}");
        new[0].clone()
    }

    pub fn send_outbound(&mut self, at: i64, id: &str, sender: &str, recipient: &str) -> Decision {
        self.send(at, &intent(id, sender, recipient, IntentClass::Outbound))
    }

    pub fn deliver(&mut self, at: i64, ev: &DeliveryEvent) {
        self.d.delivery(ev, at);
        self.d.run();
    }

    /// Runs a command; returns the decisions it caused.
    pub fn command(&mut self, at: i64, cmd: &Command) -> Vec<Decision> {
        let before = self.d.decisions.len();
        self.d.command(cmd, at);
        self.d.run();
        self.d.decisions[before..].to_vec()
    }

    /// Alerts raised since the last call.
    pub fn new_alerts(&mut self) -> Vec<Alert> {
        let a = self.d.alerts[self.alerts_seen..].to_vec();
        self.alerts_seen = self.d.alerts.len();
        a
    }

    /// The sum of a stage's counters whose key contains `needle`.
    pub fn counted(&mut self, kind: super::StageKind, needle: &str) -> i64 {
        self.d.counters(kind).iter().filter(|(k, _)| k.contains(needle)).map(|(_, c)| c.count).sum()
    }
}
