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
