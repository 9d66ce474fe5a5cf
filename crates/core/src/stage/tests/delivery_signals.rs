//! Guards driven by delivery events: bounce and complaint budgets, ISP
//! backoff on throttling deferrals, throttling across recipient domains.

use super::*;

const HIGH: &str = "business_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = 100000, \"sender_domain.outbound.hour\" = 100000, \"sender_domain.outbound.day\" = 100000 }";

/// `n` allowed sends from acme.com to distinct consumer addresses.
fn sends(h: &mut H, at: i64, n: usize, tag: &str) {
    for i in 0..n {
        h.d.intent(&intent(&format!("{tag}{i}"), &format!("m{}@acme.com", i % 10), &format!("p{i}@gmail.com"), IntentClass::Outbound), at + i as i64);
    }
    h.d.run();
    let allowed = h.d.decisions.iter().filter(|d| d.intent_id.starts_with(tag) && d.status == DecisionStatus::Allowed).count();
    assert_eq!(allowed, n);
}

#[test]
fn complaints_warn_at_five_hundredths_of_a_percent_and_pause_at_a_tenth() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH);
    sends(&mut h, now, 6000, "c");
    h.new_alerts();
    // 3 in 6,000 = 0.05%: the warn tier, an alert and nothing else. Each
    // came from another mailbox: none of them has three of its own.
    for i in 0..3 {
        h.deliver(now + 7_000 + i, &event(&format!("m{i}@acme.com"), &format!("p{i}@gmail.com"), DeliveryKind::Complaint, None));
    }
    let a = h.new_alerts();
    assert!(a.iter().any(|a| a.kind == "signal_tier_changed" && a.scope == "sender_domain:acme.com" && a.details.get("to").map(String::as_str) == Some("warn")), "{a:?}");
    assert!(!a.iter().any(|a| a.kind == "sender_paused" || a.scope.starts_with("mailbox:")), "{a:?}");
    // 6 in 6,000 = 0.1%: paused.
    for i in 3..6 {
        h.deliver(now + 8_000 + i, &event(&format!("m{i}@acme.com"), &format!("p{i}@gmail.com"), DeliveryKind::Complaint, None));
    }
    assert!(h.new_alerts().iter().any(|a| a.kind == "sender_paused" && a.scope == "sender_domain:acme.com"));
    let d = h.send_outbound(now + 9_000, "after-pause", "m7@acme.com", "q2@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
    // Replies still flow; a resume lets outbound through again.
    assert_eq!(h.send(now + 9_001, &intent("rep", "m7@acme.com", "q3@gmail.com", IntentClass::Reply)).status, DecisionStatus::Allowed);
    h.command(now + 10_000, &command(CommandKind::Resume, "sender_domain:acme.com"));
    assert!(h.new_alerts().iter().any(|a| a.kind == "sender_resumed"));
    assert_eq!(h.send_outbound(now + 10_001, "after-resume", "m7@acme.com", "q4@gmail.com").status, DecisionStatus::Allowed);
}

#[test]
fn a_minimum_volume_when_set_keeps_rates_silent_and_the_most_restrictive_signal_wins() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{HIGH}\nsignals = {{ min_volume = 100 }}"));
    sends(&mut h, now, 60, "b");
    // 3 bounces in 60 sends is 5%, but 60 is under the minimum of 100.
    for i in 0..3 {
        h.deliver(now + 1_000 + i, &event("m1@acme.com", &format!("x{i}@gmail.com"), DeliveryKind::BounceHard, Some(550)));
    }
    assert_eq!(h.send_outbound(now + 2_000, "ok", "m2@acme.com", "z@gmail.com").status, DecisionStatus::Allowed);
    sends(&mut h, now + 3_000, 60, "more");
    // 121 sends, 3 bounces (2.5%: warn) and 3 complaints (2.5%: pause): pause wins.
    for i in 0..3 {
        h.deliver(now + 4_000 + i, &event(&format!("m{i}@acme.com"), &format!("p{i}@gmail.com"), DeliveryKind::Complaint, None));
    }
    let d = h.send_outbound(now + 4_010, "worst", "m5@acme.com", "z2@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
}

#[test]
fn one_mailboxs_bounces_pause_that_mailbox_and_not_its_neighbours() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH);
    // 300 sends, 30 from each of m0..m9.
    sends(&mut h, now, 300, "s");
    h.new_alerts();
    // m3's list is bad: 3 hard bounces of its 30 sends (10%); 1% of the domain's.
    for i in 0..3 {
        h.deliver(now + 1_000 + i, &event("m3@acme.com", &format!("p{}@gmail.com", 3 + 10 * i), DeliveryKind::BounceHard, Some(550)));
    }
    let a = h.new_alerts();
    let paused: Vec<&str> = a.iter().filter(|a| a.kind == "sender_paused").map(|a| a.scope.as_str()).collect();
    assert_eq!(paused, vec!["mailbox:m3@acme.com"], "{a:?}");
    let d = h.send_outbound(now + 2_000, "m3-next", "m3@acme.com", "new1@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "mailbox_paused"));
    // Its neighbours on the domain send on; its replies still go.
    assert_eq!(h.send_outbound(now + 2_001, "m4-next", "m4@acme.com", "new2@gmail.com").status, DecisionStatus::Allowed);
    assert_eq!(h.send(now + 2_002, &intent("m3-reply", "m3@acme.com", "q@gmail.com", IntentClass::Reply)).status, DecisionStatus::Allowed);
    // A resume of the mailbox starts its observation afresh.
    h.command(now + 3_000, &command(CommandKind::Resume, "mailbox:m3@acme.com"));
    assert_eq!(h.send_outbound(now + 3_001, "m3-resumed", "m3@acme.com", "new3@gmail.com").status, DecisionStatus::Allowed);
    // Off: the mailbox's bounces count toward the domain only.
    let mut h = H::new();
    h.policy(now, "default", &format!("{HIGH}\nsignals = {{ per_mailbox = false }}"));
    sends(&mut h, now, 300, "s");
    for i in 0..3 {
        h.deliver(now + 1_000 + i, &event("m3@acme.com", &format!("p{}@gmail.com", 3 + 10 * i), DeliveryKind::BounceHard, Some(550)));
    }
    assert_eq!(h.send_outbound(now + 2_000, "m3-next", "m3@acme.com", "new1@gmail.com").status, DecisionStatus::Allowed);
}

#[test]
fn three_hard_bounces_in_a_40_send_first_week_pause_a_warming_domain() {
    let mut h = H::new();
    let day1 = t(2026, 6, 1, 9, 0);
    // The default warm-up (20 an hour for 7 days) and signals.
    h.policy(day1, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\" }");
    // 40 sends in two hours (the warm-up's 20 an hour) from four mailboxes, ten each.
    for i in 0..40 {
        let at = day1 + (i / 20) as i64 * 3_600_000 + (i % 20) as i64;
        let d = h.send_outbound(at, &format!("w{i}"), &format!("m{}@new.example", i % 4), &format!("p{i}@gmail.com"));
        assert_eq!(d.status, DecisionStatus::Allowed, "{d:?}");
    }
    // One bounce each from three mailboxes: no mailbox has three; the domain does.
    let at = day1 + 2 * 3_600_000;
    for i in 0..3 {
        h.deliver(at + i, &event(&format!("m{i}@new.example"), &format!("p{i}@gmail.com"), DeliveryKind::BounceHard, Some(550)));
    }
    let d = h.send_outbound(at + 100, "w-after", "m3@new.example", "q@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
    // Two bounces would not have done it.
    let mut h2 = H::new();
    h2.policy(day1, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\" }");
    for i in 0..40 {
        h2.send_outbound(day1 + (i / 20) as i64 * 3_600_000 + (i % 20) as i64, &format!("w{i}"), &format!("m{}@new.example", i % 4), &format!("p{i}@gmail.com"));
    }
    for i in 0..2 {
        h2.deliver(at + i, &event(&format!("m{i}@new.example"), &format!("p{i}@gmail.com"), DeliveryKind::BounceHard, Some(550)));
    }
    assert_eq!(h2.send_outbound(at + 100, "w-after", "m3@new.example", "q@gmail.com").status, DecisionStatus::Allowed);
}

#[test]
fn the_rest_of_day_rule_pauses_until_local_midnight() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    // The M365 rule: bounces today over sends today above 5%, from one bounce.
    h.policy(now, "default", &format!("{HIGH}\ntimezone = \"Europe/Berlin\"\nsignals = {{ min_events = 1, hard_bounce = {{ warn = 0.5, slow = 0.6, pause = 0.9 }}, rest_of_day = {{ hard_bounce = 0.05 }} }}"));
    sends(&mut h, now, 20, "d");
    // 1 in 20 is 5%: not above it.
    h.deliver(now + 1_000, &event("m1@acme.com", "p1@gmail.com", DeliveryKind::BounceHard, Some(550)));
    assert_eq!(h.send_outbound(now + 1_001, "still", "m2@acme.com", "z@gmail.com").status, DecisionStatus::Allowed);
    h.new_alerts();
    // 2 in 21: the domain (and the mailbox: 2 of its 2 sends) stop until Berlin's midnight (22:00 UTC).
    h.deliver(now + 2_000, &event("m1@acme.com", "p11@gmail.com", DeliveryKind::BounceHard, Some(550)));
    assert!(h.new_alerts().iter().any(|a| a.kind == "sender_paused_for_day" && a.scope == "sender_domain:acme.com"));
    let d = h.send_outbound(now + 3_000, "stopped", "m2@acme.com", "z2@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused_for_day"));
    assert_retry_after(d.retry_at_ms, t(2026, 6, 3, 22, 0), 24 * HOUR);
    // The next local day it sends again, with no command.
    assert_eq!(h.send_outbound(t(2026, 6, 3, 22, 1), "tomorrow", "m2@acme.com", "z3@gmail.com").status, DecisionStatus::Allowed);
}

#[test]
fn the_slow_tier_halves_sender_limits_and_auto_resume_is_opt_in() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", "business_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\", \"sender_domain.outbound.hour\" = 1000 }\nsignals = { min_volume = 50, auto_resume_minutes = 30 }");
    sends(&mut h, now, 100, "s");
    // 3% bounces: slow.
    for i in 0..3 {
        h.deliver(now + 1_000 + i, &event("m1@acme.com", &format!("x{i}@gmail.com"), DeliveryKind::BounceHard, Some(550)));
    }
    let d = h.send_outbound(now + 2_000, "slow", "m1@acme.com", "z@gmail.com");
    let hour = d.usage.iter().find(|u| u.scope == "sender_domain:acme.com" && u.window == "hour").unwrap();
    assert_eq!(hour.limit, 500);
    for i in 0..3 {
        h.deliver(now + 3_000 + i, &event("m1@acme.com", &format!("q{i}@gmail.com"), DeliveryKind::BounceHard, Some(550)));
    }
    assert_eq!(h.send_outbound(now + 4_000, "paused", "m1@acme.com", "z3@gmail.com").status, DecisionStatus::Paused);
    // 30 minutes later the opt-in auto-resume lifts a signal pause.
    let d = h.send_outbound(now + 4_000 + 30 * 60_000, "resumed", "m1@acme.com", "z4@gmail.com");
    assert_eq!(d.status, DecisionStatus::Allowed);
    assert!(h.new_alerts().iter().any(|a| a.kind == "sender_resumed" && a.details.get("by").map(String::as_str) == Some("auto_resume")));
}

#[test]
fn throttling_backs_off_60_s_doubling_to_a_30_min_ceiling() {
    let mut h = H::new();
    let mut now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH);
    let mut throttle = event("ana@acme.com", "x@gmail.com", DeliveryKind::Deferred, Some(421));
    throttle.enhanced_code = Some("4.7.28".into());
    let mut waits = Vec::new();
    for n in 0..7 {
        now += 1_000;
        h.deliver(now, &throttle);
        // googlemail.com is in the same provider group as gmail.com.
        let d = h.send_outbound(now + 1, &format!("b{n}"), "ana@acme.com", &format!("y{n}@googlemail.com"));
        assert_eq!((d.status, d.reason.as_str(), d.stage.as_deref()), (DecisionStatus::Deferred, "isp_backoff", Some("recipient_domain")));
        waits.push((d.retry_at_ms.unwrap() - now) / 1000);
    }
    assert_eq!(waits, vec![60, 120, 240, 480, 960, 1800, 1800]);
    let a = h.new_alerts();
    assert!(a.iter().any(|a| a.kind == "isp_throttling"));
    assert!(a.iter().any(|a| a.kind == "isp_backoff_escalated" && a.details.get("consecutive").map(String::as_str) == Some("6")));
    // Other providers are unaffected; a successful delivery resets the backoff.
    assert_eq!(h.send_outbound(now + 2, "other", "ana@acme.com", "z@corp.example").status, DecisionStatus::Allowed);
    h.deliver(now + 3, &event("ana@acme.com", "x@gmail.com", DeliveryKind::Delivered, Some(250)));
    assert_eq!(h.send_outbound(now + 4, "reset", "ana@acme.com", "y9@gmail.com").status, DecisionStatus::Allowed);
}

#[test]
fn feedback_rules_read_the_answer_a_421_4_7_26_pauses_where_a_421_4_7_28_backs_off() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(
        now,
        "default",
        &format!("{HIGH}\nfeedback = [{{ enhanced = \"4.7.26\", action = \"pause_domain\" }}, {{ kinds = [\"bounce_soft\"], enhanced = \"5.1.1\", action = \"suppress_recipient\" }}, {{ code = 421, response = \"(?i)greylist\", action = \"ignore\" }}]"),
    );
    // Too fast, says Google: a backoff from it alone.
    let mut rate = event("ana@acme.com", "x@gmail.com", DeliveryKind::Deferred, Some(421));
    rate.enhanced_code = Some("4.7.28".into());
    h.deliver(now, &rate);
    let d = h.send_outbound(now + 1, "g", "ana@acme.com", "y@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "isp_backoff"));
    assert_eq!(h.send_outbound(now + 2, "c", "ana@acme.com", "z@corp.example").status, DecisionStatus::Allowed);
    // A greylisting 421 the rules ignore: no backoff at Yahoo.
    let mut grey = event("ana@acme.com", "g@yahoo.com", DeliveryKind::Deferred, Some(421));
    grey.response = Some("451 Greylisted, try again".into());
    h.deliver(now + 3, &grey);
    assert_eq!(h.send_outbound(now + 4, "yh", "ana@acme.com", "h@yahoo.com").status, DecisionStatus::Allowed);
    // The address is gone, says a soft bounce: suppressed for the tenant.
    let mut gone = event("ana@acme.com", "old@corp.example", DeliveryKind::BounceSoft, Some(550));
    gone.enhanced_code = Some("5.1.1".into());
    h.deliver(now + 5, &gone);
    let d = h.send_outbound(now + 6, "old", "bo@acme.com", "old@corp.example");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Blocked, "recipient_suppressed"));
    // Authentication failed, says Microsoft: the same code, but the whole
    // domain stops until someone fixes it and resumes.
    h.new_alerts();
    let mut auth = event("bo@acme.com", "p@outlook.com", DeliveryKind::Deferred, Some(421));
    auth.enhanced_code = Some("4.7.26".into());
    h.deliver(now + 10, &auth);
    assert!(h.new_alerts().iter().any(|a| a.kind == "sender_paused" && a.scope == "sender_domain:acme.com" && a.details.get("reason").map(String::as_str) == Some("isp_feedback")));
    let d = h.send_outbound(now + 11, "after", "cy@acme.com", "q@corp.example");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
}

#[test]
fn an_esp_429_backs_off_and_the_rate_then_steps_back_up() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{HIGH}\nfeedback = [{{ kinds = [\"rejected\"], code = 429, action = \"backoff\" }}]"));
    h.deliver(now, &event("ana@acme.com", "x@gmail.com", DeliveryKind::Rejected, Some(429)));
    let d = h.send_outbound(now + 1, "b", "ana@acme.com", "y@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "isp_backoff"));
    // The minute after the 60 s backoff: 5 get through, the rest come back the next minute.
    let burst = |h: &mut H, at: i64, tag: &str, n: usize| -> Vec<Decision> { (0..n).map(|i| h.send_outbound(at + i as i64, &format!("{tag}{i}"), "ana@acme.com", &format!("{tag}{i}@gmail.com"))).collect() };
    let first = burst(&mut h, t(2026, 6, 3, 10, 2), "r1-", 7);
    assert_eq!(first.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 5);
    assert_eq!(first[5].reason, "isp_backoff_ramp");
    assert_retry_after(first[5].retry_at_ms, t(2026, 6, 3, 10, 3), 60_000);
    // Five minutes on, 10 a minute; 20 minutes on, the ramp is over.
    let second = burst(&mut h, t(2026, 6, 3, 10, 7), "r2-", 12);
    assert_eq!(second.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 10);
    let after = burst(&mut h, t(2026, 6, 3, 10, 22), "r3-", 60);
    assert!(after.iter().all(|d| d.status == DecisionStatus::Allowed));
}

#[test]
fn a_backoff_lasts_at_least_as_long_as_the_provider_asked() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{HIGH}\nfeedback = [{{ kinds = [\"rejected\"], code = 429, action = \"backoff\" }}]"));
    let mut busy = event("ana@acme.com", "x@gmail.com", DeliveryKind::Rejected, Some(429));
    busy.retry_after_seconds = Some(600);
    h.deliver(now, &busy);
    // Ten minutes, not the schedule's first 60 s.
    let d = h.send_outbound(now + 1, "b", "ana@acme.com", "y@gmail.com");
    assert_eq!((d.status, d.reason.as_str(), d.retry_at_ms), (DecisionStatus::Deferred, "isp_backoff", Some(now + 600_000)));
    // A wait longer than a week is refused at the door.
    busy.retry_after_seconds = Some(8 * 24 * 3_600);
    h.deliver(now + 2, &busy);
    assert!(h.d.refused.iter().any(|r| r.reason.contains("retry_after_seconds")), "{:?}", h.d.refused.iter().map(|r| &r.reason).collect::<Vec<_>>());
}

#[test]
fn rejections_count_toward_the_bounce_signals() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH);
    sends(&mut h, now, 40, "s");
    for i in 0..3 {
        h.deliver(now + 1_000 + i, &event(&format!("m{i}@acme.com"), &format!("p{i}@gmail.com"), DeliveryKind::Rejected, Some(554)));
    }
    let d = h.send_outbound(now + 2_000, "after", "m9@acme.com", "q@gmail.com");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
}

#[test]
fn a_5xx_is_a_rejection_not_a_throttle() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH);
    h.deliver(now, &event("ana@acme.com", "x@gmail.com", DeliveryKind::Deferred, Some(550)));
    h.deliver(now + 1, &event("ana@acme.com", "x@gmail.com", DeliveryKind::Rejected, Some(554)));
    assert_eq!(h.send_outbound(now + 2, "r", "ana@acme.com", "y@gmail.com").status, DecisionStatus::Allowed);
}

#[test]
fn throttling_from_three_recipient_domains_within_an_hour_pauses_the_sender_domain() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH);
    h.deliver(now, &event("ana@acme.com", "a@gmail.com", DeliveryKind::Deferred, Some(421)));
    h.deliver(now + 60_000, &event("ana@acme.com", "b@outlook.com", DeliveryKind::Deferred, Some(452)));
    // Two providers: not yet.
    assert_eq!(h.send_outbound(now + 60_001, "p0", "bo@acme.com", "c@corp.example").status, DecisionStatus::Allowed);
    h.deliver(now + 120_000, &event("ana@acme.com", "c@yahoo.com", DeliveryKind::BounceSoft, Some(450)));
    // All three at one mailbox: the mailbox's breaker and the domain's.
    let paused: Vec<String> = h.new_alerts().into_iter().filter(|a| a.kind == "sender_paused" && a.details.get("reason").map(String::as_str) == Some("isp_throttling")).map(|a| a.scope).collect();
    assert_eq!(paused, vec!["sender_domain:acme.com", "mailbox:ana@acme.com"]);
    let d = h.send_outbound(now + 120_001, "p1", "bo@acme.com", "d@corp.example");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
    h.command(now + 130_000, &command(CommandKind::Resume, "sender_domain:acme.com"));
    assert_eq!(h.send_outbound(now + 130_001, "p2", "bo@acme.com", "e@corp.example").status, DecisionStatus::Allowed);
    // Three mailboxes throttled by one provider each: the domain's breaker only.
    let mut h2 = H::new();
    h2.policy(now, "default", HIGH);
    for (i, to) in ["a@gmail.com", "b@outlook.com", "c@yahoo.com"].iter().enumerate() {
        h2.deliver(now + i as i64, &event(&format!("m{i}@acme.com"), to, DeliveryKind::Deferred, Some(421)));
    }
    let paused: Vec<String> = h2.new_alerts().into_iter().filter(|a| a.kind == "sender_paused").map(|a| a.scope).collect();
    assert_eq!(paused, vec!["sender_domain:acme.com"]);
    // Throttles spread over more than an hour do not add up.
    let later = now + 10 * 3_600_000;
    for (i, to) in ["a@gmail.com", "b@outlook.com", "c@yahoo.com"].iter().enumerate() {
        h.deliver(later + i as i64 * 3_600_000, &event("ana@acme.com", to, DeliveryKind::Deferred, Some(421)));
    }
    assert_eq!(h.send_outbound(later + 3 * 3_600_000, "p3", "bo@acme.com", "f@corp.example").status, DecisionStatus::Allowed);
}

#[test]
fn the_recipient_domain_stage_is_passed_only_when_a_window_or_a_backoff_there_can_apply() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH);
    let decided = |d: Decision| (d.status, d.reason, d.stage.unwrap_or_default());
    let allowed_at = |stage: &str| (DecisionStatus::Allowed, "ok".to_string(), stage.to_string());
    // A public provider has no recipient-domain window: the recipient stage
    // is the last. A company domain has one (50 an hour).
    assert_eq!(decided(h.send_outbound(now + 1, "p1", "ana@acme.com", "x@gmail.com")), allowed_at("recipient"));
    assert_eq!(decided(h.send_outbound(now + 2, "c1", "ana@acme.com", "x@corp.example")), allowed_at("recipient_domain"));
    // A throttle from Google: its backoff is kept by the recipient-domain
    // stage, which intents to any of its domains pass again.
    h.deliver(now + 3, &event("ana@acme.com", "y@gmail.com", DeliveryKind::Deferred, Some(421)));
    let d = h.send_outbound(now + 4, "p2", "ana@acme.com", "z@googlemail.com");
    assert_eq!((d.status, d.reason.as_str(), d.stage.as_deref()), (DecisionStatus::Deferred, "isp_backoff", Some("recipient_domain")));
    assert_eq!(decided(h.send_outbound(now + 3 + 61_000, "p3", "ana@acme.com", "z@gmail.com")), allowed_at("recipient_domain"), "the backoff is over; another may start");
    // Once the longest backoff (30 min) and its ramp (20 min) have passed
    // since the last throttle, none can be in force: skipped again. Another
    // sender domain never passed it for Google's throttling of acme.com.
    assert_eq!(decided(h.send_outbound(now + 3 + 1_800_000, "p4-ramp", "ana@acme.com", "w@gmail.com")), allowed_at("recipient_domain"));
    assert_eq!(decided(h.send_outbound(now + 3 + 3_000_000, "p4", "ana@acme.com", "w@gmail.com")), allowed_at("recipient"));
    assert_eq!(decided(h.send_outbound(now + 5, "o1", "bo@other.example", "w@gmail.com")), allowed_at("recipient"));
    // A recipient-domain document's window brings the stage back for that domain.
    h.policy(now + 3_100_000, "recipient_domain:gmail.com", "exclude_public_domains = false");
    assert_eq!(decided(h.send_outbound(now + 3_100_001, "p5", "ana@acme.com", "v@gmail.com")), allowed_at("recipient_domain"));
}
