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
    // An intent in flight under the separate key of the next release: a
    // resubmission is told its decision is pending.
    let in_flight = of("acme", "old-3", "ana@acme.com", "z@corp.example");
    h.d.put_state(StageKind::Sender, partition, &keys::earlier_pending_intent("acme", "old-3"), StateValue::Intent(pipeline::encode_intent(&in_flight)));
    let d = h.send(now + 4, &in_flight);
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "decision_pending"));
}

fn pause_cmd(kind: CommandKind, tenant: &str, target: &str, n: u32) -> Command {
    Command::new(kind, tenant, target, format!("c-{tenant}-{n}"))
}

#[test]
fn a_domain_owned_by_a_tenant_sends_its_mail_only_and_only_it_pauses_or_resumes_it() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    h.policy(now, "sender_domain:acme.com", "owner = \"acme\"");
    assert_eq!(h.send(now + 1, &of("acme", "a1", "ana@acme.com", "x@corp.example")).status, DecisionStatus::Allowed);
    let d = h.send(now + 2, &of("globex", "g1", "ana@acme.com", "x@corp.example"));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Blocked, "sender_domain_owned_by_another_tenant"));
    assert_eq!(h.counted(StageKind::Sender, "mailbox:ana@acme.com/outbound/day"), 1, "the refused intent counted nowhere");

    // globex can neither pause nor resume acme's domain or mailboxes.
    let refused_before = h.d.refused.len();
    h.command(now + 3, &pause_cmd(CommandKind::Pause, "globex", "sender_domain:acme.com", 1));
    h.command(now + 4, &pause_cmd(CommandKind::Pause, "globex", "mailbox:ana@acme.com", 2));
    assert_eq!(h.d.refused.len(), refused_before + 2, "{:?}", h.d.refused);
    assert!(h.d.refused[refused_before..].iter().all(|r| r.reason.contains("another tenant owns") && r.reason.contains("nothing changed")));
    assert_eq!(h.send(now + 5, &of("acme", "a2", "ana@acme.com", "y@corp.example")).status, DecisionStatus::Allowed, "not paused");
    // acme pauses it; globex cannot resume it; acme can.
    h.command(now + 6, &pause_cmd(CommandKind::Pause, "acme", "sender_domain:acme.com", 3));
    assert_eq!(h.send(now + 7, &of("acme", "a3", "ana@acme.com", "z@corp.example")).status, DecisionStatus::Paused);
    h.command(now + 8, &pause_cmd(CommandKind::Resume, "globex", "sender_domain:acme.com", 4));
    assert_eq!(h.send(now + 9, &of("acme", "a4", "ana@acme.com", "z@corp.example")).status, DecisionStatus::Paused, "still paused");
    h.command(now + 10, &pause_cmd(CommandKind::Resume, "acme", "sender_domain:acme.com", 5));
    assert_eq!(h.send(now + 11, &of("acme", "a5", "ana@acme.com", "z@corp.example")).status, DecisionStatus::Allowed);
}

#[test]
fn another_tenants_bounces_move_no_signal_of_an_owned_domain() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", &format!("{QUIET}\nsignals = {{ min_volume = 1 }}"));
    h.policy(now, "sender_domain:acme.com", "owner = \"acme\"");
    assert_eq!(h.send(now + 1, &of("acme", "a1", "ana@acme.com", "x@corp.example")).status, DecisionStatus::Allowed);
    for n in 0..5 {
        let mut ev = event("ana@acme.com", &format!("v{n}@corp.example"), DeliveryKind::BounceHard, Some(550));
        ev.tenant = "globex".into();
        h.deliver(now + 2 + n, &ev);
    }
    assert_eq!(h.d.refused.iter().filter(|r| r.reason.contains("moves no signal")).count(), 5);
    assert_eq!(h.send(now + 10, &of("acme", "a2", "ana@acme.com", "y@corp.example")).status, DecisionStatus::Allowed, "not paused by forged bounces");
}

#[test]
fn an_unowned_domain_is_shared_and_any_tenant_pauses_it() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    h.command(now + 1, &pause_cmd(CommandKind::Pause, "globex", "sender_domain:shared.example", 1));
    assert_eq!(h.send(now + 2, &of("acme", "a1", "ana@shared.example", "x@corp.example")).status, DecisionStatus::Paused);
}

#[test]
fn owner_belongs_in_a_sender_domain_document_only() {
    let e = crate::policy::file::parse_policy_file("[[policy]]\nscope = \"tenant:acme\"\nowner = \"acme\"\n").unwrap_err().join("\n");
    assert!(e.contains("it belongs in a sender_domain: document"), "{e}");
    crate::policy::file::parse_policy_file("[[policy]]\nscope = \"sender_domain:acme.com\"\nowner = \"acme\"\n").unwrap();
}

mod isolation {
    //! The tenant model's promise, as a property: whatever the interleaving
    //! of two tenants' intents (reusing each other's ids), delivery events
    //! and approvals, one tenant's decisions are what it gets alone, as long
    //! as the two share no sender domain, recipient or recipient domain (the
    //! state the model names as shared).

    use super::*;
    use proptest::prelude::*;

    const POLICY: &str = "business_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"mailbox.outbound.hour\" = 3, \"sender_domain.outbound.hour\" = 5, \"tenant.outbound.hour\" = 6, \"recipient.outbound.day\" = 2, \"recipient_domain.outbound.hour\" = 4 }";

    #[derive(Debug, Clone)]
    enum Op {
        Intent { tenant: u8, id: u8, mailbox: u8, recipient: u8, approval: bool },
        Bounce { tenant: u8, mailbox: u8, recipient: u8 },
        Approve { tenant: u8, id: u8, mailbox: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..2, 0u8..5, 0u8..3, 0u8..4, proptest::bool::weighted(0.2)).prop_map(|(tenant, id, mailbox, recipient, approval)| Op::Intent { tenant, id, mailbox, recipient, approval }),
            1 => (0u8..2, 0u8..3, 0u8..4).prop_map(|(tenant, mailbox, recipient)| Op::Bounce { tenant, mailbox, recipient }),
            2 => (0u8..2, 0u8..5, 0u8..3).prop_map(|(tenant, id, mailbox)| Op::Approve { tenant, id, mailbox }),
        ]
    }

    const TENANTS: [&str; 2] = ["acme", "globex"];
    // Each tenant's own domains and recipients: nothing shared.
    fn mailbox(t: u8, m: u8) -> String {
        format!("m{}@s{}-{}.example", m % 2, m / 2, TENANTS[t as usize])
    }
    fn recipient(t: u8, r: u8) -> String {
        format!("r{}@d{}-{}.example", r % 2, r / 2, TENANTS[t as usize])
    }

    /// Runs the ops (those of `only` when given) and returns tenant 0's
    /// decisions, without what differs by construction (input offsets).
    fn run(ops: &[Op], only: Option<u8>) -> Vec<(String, DecisionStatus, String, Option<i64>, bool, Vec<Usage>)> {
        let mut h = H::new();
        let start = t(2026, 6, 3, 10, 0);
        h.policy(start, "default", POLICY);
        for (n, op) in ops.iter().enumerate() {
            let at = start + 1 + n as i64 * 60_000;
            let tenant_of = |op: &Op| match op {
                Op::Intent { tenant, .. } | Op::Bounce { tenant, .. } | Op::Approve { tenant, .. } => *tenant,
            };
            if only.is_some_and(|o| o != tenant_of(op)) {
                continue;
            }
            match op {
                Op::Intent { tenant, id, mailbox: m, recipient: r, approval } => {
                    let mut i = SendIntent::new(&format!("i{id}"), TENANTS[*tenant as usize], &mailbox(*tenant, *m), &recipient(*tenant, *r), IntentClass::Outbound);
                    i.requires_approval = *approval;
                    h.d.intent(&i, at);
                }
                Op::Bounce { tenant, mailbox: m, recipient: r } => {
                    let mut ev = event(&mailbox(*tenant, *m), &recipient(*tenant, *r), DeliveryKind::BounceHard, Some(550));
                    ev.tenant = TENANTS[*tenant as usize].into();
                    ev.event_id = format!("e{n}");
                    h.d.delivery(&ev, at);
                }
                Op::Approve { tenant, id, mailbox: m } => {
                    let mut c = Command::new(CommandKind::Approve, TENANTS[*tenant as usize], &format!("i{id}"), format!("c{n}"));
                    c.sender = Some(mailbox(*tenant, *m));
                    h.d.command(&c, at);
                }
            }
            h.d.run();
        }
        h.d.decisions.iter().filter(|d| d.tenant == "acme").map(|d| (d.intent_id.clone(), d.status, d.reason.clone(), d.retry_at_ms, d.replayed, d.usage.clone())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_tenant_is_decided_as_if_it_ran_alone(ops in proptest::collection::vec(op(), 1..60)) {
            prop_assert_eq!(run(&ops, None), run(&ops, Some(0)));
        }
    }
}

#[test]
fn another_tenants_restrictions_and_lists_change_nothing_of_a_tenant() {
    let mut h = H::new();
    let now = t(2026, 6, 3, 10, 0);
    h.policy(now, "default", QUIET);
    // globex denies acme's tenant, sender, domain, and blocks the recipient.
    let mut n = 0;
    let mut cmd = |kind: CommandKind, target: &str, list: Option<&str>| {
        n += 1;
        let mut c = Command::new(kind, "globex", target, format!("g-{n}"));
        c.list = list.map(str::to_string);
        c
    };
    let cmds = [
        cmd(CommandKind::AddRestriction, "tenant:acme", None),
        cmd(CommandKind::AddRestriction, "address:ana@acme.com", None),
        cmd(CommandKind::AddRestriction, "domain:acme.com", None),
        cmd(CommandKind::AddListEntry, "x@corp.example", Some("block")),
        cmd(CommandKind::AddListEntry, "x@corp.example", Some("suppression")),
    ];
    for (i, c) in cmds.iter().enumerate() {
        h.command(now + 1 + i as i64, c);
    }
    // acme's intents are decided as if globex had said nothing ...
    let d = h.send(now + 10, &of("acme", "a1", "ana@acme.com", "x@corp.example"));
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Allowed, "ok"));
    // ... while globex's own entries bind globex.
    let g = h.send(now + 11, &of("globex", "g1", "gus@globex.example", "x@corp.example"));
    assert_eq!(g.status, DecisionStatus::Blocked, "{g:?}");
    let g = h.send(now + 12, &of("globex", "g2", "ana@acme.com", "y@corp.example"));
    assert_eq!((g.status, g.reason.as_str()), (DecisionStatus::Paused, "sender_restricted"), "{g:?}");
}
