//! What an operator watches: the Grafana dashboard (deploy/grafana) queries
//! only metrics sendgate exports, checked against a live /metrics scrape
//! of a processor that decided, held, paused and dead-lettered; the state
//! gauges show what the processor holds; `sendgate ready` is the
//! container health check.

use crate::common::*;
use sendgate::model::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Every `sendgate_*` metric name in a PromQL text.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sendgate_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        out.push(name);
    }
    out
}

/// Every query (`expr`) of every panel, recursively.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The value of the first sample of `name` (with `labels` in its label set).
fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    scrape.lines().filter(|l| !l.starts_with('#')).find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn the_dashboard_queries_only_exported_metrics_and_the_gauges_show_the_state() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut env = TestEnv::with("metrics", |c| c.api_addr = format!("127.0.0.1:{}", free_port()), vec![("SENDGATE_METRICS_ADDR".into(), metrics_addr.clone()), ("SENDGATE_API_TOKENS".into(), "operator=metrics-operator-token-0123456789".into())]);
    // Not ready before it runs.
    let (ok, _, err) = env.cli(&["ready"]);
    assert!(!ok && err.contains("no answer"), "{err}");
    env.start();
    env.apply_policy(OPEN_POLICY);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, out, err) = env.cli(&["ready"]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {out}{err}\n{}", env.log_tail());
        std::thread::sleep(Duration::from_millis(500));
    }

    // Decisions, a held intent, a pause and a dead letter.
    let mut held = intent("m-held", "ana@acme.com", "cfo@corp.example");
    held.requires_approval = true;
    env.send_intents(&[intent("m-1", "ana@acme.com", "a@corp.example"), intent("m-2", "bo@acme.com", "b@corp.example"), held]);
    env.send_raw("intents", vec![(b"k".to_vec(), Some(b"not an intent".to_vec()))]);
    env.send_command(&command(CommandKind::Pause, "sender_domain:paused.example"));
    env.await_decisions(&["m-1".into(), "m-2".into(), "m-held".into()], Duration::from_secs(120));

    // The gauges refresh every 15 s: wait for them to show the state.
    let url = format!("http://{metrics_addr}/metrics");
    let deadline = Instant::now() + Duration::from_secs(90);
    let scrape = loop {
        let text = ureq::get(&url).call().map(|r| r.into_string().unwrap()).unwrap_or_default();
        let shows = |n: &str, l: &str| sample(&text, n, l).is_some_and(|v| v >= 1.0);
        if shows("sendgate_held_intents", "") && shows("sendgate_paused_senders", "") && shows("sendgate_dead_letters_total", "") && shows("sendgate_served_partitions", "stage=\"sender\"") {
            break text;
        }
        assert!(Instant::now() < deadline, "the gauges never showed the state:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(sample(&scrape, "sendgate_held_intents", ""), Some(1.0), "one intent held");
    assert_eq!(sample(&scrape, "sendgate_paused_senders", ""), Some(1.0), "one sender paused");
    assert!(sample(&scrape, "sendgate_decisions_total", "status=\"ALLOWED\"").is_some_and(|v| v >= 2.0), "{scrape}");
    assert!(sample(&scrape, "sendgate_decision_latency_seconds_count", "").is_some_and(|v| v >= 3.0), "every decision's latency is measured");
    assert!(sample(&scrape, "sendgate_state_bytes", "stage=\"sender\"").is_some(), "{scrape}");
    assert_eq!(sample(&scrape, "sendgate_sender_domains", "tier=\"healthy\""), Some(1.0), "acme.com sent, and is healthy: {scrape}");
    for task in ["router", "sender", "tenant", "recipient", "recipient_domain"] {
        assert!(sample(&scrape, "sendgate_consumer_lag_records", &format!("task=\"{task}\"")).is_some(), "the lag of {task}: {scrape}");
    }

    // Every metric the dashboard queries is one sendgate exports.
    let exported: BTreeSet<String> = scrape.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).map(str::to_string).collect();
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/dashboards/sendgate.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 15, "a query per panel: {queries:?}");
    let mut queried = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "a query of no sendgate metric: {q}");
        for n in names {
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| n.strip_suffix(s)).filter(|b| exported.contains(*b)).map(str::to_string).unwrap_or(n.clone());
            assert!(exported.contains(&base), "the dashboard queries {n}, which sendgate does not export (exported: {exported:?})");
            queried.insert(base);
        }
    }
    for needed in ["sendgate_decisions_total", "sendgate_dead_letters_total", "sendgate_paused_senders", "sendgate_sender_domains", "sendgate_consumer_lag_records", "sendgate_transaction_commit_seconds", "sendgate_restore_seconds", "sendgate_decision_latency_seconds", "sendgate_held_intents", "sendgate_parked_intents", "sendgate_state_bytes"] {
        assert!(queried.contains(needed), "the dashboard shows no {needed}");
    }
}

#[test]
fn the_compose_file_runs_the_whole_stack() {
    let root = env!("CARGO_MANIFEST_DIR");
    let topo = sendgate::topology::Topology::parse(sendgate::topology::DEFAULT_TOPOLOGY, "sendgate").unwrap();
    let topics: Vec<&str> = topo.topics.iter().map(|t| t.name.as_str()).collect();
    let out = std::process::Command::new(env_var("SENDGATE_TEST_PYTHON"))
        .args([&format!("{root}/tests/interop/check_compose.py"), root, &serde_json::to_string(&topics).unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok", "docker-compose.yml: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Where Docker exists, compose itself checks the file too.
    let compose_present = std::process::Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    if compose_present {
        let o = std::process::Command::new("docker").args(["compose", "-f", &format!("{root}/docker-compose.yml"), "config", "--quiet"]).output().unwrap();
        assert!(o.status.success(), "docker compose config: {}", String::from_utf8_lossy(&o.stderr));
    }
}
