//! Scenario tests of the sender stage's decision function, with no broker.

use super::*;
use crate::clock::resolve_local;
use crate::model::*;
use crate::policy::{PolicyBook, PolicySpec};
use crate::state::{MemStore, StageStore};
use chrono::NaiveDate;

struct Harness {
    store: StageStore,
    book: PolicyBook,
    stage: SenderStage,
    offset: i64,
}

fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    resolve_local(chrono_tz::UTC, NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap())
}

impl Harness {
    fn new() -> Self {
        Harness { store: StageStore::new(Box::new(MemStore::default())), book: PolicyBook::default(), stage: SenderStage::new(SenderConfig::default()), offset: 0 }
    }

    fn feed(&mut self, at: i64, f: impl FnOnce(&mut StageEnvelope)) -> StageOutput {
        self.offset += 1;
        let mut env = StageEnvelope {
            log_time_ms: at,
            source: SourceRef { topic: "sendgate.intents".into(), partition: 0, offset: self.offset },
            intent: None,
            delivery: None,
            command: None,
            policy: None,
        };
        f(&mut env);
        let mut out = StageOutput::default();
        let mut view = self.store.view(0);
        self.stage.process(&mut view, &mut self.book, &env, &mut out).unwrap();
        out
    }

    fn policy(&mut self, at: i64, scope: &str, toml_text: &str) {
        let spec: PolicySpec = toml::from_str(toml_text).unwrap();
        spec.validate().unwrap();
        let version = self.offset + 1;
        self.feed(at, |e| e.policy = Some(PolicyChange { scope: scope.into(), version, spec_json: Some(spec.to_canonical_json()) }));
    }

    fn intent(&mut self, at: i64, id: &str, sender: &str, class: IntentClass) -> Decision {
        let i = SendIntent {
            intent_id: id.into(),
            tenant: "acme".into(),
            sender: sender.into(),
            recipient: format!("r-{id}@corp.example"),
            class,
            template_id: None,
            content_hash: None,
            thread_id: None,
            requires_approval: false,
            requested_at_ms: 0,
        };
        self.feed(at, |e| e.intent = Some(i)).decisions.pop().unwrap()
    }

    fn delivery(&mut self, at: i64, sender: &str, kind: DeliveryKind) -> StageOutput {
        let ev = DeliveryEvent {
            event_id: format!("e{}", self.offset),
            intent_id: None,
            tenant: "acme".into(),
            sender: sender.into(),
            recipient: "x@corp.example".into(),
            kind,
            smtp_code: None,
            enhanced_code: None,
            response: None,
            occurred_at_ms: 0,
        };
        self.feed(at, |e| e.delivery = Some(ev))
    }
}

#[test]
fn daily_cap_defers_to_the_next_local_midnight() {
    let mut h = Harness::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "tenant:acme", "timezone = \"America/New_York\"\nbusiness_hours = \"off\"\nlimits = { \"mailbox.outbound.day\" = 25, \"mailbox.outbound.hour\" = \"off\" }");
    let mut allowed = 0;
    for i in 0..100 {
        let d = h.intent(now + i, &format!("i{i}"), "ana@acme.com", IntentClass::Outbound);
        match d.status {
            DecisionStatus::Allowed => allowed += 1,
            DecisionStatus::Deferred => {
                assert_eq!(d.reason, "daily_cap_reached");
                // 10:00 UTC on 3 June is 06:00 in New York (EDT): the next day starts at 04:00 UTC on 4 June.
                assert_eq!(d.retry_at_ms, Some(t(2026, 6, 4, 4, 0)));
                let u = d.usage.iter().find(|u| u.scope == "mailbox:ana@acme.com" && u.window == "day").unwrap();
                assert_eq!((u.used, u.limit, u.remaining), (25, 25, 0));
            }
            s => panic!("unexpected {s:?}"),
        }
        assert!(d.policy_version > 0);
    }
    assert_eq!(allowed, 25);
}

#[test]
fn hourly_pacing_and_business_hours() {
    let mut h = Harness::new();
    let monday_9 = t(2026, 6, 1, 9, 0);
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(h.intent(monday_9 + i * 1000, &format!("p{i}"), "bo@acme.com", IntentClass::Outbound));
    }
    assert_eq!(statuses.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 3, "default 3/hour");
    let d = &statuses[3];
    assert_eq!((d.status, d.reason.as_str(), d.retry_at_ms), (DecisionStatus::Deferred, "hourly_limit_exceeded", Some(t(2026, 6, 1, 10, 0))));
    // 19:00 on a Friday: deferred to Monday 08:00 (default business hours, UTC).
    let fri_19 = t(2026, 6, 5, 19, 0);
    let d = h.intent(fri_19, "late", "bo@acme.com", IntentClass::Outbound);
    assert_eq!((d.status, d.reason.as_str(), d.retry_at_ms), (DecisionStatus::Deferred, "outside_business_hours", Some(t(2026, 6, 8, 8, 0))));
    // Replies ignore business hours and caps.
    let d = h.intent(fri_19, "reply", "bo@acme.com", IntentClass::Reply);
    assert_eq!(d.status, DecisionStatus::Allowed);
}

#[test]
fn a_final_decision_is_repeated_without_touching_counters() {
    let mut h = Harness::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.day\" = 2, \"mailbox.outbound.hour\" = \"off\" }");
    let first = h.intent(now, "same", "ana@acme.com", IntentClass::Outbound);
    assert_eq!(first.status, DecisionStatus::Allowed);
    let again = h.intent(now + 5, "same", "ana@acme.com", IntentClass::Outbound);
    assert_eq!(again.status, DecisionStatus::Allowed);
    assert!(again.replayed);
    assert_eq!(again.usage, first.usage);
    // The counter moved once: one more distinct intent fits, the next does not.
    assert_eq!(h.intent(now + 6, "other", "ana@acme.com", IntentClass::Outbound).status, DecisionStatus::Allowed);
    assert_eq!(h.intent(now + 7, "third", "ana@acme.com", IntentClass::Outbound).status, DecisionStatus::Deferred);
}

#[test]
fn hard_bounces_over_five_percent_pause_the_sender_domain_until_resumed() {
    let mut h = Harness::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.day\" = 1000, \"mailbox.outbound.hour\" = \"off\", \"sender_domain.outbound.hour\" = 1000 }\nsignals = { min_volume = 50 }");
    for i in 0..60 {
        assert_eq!(h.intent(now + i, &format!("s{i}"), &format!("m{}@acme.com", i % 6), IntentClass::Outbound).status, DecisionStatus::Allowed);
    }
    // 2 bounces of 60 sends: 3.3% -> slow tier (limits halved), not paused.
    h.delivery(now + 100, "m0@acme.com", DeliveryKind::BounceHard);
    let out = h.delivery(now + 101, "m1@acme.com", DeliveryKind::BounceHard);
    assert!(out.alerts.iter().any(|a| a.kind == "signal_tier_changed"));
    let d = h.intent(now + 102, "still", "m2@acme.com", IntentClass::Outbound);
    assert_eq!(d.status, DecisionStatus::Allowed);
    let hour = d.usage.iter().find(|u| u.scope == "sender_domain:acme.com" && u.window == "hour").unwrap();
    assert_eq!(hour.limit, 500, "the slow tier halves limits");
    // Soft bounces do not count.
    h.delivery(now + 103, "m1@acme.com", DeliveryKind::BounceSoft);
    h.delivery(now + 104, "m1@acme.com", DeliveryKind::BounceHard);
    let out = h.delivery(now + 105, "m1@acme.com", DeliveryKind::BounceHard);
    assert!(out.alerts.iter().any(|a| a.kind == "sender_paused"), "{:?}", out.alerts);
    let d = h.intent(now + 106, "after", "m3@acme.com", IntentClass::Outbound);
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
    // Other domains are unaffected; replies still flow.
    assert_eq!(h.intent(now + 107, "other", "x@elsewhere.com", IntentClass::Outbound).status, DecisionStatus::Allowed);
    assert_eq!(h.intent(now + 108, "rep", "m3@acme.com", IntentClass::Reply).status, DecisionStatus::Allowed);
    // A paused intent is evaluated again when resubmitted; a resume lifts the pause.
    let resume = Command { command_id: "c1".into(), kind: CommandKind::Resume, tenant: "acme".into(), target: "sender_domain:acme.com".into(), sender: None, reason: None, operator: Some("ops".into()) };
    let out = h.feed(now + 200, |e| e.command = Some(resume));
    assert!(out.alerts.iter().any(|a| a.kind == "sender_resumed"));
    assert_eq!(h.intent(now + 201, "after", "m3@acme.com", IntentClass::Outbound).status, DecisionStatus::Allowed);
}

#[test]
fn approval_holds_then_decides_under_the_guards() {
    let mut h = Harness::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", "business_hours = \"off\"");
    let mut i = SendIntent {
        intent_id: "risky".into(),
        tenant: "acme".into(),
        sender: "ana@acme.com".into(),
        recipient: "cfo@corp.example".into(),
        class: IntentClass::Outbound,
        template_id: None,
        content_hash: None,
        thread_id: None,
        requires_approval: true,
        requested_at_ms: 0,
    };
    let d = h.feed(now, |e| e.intent = Some(i.clone())).decisions.pop().unwrap();
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Held, "pending_approval"));
    let approve = Command { command_id: "c".into(), kind: CommandKind::Approve, tenant: "acme".into(), target: "risky".into(), sender: Some("ana@acme.com".into()), reason: None, operator: None };
    let d = h.feed(now + 1, |e| e.command = Some(approve)).decisions.pop().unwrap();
    assert_eq!(d.status, DecisionStatus::Allowed);
    i.intent_id = "risky2".into();
    h.feed(now + 2, |e| e.intent = Some(i.clone()));
    let reject = Command { command_id: "c2".into(), kind: CommandKind::Reject, tenant: "acme".into(), target: "risky2".into(), sender: Some("ana@acme.com".into()), reason: None, operator: None };
    let d = h.feed(now + 3, |e| e.command = Some(reject)).decisions.pop().unwrap();
    assert_eq!(d.status, DecisionStatus::Blocked);
    // Final: resubmitting gets BLOCKED again.
    assert_eq!(h.feed(now + 4, |e| e.intent = Some(i)).decisions[0].status, DecisionStatus::Blocked);
}

#[test]
fn quota_alerts_fire_once_per_window() {
    let mut h = Harness::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.day\" = 10, \"mailbox.outbound.hour\" = \"off\" }");
    let mut kinds = Vec::new();
    for i in 0..15 {
        h.offset += 0;
        let out = h.feed(now + i, |e| {
            e.intent = Some(SendIntent { intent_id: format!("q{i}"), tenant: "acme".into(), sender: "ana@acme.com".into(), recipient: "r@corp.example".into(), class: IntentClass::Outbound, template_id: None, content_hash: None, thread_id: None, requires_approval: false, requested_at_ms: 0 })
        });
        kinds.extend(out.alerts.into_iter().filter(|a| a.scope == "mailbox:ana@acme.com").map(|a| a.kind));
    }
    assert_eq!(kinds, vec!["quota_80", "quota_100"]);
}

#[test]
fn the_same_log_gives_byte_identical_decisions() {
    let run = || {
        let mut h = Harness::new();
        let now = t(2026, 6, 3, 10, 0);
        let mut bytes = Vec::new();
        for i in 0..200 {
            let d = h.intent(now + i * 7_000, &format!("d{}", i % 150), &format!("m{}@acme.com", i % 4), IntentClass::Outbound);
            bytes.extend(crate::codec::encode(crate::codec::RecordType::Decision, &d).unwrap());
        }
        bytes
    };
    assert_eq!(run(), run());
}

#[test]
fn remembered_intent_ids_expire_after_the_retention() {
    let mut h = Harness::new();
    h.stage = SenderStage::new(SenderConfig { idempotency_retention_ms: 3_600_000 });
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", "business_hours = \"off\"");
    assert_eq!(h.intent(now, "old", "ana@acme.com", IntentClass::Outbound).status, DecisionStatus::Allowed);
    assert!(h.intent(now + 60_000, "old", "ana@acme.com", IntentClass::Outbound).replayed);
    // Two hours later the id is forgotten: it is decided afresh.
    let d = h.intent(now + 2 * 3_600_000, "old", "ana@acme.com", IntentClass::Outbound);
    assert!(!d.replayed);
    assert_eq!(d.status, DecisionStatus::Allowed);
}

#[test]
fn expiry_does_not_depend_on_where_commits_fall() {
    // The same log, committed after every record or never: same decisions.
    let run = |commit_each: bool| {
        let mut h = Harness::new();
        h.stage = SenderStage::new(SenderConfig { idempotency_retention_ms: 60_000 });
        let now = t(2026, 6, 3, 10, 0);
        h.policy(now, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = 1000 }");
        let mut out = Vec::new();
        for i in 0..300 {
            let d = h.intent(now + i * 20_000, &format!("e{}", i % 7), "ana@acme.com", IntentClass::Outbound);
            out.push((d.intent_id, d.status, d.replayed));
            if commit_each {
                let _ = h.store.prepare_commit();
                h.store.commit(&std::collections::HashMap::new()).unwrap();
            }
        }
        out
    };
    assert_eq!(run(true), run(false));
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever arrives, in whatever order: ALLOWED never exceeds a cap in
        /// any window, every repeat of a final decision is identical, and the
        /// usage a decision reports equals the ALLOWED decisions before it.
        #[test]
        fn caps_hold_and_usage_counts_exactly_the_allowed(
            steps in proptest::collection::vec((0usize..3, 0u32..40, 0i64..(3 * 86_400_000)), 1..150)
        ) {
            let mut h = Harness::new();
            let start = t(2026, 6, 1, 0, 0);
            h.policy(start, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.day\" = 5, \"mailbox.outbound.hour\" = 2 }");
            let mut steps = steps;
            steps.sort_by_key(|s| s.2);
            let mut allowed_per_day: HashMap<(usize, i64), i64> = HashMap::new();
            let mut allowed_per_hour: HashMap<(usize, i64), i64> = HashMap::new();
            let mut finals: HashMap<String, Decision> = HashMap::new();
            for (mailbox, id, offset) in steps {
                let at = start + offset;
                let id = format!("m{mailbox}-i{id}");
                let d = h.intent(at, &id, &format!("m{mailbox}@acme.com"), IntentClass::Outbound);
                if let Some(first) = finals.get(&id) {
                    prop_assert!(d.replayed);
                    prop_assert_eq!(d.status, first.status);
                    prop_assert_eq!(&d.usage, &first.usage);
                    continue;
                }
                let (day, hour) = (at / 86_400_000, at / 3_600_000);
                if d.status == DecisionStatus::Allowed {
                    *allowed_per_day.entry((mailbox, day)).or_default() += 1;
                    *allowed_per_hour.entry((mailbox, hour)).or_default() += 1;
                    finals.insert(id, d.clone());
                }
                let used_day = d.usage.iter().find(|u| u.window == "day" && u.scope.starts_with("mailbox:")).unwrap().used;
                let used_hour = d.usage.iter().find(|u| u.window == "hour" && u.scope.starts_with("mailbox:")).unwrap().used;
                prop_assert_eq!(used_day, *allowed_per_day.get(&(mailbox, day)).unwrap_or(&0));
                prop_assert_eq!(used_hour, *allowed_per_hour.get(&(mailbox, hour)).unwrap_or(&0));
                prop_assert!(used_day <= 5 && used_hour <= 2);
            }
        }
    }
}
