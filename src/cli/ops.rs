//! Implementations of the CLI subcommands.

use crate::codec::json_lines::{encode_line, InputKind};
use super::kafka_io::{self, ReadOptions};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::{file::parse_policy_file, PolicySpec, Scope};
use rdkafka::producer::FutureRecord;
use std::io::BufRead;
use std::time::Duration;

// Only for the informational client-side fields of records a person
// produces from the CLI; never read inside a decision.
use crate::clock::wall_ms as wall_clock_ms;

/// `sendgate produce KIND [FILE]`: JSON lines to Avro records.
pub async fn produce(cfg: &Config, kind: InputKind, file: Option<&std::path::Path>) -> Result<(), String> {
    let topo = cfg.topology()?;
    let reader: Box<dyn BufRead> = match file {
        Some(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?)),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let now = wall_clock_ms();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("reading input: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match encode_line(kind, &line, now) {
            Ok((k, v)) => records.push((k, Some(v))),
            Err(e) => bad.push(format!("line {}: {e}", i + 1)),
        }
    }
    let producer = kafka_io::producer(cfg)?;
    let n = records.len();
    let failures = kafka_io::send_all(&producer, &topo.full(kind.topic_suffix()), records).await;
    for b in &bad {
        eprintln!("skipped {b}");
    }
    for f in &failures {
        eprintln!("failed: {f}");
    }
    eprintln!("produced {} of {} record(s) to {}", n - failures.len().min(n), n + bad.len(), topo.full(kind.topic_suffix()));
    if bad.is_empty() && failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} line(s) refused, {} send(s) failed", bad.len(), failures.len()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputKind {
    Decisions,
    Alerts,
    DeadLetters,
}

/// `sendgate decisions|alerts|dead-letters`: one JSON line per record.
pub fn follow(cfg: &Config, kind: OutputKind, opts: &ReadOptions) -> Result<(), String> {
    let topo = cfg.topology()?;
    let (suffix, rt) = match kind {
        OutputKind::Decisions => ("decisions", RecordType::Decision),
        OutputKind::Alerts => ("alerts", RecordType::Alert),
        OutputKind::DeadLetters => ("dead-letters", RecordType::DeadLetter),
    };
    let topic = topo.full(suffix);
    let mut out = std::io::stdout().lock();
    kafka_io::read_topic(cfg, &topic, opts, |r| {
        let payload = r.payload.unwrap_or_default();
        let json = match rt {
            RecordType::Decision => codec::decode::<Decision>(rt, &payload).map(|d| serde_json::to_string(&d)),
            RecordType::Alert => codec::decode::<Alert>(rt, &payload).map(|d| serde_json::to_string(&d)),
            _ => codec::decode::<DeadLetter>(rt, &payload).map(|d| {
                // Show the original bytes as text where they are text.
                let mut v = serde_json::to_value(&d).expect("serialisable");
                v["value"] = serde_json::Value::String(String::from_utf8_lossy(d.value.as_deref().unwrap_or_default()).into_owned());
                v["key"] = serde_json::Value::String(String::from_utf8_lossy(d.key.as_deref().unwrap_or_default()).into_owned());
                serde_json::to_string(&v)
            }),
        };
        let line = match json {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => serde_json::json!({"undecodable": e.to_string(), "partition": r.partition, "offset": r.offset}).to_string(),
        };
        use std::io::Write;
        writeln!(out, "{line}").map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// `sendgate policy apply FILE`: validate everything, then publish.
pub async fn policy_apply(cfg: &Config, file: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let docs = parse_policy_file(&text).map_err(|errs| format!("{} was not published; fix these first:\n  - {}", file.display(), errs.join("\n  - ")))?;
    for (scope, version) in publish_policies(cfg, docs, &file.display().to_string()).await? {
        println!("{scope}: published as version {version}");
    }
    Ok(())
}

/// Publishes validated documents; returns each scope with its new version.
pub async fn publish_policies(cfg: &Config, docs: Vec<(Scope, PolicySpec)>, source_name: &str) -> Result<Vec<(String, i64)>, String> {
    let mut out = Vec::new();
    for (scope, spec) in docs {
        let doc = PolicyDocument { scope: scope.to_string(), spec_json: spec.to_canonical_json(), source_name: Some(source_name.to_string()) };
        let key = scope.to_string();
        let version = publish_policy_record(cfg, &key, Some(&doc)).await?;
        out.push((key, version));
    }
    Ok(out)
}

/// Publishes one record on the policies topic under `key` (a scope, or
/// `shadow/SCOPE`): a document, or its tombstone (None). Its version.
pub async fn publish_policy_record(cfg: &Config, key: &str, doc: Option<&PolicyDocument>) -> Result<i64, String> {
    let topic = cfg.topology()?.full("policies");
    let producer = kafka_io::producer(cfg)?;
    let bytes = doc.map(|d| codec::encode(RecordType::PolicyDocument, d)).transpose().map_err(|e| e.to_string())?;
    let mut rec = FutureRecord::to(&topic).key(key);
    if let Some(b) = &bytes {
        rec = rec.payload(b);
    }
    let delivery = producer.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| format!("publishing {key}: {e}"))?;
    Ok(delivery.offset + 1)
}

/// The records on the policies topic now, by key: (version, document;
/// None when removed).
pub fn policy_records(cfg: &Config) -> Result<std::collections::BTreeMap<String, (i64, Option<PolicyDocument>)>, String> {
    let topic = cfg.topology()?.full("policies");
    let mut docs = std::collections::BTreeMap::new();
    kafka_io::read_ranges(cfg, &topic, &kafka_io::watermarks(cfg, &topic)?, |r| {
        let Some(key) = r.key else { return Ok(()) };
        let doc = r.payload.map(|b| codec::decode::<PolicyDocument>(RecordType::PolicyDocument, b)).transpose().map_err(|e| format!("{topic} @{}: {e}", r.offset))?;
        docs.insert(String::from_utf8_lossy(key).into_owned(), (r.offset + 1, doc));
        Ok(())
    })?;
    Ok(docs)
}

/// `sendgate policy show SCOPE`: the scope's current document and version.
pub fn policy_show(cfg: &Config, scope: &str) -> Result<(), String> {
    let wanted = Scope::parse(scope)?.to_string();
    match policy_records(cfg)?.remove(&wanted) {
        Some((version, Some(doc))) => {
            let spec = PolicySpec::from_json(&doc.spec_json)?;
            println!("# scope {wanted}, version {version}{}", doc.source_name.map(|s| format!(", from {s}")).unwrap_or_default());
            println!("[[policy]]\nscope = \"{wanted}\"");
            print!("{}", toml::to_string(&spec).map_err(|e| e.to_string())?);
            Ok(())
        }
        Some((version, None)) => Err(format!("{wanted}: removed at version {version}; the built-in defaults and wider scopes apply")),
        None => Err(format!("{wanted}: no policy document; the built-in defaults and wider scopes apply")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CommandVerb {
    Approve,
    Reject,
    Pause,
    Resume,
    Restrict,
    Unrestrict,
    ListAdd,
    ListRemove,
}

pub struct CommandArgs {
    pub verb: CommandVerb,
    pub target: String,
    pub tenant: String,
    pub sender: Option<String>,
    pub reason: Option<String>,
    pub list: Option<String>,
    pub mode: Option<String>,
    pub until: Option<String>,
}

/// `sendgate command VERB TARGET`: publish an operator command. It is
/// checked here exactly as the processor will check it, so a bad one is
/// refused before anything is published.
pub async fn command(cfg: &Config, a: CommandArgs) -> Result<(), String> {
    let topo = cfg.topology()?;
    let kind = match a.verb {
        CommandVerb::Approve => CommandKind::Approve,
        CommandVerb::Reject => CommandKind::Reject,
        CommandVerb::Pause => CommandKind::Pause,
        CommandVerb::Resume => CommandKind::Resume,
        CommandVerb::Restrict => CommandKind::AddRestriction,
        CommandVerb::Unrestrict => CommandKind::LiftRestriction,
        CommandVerb::ListAdd => CommandKind::AddListEntry,
        CommandVerb::ListRemove => CommandKind::RemoveListEntry,
    };
    let until_ms = match a.until.as_deref() {
        None => None,
        Some(t) => Some(chrono::DateTime::parse_from_rfc3339(t).map_err(|e| format!("--until {t:?}: {e} (use RFC 3339, e.g. 2026-12-01T09:00:00Z)"))?.timestamp_millis()),
    };
    let cmd = Command {
        sender: a.sender.clone(),
        reason: a.reason.clone(),
        operator: std::env::var("USER").ok(),
        list: a.list.clone(),
        mode: a.mode.clone(),
        until_ms,
        ..Command::new(kind, &a.tenant, &a.target, format!("cli-{}-{}", wall_clock_ms(), std::process::id()))
    };
    crate::stage::ingress::normalise_command(cmd.clone())?;
    let bytes = codec::encode(RecordType::Command, &cmd).map_err(|e| e.to_string())?;
    let producer = kafka_io::producer(cfg)?;
    let failures = kafka_io::send_all(&producer, &topo.full("commands"), vec![(a.target.as_bytes().to_vec(), Some(bytes))]).await;
    if let Some(f) = failures.first() {
        return Err(f.clone());
    }
    println!("{:?} {} published ({})", kind, a.target, cmd.command_id);
    Ok(())
}

/// `sendgate ready`: Ok when the processor on this host answers 200 at
/// /readyz (its API on `api_addr`, asked on the loopback).
pub fn ready(cfg: &Config) -> Result<(), String> {
    let addr: std::net::SocketAddr = cfg.api_addr.parse().map_err(|_| "the API is disabled (api_addr is empty): readiness is served by the API".to_string())?;
    let host = if addr.ip().is_unspecified() { std::net::SocketAddr::new(if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() }, addr.port()) } else { addr };
    let scheme = if cfg.api_tls_cert_file.is_empty() { "http" } else { "https" };
    // Only readiness is read, from this host: its certificate need not
    // name the loopback address.
    let tls = native_tls::TlsConnector::builder().danger_accept_invalid_certs(true).danger_accept_invalid_hostnames(true).build().map_err(|e| e.to_string())?;
    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(5)).tls_connector(std::sync::Arc::new(tls)).build();
    match agent.get(&format!("{scheme}://{host}/readyz")).call() {
        Ok(r) if r.status() == 200 => Ok(()),
        Ok(r) => Err(format!("not ready: {}", r.status())),
        Err(ureq::Error::Status(code, r)) => Err(format!("not ready ({code}): {}", r.into_string().unwrap_or_default())),
        Err(e) => Err(format!("no answer at {scheme}://{host}/readyz: {e}")),
    }
}

/// `sendgate held`: the intents held for approval, from the HTTP API.
pub fn held(api_url: &str, token: Option<&str>, ca_file: Option<&str>, tenant: Option<&str>, limit: usize, json: bool) -> Result<(), String> {
    use crate::api::client::{api_error, ApiClient};
    let token = token.ok_or("no API token: set SENDGATE_API_TOKEN (or --api-token) to a tenant's or an operator's token")?;
    let client = ApiClient::new(api_url, ca_file, "SENDGATE_API_URL / SENDGATE_API_CA_FILE")?;
    let mut path = format!("/v1/held?limit={limit}");
    if let Some(t) = tenant {
        path.push_str(&format!("&tenant={}", percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC)));
    }
    let (status, answer) = client.call_blocking(token, "GET", &path, None)?;
    if status != 200 {
        return Err(api_error(status, &answer));
    }
    let held: Vec<crate::model::SendIntent> = serde_json::from_value(answer["held"].clone()).map_err(|e| format!("the API's held list cannot be read: {e}"))?;
    if json {
        for i in &held {
            println!("{}", serde_json::to_string(i).map_err(|e| e.to_string())?);
        }
    } else {
        println!("{:<36} {:<16} {:<14} {:<32} RECIPIENT", "INTENT_ID", "TENANT", "CLASS", "SENDER");
        for i in &held {
            println!("{:<36} {:<16} {:<14} {:<32} {}", i.intent_id, i.tenant, i.class.as_str(), i.sender, i.recipient);
        }
        println!("{} held", held.len());
    }
    // A partial list says so, where a script reading stdout will not trip on it.
    for m in answer["missing"].as_array().into_iter().flatten() {
        eprintln!("incomplete: {}", m.as_str().unwrap_or_default());
    }
    Ok(())
}
