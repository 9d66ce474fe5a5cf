//! Reconciliation: delivery events joined with decisions; unapproved sends.

use super::*;

fn to(i: usize) -> String {
    format!("p{i}@corp.example")
}

/// A DELIVERED event for intent `id`.
fn delivered(id: &str, sender: &str, recipient: &str) -> DeliveryEvent {
    DeliveryEvent { event_id: format!("ev-{id}-{recipient}"), intent_id: Some(id.into()), ..event(sender, recipient, DeliveryKind::Delivered, Some(250)) }
}

fn unapproved(h: &mut H) -> Vec<Alert> {
    h.new_alerts().into_iter().filter(|a| a.kind == "unapproved_send").collect()
}

/// Two sends an hour per mailbox: the third intent is DEFERRED.
const TWO_AN_HOUR: &str = "limits = { \"mailbox.outbound.hour\" = 2, \"mailbox.outbound.day\" = \"off\" }";

#[test]
fn a_send_for_an_allowed_intent_is_approved_and_one_for_a_deferred_intent_is_not_whichever_comes_first() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\n{TWO_AN_HOUR}"));
    // The decision first, then the event.
    let a = h.send_outbound(now, "a", "ana@acme.com", &to(1));
    assert_eq!(a.status, DecisionStatus::Allowed);
    h.deliver(now + 10, &delivered("a", "ana@acme.com", &to(1)));
    assert!(unapproved(&mut h).is_empty());
    // The event first (an app that did not wait), then an ALLOWED decision.
    h.deliver(now + 20, &delivered("b", "ana@acme.com", &to(2)));
    let b = h.send_outbound(now + 21, "b", "ana@acme.com", &to(2));
    assert_eq!(b.status, DecisionStatus::Allowed);
    assert!(unapproved(&mut h).is_empty(), "an event that came before its ALLOWED decision is no alarm");
    // DEFERRED, then the event.
    let c = h.send_outbound(now + 30, "c", "ana@acme.com", &to(3));
    assert_eq!(c.status, DecisionStatus::Deferred);
    h.deliver(now + 40, &delivered("c", "ana@acme.com", &to(3)));
    let alerts = unapproved(&mut h);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].details.get("reason").map(String::as_str), Some("sent_while_deferred"));
    assert_eq!((alerts[0].tenant.as_str(), alerts[0].scope.as_str()), ("acme", "mailbox:ana@acme.com"));
    assert!(alerts[0].message.contains("DEFERRED hourly_limit_exceeded"), "{}", alerts[0].message);
    // The event first, then DEFERRED: unapproved when the decision comes.
    h.deliver(now + 50, &delivered("d", "ana@acme.com", &to(4)));
    assert!(unapproved(&mut h).is_empty(), "waiting for the decision");
    let d = h.send_outbound(now + 51, "d", "ana@acme.com", &to(4));
    assert_eq!(d.status, DecisionStatus::Deferred);
    let alerts = unapproved(&mut h);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].details.get("reason").map(String::as_str), Some("sent_while_deferred"));
    assert_eq!(alerts[0].details.get("mailbox_today").map(String::as_str), Some("2"));
    // One alert per intent: its bounce after the delivery adds none.
    h.deliver(now + 60, &DeliveryEvent { event_id: "ev-c-bounce".into(), intent_id: Some("c".into()), ..event("ana@acme.com", &to(3), DeliveryKind::BounceSoft, Some(452)) });
    assert!(unapproved(&mut h).is_empty());
}

#[test]
fn an_event_for_an_intent_never_seen_waits_its_time_then_counts_as_unapproved() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nreconcile = {{ wait_seconds = 120 }}"));
    h.deliver(now, &delivered("ghost", "ana@acme.com", &to(1)));
    // Log time moves on (any record of the partition): within the wait, nothing.
    h.send_outbound(now + 60_000, "x", "ana@acme.com", &to(2));
    assert!(unapproved(&mut h).is_empty());
    h.send_outbound(now + 121_000, "y", "ana@acme.com", &to(3));
    let alerts = unapproved(&mut h);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].details.get("reason").map(String::as_str), Some("no_decision"));
    assert_eq!(alerts[0].details.get("intent_id").map(String::as_str), Some("ghost"));
}

#[test]
fn another_recipient_or_a_send_after_a_pause_is_unapproved_and_the_policy_can_pause_the_mailbox() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nreconcile = {{ pause_mailbox_after = 2 }}"));
    h.send_outbound(now, "a", "ana@acme.com", &to(1));
    h.deliver(now + 1, &delivered("a", "ana@acme.com", "someone-else@corp.example"));
    let alerts = unapproved(&mut h);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].details.get("reason").map(String::as_str), Some("recipient_not_allowed"));
    // Allowed, then the mailbox paused, then sent (by the pipeline's clock).
    h.send_outbound(now + 2, "b", "ana@acme.com", &to(2));
    h.command(now + 3, &command(CommandKind::Pause, "mailbox:ana@acme.com"));
    h.deliver(now + 10, &DeliveryEvent { occurred_at_ms: now + 5, ..delivered("b", "ana@acme.com", &to(2)) });
    let alerts = unapproved(&mut h);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].details.get("reason").map(String::as_str), Some("sent_after_pause"));
    // The second unapproved send of the day pauses the mailbox by policy.
    h.command(now + 11, &command(CommandKind::Resume, "mailbox:ana@acme.com"));
    let paused: Vec<Alert> = h.new_alerts().into_iter().filter(|a| a.kind == "sender_paused").collect();
    assert!(paused.is_empty(), "{paused:?}");
    h.deliver(now + 12, &delivered("z", "ana@acme.com", &to(9)));
    h.send_outbound(now + 400_000, "c", "ana@acme.com", &to(3));
    let all = h.new_alerts();
    assert!(all.iter().any(|a| a.kind == "unapproved_send" && a.details.get("mailbox_today").map(String::as_str) == Some("3")), "{all:?}");
    assert!(all.iter().any(|a| a.kind == "sender_paused" && a.details.get("reason").map(String::as_str) == Some("unapproved_sends")), "{all:?}");
    let d = h.send_outbound(now + 400_001, "e", "ana@acme.com", &to(4));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "mailbox_paused"));
}

#[test]
fn events_without_an_intent_id_are_checked_only_when_the_policy_requires_one_and_reconcile_can_be_off() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "tenant:acme", &format!("{QUIET}\nreconcile = {{ require_intent_id = true }}"));
    h.deliver(now, &event("ana@acme.com", &to(1), DeliveryKind::Delivered, Some(250)));
    let alerts = unapproved(&mut h);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].details.get("reason").map(String::as_str), Some("no_intent_id"));
    h.policy(now, "tenant:acme", &format!("{QUIET}\nreconcile = {{ enabled = false }}"));
    h.deliver(now + 1, &delivered("never", "bo@acme.com", &to(2)));
    h.send_outbound(now + 3_600_000, "later", "bo@acme.com", &to(3));
    assert!(unapproved(&mut h).is_empty());
}
