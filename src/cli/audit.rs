//! `sendgate audit ...`: the report printed for an operator.

use crate::audit::replay::{self, Bound, Progress, ReplayOptions};
use crate::audit::state::Found;
use crate::config::Config;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

pub struct ReplayArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub decisions_topic: Option<String>,
    pub scratch: Option<PathBuf>,
    pub show: usize,
    pub baseline: bool,
    pub in_memory_decisions: u64,
}

pub fn replay(cfg: &Config, a: ReplayArgs) -> Result<(), String> {
    let opts = ReplayOptions {
        from: a.from.as_deref().map(Bound::parse).transpose()?,
        to: a.to.as_deref().map(Bound::parse).transpose()?,
        decisions_topic: a.decisions_topic,
        scratch: a.scratch.unwrap_or_else(|| std::env::temp_dir().join(format!("sendgate-audit-{}", std::process::id()))),
        sender: cfg.sender_settings(),
        keep: a.show,
        baseline: a.baseline,
        in_memory_decisions: a.in_memory_decisions,
    };
    let terminal = std::io::stderr().is_terminal();
    let progress = move |p: Progress| {
        if terminal {
            let pct = if p.total == 0 { 100 } else { p.read * 100 / p.total };
            let bar: String = (0..30).map(|i| if i * 100 / 30 < pct { '#' } else { '.' }).collect();
            eprint!("\r[{bar}] {pct:>3}%  {} / {} stage records", p.read, p.total);
            let _ = std::io::stderr().flush();
        }
    };
    let report = replay::replay(cfg, &opts, &progress)?;
    if terminal {
        eprintln!();
    }
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!("stage records read   {}", report.stage_records);
    if report.undecodable > 0 {
        println!("undecodable records  {} (written with a schema this binary does not know; their decisions are unchecked)", report.undecodable);
    }
    println!("recorded decisions   {}", report.recorded_decisions);
    println!("decisions compared   {}", report.compared);
    println!("differences          {}", report.differences);
    let rate = report.stage_records as f64 / secs;
    println!("time                 {:.1} s ({:.0} stage records/s)", secs, rate);
    println!("  of which           {:.1} s reading the recorded decisions", report.recorded_elapsed.as_secs_f64());
    println!("state check          {:.1} s of worker time (reading the changelogs, comparing)", report.state_elapsed.as_secs_f64());
    if let Some((n, d)) = report.raw {
        let raw = n as f64 / d.as_secs_f64().max(1e-9);
        println!("raw read             {n} records in {:.1} s ({raw:.0} records/s); replay at {:.0}% of it", d.as_secs_f64(), rate / raw * 100.0);
    }
    if let Some((n, d)) = report.decoded {
        let dec = n as f64 / d.as_secs_f64().max(1e-9);
        println!("read and decode      {n} records in {:.1} s ({dec:.0} records/s); replay at {:.0}% of it", d.as_secs_f64(), rate / dec * 100.0);
    }
    for d in &report.first {
        let at = format!("{} [{}] @{}", d.source.topic, d.source.partition, d.source.offset);
        if d.missing {
            println!("  {} ({at}): no decision on the decisions topic", d.intent_id);
        }
        for (field, recorded, replayed) in &d.fields {
            println!("  {} ({at}): {field}: recorded {recorded}, replayed {replayed}", d.intent_id);
        }
    }
    if report.shadow_compared > 0 || report.shadow_differences > 0 {
        println!("shadow pairs compared {}", report.shadow_compared);
        println!("shadow differences   {}", report.shadow_differences);
        for (scope, id, missing) in &report.shadow_first {
            println!("  {id} (candidate {scope}): {}", if *missing { "no pair on the shadow-decisions topic" } else { "the recorded pair differs" });
        }
    }
    let state = &report.state;
    println!("state keys compared  {} in {} stage partitions", state.keys, state.partitions);
    println!("  only in the replay {}", state.only_replayed);
    println!("  only in changelog  {}", state.only_in_changelog);
    println!("  values differ      {}", state.differing);
    println!("state differences    {}", state.differences());
    for d in &state.first {
        let at = format!("{} [{}] \"{}\"", d.stage.name(), d.partition, d.key);
        match &d.found {
            Found::OnlyReplayed => println!("  {at}: in the replayed state only"),
            Found::OnlyInChangelog => println!("  {at}: in the changelog only"),
            Found::Differs(replayed, recorded) => println!("  {at}: changelog {recorded}, replayed {replayed}"),
        }
    }
    if !report.state_not_compared.is_empty() {
        let parts: Vec<String> = report.state_not_compared.iter().map(|(kind, p)| format!("{} [{p}]", kind.name())).collect();
        println!("state not compared   {} ({}): the processor committed more of them during the audit; stop it, or let it go idle, to check them", parts.len(), parts.join(", "));
    }
    if report.differences > 0 {
        return Err(format!("{} of {} decisions differ from their replay", report.differences, report.compared));
    }
    if report.shadow_differences > 0 {
        return Err(format!("{} of {} shadow pairs differ from their replay", report.shadow_differences, report.shadow_compared));
    }
    if state.differences() > 0 {
        return Err(format!("{} of {} state keys differ between the replay and the changelogs", state.differences(), state.keys));
    }
    if report.undecodable > 0 {
        return Err(format!("{} stage records could not be replayed", report.undecodable));
    }
    Ok(())
}

/// `sendgate audit explain INTENT_ID`.
pub fn explain(cfg: &Config, intent_id: &str, scratch: Option<PathBuf>) -> Result<(), String> {
    let scratch = scratch.unwrap_or_else(|| std::env::temp_dir().join(format!("sendgate-explain-{}", std::process::id())));
    let sender = cfg.sender_settings();
    let e = crate::audit::explain::explain(cfg, None, intent_id, scratch, sender)?;
    let d = &e.decision;
    let fmt = crate::clock::format_ms;
    println!("intent {}: {} {}{} (stage {}), decided at {}", d.intent_id, d.status.as_str(), d.reason, d.retry_at_ms.map(|t| format!(", retry at {}", fmt(t))).unwrap_or_default(), d.stage.as_deref().unwrap_or("?"), fmt(d.decided_at_ms));
    println!("  {} -> {} (tenant {}), intent record {} [{}] @{}", d.sender, d.recipient, d.tenant, d.source.topic, d.source.partition, d.source.offset);
    let docs: Vec<String> = e.documents.iter().map(|(s, v)| format!("{s} v{v}")).collect();
    println!("policy version {}: {}", d.policy_version, if docs.is_empty() { "built-in defaults only".to_string() } else { docs.join(", ") + ", over the built-in defaults" });
    println!("usage reported:");
    for u in &d.usage {
        println!("  {} {}: used {} of {} ({} remaining)", u.scope, u.window, u.used, u.limit, u.remaining);
    }
    for (stage, checks) in &e.checks {
        println!("{} stage:", stage.name());
        for t in checks {
            println!("  {:<15} {:<30} {}", t.check, t.outcome, t.detail);
        }
    }
    match &e.decided_by {
        Some(t) => println!("decided by: {} stage, {} ({}): {}", t.stage.name(), t.check, t.outcome, t.detail),
        None => println!("decided by: every check passed"),
    }
    println!("hard bounces and complaints of {} behind the signal rates: {}", crate::stage::pipeline::domain_of(&d.sender), e.signal_events.len());
    for (id, kind, at, to) in &e.signal_events {
        println!("  {id} {kind:?} {to} at {}", fmt(*at));
    }
    Ok(())
}

/// `sendgate backtest --policy FILE`.
pub fn backtest(cfg: &Config, policy: &std::path::Path, from: Option<String>, to: Option<String>, show: usize, scratch: Option<PathBuf>, json: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(policy).map_err(|e| format!("cannot read {}: {e}", policy.display()))?;
    let candidate = crate::policy::file::parse_policy_file(&text).map_err(|errs| format!("{} is not a valid policy file:\n  {}", policy.display(), errs.join("\n  ")))?;
    let opts = crate::audit::backtest::BacktestOptions {
        candidate,
        from: from.as_deref().map(Bound::parse).transpose()?,
        to: to.as_deref().map(Bound::parse).transpose()?,
        scratch: scratch.unwrap_or_else(|| std::env::temp_dir().join(format!("sendgate-backtest-{}", std::process::id()))),
        sender: cfg.sender_settings(),
        keep: show,
    };
    let r = crate::audit::backtest::backtest(cfg, &opts)?;
    let c = &r.comparison;
    if json {
        let mut v = c.to_json("baseline", Some(&r.recorded));
        v["inputs"] = r.inputs.into();
        v["agreeing"] = r.agreeing.into();
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("input records        {}", r.inputs);
    print!("{}", c.summary("baseline"));
    let pct = if c.compared == 0 { 100.0 } else { r.agreeing as f64 * 100.0 / c.compared as f64 };
    println!("baseline agrees      {} of {} with the recorded decisions ({pct:.1} %)", r.agreeing, c.compared);
    println!("  (baseline: the recorded inputs under the recorded policies, each intent decided before the next is fed;");
    println!("   the live stages interleaved their inputs as they arrived, so a signal can cross a threshold at another intent)");
    print!("{}", c.tables("baseline", Some(&r.recorded)));
    Ok(())
}

/// `sendgate simulate [FILE]`: intents (JSON lines, or one JSON array) sent
/// to a running processor's API; prints each decision and its checks.
pub fn simulate(cfg: &Config, file: Option<&std::path::Path>) -> Result<(), String> {
    use std::io::Read;
    if cfg.api_addr.is_empty() {
        return Err("api_addr is empty: set SENDGATE_API_ADDR to the processor's API (e.g. 127.0.0.1:9465)".into());
    }
    let mut text = String::new();
    match file {
        Some(f) => text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
        None => {
            std::io::stdin().read_to_string(&mut text).map_err(|e| e.to_string())?;
        }
    }
    let trimmed = text.trim();
    let body = if trimmed.starts_with('[') {
        trimmed.to_string()
    } else {
        let lines: Vec<&str> = trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        format!("[{}]", lines.join(","))
    };
    let token = std::env::var("SENDGATE_API_TOKEN").ok();
    let (status, reply) = http_request(&cfg.api_addr, "POST", "/v1/simulate", &body, token.as_deref())?;
    if status == 401 {
        return Err(format!("the API refused the request (set SENDGATE_API_TOKEN to a token it knows): {reply}"));
    }
    if status != 200 {
        return Err(format!("the processor refused the simulation ({status}): {reply}"));
    }
    let results: Vec<serde_json::Value> = serde_json::from_str(&reply).map_err(|e| format!("unexpected reply: {e}"))?;
    for r in results {
        let d = &r["decision"];
        println!("{} {} {}{}", d["intent_id"].as_str().unwrap_or(""), d["status"].as_str().unwrap_or(""), d["reason"].as_str().unwrap_or(""), d["retry_at_ms"].as_i64().map(|t| format!(" (retry at {})", crate::clock::format_ms(t))).unwrap_or_default());
        for c in r["checks"].as_array().into_iter().flatten() {
            println!("  {:<16} {:<15} {:<30} {}", c["stage"].as_str().unwrap_or(""), c["check"].as_str().unwrap_or(""), c["outcome"].as_str().unwrap_or(""), c["detail"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

/// One plain HTTP/1.1 request to the processor's API; (status, body).
/// One HTTP/1.1 request with an optional bearer token; (status, body).
pub fn http_request(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("cannot reach the processor's API at {addr}: {e} (is `sendgate run` running with this api_addr?)"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).map_err(|e| e.to_string())?;
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}
