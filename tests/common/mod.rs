//! Shared by the integration tests: a fresh namespace (topics, groups,
//! state) per test on the real broker that scripts/test.sh starts, and a
//! `sendgate run` child process that can be killed and restarted.

#![allow(dead_code)]

use sendgate::cli::collect;
use sendgate::cli::kafka_io::{self, read_topic, ReadOptions};
use sendgate::codec::{self, RecordType};
use sendgate::config::Config;
use sendgate::model::*;
use sendgate::policy::file::parse_policy_file;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The broker the tests run against. Missing = a failed test, never a skip.
pub fn bootstrap() -> String {
    std::env::var("SENDGATE_TEST_BOOTSTRAP").expect(
        "SENDGATE_TEST_BOOTSTRAP is not set: integration tests need the real Kafka broker that scripts/test.sh starts (run the tests with scripts/test.sh)",
    )
}

/// A setting scripts/test.sh exports; missing = a failed test.
pub fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test.sh, which starts every part they need"))
}

/// The secured listeners of the test broker (scripts/kafka/secure.sh).
pub struct Secure(HashMap<String, String>);

impl Secure {
    pub fn load() -> Secure {
        let path = env_var("SENDGATE_TEST_SECURE_ENV");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}; the test broker must run with its secured listeners (scripts/test.sh)"));
        Secure(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string())).collect())
    }

    pub fn get(&self, k: &str) -> String {
        self.0.get(k).unwrap_or_else(|| panic!("{k} missing from the secured listeners' settings: {:?}", self.0.keys())).clone()
    }

    /// SASL_SSL with SCRAM-SHA-512 as `user`, trusting the test CA.
    pub fn scram_security(&self, user: &str, password: &str) -> sendgate::connection::Security {
        let mut s = sendgate::connection::Security {
            protocol: "SASL_SSL".into(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: user.into(),
            ssl_ca_file: self.get("KAFKA_SSL_CA_LOCATION"),
            ..Default::default()
        };
        let password = password.to_string();
        s.load_secrets(&|k: &str| (k == "SENDGATE_KAFKA_SASL_PASSWORD").then(|| password.clone())).unwrap();
        s
    }
}

pub struct TestEnv {
    pub cfg: Config,
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    processor: Option<Child>,
    starts: u32,
    /// More environment for the processor and the CLI (security settings, say).
    pub extra_env: Vec<(String, String)>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TestEnv {
    pub fn new(name: &str) -> TestEnv {
        TestEnv::with(name, |_| {}, Vec::new())
    }

    /// A test environment whose configuration `adjust` changes (the in-test
    /// clients use it), and whose processor and CLI get `extra_env`.
    pub fn with(name: &str, adjust: impl FnOnce(&mut Config), extra_env: Vec<(String, String)>) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let unique = format!("{}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 1_000_000_000);
        let cfg = Config {
            bootstrap: bootstrap(),
            namespace: format!("t-{name}-{unique}"),
            state_dir: dir.path().join("state"),
            metrics_addr: String::new(),
            api_addr: String::new(),
            ..Config::default()
        };
        let mut cfg = cfg;
        adjust(&mut cfg);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let topo = cfg.topology().unwrap();
        let report = rt.block_on(sendgate::topology::apply(&topo, &cfg.client_config(), 1)).expect("the broker must be reachable: is scripts/test.sh running it?");
        assert!(report.iter().all(|(_, s)| *s == sendgate::topology::TopicStatus::Created), "{report:?}");
        TestEnv { cfg, dir, rt, processor: None, starts: 0, extra_env }
    }

    pub fn topic(&self, suffix: &str) -> String {
        self.cfg.topology().unwrap().full(suffix)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.cfg.state_dir.clone()
    }

    /// Starts `sendgate run` for this namespace.
    pub fn start(&mut self) {
        assert!(self.processor.is_none(), "already running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("sendgate-{}.log", self.starts))).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sendgate"))
            .arg("run")
            .env("SENDGATE_BOOTSTRAP", &self.cfg.bootstrap)
            .env("SENDGATE_NAMESPACE", &self.cfg.namespace)
            .env("SENDGATE_STATE_DIR", &self.cfg.state_dir)
            .env("SENDGATE_METRICS_ADDR", "")
            .env("SENDGATE_API_ADDR", &self.cfg.api_addr)
            .env("SENDGATE_LOG", "info,librdkafka=warn")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sendgate");
        self.processor = Some(child);
    }

    /// Starts another `sendgate run` of this namespace (another instance of
    /// the same groups), with its own instance id, state and API address;
    /// stopped (SIGTERM) when the handle drops.
    pub fn start_instance(&self, instance: &str, api_addr: &str) -> Instance {
        let log = self.dir.path().join(format!("sendgate-instance-{instance}.log"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sendgate"))
            .arg("run")
            .env("SENDGATE_BOOTSTRAP", &self.cfg.bootstrap)
            .env("SENDGATE_NAMESPACE", &self.cfg.namespace)
            .env("SENDGATE_INSTANCE_ID", instance)
            .env("SENDGATE_STATE_DIR", self.dir.path().join(format!("state-{instance}")))
            .env("SENDGATE_METRICS_ADDR", "")
            .env("SENDGATE_API_ADDR", api_addr)
            .env("SENDGATE_LOG", "info,librdkafka=warn")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn sendgate");
        Instance { child, log }
    }

    /// Waits up to `timeout` for the processor to exit by itself; its status.
    pub fn await_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.processor.as_mut().expect("running").try_wait().unwrap() {
                self.processor = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// The running processor's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.processor.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        let mut c = self.processor.take().expect("running");
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        c.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let mut c = self.processor.take().expect("running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        for _ in 0..600 {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "sendgate exited with {status} on SIGTERM; log: {}", self.log_tail());
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sendgate did not stop within 60 s of SIGTERM");
    }

    /// The whole log of the current (or last) processor run. Read as bytes
    /// and decoded lossily: a read racing a write may end inside a
    /// character, and one bad byte must not make the whole log read as empty.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log_bytes()).into_owned()
    }

    /// The raw bytes of the current (or last) processor run's log.
    pub fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join(format!("sendgate-{}.log", self.starts))).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn apply_policy(&self, toml_text: &str) {
        let docs = parse_policy_file(toml_text).unwrap_or_else(|e| panic!("test policy invalid: {e:?}"));
        self.rt.block_on(sendgate::cli::ops::publish_policies(&self.cfg, docs, "test")).unwrap();
    }

    pub fn send_intents(&self, intents: &[SendIntent]) {
        let records = intents.iter().map(|i| (i.sender.clone().into_bytes(), Some(codec::encode(RecordType::SendIntent, i).unwrap()))).collect();
        self.send_raw("intents", records);
    }

    pub fn send_delivery(&self, events: &[DeliveryEvent]) {
        let records = events.iter().map(|e| (e.sender.clone().into_bytes(), Some(codec::encode(RecordType::DeliveryEvent, e).unwrap()))).collect();
        self.send_raw("delivery", records);
    }

    pub fn send_raw(&self, suffix: &str, records: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        let producer = kafka_io::producer(&self.cfg).unwrap();
        let failures = self.rt.block_on(kafka_io::send_all(&producer, &self.topic(suffix), records));
        assert!(failures.is_empty(), "{failures:?}");
    }

    pub fn send_command(&self, cmd: &Command) {
        self.send_raw("commands", vec![(cmd.target.clone().into_bytes(), Some(codec::encode(RecordType::Command, cmd).unwrap()))]);
    }

    /// Publishes policy documents (one file's worth).
    pub fn apply(&self, policies: &[Policy]) {
        self.apply_policy(&policies.iter().map(|p| p.toml() + "\n").collect::<String>());
    }

    /// Publishes the intents and waits ([`DECIDE_WAIT`]) for a decision on
    /// each: by intent id. Fails the test if any is missing.
    pub fn decide(&self, intents: &[SendIntent]) -> HashMap<String, Decision> {
        self.send_intents(intents);
        self.await_decisions(&intents.iter().map(|i| i.intent_id.clone()).collect::<Vec<_>>(), DECIDE_WAIT)
    }

    /// Publishes one intent and waits for its decision.
    pub fn decide_one(&self, intent: SendIntent) -> Decision {
        let id = intent.intent_id.clone();
        self.decide(std::slice::from_ref(&intent)).remove(&id).expect("decide waits for every decision")
    }

    /// Waits for a decision for every intent (fails the test if any is missing).
    pub fn await_decisions(&self, ids: &[String], timeout: Duration) -> HashMap<String, Decision> {
        let wanted: HashSet<String> = ids.iter().cloned().collect();
        let got = collect::decisions_for(&self.cfg, &HashMap::new(), &wanted, timeout).unwrap();
        let mut by_id = HashMap::new();
        for d in got {
            by_id.entry(d.intent_id.clone()).or_insert(d);
        }
        let missing: Vec<&String> = ids.iter().filter(|i| !by_id.contains_key(*i)).take(5).collect();
        assert!(missing.is_empty(), "no decision for {missing:?} (of {}) after {timeout:?}; processor log:\n{}", ids.len(), self.log_tail());
        by_id
    }

    /// Every committed decision on the topic, in partition order.
    pub fn all_decisions(&self) -> Vec<Decision> {
        self.read_all("decisions", RecordType::Decision)
    }

    pub fn all_alerts(&self) -> Vec<Alert> {
        self.read_all("alerts", RecordType::Alert)
    }

    pub fn all_dead_letters(&self) -> Vec<DeadLetter> {
        self.read_all("dead-letters", RecordType::DeadLetter)
    }

    fn read_all<T: serde::de::DeserializeOwned>(&self, suffix: &str, rt: RecordType) -> Vec<T> {
        let mut out = Vec::new();
        let opts = ReadOptions { from_beginning: true, start_offsets: None, max: None, idle_timeout: Some(Duration::from_secs(2)) };
        read_topic(&self.cfg, &self.topic(suffix), &opts, |r| {
            out.push(codec::decode(rt, r.payload.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?);
            Ok(())
        })
        .unwrap();
        out
    }

    /// Runs a `sendgate` subcommand against this namespace; (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sendgate"))
            .args(args)
            .env("SENDGATE_BOOTSTRAP", &self.cfg.bootstrap)
            .env("SENDGATE_NAMESPACE", &self.cfg.namespace)
            .env("SENDGATE_LOG", "warn")
            .env("SENDGATE_API_ADDR", &self.cfg.api_addr)
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run sendgate");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Creates one more topic in this namespace (as an output topic).
    pub fn create_topic(&self, suffix: &str, partitions: i32) {
        let text = format!("{}\n[[topic]]\nname = \"{suffix}\"\nrole = \"output\"\npartitions = {partitions}\ncleanup_policy = \"delete\"\ntimestamp_type = \"CreateTime\"\n", sendgate::topology::DEFAULT_TOPOLOGY);
        let topo = sendgate::topology::Topology::parse(&text, &self.cfg.namespace).unwrap();
        self.rt.block_on(sendgate::topology::apply(&topo, &self.cfg.client_config(), 1)).unwrap();
    }

    /// Records the last restore of a stage read from its changelog (from the log).
    pub fn last_restore(&self, stage: &str) -> Option<u64> {
        let text = self.log_text();
        let line = text.lines().rev().find(|l| l.contains("state restored from changelog") && l.contains(&format!("stage={stage} ")))?;
        line.split("records=").nth(1)?.split_whitespace().next()?.parse().ok()
    }

    /// The current value of every window counter in a stage's changelog.
    pub fn changelog_counters(&self, stage: &str) -> HashMap<String, i64> {
        let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        let opts = ReadOptions { from_beginning: true, start_offsets: None, max: None, idle_timeout: Some(Duration::from_secs(2)) };
        read_topic(&self.cfg, &self.topic(&format!("stage.{stage}.changelog")), &opts, |r| {
            if let Some(k) = r.key {
                latest.insert(String::from_utf8_lossy(&k).into_owned(), r.payload.map(<[u8]>::to_vec));
            }
            Ok(())
        })
        .unwrap();
        latest
            .into_iter()
            .filter(|(k, _)| k.starts_with("ctr/"))
            .filter_map(|(k, v)| match sendgate::state::StateValue::decode(&v?) {
                Ok(sendgate::state::StateValue::Counter(c)) => Some((k, c.count)),
                _ => None,
            })
            .collect()
    }

    /// Polls alerts until one matches, or fails after `timeout`.
    pub fn await_alert(&self, pred: impl Fn(&Alert) -> bool, timeout: Duration) -> Alert {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(a) = self.all_alerts().into_iter().find(|a| pred(a)) {
                return a;
            }
            assert!(std::time::Instant::now() < deadline, "no matching alert within {timeout:?}; log:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(mut c) = self.processor.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A default policy with the time-dependent guards off: any decision a test
/// waits for comes at any hour.
pub const OPEN_POLICY: &str = r#"
[[policy]]
scope = "default"
business_hours = "off"
warmup = "off"
"#;

/// How long [`TestEnv::decide`] waits for decisions.
pub const DECIDE_WAIT: Duration = Duration::from_secs(120);

/// One `[[policy]]` document of a test, written field by field, so that a
/// test states only the settings it is about:
/// `Policy::scope("tenant:acme").any_hour().limit("mailbox.outbound.hour", 1)`.
#[derive(Clone, Debug)]
pub struct Policy {
    scope: String,
    fields: Vec<(String, String)>,
    limits: Vec<(String, String)>,
}

impl Policy {
    pub fn scope(scope: &str) -> Policy {
        Policy { scope: scope.to_string(), fields: Vec::new(), limits: Vec::new() }
    }

    /// Business hours and warm-up off: what a test waits for comes at any hour.
    pub fn any_hour(self) -> Policy {
        self.set("business_hours", "\"off\"").set("warmup", "\"off\"")
    }

    /// A field, its value written in TOML (`timezone`, `feedback`, `trust`, ...).
    pub fn set(mut self, field: &str, toml_value: &str) -> Policy {
        self.fields.push((field.to_string(), toml_value.to_string()));
        self
    }

    /// A limit (`mailbox.outbound.hour` = n).
    pub fn limit(mut self, name: &str, n: u64) -> Policy {
        self.limits.push((name.to_string(), n.to_string()));
        self
    }

    /// A limit turned off.
    pub fn limit_off(mut self, name: &str) -> Policy {
        self.limits.push((name.to_string(), "\"off\"".to_string()));
        self
    }

    pub fn toml(&self) -> String {
        let mut out = format!("[[policy]]\nscope = {:?}\n", self.scope);
        for (k, v) in &self.fields {
            out += &format!("{k} = {v}\n");
        }
        if !self.limits.is_empty() {
            let limits: Vec<String> = self.limits.iter().map(|(k, v)| format!("{k:?} = {v}")).collect();
            out += &format!("limits = {{ {} }}\n", limits.join(", "));
        }
        out
    }
}

pub fn intent(id: &str, sender: &str, recipient: &str) -> SendIntent {
    SendIntent::new(id, "acme", sender, recipient, IntentClass::Outbound)
}

pub fn hard_bounce(id: &str, sender: &str, recipient: &str) -> DeliveryEvent {
    DeliveryEvent {
        event_id: id.into(),
        intent_id: None,
        tenant: "acme".into(),
        sender: sender.into(),
        recipient: recipient.into(),
        kind: DeliveryKind::BounceHard,
        smtp_code: Some(550),
        enhanced_code: Some("5.1.1".into()),
        response: Some("user unknown".into()),
        occurred_at_ms: 0,
        retry_after_seconds: None,
    }
}

pub fn count_status(ds: impl IntoIterator<Item = impl std::borrow::Borrow<Decision>>, status: DecisionStatus) -> usize {
    ds.into_iter().filter(|d| d.borrow().status == status).count()
}

/// Exactly one decision per intent, and `n` intents in all.
pub fn assert_one_decision_per_intent(all: &[Decision], n: usize) {
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for d in all {
        *per_id.entry(d.intent_id.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = per_id.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated decisions: {dups:?}");
    assert_eq!(per_id.len(), n, "intents with a decision");
}

pub fn command(kind: CommandKind, target: &str) -> Command {
    Command { operator: Some("test".into()), ..Command::new(kind, "acme", target, format!("c-{kind:?}-{target}")) }
}

/// A free local port (for the API of a test's processor).
/// A processor with its HTTP API on a free port (these tokens) and the
/// open policy, ready (its /readyz answered 200); `extra` adds settings.
pub fn api_env_ready(name: &str, tokens: &str, extra: Vec<(String, String)>) -> TestEnv {
    let mut env_vars = vec![("SENDGATE_API_TOKENS".to_string(), tokens.to_string())];
    env_vars.extend(extra);
    let mut env = TestEnv::with(name, |c| c.api_addr = format!("127.0.0.1:{}", free_port()), env_vars);
    env.start();
    env.apply_policy(OPEN_POLICY);
    let api = format!("http://{}", env.cfg.api_addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while call(&api, None, "GET", "/readyz", None).status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready: {}", env.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
    env
}

/// Another instance of a test's namespace (`TestEnv::start_instance`).
pub struct Instance {
    child: Child,
    pub log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API answer with the instance that computed it (the
/// x-sendgate-answered-by header).
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub answered_by: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request through a maintained HTTP client (ureq), to `base` (a URL
/// without path), with an optional bearer token.
/// Retries the connection while the processor starts (up to 30 s).
pub fn call(base: &str, token: Option<&str>, method: &str, path: &str, body: Option<&str>) -> Answer {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let resp = loop {
        let mut req = ureq::request(method, &format!("{base}{path}")).timeout(Duration::from_secs(60));
        if let Some(t) = token {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => req.set("content-type", "application/json").send_string(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => break r,
            Err(ureq::Error::Status(_, r)) => break r,
            Err(e) if std::time::Instant::now() < deadline && e.kind() == ureq::ErrorKind::ConnectionFailed => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => panic!("{method} {base}{path}: {e}"),
        }
    };
    let status = resp.status();
    let answered_by = resp.header("x-sendgate-answered-by").unwrap_or_default().to_string();
    Answer { status, answered_by, body: resp.into_string().unwrap() }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request to 127.0.0.1 with an optional bearer token;
/// (status, body). Retries the connect while the processor starts.
pub fn http(addr: &str, token: Option<&str>, method: &str, path: &str, body: &str) -> (u16, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match sendgate::cli::audit::http_request(addr, method, path, body, token) {
            Ok(r) => return r,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
