//! The processor's HTTP API against the real broker: usage before a batch,
//! and simulations that reserve nothing.

mod common;

use common::*;
use sendgate::model::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const OPERATOR: &str = "operator-token-0123456789";
const ACME: &str = "acme-token-0123456789abc";
const GLOBEX: &str = "globex-token-0123456789a";

fn window<'a>(usage: &'a serde_json::Value, class: &str, window: &str) -> &'a serde_json::Value {
    usage["windows"].as_array().unwrap().iter().find(|w| w["class"] == class && w["window"] == window).unwrap_or_else(|| panic!("no {class} {window} window in {usage}"))
}

#[test]
fn usage_reports_capacity_and_a_simulation_reserves_nothing() {
    let tokens = format!("operator={OPERATOR},tenant:acme={ACME},tenant:globex={GLOBEX}");
    let mut env = TestEnv::with("api", |c| c.api_addr = format!("127.0.0.1:{}", free_port()), vec![("SENDGATE_API_TOKENS".into(), tokens), ("SENDGATE_API_TOKEN".into(), ACME.into())]);
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
            let (status, body) = http(&addr, Some(ACME), "GET", "/v1/usage?scope=mailbox:ana@acme.com&tenant=acme", "");
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
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/simulate", r#"[{"intent_id":"sim-1","tenant":"acme","sender":"ana@acme.com","recipient":"c@corp.example","class":"OUTBOUND"},{"intent_id":"sim-2","tenant":"acme","sender":"bo@acme.com","recipient":"d@corp.example","class":"OUTBOUND"}]"#);
    assert_eq!(status, 200, "{body}");
    let sims: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sims[0]["decision"]["status"], "DEFERRED", "{sims}");
    assert_eq!(sims[0]["decision"]["reason"], "hourly_limit_exceeded");
    assert!(sims[0]["checks"].as_array().unwrap().iter().any(|c| c["check"] == "window" && c["outcome"].as_str().unwrap().starts_with("breached")), "{sims}");
    assert_eq!(sims[1]["decision"]["status"], "ALLOWED", "{sims}");

    // Nothing was reserved: usage is unchanged, and bo's real first send is allowed.
    let after = usage(&env);
    assert_eq!(window(&after, "outbound", "hour"), window(&before, "outbound", "hour"));
    let (_, bo) = http(&addr, Some(ACME), "GET", "/v1/usage?scope=mailbox:bo@acme.com&tenant=acme", "");
    let bo: serde_json::Value = serde_json::from_str(&bo).unwrap();
    assert_eq!(window(&bo, "outbound", "hour")["used"], 0, "{bo}");
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
    let (status, body) = http(&addr, Some(ACME), "GET", "/v1/usage", "");
    assert_eq!(status, 400);
    assert!(body.contains("scope"), "{body}");
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/simulate", r#"{"intent_id":"x"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("missing field"), "{body}");

    // No token, no access (but the health check); a tenant's token sees its
    // tenant alone; the operator's sees every tenant.
    assert_eq!(http(&addr, None, "GET", "/healthz", "").0, 200);
    let (status, body) = http(&addr, None, "GET", "/v1/usage?scope=mailbox:ana@acme.com&tenant=acme", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(http(&addr, Some("acme-token-0123456789abX"), "GET", "/v1/usage?scope=mailbox:ana@acme.com&tenant=acme", "").0, 401, "a wrong token");
    assert_eq!(http(&addr, None, "POST", "/v1/simulate", "[]").0, 401);
    for (token, path) in [(GLOBEX, "/v1/usage?scope=mailbox:ana@acme.com&tenant=acme"), (GLOBEX, "/v1/usage?scope=tenant:acme"), (ACME, "/v1/usage?scope=mailbox:ana@acme.com&tenant=globex")] {
        let (status, body) = http(&addr, Some(token), "GET", path, "");
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("another tenant"), "{body}");
    }
    let (status, body) = http(&addr, Some(GLOBEX), "POST", "/v1/simulate", r#"{"intent_id":"g","tenant":"acme","sender":"ana@acme.com","recipient":"c@corp.example","class":"OUTBOUND"}"#);
    assert_eq!(status, 403, "{body}");
    // A domain acme owns (and its mailboxes) is acme's to read, whatever tenant globex names.
    env.apply_policy("[[policy]]\nscope = \"sender_domain:acme.com\"\nowner = \"acme\"\n");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http(&addr, Some(GLOBEX), "GET", "/v1/usage?scope=mailbox:ana@acme.com&tenant=globex", "");
        if status == 403 {
            assert!(body.contains("another tenant"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "globex still reads acme's mailbox: {status} {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(http(&addr, Some(GLOBEX), "GET", "/v1/usage?scope=sender_domain:acme.com&tenant=globex", "").0, 403);
    assert_eq!(http(&addr, Some(ACME), "GET", "/v1/usage?scope=sender_domain:acme.com&tenant=acme", "").0, 200);
    let (status, body) = http(&addr, Some(OPERATOR), "GET", "/v1/usage?scope=mailbox:ana@acme.com&tenant=acme", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(window(&serde_json::from_str(&body).unwrap(), "outbound", "hour")["used"], 2);
}
