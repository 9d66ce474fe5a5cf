//! The guards end to end through the real Kafka broker: the three keyed
//! stages, releases between them, suppression from delivery events, and a
//! live policy change. Each test owns a fresh namespace.

use crate::common::*;
use sendgate::model::*;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = DECIDE_WAIT;

/// Sender limits set high and the time-dependent defaults off, so that the
/// recipient side is what binds, at any hour.
fn high_sender() -> Policy {
    let p = Policy::scope("tenant:acme").any_hour();
    ["mailbox.outbound.hour", "mailbox.outbound.day", "sender_domain.outbound.hour", "sender_domain.outbound.day"].iter().fold(p, |p, l| p.limit(l, 10_000))
}

#[test]
fn a_runaway_loop_to_one_recipient_gets_one_send() {
    let mut env = TestEnv::new("loop");
    env.start();
    env.apply(&[high_sender()]);
    let intents: Vec<SendIntent> = (0..200)
        .map(|i| {
            let mut it = intent(&format!("loop-{i}"), "agent@acme.com", "lead@corp.example");
            it.template_id = Some("follow-up".into());
            it.content_hash = Some("same-body".into());
            it
        })
        .collect();
    let decisions = env.decide(&intents);
    let mut by_outcome: BTreeMap<(DecisionStatus, String), usize> = BTreeMap::new();
    for d in decisions.values() {
        *by_outcome.entry((d.status, d.reason.clone())).or_default() += 1;
    }
    assert_eq!(count_status(decisions.values(), DecisionStatus::Allowed), 1, "{by_outcome:?}");
    for ((status, reason), _) in by_outcome.iter().filter(|((s, _), _)| *s != DecisionStatus::Allowed) {
        assert!(
            (*status == DecisionStatus::Deferred && reason == "recipient_cooldown") || (*status == DecisionStatus::Blocked && reason == "duplicate_content"),
            "{by_outcome:?}"
        );
    }
    assert_one_decision_per_intent(&env.all_decisions(), 200);
}

#[test]
fn three_hundred_to_one_corporate_domain_allows_50_and_leaks_no_reservation() {
    let mut env = TestEnv::new("corp");
    env.start();
    env.apply(&[high_sender()]);
    let intents: Vec<SendIntent> = (0..300).map(|i| intent(&format!("corp-{i}"), "agent@acme.com", &format!("person{i}@bigcorp.example"))).collect();
    let decisions = env.decide(&intents);
    assert_eq!(count_status(decisions.values(), DecisionStatus::Allowed), 50);
    for d in decisions.values().filter(|d| d.status != DecisionStatus::Allowed) {
        assert_eq!((d.status, d.reason.as_str(), d.stage.as_deref()), (DecisionStatus::Deferred, "hourly_limit_exceeded", Some("recipient_domain")));
        let next_hour = sendgate::clock::window_end(sendgate::clock::Window::Hour, chrono_tz::UTC, d.decided_at_ms);
        // Back over the first quarter hour after the window (retry.spread 0.25).
        assert!(d.retry_at_ms.is_some_and(|r| (next_hour..next_hour + 900_000).contains(&r)), "{:?} vs {next_hour}", d.retry_at_ms);
    }
    // Every reservation of a deferred intent was released: each stage's
    // counters equal the ALLOWED decisions.
    env.stop();
    let sender = env.changelog_counters("sender");
    assert_eq!(sender.iter().filter(|(k, _)| k.starts_with("ctr/mailbox:agent@acme.com/outbound/")).map(|(_, n)| *n).collect::<Vec<_>>(), vec![50, 50], "{sender:?}");
    assert_eq!(sender["ctr/sender_domain:acme.com/outbound/hour"], 50);
    let recipient: i64 = env.changelog_counters("recipient").values().sum();
    assert_eq!(recipient, 50);
    let domain = env.changelog_counters("recipient_domain");
    assert_eq!(domain["ctr/sender_domain:acme.com/recipient_domain:bigcorp.example/outbound/hour"], 50);
}

#[test]
fn a_hard_bounce_suppresses_the_recipient() {
    let mut env = TestEnv::new("suppress");
    env.start();
    env.apply(&[high_sender()]);
    assert_eq!(env.decide_one(intent("s-1", "ana@acme.com", "gone@corp.example")).status, DecisionStatus::Allowed);
    env.send_delivery(&[hard_bounce("hb-1", "ana@acme.com", "Gone@CORP.example")]);
    // The next intent to that recipient, from any mailbox of the tenant.
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("s-after-{n}");
        let d = env.decide_one(intent(&id, "bo@acme.com", "gone@corp.example"));
        if d.status == DecisionStatus::Blocked {
            assert_eq!((d.reason.as_str(), d.stage.as_deref()), ("recipient_suppressed", Some("recipient")));
            break;
        }
        // Delivery events and intents travel separate topics: until the
        // bounce is in, the intent is allowed.
        assert!(std::time::Instant::now() < deadline, "never suppressed; log:\n{}", env.log_tail());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_live_policy_change_applies_to_the_next_intent_and_decisions_name_its_version() {
    let mut env = TestEnv::new("live");
    env.start();
    env.apply(&[high_sender()]);
    let before = env.decide_one(intent("v-1", "ana@acme.com", "a@corp.example"));
    assert_eq!(before.status, DecisionStatus::Allowed);
    env.apply(&[Policy::scope("mailbox:ana@acme.com").limit("mailbox.outbound.hour", 1)]);
    let after = env.decide_one(intent("v-2", "ana@acme.com", "b@corp.example"));
    assert_eq!((after.status, after.reason.as_str()), (DecisionStatus::Deferred, "hourly_limit_exceeded"));
    assert!(after.policy_version > before.policy_version, "{} then {}", before.policy_version, after.policy_version);
}

/// Waits for an alert `kind` for `scope`; then all alerts so far.
fn await_alert(env: &TestEnv, kind: &str, scope: &str) -> Vec<Alert> {
    env.await_alert(|a| a.kind == kind && a.scope == scope, WAIT);
    env.all_alerts()
}

#[test]
fn one_mailboxs_bounces_pause_that_mailbox_and_not_its_neighbours_on_the_domain() {
    let mut env = TestEnv::new("mbreaker");
    env.start();
    env.apply(&[high_sender()]);
    // 300 sends, 30 from each of ten mailboxes of one domain.
    let intents: Vec<SendIntent> = (0..300).map(|i| intent(&format!("mb-{i}"), &format!("m{}@acme.com", i % 10), &format!("p{i}@gmail.com"))).collect();
    assert_eq!(count_status(env.decide(&intents).values(), DecisionStatus::Allowed), 300);
    // m3's list is bad: 3 hard bounces of its 30 sends (10%), 1% of the domain's.
    env.send_delivery(&(0..3).map(|i| hard_bounce(&format!("mb-hb-{i}"), "m3@acme.com", &format!("p{}@gmail.com", 3 + 10 * i))).collect::<Vec<_>>());
    let alerts = await_alert(&env, "sender_paused", "mailbox:m3@acme.com");
    assert!(!alerts.iter().any(|a| a.kind == "sender_paused" && a.scope == "sender_domain:acme.com"), "{alerts:?}");
    let probes = [intent("mb-m3", "m3@acme.com", "new1@gmail.com"), intent("mb-m4", "m4@acme.com", "new2@gmail.com")];
    let d = env.decide(&probes);
    assert_eq!((d["mb-m3"].status, d["mb-m3"].reason.as_str()), (DecisionStatus::Paused, "mailbox_paused"));
    assert_eq!(d["mb-m4"].status, DecisionStatus::Allowed, "its neighbour sends on: {:?}", d["mb-m4"]);
}

#[test]
fn three_hard_bounces_in_a_40_send_first_week_pause_a_warming_domain() {
    let mut env = TestEnv::new("lowvol");
    env.start();
    // A domain on its first day of warm-up, and the default signals.
    env.apply(&[Policy::scope("tenant:acme").set("business_hours", r#""off""#).set("warmup", "{ steps = [{ until_day = 7, hour = 50 }] }").limit_off("mailbox.outbound.hour")]);
    let intents: Vec<SendIntent> = (0..40).map(|i| intent(&format!("lv-{i}"), &format!("m{}@new.example", i % 4), &format!("p{i}@gmail.com"))).collect();
    assert_eq!(count_status(env.decide(&intents).values(), DecisionStatus::Allowed), 40);
    // One bounce each from three mailboxes: none of them has three; the
    // domain has 3 in 40 (7.5%), far under the 100 sends a rate used to need.
    env.send_delivery(&(0..3).map(|i| hard_bounce(&format!("lv-hb-{i}"), &format!("m{i}@new.example"), &format!("p{i}@gmail.com"))).collect::<Vec<_>>());
    let alerts = await_alert(&env, "sender_paused", "sender_domain:new.example");
    assert!(!alerts.iter().any(|a| a.kind == "sender_paused" && a.scope.starts_with("mailbox:")), "{alerts:?}");
    let d = env.decide_one(intent("lv-after", "m3@new.example", "q@gmail.com"));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
}

#[test]
fn a_rolling_24_hour_cap_holds_across_midnight() {
    let mut env = TestEnv::new("rolling");
    env.start();
    // Two mailboxes, 3 a day: one by the calendar day, one in any 24 hours.
    let policy = |zone: &str| {
        [
            Policy::scope("tenant:acme").set("timezone", &format!("{zone:?}")).any_hour().limit_off("mailbox.outbound.hour").limit_off("mailbox.outbound.day"),
            Policy::scope("mailbox:cal@acme.com").limit("mailbox.outbound.day", 3),
            Policy::scope("mailbox:roll@acme.com").limit("mailbox.all.rolling_24h", 3),
        ]
    };
    env.apply(&policy("Pacific/Kiritimati"));
    let batch = |tag: &str, n: usize| -> Vec<SendIntent> { ["cal", "roll"].iter().flat_map(|m| (0..n).map(move |i| intent(&format!("{tag}-{m}-{i}"), &format!("{m}@acme.com"), &format!("{tag}{i}@gmail.com")))).collect() };
    let first = batch("day1", 4);
    let d = env.decide(&first);
    for m in ["cal", "roll"] {
        assert_eq!((0..3).filter(|i| d[&format!("day1-{m}-{i}")].status == DecisionStatus::Allowed).count(), 3, "{m}");
    }
    assert_eq!(d["day1-cal-3"].reason, "daily_cap_reached");
    assert_eq!(d["day1-roll-3"].reason, "rolling_24h_limit_exceeded");
    // Midnight passes for the tenant: its zone moves from UTC+14 to UTC-11,
    // whose calendar day is another date at every instant. (A test cannot
    // wait for a real midnight; moving the zone moves every calendar window
    // exactly as one would.)
    env.apply(&policy("Pacific/Niue"));
    let d = env.decide(&batch("day2", 1));
    assert_eq!(d["day2-cal-0"].status, DecisionStatus::Allowed, "the calendar cap starts again: {:?}", d["day2-cal-0"]);
    let r = &d["day2-roll-0"];
    assert_eq!((r.status, r.reason.as_str()), (DecisionStatus::Deferred, "rolling_24h_limit_exceeded"), "the rolling cap still holds the last 24 hours' 3");
    // It comes back 24 to 26 hours after the first three (the hour they
    // were counted in leaves after 25 hours, then the spread of up to one).
    let retry = r.retry_at_ms.unwrap() - r.decided_at_ms;
    assert!((23 * 3_600_000..26 * 3_600_000).contains(&retry), "retry in {} h", retry / 3_600_000);
}

#[test]
fn a_421_4_7_26_and_a_421_4_7_28_take_different_actions_by_rule() {
    let mut env = TestEnv::new("feedback");
    env.start();
    let rules = r#"[{ code = 421, enhanced = "4.7.26", action = "pause_domain" }, { code = 421, enhanced = "4.7.28", action = "backoff" }]"#;
    env.apply(&[Policy::scope("tenant:acme").any_hour().limit_off("mailbox.outbound.hour").set("feedback", rules)]);
    let warm: Vec<SendIntent> = ["auth.example", "rate.example"].iter().map(|d| intent(&format!("fb-warm-{d}"), &format!("ana@{d}"), "first@gmail.com")).collect();
    assert_eq!(count_status(env.decide(&warm).values(), DecisionStatus::Allowed), 2);
    // The same code from Google, with another enhanced status each.
    let deferral = |id: &str, sender: &str, enhanced: &str| {
        let mut e = hard_bounce(id, sender, "first@gmail.com");
        (e.kind, e.smtp_code, e.enhanced_code) = (DeliveryKind::Deferred, Some(421), Some(enhanced.into()));
        e.response = Some(format!("421 {enhanced} try again later"));
        e
    };
    env.send_delivery(&[deferral("fb-auth", "ana@auth.example", "4.7.26"), deferral("fb-rate", "ana@rate.example", "4.7.28")]);
    // 4.7.26, authentication: the whole sender domain stops, for any recipient.
    let paused = env.await_alert(|a| a.kind == "sender_paused" && a.scope == "sender_domain:auth.example", WAIT);
    assert_eq!(paused.details.get("reason").map(String::as_str), Some("isp_feedback"), "{paused:?}");
    // 4.7.28, rate: a backoff from Google only.
    env.await_alert(|a| a.kind == "isp_throttling" && a.scope == "sender_domain:rate.example/provider:google", WAIT);
    let probes = [intent("fb-auth-corp", "bo@auth.example", "x@corp.example"), intent("fb-rate-gmail", "bo@rate.example", "y@gmail.com"), intent("fb-rate-corp", "bo@rate.example", "x@corp.example")];
    let d = env.decide(&probes);
    assert_eq!((d["fb-auth-corp"].status, d["fb-auth-corp"].reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
    assert_eq!((d["fb-rate-gmail"].status, d["fb-rate-gmail"].reason.as_str()), (DecisionStatus::Deferred, "isp_backoff"));
    assert_eq!(d["fb-rate-corp"].status, DecisionStatus::Allowed, "elsewhere it sends on: {:?}", d["fb-rate-corp"]);
    // Neither domain got the other's action.
    let alerts = env.all_alerts();
    assert!(!alerts.iter().any(|a| a.kind == "sender_paused" && a.scope.contains("rate.example")), "{alerts:?}");
    assert!(!alerts.iter().any(|a| a.kind == "isp_throttling" && a.scope.contains("auth.example")), "{alerts:?}");
}

/// A DELIVERED event for intent `id`.
fn delivered(id: &str, sender: &str, recipient: &str) -> DeliveryEvent {
    DeliveryEvent { event_id: format!("ev-{id}"), intent_id: Some(id.into()), kind: DeliveryKind::Delivered, smtp_code: Some(250), ..hard_bounce(id, sender, recipient) }
}

#[test]
fn a_send_for_a_deferred_intent_is_unapproved_and_one_for_an_allowed_intent_is_not_whichever_arrives_first() {
    let mut env = TestEnv::new("reconcile");
    env.start();
    // One send an hour from rc@; events wait 2 s for their decision.
    env.apply(&[Policy::scope("tenant:acme").any_hour().set("reconcile", "{ wait_seconds = 2 }"), Policy::scope("mailbox:rc@acme.com").limit("mailbox.outbound.hour", 1)]);
    // One intent, sent and decided.
    let decide = |id: &str, sender: &str, to: &str| -> DecisionStatus { env.decide_one(intent(id, sender, to)).status };
    // ALLOWED, decision first.
    assert_eq!(decide("ok-1", "rc@acme.com", "a@corp.example"), DecisionStatus::Allowed);
    env.send_delivery(&[delivered("ok-1", "rc@acme.com", "a@corp.example")]);
    // ALLOWED, event first (another mailbox, so that it fits).
    env.send_delivery(&[delivered("ok-2", "other@acme.com", "b@corp.example")]);
    assert_eq!(decide("ok-2", "other@acme.com", "b@corp.example"), DecisionStatus::Allowed);
    // DEFERRED, decision first.
    assert_eq!(decide("def-1", "rc@acme.com", "c@corp.example"), DecisionStatus::Deferred);
    env.send_delivery(&[delivered("def-1", "rc@acme.com", "c@corp.example")]);
    // DEFERRED, event first.
    env.send_delivery(&[delivered("def-2", "rc@acme.com", "d@corp.example")]);
    assert_eq!(decide("def-2", "rc@acme.com", "d@corp.example"), DecisionStatus::Deferred);
    // Log time moves past every wait (a later record of the partition), so
    // an event still waiting would now be unapproved.
    std::thread::sleep(Duration::from_millis(2500));
    decide("later", "other@acme.com", "e@corp.example");
    env.await_alert(|a| a.kind == "unapproved_send" && a.details.get("intent_id").map(String::as_str) == Some("def-2"), WAIT);
    env.await_alert(|a| a.kind == "unapproved_send" && a.details.get("intent_id").map(String::as_str) == Some("def-1"), WAIT);
    let unapproved: BTreeMap<String, String> = env
        .all_alerts()
        .into_iter()
        .filter(|a| a.kind == "unapproved_send")
        .map(|a| (a.details["intent_id"].clone(), a.details["reason"].clone()))
        .collect();
    assert_eq!(unapproved, BTreeMap::from([("def-1".to_string(), "sent_while_deferred".to_string()), ("def-2".to_string(), "sent_while_deferred".to_string())]));
    // The report lists them for the period, with totals.
    let (ok, out, err) = env.cli(&["reconcile", "report", "--tenant", "acme", "--json"]);
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unapproved_sends"], 2, "{v}");
    assert_eq!(v["totals"]["mailbox"]["acme/rc@acme.com"], 2, "{v}");
    assert_eq!(v["totals"]["reason"]["sent_while_deferred"], 2, "{v}");
    let (ok, out, _) = env.cli(&["reconcile", "report", "--tenant", "globex"]);
    assert!(ok && out.contains("unapproved sends     0"), "another tenant's report holds none of acme's: {out}");
    let (ok, out, _) = env.cli(&["reconcile", "report", "--from", "2000-01-01T00:00:00Z", "--to", "2000-01-02T00:00:00Z"]);
    assert!(ok && out.contains("unapproved sends     0"), "{out}");
}

#[test]
fn a_mailbox_moves_up_its_trust_ladder_after_healthy_volume_and_back_down_after_bounces() {
    let mut env = TestEnv::new("trust");
    env.start();
    let ladder = r#"{ mailbox = { steps = [{ name = "supervised", hour = 3 }, { name = "trusted" }], advance_after_sends = 3, advance_after_hours = 0, demote_after_events = 2 } }"#;
    env.apply(&[Policy::scope("tenant:acme").any_hour().limit_off("mailbox.outbound.hour").limit_off("mailbox.outbound.day").set("trust", ladder)]);
    let first: Vec<SendIntent> = (0..3).map(|i| intent(&format!("tr-{i}"), "new@acme.com", &format!("p{i}@gmail.com"))).collect();
    assert_eq!(count_status(env.decide(&first).values(), DecisionStatus::Allowed), 3);
    let up = env.await_alert(|a| a.kind == "trust_step_up" && a.scope == "mailbox:new@acme.com", WAIT);
    assert_eq!((up.details["from"].as_str(), up.details["to"].as_str()), ("supervised", "trusted"));
    // Past the supervised step's 3 an hour.
    let more: Vec<SendIntent> = (3..8).map(|i| intent(&format!("tr-{i}"), "new@acme.com", &format!("p{i}@gmail.com"))).collect();
    assert_eq!(count_status(env.decide(&more).values(), DecisionStatus::Allowed), 5);
    // Two of its five sends at the trusted step bounce: back down.
    env.send_delivery(&[hard_bounce("tr-hb-1", "new@acme.com", "p3@gmail.com"), hard_bounce("tr-hb-2", "new@acme.com", "p4@gmail.com")]);
    let down = env.await_alert(|a| a.kind == "trust_step_down" && a.scope == "mailbox:new@acme.com", WAIT);
    assert_eq!((down.details["from"].as_str(), down.details["to"].as_str(), down.details["hard_bounces"].as_str()), ("trusted", "supervised", "2"));
    let d = env.decide_one(intent("tr-probe", "new@acme.com", "q@gmail.com"));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "trust_step_limit"), "{d:?}");
    // The explanation names the step it was decided at.
    let (ok, out, err) = env.cli(&["audit", "explain", "tr-probe"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("mailbox:new@acme.com at step supervised (1 of 2)") && out.contains("caps hour 3"), "{out}");
}
