//! Tenants that share one deployment: intent ids are unique within a
//! tenant only, and a command acts within its tenant.

use super::*;
use crate::stage::driver::partition_for;
use crate::stage::{keys, pipeline, StageKind};
use crate::state::StateValue;

fn of(tenant: &str, id: &str, sender: &str, recipient: &str) -> SendIntent {
    SendIntent::new(id, tenant, sender, recipient, IntentClass::Outbound)
}

fn approve(tenant: &str, id: &str, sender: &str) -> Command {
    let mut c = Command::new(CommandKind::Approve, tenant, id, format!("c-{tenant}-{id}"));
    c.sender = Some(sender.into());
    c
}

#[test]
fn two_tenants_reusing_an_intent_id_get_independent_decisions_and_counters() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let a = h.send(now, &of("acme", "1", "ana@shared.example", "x@corp.example"));
    let b = h.send(now + 1, &of("globex", "1", "bo@shared.example", "y@corp.example"));
    assert_eq!((a.status, a.replayed), (DecisionStatus::Allowed, false));
    assert_eq!((b.status, b.replayed, b.recipient.as_str()), (DecisionStatus::Allowed, false, "y@corp.example"), "not a replay of acme's decision");
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@shared.example/outbound/day"), 1);
    assert_eq!(h.counted(StageKind::Sender, "mailbox:bo@shared.example/outbound/day"), 1, "globex's send is counted");
    // Each tenant's resubmission replays its own decision.
    let again = h.send(now + 2, &of("globex", "1", "bo@shared.example", "y@corp.example"));
    assert_eq!((again.status, again.replayed, again.tenant.as_str(), again.recipient.as_str()), (DecisionStatus::Allowed, true, "globex", "y@corp.example"));
    assert_eq!(h.counted(StageKind::Sender, "mailbox:bo@shared.example/outbound/day"), 1);
}

#[test]
fn an_id_reused_by_the_same_tenant_for_another_send_is_blocked_with_its_reason() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    h.send(now, &of("acme", "7", "ana@acme.com", "x@corp.example"));
    let d = h.send(now + 1, &of("acme", "7", "ana@acme.com", "someone-else@corp.example"));
    assert_eq!((d.status, d.reason.as_str(), d.replayed), (DecisionStatus::Blocked, "intent_id_reused", false));
    assert_eq!(d.recipient, "someone-else@corp.example", "the decision names this intent, not the first one");
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), 1, "nothing counted for it");
    // The first intent's decision is still the one kept for its id.
    let replay = h.send(now + 2, &of("acme", "7", "ana@acme.com", "x@corp.example"));
    assert_eq!((replay.status, replay.replayed), (DecisionStatus::Allowed, true));
}

#[test]
fn another_tenant_cannot_approve_or_reject_a_held_intent() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let mut i = of("acme", "h", "ana@shared.example", "cfo@corp.example");
    i.requires_approval = true;
    assert_eq!(h.send(now, &i).status, DecisionStatus::Held);
    // globex names acme's intent: refused, visibly, and nothing changes.
    assert!(h.command(now + 1, &approve("globex", "h", "ana@shared.example")).is_empty());
    let mut reject = approve("globex", "h", "ana@shared.example");
    reject.kind = CommandKind::Reject;
    assert!(h.command(now + 2, &reject).is_empty());
    let refused: Vec<&str> = h.d.refused.iter().filter(|r| r.stage == "sender").map(|r| r.reason.as_str()).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|r| r.contains(r#"no held intent "h" of tenant "globex""#) && !r.contains("cfo@")), "{refused:?}");
    // acme's own approval still decides it.
    let d = h.command(now + 3, &approve("acme", "h", "ana@shared.example"));
    assert_eq!((d.len(), d[0].status, d[0].tenant.as_str()), (1, DecisionStatus::Allowed, "acme"));
}

#[test]
fn two_tenants_holding_the_same_id_are_approved_apart() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    for (tenant, to) in [("acme", "a@corp.example"), ("globex", "g@corp.example")] {
        let mut i = of(tenant, "h", "ops@shared.example", to);
        i.requires_approval = true;
        assert_eq!(h.send(now, &i).status, DecisionStatus::Held);
    }
    let d = h.command(now + 1, &approve("globex", "h", "ops@shared.example"));
    assert_eq!((d.len(), d[0].tenant.as_str(), d[0].recipient.as_str(), d[0].status), (1, "globex", "g@corp.example", DecisionStatus::Allowed));
    let d = h.command(now + 2, &approve("acme", "h", "ops@shared.example"));
    assert_eq!((d.len(), d[0].tenant.as_str(), d[0].recipient.as_str(), d[0].status), (1, "acme", "a@corp.example", DecisionStatus::Allowed));
}

#[test]
fn state_of_the_release_before_tenant_scoped_ids_is_read_in_place() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    let partition = partition_for("acme.com", 3);
    // What the earlier release kept: a final decision and a held intent by
    // intent id alone.
    let done = pipeline::new_decision(&of("acme", "old-1", "ana@acme.com", "x@corp.example"), now - 1, &SourceRef { topic: "t".into(), partition: 0, offset: 1 }, StageKind::Sender, DecisionStatus::Allowed, "ok", None, Vec::new(), 1);
    let bytes = crate::codec::encode(crate::codec::RecordType::Decision, &done).unwrap();
    h.d.put_state(StageKind::Sender, partition, &keys::legacy::final_decision("old-1"), StateValue::FinalDecision(bytes));
    let mut held = of("acme", "old-2", "ana@acme.com", "cfo@corp.example");
    held.requires_approval = true;
    h.d.put_state(StageKind::Sender, partition, &keys::legacy::held_intent("old-2"), StateValue::Intent(pipeline::encode_intent(&held)));

    // The old decision is still this tenant's idempotency record...
    let replay = h.send(now, &of("acme", "old-1", "ana@acme.com", "x@corp.example"));
    assert_eq!((replay.status, replay.replayed), (DecisionStatus::Allowed, true));
    // ...and not another tenant's.
    let other = h.send(now + 1, &of("globex", "old-1", "bo@acme.com", "y@corp.example"));
    assert_eq!((other.status, other.replayed), (DecisionStatus::Allowed, false));
    // The old held intent is approved by its tenant only.
    assert!(h.command(now + 2, &approve("globex", "old-2", "ana@acme.com")).is_empty());
    let d = h.command(now + 3, &approve("acme", "old-2", "ana@acme.com"));
    assert_eq!((d.len(), d[0].status, d[0].recipient.as_str()), (1, DecisionStatus::Allowed, "cfo@corp.example"));
}
