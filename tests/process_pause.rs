//! A paused process (SIGSTOP past its session timeout, then SIGCONT): the
//! classic zombie. While it sleeps its partitions move to the other
//! instance, which decides everything; when it wakes up, whatever it still
//! had open (a transaction with decisions, hops and state changes of
//! records the other instance has since decided again) must not land: a
//! read-committed reader sees one decision per intent and counters that
//! count each allowed intent once. Then it rejoins and decides again.

use crate::common::*;
use sendgate::model::*;
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process this test started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// A log's text past `from` bytes (decoded lossily: a read may end inside
/// a character).
fn text_since(log: &[u8], from: usize) -> String {
    String::from_utf8_lossy(log.get(from..).unwrap_or_default()).into_owned()
}

/// Polls `done` every half second until it holds or `WAIT` runs out; whether it held.
fn wait_until(done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    done()
}

/// Intents of `n` sender domains, so that both instances' partitions get some.
fn batch(tag: &str, n: usize) -> Vec<SendIntent> {
    (0..n).map(|i| intent(&format!("{tag}-{i}"), &format!("m{}@d{}.example", i % 3, i % 12), &format!("p{i}-{tag}@corp.example"))).collect()
}

#[test]
fn a_paused_instance_resumed_after_its_partitions_moved_writes_nothing_that_lands() {
    let mut env = TestEnv::new("pause");
    env.start();
    env.apply_policy(
        r#"
[[policy]]
scope = "tenant:acme"
business_hours = "off"
warmup = "off"
limits = { "mailbox.outbound.hour" = "off", "mailbox.outbound.day" = 40, "sender_domain.outbound.hour" = "off" }
"#,
    );
    let second = env.start_instance("b", "");
    let first = batch("first", 60);
    env.send_intents(&first);
    env.await_decisions(&first.iter().map(|i| i.intent_id.clone()).collect::<Vec<_>>(), WAIT);

    // A batch in flight, and the first instance stopped in the middle of it.
    let inflight = batch("inflight", 600);
    env.send_intents(&inflight);
    std::thread::sleep(Duration::from_millis(150));
    let pid = env.pid();
    signal(pid, libc::SIGSTOP);
    let log_before = env.log_bytes().len();
    let second_before = std::fs::metadata(&second.log).map_or(0, |m| m.len() as usize);
    // Past its session timeout (10 s), the other instance takes its
    // partitions and decides every intent.
    let ids: Vec<String> = inflight.iter().map(|i| i.intent_id.clone()).collect();
    env.await_decisions(&ids, WAIT);
    // The zombie may have decided its share before it stopped, so the
    // decisions can all be there long before its session runs out: wait
    // until the other instance has been given partitions of every stage
    // since the stop (the cooperative protocol logs what is added), or
    // the zombie wakes up still a member and nothing moves.
    let second_log = || std::fs::read(&second.log).unwrap_or_default();
    let took_all = || {
        let since = text_since(&second_log(), second_before);
        ["sender", "recipient", "recipient_domain"].iter().all(|t| {
            let prefix = format!("partitions assigned task=\"{t}\" partitions=");
            since.lines().filter_map(|l| l.split_once(prefix.as_str())).any(|(_, n)| n.trim().parse::<u32>().is_ok_and(|n| n > 0))
        })
    };
    assert!(wait_until(took_all), "the other instance took the paused instance's partitions: {}", text_since(&second_log(), 0));
    // The zombie wakes up with its old assignment and its open transaction.
    // It finds its partitions gone and rejoins the group; how long that
    // takes depends on the call it was in when it stopped, so wait for it.
    signal(pid, libc::SIGCONT);
    let woke = || text_since(&env.log_bytes(), log_before);
    wait_until(|| woke().contains("partitions revoked") && woke().contains("partitions assigned"));
    let woke = woke();
    // Should it say nothing: whether the zombie still runs, and its log.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let state = status.lines().find(|l| l.starts_with("State:")).unwrap_or("State: (gone)").to_string();
    let why = format!("{state}; {log_before} bytes of log before the pause, {} after it:\n{woke}\n--- the log's last lines:\n{}", woke.len(), env.log_tail());
    assert!(woke.contains("partitions revoked"), "the zombie's partitions were taken: {why}");
    assert!(woke.contains("partitions assigned"), "it rejoined after waking: {why}");
    // A pause is not a hang: the watchdog gives the call it stopped in the
    // time it stood still, rather than restarting the process.
    assert!(!woke.contains("restarting the process"), "the pause was taken for a hung call: {woke}");
    // It rejoined: intents keep being decided, once each.
    let after = batch("after", 60);
    env.send_intents(&after);
    env.await_decisions(&after.iter().map(|i| i.intent_id.clone()).collect::<Vec<_>>(), WAIT);
    std::thread::sleep(Duration::from_secs(2));

    let all = env.all_decisions();
    assert_one_decision_per_intent(&all, 720);
    // Each allowed intent counted once in the mailbox day counters: no
    // state change of the zombie's open transaction landed either.
    let mut allowed: HashMap<String, i64> = HashMap::new();
    for d in all.iter().filter(|d| d.status == DecisionStatus::Allowed) {
        *allowed.entry(format!("ctr/mailbox:{}/outbound/day", d.sender)).or_default() += 1;
    }
    let counters = env.changelog_counters("sender");
    for (key, n) in &allowed {
        assert_eq!(counters.get(key), Some(n), "{key}: counted {:?}, allowed {n}", counters.get(key));
    }
    assert!(all.iter().any(|d| d.reason == "daily_cap_reached"), "the day caps were reached, so a double count would show");
    drop(second);
}
