//! Kafka ACLs through the test broker's standard authorizer
//! (scripts/kafka/secure.sh: StandardAuthorizer, no access without an ACL).
//! sendgate runs as a principal with exactly the grants `sendgate config
//! acls` prints; an app principal may only write intents and read
//! decisions, a mail pipeline's only write delivery events; the broker
//! refuses everything else, so no client of the cluster can forge a
//! command, a policy or a stage record, or read another tenant's state
//! from a changelog.

use crate::common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sendgate::cli::kafka_io;
use sendgate::codec::{self, RecordType};
use sendgate::config::Config;
use sendgate::model::*;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
const SERVICE: &str = "sendgate_service";
const APP: &str = "sendgate_app";
const PIPELINE: &str = "sendgate_pipeline";

fn password(sec: &Secure, user: &str) -> String {
    sec.get(&format!("KAFKA_ACL_{}_PASSWORD", user.to_uppercase()))
}

/// Grants the ACLs that `sendgate config acls` prints for namespace `ns`,
/// by running its script with the broker's own kafka-acls tool, as the
/// PLAINTEXT listener's super user.
fn grant_printed_acls(ns: &str, app_group_prefix: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sendgate"))
        .args(["config", "acls", "--sendgate", &format!("User:{SERVICE}"), "--app", &format!("User:{APP}")])
        .args(["--app-group-prefix", app_group_prefix, "--pipeline", &format!("User:{PIPELINE}")])
        .env("SENDGATE_NAMESPACE", ns)
        .env("SENDGATE_BOOTSTRAP", bootstrap())
        .env("SENDGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "sendgate config acls: {}", String::from_utf8_lossy(&out.stderr));
    let script = String::from_utf8(out.stdout).unwrap();
    let acl_tool = format!("{} tool org.apache.kafka.tools.AclCommand", env_var("SENDGATE_TEST_KAFKA_SCRIPT"));
    let run = Command::new("sh").arg("-c").arg(&script).env("BOOTSTRAP", bootstrap()).env("KAFKA_ACLS", acl_tool).output().unwrap();
    assert!(run.status.success(), "the ACL script failed: {}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    script
}

/// `base` connecting through SASL_SSL (SCRAM-SHA-512) as `user`.
fn as_user(base: &Config, sec: &Secure, user: &str) -> Config {
    let mut c = base.clone();
    c.bootstrap = sec.get("KAFKA_SASL_SSL_BOOTSTRAP");
    c.security = sec.scram_security(user, &password(sec, user));
    c
}

/// Sends one record as `cfg`'s principal; the broker's answer.
fn try_send(env: &TestEnv, cfg: &Config, topic: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
    let producer = kafka_io::producer(cfg).unwrap();
    let failures = env.rt.block_on(kafka_io::send_all(&producer, &env.topic(topic), vec![(key.as_bytes().to_vec(), Some(value))]));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn assert_denied(result: Result<(), String>, what: &str) {
    match result {
        Ok(()) => panic!("{what}: the broker accepted it"),
        Err(e) => assert!(e.contains("uthorization"), "{what}: refused, but not by the authorizer: {e}"),
    }
}

/// Decisions read by `cfg`'s principal in consumer group `group`, until
/// every id in `ids` is seen.
fn read_decisions_as(cfg: &Config, group: &str, topic: &str, ids: &[&str], timeout: Duration) -> Result<HashMap<String, Decision>, String> {
    let consumer: BaseConsumer = cfg
        .client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let mut got = HashMap::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !ids.iter().all(|id| got.contains_key(*id)) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let d: Decision = codec::decode(RecordType::Decision, m.payload().unwrap_or_default()).map_err(|e| e.to_string())?;
                got.insert(d.intent_id.clone(), d);
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    Ok(got)
}

/// Reads from `topic`'s partition 0 without a group; the first error.
fn try_read(cfg: &Config, topic: &str) -> Result<(), String> {
    let consumer: BaseConsumer = cfg.client_config().set("group.id", "unused-assign-only").create().map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(_)) => return Ok(()),
            None => {}
        }
    }
    Ok(())
}

#[test]
fn each_principal_can_do_only_what_its_acls_grant_and_sendgate_runs_with_exactly_its_own() {
    let sec = Secure::load();
    let mut app_group_prefix = String::new();
    let mut script = String::new();
    // The grants go in before the namespace's topics exist: sendgate's
    // principal creates them itself (TestEnv::with applies the topology
    // with the adjusted configuration).
    let mut env = TestEnv::with(
        "acls",
        |c| {
            app_group_prefix = format!("app-{}.", c.namespace);
            script = grant_printed_acls(&c.namespace, &app_group_prefix);
            *c = as_user(c, &sec, SERVICE);
            c.api_addr = format!("127.0.0.1:{}", free_port());
        },
        vec![
            ("SENDGATE_API_TOKENS".into(), "operator=acl-operator-token-0123456789".into()),
            ("SENDGATE_KAFKA_SECURITY_PROTOCOL".into(), "SASL_SSL".into()),
            ("SENDGATE_KAFKA_SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
            ("SENDGATE_KAFKA_SASL_USERNAME".into(), SERVICE.into()),
            ("SENDGATE_KAFKA_SASL_PASSWORD".into(), password(&sec, SERVICE)),
            ("SENDGATE_KAFKA_SSL_CA_FILE".into(), sec.get("KAFKA_SSL_CA_LOCATION")),
        ],
    );
    assert!(script.contains(&format!("'User:{APP}'")) && script.contains(&format!("'User:{PIPELINE}'")), "{script}");
    let service = env.cfg.clone();
    let app = as_user(&service, &sec, APP);
    let pipeline = as_user(&service, &sec, PIPELINE);
    // An operator's writes (the policy, here) go through the super user.
    let mut operator = service.clone();
    operator.bootstrap = bootstrap();
    operator.security = Default::default();

    env.start();
    let docs = sendgate::policy::file::parse_policy_file(OPEN_POLICY).unwrap();
    env.rt.block_on(sendgate::cli::ops::publish_policies(&operator, docs, "test")).unwrap();

    // The pipeline reports a hard bounce; the app publishes intents, one
    // of them to the bounced address.
    let bounce = hard_bounce("acl-bounce", "ana@acme.com", "gone@corp.example");
    try_send(&env, &pipeline, "delivery", &bounce.sender, codec::encode(RecordType::DeliveryEvent, &bounce).unwrap()).expect("the pipeline writes delivery events");
    std::thread::sleep(Duration::from_secs(2));
    let intents = [intent("acl-1", "ana@acme.com", "one@corp.example"), intent("acl-2", "ana@acme.com", "gone@corp.example")];
    for i in &intents {
        try_send(&env, &app, "intents", &i.sender, codec::encode(RecordType::SendIntent, i).unwrap()).expect("the app writes intents");
    }

    // The app reads the decisions in a group of its own.
    let decisions = read_decisions_as(&app, &format!("{app_group_prefix}decisions"), &env.topic("decisions"), &["acl-1", "acl-2"], WAIT).expect("the app reads decisions");
    assert_eq!(decisions.get("acl-1").map(|d| d.status), Some(DecisionStatus::Allowed), "{decisions:?}\n{}", env.log_tail());
    let d2 = decisions.get("acl-2").unwrap_or_else(|| panic!("no decision for acl-2: {decisions:?}\n{}", env.log_tail()));
    assert_eq!((d2.status, d2.reason.as_str()), (DecisionStatus::Blocked, "recipient_suppressed"), "the pipeline's bounce reached the stages");
    // Its API reads the decisions back (request-reply, lookups) and the
    // instances topic, with the same grants.
    let api = format!("http://{}", env.cfg.api_addr);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let a = call(&api, Some("acl-operator-token-0123456789"), "GET", "/v1/decisions/acl-1?tenant=acme", None);
        if a.status == 200 {
            assert_eq!(a.json()["status"], "ALLOWED");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the API never read acl-1's decision: {} {}\n{}", a.status, a.body, env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
    let held = call(&api, Some("acl-operator-token-0123456789"), "GET", "/v1/held", None);
    assert_eq!(held.status, 200, "{}", held.body);
    let log = env.log_text();
    assert!(log.contains(&format!("SASL_SSL SCRAM-SHA-512 as {SERVICE}")), "the processor connects as its own principal: {}", env.log_tail());
    assert!(!log.to_lowercase().contains("authorization"), "sendgate ran into a refusal with its own grants:\n{}", env.log_tail());

    // The app: no commands, policies, stage or changelog records, no
    // decisions of its own making, no delivery events.
    let approve = command(CommandKind::Approve, "acl-1");
    let forged = [
        ("commands", codec::encode(RecordType::Command, &approve).unwrap()),
        ("policies", b"{}".to_vec()),
        ("stage.sender", b"forged".to_vec()),
        ("stage.sender.changelog", b"forged".to_vec()),
        ("stage.recipient", b"forged".to_vec()),
        ("decisions", b"forged".to_vec()),
        ("delivery", codec::encode(RecordType::DeliveryEvent, &bounce).unwrap()),
    ];
    for (topic, value) in &forged {
        assert_denied(try_send(&env, &app, topic, "k", value.clone()), &format!("the app writing {topic}"));
    }
    // The pipeline: no intents, no commands.
    assert_denied(try_send(&env, &pipeline, "intents", "k", codec::encode(RecordType::SendIntent, &intents[0]).unwrap()), "the pipeline writing intents");
    assert_denied(try_send(&env, &pipeline, "commands", "k", codec::encode(RecordType::Command, &approve).unwrap()), "the pipeline writing commands");
    // Nor can the app read another tenant's state from a changelog, or the
    // commands, or join sendgate's own consumer group.
    for topic in ["stage.recipient.changelog", "commands", "intents"] {
        assert_denied(try_read(&app, &env.topic(topic)), &format!("the app reading {topic}"));
    }
    let group = format!("{}.router", service.namespace);
    let err = read_decisions_as(&app, &group, &env.topic("decisions"), &["acl-1"], Duration::from_secs(20)).expect_err("the app joining sendgate's group");
    assert!(err.contains("uthorization"), "{err}");

    // Nothing forged reached a decision: the app's forged approve is not on
    // the commands topic, and every decision is one of the two intents'.
    // (Read as the operator: sendgate's principal only writes decisions.)
    env.cfg = operator;
    let all = env.all_decisions();
    assert!(all.iter().all(|d| d.intent_id == "acl-1" || d.intent_id == "acl-2"), "{all:?}");
    env.stop();
}
