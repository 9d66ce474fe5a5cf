//! The property the reserve / release protocol exists for: whatever the
//! interleaving of stages, releases, delivery events, commits and crashes,
//! every stage's counters equal the ALLOWED decisions it took part in, every
//! intent gets exactly one decision, and no cap is exceeded.

use super::*;
use crate::stage::StageKind;
use proptest::prelude::*;
use std::collections::BTreeMap;

const POLICY: &str = "business_hours = \"off\"\nwarmup = \"off\"\nrecipients = { cooldown_minutes = 10, dedupe_hours = 0 }\nlimits = { \"mailbox.outbound.hour\" = 3, \"mailbox.outbound.day\" = \"off\", \"sender_domain.outbound.hour\" = 5, \"sender_domain.outbound.day\" = \"off\", \"tenant.outbound.hour\" = 7, \"recipient.outbound.day\" = 2, \"recipient_domain.outbound.hour\" = 3 }";

/// The counter keys an ALLOWED decision moved, per stage.
fn expected_keys(d: &Decision) -> Vec<(StageKind, String)> {
    let sd = d.sender.rsplit_once('@').unwrap().1;
    let rd = d.recipient.rsplit_once('@').unwrap().1;
    let mut keys = vec![
        (StageKind::Sender, format!("ctr/mailbox:{}/outbound/hour", d.sender)),
        (StageKind::Sender, format!("ctr/sender_domain:{sd}/outbound/hour")),
        (StageKind::Tenant, "ctr/tenant:acme/outbound/hour".to_string()),
        (StageKind::Recipient, format!("ctr/tenant:acme/recipient:{}/outbound/day", d.recipient)),
        (StageKind::RecipientDomain, format!("ctr/sender_domain:{sd}/recipient_domain:{rd}/outbound/hour")),
    ];
    // An intent allowed while a backoff of its (sender domain, recipient
    // domain) ramps back up also counts in the ramp's per-minute window
    // (a 421 deferral starts a backoff); its decision lists that window.
    let ramp_scope = format!("sender_domain:{sd}/recipient_domain:{rd}");
    if d.usage.iter().any(|u| u.scope == ramp_scope && u.window == "minute") {
        keys.push((StageKind::RecipientDomain, format!("ctr/{ramp_scope}/ramp/minute")));
    }
    keys
}

#[derive(Debug, Clone)]
enum Op {
    Intent { mailbox: u8, recipient: u8, template: Option<u8> },
    Delivery { recipient: u8, kind: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u8..6, proptest::option::of(0u8..2)).prop_map(|(mailbox, recipient, template)| Op::Intent { mailbox, recipient, template }),
        1 => (0u8..6, 0u8..3).prop_map(|(recipient, kind)| Op::Delivery { recipient, kind }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn counters_equal_the_allowed_decisions_under_any_interleaving_and_crash(
        ops in proptest::collection::vec(op(), 1..80),
        schedule in proptest::collection::vec(0u32..1000, 400),
    ) {
        let mut h = H::new();
        let start = t(2026, 6, 3, 10, 0);
        h.policy(start, "default", POLICY);
        let mailbox = |m: u8| format!("m{}@s{}.example", m % 2, m / 2);
        let recipient = |r: u8| format!("r{}@d{}.example", r % 3, r / 3);
        let mut ids = Vec::new();
        let mut schedule = schedule.into_iter().cycle();
        for (n, op) in ops.iter().enumerate() {
            let at = start + 1 + n as i64 * 1_000;
            match op {
                Op::Intent { mailbox: m, recipient: r, template } => {
                    let mut i = intent(&format!("i{n}"), &mailbox(*m), &recipient(*r), IntentClass::Outbound);
                    i.template_id = template.map(|t| format!("t{t}"));
                    h.d.intent(&i, at);
                    ids.push(i.intent_id);
                }
                Op::Delivery { recipient: r, kind } => {
                    let (kind, code) = [(DeliveryKind::Delivered, 250), (DeliveryKind::Deferred, 421), (DeliveryKind::BounceHard, 550)][*kind as usize];
                    let mut ev = event(&mailbox(0), &recipient(*r), kind, Some(code));
                    ev.event_id = format!("e{n}");
                    h.d.delivery(&ev, at);
                }
            }
            // Between inputs, the stages run in a random order, commit at
            // random points, and crash (losing their open transaction).
            for _ in 0..3 {
                let todo = h.d.unread();
                if todo.is_empty() {
                    break;
                }
                let pick = schedule.next().unwrap() as usize;
                let (kind, p) = todo[pick % todo.len()];
                h.d.step(kind, p);
                match pick % 10 {
                    0..=2 => h.d.commit(kind),
                    3 => h.d.crash(kind),
                    _ => {}
                }
            }
        }
        h.d.run();

        let mut per_id: BTreeMap<&str, Vec<&Decision>> = BTreeMap::new();
        for d in &h.d.decisions {
            per_id.entry(d.intent_id.as_str()).or_default().push(d);
        }
        for id in &ids {
            let n = per_id.get(id.as_str()).map(Vec::len).unwrap_or(0);
            prop_assert_eq!(n, 1, "intent {} got {} decisions", id, n);
        }
        let mut expected: BTreeMap<(StageKind, String), i64> = BTreeMap::new();
        for d in h.d.decisions.iter().filter(|d| d.status == DecisionStatus::Allowed) {
            for k in expected_keys(d) {
                *expected.entry(k).or_default() += 1;
            }
        }
        let mut actual: BTreeMap<(StageKind, String), i64> = BTreeMap::new();
        for kind in StageKind::ALL {
            for (key, c) in h.d.counters(kind) {
                prop_assert_eq!(c.pending, 0, "{} still has reservations in flight after the pipeline drained", key);
                if c.count != 0 {
                    actual.insert((kind, key), c.count);
                }
            }
        }
        prop_assert_eq!(&actual, &expected);
        // And no cap was exceeded on the way.
        for ((_, key), n) in &actual {
            let cap = if key.contains("/recipient_domain:") { 3 } else if key.contains("mailbox:") { 3 } else if key.contains("sender_domain:") { 5 } else if key.contains("tenant:acme/outbound") { 7 } else { 2 };
            prop_assert!(*n <= cap, "{} = {} over its cap {}", key, n, cap);
        }
    }
}
