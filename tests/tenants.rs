//! Tenants sharing one deployment, through the real broker: intent ids
//! reused across tenants, a command of one tenant naming another's held
//! intent, and state an earlier release left in the changelog (keyed by
//! intent id alone) read in place after the upgrade.

use crate::common::*;
use sendgate::codec::{self, RecordType};
use sendgate::model::*;
use sendgate::stage::driver::partition_for;
use sendgate::stage::{keys, pipeline, StageKind};
use sendgate::state::StateValue;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn of(tenant: &str, id: &str, sender: &str, recipient: &str) -> SendIntent {
    SendIntent::new(id, tenant, sender, recipient, IntentClass::Outbound)
}

#[test]
fn tenants_reusing_ids_are_decided_apart_and_cannot_approve_each_others_held_intents() {
    let mut env = TestEnv::new("tenants");
    env.start();
    env.apply_policy(OPEN_POLICY);
    let mut held = of("acme", "2", "ops@shared.example", "cfo@corp.example");
    held.requires_approval = true;
    env.send_intents(&[of("acme", "1", "ops@shared.example", "a@corp.example"), of("globex", "1", "ops@shared.example", "g@corp.example"), held]);
    let all = |env: &TestEnv| env.all_decisions();
    let deadline = std::time::Instant::now() + WAIT;
    while all(&env).len() < 3 {
        assert!(std::time::Instant::now() < deadline, "three decisions expected: {:?}\n{}", all(&env), env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
    let ds = all(&env);
    let one: Vec<&Decision> = ds.iter().filter(|d| d.intent_id == "1").collect();
    assert_eq!(one.len(), 2);
    assert!(one.iter().all(|d| d.status == DecisionStatus::Allowed && !d.replayed), "{one:?}");
    assert!(one.iter().any(|d| d.tenant == "globex" && d.recipient == "g@corp.example"));

    // globex approves acme's held intent "2": refused and visible.
    let mut cmd = Command::new(CommandKind::Approve, "globex", "2", "c-globex-2".into());
    cmd.sender = Some("ops@shared.example".into());
    env.send_command(&cmd);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let dls = env.all_dead_letters();
        if dls.iter().any(|d| d.reason.contains(r#"no held intent "2" of tenant "globex""#)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the refused command is a dead letter: {dls:?}\n{}", env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(all(&env).iter().all(|d| d.intent_id != "2" || d.status == DecisionStatus::Held), "nothing approved");
    // acme's own approval sends it.
    let mut cmd = Command::new(CommandKind::Approve, "acme", "2", "c-acme-2".into());
    cmd.sender = Some("ops@shared.example".into());
    env.send_command(&cmd);
    let deadline = std::time::Instant::now() + WAIT;
    while !all(&env).iter().any(|d| d.intent_id == "2" && d.status == DecisionStatus::Allowed) {
        assert!(std::time::Instant::now() < deadline, "acme's approval: {:?}\n{}", all(&env), env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_changelog_written_by_the_release_before_tenant_scoped_ids_keeps_its_decisions_and_held_intents() {
    let mut env = TestEnv::new("upgrade");
    // What the earlier release left in the sender stage's changelog: a
    // final decision and a held intent, keyed by intent id alone.
    let partitions = env.cfg.topology().unwrap().partitions("stage.sender");
    let partition = partition_for("acme.com", partitions);
    let source = SourceRef { topic: env.topic("intents"), partition: 0, offset: 0 };
    let done = pipeline::new_decision(&of("acme", "old-1", "ana@acme.com", "x@corp.example"), 1, &source, StageKind::Sender, DecisionStatus::Allowed, "ok", None, Vec::new(), 1);
    let mut held = of("acme", "old-2", "ana@acme.com", "cfo@corp.example");
    held.requires_approval = true;
    let records = vec![
        (keys::legacy::final_decision("old-1"), StateValue::FinalDecision(codec::encode(RecordType::Decision, &done).unwrap())),
        (keys::legacy::held_intent("old-2"), StateValue::Intent(pipeline::encode_intent(&held))),
    ];
    let changelog = env.topic("stage.sender.changelog");
    let producer = sendgate::cli::kafka_io::producer(&env.cfg).unwrap();
    for (key, value) in records {
        let bytes = value.encode();
        let rec: rdkafka::producer::FutureRecord<'_, [u8], [u8]> = rdkafka::producer::FutureRecord::to(&changelog).partition(partition).key(key.as_slice()).payload(bytes.as_slice());
        env.rt.block_on(producer.send(rec, Duration::from_secs(30))).map_err(|(e, _)| e).unwrap();
    }
    env.start();
    env.apply_policy(OPEN_POLICY);
    env.send_intents(&[of("acme", "old-1", "ana@acme.com", "x@corp.example")]);
    let d = env.await_decisions(&["old-1".to_string()], WAIT);
    assert!(d["old-1"].replayed, "the old idempotency record still answers: {:?}", d["old-1"]);
    let mut cmd = Command::new(CommandKind::Approve, "acme", "old-2", "c-old-2".into());
    cmd.sender = Some("ana@acme.com".into());
    env.send_command(&cmd);
    let d = env.await_decisions(&["old-2".to_string()], WAIT);
    assert_eq!((d["old-2"].status, d["old-2"].recipient.as_str()), (DecisionStatus::Allowed, "cfo@corp.example"));
}

#[test]
fn log_lines_carry_no_address_or_record_value_unless_asked() {
    let bad = of("acme", "bad-1", "ana@acme.com", "bo@corp_example.com");
    // A recipient that is a person's name, not an address: quoted by the reason.
    let named = of("acme", "bad-2", "ana@acme.com", "Ana Lee");
    for show in [false, true] {
        let mut env = TestEnv::with("redact", |_| {}, vec![("SENDGATE_LOG_ADDRESSES".into(), show.to_string())]);
        env.start();
        env.send_intents(&[bad.clone(), named.clone(), of("acme", "ok-1", "ana@acme.com", "x@corp.example")]);
        env.await_decisions(&["ok-1".to_string()], WAIT);
        let dls = env.all_dead_letters();
        assert!(dls.iter().any(|d| d.reason.contains("bo@corp_example.com")), "the dead letter itself keeps the reason whole: {dls:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while env.log_text().matches("dead letter").count() < 2 {
            assert!(std::time::Instant::now() < deadline, "{}", env.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = env.log_text();
        assert_eq!(log.contains("bo@corp_example.com"), show, "log_addresses={show}:\n{log}");
        assert_eq!(log.contains("<address "), !show, "log_addresses={show}:\n{log}");
        assert_eq!(log.contains("Ana Lee"), show, "log_addresses={show}:\n{log}");
        assert_eq!(log.contains("<value "), !show, "log_addresses={show}:\n{log}");
    }
}

#[test]
fn an_owned_domain_refuses_other_tenants_intents_and_commands() {
    let mut env = TestEnv::new("owner");
    env.start();
    env.apply_policy(&format!("{OPEN_POLICY}\n[[policy]]\nscope = \"sender_domain:acme.com\"\nowner = \"acme\"\n"));
    env.send_intents(&[of("acme", "o-1", "ana@acme.com", "x@corp.example"), of("globex", "o-2", "ana@acme.com", "y@corp.example")]);
    let d = env.await_decisions(&["o-1".to_string(), "o-2".to_string()], WAIT);
    assert_eq!(d["o-1"].status, DecisionStatus::Allowed);
    assert_eq!((d["o-2"].status, d["o-2"].reason.as_str()), (DecisionStatus::Blocked, "sender_domain_owned_by_another_tenant"));
    env.send_command(&Command::new(CommandKind::Pause, "globex", "sender_domain:acme.com", "c-g-pause".into()));
    let deadline = std::time::Instant::now() + WAIT;
    while !env.all_dead_letters().iter().any(|dl| dl.reason.contains("another tenant owns")) {
        assert!(std::time::Instant::now() < deadline, "the refused pause is a dead letter\n{}", env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
    env.send_intents(&[of("acme", "o-3", "ana@acme.com", "z@corp.example")]);
    let d = env.await_decisions(&["o-3".to_string()], WAIT);
    assert_eq!(d["o-3"].status, DecisionStatus::Allowed, "not paused by another tenant");
}
