//! End to end through the real Kafka broker: the foundation's acceptance.
//! Each test owns a fresh namespace of topics and a fresh state directory.

use crate::common::*;
use sendgate::clock::{window_end, Window};
use sendgate::model::*;
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn cap_policy(mailbox: &str, cap: u32) -> String {
    // Business hours, pacing and warm-up off: the suite passes at any hour.
    format!(
        r#"
[[policy]]
scope = "mailbox:{mailbox}"
timezone = "America/New_York"
business_hours = "off"
warmup = "off"
limits = {{ "mailbox.outbound.day" = {cap}, "mailbox.outbound.hour" = "off" }}
"#
    )
}

#[test]
fn a_daily_cap_of_25_allows_25_of_100_and_defers_the_rest_to_local_midnight() {
    let mut env = TestEnv::new("cap");
    env.start();
    env.apply_policy(&cap_policy("ana@acme.com", 25));
    let intents: Vec<SendIntent> = (0..100).map(|i| intent(&format!("cap-{i}"), "ana@acme.com", &format!("lead{i}@corp.example"))).collect();
    env.send_intents(&intents);
    let ids: Vec<String> = intents.iter().map(|i| i.intent_id.clone()).collect();
    let decisions = env.await_decisions(&ids, WAIT);
    assert_eq!(count_status(decisions.values(), DecisionStatus::Allowed), 25);
    assert_eq!(count_status(decisions.values(), DecisionStatus::Deferred), 75);
    for d in decisions.values().filter(|d| d.status == DecisionStatus::Deferred) {
        assert_eq!(d.reason, "daily_cap_reached");
        let next_day = window_end(Window::Day, chrono_tz::America::New_York, d.decided_at_ms);
        // Back within the hour after the next local midnight (a quarter of
        // the day, at most an hour), by a hash of the intent.
        assert!(d.retry_at_ms.is_some_and(|r| (next_day..next_day + 3_600_000).contains(&r)), "retry {:?} after the next local midnight {next_day}", d.retry_at_ms);
        let u = d.usage.iter().find(|u| u.scope == "mailbox:ana@acme.com" && u.window == "day").expect("usage names the binding window");
        assert_eq!((u.used, u.limit, u.remaining), (25, 25, 0));
        assert!(d.policy_version > 0, "decided under the applied policy");
        assert!(d.source.topic.ends_with(".intents"));
    }
    // Each decision points at its intent's record on the intents topic.
    let mut offsets: Vec<i64> = decisions.values().map(|d| d.source.offset).collect();
    offsets.sort();
    offsets.dedup();
    assert_eq!(offsets.len(), 100);
}

#[test]
fn resubmitting_an_allowed_intent_gets_allowed_again_and_moves_no_counter() {
    let mut env = TestEnv::new("idem");
    env.start();
    env.apply_policy(&cap_policy("bo@acme.com", 3));
    let first: Vec<SendIntent> = (0..2).map(|i| intent(&format!("idem-{i}"), "bo@acme.com", "x@corp.example")).collect();
    env.send_intents(&first);
    let d = env.await_decisions(&["idem-0".into(), "idem-1".into()], WAIT);
    assert!(d.values().all(|d| d.status == DecisionStatus::Allowed));
    // The same intent again: ALLOWED, marked as a repeat, same usage.
    env.send_intents(&first[..1]);
    let all = wait_for_count(&env, "idem-0", 2);
    assert_eq!(all[1].status, DecisionStatus::Allowed);
    assert!(all[1].replayed);
    assert_eq!(all[1].usage, all[0].usage);
    // The cap is 3: one more new intent fits (the repeat moved nothing), the next does not.
    assert_eq!(env.decide_one(intent("idem-2", "bo@acme.com", "x@corp.example")).status, DecisionStatus::Allowed);
    assert_eq!(env.decide_one(intent("idem-3", "bo@acme.com", "x@corp.example")).status, DecisionStatus::Deferred);
}

fn wait_for_count(env: &TestEnv, id: &str, n: usize) -> Vec<Decision> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ds: Vec<Decision> = env.all_decisions().into_iter().filter(|d| d.intent_id == id).collect();
        if ds.len() >= n {
            return ds;
        }
        assert!(std::time::Instant::now() < deadline, "only {} decisions for {id}; log:\n{}", ds.len(), env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn sigkill_mid_stream_leaves_exactly_one_decision_per_intent() {
    let mut env = TestEnv::new("kill");
    env.start();
    env.apply_policy(&cap_policy("cy@acme.com", 25));
    let intents: Vec<SendIntent> = (0..400).map(|i| intent(&format!("kill-{i}"), "cy@acme.com", &format!("r{i}@corp.example"))).collect();
    // Feed in slices and kill the processor while it is busy.
    env.send_intents(&intents[..200]);
    let deadline = std::time::Instant::now() + WAIT;
    while env.all_decisions().len() < 20 {
        assert!(std::time::Instant::now() < deadline, "no progress before the kill; log:\n{}", env.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    env.send_intents(&intents[200..300]);
    env.kill9();
    env.send_intents(&intents[300..]);
    env.start();
    let ids: Vec<String> = intents.iter().map(|i| i.intent_id.clone()).collect();
    env.await_decisions(&ids, WAIT);
    assert!(env.log_text().contains("the last stop was not clean"), "after SIGKILL the local state must be rebuilt from the changelog");
    let all = env.all_decisions();
    assert_one_decision_per_intent(&all, 400);
    assert_eq!(count_status(&all, DecisionStatus::Allowed), 25, "the cap holds across the crash");
}

#[test]
fn state_is_restored_from_the_changelog_when_the_state_dir_is_deleted() {
    let mut env = TestEnv::new("restore");
    env.start();
    env.apply_policy(&cap_policy("di@acme.com", 15));
    let first: Vec<SendIntent> = (0..10).map(|i| intent(&format!("rs-{i}"), "di@acme.com", &format!("x{i}@corp.example"))).collect();
    env.send_intents(&first);
    let ids: Vec<String> = first.iter().map(|i| i.intent_id.clone()).collect();
    assert_eq!(count_status(env.await_decisions(&ids, WAIT).values(), DecisionStatus::Allowed), 10);
    // A clean stop leaves a checkpoint: the restart replays nothing.
    env.stop();
    env.start();
    env.send_intents(&[intent("rs-probe", "other@acme.com", "x@corp.example")]);
    env.await_decisions(&["rs-probe".into()], WAIT);
    assert_eq!(env.last_restore("sender"), Some(0), "restart after a clean stop restored records; log:\n{}", env.log_tail());
    // With the state directory gone, everything comes back from the changelog.
    env.stop();
    std::fs::remove_dir_all(env.state_dir()).unwrap();
    env.start();
    let second: Vec<SendIntent> = (10..20).map(|i| intent(&format!("rs-{i}"), "di@acme.com", &format!("x{i}@corp.example"))).collect();
    env.send_intents(&second);
    let ids: Vec<String> = second.iter().map(|i| i.intent_id.clone()).collect();
    let d = env.await_decisions(&ids, WAIT);
    assert!(env.last_restore("sender").unwrap_or(0) > 0, "a deleted state dir must be restored from the changelog; log:\n{}", env.log_tail());
    assert_eq!(count_status(d.values(), DecisionStatus::Allowed), 5, "the counter came back from the changelog");
    assert_eq!(count_status(d.values(), DecisionStatus::Deferred), 5);
    // Idempotency came back too.
    env.send_intents(&first[..1]);
    let again = wait_for_count(&env, "rs-0", 2);
    assert!(again[1].replayed && again[1].status == DecisionStatus::Allowed);
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic_and_processing_goes_on() {
    let mut env = TestEnv::new("dlq");
    env.start();
    env.apply_policy(&cap_policy("ed@acme.com", 25));
    let garbage = vec![0xde, 0xad, 0xbe, 0xef];
    let json = br#"{"intent_id":"json-not-avro"}"#.to_vec();
    let bad_address = sendgate::codec::encode(sendgate::codec::RecordType::SendIntent, &intent("bad-addr", "not an address", "x@corp.example")).unwrap();
    let wrong_schema = sendgate::codec::encode(sendgate::codec::RecordType::DeliveryEvent, &hard_bounce("e1", "ed@acme.com", "x@corp.example")).unwrap();
    env.send_raw("intents", vec![(b"k".to_vec(), Some(garbage.clone())), (b"k".to_vec(), Some(json.clone())), (b"k".to_vec(), Some(bad_address.clone())), (b"k".to_vec(), Some(wrong_schema.clone()))]);
    assert_eq!(env.decide_one(intent("after-bad", "ed@acme.com", "x@corp.example")).status, DecisionStatus::Allowed);
    let dls = env.all_dead_letters();
    assert_eq!(dls.len(), 4, "{dls:?}");
    for (dl, original) in dls.iter().zip([&garbage, &json, &bad_address, &wrong_schema]) {
        assert_eq!(dl.value.as_ref(), Some(original), "original bytes kept");
        assert!(dl.topic.ends_with(".intents"));
        assert_eq!(dl.stage, "router");
    }
    assert!(dls[0].reason.contains("single-object"), "{}", dls[0].reason);
    assert!(dls[2].reason.contains("sender"), "{}", dls[2].reason);
    assert!(dls[3].reason.contains("unknown schema"), "{}", dls[3].reason);
}

#[test]
fn hard_bounces_over_five_percent_pause_the_sender_domain() {
    let mut env = TestEnv::new("bounce");
    env.start();
    env.apply_policy(
        r#"
[[policy]]
scope = "sender_domain:bouncy.example"
business_hours = "off"
warmup = "off"
limits = { "mailbox.outbound.day" = 1000, "mailbox.outbound.hour" = "off" }
signals = { min_volume = 40 }
"#,
    );
    let senders = ["a@bouncy.example", "b@bouncy.example"];
    let sends: Vec<SendIntent> = (0..40).map(|i| intent(&format!("b-{i}"), senders[i % 2], &format!("old{i}@list.example"))).collect();
    env.send_intents(&sends);
    let ids: Vec<String> = sends.iter().map(|i| i.intent_id.clone()).collect();
    assert_eq!(count_status(env.await_decisions(&ids, WAIT).values(), DecisionStatus::Allowed), 40);
    // 1 of 40 (2.5%): under the three events a rate needs, no tier; the
    // domain sends on.
    env.send_delivery(&[hard_bounce("hb-0", senders[0], "old0@list.example")]);
    assert_eq!(env.decide_one(intent("b-still", senders[1], "new@list.example")).status, DecisionStatus::Allowed);
    // 3 of 41 = 7.3%: paused (the domain; each mailbox has under three).
    env.send_delivery(&[hard_bounce("hb-1", senders[1], "old1@list.example"), hard_bounce("hb-2", senders[0], "old2@list.example")]);
    env.await_alert(|a| a.kind == "sender_paused" && a.scope == "sender_domain:bouncy.example", WAIT);
    let after: Vec<SendIntent> = (0..5).map(|i| intent(&format!("p-{i}"), senders[i % 2], &format!("n{i}@list.example"))).collect();
    env.send_intents(&after);
    let ids: Vec<String> = after.iter().map(|i| i.intent_id.clone()).collect();
    for d in env.await_decisions(&ids, WAIT).values() {
        assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Paused, "sender_domain_paused"));
    }
    // A resume command lifts it.
    env.send_command(&command(CommandKind::Resume, "sender_domain:bouncy.example"));
    env.await_alert(|a| a.kind == "sender_resumed", WAIT);
    assert_eq!(env.decide_one(intent("after-resume", senders[0], "n@list.example")).status, DecisionStatus::Allowed);
}

#[test]
fn a_backlog_is_routed_in_log_time_order_across_intents_and_delivery_events() {
    // Two domains with 40 sends each counted. Then, published while no
    // processor runs, in this log-time order: 3 hard bounces of the first
    // (7.5 %: a pause), 5 sends from the first, 5 from the second, 3 hard
    // bounces of the second. In log-time order the first domain's 5 are
    // paused and the second's allowed. In the order the client fetches a
    // backlog, one topic's run comes before the other's, and either way a
    // decision changes: the intents first, the first domain's 5 go out; the
    // bounces first, the second domain's 5 are paused too.
    let mut env = TestEnv::new("backlog");
    env.apply_policy(
        r#"
[[policy]]
scope = "tenant:acme"
business_hours = "off"
warmup = "off"
limits = { "mailbox.outbound.day" = 1000, "mailbox.outbound.hour" = "off" }
signals = { min_volume = 40 }
"#,
    );
    let sends = |domain: &str, prefix: &str, n: usize| -> Vec<SendIntent> { (0..n).map(|i| intent(&format!("{prefix}-{i}"), &format!("m{}@{domain}", i % 2), &format!("r{i}-{prefix}@list{}.example", i % 10))).collect() };
    let bounces = |domain: &str| -> Vec<DeliveryEvent> { (0..3).map(|i| hard_bounce(&format!("hb-{domain}-{i}"), &format!("m{}@{domain}", i % 2), &format!("gone{i}@old.example"))).collect() };
    let ids = |intents: &[SendIntent]| -> Vec<String> { intents.iter().map(|i| i.intent_id.clone()).collect() };
    env.start();
    let counted: Vec<SendIntent> = sends("one.example", "one", 40).into_iter().chain(sends("two.example", "two", 40)).collect();
    env.send_intents(&counted);
    // A decision commits with the outcome sent back to the sender stage,
    // which counts the send: once every decision is out, the 80 sends come
    // before anything published below in the sender stage's log.
    assert_eq!(count_status(env.await_decisions(&ids(&counted), WAIT).values(), DecisionStatus::Allowed), 80);
    env.stop();

    let (later_one, later_two) = (sends("one.example", "later-one", 5), sends("two.example", "later-two", 5));
    // Log-append times are milliseconds: a pause keeps the groups apart.
    let gap = || std::thread::sleep(Duration::from_millis(50));
    gap();
    env.send_delivery(&bounces("one.example"));
    gap();
    env.send_intents(&later_one);
    gap();
    env.send_intents(&later_two);
    gap();
    env.send_delivery(&bounces("two.example"));
    env.start();
    let decided = env.await_decisions(&ids(&later_one).into_iter().chain(ids(&later_two)).collect::<Vec<_>>(), WAIT);
    let outcomes: std::collections::BTreeMap<&String, (DecisionStatus, &str)> = decided.iter().map(|(id, d)| (id, (d.status, d.reason.as_str()))).collect();
    for (id, outcome) in &outcomes {
        let expected = if id.starts_with("later-one") { (DecisionStatus::Paused, "sender_domain_paused") } else { (DecisionStatus::Allowed, "ok") };
        assert_eq!(*outcome, expected, "{id}: {outcomes:?}\n{}", env.log_tail());
    }
}

#[test]
fn topics_apply_is_idempotent_and_names_every_difference() {
    let env = TestEnv::new("topics");
    let topo = env.cfg.topology().unwrap();
    let again = env.rt.block_on(sendgate::topology::apply(&topo, &env.cfg.client_config(), 1)).unwrap();
    assert!(again.iter().all(|(_, s)| *s == sendgate::topology::TopicStatus::Matches), "{again:?}");
    // A topology that disagrees with what exists: partitions and timestamp type.
    let text = sendgate::topology::DEFAULT_TOPOLOGY
        .replacen("name = \"alerts\"\nrole = \"output\"\npartitions = 1", "name = \"alerts\"\nrole = \"output\"\npartitions = 3", 1)
        .replacen("name = \"decisions\"\nrole = \"output\"\npartitions = 6\ncleanup_policy = \"delete\"\ntimestamp_type = \"CreateTime\"", "name = \"decisions\"\nrole = \"output\"\npartitions = 6\ncleanup_policy = \"delete\"\ntimestamp_type = \"LogAppendTime\"", 1);
    let changed = sendgate::topology::Topology::parse(&text, &env.cfg.namespace).unwrap();
    let report = env.rt.block_on(sendgate::topology::apply(&changed, &env.cfg.client_config(), 1)).unwrap();
    let differs: HashMap<String, Vec<String>> = report
        .into_iter()
        .filter_map(|(n, s)| match s {
            sendgate::topology::TopicStatus::Differs(d) => Some((n, d)),
            _ => None,
        })
        .collect();
    assert_eq!(differs.len(), 2, "{differs:?}");
    assert!(differs[&env.topic("alerts")][0].contains("partitions: topology says 3, the broker has 1"));
    assert!(differs[&env.topic("decisions")][0].contains("message.timestamp.type: topology says LogAppendTime, the broker has CreateTime"));
}

/// A partition's new owner restores its state while the previous owner's
/// last transaction is still being committed (its commit call has returned;
/// the markers land a moment later). The restore reads to the high
/// watermark and waits for that transaction to be decided: one that
/// stopped at the last stable offset before it lost its state changes,
/// while the input offsets, fetched as stable, began after it (the long
/// fault run found a backoff lost so).
#[test]
fn a_restore_waits_for_the_previous_owners_open_transaction_and_takes_it_in() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use sendgate::stage::{driver::partition_for, keys};
    use sendgate::state::value::{Backoff, StateValue};

    let mut env = TestEnv::new("restore-open");
    // The previous owner's last transaction: a backoff of sender.example at
    // corp.example for a day, written and not committed yet.
    let partition = partition_for("corp.example", env.cfg.topology().unwrap().partitions("stage.recipient_domain"));
    let changelog = env.topic("stage.recipient_domain.changelog");
    let mut config = env.cfg.client_config();
    config.set("transactional.id", format!("{}.previous-owner", env.cfg.namespace));
    let previous: BaseProducer = config.create().unwrap();
    previous.init_transactions(Duration::from_secs(30)).unwrap();
    previous.begin_transaction().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let key = keys::backoff("sender.example", "corp.example");
    let value = StateValue::Backoff(Backoff { consecutive: 3, until_ms: now + 86_400_000, last_ms: now }).encode();
    previous.send(BaseRecord::to(&changelog).partition(partition).key(&key).payload(&value)).map_err(|(e, _)| e).unwrap();
    previous.flush(Duration::from_secs(30)).unwrap();

    // The new owner starts and takes the partition meanwhile.
    env.start();
    let restored = |env: &TestEnv| env.log_text().contains("state restored from changelog stage=recipient_domain ");
    let deadline = std::time::Instant::now() + WAIT;
    while !env.log_text().contains("partitions assigned task=\"recipient_domain\"") {
        assert!(std::time::Instant::now() < deadline, "the stage was never assigned: {}", env.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(!restored(&env), "the restore ended before the open transaction was decided: {}", env.log_tail());
    previous.commit_transaction(Duration::from_secs(30)).unwrap();
    while !restored(&env) {
        assert!(std::time::Instant::now() < deadline, "the restore did not end once the transaction committed: {}", env.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.last_restore("recipient_domain"), Some(1), "the committed backoff was restored: {}", env.log_tail());

    // The backoff holds: the next intent there is deferred.
    env.apply_policy("[[policy]]\nscope = \"tenant:acme\"\nbusiness_hours = \"off\"\nwarmup = \"off\"\n");
    env.send_intents(&[intent("ro-1", "ana@sender.example", "x@corp.example")]);
    let d = env.await_decisions(&["ro-1".into()], WAIT);
    assert_eq!((d["ro-1"].status, d["ro-1"].reason.as_str()), (DecisionStatus::Deferred, "isp_backoff"), "{:?}", d["ro-1"]);
}
