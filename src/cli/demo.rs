//! `sendgate demo`: a runaway agent and a bounce storm against a running
//! processor, and what sendgate made of them.

use super::collect::{alerts_since, decisions_for};
use super::kafka_io::{self, end_offsets};
use super::ops::publish_policies;
use crate::clock::format_ms;
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::file::parse_policy_file;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

fn intent(id: String, sender: &str, recipient: String) -> SendIntent {
    SendIntent { intent_id: id, tenant: "demo".into(), sender: sender.into(), recipient, class: IntentClass::Outbound, template_id: Some("cold-intro".into()), content_hash: None, thread_id: None, requires_approval: false, requested_at_ms: 0 }
}

fn encode_all<T: serde::Serialize>(rt: RecordType, items: &[(String, T)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    items.iter().map(|(k, v)| (k.clone().into_bytes(), Some(codec::encode(rt, v).expect("fits schema")))).collect()
}

fn summarise(title: &str, decisions: &[Decision]) {
    let mut by: BTreeMap<(DecisionStatus, String), usize> = BTreeMap::new();
    for d in decisions {
        *by.entry((d.status, d.reason.clone())).or_default() += 1;
    }
    println!("\n{title}");
    for ((status, reason), n) in by {
        println!("  {n:>4}  {:<9} {reason}", status.as_str());
    }
    if let Some(d) = decisions.iter().find(|d| d.status == DecisionStatus::Deferred) {
        let usage: Vec<String> = d.usage.iter().map(|u| format!("{} {} {}/{}", u.scope, u.window, u.used, u.limit)).collect();
        println!("  e.g. {} DEFERRED {} until {} [{}]", d.intent_id, d.reason, d.retry_at_ms.map(format_ms).unwrap_or_default(), usage.join(", "));
    }
}

async fn send(producer: &rdkafka::producer::FutureProducer, topic: &str, records: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), String> {
    let failures = kafka_io::send_all(producer, topic, records).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

pub async fn demo(cfg: &Config) -> Result<(), String> {
    let topo = cfg.topology()?;
    let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0));
    let agent = format!("agent@runaway-{run}.example");
    let bouncy_domain = format!("bouncy-{run}.example");
    let looper = format!("assistant@loop-{run}.example");
    // Business hours off so that the demo shows the same thing at any hour.
    let policy = format!(
        r#"
[[policy]]
scope = "mailbox:{agent}"
business_hours = "off"
limits = {{ "mailbox.outbound.day" = 25, "mailbox.outbound.hour" = 10 }}

[[policy]]
scope = "mailbox:{looper}"
business_hours = "off"
limits = {{ "mailbox.outbound.day" = 1000, "mailbox.outbound.hour" = 1000 }}

[[policy]]
scope = "sender_domain:{bouncy_domain}"
business_hours = "off"
warmup = "off"
limits = {{ "mailbox.outbound.day" = 1000, "mailbox.outbound.hour" = "off", "sender_domain.outbound.hour" = 1000, "recipient_domain.outbound.hour" = "off" }}
signals = {{ min_volume = 100 }}
"#
    );
    let docs = parse_policy_file(&policy).map_err(|e| e.join("; "))?;
    for (scope, version) in publish_policies(cfg, docs, "demo").await? {
        println!("policy {scope} -> version {version}");
    }
    let producer = kafka_io::producer(cfg)?;
    let start = end_offsets(cfg, &topo.full("decisions"))?;
    let alert_start = end_offsets(cfg, &topo.full("alerts"))?;

    // 1. A runaway agent loop: 200 cold emails from one mailbox in seconds.
    let runaway: Vec<(String, SendIntent)> = (0..200).map(|i| (agent.clone(), intent(format!("demo-{run}-agent-{i}"), &agent, format!("lead{i}-{run}@prospects.example")))).collect();
    println!("\nsending 200 intents from {agent} (a runaway loop)...");
    send(&producer, &topo.full("intents"), encode_all(RecordType::SendIntent, &runaway)).await?;
    let ids: HashSet<String> = runaway.iter().map(|(_, i)| i.intent_id.clone()).collect();
    let got = decisions_for(cfg, &start, &ids, Duration::from_secs(120))?;
    if got.len() < ids.len() {
        return Err(format!("only {} of {} decisions arrived within 2 minutes; is `sendgate run` running?", got.len(), ids.len()));
    }
    summarise(&format!("decisions for {agent} (policy: 25/day, 10/hour; a new domain warming up at 20/hour):"), &got);

    // 2. A retry loop: the same follow-up to the same person, 50 times.
    let retries: Vec<(String, SendIntent)> = (0..50)
        .map(|i| {
            let mut it = intent(format!("demo-{run}-retry-{i}"), &looper, format!("cfo-{run}@prospect.example"));
            it.content_hash = Some("follow-up-v1".into());
            (looper.clone(), it)
        })
        .collect();
    println!("\nsending the same follow-up to one recipient 50 times from {looper} (a retry loop)...");
    send(&producer, &topo.full("intents"), encode_all(RecordType::SendIntent, &retries)).await?;
    let ids: HashSet<String> = retries.iter().map(|(_, i)| i.intent_id.clone()).collect();
    let got = decisions_for(cfg, &start, &ids, Duration::from_secs(120))?;
    summarise("decisions for the retry loop (cooldown 10 min per template, identical content once per 24 h):", &got);

    // 3. A bad lead list: 120 sends from one domain, then hard bounces.
    let senders: Vec<String> = (0..4).map(|i| format!("rep{i}@{bouncy_domain}")).collect();
    let batch: Vec<(String, SendIntent)> = (0..120).map(|i| (senders[i % 4].clone(), intent(format!("demo-{run}-list-{i}"), &senders[i % 4], format!("contact{i}-{run}@old-list.example")))).collect();
    println!("\nsending 120 intents from {bouncy_domain}, then 7 hard bounces (5.8%)...");
    send(&producer, &topo.full("intents"), encode_all(RecordType::SendIntent, &batch)).await?;
    let ids: HashSet<String> = batch.iter().map(|(_, i)| i.intent_id.clone()).collect();
    let list = decisions_for(cfg, &start, &ids, Duration::from_secs(120))?;
    summarise(&format!("decisions for {bouncy_domain} before the bounces:"), &list);
    let bounces: Vec<(String, DeliveryEvent)> = (0..7)
        .map(|i| {
            (senders[i % 4].clone(), DeliveryEvent { event_id: format!("demo-{run}-bounce-{i}"), intent_id: Some(format!("demo-{run}-list-{i}")), tenant: "demo".into(), sender: senders[i % 4].clone(), recipient: format!("contact{i}-{run}@old-list.example"), kind: DeliveryKind::BounceHard, smtp_code: Some(550), enhanced_code: Some("5.1.1".into()), response: Some("user unknown".into()), occurred_at_ms: 0, retry_after_seconds: None })
        })
        .collect();
    send(&producer, &topo.full("delivery"), encode_all(RecordType::DeliveryEvent, &bounces)).await?;
    // Wait for the pause before sending more, so the demo does not race its own bounces.
    let mut paused = false;
    for _ in 0..60 {
        let alerts = alerts_since(cfg, &alert_start, Duration::from_millis(500))?;
        if alerts.iter().any(|a| a.kind == "sender_paused" && a.scope.ends_with(&bouncy_domain)) {
            paused = true;
            break;
        }
    }
    if !paused {
        return Err("the sender domain was not paused within 30 s".into());
    }
    let more: Vec<(String, SendIntent)> = (0..10).map(|i| (senders[i % 4].clone(), intent(format!("demo-{run}-more-{i}"), &senders[i % 4], format!("next{i}-{run}@old-list.example")))).collect();
    send(&producer, &topo.full("intents"), encode_all(RecordType::SendIntent, &more)).await?;
    let ids: HashSet<String> = more.iter().map(|(_, i)| i.intent_id.clone()).collect();
    let after = decisions_for(cfg, &start, &ids, Duration::from_secs(120))?;
    summarise(&format!("decisions for {bouncy_domain} after the bounces:"), &after);

    println!("\nalerts:");
    let alerts = alerts_since(cfg, &alert_start, Duration::from_secs(1))?;
    let mine: Vec<&Alert> = alerts.iter().filter(|a| a.scope.contains(&run)).collect();
    for a in &mine {
        println!("  {:<20} {}", a.kind, a.message);
    }
    println!("\nresume the domain with: sendgate command resume sender_domain:{bouncy_domain} --tenant demo");
    Ok(())
}
