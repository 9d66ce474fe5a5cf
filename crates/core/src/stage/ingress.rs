//! Ingress: how a record of an input topic becomes stage records. Decode,
//! validate, normalise every address (so variants of one address share
//! counters and suppression), and say which stage partitions receive it.
//! Anything that fails is refused with a reason (a dead letter).
//!
//! Fan-out: intents go to the sender stage; delivery events to the stages
//! that act on their kind ([`delivery_stages`]): the sender stage (signal
//! budgets, throttling) and the recipient stage (suppression, which passes
//! throttles and deliveries on to the recipient-domain stage);
//! policies to every partition of every stage, so each partition meets a
//! change at one fixed point of its log; commands to the stage that keeps
//! what they change.

use super::pipeline::StageKind;
pub use limits::*;
use crate::codec::{self, RecordType};
use crate::model::address::normalise_domain;
use crate::model::*;
use crate::policy::resolve::SHADOW_PREFIX;
use crate::policy::{PolicySpec, Scope};

/// The documented limits of input records (docs/design.md, "Input
/// limits"). They keep every record sendgate derives from an input (a stage
/// hop carries the intent; a decision names it) far below the producer's
/// and the topics' 1 MB limit, so no valid input can make a stage fail to
/// write its output; an input over a limit is a dead letter.
pub mod limits {
    /// Whole records, checked before decoding.
    pub const MAX_RECORD_BYTES: usize = 64 * 1024;
    /// Policy documents are broadcast to every stage partition.
    pub const MAX_POLICY_RECORD_BYTES: usize = 256 * 1024;
    pub const MAX_ID_LEN: usize = 256;
    pub const MAX_TENANT_LEN: usize = 128;
    pub const MAX_TEMPLATE_ID_LEN: usize = 256;
    pub const MAX_CONTENT_HASH_LEN: usize = 256;
    pub const MAX_THREAD_ID_LEN: usize = 1_024;
    pub const MAX_TEXT_LEN: usize = 2_048;
    pub const MAX_SHORT_TEXT_LEN: usize = 256;
    /// The longest wait a delivery event may ask for.
    pub const MAX_RETRY_AFTER_SECONDS: i32 = 7 * 24 * 3_600;

    /// Refuses a field longer than `max` bytes, naming it.
    pub fn check_len(name: &str, value: Option<&str>, max: usize) -> Result<(), String> {
        match value {
            Some(v) if v.len() > max => Err(format!("{name} is {} bytes; at most {max} are accepted", v.len())),
            _ => Ok(()),
        }
    }
}

/// Which partitions of a stage receive a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Key(String),
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub stage: StageKind,
    pub target: Target,
    pub envelope: StageEnvelope,
}

/// The full names of the input topics.
#[derive(Debug, Clone)]
pub struct Ingress {
    pub intents: String,
    pub delivery: String,
    pub policies: String,
    pub commands: String,
    /// Engagement events go to the sender stage (`engagement_events`).
    pub engagement: bool,
    /// Deliveries go to the sender stage too (`reconcile_deliveries`).
    pub deliveries_to_sender: bool,
}

impl Ingress {
    /// The input topics of namespace `ns` (`ns.intents`, ...), routing by default.
    pub fn for_namespace(ns: &str) -> Ingress {
        Ingress { intents: format!("{ns}.intents"), delivery: format!("{ns}.delivery"), policies: format!("{ns}.policies"), commands: format!("{ns}.commands"), engagement: false, deliveries_to_sender: true }
    }

    /// Engagement events routed to the sender stage, or not.
    pub fn with_engagement(mut self, on: bool) -> Ingress {
        self.engagement = on;
        self
    }

    pub fn route(&self, rec: &InputRecord<'_>) -> Result<Vec<Routed>, String> {
        let log_time_ms = rec.timestamp_ms.ok_or("record has no timestamp; input topics must use LogAppendTime")?;
        let source = SourceRef { topic: rec.topic.to_string(), partition: rec.partition, offset: rec.offset };
        // Called once, on the branch that decodes the record: the source moves in.
        let envelope = move |payload| StageEnvelope::new(log_time_ms, source, payload);
        let one = |stage, key: String, mut env: StageEnvelope| {
            env.route_key = Some(key.clone());
            Routed { stage, target: Target::Key(key), envelope: env }
        };
        if let Some(p) = rec.payload {
            let max = if rec.topic == self.policies { MAX_POLICY_RECORD_BYTES } else { MAX_RECORD_BYTES };
            if p.len() > max {
                return Err(format!("record is {} bytes; at most {max} are accepted on this topic", p.len()));
            }
        }
        if rec.topic == self.policies {
            let scope_text = rec.key.map(|k| String::from_utf8_lossy(k).into_owned()).ok_or("policy record has no key (the key is the scope)")?;
            // `shadow/SCOPE`: a candidate document, decided beside the
            // enforced one and enforcing nothing.
            let (shadow, scope_part) = match scope_text.strip_prefix(SHADOW_PREFIX) {
                Some(rest) => (SHADOW_PREFIX, rest),
                None => ("", scope_text.as_str()),
            };
            let scope = Scope::parse(scope_part)?;
            let spec_json = match rec.payload {
                None => None, // tombstone: the scope's document is removed
                Some(bytes) => {
                    let doc: PolicyDocument = codec::decode(RecordType::PolicyDocument, bytes).map_err(|e| e.to_string())?;
                    if Scope::parse(&doc.scope)? != scope {
                        return Err(format!("policy document scope {:?} does not match its key {scope_text:?}", doc.scope));
                    }
                    let spec = PolicySpec::from_json(&doc.spec_json)?;
                    spec.validate_for(&scope)?;
                    Some(spec.to_canonical_json())
                }
            };
            let env = envelope(Payload::Policy(PolicyChange { scope: format!("{shadow}{scope}"), version: rec.offset + 1, spec_json }));
            return Ok(StageKind::ALL.iter().map(|&stage| Routed { stage, target: Target::All, envelope: env.clone() }).collect());
        }
        let payload = rec.payload.ok_or("empty record (no value)")?;
        if rec.topic == self.intents {
            let mut i: SendIntent = codec::decode(RecordType::SendIntent, payload).map_err(|e| e.to_string())?;
            for (name, v) in [("intent_id", &i.intent_id), ("tenant", &i.tenant)] {
                if v.trim().is_empty() {
                    return Err(format!("{name} is empty"));
                }
            }
            check_len("intent_id", Some(&i.intent_id), MAX_ID_LEN)?;
            check_len("tenant", Some(&i.tenant), MAX_TENANT_LEN)?;
            check_len("template_id", i.template_id.as_deref(), MAX_TEMPLATE_ID_LEN)?;
            check_len("content_hash", i.content_hash.as_deref(), MAX_CONTENT_HASH_LEN)?;
            check_len("thread_id", i.thread_id.as_deref(), MAX_THREAD_ID_LEN)?;
            let sender = Address::parse(&i.sender).map_err(|e| format!("sender: {e}"))?;
            let recipient = Address::parse(&i.recipient).map_err(|e| format!("recipient: {e}"))?;
            i.sender = sender.to_string();
            i.recipient = recipient.to_string();
            Ok(vec![one(StageKind::Sender, sender.domain().to_string(), envelope(Payload::Intent(i)))])
        } else if rec.topic == self.delivery {
            let mut d: DeliveryEvent = codec::decode(RecordType::DeliveryEvent, payload).map_err(|e| e.to_string())?;
            if d.event_id.trim().is_empty() || d.tenant.trim().is_empty() {
                return Err("event_id and tenant must not be empty".into());
            }
            check_len("event_id", Some(&d.event_id), MAX_ID_LEN)?;
            check_len("intent_id", d.intent_id.as_deref(), MAX_ID_LEN)?;
            check_len("tenant", Some(&d.tenant), MAX_TENANT_LEN)?;
            check_len("enhanced_code", d.enhanced_code.as_deref(), MAX_SHORT_TEXT_LEN)?;
            check_len("response", d.response.as_deref(), MAX_TEXT_LEN)?;
            if d.retry_after_seconds.is_some_and(|s| !(0..=MAX_RETRY_AFTER_SECONDS).contains(&s)) {
                return Err(format!("retry_after_seconds must be between 0 and {MAX_RETRY_AFTER_SECONDS} (a week)"));
            }
            let sender = Address::parse(&d.sender).map_err(|e| format!("sender: {e}"))?;
            let recipient = Address::parse(&d.recipient).map_err(|e| format!("recipient: {e}"))?;
            d.sender = sender.to_string();
            d.recipient = recipient.to_string();
            let (to_sender, to_recipient) = delivery_stages(d.kind, self.engagement, self.deliveries_to_sender);
            let env = envelope(Payload::Delivery(d));
            let mut routed = Vec::with_capacity(2);
            if to_sender {
                routed.push(one(StageKind::Sender, sender.domain().to_string(), env.clone()));
            }
            if to_recipient {
                routed.push(one(StageKind::Recipient, recipient.to_string(), env));
            }
            Ok(routed)
        } else if rec.topic == self.commands {
            let c: Command = codec::decode(RecordType::Command, payload).map_err(|e| e.to_string())?;
            let (c, stage, target) = normalise_command(c)?;
            let env = envelope(Payload::Command(c));
            Ok(vec![match target {
                Target::Key(k) => one(stage, k, env),
                Target::All => Routed { stage, target, envelope: env },
            }])
        } else {
            Err(format!("ingress does not read topic {}", rec.topic))
        }
    }
}

/// Which stages act on a delivery event of a kind: (sender, recipient).
/// Only those receive it, so a delivery, an open or a click (most of a
/// mail pipeline's events) costs no stage record at all where it would
/// change nothing. The sender stage acts on the signals (hard bounces and
/// rejections, complaints) and on what the feedback rules make of a
/// provider's answer (deferrals, bounces, rejections: the rules are the
/// stage's policy, so every such event goes there) and on reconciliation
/// (deliveries too: every event that shows a send is joined there with its
/// intent's decision); the recipient stage on
/// suppression (hard bounces, complaints, unsubscribes, and what a rule
/// says is gone) and passes throttles and deliveries on to the
/// recipient-domain stage (ISP backoff and its reset). Engagement (opens,
/// clicks, replies) is validated, then routed nowhere, unless the processor
/// routes it to the sender stage for `signals.engagement`.
pub fn delivery_stages(kind: DeliveryKind, engagement: bool, deliveries_to_sender: bool) -> (bool, bool) {
    match kind {
        DeliveryKind::Opened | DeliveryKind::Clicked | DeliveryKind::Replied if engagement => (true, false),
        DeliveryKind::BounceHard | DeliveryKind::Complaint | DeliveryKind::Deferred | DeliveryKind::BounceSoft | DeliveryKind::Rejected => (true, true),
        // Deliveries reach the sender stage too, for reconciliation.
        DeliveryKind::Delivered => (deliveries_to_sender, true),
        DeliveryKind::Unsubscribe => (false, true),
        DeliveryKind::Opened | DeliveryKind::Clicked | DeliveryKind::Replied => (false, false),
    }
}

/// Validates a command, normalises its target, and says where it goes.
pub fn normalise_command(mut c: Command) -> Result<(Command, StageKind, Target), String> {
    if c.command_id.trim().is_empty() || c.tenant.trim().is_empty() {
        return Err("command_id and tenant must not be empty".into());
    }
    check_len("command_id", Some(&c.command_id), MAX_ID_LEN)?;
    check_len("tenant", Some(&c.tenant), MAX_TENANT_LEN)?;
    check_len("target", Some(&c.target), MAX_TEXT_LEN)?;
    check_len("reason", c.reason.as_deref(), MAX_TEXT_LEN)?;
    check_len("operator", c.operator.as_deref(), MAX_SHORT_TEXT_LEN)?;
    match c.kind {
        CommandKind::Approve | CommandKind::Reject => {
            let sender = c.sender.as_deref().ok_or("APPROVE/REJECT needs the held intent's sender")?;
            let sender = Address::parse(sender).map_err(|e| format!("sender: {e}"))?;
            c.sender = Some(sender.to_string());
            Ok((c, StageKind::Sender, Target::Key(sender.domain().to_string())))
        }
        CommandKind::Pause | CommandKind::Resume => match Scope::parse(&c.target)? {
            Scope::SenderDomain(d) => {
                c.target = format!("sender_domain:{d}");
                Ok((c, StageKind::Sender, Target::Key(d)))
            }
            Scope::Mailbox(m) => {
                let domain = m.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
                c.target = format!("mailbox:{m}");
                Ok((c, StageKind::Sender, Target::Key(domain)))
            }
            other => Err(format!("PAUSE/RESUME target must be sender_domain:D or mailbox:A, not {other}")),
        },
        CommandKind::AddRestriction | CommandKind::LiftRestriction => {
            let help = "restriction targets are address:A, domain:D (with its subdomains) or tenant:T";
            let (kind, value) = c.target.split_once(':').ok_or_else(|| format!("restriction target {:?}: {help}", c.target))?;
            c.target = match kind {
                "address" | "mailbox" => format!("address:{}", Address::parse(value).map_err(|e| e.to_string())?),
                "domain" | "sender_domain" => format!("domain:{}", normalise_domain(value).map_err(|e| format!("restriction target {value:?}: {e}"))?),
                "tenant" if !value.is_empty() => format!("tenant:{value}"),
                _ => return Err(format!("restriction target {:?}: {help}", c.target)),
            };
            if c.kind == CommandKind::AddRestriction {
                match c.mode.as_deref() {
                    None | Some("deny") => c.mode = Some("deny".into()),
                    Some("allow") => {}
                    Some(other) => return Err(format!("restriction mode {other:?}: use deny or allow")),
                }
            }
            // Domain and tenant restrictions reach senders in every partition.
            Ok((c, StageKind::Sender, Target::All))
        }
        CommandKind::AddListEntry | CommandKind::RemoveListEntry => {
            let list = c.list.clone().ok_or("list commands need list = allow, block or suppression")?;
            let entry = c.target.trim();
            if entry.contains('@') {
                c.target = Address::parse(entry).map_err(|e| e.to_string())?.to_string();
            } else if let Some(tld) = entry.strip_prefix('.') {
                let tld = tld.to_ascii_lowercase();
                if tld.is_empty() || !tld.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
                    return Err(format!("list entry {entry:?} is not a TLD such as .zip"));
                }
                c.target = format!(".{tld}");
            } else {
                c.target = normalise_domain(entry).map_err(|e| format!("list entry {entry:?}: {e} (entries are an address, a domain or a TLD such as .zip)"))?;
            }
            match list.as_str() {
                "suppression" if c.target.contains('@') => {
                    let key = c.target.clone();
                    Ok((c, StageKind::Recipient, Target::Key(key)))
                }
                "suppression" => Err("suppression entries are addresses".into()),
                // Domain and TLD entries apply to recipients in every partition.
                "allow" | "block" => Ok((c, StageKind::Recipient, Target::All)),
                other => Err(format!("list {other:?} is unknown; use allow, block or suppression")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress() -> Ingress {
        Ingress::for_namespace("ns")
    }

    fn route(i: &SendIntent) -> Result<Vec<Routed>, String> {
        let bytes = codec::encode(RecordType::SendIntent, i).unwrap();
        ingress().route(&InputRecord { topic: "ns.intents", partition: 0, offset: 0, key: None, payload: Some(&bytes), timestamp_ms: Some(1) })
    }

    /// An intent with every field at its limit.
    fn largest() -> SendIntent {
        let local = "l".repeat(64);
        let domain = format!("{}.{}.{}.com", "a".repeat(60), "b".repeat(60), "c".repeat(60));
        SendIntent {
            intent_id: "i".repeat(MAX_ID_LEN),
            tenant: "t".repeat(MAX_TENANT_LEN),
            sender: format!("{local}@{domain}"),
            recipient: format!("{local}@{domain}"),
            class: IntentClass::Outbound,
            template_id: Some("x".repeat(MAX_TEMPLATE_ID_LEN)),
            content_hash: Some("h".repeat(MAX_CONTENT_HASH_LEN)),
            thread_id: Some("m".repeat(MAX_THREAD_ID_LEN)),
            requires_approval: true,
            requested_at_ms: i64::MAX,
        }
    }

    #[test]
    fn the_largest_valid_intent_passes_and_its_stage_record_is_far_below_the_topic_limit() {
        let routed = route(&largest()).unwrap();
        let bytes = codec::encode(RecordType::StageEnvelope, &routed[0].envelope).unwrap();
        // A stage hop carries this envelope plus a handful of usage rows and
        // undo keys of the same fields: far below 1 MB.
        assert!(bytes.len() < 8 * 1024, "{} bytes", bytes.len());
    }

    #[test]
    fn each_field_one_byte_over_its_limit_is_refused_with_its_name() {
        let cases: [(&str, fn(&mut SendIntent)); 5] = [
            ("intent_id", |i| i.intent_id.push('x')),
            ("tenant", |i| i.tenant.push('x')),
            ("template_id", |i| i.template_id.as_mut().unwrap().push('x')),
            ("content_hash", |i| i.content_hash.as_mut().unwrap().push('x')),
            ("thread_id", |i| i.thread_id.as_mut().unwrap().push('x')),
        ];
        for (name, grow) in cases {
            let mut i = largest();
            grow(&mut i);
            let e = route(&i).unwrap_err();
            assert!(e.starts_with(&format!("{name} is ")) && e.contains("at most"), "{name}: {e}");
        }
    }

    #[test]
    fn a_candidate_policy_is_checked_like_any_and_routed_as_a_shadow_change() {
        let policy = |key: &str, scope: &str, spec: &str| {
            let doc = PolicyDocument { scope: scope.into(), spec_json: spec.into(), source_name: None };
            let bytes = codec::encode(RecordType::PolicyDocument, &doc).unwrap();
            ingress().route(&InputRecord { topic: "ns.policies", partition: 0, offset: 6, key: Some(key.as_bytes()), payload: Some(&bytes), timestamp_ms: Some(1) })
        };
        let routed = policy("shadow/tenant:acme", "tenant:acme", "{}").unwrap();
        assert_eq!(routed.len(), StageKind::ALL.len());
        assert_eq!(routed[0].envelope.policy().map(|p| (p.scope.as_str(), p.version)), Some(("shadow/tenant:acme", 7)));
        let e = policy("shadow/tenant:acme", "tenant:acme", r#"{"trust":{"mailbox":"bold"}}"#).unwrap_err();
        assert!(e.contains("unknown preset"), "{e}");
        let e = policy("shadow/planet:mars", "planet:mars", "{}").unwrap_err();
        assert!(e.contains("scope kind"), "{e}");
        let e = policy("shadow/tenant:acme", "tenant:globex", "{}").unwrap_err();
        assert!(e.contains("does not match its key"), "{e}");
    }

    #[test]
    fn a_delivery_event_goes_only_to_the_stages_that_act_on_its_kind() {
        let stages = |kind| {
            let ev = DeliveryEvent { event_id: "e".into(), intent_id: None, tenant: "t".into(), sender: "Ana@Acme.com".into(), recipient: "bo@x.com".into(), kind, smtp_code: None, enhanced_code: None, response: None, occurred_at_ms: 0, retry_after_seconds: None };
            let bytes = codec::encode(RecordType::DeliveryEvent, &ev).unwrap();
            let routed = ingress().route(&InputRecord { topic: "ns.delivery", partition: 0, offset: 0, key: None, payload: Some(&bytes), timestamp_ms: Some(1) }).unwrap();
            routed.iter().map(|r| (r.stage, r.target.clone())).collect::<Vec<_>>()
        };
        let (sender, recipient) = ((StageKind::Sender, Target::Key("acme.com".into())), (StageKind::Recipient, Target::Key("bo@x.com".into())));
        // (Deliveries reach the sender stage for reconciliation.)
        for kind in [DeliveryKind::BounceHard, DeliveryKind::Complaint, DeliveryKind::Deferred, DeliveryKind::BounceSoft, DeliveryKind::Rejected, DeliveryKind::Delivered] {
            assert_eq!(stages(kind), vec![sender.clone(), recipient.clone()], "{kind:?}");
        }
        assert_eq!(stages(DeliveryKind::Unsubscribe), vec![recipient.clone()]);
        assert_eq!(delivery_stages(DeliveryKind::Delivered, false, false), (false, true), "with reconcile_deliveries off");
        for kind in [DeliveryKind::Opened, DeliveryKind::Clicked, DeliveryKind::Replied] {
            assert_eq!(stages(kind), vec![], "{kind:?}");
            assert_eq!(delivery_stages(kind, true, true), (true, false), "{kind:?} with engagement_events");
        }
    }

    #[test]
    fn a_record_over_the_size_limit_is_refused_before_it_is_decoded() {
        let big = vec![0xC3; MAX_RECORD_BYTES + 1];
        let e = ingress().route(&InputRecord { topic: "ns.intents", partition: 0, offset: 0, key: None, payload: Some(&big), timestamp_ms: Some(1) }).unwrap_err();
        assert!(e.contains(&format!("at most {MAX_RECORD_BYTES}")), "{e}");
    }
}
