//! The processor's HTTP API against the real broker: usage before a batch,
//! and simulations that reserve nothing.

use crate::common::*;
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
    assert_eq!(env.decide_one(intent("u-3", "bo@acme.com", "d@corp.example")).status, DecisionStatus::Allowed);

    // The recipient side: a recipient's windows are its tenant's; a
    // recipient domain's are per sender domain (with &sender=) and a
    // public provider's domain limits do not apply.
    let get = |token: &str, path: &str| -> serde_json::Value {
        let (status, body) = http(&addr, Some(token), "GET", path, "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let a = get(ACME, "/v1/usage?scope=recipient:A@corp.example");
    assert_eq!((a["scope"].as_str(), window(&a, "outbound", "day")["used"].as_i64(), window(&a, "outbound", "day")["limit"].as_i64()), (Some("recipient:a@corp.example"), Some(1), Some(10)), "normalised as the router does: {a}");
    assert_eq!(window(&get(GLOBEX, "/v1/usage?scope=recipient:a@corp.example"), "outbound", "day")["used"], 0, "counted per tenant");
    let rd = get(ACME, "/v1/usage?scope=recipient_domain:corp.example&sender=acme.com");
    let hour = window(&rd, "outbound", "hour");
    assert_eq!((hour["scope"].as_str(), hour["used"].as_i64(), hour["limit"].as_i64()), (Some("sender_domain:acme.com/recipient_domain:corp.example"), Some(3), Some(50)), "{rd}");
    assert!(get(ACME, "/v1/usage?scope=recipient_domain:corp.example")["windows"].as_array().unwrap().is_empty(), "per sender domain: none without one");
    assert_eq!(get(ACME, "/v1/usage?scope=recipient_domain:gmail.com&sender=acme.com")["public_provider"], true);

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
    assert_eq!(http(&addr, Some(GLOBEX), "GET", "/v1/usage?scope=recipient_domain:corp.example&sender=acme.com", "").0, 403, "acme.com's counters per recipient domain are acme's");
    assert_eq!(http(&addr, Some(ACME), "GET", "/v1/usage?scope=sender_domain:acme.com&tenant=acme", "").0, 200);
    let (status, body) = http(&addr, Some(OPERATOR), "GET", "/v1/usage?scope=mailbox:ana@acme.com&tenant=acme", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(window(&serde_json::from_str(&body).unwrap(), "outbound", "hour")["used"], 2);
}

/// Waits for /readyz to answer 200.
fn await_ready(addr: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http(addr, None, "GET", "/readyz", "");
        if status == 200 {
            assert!(body.contains("\"ready\":true"), "{body}");
            return;
        }
        assert_eq!(status, 503, "{body}");
        assert!(std::time::Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn api_env(name: &str, extra: Vec<(String, String)>) -> TestEnv {
    let tokens = format!("operator={OPERATOR},tenant:acme={ACME},tenant:globex={GLOBEX}");
    let mut env_vars = vec![("SENDGATE_API_TOKENS".into(), tokens)];
    env_vars.extend(extra);
    let mut env = TestEnv::with(name, |c| c.api_addr = format!("127.0.0.1:{}", free_port()), env_vars);
    env.start();
    env
}

fn intent_json(id: &str, tenant: &str, sender: &str, recipient: &str) -> String {
    format!(r#"{{"intent_id":"{id}","tenant":"{tenant}","sender":"{sender}","recipient":"{recipient}","class":"OUTBOUND"}}"#)
}

#[test]
fn intents_posted_over_http_are_answered_with_their_decision_records() {
    let env = api_env("reqreply", Vec::new());
    env.apply_policy(OPEN_POLICY);
    let addr = env.cfg.api_addr.clone();
    await_ready(&addr);

    // A batch of 10 answered with its 10 decisions in one call, in order.
    // (Ten mailboxes: the default policy allows three sends an hour per mailbox.)
    let batch: Vec<String> = (0..10).map(|i| intent_json(&format!("rr-{i}"), "acme", &format!("m{i}@acme.com"), &format!("r{i}@corp.example"))).collect();
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=20000", &format!("[{}]", batch.join(",")));
    assert_eq!(status, 200, "{body}\n{}", env.log_tail());
    let ds: Vec<Decision> = serde_json::from_str(&body).unwrap();
    assert_eq!(ds.iter().map(|d| d.intent_id.as_str()).collect::<Vec<_>>(), (0..10).map(|i| format!("rr-{i}")).collect::<Vec<_>>());
    assert!(ds.iter().all(|d| d.status == DecisionStatus::Allowed && d.tenant == "acme"), "{body}");
    // The decision records themselves: the same as on the decisions topic.
    let on_topic = env.await_decisions(&["rr-3".into()], WAIT);
    assert_eq!(on_topic["rr-3"], ds[3]);
    assert_eq!(ds[3].source.topic, env.topic("intents"), "decided from the intents topic, like any intent");

    // One object: one decision object.
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=20000", &intent_json("rr-one", "acme", "ana@acme.com", "x@corp.example"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Decision>(&body).unwrap().intent_id, "rr-one");

    // Without a wait: 202 and where to fetch it; then fetched.
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/intents", &intent_json("rr-later", "acme", "ana@acme.com", "y@corp.example"));
    assert_eq!(status, 202, "{body}");
    let accepted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(accepted["pending"][0], "rr-later");
    let poll = accepted["poll"][0].as_str().unwrap().to_string();
    assert_eq!(poll, "/v1/decisions/rr-later?tenant=acme");
    let deadline = std::time::Instant::now() + WAIT;
    let fetched = loop {
        let (status, body) = http(&addr, Some(ACME), "GET", &poll, "");
        if status == 200 {
            break serde_json::from_str::<Decision>(&body).unwrap();
        }
        assert_eq!(status, 404, "{body}");
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((fetched.intent_id.as_str(), fetched.status), ("rr-later", DecisionStatus::Allowed));

    // Tenants apart: the same id for two tenants, two decisions; a token
    // reads its own tenant's only.
    let (status, body) = http(&addr, Some(OPERATOR), "POST", "/v1/intents?wait_ms=20000", &format!("[{},{}]", intent_json("same-1", "acme", "ana@acme.com", "a@corp.example"), intent_json("same-1", "globex", "gus@globex.example", "b@corp.example")));
    assert_eq!(status, 200, "{body}");
    let (_, a) = http(&addr, Some(ACME), "GET", "/v1/decisions/same-1", "");
    let (_, g) = http(&addr, Some(GLOBEX), "GET", "/v1/decisions/same-1", "");
    assert_eq!(serde_json::from_str::<Decision>(&a).unwrap().recipient, "a@corp.example");
    assert_eq!(serde_json::from_str::<Decision>(&g).unwrap().recipient, "b@corp.example");
    let (status, body) = http(&addr, Some(GLOBEX), "GET", "/v1/decisions/rr-1?tenant=acme", "");
    assert_eq!(status, 403, "{body}");
    assert_eq!(http(&addr, Some(GLOBEX), "GET", "/v1/decisions/rr-1", "").0, 404, "globex has no rr-1");
    let (status, body) = http(&addr, Some(GLOBEX), "POST", "/v1/intents", &intent_json("g-1", "acme", "ana@acme.com", "c@corp.example"));
    assert_eq!(status, 403, "{body}");
    assert_eq!(http(&addr, None, "POST", "/v1/intents", &intent_json("n-1", "acme", "ana@acme.com", "c@corp.example")).0, 401);

    // An intent the router would dead-letter is refused, and nothing of its
    // request is published.
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=1000", &format!("[{},{}]", intent_json("ok-x", "acme", "ana@acme.com", "z@corp.example"), intent_json("bad-x", "acme", "ana@acme.com", "Ana Lee")));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("intent #2 (bad-x)") && body.contains("recipient"), "{body}");
    assert_eq!(http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=30001", &intent_json("w", "acme", "ana@acme.com", "c@corp.example")).0, 400);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http(&addr, Some(ACME), "GET", "/v1/decisions/ok-x", "").0, 404, "ok-x was not published");
    assert!(env.all_decisions().iter().all(|d| d.intent_id != "ok-x"));
}

#[test]
fn usage_shows_warm_up_caps_and_reads_plus_addresses_percent_encoded() {
    let env = api_env("usage-warmup", Vec::new());
    env.apply_policy(
        r#"
[[policy]]
scope = "default"
business_hours = "off"
warmup = "off"

[[policy]]
scope = "sender_domain:warm.example"
warmup = { steps = [{ until_day = 7, hour = 20, day = 100 }] }
"#,
    );
    let addr = env.cfg.api_addr.clone();
    await_ready(&addr);
    assert_eq!(env.decide_one(intent("w-1", "ana+news@warm.example", "a@corp.example")).status, DecisionStatus::Allowed);
    let deadline = std::time::Instant::now() + WAIT;
    let usage = loop {
        let (status, body) = http(&addr, Some(ACME), "GET", "/v1/usage?scope=mailbox:ana%2Bnews%40warm.example", "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if window(&v, "all", "hour")["used"] == 1 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(usage["scope"], "mailbox:ana+news@warm.example", "%2B is a '+': {usage}");
    let hour = window(&usage, "all", "hour");
    assert_eq!((hour["scope"].as_str(), hour["limit"].as_i64(), hour["remaining"].as_i64()), (Some("warmup:sender_domain:warm.example"), Some(20), Some(19)), "the warm-up cap binds: {usage}");
    assert_eq!(window(&usage, "all", "day")["limit"], 100);
    // A bare '+' in a query is a space: an invalid address, said so, never another mailbox.
    let (status, body) = http(&addr, Some(ACME), "GET", "/v1/usage?scope=mailbox:ana+news@warm.example", "");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn the_openapi_document_validates_and_the_api_serves_over_tls() {
    let sec = Secure::load();
    let tls_dir = std::path::Path::new(&sec.get("KAFKA_SSL_CA_LOCATION")).parent().unwrap().to_path_buf();
    let env = api_env(
        "api-tls",
        vec![
            ("SENDGATE_API_TLS_CERT_FILE".into(), tls_dir.join("broker.pem").display().to_string()),
            ("SENDGATE_API_TLS_KEY_FILE".into(), tls_dir.join("broker.key").display().to_string()),
        ],
    );
    let addr = env.cfg.api_addr.clone();
    let doc_file = env.dir.path().join("openapi.json");
    let curl = |path: &str, out: Option<&std::path::Path>| -> std::process::Output {
        let mut c = std::process::Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--cacert", &sec.get("KAFKA_SSL_CA_LOCATION"), "-w", "%{http_code}"]);
        if let Some(o) = out {
            c.arg("-o").arg(o);
        }
        c.arg(format!("https://127.0.0.1:{}{path}", addr.rsplit(':').next().unwrap())).output().expect("curl")
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let out = curl("/openapi.json", Some(&doc_file));
        if String::from_utf8_lossy(&out.stdout) == "200" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no TLS answer: {} {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr), env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
    // Plain HTTP on the TLS port gets no answer.
    assert!(sendgate::cli::audit::http_request(&addr, "GET", "/healthz", "", None).is_err(), "plain HTTP answered on the TLS port");
    // No token, no usage, over TLS too.
    assert_eq!(String::from_utf8_lossy(&curl("/v1/usage?scope=tenant:acme", None).stdout).rsplit('}').next().unwrap(), "401");

    // The document: every endpoint, validated by a validator from PyPI.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&doc_file).unwrap()).unwrap();
    for p in ["/v1/intents", "/v1/decisions", "/v1/decisions/{intent_id}", "/v1/explain/{intent_id}", "/v1/alerts", "/v1/whoami", "/v1/metrics", "/v1/simulate", "/v1/usage", "/v1/held", "/v1/held/{intent_id}/approve", "/v1/held/{intent_id}/reject", "/v1/senders", "/v1/senders/{scope}/pause", "/v1/senders/{scope}/resume", "/healthz", "/readyz", "/openapi.json"] {
        assert!(doc["paths"].get(p).is_some(), "{p} is not in the document");
    }
    let python = env_var("SENDGATE_TEST_PYTHON");
    let validator = std::path::Path::new(&python).parent().unwrap().join("openapi-spec-validator");
    let out = std::process::Command::new(&validator).arg(&doc_file).output().unwrap_or_else(|e| panic!("{}: {e}", validator.display()));
    assert!(out.status.success(), "the OpenAPI document does not validate:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Polls `path` until `pred` holds for its JSON answer.
fn await_json(addr: &str, token: &str, path: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http(addr, Some(token), "GET", path, "");
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if pred(&v) {
                return v;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_held_intent_is_listed_and_approved_and_a_paused_domain_listed_and_resumed_over_http() {
    let env = api_env("operator", Vec::new());
    env.apply_policy(OPEN_POLICY);
    let addr = env.cfg.api_addr.clone();
    await_ready(&addr);

    // Held for approval, listed for its tenant and the operator, not for another.
    let held = r#"{"intent_id":"h-1","tenant":"acme","sender":"ana@acme.com","recipient":"cfo@corp.example","class":"OUTBOUND","requires_approval":true}"#;
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=20000", held);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Decision>(&body).unwrap().status, DecisionStatus::Held);
    let listed = await_json(&addr, ACME, "/v1/held", |v| v["held"].as_array().unwrap().iter().any(|i| i["intent_id"] == "h-1"));
    assert_eq!(listed["held"][0]["recipient"], "cfo@corp.example");
    assert!(await_json(&addr, OPERATOR, "/v1/held", |_| true)["held"].as_array().unwrap().iter().any(|i| i["intent_id"] == "h-1"));
    assert!(await_json(&addr, GLOBEX, "/v1/held", |_| true)["held"].as_array().unwrap().is_empty(), "globex sees no acme intent");
    // `sendgate held`, the same list from the command line, for each token.
    let url = format!("http://{addr}");
    // (The URL defaults to the processor's own API address.)
    let (ok, out, err) = env.cli(&["held", "--api-token", ACME]);
    assert!(ok, "{out}\n{err}");
    assert!(out.lines().any(|l| l.starts_with("h-1 ") && l.contains("ana@acme.com") && l.ends_with("cfo@corp.example")) && out.contains("1 held"), "{out}");
    let (ok, out, _) = env.cli(&["held", "--api-url", &url, "--api-token", OPERATOR, "--tenant", "acme", "--json"]);
    let listed: SendIntent = serde_json::from_str(out.lines().next().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(ok && listed.intent_id == "h-1" && listed.requires_approval, "{out}");
    let (ok, out, _) = env.cli(&["held", "--api-url", &url, "--api-token", GLOBEX]);
    assert!(ok && out.contains("0 held") && !out.contains("h-1"), "globex lists none of acme's: {out}");
    let (ok, _, err) = env.cli(&["held", "--api-url", &url, "--api-token", "not-a-token"]);
    assert!(!ok && err.contains("401"), "{err}");
    assert_eq!(http(&addr, Some(GLOBEX), "POST", "/v1/held/h-1/approve", "").0, 404, "globex cannot find, so cannot approve, acme's intent");
    assert_eq!(http(&addr, Some(GLOBEX), "POST", "/v1/held/h-1/approve?tenant=acme", "").0, 403);

    // Approved over HTTP: ALLOWED follows, and the list empties.
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/held/h-1/approve", r#"{"reason":"the CFO asked"}"#);
    assert_eq!(status, 202, "{body}");
    let d = await_json(&addr, ACME, "/v1/decisions/h-1", |v| v["status"] == "ALLOWED");
    assert_eq!(d["recipient"], "cfo@corp.example");
    await_json(&addr, ACME, "/v1/held", |v| v["held"].as_array().unwrap().is_empty());
    assert_eq!(http(&addr, Some(ACME), "POST", "/v1/held/h-1/reject", "").0, 404, "no longer held");
    // Another, rejected over HTTP: BLOCKED.
    let held2 = r#"{"intent_id":"h-2","tenant":"acme","sender":"ana@acme.com","recipient":"spam@corp.example","class":"OUTBOUND","requires_approval":true}"#;
    assert_eq!(http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=20000", held2).0, 200);
    await_json(&addr, OPERATOR, "/v1/held", |v| v["held"].as_array().unwrap().iter().any(|i| i["intent_id"] == "h-2"));
    let (status, body) = http(&addr, Some(OPERATOR), "POST", "/v1/held/h-2/reject?tenant=acme", r#"{"reason":"not this one"}"#);
    assert_eq!(status, 202, "{body}");
    let d = await_json(&addr, ACME, "/v1/decisions/h-2", |v| v["status"] == "BLOCKED");
    assert_eq!(d["reason"], "rejected_by_operator", "{d}");

    // The recent decisions, a tenant's own only; and why h-1 was decided.
    let recent = await_json(&addr, ACME, "/v1/decisions?status=allowed&limit=10", |v| v["decisions"].as_array().unwrap().iter().any(|d| d["intent_id"] == "h-1"));
    assert!(recent["decisions"].as_array().unwrap().iter().all(|d| d["status"] == "ALLOWED" && d["tenant"] == "acme"), "{recent}");
    assert!(await_json(&addr, GLOBEX, "/v1/decisions", |_| true)["decisions"].as_array().unwrap().is_empty(), "globex reads no acme decision");
    let (status, body) = http(&addr, Some(ACME), "GET", "/v1/explain/h-1", "");
    assert_eq!(status, 200, "{body}");
    let why: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(why["decision"]["status"], "ALLOWED", "{why}");
    let checks = why["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["stage"] == "sender") && checks.iter().any(|c| c["stage"] == "recipient_domain"), "every stage's checks: {why}");
    assert!(why["decided_by"].is_null(), "every check passed: {why}");
    assert_eq!(http(&addr, Some(GLOBEX), "GET", "/v1/explain/h-1", "").0, 404, "globex has no intent h-1");
    assert_eq!(http(&addr, Some(GLOBEX), "GET", "/v1/explain/h-1?tenant=acme", "").0, 403);

    // A domain paused over HTTP: listed, its intents PAUSED; resumed: listed no more, ALLOWED.
    let (status, body) = http(&addr, Some(OPERATOR), "POST", "/v1/senders/sender_domain:acme.com/pause", r#"{"reason":"complaint spike"}"#);
    assert_eq!(status, 202, "{body}");
    let senders = await_json(&addr, OPERATOR, "/v1/senders", |v| v["paused"].as_array().unwrap().iter().any(|p| p["scope"] == "sender_domain:acme.com"));
    assert!(senders["paused"][0]["reason"].as_str().unwrap().contains("complaint spike"), "{senders}");
    assert!(await_json(&addr, ACME, "/v1/senders", |_| true)["paused"].as_array().unwrap().len() == 1, "an unowned domain's pause is every tenant's to see");
    // A pause globex makes of a shared domain: acme sees it, not who or why.
    assert_eq!(http(&addr, Some(GLOBEX), "POST", "/v1/senders/mailbox:gus@shared.example/pause", r#"{"reason":"globex's own business"}"#).0, 202);
    let seen = await_json(&addr, ACME, "/v1/senders", |v| v["paused"].as_array().unwrap().iter().any(|p| p["scope"] == "mailbox:gus@shared.example"));
    let gus = seen["paused"].as_array().unwrap().iter().find(|p| p["scope"] == "mailbox:gus@shared.example").unwrap();
    assert_eq!((gus["by"].as_str(), seen.to_string().contains("globex")), (Some("another tenant"), false), "{seen}");
    let own = await_json(&addr, GLOBEX, "/v1/senders", |_| true);
    assert!(own.to_string().contains("globex's own business"), "{own}");
    // The pauses' alerts: each tenant sees its own, the operator all.
    let alerts = await_json(&addr, OPERATOR, "/v1/alerts?kind=sender_paused", |v| v["alerts"].as_array().unwrap().len() == 2);
    assert_eq!(alerts["alerts"][0]["scope"], "mailbox:gus@shared.example", "newest first: {alerts}");
    let globex_alerts = await_json(&addr, GLOBEX, "/v1/alerts", |_| true);
    assert!(globex_alerts["alerts"].as_array().unwrap().iter().all(|a| a["tenant"] == "globex") && globex_alerts.to_string().contains("gus@shared.example"), "{globex_alerts}");
    assert!(!await_json(&addr, ACME, "/v1/alerts?scope=mailbox:", |_| true).to_string().contains("gus@shared.example"), "acme reads no globex alert");
    // Signal tiers of the domains that sent: acme.com, healthy.
    let tiers = await_json(&addr, OPERATOR, "/v1/senders", |v| v["domains"].as_array().unwrap().iter().any(|d| d["domain"] == "acme.com"));
    let acme = tiers["domains"].as_array().unwrap().iter().find(|d| d["domain"] == "acme.com").unwrap();
    assert_eq!((acme["signals"]["bounce_tier"].as_str(), acme["signals"]["complaint_tier"].as_str()), (Some("healthy"), Some("healthy")), "{tiers}");
    assert_eq!(http(&addr, Some(GLOBEX), "POST", "/v1/senders/mailbox:gus@shared.example/resume", "").0, 202);
    let (_, body) = http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=20000", &intent_json("p-1", "acme", "bo@acme.com", "x@corp.example"));
    assert_eq!(serde_json::from_str::<Decision>(&body).unwrap().status, DecisionStatus::Paused, "{body}");
    let (status, body) = http(&addr, Some(ACME), "POST", "/v1/senders/sender_domain:acme.com/resume", "");
    assert_eq!(status, 202, "{body}");
    await_json(&addr, OPERATOR, "/v1/senders", |v| v["paused"].as_array().unwrap().is_empty());
    let (_, body) = http(&addr, Some(ACME), "POST", "/v1/intents?wait_ms=20000", &intent_json("p-2", "acme", "bo@acme.com", "y@corp.example"));
    assert_eq!(serde_json::from_str::<Decision>(&body).unwrap().status, DecisionStatus::Allowed, "{body}");
    assert_eq!(http(&addr, Some(ACME), "POST", "/v1/senders/acme.com/pause", "").0, 400, "a scope names its kind");
    assert_eq!(http(&addr, None, "GET", "/v1/senders", "").0, 401);
}

/// Polls until `pred` holds for the JSON of `path` at `base`.
fn await_call(base: &str, token: &str, path: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let a = call(base, Some(token), "GET", path, None);
        if a.status == 200 && pred(&a.json()) {
            return a.json();
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {} {}", a.status, a.body);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn with_two_instances_either_answers_for_keys_the_other_serves() {
    let env = api_env("peers", Vec::new());
    env.apply_policy(OPEN_POLICY);
    let a = format!("http://{}", env.cfg.api_addr);
    let b_addr = format!("127.0.0.1:{}", free_port());
    let b = format!("http://{b_addr}");
    let _second = env.start_instance("1", &b_addr);
    await_ready(&env.cfg.api_addr);
    await_ready(&b_addr);
    // Settled: each instance serves some sender partitions, and a listing
    // from either covers both with nothing missing.
    for base in [&a, &b] {
        await_call(base, OPERATOR, "/v1/held", |v| v["covers"].as_array().unwrap().len() == 2 && v["missing"].as_array().unwrap().is_empty() && v["covers"].to_string().matches("sender partitions [").count() == 2 && !v["covers"].to_string().contains("[]"));
    }

    // Intents of twelve sender domains (spread over both instances'
    // partitions), every third one held for approval.
    let domains: Vec<String> = (0..12).map(|n| format!("d{n}.example")).collect();
    let batch: Vec<String> = domains
        .iter()
        .enumerate()
        .map(|(n, d)| format!(r#"{{"intent_id":"two-{n}","tenant":"acme","sender":"ana@{d}","recipient":"r{n}@corp.example","class":"OUTBOUND","requires_approval":{}}}"#, n % 3 == 0))
        .collect();
    let answer = call(&a, Some(ACME), "POST", "/v1/intents?wait_ms=20000", Some(&format!("[{}]", batch.join(","))));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let decided: Vec<Decision> = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(decided.len(), 12);

    // Usage of every domain: the same answer from either instance, computed
    // by the one that serves the domain; some by each.
    let mut by = std::collections::BTreeSet::new();
    for (n, d) in domains.iter().enumerate() {
        let path = format!("/v1/usage?scope=sender_domain:{d}&tenant=acme");
        let (from_a, from_b) = (call(&a, Some(ACME), "GET", &path, None), call(&b, Some(ACME), "GET", &path, None));
        assert_eq!((from_a.status, from_b.status), (200, 200), "{d}: {} / {}", from_a.body, from_b.body);
        assert_eq!(from_a.answered_by, from_b.answered_by, "{d}: one owner answers, whoever is asked");
        let (ua, ub) = (from_a.json(), from_b.json());
        assert_eq!(ua["windows"], ub["windows"], "{d}");
        let day = ua["windows"].as_array().unwrap().iter().find(|w| w["window"] == "day").unwrap_or_else(|| panic!("{ua}"));
        assert_eq!(day["used"], if n % 3 == 0 { 0 } else { 1 }, "{d}: an allowed intent is counted where it was decided, a held one not yet: {ua}");
        by.insert(from_a.answered_by);
    }
    assert_eq!(by, ["0".to_string(), "1".to_string()].into(), "both instances serve some of the domains");

    // Decisions of every intent, from either instance.
    for n in 0..12 {
        let path = format!("/v1/decisions/two-{n}");
        let (da, db) = (call(&a, Some(ACME), "GET", &path, None), call(&b, Some(ACME), "GET", &path, None));
        assert_eq!((da.status, db.status), (200, 200), "{}", da.body);
        assert_eq!(da.json(), db.json());
        assert_eq!(da.json()["status"], if n % 3 == 0 { "HELD" } else { "ALLOWED" });
    }

    // The held intents of both instances' partitions, listed by either;
    // each approved through the instance that does not hold it.
    let held_ids = |v: &serde_json::Value| -> std::collections::BTreeSet<String> { v["held"].as_array().unwrap().iter().map(|i| i["intent_id"].as_str().unwrap().to_string()).collect() };
    let want: std::collections::BTreeSet<String> = ["two-0", "two-3", "two-6", "two-9"].iter().map(|s| s.to_string()).collect();
    for base in [&a, &b] {
        let listed = await_call(base, ACME, "/v1/held", |v| held_ids(v) == want);
        assert!(listed["missing"].as_array().unwrap().is_empty(), "{listed}");
    }
    for id in &want {
        let n: usize = id["two-".len()..].parse().unwrap();
        let owner = call(&a, Some(ACME), "GET", &format!("/v1/usage?scope=sender_domain:{}&tenant=acme", domains[n]), None).answered_by;
        let other = if owner == "0" { &b } else { &a };
        let r = call(other, Some(ACME), "POST", &format!("/v1/held/{id}/approve"), Some(r#"{"reason":"approved through the other instance"}"#));
        assert_eq!(r.status, 202, "{id}: {}", r.body);
        assert_eq!(r.answered_by, owner, "{id}: found where it is held");
    }
    for id in &want {
        await_call(&a, ACME, &format!("/v1/decisions/{id}"), |v| v["status"] == "ALLOWED");
    }
    await_call(&b, OPERATOR, "/v1/held", |v| v["held"].as_array().unwrap().is_empty());

    // A pause of a domain the other instance serves, through either.
    let d = &domains[1];
    let owner = call(&a, Some(ACME), "GET", &format!("/v1/usage?scope=sender_domain:{d}&tenant=acme"), None).answered_by;
    let other = if owner == "0" { &b } else { &a };
    assert_eq!(call(other, Some(OPERATOR), "POST", &format!("/v1/senders/sender_domain:{d}/pause"), Some(r#"{"reason":"two instances"}"#)).status, 202);
    for base in [&a, &b] {
        await_call(base, OPERATOR, "/v1/senders", |v| v["paused"].as_array().unwrap().iter().any(|p| p["scope"] == format!("sender_domain:{d}")));
    }
}
