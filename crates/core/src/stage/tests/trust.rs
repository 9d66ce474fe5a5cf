//! Trust ladders: new subjects start supervised and step up on healthy
//! volume, and down on bad signals.

use super::*;

fn to(i: usize) -> String {
    format!("p{i}@corp.example")
}

const LADDER: &str = "trust = { mailbox = { steps = [{ name = \"new\", hour = 2 }, { name = \"grown\" }], advance_after_sends = 3, advance_after_hours = 1, demote_after_events = 2 } }";
const NO_WINDOWS: &str = "limits = { \"mailbox.outbound.hour\" = \"off\", \"mailbox.outbound.day\" = \"off\" }";

#[test]
fn a_mailbox_steps_up_after_healthy_volume_and_back_down_after_bounces() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\n{NO_WINDOWS}\n{LADDER}"));
    let d: Vec<Decision> = (0..3).map(|i| h.send_outbound(now + i as i64, &format!("a{i}"), "ana@acme.com", &to(i))).collect();
    assert_eq!(d[1].status, DecisionStatus::Allowed);
    assert_eq!((d[2].status, d[2].reason.as_str()), (DecisionStatus::Deferred, "trust_step_limit"));
    assert!(d[2].usage.iter().any(|u| u.scope == "trust:mailbox:ana@acme.com" && u.window == "hour" && u.limit == 2), "{:?}", d[2].usage);
    // A neighbour has its own ladder.
    assert_eq!(h.send_outbound(now + 5, "b0", "bo@acme.com", &to(9)).status, DecisionStatus::Allowed);
    assert!(h.new_alerts().iter().all(|a| a.kind != "trust_step_up"));
    // The third healthy send, an hour on: the step is done.
    assert_eq!(h.send_outbound(now + HOUR, "a3", "ana@acme.com", &to(3)).status, DecisionStatus::Allowed);
    let up: Vec<Alert> = h.new_alerts().into_iter().filter(|a| a.kind == "trust_step_up").collect();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!((up[0].scope.as_str(), up[0].details["from"].as_str(), up[0].details["to"].as_str(), up[0].details["sends"].as_str()), ("mailbox:ana@acme.com", "new", "grown", "3"));
    let d: Vec<Decision> = (0..5).map(|i| h.send_outbound(now + HOUR + 1 + i as i64, &format!("c{i}"), "ana@acme.com", &to(10 + i))).collect();
    assert!(d.iter().all(|d| d.status == DecisionStatus::Allowed), "no cap at the last step: {d:?}");
    // Two hard bounces of five sends at this step: back down.
    for i in 0..2 {
        h.deliver(now + HOUR + 100 + i, &event("ana@acme.com", &to(10 + i as usize), DeliveryKind::BounceHard, Some(550)));
    }
    let down: Vec<Alert> = h.new_alerts().into_iter().filter(|a| a.kind == "trust_step_down").collect();
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!((down[0].details["from"].as_str(), down[0].details["to"].as_str(), down[0].details["hard_bounces"].as_str()), ("grown", "new", "2"));
    let d: Vec<Decision> = (0..3).map(|i| h.send_outbound(now + 2 * HOUR + i as i64, &format!("e{i}"), "ana@acme.com", &to(20 + i))).collect();
    assert_eq!((d[2].status, d[2].reason.as_str()), (DecisionStatus::Deferred, "trust_step_limit"), "capped again");
}

#[test]
fn a_first_contact_gets_a_few_sends_in_its_first_hour_and_day_per_tenant() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\n{NO_WINDOWS}\nrecipients = {{ cooldown_minutes = 0, dedupe_hours = 0 }}\ntrust = {{ recipient = \"standard\" }}"));
    // first_contact: 2 an hour, 3 a day.
    let d: Vec<Decision> = (0..3).map(|i| h.send_outbound(now + i, &format!("r{i}"), "ana@acme.com", "new@corp.example")).collect();
    assert_eq!((d[2].status, d[2].reason.as_str()), (DecisionStatus::Deferred, "trust_step_limit"));
    assert_eq!(h.send_outbound(now + 10, "other", "ana@acme.com", "someone@corp.example").status, DecisionStatus::Allowed, "another recipient is another ladder");
    // Another tenant's first contact with the same address is its own.
    let g = h.send(now + 11, &SendIntent::new("g1", "globex", "gus@acme.com", "new@corp.example", IntentClass::Outbound));
    assert_eq!(g.status, DecisionStatus::Allowed);
    let d = h.send_outbound(now + HOUR, "r3", "ana@acme.com", "new@corp.example");
    assert_eq!(d.status, DecisionStatus::Allowed, "the next hour: {d:?}");
    let d = h.send_outbound(now + 2 * HOUR, "r4", "ana@acme.com", "new@corp.example");
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "trust_step_limit"), "3 a day");
    // A day on, 3 healthy sends: known (5 an hour).
    let d = h.send_outbound(now + 25 * HOUR, "r5", "ana@acme.com", "new@corp.example");
    assert_eq!(d.status, DecisionStatus::Allowed);
    let up: Vec<Alert> = h.new_alerts().into_iter().filter(|a| a.kind == "trust_step_up").collect();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!((up[0].tenant.as_str(), up[0].scope.as_str(), up[0].details["to"].as_str()), ("acme", "recipient:new@corp.example", "known"));
}

#[test]
fn a_ladder_is_validated_when_published() {
    for (doc, needle) in [
        ("trust = { mailbox = \"bold\" }", "unknown preset"),
        ("trust = { mailbox = { steps = [{ name = \"only\" }] } }", "at least two steps"),
        ("trust = { recipient = { preset = \"standard\", steps = [{ name = \"a\", hour = 0 }, { name = \"b\" }] } }", "cap of 0"),
        ("trust = { sender_domain = { preset = \"standard\", max_complaint_rate = 2.0 } }", "between 0 and 1"),
    ] {
        let spec: crate::policy::PolicySpec = toml::from_str(doc).unwrap();
        let errs = spec.validate().unwrap_err();
        assert!(errs.iter().any(|e| e.contains(needle)), "{doc}: {errs:?}");
    }
}
