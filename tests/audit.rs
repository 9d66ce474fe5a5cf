//! `sendgate audit replay` against the real broker: every decision of a
//! live run, SIGKILL included, is reproduced from the log, and so is every
//! stage's state as its changelog records it; an altered decision is
//! reported.

use crate::common::*;
use sendgate::codec::{self, RecordType};
use sendgate::model::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// The replay's state check: (state keys compared, state differences).
fn state_figures(out: &str) -> (u64, u64) {
    let figure = |label: &str| out.lines().find_map(|l| l.strip_prefix(label)).and_then(|rest| rest.split_whitespace().next()).and_then(|n| n.parse().ok());
    (figure("state keys compared ").unwrap_or_else(|| panic!("no state keys compared: {out}")), figure("state differences ").unwrap_or_else(|| panic!("no state differences: {out}")))
}

#[test]
fn replay_reproduces_every_decision_and_reports_an_altered_one() {
    let mut env = TestEnv::new("audit");
    env.start();
    env.apply_policy(
        r#"
[[policy]]
scope = "tenant:acme"
business_hours = "off"
warmup = "off"
limits = { "mailbox.outbound.hour" = 40, "recipient_domain.outbound.hour" = 30 }
signals = { rest_of_day = { hard_bounce = 0.05 } }
feedback = [{ code = 421, enhanced = "4.7.26", action = "pause_mailbox" }]

[[policy]]
scope = "mailbox:m0@acme.com"
limits = { "mailbox.all.minute" = { max = 60, smooth = true, burst = 5 } }

[[policy]]
scope = "mailbox:m1@acme.com"
limits = { "mailbox.all.rolling_24h" = 20 }
"#,
    );
    // A candidate policy in shadow for the same tenant, decided beside it.
    let candidate = env.dir.path().join("candidate.toml");
    std::fs::write(&candidate, "[[policy]]\nscope = \"tenant:acme\"\nbusiness_hours = \"off\"\nwarmup = \"off\"\nlimits = { \"mailbox.outbound.hour\" = 25, \"recipient_domain.outbound.hour\" = 12 }\n").unwrap();
    let (ok, out, err) = env.cli(&["shadow", "start", &candidate.to_string_lossy()]);
    assert!(ok, "{out}\n{err}");
    // Mailbox caps, a smoothed and a rolling limit, recipient-domain
    // limits with releases, cooldowns, suppression from a bounce, a
    // feedback rule's pause and a throttle's backoff, and a crash in the
    // middle.
    // And a burst of 125 from one mailbox to distinct recipients at a
    // public provider: 100 of them deferred by the mailbox's day (25).
    let intents: Vec<SendIntent> = (0..300)
        .map(|i| {
            let mut it = intent(&format!("a-{i}"), &format!("m{}@acme.com", i % 3), &format!("p{}@d{}.example", i % 40, i % 4));
            it.template_id = Some(format!("t{}", i % 2));
            it
        })
        .chain((0..125).map(|i| intent(&format!("b-{i}"), "burst@acme.com", &format!("b{i}@gmail.com"))))
        .collect();
    env.send_intents(&intents[..150]);
    let deferral = |id: &str, sender: &str, to: &str, enhanced: &str| {
        let mut e = hard_bounce(id, sender, to);
        (e.kind, e.smtp_code, e.enhanced_code) = (DeliveryKind::Deferred, Some(421), Some(enhanced.into()));
        e
    };
    env.send_delivery(&[hard_bounce("hb-1", "m0@acme.com", "p1@d1.example"), deferral("df-1", "m2@acme.com", "p2@d2.example", "4.7.26"), deferral("df-2", "m0@acme.com", "p3@d3.example", "4.7.28")]);
    // Sends to reconcile: a few of the first intents', and, before their
    // intents are even published, five of the burst's past its day (deferred).
    let delivered = |id: &str, sender: &str, to: &str| DeliveryEvent { event_id: format!("dl-{id}"), intent_id: Some(id.into()), kind: DeliveryKind::Delivered, smtp_code: Some(250), ..hard_bounce(id, sender, to) };
    let mut sends: Vec<DeliveryEvent> = (0..6).map(|i| delivered(&format!("a-{i}"), &format!("m{}@acme.com", i % 3), &format!("p{}@d{}.example", i % 40, i % 4))).collect();
    sends.extend((120..125).map(|i| delivered(&format!("b-{i}"), "burst@acme.com", &format!("b{i}@gmail.com"))));
    env.send_delivery(&sends);
    std::thread::sleep(Duration::from_millis(1500));
    env.kill9();
    env.start();
    env.send_intents(&intents[150..]);
    let ids: Vec<String> = intents.iter().map(|i| i.intent_id.clone()).collect();
    env.await_decisions(&ids, WAIT);
    let all = env.all_decisions();
    assert_one_decision_per_intent(&all, 425);
    // The new guards took part.
    for reason in ["minute_limit_exceeded", "rolling_24h_limit_exceeded", "mailbox_paused"] {
        assert!(all.iter().any(|d| d.reason == reason), "no {reason}: {:?}", all.iter().map(|d| d.reason.as_str()).collect::<std::collections::BTreeSet<_>>());
    }
    assert!(all.iter().any(|d| d.status == DecisionStatus::Allowed) && all.iter().any(|d| d.status != DecisionStatus::Allowed));
    // The intents deferred by a day's window come back spread over the hour
    // after it (a quarter of the window, at most an hour), not all at
    // midnight; the replay below computes the same times.
    let daily: Vec<&Decision> = all.iter().filter(|d| d.sender == "burst@acme.com" && d.reason == "daily_cap_reached").collect();
    let burst: std::collections::BTreeMap<String, usize> = all.iter().filter(|d| d.sender == "burst@acme.com").fold(Default::default(), |mut m, d| {
        *m.entry(format!("{} {}", d.status.as_str(), d.reason)).or_default() += 1;
        m
    });
    assert_eq!(daily.len(), 100, "the burst's decisions: {burst:?}");
    let minutes: std::collections::BTreeSet<i64> = daily
        .iter()
        .map(|d| {
            let end = sendgate::clock::window_end(sendgate::clock::Window::Day, chrono_tz::UTC, d.decided_at_ms);
            let r = d.retry_at_ms.expect("a deferral has a retry time");
            assert!((end..end + 3_600_000).contains(&r), "retry {r} outside the hour after {end}");
            (r - end) / 60_000
        })
        .collect();
    // 100 hashes in 60 one-minute slots fill most of them.
    assert!(minutes.len() >= 40, "retry minutes {minutes:?}");

    // The burst's sends past its day were unapproved, found when their
    // (later) intents were deferred.
    for i in 120..125 {
        env.await_alert(|a| a.kind == "unapproved_send" && a.details.get("intent_id").map(String::as_str) == Some(&format!("b-{i}")), WAIT);
    }

    let (ok, out, err) = env.cli(&["audit", "replay"]);
    assert!(ok, "replay failed:\n{out}\n{err}");
    assert!(out.contains("differences          0"), "{out}");
    assert!(out.contains(&format!("decisions compared   {}", all.len())), "{out}");
    // The candidate's pairs are reproduced too.
    let pairs: u64 = out.lines().find_map(|l| l.strip_prefix("shadow pairs compared ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(pairs >= 400, "{out}");
    assert!(out.contains("shadow differences   0"), "{out}");
    // Every stage's state, restored after the SIGKILL and kept since, is
    // what its log implies (the candidate's namespace included).
    let (keys, differences) = state_figures(&out);
    assert!(keys > 0 && differences == 0, "{out}");

    // A copy of the decisions topic with one decision altered.
    env.create_topic("decisions-copy", 6);
    let victim = all.iter().find(|d| d.status == DecisionStatus::Allowed).unwrap().intent_id.clone();
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = all
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if d.intent_id == victim {
                d.status = DecisionStatus::Deferred;
            }
            (d.sender.clone().into_bytes(), Some(codec::encode(RecordType::Decision, &d).unwrap()))
        })
        .collect();
    env.send_raw("decisions-copy", records);
    let copy = env.topic("decisions-copy");
    // Both ways of keeping the recorded decisions: in memory, and in the
    // scratch directory (an audit too long for memory).
    for in_memory in ["4000000", "0"] {
        let (ok, out, _) = env.cli(&["audit", "replay", "--decisions-topic", &copy, "--in-memory-decisions", in_memory]);
        assert!(!ok, "an altered decision must fail the replay ({in_memory} in memory):\n{out}");
        assert!(out.contains("differences          1"), "{out}");
        assert!(out.contains(&format!("{victim} (")) && out.contains("status: recorded DEFERRED, replayed ALLOWED"), "{out}");
    }

    // A state key the log does not imply, slipped into a changelog, fails
    // the replay and is named (the policies reach every stage partition, so
    // whichever partition it lands in was replayed and is compared).
    env.send_raw("stage.sender.changelog", vec![(b"planted/key".to_vec(), Some(sendgate::state::StateValue::Clock(1).encode()))]);
    let (ok, out, _) = env.cli(&["audit", "replay"]);
    assert!(!ok, "a planted state key must fail the replay:\n{out}");
    assert!(out.contains("differences          0") && out.contains("  only in changelog  1") && out.contains("state differences    1"), "{out}");
    assert!(out.contains("\"planted/key\": in the changelog only"), "{out}");
}

#[test]
fn explain_names_the_binding_window_with_the_numbers_of_the_decision() {
    let mut env = TestEnv::new("explain");
    env.start();
    env.apply_policy(
        r#"
[[policy]]
scope = "mailbox:ana@acme.com"
business_hours = "off"
warmup = "off"
limits = { "mailbox.outbound.hour" = 2 }

[[policy]]
scope = "sender_domain:beta.example"
business_hours = "off"
warmup = "off"
limits = { "recipient_domain.outbound.hour" = 1 }
"#,
    );
    env.send_intents(&[intent("x-1", "ana@acme.com", "a@corp.example"), intent("x-2", "ana@acme.com", "b@corp.example")]);
    // Decided past the sender stage: explain follows the intent to the
    // partitions it was passed on to.
    env.send_intents(&[intent("y-1", "ben@beta.example", "q1@far.example"), intent("y-2", "ben@beta.example", "q2@far.example")]);
    // They reach the recipient-domain stage from two recipient partitions,
    // in either order: one of them is deferred there.
    let ys = env.await_decisions(&["y-1".into(), "y-2".into()], WAIT);
    let deferred: Vec<&Decision> = ys.values().filter(|d| d.status == DecisionStatus::Deferred).collect();
    assert_eq!(deferred.len(), 1, "{ys:?}");
    let y = deferred[0];
    assert_eq!(y.stage.as_deref(), Some("recipient_domain"), "{y:?}");
    let (ok, out, err) = env.cli(&["audit", "explain", &y.intent_id]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("intent {}: DEFERRED {}", y.intent_id, y.reason)), "{out}");
    assert!(out.contains("sender stage:") && out.contains("recipient_domain stage:"), "{out}");
    let decided_by = out.lines().find(|l| l.starts_with("decided by:")).unwrap_or_default();
    assert!(decided_by.contains("recipient_domain stage, window") && decided_by.contains("used 1 of 1"), "{out}");

    env.await_decisions(&["x-1".into(), "x-2".into()], WAIT);
    env.send_delivery(&[hard_bounce("hb-x", "ana@acme.com", "a@corp.example")]);
    std::thread::sleep(Duration::from_millis(1000));
    env.send_intents(&[intent("x-3", "ana@acme.com", "c@corp.example")]);
    let d = env.await_decisions(&["x-3".into()], WAIT).remove("x-3").unwrap();
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "hourly_limit_exceeded"));
    let u = d.usage.iter().find(|u| u.scope == "mailbox:ana@acme.com" && u.window == "hour").unwrap();

    let (ok, out, err) = env.cli(&["audit", "explain", "x-3"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("intent x-3: DEFERRED hourly_limit_exceeded"), "{out}");
    assert!(out.contains(&format!("mailbox:ana@acme.com hour: used {} of {}", u.used, u.limit)), "{out}");
    let decided_by = out.lines().find(|l| l.starts_with("decided by:")).unwrap_or_default();
    assert!(decided_by.contains("sender stage, window") && decided_by.contains(&format!("mailbox:ana@acme.com hour (hourly_limit_exceeded): used {} of {}", u.used, u.limit)), "{out}");
    assert!(out.contains(&format!("policy version {}", d.policy_version)) && out.contains("mailbox:ana@acme.com v"), "{out}");
    assert!(out.contains("behind the signal rates: 1") && out.contains("hb-x BounceHard"), "{out}");
}

/// The deferred count of a backtest report: (recorded, baseline, candidate).
fn deferred(out: &str) -> (u64, u64, u64) {
    let line = out.lines().find(|l| l.starts_with("total DEFERRED")).unwrap_or("total DEFERRED recorded 0 baseline 0 candidate 0");
    let n: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (n[0], n[1], n[2])
}

#[test]
fn backtest_shows_no_change_under_the_live_policy_and_moves_with_a_stricter_or_looser_one() {
    let mut env = TestEnv::new("backtest");
    env.start();
    let policy = |hourly: u32| format!("[[policy]]\nscope = \"tenant:acme\"\nbusiness_hours = \"off\"\nwarmup = \"off\"\nlimits = {{ \"mailbox.outbound.hour\" = {hourly} }}\n");
    env.apply_policy(&policy(10));
    let intents: Vec<SendIntent> = (0..60).map(|i| intent(&format!("bt-{i}"), &format!("m{}@acme.com", i % 2), &format!("p{i}@gmail.com"))).collect();
    env.send_intents(&intents);
    let ids: Vec<String> = intents.iter().map(|i| i.intent_id.clone()).collect();
    env.await_decisions(&ids, WAIT);
    let file = |name: &str, text: String| {
        let path = env.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };

    let (ok, out, err) = env.cli(&["backtest", "--policy", &file("same.toml", policy(10))]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("decisions compared   60") && out.contains("decisions changed    0"), "{out}");
    // Intents published one after another, decided in the same order live:
    // the baseline is what the live processor recorded.
    assert_eq!(deferred(&out), (40, 40, 40), "{out}");
    assert!(out.contains("baseline agrees      60 of 60 with the recorded decisions (100.0 %)"), "{out}");

    let (ok, out, _) = env.cli(&["backtest", "--policy", &file("strict.toml", policy(5))]);
    assert!(ok);
    let (_, base, cand) = deferred(&out);
    assert!(cand > base, "a stricter policy defers more: {out}");
    assert!(out.contains("first changes (baseline -> candidate):") && out.contains("ALLOWED ok -> DEFERRED hourly_limit_exceeded"), "{out}");

    let (ok, out, _) = env.cli(&["backtest", "--policy", &file("loose.toml", policy(25))]);
    assert!(ok);
    let (_, base, cand) = deferred(&out);
    assert!(cand < base, "a looser policy defers less: {out}");
}

/// A `sendgate shadow report --json` or `backtest --json` report: the
/// intents whose decision changes, with their decision under the candidate,
/// and the candidate's count of each status.
fn changes_and_totals(v: &serde_json::Value) -> (std::collections::BTreeMap<String, String>, std::collections::BTreeMap<String, u64>) {
    let changes = v["changes"].as_array().unwrap().iter().map(|c| (c["intent_id"].as_str().unwrap().to_string(), format!("{} {}", c["candidate"]["status"].as_str().unwrap(), c["candidate"]["reason"].as_str().unwrap()))).collect();
    let mut totals = std::collections::BTreeMap::new();
    for o in v["outcomes"].as_array().unwrap() {
        *totals.entry(o["status"].as_str().unwrap().to_string()).or_default() += o["candidate"].as_u64().unwrap();
    }
    (changes, totals)
}

#[test]
fn a_candidate_in_shadow_defers_what_its_backtest_defers_enforces_nothing_until_promoted() {
    let mut env = TestEnv::new("shadow");
    env.start();
    let policy = |hourly: u32| format!("[[policy]]\nscope = \"tenant:acme\"\nbusiness_hours = \"off\"\nwarmup = \"off\"\nlimits = {{ \"mailbox.outbound.hour\" = {hourly} }}\n");
    env.apply_policy(&policy(10));
    let file = |name: &str, text: String| {
        let path = env.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let strict = file("strict.toml", policy(4));
    let (ok, out, err) = env.cli(&["shadow", "start", &strict]);
    assert!(ok && out.contains("tenant:acme: candidate in shadow as version"), "{out}\n{err}");
    let (ok, out, _) = env.cli(&["shadow", "list"]);
    assert!(ok && out.starts_with("tenant:acme  version"), "{out}");

    let intents: Vec<SendIntent> = (0..40).map(|i| intent(&format!("sh-{i}"), &format!("m{}@acme.com", i % 2), &format!("p{i}@gmail.com"))).collect();
    env.send_intents(&intents);
    let ids: Vec<String> = intents.iter().map(|i| i.intent_id.clone()).collect();
    let live = env.await_decisions(&ids, WAIT);
    let live_deferred = live.values().filter(|d| d.status == DecisionStatus::Deferred).count();
    assert!(live.values().all(|d| d.usage.iter().all(|u| u.scope != "mailbox:m0@acme.com" || u.window != "hour" || u.limit == 10)), "the enforced limit stays 10 an hour");

    // Every intent's pair reaches the shadow-decisions topic.
    let deadline = std::time::Instant::now() + WAIT;
    let shadow = loop {
        let (ok, out, err) = env.cli(&["shadow", "report", "--json", "--show", "1000"]);
        assert!(ok, "{out}\n{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v.as_array().unwrap().first().is_some_and(|s| s["compared"] == 40) {
            break v[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "the pairs did not all arrive: {out}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(shadow["shadow_scope"], "tenant:acme");
    let (shadow_changes, shadow_totals) = changes_and_totals(&shadow);
    assert!(!shadow_changes.is_empty() && shadow_changes.values().all(|c| c == "DEFERRED hourly_limit_exceeded"), "{shadow}");
    // The enforced side of the pairs is the live decisions.
    let enforced_deferred: u64 = shadow["outcomes"].as_array().unwrap().iter().filter(|o| o["status"] == "DEFERRED").map(|o| o["enforced"].as_u64().unwrap()).sum();
    assert_eq!(enforced_deferred as usize, live_deferred, "{shadow}");

    // The backtest of the same candidate over the same input: the same
    // intents change, to the same decisions; its baseline is the live run,
    // so the candidate in shadow changed no enforced decision.
    let (ok, out, err) = env.cli(&["backtest", "--policy", &strict, "--json", "--show", "1000"]);
    assert!(ok, "{out}\n{err}");
    let backtest: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((backtest["compared"].as_u64(), backtest["agreeing"].as_u64()), (Some(40), Some(40)), "{backtest}");
    let (backtest_changes, backtest_totals) = changes_and_totals(&backtest);
    assert_eq!(shadow_changes, backtest_changes);
    assert_eq!(shadow_totals, backtest_totals);

    // The text report has the backtest's layout.
    let (ok, out, _) = env.cli(&["shadow", "report", "--scope", "tenant:acme"]);
    assert!(ok && out.contains("candidate in shadow for tenant:acme") && out.contains("decisions compared   40") && out.contains("first changes (enforced -> candidate):") && out.contains("[sender: DEFERRED hourly_limit_exceeded]"), "{out}");
    // The alerts summarise the difference.
    let alerts = env.all_alerts();
    assert!(alerts.iter().any(|a| a.kind == "shadow_differs" && a.tenant == "acme" && a.scope == "tenant:acme" && a.details.get("differences").map(String::as_str) == Some("1")), "{alerts:?}");

    // Promoted: enforced from the next intent, and no longer in shadow.
    let (ok, out, err) = env.cli(&["shadow", "promote", "tenant:acme"]);
    assert!(ok && out.contains("promoted; enforced as version"), "{out}\n{err}");
    let after: Vec<SendIntent> = (0..5).map(|i| intent(&format!("after-{i}"), "fresh@acme.com", &format!("q{i}@gmail.com"))).collect();
    env.send_intents(&after);
    let decided = env.await_decisions(&after.iter().map(|i| i.intent_id.clone()).collect::<Vec<_>>(), WAIT);
    assert_eq!(decided["after-3"].status, DecisionStatus::Allowed);
    let d = &decided["after-4"];
    assert_eq!((d.status, d.reason.as_str()), (DecisionStatus::Deferred, "hourly_limit_exceeded"), "{d:?}");
    assert!(d.usage.iter().any(|u| u.scope == "mailbox:fresh@acme.com" && u.window == "hour" && u.limit == 4), "{d:?}");
    let (ok, out, _) = env.cli(&["shadow", "list"]);
    assert!(ok && out.contains("no candidate policy in shadow"), "{out}");
    let (_, out, _) = env.cli(&["shadow", "report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["compared"], 40, "no pair after the promotion: {v}");

    let (ok, out, err) = env.cli(&["audit", "replay"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("differences          0") && out.contains("shadow pairs compared 40") && out.contains("shadow differences   0"), "{out}");
    // The promoted candidate's namespace, purged or not, is the same in the
    // replay as in the changelog.
    let (keys, differences) = state_figures(&out);
    assert!(keys > 0 && differences == 0, "{out}");
}
