//! Recipient and recipient-domain guards: runaway loops, per-recipient caps,
//! suppression, lists, recipient-domain limits, provider groups, and that a
//! denial in a later stage releases every earlier reservation exactly.

use super::*;
use crate::stage::StageKind;

/// Sender limits out of the way, so the recipient side is what binds.
const HIGH_SENDER: &str = "business_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"mailbox.outbound.hour\" = 10000, \"mailbox.outbound.day\" = 10000, \"sender_domain.outbound.hour\" = 10000, \"sender_domain.outbound.day\" = 10000 }";

#[test]
fn a_runaway_loop_to_one_recipient_gets_one_send() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH_SENDER);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..200 {
        let mut it = intent(&format!("loop{i}"), "agent@acme.com", "lead@corp.example", IntentClass::Outbound);
        it.template_id = Some("follow-up".into());
        it.content_hash = Some("h-1".into());
        // 200 within a minute.
        let d = h.send(now + i * 250, &it);
        *statuses.entry((d.status, d.reason.clone())).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&(DecisionStatus::Allowed, "ok".to_string())), Some(&1), "{statuses:?}");
    let rest: i32 = statuses.iter().filter(|((s, r), _)| (*s == DecisionStatus::Deferred && r == "recipient_cooldown") || (*s == DecisionStatus::Blocked && r == "duplicate_content")).map(|(_, n)| *n).sum();
    assert_eq!(rest, 199, "{statuses:?}");
    // Nothing leaked: every stage counts the one send.
    assert_eq!(h.counted(StageKind::Sender, "mailbox:agent@acme.com/outbound/day"), 1);
    assert_eq!(h.counted(StageKind::Recipient, "lead@corp.example"), 1);
}

#[test]
fn cooldown_per_template_and_content_dedupe_per_window() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH_SENDER);
    let mk = |id: &str, template: &str, hash: &str| {
        let mut i = intent(id, "agent@acme.com", "lead@corp.example", IntentClass::Outbound);
        i.template_id = Some(template.into());
        i.content_hash = Some(hash.into());
        i
    };
    assert_eq!(h.send(now, &mk("c1", "t1", "x")).status, DecisionStatus::Allowed);
    let d = h.send(now + 60_000, &mk("c2", "t1", "y"));
    assert_eq!((d.status, d.reason.as_str(), d.retry_at_ms), (DecisionStatus::Deferred, "recipient_cooldown", Some(now + 600_000)));
    // Another template is not cooling down.
    assert_eq!(h.send(now + 61_000, &mk("c3", "t2", "z")).status, DecisionStatus::Allowed);
    // After 10 minutes the template may go again, but not the same content.
    let d = h.send(now + 700_000, &mk("c4", "t1", "x"));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Blocked, "duplicate_content"));
    assert_eq!(h.send(now + 701_000, &mk("c5", "t1", "w")).status, DecisionStatus::Allowed);
    // 24 hours on, the content may be sent again.
    assert_eq!(h.send(now + 86_400_000 + 1, &mk("c6", "t1", "x")).status, DecisionStatus::Allowed);
}

#[test]
fn per_recipient_daily_cap() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH_SENDER);
    let d: Vec<Decision> = (0..12).map(|i| h.send_outbound(now + i, &format!("p{i}"), &format!("s{i}@acme.com"), "lead@corp.example")).collect();
    assert_eq!(d.iter().filter(|d| d.status == DecisionStatus::Allowed).count(), 10);
    assert_eq!((d[10].reason.as_str(), d[10].stage.as_deref()), ("daily_cap_reached", Some("recipient")));
    assert_retry_after(d[10].retry_at_ms, t(2026, 6, 4, 0, 0), 24 * HOUR);
}

#[test]
fn a_corporate_domain_gets_50_per_hour_and_no_reservation_leaks() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH_SENDER);
    let mut allowed = 0;
    for i in 0..300 {
        let d = h.send_outbound(now + i, &format!("c{i}"), "agent@acme.com", &format!("person{i}@bigcorp.example"));
        if d.status == DecisionStatus::Allowed {
            allowed += 1;
        } else {
            assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "hourly_limit_exceeded"));
            assert_retry_after(d.retry_at_ms, t(2026, 6, 3, 11, 0), HOUR);
            // The sender's usage reads without this intent's released reservation.
            let u = d.usage.iter().find(|u| u.scope == "mailbox:agent@acme.com" && u.window == "day").unwrap();
            assert_eq!(u.used, 50);
        }
    }
    assert_eq!(allowed, 50);
    assert_eq!(h.counted(StageKind::Sender, "mailbox:agent@acme.com/outbound/day"), 50);
    assert_eq!(h.counted(StageKind::Sender, "sender_domain:acme.com/outbound/hour"), 50);
    assert_eq!(h.counted(StageKind::Recipient, "bigcorp.example/outbound/day"), 50);
    assert_eq!(h.counted(StageKind::RecipientDomain, "bigcorp.example"), 50);
}

#[test]
fn public_providers_are_excluded_and_provider_groups_share_a_limit() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH_SENDER);
    let n = (0..80).filter(|i| h.send_outbound(now + i, &format!("g{i}"), "agent@acme.com", &format!("p{i}@gmail.com")).status == DecisionStatus::Allowed).count();
    assert_eq!(n, 80, "gmail.com is public: no per-domain limit");
    // A company's own grouping: its two domains share one budget.
    h.policy(now + 100, "tenant:acme", "exclude_public_domains = false\nproviders = { corp = [\"corp-a.example\", \"corp-b.example\"] }\nlimits = { \"recipient_domain.outbound.hour\" = 10 }");
    let n = (0..20).filter(|i| h.send_outbound(now + 200 + i, &format!("x{i}"), "agent@acme.com", &format!("p{i}@corp-{}.example", if i % 2 == 0 { "a" } else { "b" })).status == DecisionStatus::Allowed).count();
    assert_eq!(n, 10);
    assert_eq!(h.counted(StageKind::RecipientDomain, "provider:corp"), 10);
}

#[test]
fn tenant_wide_recipient_domain_limits_span_sender_domains() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(
        now,
        "default",
        "business_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\", \"recipient_domain.outbound.hour\" = \"off\", \"tenant_recipient_domain.outbound.hour\" = 5 }",
    );
    let n = (0..10).filter(|i| h.send_outbound(now + i, &format!("y{i}"), &format!("a@d{}.example", i % 3), &format!("p{i}@corp.example")).status == DecisionStatus::Allowed).count();
    assert_eq!(n, 5);
}

#[test]
fn suppression_blocks_a_recipient_after_a_hard_bounce_a_complaint_or_an_unsubscribe() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH_SENDER);
    assert_eq!(h.send_outbound(now, "s1", "ana@acme.com", "gone@corp.example").status, DecisionStatus::Allowed);
    h.deliver(now + 10, &event("ana@acme.com", "Gone@Corp.example", DeliveryKind::BounceHard, Some(550)));
    let d = h.send_outbound(now + 20, "s2", "bo@acme.com", "gone@corp.example");
    assert_eq!((d.status, d.reason.as_str(), d.stage.as_deref()), (DecisionStatus::Blocked, "recipient_suppressed", Some("recipient")));
    // Per tenant: another tenant may still write.
    let mut other = intent("s3", "ana@acme.com", "gone@corp.example", IntentClass::Outbound);
    other.tenant = "globex".into();
    assert_eq!(h.send(now + 30, &other).status, DecisionStatus::Allowed);
    // An unsubscribe stops cold outbound, not transactional mail.
    h.deliver(now + 40, &event("ana@acme.com", "unsub@corp.example", DeliveryKind::Unsubscribe, None));
    assert_eq!(h.send_outbound(now + 50, "s4", "ana@acme.com", "unsub@corp.example").reason, "recipient_suppressed");
    assert_eq!(h.send(now + 60, &intent("s5", "ana@acme.com", "unsub@corp.example", IntentClass::Transactional)).status, DecisionStatus::Allowed);
    h.deliver(now + 70, &event("ana@acme.com", "angry@corp.example", DeliveryKind::Complaint, None));
    assert_eq!(h.send(now + 80, &intent("s6", "ana@acme.com", "angry@corp.example", IntentClass::Transactional)).reason, "recipient_suppressed");
    // An operator can lift a suppression.
    let mut lift = command(CommandKind::RemoveListEntry, "gone@corp.example");
    lift.list = Some("suppression".into());
    h.command(now + 90, &lift);
    assert_eq!(h.send_outbound(now + 100, "s7", "ana@acme.com", "gone@corp.example").status, DecisionStatus::Allowed);
}

#[test]
fn allow_and_block_lists_of_addresses_domains_and_tlds() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", HIGH_SENDER);
    let list = |kind: CommandKind, list: &str, target: &str| {
        let mut c = command(kind, target);
        c.list = Some(list.into());
        c
    };
    h.command(now, &list(CommandKind::AddListEntry, "block", ".zip"));
    h.command(now, &list(CommandKind::AddListEntry, "block", "competitor.example"));
    h.command(now, &list(CommandKind::AddListEntry, "allow", "partner@competitor.example"));
    let d = h.send_outbound(now + 1, "l1", "ana@acme.com", "x@files.zip");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Blocked, "blocked_by_list"));
    assert_eq!(h.send_outbound(now + 2, "l2", "ana@acme.com", "ceo@sales.competitor.example").reason, "blocked_by_list", "subdomains too");
    assert_eq!(h.send_outbound(now + 3, "l3", "ana@acme.com", "partner@competitor.example").status, DecisionStatus::Allowed, "the address is more specific");
    h.command(now + 4, &list(CommandKind::RemoveListEntry, "block", ".zip"));
    assert_eq!(h.send_outbound(now + 5, "l4", "ana@acme.com", "x@files.zip").status, DecisionStatus::Allowed);
    // Allow-list-only mode: a sandbox for a new agent.
    h.policy(now + 6, "tenant:acme", "recipients = { allow_list_only = true }");
    assert_eq!(h.send_outbound(now + 7, "l5", "ana@acme.com", "new@lead.example").reason, "not_on_allow_list");
    assert_eq!(h.send_outbound(now + 8, "l6", "ana@acme.com", "partner@competitor.example").status, DecisionStatus::Allowed);
    // A bad list entry never reaches a stage.
    h.d.command(&list(CommandKind::AddListEntry, "block", "not a domain"), now + 9);
    assert!(h.d.refused.iter().any(|r| r.stage == "ingress"));
}

#[test]
fn a_burst_denied_downstream_does_not_spend_the_senders_windows() {
    // All intents reach the sender stage before any outcome comes back.
    // Those a window is full for only because of intents still in flight
    // wait for their outcomes instead of being deferred.
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", "business_hours = \"off\"\nlimits = { \"mailbox.outbound.hour\" = \"off\" }");
    // A retry loop from a new domain (warm-up: 20 an hour).
    for i in 0..50 {
        let mut it = intent(&format!("r{i}"), "assistant@new.example", "cfo@prospect.example", IntentClass::Outbound);
        it.content_hash = Some("follow-up-v1".into());
        h.d.intent(&it, now + i);
    }
    // A list to one corporate domain (50 an hour) from a warmed domain with 60 an hour.
    h.policy(now, "sender_domain:warm.example", "warmup = \"off\"\nlimits = { \"sender_domain.outbound.hour\" = 60 }\nalerts = { quota_windows = [\"hour\"] }");
    for i in 0..100 {
        h.d.intent(&intent(&format!("c{i}"), &format!("m{}@warm.example", i % 7), &format!("p{i}@bigcorp.example"), IntentClass::Outbound), now + 100 + i);
    }
    h.d.run();
    let count = |prefix: &str, status: DecisionStatus, reason: &str| h.d.decisions.iter().filter(|d| d.intent_id.starts_with(prefix) && d.status == status && d.reason == reason).count();
    assert_eq!(count("r", DecisionStatus::Allowed, "ok"), 1);
    assert_eq!(count("r", DecisionStatus::Blocked, "duplicate_content"), 49, "{:?}", h.d.decisions.iter().filter(|d| d.intent_id.starts_with('r')).map(|d| &d.reason).collect::<Vec<_>>());
    assert_eq!(count("c", DecisionStatus::Allowed, "ok"), 50);
    let by_domain = h.d.decisions.iter().filter(|d| d.intent_id.starts_with('c') && d.stage.as_deref() == Some("recipient_domain") && d.status == DecisionStatus::Deferred).count();
    assert_eq!(by_domain, 50, "every deferral names the recipient domain's limit, none the sender's");
    assert_eq!(h.counted(StageKind::Sender, "sender_domain:warm.example/outbound/hour"), 50);
    // Quota alerts count confirmed sends, not reservations later released.
    assert!(!h.d.alerts.iter().any(|a| a.scope.contains("new.example")), "one send is no quota alert");
    let warm: Vec<&str> = h.d.alerts.iter().filter(|a| a.scope == "sender_domain:warm.example").map(|a| a.kind.as_str()).collect();
    assert_eq!(warm, vec!["quota_80"], "50 of 60 confirmed");
}

#[test]
fn an_intent_waiting_for_outcomes_is_not_overtaken_at_its_recipient_by_a_later_one() {
    // The first intent fills its mailbox's hour and is then blocked at the
    // recipient stage; the second, from the same mailbox, waits for that
    // outcome; the third, from another mailbox to the same recipient as
    // the second, has room at the sender. Decided one at a time, the second
    // takes the recipient's one send of the day and the third waits for
    // tomorrow: the third must not overtake the second at the recipient.
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = 1, \"recipient.outbound.day\" = 1 }}"));
    h.d.delivery(&event("ana@acme.com", "gone@x.example", DeliveryKind::Unsubscribe, None), now);
    h.d.run();
    // All three reach the sender stage before any outcome comes back.
    h.d.intent(&intent("first", "ana@acme.com", "gone@x.example", IntentClass::Outbound), now + 1);
    h.d.intent(&intent("second", "ana@acme.com", "bo@y.example", IntentClass::Outbound), now + 2);
    h.d.intent(&intent("third", "cy@acme.com", "bo@y.example", IntentClass::Outbound), now + 3);
    h.d.run();
    let decided = |id: &str| h.d.decisions.iter().find(|d| d.intent_id == id).map(|d| (d.status, d.reason.clone())).unwrap();
    assert_eq!(decided("first"), (DecisionStatus::Blocked, "recipient_suppressed".into()));
    assert_eq!(decided("second"), (DecisionStatus::Allowed, "ok".into()));
    assert_eq!(decided("third"), (DecisionStatus::Deferred, "daily_cap_reached".into()));
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/hour"), 1);
}

#[test]
fn an_intent_waits_behind_one_to_its_recipient_only_where_the_recipient_stage_judges_by_order() {
    // The first intent fills ana's hour and is in flight; the second, from
    // ana to bo, waits for its outcome; the third, from cy to bo, has room.
    // With a per-recipient cap (or cooldown, dedupe, a recipient ladder) the
    // third waits behind the second; with none of them, nothing at the
    // recipient depends on their order and the third is decided at once.
    for (recipient_rules, waits) in [("\"recipient.outbound.day\" = 5", true), ("\"recipient.outbound.day\" = \"off\"", false)] {
        let mut h = H::new();
        let now = t(2026, 6, 3, 10, 0);
        h.policy(now, "default", &format!("{QUIET}\nrecipients = {{ cooldown_minutes = 0, dedupe_hours = 0 }}\nlimits = {{ \"mailbox.outbound.hour\" = 1, {recipient_rules} }}"));
        h.d.intent(&intent("first", "ana@acme.com", "al@x.example", IntentClass::Outbound), now + 1);
        h.d.intent(&intent("second", "ana@acme.com", "bo@y.example", IntentClass::Outbound), now + 2);
        h.d.intent(&intent("third", "cy@acme.com", "bo@y.example", IntentClass::Outbound), now + 3);
        h.d.run();
        let order: Vec<&str> = h.d.decisions.iter().map(|d| d.intent_id.as_str()).collect();
        let third_before_second = order.iter().position(|i| *i == "third") < order.iter().position(|i| *i == "second");
        assert_eq!(third_before_second, !waits, "{recipient_rules}: decided in the order {order:?}");
        assert!(h.d.decisions.iter().all(|d| d.intent_id == "second" || d.status == DecisionStatus::Allowed), "{:?}", h.d.decisions);
    }
}
