//! `sendgate-bench`: the instruments of the benchmarks and of the fault
//! harness, apart from the product's `sendgate` command. `scripts/bench.sh`,
//! `scripts/faults.sh` and `scripts/audit-run.sh` run them; they read the
//! same configuration (file and SENDGATE_* variables) as `sendgate`.
//!
//! - [`load`]: a reproducible, skewed workload on the input topics.
//! - [`bench`]: the pass-through limit, the decision collector, the
//!   recount, latency, request-reply, changelog fill and plain read rate.
//! - [`verify`]: the fault harness's verifier and probe.

mod bench;
mod load;
mod verify;

use clap::{Parser, Subcommand};
use sendgate::config::Config;
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sendgate-bench", version, about = "The instruments of sendgate's benchmarks and fault harness")]
struct Cli {
    /// Configuration file (TOML); SENDGATE_* environment variables override it.
    #[arg(long, global = true, env = "SENDGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish a reproducible workload: N intents and delivery events with
    /// skewed (Zipf) senders and recipients, from a fixed seed.
    Load {
        #[arg(long, default_value_t = 100_000)]
        intents: u64,
        /// Delivery events per intent (0 to 1).
        #[arg(long, default_value_t = 0.5)]
        events_per_intent: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        deadline_secs: u64,
        /// Key intents by sender domain (each domain's intents in one
        /// partition, in order) instead of by mailbox.
        #[arg(long)]
        key_by_sender_domain: bool,
        /// Delivery events are only deliveries and opens (no bounce,
        /// complaint or deferral): outcomes then do not depend on how the
        /// input topics interleave.
        #[arg(long)]
        deliveries_only: bool,
        /// Each recipient address is written to by one sender domain only
        /// (the benchmarks: a recount can then predict per-recipient caps).
        #[arg(long)]
        own_recipients: bool,
        /// Publish this many unsubscribes (suppressing their recipients'
        /// OUTBOUND mail) before the first intent.
        #[arg(long, default_value_t = 0)]
        suppressed: u64,
        /// Operators and recipients act while intents flow: unsubscribes
        /// among the delivery events, and on the commands topic operator
        /// suppressions of recipients and pauses of mailboxes, each resumed
        /// later (the long fault run's mixed workload).
        #[arg(long)]
        operator_traffic: bool,
    },
    /// Consume the intents and transactionally produce one record each to the
    /// decisions topic, with no state: the broker's limit. Runs until SIGTERM.
    Passthrough {
        /// Tasks (threads, each a consumer and a producer) in one group.
        #[arg(long, default_value_t = 2)]
        tasks: usize,
        /// Transactional hops in series (topics bench.hop1, ... between the
        /// intents and the decisions), each with --tasks tasks.
        #[arg(long, default_value_t = 1)]
        hops: usize,
    },
    /// Read the decisions topic until EXPECT intents have one; print the rate,
    /// missing and duplicated decisions, and the counts per status (JSON).
    Collect {
        #[arg(long)]
        expect: u64,
        /// Give up after this many seconds without a new decision.
        #[arg(long, default_value_t = 120)]
        idle_secs: u64,
        /// The broker's process id: also report the CPU time it and the
        /// whole machine spent over the span.
        #[arg(long)]
        broker_pid: Option<u32>,
    },
    /// The counts per status the benchmark workload must give, recomputed
    /// from the input topics by a separate model of the guards (JSON).
    Recount {
        /// `full`: the sender windows, suppression, recipient and
        /// recipient-domain windows (sendgate); `sender`: the sender
        /// windows alone (the sender-only Kafka Streams peer).
        #[arg(long, value_enum, default_value_t = bench::RecountLogic::Full)]
        logic: bench::RecountLogic,
        /// Also read the decisions topic and check them against the limits
        /// (`check` in the output): no window over its limit, no suppressed
        /// recipient written to, approvals held. Exits non-zero otherwise.
        #[arg(long)]
        check: bool,
    },
    /// Publish intents at RATE per second for SECONDS and print the latency
    /// from each scheduled send to its readable decision (JSON, microseconds).
    Latency {
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Measure request-reply latency (POST /v1/intents?wait_ms to the API at
    /// URL, one intent per request) at RATE per second for SECONDS, beside
    /// the topic-to-topic latency at the same rate in the same run (JSON,
    /// microseconds, and the ratios).
    RequestReply {
        #[arg(long)]
        api: String,
        /// An operator's API token (or SENDGATE_BENCH_API_TOKEN).
        #[arg(long, env = "SENDGATE_BENCH_API_TOKEN")]
        token: String,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Write KEYS distinct window counters into a stage's changelog.
    FillChangelog {
        #[arg(long, default_value = "recipient")]
        stage: String,
        #[arg(long)]
        keys: u64,
    },
    /// Read a topic (name without the namespace) with a plain consumer (JSON).
    ReadRate { topic: String },
    /// Check every decision against the inputs (the fault harness's
    /// verifier): missing, duplicated and unexpected decisions, and
    /// statuses and window counters against the recount. Exits non-zero on
    /// any difference.
    Verify {
        /// Stop reading a topic after this many seconds without a new record.
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
        /// Check only what holds for any workload (every intent decided
        /// once, no decision for an unknown intent), not the recount's
        /// statuses and counters: for a workload with bounces, complaints
        /// and throttles, whose decisions depend on how the inputs interleave
        /// (hold those to the limits with `sendgate-bench recount --check`).
        #[arg(long)]
        no_recount: bool,
    },
    /// Publish one intent per partition and wait until all are decided;
    /// print the time it took (JSON). LABEL makes the intents unique.
    Probe {
        #[arg(long)]
        label: String,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
}

fn main() {
    sendgate::cli::init_logging();
    let cli = Cli::parse();
    let result = Config::load(cli.config.as_deref()).and_then(|cfg| {
        sendgate::redact::configure(cfg.log_addresses, std::env::var("SENDGATE_LOG_HASH_KEY").ok().as_deref());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
        run(&cfg, &rt, cli.command)
    });
    if let Err(e) = result {
        eprintln!("sendgate-bench: {e}");
        std::process::exit(1);
    }
}

fn run(cfg: &Config, rt: &tokio::runtime::Runtime, action: Cmd) -> Result<(), String> {
    use serde_json::json;
    match action {
        Cmd::Load { intents, events_per_intent, seed, deadline_secs, key_by_sender_domain, deliveries_only, own_recipients, suppressed, operator_traffic } => {
            let w = load::Workload { seed, intents, events_per_intent: events_per_intent.clamp(0.0, 1.0), key_by_sender_domain, deliveries_only, own_recipients, suppressed, operator_traffic, ..Default::default() };
            load::load(cfg, &w, Duration::from_secs(deadline_secs))
        }
        Cmd::Passthrough { tasks, hops } => bench::passthrough(cfg, tasks, hops, sendgate::cli::stop_on_signal(rt)),
        Cmd::Collect { expect, idle_secs, broker_pid } => {
            let c = bench::collect(cfg, expect, Duration::from_secs(idle_secs), broker_pid)?;
            let rate = if c.seconds > 0.0 { c.distinct as f64 / c.seconds } else { 0.0 };
            let out = json!({"records": c.records, "distinct": c.distinct, "missing": expect.saturating_sub(c.distinct), "duplicates": c.records - c.distinct,
                "seconds": c.seconds, "rate": rate.round(), "status": c.status, "reasons": c.reasons,
                "machine_cpu_seconds": c.machine_cpu_seconds, "broker_cpu_seconds": c.broker_cpu_seconds});
            println!("{out}");
            Ok(())
        }
        Cmd::Recount { logic, check } => {
            let r = bench::recount(cfg, logic, check)?;
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            if let Some(c) = r.check.as_ref().filter(|c| !c.clean()) {
                return Err(format!("the decisions break the limits: {} windows over, {} suppressed recipients written to, {} sends from paused mailboxes, {} approvals not held as asked; e.g. {:?}", c.over_limit, c.suppressed_allowed, c.paused_allowed, c.approval_mismatches, c.examples));
            }
            Ok(())
        }
        Cmd::Latency { rate, seconds, seed } => {
            let l = bench::latency(cfg, rate, seconds, seed, Duration::from_secs(30))?;
            let mut figures = l.to_json();
            figures["rate"] = json!(rate);
            println!("{figures}");
            Ok(())
        }
        Cmd::RequestReply { api, token, rate, seconds, seed } => {
            let r = bench::request_reply(cfg, &api, &token, rate, seconds, seed)?;
            let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { (a as f64 / b as f64 * 100.0).round() / 100.0 };
            println!("{}", json!({"rate": rate, "seconds": seconds, "topic_to_topic": r.topic.to_json(), "request_reply": r.http.to_json(), "request_reply_timed_out": r.timed_out,
                "ratio_p50": ratio(r.http.p50_us, r.topic.p50_us), "ratio_p99": ratio(r.http.p99_us, r.topic.p99_us)}));
            if r.http.received + r.timed_out < r.http.sent {
                return Err(format!("{} of {} requests got no answer", r.http.sent - r.http.received - r.timed_out, r.http.sent));
            }
            Ok(())
        }
        Cmd::FillChangelog { stage, keys } => {
            let started = std::time::Instant::now();
            let n = bench::fill_changelog(cfg, &stage, keys)?;
            println!("{}", json!({"records": n, "seconds": started.elapsed().as_secs_f64()}));
            Ok(())
        }
        Cmd::Verify { idle_secs, no_recount } => {
            let r = verify::verify(cfg, Duration::from_secs(idle_secs), !no_recount)?;
            println!(
                "{}",
                json!({"intents": r.intents, "decision_records": r.decision_records, "missing": r.missing, "duplicates": r.duplicates, "unexpected": r.unexpected,
                    "status_mismatches": r.status_mismatches, "counter_mismatches": r.counter_mismatches, "counters_checked": r.counters_checked, "examples": r.examples})
            );
            if r.clean() {
                Ok(())
            } else {
                Err(format!("verify: {} missing, {} duplicates, {} unexpected, {} status and {} counter mismatches over {} intents", r.missing, r.duplicates, r.unexpected, r.status_mismatches, r.counter_mismatches, r.intents))
            }
        }
        Cmd::Probe { label, timeout_secs } => {
            let took = verify::probe(cfg, &label, Duration::from_secs(timeout_secs))?;
            println!("{}", json!({"label": label, "ms": took.as_millis() as u64}));
            Ok(())
        }
        Cmd::ReadRate { topic } => {
            let (n, secs) = bench::read_rate(cfg, &topic)?;
            println!("{}", json!({"records": n, "seconds": secs, "rate": (n as f64 / secs.max(1e-9)).round()}));
            Ok(())
        }
    }
}
