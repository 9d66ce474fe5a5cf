//! The `sendgate` command.

use clap::{Parser, Subcommand};
use sendgate::codec::json_lines::InputKind;
use sendgate::cli::kafka_io::ReadOptions;
use sendgate::cli::ops::{self, CommandVerb, OutputKind};
use sendgate::config::Config;
use std::path::PathBuf;
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

fn main() {
    sendgate::cli::init_logging();
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
            sendgate::runtime::run(&cfg, sendgate::cli::stop_on_signal(&rt))
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
