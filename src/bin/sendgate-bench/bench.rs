//! The instruments `scripts/bench.sh` measures with.
//!
//! - `passthrough`: the broker's own limit on this machine: the task loop
//!   sendgate's stages run (same clients, same settings, same commit
//!   interval), consuming the intents and transactionally producing one
//!   record each, with no state and no decoding.
//! - `collect`: reads a decisions topic read-committed while a system works
//!   through a backlog: decisions per second, missing and duplicated
//!   decisions, counts per status.
//! - `recount`: what the counts per status must be, recomputed from the
//!   input topics with a sequential model written apart from the stages
//!   (sender windows, approvals, suppression, recipient and
//!   recipient-domain windows; the benchmark policy turns the guards that
//!   depend on the wall-clock day off).
//! - `latency`: intents at a fixed rate, and the time from each intent's
//!   scheduled append to its decision being readable, in an HdrHistogram.
//! - `fill-changelog` and `read-rate`: many active keys in a stage's
//!   changelog, and how fast a plain consumer reads a topic.

use crate::load::{self, Workload};
use sendgate::cli::kafka_io::{self, ReadOptions};
use sendgate::codec::{self, RecordType};
use sendgate::config::Config;
use sendgate::model::*;
use sendgate::runtime::task::{supervise, Outbox, Processor, TaskError, TaskSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- passthrough

/// Copies each intent to the decisions topic, inside the same transactional
/// loop as the stages.
struct PassThrough {
    input: String,
    output: String,
    dead_letters: String,
}

impl Processor for PassThrough {
    fn name(&self) -> &'static str {
        "passthrough"
    }
    fn input_topics(&self) -> Vec<String> {
        vec![self.input.clone()]
    }
    fn dead_letter_topic(&self) -> String {
        self.dead_letters.clone()
    }
    fn on_assigned(&mut self, _: &[(String, i32)]) -> Result<(), TaskError> {
        Ok(())
    }
    fn on_revoked(&mut self, _: &[(String, i32)], _: bool) {}
    fn process(&mut self, rec: &InputRecord<'_>, out: &mut Outbox<'_>) -> Result<(), TaskError> {
        out.send(&self.output, None, rec.key.unwrap_or_default(), rec.payload, None)
    }
    fn prepare_commit(&mut self, _: &mut Outbox<'_>) -> Result<(), TaskError> {
        Ok(())
    }
    fn committed(&mut self, _: &HashMap<i32, i64>) -> Result<(), TaskError> {
        Ok(())
    }
    fn aborted(&mut self) {}
    fn close(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Runs `tasks` pass-through tasks (one thread each, one consumer group)
/// per hop until `shutdown` is set. With several hops the records pass
/// through a chain of topics (`bench.hop1`, ...), each hop its own group
/// and transactions, as an intent passes through sendgate's stages: the
/// floor of a topology of that many transactional hops.
pub fn passthrough(cfg: &Config, tasks: usize, hops: usize, shutdown: Arc<AtomicBool>) -> Result<(), String> {
    let topo = cfg.topology()?;
    cfg.require_bootstrap()?;
    let hops = hops.max(1);
    let hop_topic = |h: usize| format!("bench.hop{h}");
    if hops > 1 {
        let intents = topo.topics.iter().find(|t| t.name == "intents").ok_or("the topology has no intents topic")?;
        let chain = sendgate::topology::Topology {
            namespace: topo.namespace.clone(),
            topics: (1..hops).map(|h| sendgate::topology::TopicSpec { name: hop_topic(h), role: "benchmark".into(), ..intents.clone() }).collect(),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(sendgate::topology::apply(&chain, &cfg.client_config(), cfg.replication_factor))?;
    }
    let mut handles = Vec::new();
    for h in 0..hops {
        for i in 0..tasks.max(1) {
            let p = PassThrough {
                input: topo.full(&if h == 0 { "intents".to_string() } else { hop_topic(h) }),
                output: topo.full(&if h + 1 == hops { "decisions".to_string() } else { hop_topic(h + 1) }),
                dead_letters: topo.full("dead-letters"),
            };
            let task = if h == 0 { "passthrough".to_string() } else { format!("passthrough.hop{h}") };
            let s = TaskSettings::from_config(cfg, &task, &format!("{}.{i}", cfg.instance_id));
            // Each task is its own group member (and transactional producer).
            let cfg = Config { instance_id: format!("{}-{h}-{i}", cfg.instance_id), ..cfg.clone() };
            let stop = shutdown.clone();
            handles.push(std::thread::spawn(move || supervise(p, &cfg, s, &stop)));
        }
    }
    tracing::info!(tasks, hops, guarantee = %cfg.processing_guarantee, "pass-through running");
    let mut failures = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("panicked".into()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

// ---------------------------------------------------------------- reading outputs

/// The intent id and status of one output record: a Decision, or (from the
/// pass-through) the intent itself, reported as PASSED.
fn output_of(bytes: &[u8]) -> Option<(String, String, String)> {
    if let Ok(d) = codec::decode::<Decision>(RecordType::Decision, bytes) {
        return Some((d.intent_id, d.status.as_str().to_string(), d.reason));
    }
    codec::decode::<SendIntent>(RecordType::SendIntent, bytes).ok().map(|i| (i.intent_id, "PASSED".to_string(), "passthrough".to_string()))
}

/// A consumer of an output topic that hands over records as soon as they
/// are committed (latency is measured with it).
fn output_consumer(cfg: &Config, topic: &str, from_end: bool) -> Result<BaseConsumer, String> {
    cfg.require_bootstrap()?;
    let mut c = cfg.client_config();
    c.set("group.id", format!("{}.bench-reader", cfg.namespace))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .set("log_level", "3");
    let consumer: BaseConsumer = c.create().map_err(|e| format!("cannot create a consumer: {e}"))?;
    // The end resolved now, not at the first fetch: records committed in
    // between must not be skipped.
    let parts = kafka_io::watermarks(cfg, topic)?;
    let mut tpl = TopicPartitionList::new();
    for (p, (_, high)) in &parts {
        tpl.add_partition_offset(topic, *p, if from_end { Offset::Offset(*high) } else { Offset::Beginning }).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    Ok(consumer)
}

/// What `collect` saw.
#[derive(Debug, Default)]
pub struct Collected {
    pub records: u64,
    pub distinct: u64,
    pub seconds: f64,
    pub status: BTreeMap<String, u64>,
    pub reasons: BTreeMap<String, u64>,
    /// CPU time the whole machine spent over the same span, in seconds.
    pub machine_cpu_seconds: f64,
    /// The part of it spent by the broker process (with `broker_pid`).
    pub broker_cpu_seconds: f64,
}

/// CPU seconds used so far: by the whole machine (every core, from
/// /proc/stat) and by one process (its user and system time).
#[derive(Clone, Copy, Default)]
struct CpuSample {
    machine: f64,
    process: f64,
}

impl CpuSample {
    fn take(pid: Option<u32>) -> CpuSample {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| {
                let f: Vec<f64> = t.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                // Busy: everything but idle (4th) and iowait (5th).
                Some(f.iter().sum::<f64>() - f.get(3)? - f.get(4).unwrap_or(&0.0))
            })
            .unwrap_or(0.0);
        let process = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .and_then(|t| {
                // After the command name: state is field 3, utime 14, stime 15.
                let rest: Vec<&str> = t.rsplit_once(')')?.1.split_whitespace().collect();
                Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
            })
            .unwrap_or(0.0);
        CpuSample { machine: machine / hz, process: process / hz }
    }
}

/// Reads the decisions topic from its start until `expect` distinct intents
/// have a decision, or nothing new came for `idle`. The rate is over the
/// span from the first decision read to the last, so start-up (group join,
/// restore) is not counted against any system.
///
/// With `broker_pid`, it also samples CPU time at the first decision and
/// then at most every 100 ms, keeping the last sample taken at a new
/// decision: what the machine (and the broker) spent per decision.
pub fn collect(cfg: &Config, expect: u64, idle: Duration, broker_pid: Option<u32>) -> Result<Collected, String> {
    let topic = cfg.topology()?.full("decisions");
    let consumer = output_consumer(cfg, &topic, false)?;
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(expect as usize);
    let mut out = Collected::default();
    let (mut cpu_first, mut cpu_last, mut sampled) = (None::<CpuSample>, CpuSample::default(), Instant::now());
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let mut last_new = Instant::now();
    let started = Instant::now();
    while out.distinct < expect && last_new.elapsed() < idle {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.map_err(|e| format!("reading {topic}: {e}"))?;
        let now = Instant::now();
        last_new = now;
        out.records += 1;
        let Some((id, status, reason)) = m.payload().and_then(output_of) else { return Err(format!("{topic} [{}] @{}: not a decision", m.partition(), m.offset())) };
        if seen.insert(id) {
            if first.is_none() || now.duration_since(sampled) >= Duration::from_millis(100) || out.distinct + 1 == expect {
                cpu_last = CpuSample::take(broker_pid);
                cpu_first.get_or_insert(cpu_last);
                sampled = now;
            }
            first.get_or_insert(now);
            last = now;
            out.distinct += 1;
            *out.status.entry(status).or_default() += 1;
            *out.reasons.entry(reason).or_default() += 1;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err("collect: gave up after an hour".into());
        }
    }
    out.seconds = first
        .map(|f| last.duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    if let Some(c) = cpu_first {
        out.machine_cpu_seconds = cpu_last.machine - c.machine;
        out.broker_cpu_seconds = cpu_last.process - c.process;
    }
    Ok(out)
}

// ---------------------------------------------------------------- recount

/// The limits the recount applies: the sender windows of the benchmark
/// policy (bench/policy.toml: the built-in defaults, as docs/policies.md
/// lists them). Written out here, not read from the policy code, so that
/// the recount is a second implementation; a test checks that the two agree.
pub const RECOUNT_LIMITS: &[(&str, IntentClass, &str, i64)] = &[
    ("mailbox", IntentClass::Outbound, "hour", 3),
    ("mailbox", IntentClass::Outbound, "day", 25),
    ("sender_domain", IntentClass::Outbound, "hour", 100),
    ("sender_domain", IntentClass::Outbound, "day", 1_000),
    ("mailbox", IntentClass::Transactional, "day", 1_000),
    ("sender_domain", IntentClass::Transactional, "hour", 1_000),
    ("sender_domain", IntentClass::Transactional, "day", 10_000),
];

/// The recipient and recipient-domain limits the full recount applies:
/// the benchmark policy's (2 a day per recipient, lower than the default
/// 10 so that a benchmark of an hour or two meets them; the default 50 an
/// hour per recipient domain, public consumer domains exempt), written out
/// apart from the policy code.
pub const RECOUNT_RECIPIENT_LIMITS: &[(&str, IntentClass, &str, i64)] = &[
    ("recipient", IntentClass::Outbound, "day", 2),
    ("recipient", IntentClass::Transactional, "day", 2),
    ("recipient_domain", IntentClass::Outbound, "hour", 50),
];

/// The public consumer domains of the built-in defaults.
const RECOUNT_PUBLIC_DOMAINS: &[&str] = &[
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "icloud.com", "me.com", "mac.com",
    "proton.me", "protonmail.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com", "yandex.ru", "mail.ru", "zoho.com", "fastmail.com", "qq.com", "163.com",
];

/// Which guards the recount models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecountLogic {
    /// Sender windows and approvals (the sender-only Kafka Streams peer).
    Sender,
    /// Those, then suppression, recipient windows and recipient-domain
    /// windows, in sendgate's stage order (sendgate; the full-logic peer).
    Full,
}

/// A sequential model of the benchmark policy's guards: each intent is
/// judged by every guard in stage order and, only when all pass, counted
/// in every window. What sendgate's reserve, release and parking must add
/// up to.
pub struct RecountModel {
    logic: RecountLogic,
    counts: HashMap<String, i64>,
    /// (tenant, recipient) -> when it was first suppressed, for every class
    /// and for OUTBOUND (log times of the events).
    suppressed: HashMap<(String, String), Suppressed>,
    /// (tenant, mailbox) -> the operator's pauses of it, as [start, end)
    /// in log time (end: the resume, if one came).
    paused: HashMap<(String, String), Vec<(i64, Option<i64>)>>,
    /// When each suppressing event or command reached the recipient stage,
    /// if known (see [`StageClocks`]): it takes effect from there.
    reached: StageClocks,
}

/// Where each delivery event and command stood in the recipient stage's
/// log, as the stage's clock there: the latest log time of any record in
/// its partition up to and including it. Intents from several partitions
/// go through several routers, so a suppressing event may reach the stage
/// after intents appended later than it (the long fault run had a bounce
/// whose router failed three times while another routed a later intent);
/// the stage can only act on what reached it. Every record of the
/// partition before the event has a log time no later than this clock, so
/// an intent appended after the clock reached the stage after the event:
/// allowing it is a fault whatever the routing did.
#[derive(Debug, Default)]
pub struct StageClocks {
    events: HashMap<String, i64>,
    commands: HashMap<String, i64>,
}

impl StageClocks {
    /// When a record appended at `t` took effect: when it reached the
    /// stage, if it is known to have and that was later.
    fn effective(reached: &HashMap<String, i64>, id: &str, t: i64) -> i64 {
        reached.get(id).map_or(t, |&c| c.max(t))
    }

    /// Reads the recipient stage's topic (committed records, each partition
    /// in its order).
    pub fn read(cfg: &Config, topo: &sendgate::topology::Topology, opts: &ReadOptions) -> Result<StageClocks, String> {
        let topic = topo.full("stage.recipient");
        let mut clocks = StageClocks::default();
        let mut partition_clock: HashMap<i32, i64> = HashMap::new();
        kafka_io::read_topic(cfg, &topic, opts, |r| {
            let Some(bytes) = r.payload.as_deref() else { return Ok(()) };
            // The stage dead-letters what it cannot decode; so does this.
            let Ok(env) = codec::decode::<StageEnvelope>(RecordType::StageEnvelope, bytes) else { return Ok(()) };
            let clock = partition_clock.entry(r.partition).or_insert(i64::MIN);
            *clock = (*clock).max(env.log_time_ms);
            if let Some(ev) = env.delivery() {
                clocks.events.entry(ev.event_id.clone()).or_insert(*clock);
            }
            if let Some(cmd) = env.command() {
                clocks.commands.entry(cmd.command_id.clone()).or_insert(*clock);
            }
            Ok(())
        })?;
        Ok(clocks)
    }
}

/// When a recipient's suppressions began: hard bounces and complaints stop
/// every class, unsubscribes OUTBOUND.
#[derive(Debug, Default, Clone, Copy)]
struct Suppressed {
    every_class_since: Option<i64>,
    outbound_since: Option<i64>,
}

/// How long after an operator's pause or resume an intent may still have
/// been decided on the other side of it: the router merges the intents and
/// commands by log time but stops waiting for a silent partition after
/// 500 ms (10 s for one it has never fetched), and a restart under faults
/// resumes from the last commit. (Suppressions need no slack: they are
/// judged from when they reached the stage, see [`StageClocks`].)
pub const PAUSE_SLACK_MS: i64 = 30_000;

impl RecountModel {
    pub fn new(logic: RecountLogic) -> Self {
        RecountModel { logic, counts: HashMap::new(), suppressed: HashMap::new(), paused: HashMap::new(), reached: StageClocks::default() }
    }

    /// Judges suppressions from when they reached the recipient stage
    /// (read before the events and commands are given to the model).
    pub fn with_stage_clocks(mut self, reached: StageClocks) -> Self {
        self.reached = reached;
        self
    }

    /// An operator's command appended at `t`: a suppression list entry
    /// stops every class to its recipient; a pause of a mailbox stops its
    /// intents until a resume. Other commands do not move the model.
    pub fn command(&mut self, cmd: &Command, t: i64) {
        match cmd.kind {
            CommandKind::AddListEntry if cmd.list.as_deref() == Some("suppression") => {
                let t = StageClocks::effective(&self.reached.commands, &cmd.command_id, t);
                earliest(&mut self.suppressed.entry((cmd.tenant.clone(), cmd.target.clone())).or_default().every_class_since, t);
            }
            CommandKind::Pause | CommandKind::Resume => {
                let Some(mailbox) = cmd.target.strip_prefix("mailbox:") else { return };
                let spans = self.paused.entry((cmd.tenant.clone(), mailbox.to_string())).or_default();
                let open = spans.last_mut().filter(|(_, end)| end.is_none());
                match (cmd.kind, open) {
                    (CommandKind::Pause, None) => spans.push((t, None)),
                    (CommandKind::Resume, Some(span)) => span.1 = Some(t),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Whether the intent's mailbox was paused by an operator at `t`, given
    /// `slack` at both ends of each pause. Replies go on through a pause.
    fn paused_at(&self, intent: &SendIntent, t: i64, slack: i64) -> bool {
        self.logic == RecountLogic::Full
            && intent.class != IntentClass::Reply
            && self.paused.get(&(intent.tenant.clone(), intent.sender.clone())).is_some_and(|spans| spans.iter().any(|(start, end)| start + slack < t && end.is_none_or(|end| t < end - slack)))
    }

    /// Whether an intent appended at `t` was inside an operator's pause of
    /// its mailbox by more than [`PAUSE_SLACK_MS`] at both ends: it must
    /// not be allowed, whatever the interleaving.
    pub fn paused_well_inside(&self, intent: &SendIntent, t: i64) -> bool {
        self.paused_at(intent, t, PAUSE_SLACK_MS)
    }

    /// A delivery event appended at `t`: hard bounces and complaints
    /// suppress every class, unsubscribes OUTBOUND; from `t`, or from when
    /// the event reached the recipient stage if that is known and later.
    pub fn delivery(&mut self, ev: &DeliveryEvent, t: i64) {
        let since: fn(&mut Suppressed) -> &mut Option<i64> = match ev.kind {
            DeliveryKind::BounceHard | DeliveryKind::Complaint => |s: &mut Suppressed| &mut s.every_class_since,
            DeliveryKind::Unsubscribe => |s: &mut Suppressed| &mut s.outbound_since,
            _ => return,
        };
        let t = StageClocks::effective(&self.reached.events, &ev.event_id, t);
        earliest(since(self.suppressed.entry((ev.tenant.clone(), ev.recipient.clone())).or_default()), t);
    }

    /// When the intent's recipient became suppressed for its class, if it did.
    fn suppressed_since(&self, intent: &SendIntent) -> Option<i64> {
        let s = self.suppressed.get(&(intent.tenant.clone(), intent.recipient.clone()))?;
        let outbound = s.outbound_since.filter(|_| intent.class == IntentClass::Outbound);
        match (s.every_class_since, outbound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn decide(&mut self, intent: &SendIntent, t: i64) -> &'static str {
        if self.paused_at(intent, t, 0) {
            return "PAUSED";
        }
        if intent.requires_approval {
            return "HELD";
        }
        let (sender, recipient) = self.windows(intent, t);
        if self.is_full(&sender) {
            return "DEFERRED";
        }
        if self.is_suppressed(intent) {
            return "BLOCKED";
        }
        if self.is_full(&recipient) {
            return "DEFERRED";
        }
        for (key, _) in sender.into_iter().chain(recipient) {
            *self.counts.entry(key).or_default() += 1;
        }
        "ALLOWED"
    }

    /// The capped windows an intent falls in, as (counter key, limit): the
    /// sender stage's, then (full logic) the recipient's and the recipient
    /// domain's in stage order.
    pub fn windows(&self, intent: &SendIntent, t: i64) -> (Vec<(String, i64)>, Vec<(String, i64)>) {
        let sender = RECOUNT_LIMITS.iter().filter(|(_, c, _, _)| *c == intent.class).map(|(scope, _, window, max)| (recount_key(intent, t, scope, window), *max)).collect();
        let mut recipient = Vec::new();
        if self.logic == RecountLogic::Full {
            let recipient_domain = intent.recipient.rsplit('@').next().unwrap_or_default();
            for (scope, class, window, max) in RECOUNT_RECIPIENT_LIMITS {
                if *class == intent.class && !(*scope == "recipient_domain" && RECOUNT_PUBLIC_DOMAINS.contains(&recipient_domain)) {
                    recipient.push((recount_key(intent, t, scope, window), *max));
                }
            }
        }
        (sender, recipient)
    }

    /// Whether the full logic blocks an intent for its recipient's suppression.
    /// Whether the model judges the intent's recipient suppressed: it reads
    /// every delivery event before any intent (the benchmark's suppressions
    /// are published first).
    pub fn is_suppressed(&self, intent: &SendIntent) -> bool {
        self.logic == RecountLogic::Full && self.suppressed_since(intent).is_some()
    }

    /// Whether an intent appended at `t` came after its recipient's
    /// suppression (in log time, or in the recipient stage's clock when the
    /// model has the stage's log): what a decision must respect whatever
    /// the interleaving (the check of a run whose suppressions come while
    /// intents flow). A suppression that never reached the stage counts
    /// from its log time: one lost shows for the rest of the run.
    pub fn suppressed_before(&self, intent: &SendIntent, t: i64) -> bool {
        self.logic == RecountLogic::Full && self.suppressed_since(intent).is_some_and(|since| since < t)
    }

    /// A window's count so far (see [`recount_key`]).
    pub fn count(&self, key: &str) -> i64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    fn is_full(&self, windows: &[(String, i64)]) -> bool {
        windows.iter().any(|(key, max)| self.count(key) >= *max)
    }
}

/// Keeps the earlier of a suppression's start and `t`.
fn earliest(since: &mut Option<i64>, t: i64) {
    *since = Some(since.map_or(t, |s| s.min(t)));
}

/// What a system's decisions must satisfy whatever order it decided in:
/// its ALLOWED decisions, counted per window by the recount's own keys,
/// stay within every limit; no recipient is written to after its
/// suppression reached the recipient stage; exactly the intents
/// that ask for approval are held.
#[derive(Debug, Default, serde::Serialize)]
pub struct LimitCheck {
    pub decided: u64,
    /// The decisions per status (the first decision of each intent).
    pub decided_status: BTreeMap<String, u64>,
    pub allowed: u64,
    pub windows: u64,
    pub over_limit: u64,
    pub suppressed_allowed: u64,
    /// Allowed while an operator's pause of the mailbox held.
    pub paused_allowed: u64,
    pub approval_mismatches: u64,
    pub examples: Vec<String>,
}

impl LimitCheck {
    pub fn clean(&self) -> bool {
        self.over_limit + self.suppressed_allowed + self.paused_allowed + self.approval_mismatches == 0
    }

    fn note(&mut self, what: String) {
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

/// The recount of a run: the counts per status of the sequential model,
/// and with `check`, the decisions topic held against the limits.
#[derive(Debug, serde::Serialize)]
pub struct Recount {
    pub status: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<LimitCheck>,
}

/// Replays the input topics through [`RecountModel`]: first every delivery
/// event (the workload's suppressions come before its intents), then the
/// intents in log order, and gives the expected count per status.
///
/// The counts are exact for the sender logic when each sender domain's
/// intents share a partition (`load --key-by-sender-domain`) and no
/// delivery event can change a decision (`--deliveries-only`). With the
/// full logic they are what deciding each sender domain's intents one at a
/// time would give: a pipelined system reserves capacity at the sender for
/// intents a later stage then denies, and decides what came meanwhile
/// without knowing the outcome (sendgate parks an intent whose window is
/// full only of such reservations, but a later intent may take a place in
/// another window first), so its counts may differ from them by a little
/// either way. What must hold exactly, whatever the order, is `check`.
pub fn recount(cfg: &Config, logic: RecountLogic, check: bool) -> Result<Recount, String> {
    let topo = cfg.topology()?;
    let opts = ReadOptions { from_beginning: true, start_offsets: None, max: None, idle_timeout: Some(Duration::from_secs(3)) };
    let mut model = RecountModel::new(logic);
    if check && logic == RecountLogic::Full {
        model = model.with_stage_clocks(StageClocks::read(cfg, &topo, &opts)?);
    }
    if logic == RecountLogic::Full {
        read_timed(cfg, &topo.full("delivery"), &opts, RecordType::DeliveryEvent, |ev, t| model.delivery(&ev, t))?;
        // Commands in log order (one partition's order is what a pause and
        // its resume need: both are keyed by their target).
        read_timed(cfg, &topo.full("commands"), &opts, RecordType::Command, |cmd, t| model.command(&cmd, t))?;
    }
    let topic = topo.full("intents");
    let mut status: BTreeMap<String, u64> = BTreeMap::new();
    // With `check`: every intent and its log time, to judge its decision.
    let mut intents: HashMap<String, (SendIntent, i64)> = HashMap::new();
    kafka_io::read_topic(cfg, &topic, &opts, |r| {
        let Some(bytes) = r.payload.as_deref() else { return Ok(()) };
        let intent: SendIntent = codec::decode(RecordType::SendIntent, bytes).map_err(|e| format!("{topic} @{}: {e}", r.offset))?;
        let t = r.timestamp_ms.ok_or("intent without a timestamp")?;
        *status.entry(model.decide(&intent, t).to_string()).or_default() += 1;
        if check {
            intents.insert(intent.intent_id.clone(), (intent, t));
        }
        Ok(())
    })?;
    if !check {
        return Ok(Recount { status, check: None });
    }
    let mut c = LimitCheck::default();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(intents.len());
    let mut allowed_per_window: HashMap<String, (i64, i64)> = HashMap::new();
    let topic = topo.full("decisions");
    kafka_io::read_topic(cfg, &topic, &opts, |r| {
        let Some((id, st, _)) = r.payload.as_deref().and_then(output_of) else { return Err(format!("{topic} @{}: not a decision", r.offset)) };
        let Some((intent, t)) = intents.get(&id) else { return Ok(()) };
        if !seen.insert(id.clone()) {
            return Ok(());
        }
        c.decided += 1;
        *c.decided_status.entry(st.clone()).or_default() += 1;
        // Held exactly when asked for; an intent that asks may also be
        // stopped before the approval step (a pause, a block), but never
        // allowed without an approval (the workloads publish none).
        if (intent.requires_approval && st == "ALLOWED") || (!intent.requires_approval && st == "HELD") {
            c.approval_mismatches += 1;
            c.note(format!("{id}: {st}, asks for approval: {}", intent.requires_approval));
        }
        if st != "ALLOWED" {
            return Ok(());
        }
        c.allowed += 1;
        if model.suppressed_before(intent, *t) {
            c.suppressed_allowed += 1;
            c.note(format!("{id}: ALLOWED to {}, suppressed before it", intent.recipient));
        }
        if model.paused_well_inside(intent, *t) {
            c.paused_allowed += 1;
            c.note(format!("{id}: ALLOWED from {}, paused by an operator then", intent.sender));
        }
        let (sender, recipient) = model.windows(intent, *t);
        for (key, max) in sender.into_iter().chain(recipient) {
            allowed_per_window.entry(key).or_insert((0, max)).0 += 1;
        }
        Ok(())
    })?;
    c.windows = allowed_per_window.len() as u64;
    for (key, (n, max)) in &allowed_per_window {
        if n > max {
            c.over_limit += 1;
            c.note(format!("{key}: {n} allowed, limit {max}"));
        }
    }
    Ok(Recount { status, check: Some(c) })
}

/// Every record of an input topic, decoded, with its log time.
fn read_timed<T: serde::de::DeserializeOwned>(cfg: &Config, topic: &str, opts: &ReadOptions, record: RecordType, mut f: impl FnMut(T, i64)) -> Result<u64, String> {
    kafka_io::read_topic(cfg, topic, opts, |r| {
        let Some(bytes) = r.payload.as_deref() else { return Ok(()) };
        let value = codec::decode(record, bytes).map_err(|e| format!("{topic} @{}: {e}", r.offset))?;
        f(value, r.timestamp_ms.ok_or_else(|| format!("{topic} @{}: a record without a timestamp", r.offset))?);
        Ok(())
    })
}

/// The recount's counter of `scope` and `window` ("hour" or "day", UTC)
/// for an intent appended at `t`: per mailbox, sender domain, (tenant,
/// recipient), or (sender domain, recipient domain).
pub(crate) fn recount_key(intent: &SendIntent, t: i64, scope: &str, window: &str) -> String {
    let bucket = match window {
        "hour" => t.div_euclid(3_600_000),
        _ => t.div_euclid(86_400_000),
    };
    let sender_domain = intent.sender.rsplit('@').next().unwrap_or_default();
    let who = match scope {
        "mailbox" => intent.sender.clone(),
        // A recipient's windows belong to the tenant, as in the stage.
        "recipient" => format!("{}/{}", intent.tenant, intent.recipient),
        "recipient_domain" => format!("{sender_domain}>{}", intent.recipient.rsplit('@').next().unwrap_or_default()),
        _ => sender_domain.to_string(),
    };
    format!("{scope}:{who}/{:?}/{window}/{bucket}", intent.class)
}

// ---------------------------------------------------------------- latency

/// Latency figures in microseconds.
#[derive(Debug)]
pub struct Latency {
    pub sent: u64,
    pub received: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The same for ALLOWED decisions alone (through every stage) and for
    /// DEFERRED ones (most stop at the sender stage), which take different
    /// paths; zero counts when the decision's status was not read.
    pub allowed: StatusLatency,
    pub deferred: StatusLatency,
}

#[derive(Debug, Default)]
pub struct StatusLatency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Latency {
    pub fn to_json(&self) -> serde_json::Value {
        let part = |p: &StatusLatency| serde_json::json!({"count": p.count, "p50_us": p.p50_us, "p99_us": p.p99_us});
        serde_json::json!({"sent": self.sent, "received": self.received, "p50_us": self.p50_us, "p99_us": self.p99_us, "p999_us": self.p999_us, "max_us": self.max_us,
            "allowed": part(&self.allowed), "deferred": part(&self.deferred)})
    }
}

/// The histograms of one latency run: every decision, and ALLOWED and
/// DEFERRED apart.
struct Histograms {
    all: hdrhistogram::Histogram<u64>,
    allowed: hdrhistogram::Histogram<u64>,
    deferred: hdrhistogram::Histogram<u64>,
}

impl Histograms {
    fn new() -> Result<Self, String> {
        let h = || hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string());
        Ok(Histograms { all: h()?, allowed: h()?, deferred: h()? })
    }

    fn record(&mut self, status: Option<&str>, us: u64) {
        self.all.saturating_record(us);
        match status {
            Some("ALLOWED") => self.allowed.saturating_record(us),
            Some("DEFERRED") => self.deferred.saturating_record(us),
            _ => {}
        }
    }

    fn add(&mut self, other: Histograms) -> Result<(), String> {
        self.all.add(other.all).map_err(|e| e.to_string())?;
        self.allowed.add(other.allowed).map_err(|e| e.to_string())?;
        self.deferred.add(other.deferred).map_err(|e| e.to_string())
    }

    fn finish(&self, sent: u64, received: u64) -> Latency {
        let part = |h: &hdrhistogram::Histogram<u64>| StatusLatency { count: h.len(), p50_us: h.value_at_quantile(0.5), p99_us: h.value_at_quantile(0.99) };
        let h = &self.all;
        Latency { sent, received, p50_us: h.value_at_quantile(0.5), p99_us: h.value_at_quantile(0.99), p999_us: h.value_at_quantile(0.999), max_us: h.max(), allowed: part(&self.allowed), deferred: part(&self.deferred) }
    }
}

/// Publishes `rate` intents per second for `seconds` (the workload of
/// `seed`, deliveries beside them as in the throughput runs) and measures
/// each from its *scheduled* send time to the moment its decision is
/// readable. Measuring from the schedule, not from when the producer got
/// to it, is what corrects for coordinated omission: a stall delays the
/// sends behind it, and their wait is counted.
pub fn latency(cfg: &Config, rate: f64, seconds: f64, seed: u64, drain: Duration) -> Result<Latency, String> {
    latency_of(cfg, rate, seconds, seed, true, drain)
}

/// [`latency`], with or without the delivery events beside the intents.
fn latency_of(cfg: &Config, rate: f64, seconds: f64, seed: u64, deliveries: bool, drain: Duration) -> Result<Latency, String> {
    let topo = cfg.topology()?;
    let n = (rate * seconds).round().max(1.0) as u64;
    let w = Workload { seed, intents: n, key_by_sender_domain: true, deliveries_only: true, own_recipients: true, events_per_intent: if deliveries { Workload::default().events_per_intent } else { 0.0 }, ..Workload::default() };
    // Generated up front (bounded: rate x seconds records), so that
    // generation does not steal time from the schedule.
    let mut records = Vec::with_capacity(n as usize * 2);
    load::generate(&w, |topic, k, v| {
        records.push((topic, k, v));
        Ok(())
    })?;
    let consumer = output_consumer(cfg, &topo.full("decisions"), true)?;
    let producer = bench_producer(cfg, 1)?;
    warm_up(&topo, &producer, &consumer, seed)?;

    // Intent i is scheduled at t0 + i / rate; its id ends in i. Nothing is
    // shared between the threads but t0, so the measurement itself does not
    // contend at high rates.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now() + Duration::from_millis(100);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let prefix = format!("load-{seed}-");
        std::thread::spawn(move || -> Result<(Histograms, u64), String> {
            let mut h = Histograms::new()?;
            let mut seen = vec![false; n as usize];
            let mut received = 0u64;
            let mut done_at: Option<Instant> = None;
            while received < n {
                if done.load(Ordering::Relaxed) && done_at.get_or_insert_with(Instant::now).elapsed() > drain {
                    break;
                }
                let Some(m) = consumer.poll(Duration::from_millis(50)) else { continue };
                let m = m.map_err(|e| e.to_string())?;
                let now = Instant::now();
                let Some((id, status, _)) = m.payload().and_then(output_of) else { continue };
                let Some(i) = id.strip_prefix(&prefix).and_then(|i| i.parse::<usize>().ok()).filter(|i| *i < seen.len()) else { continue };
                if !std::mem::replace(&mut seen[i], true) {
                    received += 1;
                    let at = t0 + interval.mul_f64(i as f64);
                    h.record(Some(&status), now.saturating_duration_since(at).as_micros() as u64);
                }
            }
            Ok((h, received))
        })
    };
    let mut sent = 0u64;
    let (intents, delivery) = (topo.full("intents"), topo.full("delivery"));
    for (topic, key, value) in &records {
        if *topic == "intents" {
            // Sends everything already due at once; sleeps only when ahead.
            let at = t0 + interval.mul_f64(sent as f64);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent += 1;
        }
        let full = if *topic == "intents" { &intents } else { &delivery };
        send_waiting(&producer, BaseRecord::to(full).key(key.as_slice()).payload(value.as_slice()))?;
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| format!("flush: {e}"))?;
    done.store(true, Ordering::Relaxed);
    let (h, received) = reader.join().map_err(|_| "latency reader panicked".to_string())??;
    Ok(h.finish(sent, received))
}

/// `POST /v1/intents?wait_ms` round trips at a steady rate, beside the
/// topic-to-topic latency at the same rate in the same run (the baseline).
#[derive(Debug)]
pub struct RequestReply {
    pub topic: Latency,
    pub http: Latency,
    /// Answered 202: not decided within the wait.
    pub timed_out: u64,
}

/// Workers sending requests at once (a bound on connections and threads).
const RR_WORKERS: usize = 64;
/// Longest a request waits for its decision.
const RR_WAIT_MS: u64 = 10_000;

/// Measures topic-to-topic latency (intents produced, decisions read) and
/// then request-reply latency (each intent POSTed to the API with
/// `wait_ms`, its decision in the answer), both at `rate` for `seconds`,
/// each from its scheduled send (coordinated omission corrected), on
/// intents of the same shape (seeds `seed` and `seed + 1`).
pub fn request_reply(cfg: &Config, api: &str, token: &str, rate: f64, seconds: f64, seed: u64) -> Result<RequestReply, String> {
    let topic = latency_of(cfg, rate, seconds, seed, false, Duration::from_secs(30))?;
    let n = (rate * seconds).round().max(1.0) as u64;
    let w = Workload { seed: seed + 1, intents: n, events_per_intent: 0.0, key_by_sender_domain: true, ..Workload::default() };
    let mut bodies = Vec::with_capacity(n as usize);
    load::generate(&w, |topic, _, v| {
        if topic == "intents" {
            let i: SendIntent = codec::decode(RecordType::SendIntent, &v).map_err(|e| e.to_string())?;
            bodies.push(serde_json::to_string(&i).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    let url = format!("{}/v1/intents?wait_ms={RR_WAIT_MS}", api.trim_end_matches('/'));
    let auth = format!("Bearer {token}");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now() + Duration::from_millis(100);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, String)>(RR_WORKERS * 4);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..RR_WORKERS)
        .map(|_| {
            let (rx, url, auth) = (rx.clone(), url.clone(), auth.clone());
            std::thread::spawn(move || -> Result<(Histograms, u64, u64), String> {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_millis(RR_WAIT_MS + 10_000)).build();
                let mut h = Histograms::new()?;
                let (mut answered, mut timed_out) = (0u64, 0u64);
                loop {
                    let job = rx.lock().expect("job queue").recv();
                    let Ok((i, body)) = job else { break };
                    let r = agent.post(&url).set("authorization", &auth).set("content-type", "application/json").send_string(&body);
                    let now = Instant::now();
                    match r {
                        Ok(resp) if resp.status() == 200 => {
                            answered += 1;
                            let status = resp.into_string().ok().and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok()).and_then(|d| d.get("status").and_then(|s| s.as_str()).map(str::to_string));
                            h.record(status.as_deref(), now.saturating_duration_since(t0 + interval.mul_f64(i as f64)).as_micros() as u64);
                        }
                        Ok(_) => timed_out += 1,
                        Err(e) => return Err(format!("POST {url}: {e}")),
                    }
                }
                Ok((h, answered, timed_out))
            })
        })
        .collect();
    for (i, body) in bodies.into_iter().enumerate() {
        let at = t0 + interval.mul_f64(i as f64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tx.send((i, body)).map_err(|_| "every request worker stopped".to_string())?;
    }
    drop(tx);
    let mut h = Histograms::new()?;
    let (mut received, mut timed_out) = (0u64, 0u64);
    for w in workers {
        let (wh, a, t) = w.join().map_err(|_| "a request worker panicked".to_string())??;
        h.add(wh)?;
        received += a;
        timed_out += t;
    }
    let http = h.finish(n, received);
    Ok(RequestReply { topic, http, timed_out })
}

/// Sends a few intents of another seed and waits for their decisions: the
/// system under test has then joined its groups and restored, and the
/// consumer sits at the end of the decisions topic.
fn warm_up(topo: &sendgate::topology::Topology, producer: &BenchProducer, consumer: &BaseConsumer, seed: u64) -> Result<(), String> {
    let w = Workload { seed: seed ^ 0x5eed, intents: 20, events_per_intent: 0.0, key_by_sender_domain: true, ..Workload::default() };
    let mut ids = std::collections::HashSet::new();
    let topic = topo.full("intents");
    load::generate(&w, |_, k, v| {
        ids.insert(codec::decode::<SendIntent>(RecordType::SendIntent, &v).map_err(|e| e.to_string())?.intent_id);
        send_waiting(producer, BaseRecord::to(&topic).key(k.as_slice()).payload(v.as_slice()))
    })?;
    producer.flush(Duration::from_secs(30)).map_err(|e| format!("flush: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ids.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("warm-up: {} of 20 intents got no decision in 180 s; is the system under test running?", ids.len()));
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| e.to_string())?;
            if let Some((id, _, _)) = m.payload().and_then(output_of) {
                ids.remove(&id);
            }
        }
    }
    // Let the system finish the warm-up's commits before the clock starts.
    std::thread::sleep(Duration::from_secs(1));
    while consumer.poll(Duration::from_millis(100)).is_some() {}
    Ok(())
}

type BenchProducer = ThreadedProducer<rdkafka::producer::DefaultProducerContext>;

/// An idempotent producer for the generators; `linger_ms` trades latency
/// (the latency run) against batching (filling a changelog).
fn bench_producer(cfg: &Config, linger_ms: u32) -> Result<BenchProducer, String> {
    cfg.require_bootstrap()?;
    cfg.producer_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("log_level", "3")
        .create()
        .map_err(|e| format!("cannot create a producer: {e}"))
}

/// Sends a record, waiting (at most a minute) while the producer's bounded
/// queue is full.
fn send_waiting(producer: &BenchProducer, mut rec: BaseRecord<'_, [u8], [u8]>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) if Instant::now() < deadline => {
                rec = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("produce: {e}")),
        }
    }
}

// ---------------------------------------------------------------- restore

/// Writes `keys` distinct window counters (one per recipient, the shape of
/// the recipient stage's state) into a stage's changelog, spread over its
/// partitions. Returns the records written.
pub fn fill_changelog(cfg: &Config, stage: &str, keys: u64) -> Result<u64, String> {
    let topo = cfg.topology()?;
    let topic = topo.full(&format!("stage.{stage}.changelog"));
    let partitions = topo.partitions(&format!("stage.{stage}")).max(1);
    let producer = bench_producer(cfg, 20)?;
    let day = 1_763_942_400_000i64;
    for i in 0..keys {
        let key = sendgate::stage::keys::counter(&format!("recipient:person{i}@company{}.example", i % 20_000), "outbound", "day");
        let value = sendgate::state::StateValue::Counter(sendgate::state::WindowCounter { bucket_start_ms: day, count: 1 + (i % 9) as i64, alerted_pct: 0, pending: 0 }).encode();
        send_waiting(&producer, BaseRecord::to(&topic).key(key.as_slice()).payload(value.as_slice()).partition((i % partitions as u64) as i32))?;
    }
    producer.flush(Duration::from_secs(120)).map_err(|e| format!("flush: {e}"))?;
    Ok(keys)
}

/// Reads a whole topic with a plain read-committed consumer: (records, seconds).
pub fn read_rate(cfg: &Config, topic_suffix: &str) -> Result<(u64, f64), String> {
    let topic = cfg.topology()?.full(topic_suffix);
    let ranges = kafka_io::watermarks(cfg, &topic)?;
    let started = Instant::now();
    let n = kafka_io::read_ranges(cfg, &topic, &ranges, |_| Ok(()))?;
    Ok((n, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sendgate::policy::spec::LimitSpec;

    #[test]
    fn the_recount_limits_are_the_benchmark_policy() {
        let mut spec = sendgate::policy::resolve::builtin_defaults();
        let docs = sendgate::policy::file::parse_policy_file(include_str!("../../../bench/policy.toml")).unwrap();
        let (_, bench) = docs.iter().find(|(scope, _)| *scope == sendgate::policy::Scope::Default).unwrap();
        spec.limits.extend(bench.limits.clone());
        let limits: BTreeMap<&String, u64> = spec.limits.iter().filter_map(|(k, l)| match l {
            LimitSpec::Max(m) => Some((k, *m)),
            _ => None,
        }).collect();
        let ours: Vec<_> = RECOUNT_LIMITS.iter().chain(RECOUNT_RECIPIENT_LIMITS).collect();
        for (scope, class, window, max) in &ours {
            let name = format!("{scope}.{}.{window}", class.as_str().to_lowercase());
            assert_eq!(limits.get(&name).map(|m| *m as i64), Some(*max), "{name}");
        }
        assert_eq!(limits.len(), ours.len(), "every window of the benchmark policy is in the recount: {limits:?}");
        let mut public: Vec<&String> = spec.public_domains.as_ref().unwrap().iter().collect();
        public.sort();
        let mut exempt: Vec<&str> = RECOUNT_PUBLIC_DOMAINS.to_vec();
        exempt.sort();
        assert_eq!(public, exempt);
    }

    #[test]
    fn the_recount_caps_each_window_and_holds_approvals() {
        let mut model = RecountModel::new(RecountLogic::Sender);
        let t = 1_763_971_200_000; // an hour boundary
        let mut intent = SendIntent::new("i", "t", "ana@acme.com", "bo@x.com", IntentClass::Outbound);
        let decided: Vec<&str> = (0..5).map(|_| model.decide(&intent, t)).collect();
        assert_eq!(decided, ["ALLOWED", "ALLOWED", "ALLOWED", "DEFERRED", "DEFERRED"]);
        // The next hour has room again.
        assert_eq!(model.decide(&intent, t + 3_600_000), "ALLOWED");
        intent.requires_approval = true;
        assert_eq!(model.decide(&intent, t), "HELD");
        intent.requires_approval = false;
        intent.class = IntentClass::Reply;
        assert_eq!(model.decide(&intent, t), "ALLOWED");
    }

    #[test]
    fn the_full_recount_suppresses_caps_recipients_and_counts_only_what_passed_everything() {
        let t = 1_763_971_200_000;
        let mut model = RecountModel::new(RecountLogic::Full);
        let mut bounce = DeliveryEvent { event_id: "e".into(), intent_id: None, tenant: "t".into(), sender: "ana@acme.com".into(), recipient: "gone@x.com".into(), kind: DeliveryKind::BounceHard, smtp_code: Some(550), enhanced_code: None, response: None, occurred_at_ms: 0, retry_after_seconds: None };
        model.delivery(&bounce, t - 60_000);
        bounce.recipient = "unsub@x.com".into();
        bounce.kind = DeliveryKind::Unsubscribe;
        model.delivery(&bounce, t - 60_000);
        let intent = |sender: &str, recipient: &str, class| SendIntent::new("i", "t", sender, recipient, class);
        assert_eq!(model.decide(&intent("ana@acme.com", "gone@x.com", IntentClass::Transactional), t), "BLOCKED");
        assert_eq!(model.decide(&intent("ana@acme.com", "unsub@x.com", IntentClass::Outbound), t), "BLOCKED");
        assert_eq!(model.decide(&intent("ana@acme.com", "unsub@x.com", IntentClass::Transactional), t), "ALLOWED");
        // The check judges by time: an intent appended before the event, or
        // with it, may have been allowed.
        assert!(model.suppressed_before(&intent("ana@acme.com", "gone@x.com", IntentClass::Transactional), t));
        assert!(!model.suppressed_before(&intent("ana@acme.com", "gone@x.com", IntentClass::Transactional), t - 60_000));
        assert!(!model.suppressed_before(&intent("ana@acme.com", "unsub@x.com", IntentClass::Transactional), t));
        assert!(model.suppressed_before(&intent("ana@acme.com", "unsub@x.com", IntentClass::Outbound), t));
        // A blocked intent spent none of the mailbox's 3 an hour.
        assert_eq!(model.decide(&intent("ana@acme.com", "a@x.com", IntentClass::Outbound), t), "ALLOWED");
        assert_eq!(model.decide(&intent("ana@acme.com", "b@x.com", IntentClass::Outbound), t), "ALLOWED");
        // 2 a day to one recipient, from any mailbox: the third waits.
        let to_one: Vec<&str> = (0..3).map(|m| model.decide(&intent(&format!("m{m}@acme.com"), "c@y.com", IntentClass::Outbound), t + m * 3_600_000)).collect();
        assert_eq!(to_one, ["ALLOWED", "ALLOWED", "DEFERRED"]);
        // 50 an hour from one sender domain to one recipient domain, but
        // not to a public one.
        let to_domain = |model: &mut RecountModel, domain: &str| (0..60).filter(|n| model.decide(&intent(&format!("n{n}@bulk.com"), &format!("p{n}@{domain}"), IntentClass::Outbound), t) == "ALLOWED").count();
        assert_eq!(to_domain(&mut model, "corp.com"), 50);
        assert_eq!(to_domain(&mut model, "gmail.com"), 50, "the rest of the sender domain's 100 an hour");
    }

    #[test]
    fn a_suppression_counts_from_when_it_reached_the_recipient_stage_when_that_is_known() {
        let t = 1_763_971_200_000;
        // The bounce reached the stage 50 s after it was appended (its
        // router was failing); the list entry with no stage record counts
        // from its log time.
        let reached = StageClocks { events: HashMap::from([("late".to_string(), t + 50_000)]), commands: HashMap::new() };
        let mut model = RecountModel::new(RecountLogic::Full).with_stage_clocks(reached);
        let bounce = DeliveryEvent { event_id: "late".into(), intent_id: None, tenant: "t".into(), sender: "ana@acme.com".into(), recipient: "gone@x.com".into(), kind: DeliveryKind::BounceHard, smtp_code: Some(550), enhanced_code: None, response: None, occurred_at_ms: 0, retry_after_seconds: None };
        model.delivery(&bounce, t);
        let cmd = Command { command_id: "never-routed".into(), kind: CommandKind::AddListEntry, tenant: "t".into(), target: "listed@x.com".into(), sender: None, reason: None, operator: None, list: Some("suppression".into()), mode: None, until_ms: None };
        model.command(&cmd, t);
        let intent = |recipient: &str| SendIntent::new("i", "t", "ana@acme.com", recipient, IntentClass::Transactional);
        assert!(!model.suppressed_before(&intent("gone@x.com"), t + 10_000), "appended after the bounce, but it may have reached the stage first");
        assert!(!model.suppressed_before(&intent("gone@x.com"), t + 50_000));
        assert!(model.suppressed_before(&intent("gone@x.com"), t + 50_001), "after the stage's clock passed the bounce");
        assert!(model.suppressed_before(&intent("listed@x.com"), t + 1), "one that never reached the stage counts from its log time");
    }

    #[test]
    fn operator_commands_suppress_recipients_and_pause_mailboxes_until_resumed() {
        let t = 1_763_971_200_000;
        let mut model = RecountModel::new(RecountLogic::Full);
        let cmd = |kind, target: &str, list: Option<&str>| Command { command_id: "c".into(), kind, tenant: "t".into(), target: target.into(), sender: None, reason: None, operator: None, list: list.map(str::to_string), mode: None, until_ms: None };
        let intent = |sender: &str, recipient: &str| SendIntent::new("i", "t", sender, recipient, IntentClass::Transactional);
        model.command(&cmd(CommandKind::AddListEntry, "gone@x.com", Some("suppression")), t);
        model.command(&cmd(CommandKind::AddListEntry, "x.com", Some("block")), t);
        assert_eq!(model.decide(&intent("ana@acme.com", "gone@x.com"), t + 1), "BLOCKED", "an operator suppression stops every class");
        assert!(model.suppressed_before(&intent("ana@acme.com", "gone@x.com"), t + 1));
        assert!(!model.suppressed_before(&intent("ana@acme.com", "other@x.com"), t + 1), "block lists are not modelled");

        model.command(&cmd(CommandKind::Pause, "mailbox:bo@acme.com", None), t);
        model.command(&cmd(CommandKind::Pause, "mailbox:bo@acme.com", None), t + 5_000);
        model.command(&cmd(CommandKind::Resume, "mailbox:bo@acme.com", None), t + 100_000);
        model.command(&cmd(CommandKind::Resume, "mailbox:bo@acme.com", None), t + 200_000);
        model.command(&cmd(CommandKind::Pause, "sender_domain:acme.com", None), t);
        assert_eq!(model.decide(&intent("bo@acme.com", "a@y.com"), t - 1), "ALLOWED");
        assert_eq!(model.decide(&intent("bo@acme.com", "a@y.com"), t + 1), "PAUSED");
        assert_eq!(model.decide(&intent("bo@acme.com", "b@y.com"), t + 100_000), "ALLOWED", "resumed");
        assert_eq!(model.decide(&intent("cy@acme.com", "b@y.com"), t + 1), "ALLOWED", "another mailbox");
        let mut reply = intent("bo@acme.com", "d@y.com");
        reply.class = IntentClass::Reply;
        assert_eq!(model.decide(&reply, t + 1), "ALLOWED", "replies go on through a pause");
        assert!(!model.paused_well_inside(&reply, t + PAUSE_SLACK_MS + 1));
        // The check gives each end of the pause the slack.
        assert!(!model.paused_well_inside(&intent("bo@acme.com", "c@y.com"), t + PAUSE_SLACK_MS));
        assert!(model.paused_well_inside(&intent("bo@acme.com", "c@y.com"), t + PAUSE_SLACK_MS + 1));
        assert!(!model.paused_well_inside(&intent("bo@acme.com", "c@y.com"), t + 100_000 - PAUSE_SLACK_MS));
        // A pause never resumed holds to the end.
        model.command(&cmd(CommandKind::Pause, "mailbox:bo@acme.com", None), t + 300_000);
        assert!(model.paused_well_inside(&intent("bo@acme.com", "c@y.com"), t + 3_600_000));
    }}
