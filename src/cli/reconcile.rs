//! `sendgate reconcile report`: the unapproved sends of a period (delivery
//! events with no ALLOWED decision behind them; see `stage::reconcile`), from
//! their `unapproved_send` alerts, with totals per tenant, sender domain,
//! mailbox and reason.

use super::kafka_io;
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::Alert;
use std::collections::BTreeMap;

pub struct ReportArgs {
    pub tenant: Option<String>,
    /// RFC 3339 times: [from, to).
    pub from: Option<String>,
    pub to: Option<String>,
    /// At most this many sends listed (the totals count all).
    pub show: usize,
    pub json: bool,
}

fn parse_time(what: &str, s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|e| format!("--{what} {s:?} is not an RFC 3339 time (e.g. 2026-11-20T00:00:00Z): {e}"))
}

pub fn report(cfg: &Config, args: ReportArgs) -> Result<(), String> {
    let topic = cfg.topology()?.full("alerts");
    let from = args.from.as_deref().map(|s| parse_time("from", s)).transpose()?;
    let to = args.to.as_deref().map(|s| parse_time("to", s)).transpose()?;
    let mut listed: Vec<Alert> = Vec::new();
    let mut total = 0u64;
    // (kind of total, name) -> count
    let mut totals: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    kafka_io::read_ranges(cfg, &topic, &kafka_io::watermarks(cfg, &topic)?, |r| {
        let a: Alert = codec::decode(RecordType::Alert, r.payload.unwrap_or_default()).map_err(|e| format!("{topic} @{}: {e}", r.offset))?;
        if a.kind != "unapproved_send" || args.tenant.as_ref().is_some_and(|t| *t != a.tenant) || from.is_some_and(|f| a.at_ms < f) || to.is_some_and(|t| a.at_ms >= t) {
            return Ok(());
        }
        total += 1;
        let detail = |k: &str| a.details.get(k).cloned().unwrap_or_default();
        for (kind, name) in [("tenant", a.tenant.clone()), ("sender_domain", format!("{}/{}", a.tenant, detail("sender_domain"))), ("mailbox", format!("{}/{}", a.tenant, a.scope.trim_start_matches("mailbox:"))), ("reason", detail("reason"))] {
            *totals.entry((kind, name)).or_default() += 1;
        }
        if listed.len() < args.show {
            listed.push(a);
        }
        Ok(())
    })?;
    if args.json {
        let sends: Vec<serde_json::Value> = listed
            .iter()
            .map(|a| {
                let mut v = serde_json::json!({ "at": crate::clock::format_ms(a.at_ms), "at_ms": a.at_ms, "tenant": a.tenant, "mailbox": a.scope.trim_start_matches("mailbox:"), "message": a.message });
                for (k, d) in &a.details {
                    v[k] = d.clone().into();
                }
                v
            })
            .collect();
        let mut by: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for ((kind, name), n) in &totals {
            by.entry(kind).or_default().insert(name.clone(), *n);
        }
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "unapproved_sends": total, "sends": sends, "totals": by })).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("unapproved sends     {total}");
    if total == 0 {
        return Ok(());
    }
    println!("\n{:<20} {:<12} {:<32} {:<32} {:<20} {:<12} reason", "at", "tenant", "mailbox", "recipient", "intent", "event");
    for a in &listed {
        let detail = |k: &str| a.details.get(k).cloned().unwrap_or_default();
        println!(
            "{:<20} {:<12} {:<32} {:<32} {:<20} {:<12} {}",
            crate::clock::format_ms(a.at_ms),
            a.tenant,
            a.scope.trim_start_matches("mailbox:"),
            detail("recipient"),
            detail("intent_id"),
            detail("event_kind"),
            detail("reason")
        );
    }
    if (listed.len() as u64) < total {
        println!("... and {} more (--show N lists more)", total - listed.len() as u64);
    }
    for kind in ["tenant", "sender_domain", "mailbox", "reason"] {
        println!("\nby {kind}:");
        for ((_, name), n) in totals.iter().filter(|((k, _), _)| *k == kind) {
            println!("  {name:<60} {n}");
        }
    }
    Ok(())
}
