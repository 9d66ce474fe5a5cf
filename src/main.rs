//! The `sendgate` command.

use clap::{Parser, Subcommand};
use sendgate::codec::json_lines::InputKind;
use sendgate::cli::kafka_io::ReadOptions;
use sendgate::cli::ops::{self, CommandVerb, OutputKind};
use sendgate::config::Config;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sendgate", version, about = "A Kafka-native guard for sender reputation")]
struct Cli {
    /// Configuration file (TOML); SENDGATE_* environment variables override it.
    #[arg(long, global = true, env = "SENDGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the processor (router and stages) until SIGTERM or Ctrl-C.
    Run {
        /// Do not create missing topics at start-up (they must exist).
        #[arg(long)]
        no_create_topics: bool,
    },
    /// Topic management.
    Topics {
        #[command(subcommand)]
        action: TopicsCmd,
    },
    /// Publish intents, delivery events or commands from JSON lines (stdin or FILE).
    Produce {
        #[arg(value_enum)]
        kind: ProduceKind,
        file: Option<PathBuf>,
    },
    /// Print decisions as JSON lines (read committed).
    Decisions(ReadArgs),
    /// Print alerts as JSON lines.
    Alerts(ReadArgs),
    /// Print dead letters as JSON lines, with their reasons and original bytes.
    DeadLetters(ReadArgs),
    /// Policy documents.
    Policy {
        #[command(subcommand)]
        action: PolicyCmd,
    },
    /// Publish an operator command: approve or reject a held intent, pause or
    /// resume a sender, add or lift a restriction or a list entry.
    Command {
        #[arg(value_enum)]
        verb: CommandVerb,
        /// An intent id (approve, reject); a scope such as sender_domain:acme.com
        /// (pause, resume); address:A, domain:D or tenant:T (restrict,
        /// unrestrict); an address, domain or TLD such as .zip (list-add, list-remove).
        target: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The held intent's sender (approve, reject).
        #[arg(long)]
        sender: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// list-add, list-remove: allow, block or suppression.
        #[arg(long)]
        list: Option<String>,
        /// restrict: deny (default) or allow (an exemption from wider denies).
        #[arg(long)]
        mode: Option<String>,
        /// restrict: the deny ends by itself at this time (RFC 3339, e.g. 2026-12-01T09:00:00Z).
        #[arg(long)]
        until: Option<String>,
    },
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
    /// What a running processor would decide now for intents (JSON lines or
    /// a JSON array, from FILE or stdin), and why; reserves nothing.
    Simulate { file: Option<PathBuf> },
    /// Replay the recorded inputs under a candidate policy file and report
    /// how the decisions would change. Writes to no topic.
    Backtest {
        /// The candidate policy file; its documents replace the recorded ones of their scopes.
        #[arg(long)]
        policy: PathBuf,
        #[command(flatten)]
        report: ComparisonArgs,
        /// Scratch directory (removed afterwards).
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
    /// Candidate policies in shadow: decided beside the enforced policy on
    /// live traffic, enforcing nothing.
    Shadow {
        #[command(subcommand)]
        action: ShadowCmd,
    },
    /// Reconciliation of what was sent against what was allowed.
    Reconcile {
        #[command(subcommand)]
        action: ReconcileCmd,
    },
    /// Audits of the recorded decisions.
    Audit {
        #[command(subcommand)]
        action: AuditCmd,
    },
    /// Print the Avro schemas, self-contained, as the binary uses them.
    Schemas,
    /// The instruments of scripts/bench.sh (pass-through limit, decision
    /// collector, recount, latency, changelog fill, plain read rate).
    Bench {
        #[command(subcommand)]
        action: BenchCmd,
    },
    /// Against a running processor: a runaway agent and a bounce storm, and the decisions they get.
    Demo,
    /// Exit 0 when this host's processor is ready (its API's /readyz answers
    /// 200), 1 otherwise: a container health check.
    Ready,
    /// Tools for AI agents over the Model Context Protocol (stdio, or
    /// streamable HTTP at /mcp with --http): check_send, request_send,
    /// get_decision, get_usage, explain_decision. A client of the HTTP API
    /// at SENDGATE_MCP_API_URL, with the token SENDGATE_MCP_API_TOKEN (over
    /// HTTP, the MCP client's own bearer token comes first). Sends no mail.
    Mcp {
        /// Serve streamable HTTP on this address (e.g. 127.0.0.1:9466)
        /// instead of stdio.
        #[arg(long)]
        http: Option<String>,
        /// Host headers accepted over HTTP besides the loopback names
        /// (DNS-rebinding protection), e.g. sendgate-mcp:9466.
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        #[arg(long, env = "SENDGATE_MCP_API_URL", default_value = "http://127.0.0.1:9465")]
        api_url: String,
        #[arg(long, env = "SENDGATE_MCP_API_TOKEN", hide_env_values = true)]
        api_token: Option<String>,
        /// PEM CA certificate of an API served over TLS.
        #[arg(long, env = "SENDGATE_MCP_API_CA_FILE")]
        api_ca_file: Option<String>,
    },
    /// List the intents held for approval (and so for `command approve` or
    /// `reject`), from a running processor's HTTP API (GET /v1/held): a
    /// tenant's token lists its own; an operator's token every tenant's,
    /// or --tenant's. Held intents nobody decides expire (held.expire_hours).
    Held {
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON lines (one intent each) instead of a table.
        #[arg(long)]
        json: bool,
        /// The API's URL; default: http:// and SENDGATE_API_ADDR (the
        /// address `sendgate run` serves it on).
        #[arg(long, env = "SENDGATE_API_URL")]
        api_url: Option<String>,
        #[arg(long, env = "SENDGATE_API_TOKEN", hide_env_values = true)]
        api_token: Option<String>,
        /// PEM CA certificate of an API served over TLS.
        #[arg(long, env = "SENDGATE_API_CA_FILE")]
        api_ca_file: Option<String>,
    },
    /// The configuration: check it and print what it resolves to.
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
}

/// What `sendgate produce` reads (the core's [`InputKind`], as a CLI value).
#[derive(Clone, Copy, clap::ValueEnum)]
enum ProduceKind {
    Intents,
    Delivery,
    Commands,
}

impl From<ProduceKind> for InputKind {
    fn from(k: ProduceKind) -> Self {
        match k {
            ProduceKind::Intents => InputKind::Intents,
            ProduceKind::Delivery => InputKind::Delivery,
            ProduceKind::Commands => InputKind::Commands,
        }
    }
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate the configuration (file and SENDGATE_* variables), print
    /// what it resolves to (no secret) and the client library's features;
    /// with --connect, also connect to Kafka and say what is wrong if it
    /// cannot. Exits 1 on any problem.
    Check {
        #[arg(long)]
        connect: bool,
        /// How long --connect waits for an unreachable cluster.
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
    },
    /// Print the Kafka ACLs of this namespace as a shell script of
    /// kafka-acls.sh commands: sendgate's own, and an app's, a mail
    /// pipeline's and an operator's when their principals are given. Each
    /// role gets only what it needs (docs/connecting.md, "Access control").
    Acls {
        /// The principal sendgate connects as, e.g. User:sendgate.
        #[arg(long = "sendgate")]
        sendgate: String,
        /// An app's principal: may write intents and read decisions.
        #[arg(long)]
        app: Option<String>,
        /// Consumer groups the app may use start with this.
        #[arg(long, default_value = "app.")]
        app_group_prefix: String,
        /// A mail pipeline's principal: may write delivery events.
        #[arg(long)]
        pipeline: Option<String>,
        /// An operator's principal: may write commands and policies and
        /// read decisions, alerts and dead letters.
        #[arg(long)]
        operator: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Rebuild every stage's state from its log in a scratch directory,
    /// re-derive every decision and compare it field by field with the
    /// decisions topic, and compare the rebuilt state of every stage
    /// partition key by key with its changelog. Exits 1 on any difference.
    /// Writes to no topic.
    ///
    /// The state check reads each changelog partition to its end: that is
    /// the point the committed stage offsets stand for only while no
    /// instance commits, so run it with the processor stopped or idle. A
    /// stage partition the processor committed more of during the audit is
    /// named and left out of the state check (its decisions are still
    /// compared). No state difference shows that no crash, fencing, abort
    /// or restore left the state a stage keeps in its changelog (what every
    /// restore loads) differing from what its log implies. State written by
    /// an earlier release (an older schema or key layout) can show as
    /// differences, as its decisions can.
    Replay {
        /// Compare decisions from this time (RFC 3339) or these intents-topic offsets (P:O,...).
        #[arg(long)]
        from: Option<String>,
        /// Compare decisions before this time or these offsets.
        #[arg(long)]
        to: Option<String>,
        /// Compare with this topic instead of the decisions topic (e.g. a copy).
        #[arg(long)]
        decisions_topic: Option<String>,
        /// Scratch directory (removed afterwards).
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// How many differences to list.
        #[arg(long, default_value_t = 10)]
        show: usize,
        /// Also time a plain read of the same records, and a read that only
        /// decodes them, and print the ratios.
        #[arg(long)]
        baseline: bool,
        /// Keep up to this many recorded decisions in memory (about 60
        /// bytes each); past it, they go to the scratch directory.
        #[arg(long, default_value_t = 4_000_000)]
        in_memory_decisions: u64,
    },
    /// Why an intent got its decision: the policy and the rules in force,
    /// every check with its window, used and limit, the check that decided,
    /// and the delivery events behind the signal rates.
    Explain {
        intent_id: String,
        /// Scratch directory (removed afterwards).
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// Create missing topics and verify existing ones against topology/.
    Apply,
}

#[derive(Subcommand)]
enum ReconcileCmd {
    /// The unapproved sends of a period: delivery events with no ALLOWED
    /// decision behind them, with totals per tenant, sender domain, mailbox
    /// and reason.
    Report {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// From this time (RFC 3339, e.g. 2026-11-20T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Before this time.
        #[arg(long)]
        to: Option<String>,
        /// How many sends to list (the totals count all).
        #[arg(long, default_value_t = 100)]
        show: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ShadowCmd {
    /// Publish a policy file's documents as candidates in shadow for their scopes.
    Start {
        file: PathBuf,
    },
    /// Stop the candidate in shadow for a scope.
    Stop {
        scope: String,
    },
    /// Make the candidate in shadow for a scope the enforced policy (from
    /// the next intent), and stop its shadow.
    Promote {
        scope: String,
    },
    /// The candidates in shadow now.
    List,
    /// What the candidates would have changed: their would-be decisions
    /// against the enforced ones, in the backtest's report format.
    Report {
        /// Only this candidate's scope.
        #[arg(long)]
        scope: Option<String>,
        /// Only this tenant's intents.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        report: ComparisonArgs,
    },
}

/// What a report comparing decisions under a candidate covers, and how it
/// prints (backtest and shadow report alike).
#[derive(clap::Args)]
struct ComparisonArgs {
    /// Compare decisions from this time (RFC 3339) or these intents-topic offsets (P:O,...).
    #[arg(long)]
    from: Option<String>,
    /// Compare decisions before this time or these offsets.
    #[arg(long)]
    to: Option<String>,
    /// How many changed intents to list.
    #[arg(long, default_value_t = 10)]
    show: usize,
    /// The report as JSON (one format for both).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate a policy file and publish its documents.
    Apply { file: PathBuf },
    /// Show a scope's current document (default, tenant:T, sender_domain:D, mailbox:A).
    Show { scope: String },
}

#[derive(clap::Args)]
struct ReadArgs {
    /// Start from the beginning of the topic instead of its end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after N records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop after this many milliseconds without a new record.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
}

impl ReadArgs {
    fn options(&self) -> ReadOptions {
        ReadOptions { from_beginning: self.from_beginning, start_offsets: None, max: self.max, idle_timeout: self.idle_timeout_ms.map(Duration::from_millis) }
    }
}

#[derive(Subcommand)]
enum BenchCmd {
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
        #[arg(long, value_enum, default_value_t = sendgate::cli::bench::RecountLogic::Full)]
        logic: sendgate::cli::bench::RecountLogic,
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
        /// (hold those to the limits with `bench recount --check`).
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SENDGATE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("sendgate: {e}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<(), String> {
    let cfg = Config::load(cli.config.as_deref())?;
    // The same key on every instance hashes an address alike in every log.
    sendgate::redact::configure(cfg.log_addresses, std::env::var("SENDGATE_LOG_HASH_KEY").ok().as_deref());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
    match cli.command {
        Cmd::Run { no_create_topics } => {
            sendgate::codec::check_schemas()?;
            let topo = cfg.topology()?;
            connect_or_explain(&cfg, None)?;
            if !no_create_topics {
                // The processor waits for a broker that is not up yet.
                rt.block_on(apply_topics(&cfg, &topo, None))?;
            }
            // Outside the async runtime: the exporter has a runtime of its
            // own, which a failure (the port taken) drops, and a runtime
            // dropped inside another one panics instead of saying why.
            sendgate::metrics::install(&cfg.metrics_addr)?;
            sendgate::runtime::run(&cfg, stop_on_signal(&rt))
        }
        Cmd::Topics { action: TopicsCmd::Apply } => {
            let topo = cfg.topology()?;
            connect_or_explain(&cfg, Some(Duration::from_secs(120)))?;
            rt.block_on(apply_topics(&cfg, &topo, Some(Duration::from_secs(120))))
        }
        Cmd::Produce { kind, file } => rt.block_on(ops::produce(&cfg, kind.into(), file.as_deref())),
        Cmd::Decisions(a) => ops::follow(&cfg, OutputKind::Decisions, &a.options()),
        Cmd::Alerts(a) => ops::follow(&cfg, OutputKind::Alerts, &a.options()),
        Cmd::DeadLetters(a) => ops::follow(&cfg, OutputKind::DeadLetters, &a.options()),
        Cmd::Policy { action: PolicyCmd::Apply { file } } => rt.block_on(ops::policy_apply(&cfg, &file)),
        Cmd::Policy { action: PolicyCmd::Show { scope } } => ops::policy_show(&cfg, &scope),
        Cmd::Command { verb, target, tenant, sender, reason, list, mode, until } => {
            let args = ops::CommandArgs { verb, target, tenant, sender, reason, list, mode, until };
            rt.block_on(ops::command(&cfg, args))
        }
        Cmd::Demo => rt.block_on(sendgate::cli::demo::demo(&cfg)),
        Cmd::Ready => sendgate::cli::ops::ready(&cfg),
        Cmd::Mcp { http, allowed_hosts, api_url, api_token, api_ca_file } => {
            let settings = sendgate::mcp::McpSettings { api_url, token: api_token, ca_file: api_ca_file };
            match http {
                Some(addr) => rt.block_on(sendgate::mcp::serve_http(settings, &addr, allowed_hosts)),
                None => rt.block_on(sendgate::mcp::serve_stdio(settings)),
            }
        }
        Cmd::Held { tenant, limit, json, api_url, api_token, api_ca_file } => sendgate::cli::ops::held(&api_url.unwrap_or_else(|| format!("http://{}", cfg.api_addr)), api_token.as_deref(), api_ca_file.as_deref(), tenant.as_deref(), limit, json),
        Cmd::Bench { action } => bench(&cfg, &rt, action),
        Cmd::Load { intents, events_per_intent, seed, deadline_secs, key_by_sender_domain, deliveries_only, own_recipients, suppressed, operator_traffic } => {
            let w = sendgate::cli::load::Workload { seed, intents, events_per_intent: events_per_intent.clamp(0.0, 1.0), key_by_sender_domain, deliveries_only, own_recipients, suppressed, operator_traffic, ..Default::default() };
            sendgate::cli::load::load(&cfg, &w, Duration::from_secs(deadline_secs))
        }
        Cmd::Simulate { file } => sendgate::cli::audit::simulate(&cfg, file.as_deref()),
        Cmd::Backtest { policy, report: ComparisonArgs { from, to, show, json }, scratch } => sendgate::cli::audit::backtest(&cfg, &policy, from, to, show, scratch, json),
        Cmd::Shadow { action: ShadowCmd::Start { file } } => rt.block_on(sendgate::cli::shadow::start(&cfg, &file)),
        Cmd::Shadow { action: ShadowCmd::Stop { scope } } => rt.block_on(sendgate::cli::shadow::stop(&cfg, &scope)),
        Cmd::Shadow { action: ShadowCmd::Promote { scope } } => rt.block_on(sendgate::cli::shadow::promote(&cfg, &scope)),
        Cmd::Reconcile { action: ReconcileCmd::Report { tenant, from, to, show, json } } => sendgate::cli::reconcile::report(&cfg, sendgate::cli::reconcile::ReportArgs { tenant, from, to, show, json }),
        Cmd::Shadow { action: ShadowCmd::List } => sendgate::cli::shadow::list(&cfg),
        Cmd::Shadow { action: ShadowCmd::Report { scope, tenant, report: ComparisonArgs { from, to, show, json } } } => sendgate::cli::shadow::report(&cfg, sendgate::cli::shadow::ReportArgs { scope, tenant, from, to, show, json }),
        Cmd::Audit { action: AuditCmd::Explain { intent_id, scratch } } => sendgate::cli::audit::explain(&cfg, &intent_id, scratch),
        Cmd::Audit { action: AuditCmd::Replay { from, to, decisions_topic, scratch, show, baseline, in_memory_decisions } } => {
            sendgate::cli::audit::replay(&cfg, sendgate::cli::audit::ReplayArgs { from, to, decisions_topic, scratch, show, baseline, in_memory_decisions })
        }
        Cmd::Config { action: ConfigCmd::Check { connect, timeout_secs } } => config_check(&cfg, connect, Duration::from_secs(timeout_secs)),
        Cmd::Config { action: ConfigCmd::Acls { sendgate: service, app, app_group_prefix, pipeline, operator } } => {
            let principals = sendgate::acls::Principals { sendgate: service, app, app_group_prefix, pipeline, operator };
            principals.check()?;
            let topo = cfg.topology()?;
            print!("{}", sendgate::acls::render(&topo, &sendgate::acls::grants(&topo, &principals)));
            Ok(())
        }
        Cmd::Schemas => {
            for (name, text) in sendgate::codec::standalone_schemas()? {
                println!("// {name}\n{text}");
            }
            Ok(())
        }
    }
}

fn bench(cfg: &Config, rt: &tokio::runtime::Runtime, action: BenchCmd) -> Result<(), String> {
    use sendgate::cli::bench;
    use serde_json::json;
    match action {
        BenchCmd::Passthrough { tasks, hops } => bench::passthrough(cfg, tasks, hops, stop_on_signal(rt)),
        BenchCmd::Collect { expect, idle_secs, broker_pid } => {
            let c = bench::collect(cfg, expect, Duration::from_secs(idle_secs), broker_pid)?;
            let rate = if c.seconds > 0.0 { c.distinct as f64 / c.seconds } else { 0.0 };
            let out = json!({"records": c.records, "distinct": c.distinct, "missing": expect.saturating_sub(c.distinct), "duplicates": c.records - c.distinct,
                "seconds": c.seconds, "rate": rate.round(), "status": c.status, "reasons": c.reasons,
                "machine_cpu_seconds": c.machine_cpu_seconds, "broker_cpu_seconds": c.broker_cpu_seconds});
            println!("{out}");
            Ok(())
        }
        BenchCmd::Recount { logic, check } => {
            let r = bench::recount(cfg, logic, check)?;
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            if let Some(c) = r.check.as_ref().filter(|c| !c.clean()) {
                return Err(format!("the decisions break the limits: {} windows over, {} suppressed recipients written to, {} sends from paused mailboxes, {} approvals not held as asked; e.g. {:?}", c.over_limit, c.suppressed_allowed, c.paused_allowed, c.approval_mismatches, c.examples));
            }
            Ok(())
        }
        BenchCmd::Latency { rate, seconds, seed } => {
            let l = bench::latency(cfg, rate, seconds, seed, Duration::from_secs(30))?;
            let mut figures = l.to_json();
            figures["rate"] = json!(rate);
            println!("{figures}");
            Ok(())
        }
        BenchCmd::RequestReply { api, token, rate, seconds, seed } => {
            let r = bench::request_reply(cfg, &api, &token, rate, seconds, seed)?;
            let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { (a as f64 / b as f64 * 100.0).round() / 100.0 };
            println!("{}", json!({"rate": rate, "seconds": seconds, "topic_to_topic": r.topic.to_json(), "request_reply": r.http.to_json(), "request_reply_timed_out": r.timed_out,
                "ratio_p50": ratio(r.http.p50_us, r.topic.p50_us), "ratio_p99": ratio(r.http.p99_us, r.topic.p99_us)}));
            if r.http.received + r.timed_out < r.http.sent {
                return Err(format!("{} of {} requests got no answer", r.http.sent - r.http.received - r.timed_out, r.http.sent));
            }
            Ok(())
        }
        BenchCmd::FillChangelog { stage, keys } => {
            let started = std::time::Instant::now();
            let n = bench::fill_changelog(cfg, &stage, keys)?;
            println!("{}", json!({"records": n, "seconds": started.elapsed().as_secs_f64()}));
            Ok(())
        }
        BenchCmd::Verify { idle_secs, no_recount } => {
            let r = sendgate::cli::verify::verify(cfg, Duration::from_secs(idle_secs), !no_recount)?;
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
        BenchCmd::Probe { label, timeout_secs } => {
            let took = sendgate::cli::verify::probe(cfg, &label, Duration::from_secs(timeout_secs))?;
            println!("{}", json!({"label": label, "ms": took.as_millis() as u64}));
            Ok(())
        }
        BenchCmd::ReadRate { topic } => {
            let (n, secs) = bench::read_rate(cfg, &topic)?;
            println!("{}", json!({"records": n, "seconds": secs, "rate": (n as f64 / secs.max(1e-9)).round()}));
            Ok(())
        }
    }
}

/// Connects before anything starts: refused credentials or a failed TLS
/// handshake stop the process at once with what to fix; an unreachable
/// cluster is waited for (`wait_at_most`, or for ever), as it may be starting.
fn connect_or_explain(cfg: &Config, wait_at_most: Option<Duration>) -> Result<(), String> {
    use sendgate::connection::{check_connection, ConnectionError};
    cfg.require_bootstrap()?;
    let started = std::time::Instant::now();
    loop {
        match check_connection(&cfg.client_config(), &cfg.security.describe(), Duration::from_secs(10)) {
            Ok(r) => {
                tracing::info!(brokers = r.brokers, security = %cfg.security.describe(), took_ms = r.took.as_millis() as u64, "connected to Kafka");
                return Ok(());
            }
            Err(ConnectionError::Refused(m)) => return Err(m),
            Err(ConnectionError::Unreachable(m)) if wait_at_most.is_none_or(|w| started.elapsed() < w) => {
                tracing::warn!(error = %m, "waiting for Kafka");
            }
            Err(ConnectionError::Unreachable(m)) => return Err(m),
        }
    }
}

/// `sendgate config check`.
fn config_check(cfg: &Config, connect: bool, timeout: Duration) -> Result<(), String> {
    use sendgate::connection;
    // Loading validated the file and the environment already.
    println!("configuration: valid");
    println!("bootstrap:     {}", if cfg.bootstrap.is_empty() { "(not set: SENDGATE_BOOTSTRAP)" } else { &cfg.bootstrap });
    println!("security:      {}", cfg.security.describe());
    println!("compression:   {} (output)", cfg.compression);
    println!("namespace:     {}", cfg.namespace);
    let (_, version) = rdkafka::util::get_rdkafka_version();
    println!("librdkafka:    {version} ({})", connection::builtin_features().join(","));
    let missing = connection::missing_features();
    if !missing.is_empty() {
        return Err(format!("this build's librdkafka lacks {}: rebuild with the features in Cargo.toml (scripts/setup.sh installs what they need)", missing.join(", ")));
    }
    if connect {
        cfg.require_bootstrap()?;
        let r = connection::check_connection(&cfg.client_config(), &cfg.security.describe(), timeout).map_err(|e| e.to_string())?;
        println!("connected:     {} broker(s), {} topic(s) visible, in {} ms", r.brokers, r.topics, r.took.as_millis());
        if let Some(registry) = sendgate::registry::SchemaRegistry::from_settings(&cfg.schema_registry)? {
            registry.check()?;
            println!("registry:      {} answers", cfg.schema_registry.url);
        }
    }
    Ok(())
}

/// Sets the returned flag on SIGTERM or Ctrl-C.
fn stop_on_signal(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    rt.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: committing the open transaction and flushing state");
        stop.store(true, Ordering::Relaxed);
    });
    shutdown
}

/// Creates missing topics, verifies the rest; a mismatch is an error that
/// lists every difference.
async fn apply_topics(cfg: &Config, topo: &sendgate::topology::Topology, wait_at_most: Option<Duration>) -> Result<(), String> {
    use sendgate::topology::TopicStatus;
    // The broker may still be starting: wait for it, and say so.
    let started = std::time::Instant::now();
    let report = loop {
        match sendgate::topology::apply(topo, &cfg.client_config(), cfg.replication_factor).await {
            Ok(r) => break r,
            Err(e) if e.starts_with("cannot reach Kafka") && wait_at_most.is_none_or(|w| started.elapsed() < w) => {
                tracing::warn!(error = %e, "waiting for Kafka");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let mut differs = Vec::new();
    for (name, status) in &report {
        match status {
            TopicStatus::Created => eprintln!("created  {name}"),
            TopicStatus::Matches => eprintln!("ok       {name}"),
            TopicStatus::Differs(d) => {
                eprintln!("DIFFERS  {name}");
                for x in d {
                    eprintln!("           {x}");
                }
                differs.push(name.clone());
            }
        }
    }
    if differs.is_empty() {
        Ok(())
    } else {
        Err(format!("{} topic(s) differ from the topology: {}. Alter them (or delete and re-create them) to match topology/topics.toml.", differs.len(), differs.join(", ")))
    }
}
