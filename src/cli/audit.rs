//! `sendgate audit ...`: the report printed for an operator.

use crate::audit::replay::{self, Bound, Progress, ReplayOptions};
use crate::config::Config;
use crate::stage::SenderConfig;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

pub struct ReplayArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub decisions_topic: Option<String>,
    pub scratch: Option<PathBuf>,
    pub show: usize,
}

pub fn replay(cfg: &Config, a: ReplayArgs) -> Result<(), String> {
    let opts = ReplayOptions {
        from: a.from.as_deref().map(Bound::parse).transpose()?,
        to: a.to.as_deref().map(Bound::parse).transpose()?,
        decisions_topic: a.decisions_topic,
        scratch: a.scratch.unwrap_or_else(|| std::env::temp_dir().join(format!("sendgate-audit-{}", std::process::id()))),
        sender: SenderConfig { idempotency_retention_ms: cfg.idempotency_retention_hours as i64 * 3_600_000 },
        keep: a.show,
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
    println!("time                 {:.1} s ({:.0} stage records/s)", secs, report.stage_records as f64 / secs);
    for d in &report.first {
        let at = format!("{} [{}] @{}", d.source.topic, d.source.partition, d.source.offset);
        if d.missing {
            println!("  {} ({at}): no decision on the decisions topic", d.intent_id);
        }
        for (field, recorded, replayed) in &d.fields {
            println!("  {} ({at}): {field}: recorded {recorded}, replayed {replayed}", d.intent_id);
        }
    }
    if report.differences > 0 {
        return Err(format!("{} of {} decisions differ from their replay", report.differences, report.compared));
    }
    if report.undecodable > 0 {
        return Err(format!("{} stage records could not be replayed", report.undecodable));
    }
    Ok(())
}

/// `sendgate audit explain INTENT_ID`.
pub fn explain(cfg: &Config, intent_id: &str, scratch: Option<PathBuf>) -> Result<(), String> {
    let scratch = scratch.unwrap_or_else(|| std::env::temp_dir().join(format!("sendgate-explain-{}", std::process::id())));
    let sender = SenderConfig { idempotency_retention_ms: cfg.idempotency_retention_hours as i64 * 3_600_000 };
    let e = crate::audit::explain::explain(cfg, intent_id, scratch, sender)?;
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
pub fn backtest(cfg: &Config, policy: &std::path::Path, from: Option<String>, to: Option<String>, show: usize, scratch: Option<PathBuf>) -> Result<(), String> {
    let text = std::fs::read_to_string(policy).map_err(|e| format!("cannot read {}: {e}", policy.display()))?;
    let candidate = crate::policy::file::parse_policy_file(&text).map_err(|errs| format!("{} is not a valid policy file:\n  {}", policy.display(), errs.join("\n  ")))?;
    let opts = crate::audit::backtest::BacktestOptions {
        candidate,
        from: from.as_deref().map(Bound::parse).transpose()?,
        to: to.as_deref().map(Bound::parse).transpose()?,
        scratch: scratch.unwrap_or_else(|| std::env::temp_dir().join(format!("sendgate-backtest-{}", std::process::id()))),
        sender: SenderConfig { idempotency_retention_ms: cfg.idempotency_retention_hours as i64 * 3_600_000 },
        keep: show,
    };
    let r = crate::audit::backtest::backtest(cfg, &opts)?;
    println!("input records        {}", r.inputs);
    println!("decisions compared   {}", r.compared);
    println!("decisions changed    {}", r.changed);
    println!("\n{:<10} {:<28} {:>10} {:>10}", "status", "reason", "recorded", "candidate");
    let mut by_status: std::collections::BTreeMap<&str, (u64, u64)> = std::collections::BTreeMap::new();
    for ((status, reason), (a, b)) in &r.by_outcome {
        println!("{:<10} {:<28} {:>10} {:>10}", status.as_str(), reason, a, b);
        let e = by_status.entry(status.as_str()).or_default();
        e.0 += a;
        e.1 += b;
    }
    println!();
    for (status, (a, b)) in &by_status {
        println!("total {status:<10} recorded {a} candidate {b}");
    }
    println!("\n{:<40} {:>17} {:>17}", "sender domain", "allowed rec/cand", "denied rec/cand");
    for (domain, c) in &r.by_sender_domain {
        println!("{:<40} {:>8}/{:<8} {:>8}/{:<8}", domain, c.allowed.0, c.allowed.1, c.denied.0, c.denied.1);
    }
    if !r.first.is_empty() {
        println!("\nfirst changes:");
        for c in &r.first {
            println!("  {} ({} [{}] @{}): {} {} -> {} {}", c.intent_id, c.source.topic, c.source.partition, c.source.offset, c.before.0.as_str(), c.before.1, c.after.0.as_str(), c.after.1);
        }
    }
    Ok(())
}
