//! Candidate policies in shadow: decided beside the enforced policy, in
//! their own state, paired with the enforced decisions.

use super::*;
use crate::stage::StageKind;

fn to(i: usize) -> String {
    format!("p{i}@corp.example")
}

const ENFORCED: &str = "limits = { \"mailbox.outbound.hour\" = 10, \"mailbox.outbound.day\" = \"off\" }";
const STRICTER: &str = "business_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"mailbox.outbound.hour\" = 3, \"mailbox.outbound.day\" = \"off\" }";

#[test]
fn a_stricter_candidate_defers_in_shadow_only_and_each_pair_names_the_check() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    h.policy(now, "tenant:acme", &format!("{QUIET}\n{ENFORCED}"));
    h.d.shadow_policy("tenant:acme", Some(STRICTER), now);
    h.d.run();
    let decisions: Vec<Decision> = (0..6).map(|i| h.send_outbound(now + i as i64, &format!("s{i}"), "ana@acme.com", &to(i))).collect();
    assert!(decisions.iter().all(|d| d.status == DecisionStatus::Allowed), "the enforced policy allows 10 an hour: {decisions:?}");
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/hour"), 6, "the candidate reserved nothing in the enforced counters");
    let pairs = &h.d.shadow;
    assert_eq!(pairs.len(), 6, "one pair per intent: {pairs:?}");
    for (i, p) in pairs.iter().enumerate() {
        assert_eq!((p.shadow_scope.as_str(), p.enforced.status), ("tenant:acme", DecisionStatus::Allowed));
        assert_eq!(p.enforced, decisions[i], "the enforced half is the decision on the decisions topic");
        if i < 3 {
            assert!(!p.differs && p.check.is_empty() && p.candidate.status == DecisionStatus::Allowed, "{p:?}");
        } else {
            assert!(p.differs, "{p:?}");
            assert_eq!((p.candidate.status, p.candidate.reason.as_str()), (DecisionStatus::Deferred, "hourly_limit_exceeded"));
            assert_eq!(p.check, "sender: DEFERRED hourly_limit_exceeded");
            assert!(p.candidate.usage.iter().any(|u| u.scope == "mailbox:ana@acme.com" && u.limit == 3), "the candidate's own counters: {:?}", p.candidate.usage);
        }
    }
    // An alert at the first difference (and at 10, 100, ...), not at each.
    let alerts: Vec<Alert> = h.new_alerts().into_iter().filter(|a| a.kind == "shadow_differs").collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!((alerts[0].tenant.as_str(), alerts[0].scope.as_str()), ("acme", "tenant:acme"));
    assert_eq!(alerts[0].details.get("check").map(String::as_str), Some("sender: DEFERRED hourly_limit_exceeded"));
}

#[test]
fn a_candidate_covers_its_scope_only_and_stopping_it_ends_the_pairs() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    h.d.shadow_policy("sender_domain:acme.com", Some(STRICTER), now);
    h.d.run();
    h.send_outbound(now, "in", "ana@acme.com", &to(1));
    h.send_outbound(now + 1, "out", "bo@other.example", &to(2));
    assert_eq!(h.d.shadow.iter().map(|p| p.intent_id.as_str()).collect::<Vec<_>>(), vec!["in"]);
    h.d.shadow_policy("sender_domain:acme.com", None, now + 2);
    h.d.run();
    h.send_outbound(now + 3, "after", "ana@acme.com", &to(3));
    assert_eq!(h.d.shadow.len(), 1, "no pair once the candidate is stopped");
}

#[test]
fn a_candidate_decides_at_later_stages_and_the_outcome_pairs_at_the_sender_stage() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    // The candidate caps the recipient domain's group: decided by the recipient-domain stage.
    h.d.shadow_policy("tenant:acme", Some("business_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"recipient_domain.outbound.hour\" = 2 }"), now);
    h.d.run();
    let d: Vec<Decision> = (0..4).map(|i| h.send_outbound(now + i as i64, &format!("r{i}"), &format!("m{i}@acme.com"), &to(i))).collect();
    assert!(d.iter().all(|d| d.status == DecisionStatus::Allowed));
    let changed: Vec<&ShadowDecision> = h.d.shadow.iter().filter(|p| p.differs).collect();
    assert_eq!(changed.len(), 2, "{:?}", h.d.shadow);
    assert_eq!(changed[0].candidate.stage.as_deref(), Some("recipient_domain"));
    assert_eq!(changed[0].check, "recipient_domain: DEFERRED hourly_limit_exceeded");
    // The enforced recipient-domain counters saw all four; nothing of the candidate's.
    assert_eq!(h.counted(StageKind::RecipientDomain, "outbound/hour"), 4);
}

#[test]
fn delivery_events_move_the_candidates_signals_too() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    // The enforced policy reads no signal below 1,000 sends; the candidate from 3 events.
    h.policy(now, "default", &format!("{QUIET}\nlimits = {{ \"mailbox.outbound.hour\" = \"off\" }}\nsignals = {{ min_volume = 1000, min_events = 0 }}"));
    h.d.shadow_policy("tenant:acme", Some("business_hours = \"off\"\nwarmup = \"off\"\nsignals = { min_volume = 0, min_events = 3 }"), now);
    h.d.run();
    for i in 0..8 {
        h.send_outbound(now + i, &format!("b{i}"), "ana@acme.com", &to(i as usize));
    }
    for i in 0..4 {
        h.deliver(now + 100 + i, &event("ana@acme.com", &to(i as usize), DeliveryKind::BounceHard, Some(550)));
    }
    let d = h.send_outbound(now + 200, "next", "ana@acme.com", &to(99));
    assert_eq!(d.status, DecisionStatus::Allowed, "the enforced policy is not paused: {d:?}");
    let p = h.d.shadow.last().unwrap();
    assert_eq!(p.intent_id, "next");
    assert_eq!(p.candidate.status, DecisionStatus::Paused, "{p:?}");
    assert!(h.new_alerts().iter().all(|a| a.kind != "sender_paused"), "a candidate's pause pages no one");
}

#[test]
fn a_stopped_candidates_state_is_purged_and_a_republished_one_starts_empty() {
    use crate::stage::keys::SHADOW_NAMESPACE_PREFIX;
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\n{ENFORCED}"));
    h.d.shadow_policy("tenant:acme", Some(STRICTER), now);
    h.d.run();
    for i in 0..5 {
        h.send_outbound(now + i, &format!("s{i}"), "ana@acme.com", &to(i as usize));
    }
    assert_eq!(h.d.shadow.iter().filter(|p| p.differs).count(), 2, "{:?}", h.d.shadow);
    assert!(!h.d.keys_under(StageKind::Sender, SHADOW_NAMESPACE_PREFIX).is_empty());
    // Published again: a new version, its own empty state (3 more allowed).
    h.d.shadow_policy("tenant:acme", Some(STRICTER), now + 10);
    h.d.run();
    let before = h.d.shadow.len();
    let d: Vec<Decision> = (5..9).map(|i| h.send_outbound(now + 10 + i, &format!("s{i}"), "ana@acme.com", &to(i as usize))).collect();
    assert!(d.iter().all(|d| d.status == DecisionStatus::Allowed));
    let fresh: Vec<&ShadowDecision> = h.d.shadow[before..].iter().collect();
    assert_eq!(fresh.iter().filter(|p| !p.differs).count(), 3, "the new version counts from zero: {fresh:?}");
    // Stopped: every partition purges what it kept, a few keys per record.
    h.d.shadow_policy("tenant:acme", None, now + 30);
    h.d.run();
    for i in 0..20 {
        h.send_outbound(now + 40 + i, &format!("after{i}"), &format!("m{i}@acme.com"), &to(50 + i as usize));
    }
    assert_eq!(h.d.keys_under(StageKind::Sender, SHADOW_NAMESPACE_PREFIX), Vec::<String>::new(), "the candidates' state is gone");
    // The partition that handled records since has finished its purge; the
    // others (no record since) finish at their next record.
    let markers = h.d.keys_under(StageKind::Sender, crate::stage::keys::SHADOW_PURGE_PREFIX);
    assert_eq!(markers.len(), 2, "{markers:?}");
}

#[test]
fn reconciliation_judges_real_sends_in_the_enforced_state_only() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\n{ENFORCED}"));
    h.d.shadow_policy("tenant:acme", Some(STRICTER), now);
    h.d.run();
    for i in 0..5 {
        let d = h.send_outbound(now + i, &format!("s{i}"), "ana@acme.com", &to(i as usize));
        h.deliver(now + 100 + i, &DeliveryEvent { event_id: format!("ev{i}"), intent_id: Some(d.intent_id.clone()), ..event("ana@acme.com", &to(i as usize), DeliveryKind::Delivered, Some(250)) });
    }
    assert!(h.d.shadow.iter().any(|p| p.differs), "the candidate would have deferred some");
    assert!(h.new_alerts().iter().all(|a| a.kind != "unapproved_send"), "every send followed an enforced ALLOWED");
}
