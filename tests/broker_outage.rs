//! The broker goes away for a minute while the processor runs, and comes back: nothing
//! is lost or duplicated. A test binary of its own, because it restarts the
//! broker that the other integration tests share (cargo runs test binaries
//! one after another).

mod common;

use common::*;
use sendgate::model::*;
use std::process::Command;
use std::time::Duration;

fn kafka(cmd: &str) {
    let script = std::env::var("SENDGATE_TEST_KAFKA_SCRIPT").expect("SENDGATE_TEST_KAFKA_SCRIPT: run the tests with scripts/test.sh, which starts the broker");
    let status = Command::new("bash").arg(script).arg(cmd).status().expect("run kafka.sh");
    assert!(status.success(), "kafka.sh {cmd} failed");
}

#[test]
fn a_broker_outage_is_waited_out_without_losing_or_duplicating_decisions() {
    let mut env = TestEnv::new("outage");
    env.start();
    env.apply_policy(
        r#"
[[policy]]
scope = "mailbox:ops@acme.com"
business_hours = "off"
warmup = "off"
limits = { "mailbox.outbound.day" = 30, "mailbox.outbound.hour" = "off" }
"#,
    );
    let intents: Vec<SendIntent> = (0..40).map(|i| intent(&format!("o-{i}"), "ops@acme.com", &format!("r{i}@corp.example"))).collect();
    env.send_intents(&intents[..20]);
    let ids: Vec<String> = intents[..20].iter().map(|i| i.intent_id.clone()).collect();
    env.await_decisions(&ids, Duration::from_secs(120));

    // A minute without the broker (plus its start-up): longer than the
    // transaction and message timeouts, so transactions fail, are aborted
    // and the clients are rebuilt, again and again, until it is back.
    kafka("stop");
    std::thread::sleep(Duration::from_secs(60));
    kafka("start");

    env.send_intents(&intents[20..]);
    let ids: Vec<String> = intents.iter().map(|i| i.intent_id.clone()).collect();
    env.await_decisions(&ids, Duration::from_secs(180));
    let all = env.all_decisions();
    assert_one_decision_per_intent(&all, 40);
    assert_eq!(count_status(&all, DecisionStatus::Allowed), 30);
    assert_eq!(count_status(&all, DecisionStatus::Deferred), 10);
    // The processor stayed up through the outage.
    env.stop();
}
