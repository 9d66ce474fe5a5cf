//! The processor's HTTP API against the real broker: usage before a batch,
//! and simulations that reserve nothing.

mod common;

use common::*;
use sendgate::model::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn window<'a>(usage: &'a serde_json::Value, class: &str, window: &str) -> &'a serde_json::Value {
    usage["windows"].as_array().unwrap().iter().find(|w| w["class"] == class && w["window"] == window).unwrap_or_else(|| panic!("no {class} {window} window in {usage}"))
}

#[test]
fn usage_reports_capacity_and_a_simulation_reserves_nothing() {
    let mut env = TestEnv::new("api");
    env.cfg.api_addr = format!("127.0.0.1:{}", free_port());
    env.start();
    env.apply_policy(
        r#"
[[policy]]
scope = "tenant:acme"
business_hours = "off"
warmup = "off"
limits = { "mailbox.outbound.hour" = 2, "mailbox.outbound.day" = 10 }
"#,
    );
    env.send_intents(&[intent("u-1", "ana@acme.com", "a@corp.example"), intent("u-2", "ana@acme.com", "b@corp.example")]);
    env.await_decisions(&["u-1".into(), "u-2".into()], WAIT);
    let addr = env.cfg.api_addr.clone();

    let usage = |env: &TestEnv| -> serde_json::Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            // The API reads committed state: wait until it shows both sends.
            let (status, body) = http(&addr, "GET", "/v1/usage?scope=mailbox:ana@acme.com&tenant=acme", "");
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if window(&v, "outbound", "hour")["used"] == 2 || std::time::Instant::now() > deadline {
                return v;
            }
            let _ = env;
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let before = usage(&env);
    let hour = window(&before, "outbound", "hour");
    assert_eq!((hour["used"].as_i64(), hour["limit"].as_i64(), hour["remaining"].as_i64()), (Some(2), Some(2), Some(0)), "{before}");
    assert_eq!(window(&before, "outbound", "day")["remaining"], 8);
    assert!(before["policy_version"].as_i64().unwrap() > 0);
    assert_eq!(before["signals"]["bounce_tier"], "healthy");

    // What would happen now: the mailbox is at its hourly limit.
    let (status, body) = http(&addr, "POST", "/v1/simulate", r#"[{"intent_id":"sim-1","tenant":"acme","sender":"ana@acme.com","recipient":"c@corp.example","class":"OUTBOUND"},{"intent_id":"sim-2","tenant":"acme","sender":"bo@acme.com","recipient":"d@corp.example","class":"OUTBOUND"}]"#);
    assert_eq!(status, 200, "{body}");
    let sims: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sims[0]["decision"]["status"], "DEFERRED", "{sims}");
    assert_eq!(sims[0]["decision"]["reason"], "hourly_limit_exceeded");
    assert!(sims[0]["checks"].as_array().unwrap().iter().any(|c| c["check"] == "window" && c["outcome"].as_str().unwrap().starts_with("breached")), "{sims}");
    assert_eq!(sims[1]["decision"]["status"], "ALLOWED", "{sims}");

    // Nothing was reserved: usage is unchanged, and bo's real first send is allowed.
    let after = usage(&env);
    assert_eq!(window(&after, "outbound", "hour"), window(&before, "outbound", "hour"));
    let (_, bo) = http(&addr, "GET", "/v1/usage?scope=mailbox:bo@acme.com&tenant=acme", "");
    assert!(bo.contains("\"used\": 0"), "{bo}");
    env.send_intents(&[intent("u-3", "bo@acme.com", "d@corp.example")]);
    assert_eq!(env.await_decisions(&["u-3".into()], WAIT)["u-3"].status, DecisionStatus::Allowed);

    // The same from the command line.
    let file = env.dir.path().join("intents.jsonl");
    std::fs::write(&file, "{\"intent_id\":\"sim-3\",\"tenant\":\"acme\",\"sender\":\"ana@acme.com\",\"recipient\":\"e@corp.example\",\"class\":\"OUTBOUND\"}\n").unwrap();
    let (ok, out, err) = env.cli(&["simulate", file.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("sim-3 DEFERRED hourly_limit_exceeded"), "{out}");
    assert!(out.contains("window") && out.contains("mailbox:ana@acme.com hour"), "{out}");

    // Bad requests say what to fix.
    let (status, body) = http(&addr, "GET", "/v1/usage", "");
    assert_eq!(status, 400);
    assert!(body.contains("scope"), "{body}");
    let (status, body) = http(&addr, "POST", "/v1/simulate", r#"{"intent_id":"x"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("missing field"), "{body}");
}
