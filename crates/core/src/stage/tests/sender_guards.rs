//! Sender-side guards: windows, business hours, warm-up, idempotency,
//! approval, restrictions, quota alerts, live policies, determinism.

use super::*;
use crate::stage::StageKind;

fn to(i: usize) -> String {
    // Distinct recipients at a public provider: no recipient-side limit binds.
    format!("r{i}@gmail.com")
}

#[test]
fn daily_cap_defers_to_the_next_local_midnight() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "tenant:acme", &format!("{QUIET}\ntimezone = \"America/New_York\"\nlimits = {{ \"mailbox.outbound.day\" = 25, \"mailbox.outbound.hour\" = \"off\" }}"));
    let mut allowed = 0;
    for i in 0..100 {
        let d = h.send_outbound(now + i as i64, &format!("i{i}"), "ana@acme.com", &to(i));
        match d.status {
            DecisionStatus::Allowed => allowed += 1,
            DecisionStatus::Deferred => {
                assert_eq!(d.reason, "daily_cap_reached");
                // 10:00 UTC on 3 June is 06:00 in New York (EDT): the next day starts at 04:00 UTC on 4 June.
                assert_retry_after(d.retry_at_ms, t(2026, 6, 4, 4, 0), 24 * HOUR);
                let u = d.usage.iter().find(|u| u.scope == "mailbox:ana@acme.com" && u.window == "day").unwrap();
                assert_eq!((u.used, u.limit, u.remaining), (25, 25, 0));
            }
            s => panic!("unexpected {s:?}"),
        }
        assert!(d.policy_version > 0);
    }
    assert_eq!(allowed, 25);
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), 25);
}

#[test]
fn minute_hour_day_and_month_windows_bind_per_class() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(
        now,
        "default",
        &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.minute\" = 2, \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = \"off\", \"sender_domain.outbound.month\" = 5, \"mailbox.transactional.day\" = 1 }}"),
    );
    let d: Vec<Decision> = (0..3).map(|i| h.send_outbound(now + i, &format!("m{i}"), "ana@acme.com", &to(i as usize))).collect();
    assert_eq!(d[2].reason, "minute_limit_exceeded");
    assert_retry_after(d[2].retry_at_ms, now + 60_000, 60_000);
    for i in 3..6 {
        h.send_outbound(now + i * 60_000, &format!("m{i}"), "ana@acme.com", &to(i as usize));
    }
    let d = h.send_outbound(now + 10 * 60_000, "m10", "ana@acme.com", &to(10));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "monthly_cap_reached"));
    assert_retry_after(d.retry_at_ms, t(2026, 7, 1, 0, 0), 30 * 24 * HOUR);
    // Transactional mail has its own budget, untouched by the outbound caps.
    let tx = |id: &str| intent(id, "ana@acme.com", "bob@gmail.com", IntentClass::Transactional);
    assert_eq!(h.send(now + 11 * 60_000, &tx("t1")).status, DecisionStatus::Allowed);
    assert_eq!(h.send(now + 12 * 60_000, &tx("t2")).reason, "daily_cap_reached");
}

#[test]
fn tenant_windows_span_all_of_a_tenants_sender_domains() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "tenant:acme", &format!("{QUIET}\nlimits = {{ \"tenant.outbound.hour\" = 4 }}"));
    let senders = ["a@one.example", "b@two.example", "c@three.example"];
    let decisions: Vec<Decision> = (0..9).map(|i| h.send_outbound(now + i as i64, &format!("t{i}"), senders[i % 3], &to(i))).collect();
    assert_eq!(decisions.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 4);
    let denied = decisions.iter().find(|d| d.status != DecisionStatus::Allowed).unwrap();
    assert_eq!((denied.reason.as_str(), denied.stage.as_deref()), ("hourly_limit_exceeded", Some("tenant")));
    assert!(denied.usage.iter().any(|u| u.scope == "tenant:acme" && u.used == 4 && u.limit == 4));
    // Released: the sender stage kept only what was allowed.
    assert_eq!(h.counted(StageKind::Sender, "sender_domain:"), 4 * 2, "hour and day counters per allowed intent");
    assert_eq!(h.counted(StageKind::Tenant, "tenant:acme"), 4);
}

#[test]
fn business_hours_defer_to_the_next_opening_across_dst() {
    let mut h = H::new();
    let start = t(2026, 3, 1, 0, 0);
    h.policy(start, "tenant:acme", "warmup = \"off\"\ntimezone = \"America/New_York\"\nbusiness_hours = { start = \"08:00\", end = \"18:00\" }");
    // Friday 6 March 2026, 19:00 EST (00:00 UTC Saturday). DST starts on
    // Sunday 8 March: Monday 08:00 is EDT, 12:00 UTC.
    let d = h.send_outbound(t(2026, 3, 7, 0, 0), "spring", "ana@acme.com", &to(1));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "outside_business_hours"));
    // Spread over the first quarter hour of the opening, as an hour's window is.
    assert_retry_after(d.retry_at_ms, t(2026, 3, 9, 12, 0), HOUR);
    // Replies ignore business hours and caps, and are still counted.
    let d = h.send(t(2026, 3, 7, 0, 1), &intent("reply", "ana@acme.com", "bob@gmail.com", IntentClass::Reply));
    assert_eq!(d.status, DecisionStatus::Allowed);
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/reply/day"), 1);
    // Tuesday 19:00 EDT: Wednesday 08:00.
    let d = h.send_outbound(t(2026, 6, 2, 23, 0), "weekday", "ana@acme.com", &to(3));
    assert_retry_after(d.retry_at_ms, t(2026, 6, 3, 12, 0), HOUR);
    // Inside the hours, the default pacing is 3 per hour per mailbox.
    let open = t(2026, 6, 3, 13, 0);
    let paced: Vec<Decision> = (0..4).map(|i| h.send_outbound(open + i, &format!("p{i}"), "ana@acme.com", &to(10 + i as usize))).collect();
    assert_eq!(paced.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 3);
    assert_eq!(paced[3].reason.as_str(), "hourly_limit_exceeded");
    assert_retry_after(paced[3].retry_at_ms, t(2026, 6, 3, 14, 0), HOUR);
    // Friday 30 October 2026, 19:00 EDT (23:00 UTC). DST ends on Sunday 1
    // November: Monday 08:00 is EST, 13:00 UTC.
    let d = h.send_outbound(t(2026, 10, 30, 23, 0), "autumn", "ana@acme.com", &to(2));
    assert_retry_after(d.retry_at_ms, t(2026, 11, 2, 13, 0), HOUR);
}

#[test]
fn a_new_sender_domain_warms_up_at_20_per_hour_for_7_days() {
    let mut h = H::new();
    let day1 = t(2026, 6, 1, 9, 0);
    h.policy(day1, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = \"off\", \"sender_domain.outbound.hour\" = 100, \"sender_domain.outbound.day\" = 1000 }");
    let burst = |h: &mut H, at: i64, tag: &str| -> Vec<Decision> { (0..30).map(|i| h.send_outbound(at + i as i64, &format!("{tag}{i}"), &format!("m{}@new.example", i % 5), &to(i))).collect() };
    let d = burst(&mut h, day1, "a");
    assert_eq!(d.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 20);
    let denied = d.iter().find(|d| d.status == DecisionStatus::Deferred).unwrap();
    assert_eq!(denied.reason.as_str(), "warmup_limit");
    assert_retry_after(denied.retry_at_ms, t(2026, 6, 1, 10, 0), HOUR);
    assert!(denied.usage.iter().any(|u| u.scope == "warmup:sender_domain:new.example" && u.limit == 20));
    // Day 7, still warming up; day 8, the configured limits apply on their own.
    let d = burst(&mut h, t(2026, 6, 7, 9, 0), "b");
    assert_eq!(d.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 20);
    let d = burst(&mut h, t(2026, 6, 8, 9, 30), "c");
    assert_eq!(d.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 30);
}

#[test]
fn a_warmup_ramp_table_steps_up_by_age() {
    let mut h = H::new();
    let day1 = t(2026, 6, 1, 0, 0);
    h.policy(day1, "sender_domain:new.example", "business_hours = \"off\"\nwarmup = { preset = \"shared\", started_on = \"2026-06-01\" }\nlimits = { \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = \"off\" }");
    let allowed_on = |h: &mut H, day: u32| -> usize {
        (0..120).filter(|i| h.send_outbound(t(2026, 6, day, 1, 0) + *i as i64, &format!("d{day}-{i}"), "ana@new.example", &to(*i)).status == DecisionStatus::Allowed).count()
    };
    // Shared infrastructure: 20 on day 1, 50 a day in week 1, 100 in week 2.
    assert_eq!(allowed_on(&mut h, 1), 20);
    assert_eq!(allowed_on(&mut h, 3), 50);
    assert_eq!(allowed_on(&mut h, 10), 100, "week 2 steps up (the sender-domain hour limit of 100 binds too)");
}

#[test]
fn a_final_decision_is_repeated_without_touching_counters() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.day\" = 2, \"mailbox.outbound.hour\" = \"off\" }}"));
    let first = h.send_outbound(now, "same", "ana@acme.com", &to(1));
    assert_eq!(first.status, DecisionStatus::Allowed);
    let again = h.send_outbound(now + 5, "same", "ana@acme.com", &to(1));
    assert!(again.replayed);
    assert_eq!((again.status, &again.usage), (DecisionStatus::Allowed, &first.usage));
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), 1);
    assert_eq!(h.counted(StageKind::Recipient, "r1@gmail.com"), 1);
    assert_eq!(h.send_outbound(now + 6, "other", "ana@acme.com", &to(2)).status, DecisionStatus::Allowed);
    assert_eq!(h.send_outbound(now + 7, "third", "ana@acme.com", &to(3)).status, DecisionStatus::Deferred);
}

#[test]
fn a_resubmission_while_the_first_is_in_flight_is_told_to_retry() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let i = intent("twice", "ana@acme.com", "bob@gmail.com", IntentClass::Outbound);
    // Both reach the sender stage before the first one's outcome comes back.
    h.d.intent(&i, now);
    h.d.intent(&i, now + 1);
    h.d.run();
    let ds: Vec<&Decision> = h.d.decisions.iter().filter(|d| d.intent_id == "twice").collect();
    assert_eq!(ds.len(), 2);
    assert!(ds.iter().any(|d| d.status == DecisionStatus::Allowed));
    assert!(ds.iter().any(|d| d.reason == "decision_pending" && d.retry_at_ms == Some(now + 1 + 1_000)));
    assert!(h.send_outbound(now + 5, "twice", "ana@acme.com", "bob@gmail.com").replayed);
}

#[test]
fn remembered_intent_ids_expire_after_the_retention() {
    let mut h = H::with(SenderConfig { idempotency_retention_ms: 3_600_000 });
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    assert_eq!(h.send_outbound(now, "old", "ana@acme.com", &to(1)).status, DecisionStatus::Allowed);
    assert!(h.send_outbound(now + 60_000, "old", "ana@acme.com", &to(1)).replayed);
    let d = h.send_outbound(now + 2 * 3_600_000, "old", "ana@acme.com", &to(1));
    assert!(!d.replayed);
    assert_eq!(d.status, DecisionStatus::Allowed);
}

#[test]
fn approval_holds_then_decides_under_the_guards() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let mut i = intent("risky", "ana@acme.com", "cfo@corp.example", IntentClass::Outbound);
    i.requires_approval = true;
    let d = h.send(now, &i);
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Held, "pending_approval"));
    assert_eq!(h.counted(StageKind::Sender, "ana@acme.com"), 0, "a held intent spends nothing");
    let mut approve = command(CommandKind::Approve, "risky");
    approve.sender = Some("ana@acme.com".into());
    let d = h.command(now + 1, &approve);
    assert_eq!((d.len(), d[0].status), (1, DecisionStatus::Allowed));
    i.intent_id = "risky2".into();
    h.send(now + 2, &i);
    let mut reject = command(CommandKind::Reject, "risky2");
    reject.sender = Some("ana@acme.com".into());
    assert_eq!(h.command(now + 3, &reject)[0].status, DecisionStatus::Blocked);
    assert_eq!(h.send(now + 4, &i).status, DecisionStatus::Blocked, "final: a resubmission is BLOCKED again");
}

#[test]
fn a_hold_breach_action_in_a_later_stage_holds_and_approval_sends_it() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"recipient_domain.outbound.hour\" = {{ max = 1, on_breach = \"hold\" }} }}"));
    assert_eq!(h.send_outbound(now, "h1", "ana@acme.com", "a@corp.example").status, DecisionStatus::Allowed);
    let d = h.send_outbound(now + 1, "h2", "ana@acme.com", "b@corp.example");
    assert_eq!((d.status, d.reason.as_str(), d.stage.as_deref()), (DecisionStatus::Held, "hourly_limit_exceeded", Some("recipient_domain")));
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), 1, "the held intent's reservation was released");
    let mut approve = command(CommandKind::Approve, "h2");
    approve.sender = Some("ana@acme.com".into());
    assert_eq!(h.command(now + 2, &approve)[0].status, DecisionStatus::Allowed);
    assert_eq!(h.counted(StageKind::RecipientDomain, "corp.example"), 2);
}

#[test]
fn limits_can_alert_and_allow() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = {{ max = 1, on_breach = \"alert\" }} }}"));
    h.send_outbound(now, "a1", "ana@acme.com", &to(1));
    h.new_alerts();
    assert_eq!(h.send_outbound(now + 1, "a2", "ana@acme.com", &to(2)).status, DecisionStatus::Allowed);
    assert!(h.new_alerts().iter().any(|a| a.kind == "limit_exceeded_allowed"));
}

#[test]
fn restrictions_apply_by_scope_and_the_most_specific_wins() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    h.command(now, &command(CommandKind::AddRestriction, "domain:acme.com"));
    // The domain and its subdomains.
    let d = h.send_outbound(now + 1, "r1", "ana@acme.com", &to(1));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_restricted"));
    assert_eq!(h.send_outbound(now + 2, "r2", "bo@mail.acme.com", &to(2)).reason, "sender_restricted");
    // An address exemption is more specific than the domain's deny.
    let mut allow = command(CommandKind::AddRestriction, "address:ceo@acme.com");
    allow.mode = Some("allow".into());
    h.command(now + 3, &allow);
    assert_eq!(h.send_outbound(now + 4, "r3", "CEO@acme.com", &to(3)).status, DecisionStatus::Allowed);
    h.command(now + 5, &command(CommandKind::LiftRestriction, "domain:acme.com"));
    assert_eq!(h.send_outbound(now + 6, "r4", "ana@acme.com", &to(4)).status, DecisionStatus::Allowed);
    // A tenant-wide deny that ends by itself defers until then.
    let mut timed = command(CommandKind::AddRestriction, "tenant:acme");
    timed.until_ms = Some(now + 3_600_000);
    h.command(now + 7, &timed);
    let d = h.send_outbound(now + 8, "r5", "zed@other.example", &to(5));
    assert_eq!((d.status, d.retry_at_ms), (DecisionStatus::Deferred, Some(now + 3_600_000)));
    assert_eq!(h.send_outbound(now + 3_600_000, "r6", "zed@other.example", &to(6)).status, DecisionStatus::Allowed);
}

#[test]
fn a_held_intent_nobody_decides_expires_blocked_after_the_policys_time() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nheld = {{ expire_hours = 2 }}"));
    let held = |id: &str| {
        let mut i = intent(id, "ana@acme.com", "cfo@corp.example", IntentClass::Outbound);
        i.requires_approval = true;
        i
    };
    assert_eq!(h.send(now, &held("stale")).status, DecisionStatus::Held);
    assert_eq!(h.send(now + HOUR, &held("fresh")).status, DecisionStatus::Held);
    h.new_alerts();
    // Two hours on, the next record the partition handles finds "stale" due.
    let d = h.send_outbound(now + 2 * HOUR + 1, "later", "bo@acme.com", &to(1));
    assert_eq!(d.status, DecisionStatus::Allowed);
    let expired: Vec<&Decision> = h.d.decisions.iter().filter(|d| d.reason == "approval_expired").collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!((expired[0].intent_id.as_str(), expired[0].status), ("stale", DecisionStatus::Blocked));
    assert!(h.new_alerts().iter().any(|a| a.kind == "held_expired" && a.details.get("intent_id").map(String::as_str) == Some("stale")));
    // Final: an approval comes too late, a resubmission gets the same answer.
    let mut approve = command(CommandKind::Approve, "stale");
    approve.sender = Some("ana@acme.com".into());
    assert!(h.command(now + 2 * HOUR + 2, &approve).is_empty());
    assert!(h.d.refused.iter().any(|r| r.reason.contains("no held intent \"stale\"")), "{:?}", h.d.refused);
    let again = h.send(now + 2 * HOUR + 3, &held("stale"));
    assert_eq!((again.status, again.reason.as_str(), again.replayed), (DecisionStatus::Blocked, "approval_expired", true));
    // The other, approved in its time, is sent.
    let mut approve = command(CommandKind::Approve, "fresh");
    approve.sender = Some("ana@acme.com".into());
    assert_eq!(h.command(now + 2 * HOUR + 4, &approve)[0].status, DecisionStatus::Allowed);
    // expire_hours = 0: held for ever.
    let mut h = H::new();
    h.policy(now, "default", &format!("{QUIET}\nheld = {{ expire_hours = 0 }}"));
    h.send(now, &held("patient"));
    h.send_outbound(now + 1_000 * HOUR, "much-later", "bo@acme.com", &to(2));
    assert!(!h.d.decisions.iter().any(|d| d.reason == "approval_expired"));
}

#[test]
fn quota_alerts_come_from_the_windows_the_policy_names() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    // By default, day and month limits alert; an hourly pacing limit does not.
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.day\" = 100, \"mailbox.outbound.hour\" = 3 }}"));
    for i in 0..4 {
        h.send_outbound(now + i, &format!("h{i}"), "ana@acme.com", &to(i as usize));
    }
    assert!(h.new_alerts().iter().all(|a| !a.kind.starts_with("quota_")));
    h.policy(now + 10, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.day\" = 100, \"mailbox.outbound.hour\" = 3 }}\nalerts = {{ quota_windows = [\"hour\"] }}"));
    for i in 0..4 {
        h.send_outbound(now + HOUR + i, &format!("n{i}"), "ana@acme.com", &to(10 + i as usize));
    }
    let kinds: Vec<(String, String)> = h.new_alerts().into_iter().filter(|a| a.kind.starts_with("quota_")).map(|a| (a.kind, a.details["window"].clone())).collect();
    // 3 of 3 crosses both thresholds at once.
    assert_eq!(kinds, vec![("quota_80".to_string(), "hour".to_string()), ("quota_100".to_string(), "hour".to_string())]);
}

#[test]
fn quota_alerts_fire_once_per_window_period() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.day\" = 10, \"mailbox.outbound.hour\" = \"off\" }}"));
    let mut kinds = Vec::new();
    for day in 0..2 {
        for i in 0..15 {
            h.send_outbound(now + day * 86_400_000 + i, &format!("q{day}-{i}"), "ana@acme.com", &to(i as usize));
            kinds.extend(h.new_alerts().into_iter().filter(|a| a.scope == "mailbox:ana@acme.com").map(|a| a.kind));
        }
    }
    assert_eq!(kinds, vec!["quota_80", "quota_100", "quota_80", "quota_100"]);
}

#[test]
fn a_live_policy_change_applies_to_the_next_intent_with_its_version() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let before = h.send_outbound(now + 1, "v1", "ana@acme.com", &to(1));
    h.policy(now + 2, "mailbox:ana@acme.com", "limits = { \"mailbox.outbound.hour\" = 1 }");
    let after = h.send_outbound(now + 3, "v2", "ana@acme.com", &to(2));
    assert_eq!(after.reason, "hourly_limit_exceeded");
    assert!(after.policy_version > before.policy_version);
}

#[test]
fn address_variants_share_counters() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = 2 }}"));
    for (i, s) in ["Ana@ACME.com", " ana@acme.com.", "ana@Acme.Com"].iter().enumerate() {
        h.send_outbound(now + i as i64, &format!("v{i}"), s, &to(i));
    }
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/hour"), 2);
    h.d.intent(&intent("bad", "not an address", "x@y.example", IntentClass::Outbound), now);
    assert!(h.d.refused.iter().any(|r| r.stage == "ingress" && r.reason.contains("sender")));
}

#[test]
fn the_same_log_gives_byte_identical_decisions() {
    let run = || {
        let mut h = H::new();
        let now = t(2026, 6, 3, 10, 0);
        h.policy(now, "default", "business_hours = \"off\"");
        for i in 0..200 {
            let mut it = intent(&format!("d{}", i % 150), &format!("m{}@acme.com", i % 4), &format!("r{}@corp{}.example", i % 30, i % 3), IntentClass::Outbound);
            it.template_id = Some(format!("t{}", i % 5));
            h.d.intent(&it, now + i * 7_000);
        }
        h.d.run();
        h.d.decisions.iter().flat_map(|d| crate::codec::encode(crate::codec::RecordType::Decision, d).unwrap()).collect::<Vec<u8>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn alert_ids_are_unique_across_an_intents_evaluation_and_outcome() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = {{ max = 1, on_breach = \"alert\" }}, \"mailbox.outbound.day\" = 2, \"sender_domain.outbound.hour\" = \"off\", \"sender_domain.outbound.day\" = \"off\" }}"));
    h.send_outbound(now, "a1", "ana@acme.com", &to(1));
    h.send_outbound(now + 1, "a2", "ana@acme.com", &to(2));
    let kinds: Vec<&str> = h.d.alerts.iter().map(|a| a.kind.as_str()).collect();
    assert!(kinds.contains(&"limit_exceeded_allowed") && kinds.contains(&"quota_80"), "{kinds:?}");
    let ids: std::collections::HashSet<&str> = h.d.alerts.iter().map(|a| a.alert_id.as_str()).collect();
    assert_eq!(ids.len(), h.d.alerts.len(), "{:?}", h.d.alerts.iter().map(|a| &a.alert_id).collect::<Vec<_>>());
}

#[test]
fn a_shared_counter_keeps_its_windows_whatever_the_senders_zone() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "tenant:acme", &format!("{QUIET}\nlimits = {{ \"sender_domain.outbound.day\" = 2, \"mailbox.outbound.day\" = \"off\", \"mailbox.outbound.hour\" = \"off\", \"sender_domain.outbound.hour\" = \"off\" }}"));
    h.policy(now, "mailbox:ana@acme.com", "timezone = \"Europe/Berlin\"");
    let allowed = (0..10).filter(|i| h.send_outbound(now + 1 + i, &format!("z{i}"), if i % 2 == 0 { "ana@acme.com" } else { "bo@acme.com" }, &to(*i as usize)).status == DecisionStatus::Allowed).count();
    assert_eq!(allowed, 2, "the sender domain's day cap holds across mailboxes in other zones");
}

#[test]
fn a_resubmission_long_after_the_first_gets_exactly_one_final_decision() {
    let mut h = H::with(SenderConfig { idempotency_retention_ms: 3_600_000 });
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nrecipients = {{ cooldown_minutes = 10 }}"));
    let mut a = intent("A", "ana@acme.com", "r@corp.example", IntentClass::Outbound);
    a.template_id = Some("t".into());
    let mut x = a.clone();
    x.intent_id = "X".into();
    assert_eq!(h.send(now, &a).status, DecisionStatus::Allowed);
    assert_eq!(h.send(now + 60_000, &x).reason, "recipient_cooldown");
    // Resubmitted just before the first submission's retention ends, with
    // another record right after it.
    h.d.intent(&x, now + 60_000 + 3_600_000 - 1);
    h.d.intent(&intent("Y", "bo@acme.com", "q@corp2.example", IntentClass::Outbound), now + 60_000 + 3_600_000);
    h.d.run();
    assert!(h.d.refused.is_empty(), "{:?}", h.d.refused);
    assert_eq!(h.d.decisions.iter().filter(|d| d.intent_id == "X" && d.status == DecisionStatus::Allowed).count(), 1);
    let again = h.send(now + 2 * 3_600_000, &x);
    assert!(again.replayed, "the final decision is remembered: {again:?}");
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), 2);
}

#[test]
fn restrictions_belong_to_the_tenant_that_set_them() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let mut deny = command(CommandKind::AddRestriction, "domain:shared.example");
    deny.tenant = "globex".into();
    h.command(now, &deny);
    assert_eq!(h.send_outbound(now + 1, "t1", "ana@shared.example", &to(1)).status, DecisionStatus::Allowed, "acme is not restricted by globex");
    let mut other = intent("t2", "ana@shared.example", &to(2), IntentClass::Outbound);
    other.tenant = "globex".into();
    assert_eq!(h.send(now + 2, &other).reason, "sender_restricted");
}

#[test]
fn a_stage_record_that_cannot_be_acted_on_changes_no_state() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    // Approving an intent that is not held is refused (a dead letter)...
    let mut approve = command(CommandKind::Approve, "nothing-held");
    approve.sender = Some("ana@acme.com".into());
    h.command(now + 1, &approve);
    assert!(h.d.refused.iter().any(|r| r.stage == "sender"));
    // ...and everything goes on as before.
    assert_eq!(h.send_outbound(now + 2, "after", "ana@acme.com", &to(1)).status, DecisionStatus::Allowed);
}

#[test]
fn a_rolling_24_hour_cap_holds_across_midnight_where_a_daily_one_resets() {
    let mut h = H::new();
    let evening = t(2026, 6, 3, 23, 30);
    h.policy(evening, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.day\" = \"off\", \"mailbox.outbound.hour\" = \"off\", \"mailbox.all.rolling_24h\" = 5 }}"));
    h.policy(evening, "mailbox:cal@acme.com", "limits = { \"mailbox.all.rolling_24h\" = \"off\", \"mailbox.outbound.day\" = 5 }");
    for m in ["roll", "cal"] {
        for i in 0..5 {
            assert_eq!(h.send_outbound(evening + i, &format!("{m}-e{i}"), &format!("{m}@acme.com"), &to(i as usize)).status, DecisionStatus::Allowed);
        }
    }
    // Past midnight: the daily cap starts again; the rolling one still holds the evening's five.
    let night = t(2026, 6, 4, 0, 30);
    assert_eq!(h.send_outbound(night, "cal-n", "cal@acme.com", &to(10)).status, DecisionStatus::Allowed);
    let d = h.send_outbound(night, "roll-n", "roll@acme.com", &to(10));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "rolling_24h_limit_exceeded"));
    let u = d.usage.iter().find(|u| u.window == "rolling_24h").unwrap();
    assert_eq!((u.scope.as_str(), u.used, u.limit), ("mailbox:roll@acme.com", 5, 5));
    // Back when the 23:00 hour has left the window (25 hours on), spread as a day's window is.
    assert_retry_after(d.retry_at_ms, t(2026, 6, 5, 0, 0), 24 * HOUR);
    // Still full at 23:59 the next day; room again once the hour has left.
    assert_eq!(h.send_outbound(t(2026, 6, 4, 23, 59), "roll-late", "roll@acme.com", &to(11)).status, DecisionStatus::Deferred);
    assert_eq!(h.send_outbound(t(2026, 6, 5, 0, 0), "roll-next", "roll@acme.com", &to(12)).status, DecisionStatus::Allowed);
    // The evening's bucket is gone (dropped as it left the window): only the new send is counted.
    assert_eq!(h.counted(StageKind::Sender, "mailbox:roll@acme.com/all/rolling_24h@"), 1);
}

#[test]
fn a_total_across_classes_counts_replies_only_when_asked_and_a_second_window_paces() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = \"off\", \"mailbox.all.day\" = {{ max = 3, replies = true }} }}"));
    let of = |id: &str, class| intent(id, "ana@acme.com", &format!("{id}@gmail.com"), class);
    assert_eq!(h.send(now, &of("o", IntentClass::Outbound)).status, DecisionStatus::Allowed);
    assert_eq!(h.send(now + 1, &of("t", IntentClass::Transactional)).status, DecisionStatus::Allowed);
    assert_eq!(h.send(now + 2, &of("r", IntentClass::Reply)).status, DecisionStatus::Allowed);
    // The fourth message of the day, even a reply, is over the mailbox's total.
    let d = h.send(now + 3, &of("r2", IntentClass::Reply));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "daily_cap_reached"));
    // Without replies = true, replies are counted apart and never capped.
    h.policy(now + 4, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = \"off\", \"mailbox.all.day\" = 3, \"mailbox.all.second\" = 1 }}"));
    assert_eq!(h.send(now + 5, &intent("r3", "bo@acme.com", "x@gmail.com", IntentClass::Reply)).status, DecisionStatus::Allowed);
    // One a second: the second within the same second comes back in the next one.
    let later = now + 10_000;
    assert_eq!(h.send(later, &intent("s1", "bo@acme.com", "s1@gmail.com", IntentClass::Transactional)).status, DecisionStatus::Allowed);
    let d = h.send(later + 10, &intent("s2", "bo@acme.com", "s2@gmail.com", IntentClass::Transactional));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "per_second_limit_exceeded"));
    assert_retry_after(d.retry_at_ms, later + 1_000, 1_000);
    assert_eq!(h.send(later + 1_000, &intent("s3", "bo@acme.com", "s3@gmail.com", IntentClass::Transactional)).status, DecisionStatus::Allowed);
}

#[test]
fn a_provider_preset_sets_its_quotas_and_a_documents_own_limits_win() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = \"off\", \"mailbox.transactional.day\" = \"off\" }}"));
    // A new Microsoft 365 mailbox: 30 a minute, about 200 in any 24 hours, replies included.
    h.policy(now, "mailbox:new@acme.com", "quota_preset = \"microsoft_365_new_mailbox\"\nlimits = { \"mailbox.all.rolling_24h\" = 40 }");
    let sent: Vec<Decision> = (0..35).map(|i| h.send(now + i, &intent(&format!("p{i}"), "new@acme.com", &to(i as usize), IntentClass::Transactional))).collect();
    assert_eq!(sent.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 30);
    assert_eq!(sent[30].reason, "minute_limit_exceeded");
    // The document's own rolling limit (40) replaced the preset's 200.
    let more: Vec<Decision> = (0..15).map(|i| h.send(now + 60_000 + i, &intent(&format!("q{i}"), "new@acme.com", &to(100 + i as usize), IntentClass::Reply))).collect();
    assert_eq!(more.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 10);
    assert_eq!(more[10].reason, "rolling_24h_limit_exceeded");
}

#[test]
fn a_new_mailbox_on_a_warmed_domain_ramps_on_its_own() {
    let mut h = H::new();
    let day1 = t(2026, 6, 1, 9, 0);
    h.policy(day1, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = 500, \"sender_domain.outbound.hour\" = 1000 }}\nmailbox_warmup = {{ preset = \"inbox\" }}"));
    let burst = |h: &mut H, at: i64, from: &str, tag: &str| -> Vec<Decision> { (0..60).map(|i| h.send_outbound(at + i as i64, &format!("{tag}{i}"), from, &to(i))).collect() };
    // A new inbox: 50 a day.
    let d = burst(&mut h, day1, "old@acme.com", "a");
    assert_eq!(d.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 50);
    let denied = d.iter().find(|d| d.status == DecisionStatus::Deferred).unwrap();
    assert_eq!(denied.reason, "warmup_limit");
    assert!(denied.usage.iter().any(|u| u.scope == "warmup:mailbox:old@acme.com" && u.limit == 50), "{:?}", denied.usage);
    // Three weeks on it sends 150 a day; a mailbox new that day starts at 50.
    let day22 = t(2026, 6, 22, 9, 0);
    let d = burst(&mut h, day22, "old@acme.com", "b");
    assert_eq!(d.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 60);
    let d = burst(&mut h, day22 + 1_000, "new@acme.com", "c");
    assert_eq!(d.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 50);
}

#[test]
fn a_smooth_limit_spreads_a_burst_evenly_over_its_window() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    // 30 a minute, smoothed: one every 2 s, up to 5 at once.
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = \"off\", \"mailbox.all.minute\" = {{ max = 30, smooth = true, burst = 5 }} }}"));
    let send = |h: &mut H, at: i64, id: &str| h.send(at, &intent(id, "ana@acme.com", &format!("{id}@gmail.com"), IntentClass::Transactional));
    let burst: Vec<Decision> = (0..10).map(|i| send(&mut h, now + i, &format!("b{i}"))).collect();
    assert_eq!(burst.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 5);
    let d = &burst[5];
    assert_eq!(d.reason, "minute_limit_exceeded");
    // Back when the next slot opens: 2 s after the burst's epoch (spread over a quarter of the interval).
    assert_retry_after(d.retry_at_ms, now + 2_000, 2_000);
    let u = d.usage.iter().find(|u| u.window == "minute~smooth").unwrap();
    assert_eq!((u.used, u.limit), (5, 5));
    // Then one every 2 s goes through, and a calendar minute holds no more than the rate allows.
    let steady: Vec<Decision> = (0..30).map(|i| send(&mut h, now + 2_000 + i * 2_000, &format!("s{i}"))).collect();
    assert!(steady.iter().all(|d| d.status == DecisionStatus::Allowed), "{:?}", steady.iter().map(|d| &d.reason).collect::<Vec<_>>());
    let too_soon = send(&mut h, now + 2_000 + 29 * 2_000 + 10, "soon");
    assert_eq!(too_soon.status, DecisionStatus::Deferred);
    // An idle spell refills the burst, no more.
    let later: Vec<Decision> = (0..8).map(|i| send(&mut h, now + 600_000 + i, &format!("l{i}"))).collect();
    assert_eq!(later.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 5);
}

#[test]
fn engagement_holds_a_warm_up_step_or_allows_the_next_one_early() {
    let day1 = t(2026, 6, 1, 9, 0);
    let policy = "business_hours = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = 1000 }\nwarmup = { steps = [{ until_day = 3, day = 20 }, { until_day = 7, day = 40 }, { until_day = 14, day = 80 }] }\nsignals = { engagement = { hold_below = 0.05, advance_above = 0.3, min_sends = 20 } }";
    let run = |h: &mut H, at: i64, tag: &str, n: usize| -> usize { (0..n).filter(|i| h.send_outbound(at + *i as i64, &format!("{tag}{i}"), &format!("m{}@new.example", i % 4), &to(*i + 1000 * tag.len())).status == DecisionStatus::Allowed).count() };
    let opened = |i: usize| event(&format!("m{}@new.example", i % 4), &to(i), DeliveryKind::Opened, None);
    // Engaged: 10 opens of the first day's 20 sends (50%): on day 2 the domain takes day 4's step (40).
    let mut h = H { d: crate::stage::driver::Driver::new(3, SenderConfig::default()).with_engagement_events().with_trace(), ..H::new() };
    h.policy(day1, "default", policy);
    assert_eq!(run(&mut h, day1, "a", 30), 20);
    for i in 0..10 {
        h.deliver(day1 + 3_600_000 + i as i64, &opened(i));
    }
    assert!(h.d.refused.is_empty(), "{:?}", h.d.refused.iter().map(|r| &r.reason).collect::<Vec<_>>());
    // (The day's own sends do not dilute the rate: the last 24 hours' are too recent to count.)
    let n = run(&mut h, day1 + 86_400_000, "bb", 50);
    let notes: Vec<String> = h.d.traces.iter().rev().filter(|t| t.check == "engagement").map(|t| t.detail.clone()).take(1).collect();
    assert_eq!(n, 40, "{notes:?}");
    assert_eq!(notes, vec!["sender_domain:new.example: 50.0% engaged over 7 days"]);
    // Disengaged: no opens at all; on day 4 the domain stays at day 1's step (20).
    let mut h = H { d: crate::stage::driver::Driver::new(3, SenderConfig::default()).with_engagement_events(), ..H::new() };
    h.policy(day1, "default", policy);
    assert_eq!(run(&mut h, day1, "a", 20), 20);
    assert_eq!(run(&mut h, day1 + 3 * 86_400_000, "bb", 50), 20);
    // With the events not routed (the processor's default), the opens never arrive: held alike.
    let mut h = H::new();
    h.policy(day1, "default", policy);
    assert_eq!(run(&mut h, day1, "a", 20), 20);
    for i in 0..10 {
        h.deliver(day1 + 3_600_000 + i as i64, &opened(i));
    }
    assert_eq!(run(&mut h, day1 + 86_400_000, "bb", 50), 20);
}

#[test]
fn the_sender_stage_keeps_its_reservation_with_the_intent_in_flight_and_the_hop_carries_none_of_it() {
    use crate::stage::driver::partition_for;
    use crate::stage::keys;
    use crate::state::StateValue;
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let i = intent("k1", "ana@acme.com", "x@corp.example", IntentClass::Outbound);
    h.d.intent(&i, now + 1);
    let p = partition_for("acme.com", 3);
    while h.d.step(StageKind::Sender, p) {}
    h.d.commit(StageKind::Sender);
    // The hop names the sender stage, for the outcome, with nothing to undo.
    let hops = h.d.unread_records(StageKind::Recipient);
    let Some(Payload::Hop(hop)) = hops.first().map(|e| &e.payload) else { panic!("the intent went on to the recipient stage: {hops:?}") };
    assert_eq!(hop.reservations.len(), 1);
    assert_eq!((hop.reservations[0].stage.as_str(), hop.reservations[0].key.as_str()), ("sender", "acme.com"));
    assert!(hop.reservations[0].undo.is_empty(), "{hop:?}");
    // The sender stage keeps what it reserved: every counter it moved.
    let Some(StateValue::InFlight { intent: bytes, undo }) = h.d.state(StageKind::Sender, p, &keys::intent_state("acme", "k1")) else { panic!("the intent is in flight at the sender stage") };
    assert_eq!(crate::stage::pipeline::decode_intent("k1", &bytes).unwrap(), i);
    let moved: Vec<String> = h.d.counters(StageKind::Sender).into_iter().filter(|(_, c)| c.pending == 1).map(|(k, _)| k).collect();
    let mut kept: Vec<String> = undo.iter().map(|u| u.key.clone()).collect();
    kept.sort();
    assert!(!kept.is_empty());
    assert_eq!(kept, moved);
    // The outcome's release settles it: counted, nothing in flight, and the
    // key holds the final decision.
    h.d.run();
    assert_eq!(h.d.decisions.last().map(|d| d.status), Some(DecisionStatus::Allowed));
    assert!(h.d.counters(StageKind::Sender).iter().all(|(_, c)| c.pending == 0));
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), 1);
    assert!(matches!(h.d.state(StageKind::Sender, p, &keys::intent_state("acme", "k1")), Some(StateValue::FinalDecision(_))));
}

#[test]
fn a_release_of_an_earlier_build_that_carries_the_sender_stages_undo_still_settles_it() {
    use crate::stage::keys;
    use crate::stage::pipeline;
    use crate::state::StateValue;
    // An earlier build kept the bare intent in flight and sent its undo along.
    for status in [DecisionStatus::Allowed, DecisionStatus::Deferred] {
        let mut h = H::new();
        let now = t(2026, 6, 3, 10, 0);
        h.policy(now, "default", QUIET);
        let i = intent("k1", "ana@acme.com", "x@corp.example", IntentClass::Outbound);
        h.d.intent(&i, now + 1);
        let p = crate::stage::driver::partition_for("acme.com", 3);
        while h.d.step(StageKind::Sender, p) {}
        h.d.commit(StageKind::Sender);
        let Some(StateValue::InFlight { intent: bytes, undo }) = h.d.state(StageKind::Sender, p, &keys::intent_state("acme", "k1")) else { panic!("in flight") };
        h.d.put_state(StageKind::Sender, p, &keys::intent_state("acme", "k1"), StateValue::Intent(bytes));
        // Its outcome, as a later stage of that build sent it back.
        let d = pipeline::new_decision(&i, now + 1, &SourceRef { topic: "intents".into(), partition: 0, offset: 0 }, StageKind::Recipient, status, "ok", None, Vec::new(), 1);
        let release = Release { intent_id: "k1".into(), undo, outcome: Some(d) };
        h.d.inject(StageKind::Sender, "acme.com", StageEnvelope::new(now + 1, SourceRef { topic: "intents".into(), partition: 0, offset: 0 }, Payload::Release(release)));
        while h.d.step(StageKind::Sender, p) {}
        h.d.commit(StageKind::Sender);
        assert!(h.d.counters(StageKind::Sender).iter().all(|(_, c)| c.pending == 0), "{status:?}");
        assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), i64::from(status == DecisionStatus::Allowed), "{status:?}");
        // No longer in flight: an allowed intent's decision is kept for its
        // id, a deferred one may come again.
        let kept = h.d.state(StageKind::Sender, p, &keys::intent_state("acme", "k1"));
        match status {
            DecisionStatus::Allowed => assert!(matches!(kept, Some(StateValue::FinalDecision(_))), "{kept:?}"),
            _ => assert_eq!(kept, None),
        }
    }
}

/// The records one allowed intent costs between the stages, encoded: each
/// hop and the release back carry the intent, the usage so far and what the
/// later stages reserved, never the sender stage's counters (it keeps them
/// with the intent in flight). Printed with `--nocapture` (docs/benchmarks.md);
/// held under the sizes of the layout before, when hops carried them.
#[test]
fn one_allowed_intents_records_carry_no_sender_stage_reservation() {
    use crate::codec::{encode, RecordType};
    use crate::stage::driver::partition_for;
    use crate::stage::keys;
    let mut h = H::new();
    let now = t(2026, 12, 1, 10, 0);
    // The benchmark policy's guards, on a recipient domain with its own windows.
    h.policy(now, "default", &format!("{QUIET}\nrecipients = {{ cooldown_minutes = 0, dedupe_hours = 0 }}\nlimits = {{ \"recipient.outbound.day\" = 2, \"recipient.transactional.day\" = 2 }}\nreconcile = {{ enabled = false }}"));
    let i = SendIntent { requested_at_ms: 1, ..intent("abc-123-456-789-0001", "ana.smith@acme-corp.com", "bob.jones@example.org", IntentClass::Outbound) };
    h.d.intent(&i, now + 60_000);
    let mut sizes = Vec::new();
    let p = partition_for("acme-corp.com", 3);
    for (from, to) in [(StageKind::Sender, StageKind::Recipient), (StageKind::Recipient, StageKind::RecipientDomain), (StageKind::RecipientDomain, StageKind::Sender)] {
        for part in 0..3 {
            while h.d.step(from, part) {}
        }
        h.d.commit(from);
        let records = h.d.unread_records(to);
        assert_eq!(records.len(), 1, "{from:?} -> {to:?}: {records:?}");
        sizes.push((to, encode(RecordType::StageEnvelope, &records[0]).unwrap().len()));
    }
    let Some(in_flight) = h.d.state(StageKind::Sender, p, &keys::intent_state("acme", &i.intent_id)) else { panic!("in flight") };
    let state = in_flight.encode().len();
    let alone = crate::state::StateValue::Intent(crate::stage::pipeline::encode_intent(&i)).encode().len();
    eprintln!("hop to the recipient stage {} bytes, to the recipient-domain stage {} bytes, release to the sender stage {} bytes; the intent in flight {state} bytes (the intent alone: {alone})", sizes[0].1, sizes[1].1, sizes[2].1);
    h.d.run();
    assert_eq!(h.d.decisions.last().map(|d| d.status), Some(DecisionStatus::Allowed));
    // The layout before: 564, 690 and 694 bytes.
    for ((stage, size), before) in sizes.iter().zip([564, 690, 694]) {
        assert!(*size + 150 < before, "{stage:?}: {size} bytes");
    }
}

#[test]
fn an_intent_parked_across_the_hours_end_is_judged_in_the_new_hour() {
    // ana's hour holds one send. The first intent takes it at 10:59:59 and
    // is in flight; the second, half a second later, waits for its outcome
    // (the window is full only with a reservation that may yet be undone).
    // An intent from cy, same sender domain, moves the partition's clock
    // past 11:00 before that outcome comes back. The sender stage judges
    // the waiting intent at its clock, not at the intent's own log time:
    // the old hour is over, ana's new hour is empty, and it is allowed
    // there (a recount by each intent's own log time would defer it).
    let mut h = H::new();
    let eleven = t(2026, 6, 3, 11, 0);
    h.policy(eleven - HOUR, "default", &format!("{QUIET}\nrecipients = {{ cooldown_minutes = 0, dedupe_hours = 0 }}\nlimits = {{ \"mailbox.outbound.hour\" = 1, \"recipient.outbound.day\" = \"off\" }}"));
    h.d.intent(&intent("first", "ana@acme.com", "a@x.example", IntentClass::Outbound), eleven - 1_000);
    h.d.intent(&intent("second", "ana@acme.com", "b@x.example", IntentClass::Outbound), eleven - 500);
    h.d.intent(&intent("third", "cy@acme.com", "c@x.example", IntentClass::Outbound), eleven + 100);
    // Every intent reaches the sender stage before any outcome comes back.
    h.d.run();
    let decided = |id: &str| h.d.decisions.iter().find(|d| d.intent_id == id).cloned().unwrap();
    assert_eq!(decided("first").status, DecisionStatus::Allowed);
    let second = decided("second");
    assert_eq!((second.status, second.reason.as_str()), (DecisionStatus::Allowed, "ok"), "{second:?}");
    assert!(second.decided_at_ms >= eleven, "judged at the partition's clock, past the hour's end: {second:?}");
    let hour = second.usage.iter().find(|u| u.scope == "mailbox:ana@acme.com" && u.window == "hour").unwrap();
    assert_eq!((hour.used, hour.limit), (1, 1), "the first of ana's new hour");
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/hour"), 1, "the new hour's counter holds the second alone");
}
