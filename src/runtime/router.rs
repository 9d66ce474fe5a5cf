//! The router: reads the four input topics, decodes and validates each
//! record, normalises its addresses, and writes it to the sender stage's
//! partitioned topic keyed by sender domain, stamped with its log time and
//! origin. Policies and tenant-wide commands are broadcast to every stage
//! partition, so each partition meets them at one fixed point of its log.
//! Anything that fails goes to the dead-letter topic with its reason.

use super::task::{InputRecord, Outbox, Processor, TaskError};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::{PolicySpec, Scope};
use crate::topology::Topology;
use std::collections::HashMap;

pub struct Router {
    intents: String,
    delivery: String,
    policies: String,
    commands: String,
    stage_topic: String,
    stage_partitions: i32,
    dead_letters: String,
    buf: Vec<u8>,
}

/// Stable partitioner (FNV-1a, 64-bit): the same domain always lands in the
/// same stage partition, whatever the client library or version.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % partitions.max(1) as u64) as i32
}

/// Where a validated input goes.
enum Route {
    One(String),
    All,
}

impl Router {
    pub fn new(topo: &Topology) -> Self {
        Router {
            intents: topo.full("intents"),
            delivery: topo.full("delivery"),
            policies: topo.full("policies"),
            commands: topo.full("commands"),
            stage_topic: topo.full("stage.sender"),
            stage_partitions: topo.partitions("stage.sender"),
            dead_letters: topo.full("dead-letters"),
            buf: Vec::with_capacity(512),
        }
    }

    fn validate(&self, rec: &InputRecord<'_>, log_time_ms: i64) -> Result<(StageEnvelope, Route), String> {
        let source = SourceRef { topic: rec.topic.to_string(), partition: rec.partition, offset: rec.offset };
        let mut env = StageEnvelope { log_time_ms, source, intent: None, delivery: None, command: None, policy: None };
        if rec.topic == self.policies {
            let scope_text = rec.key.map(|k| String::from_utf8_lossy(k).into_owned()).ok_or("policy record has no key (the key is the scope)")?;
            let scope = Scope::parse(&scope_text)?;
            let spec_json = match rec.payload {
                None => None, // tombstone: the scope's document is removed
                Some(bytes) => {
                    let doc: PolicyDocument = codec::decode(RecordType::PolicyDocument, bytes).map_err(|e| e.to_string())?;
                    if Scope::parse(&doc.scope)? != scope {
                        return Err(format!("policy document scope {:?} does not match its key {scope_text:?}", doc.scope));
                    }
                    let spec = PolicySpec::from_json(&doc.spec_json)?;
                    Some(spec.to_canonical_json())
                }
            };
            env.policy = Some(PolicyChange { scope: scope.to_string(), version: rec.offset + 1, spec_json });
            return Ok((env, Route::All));
        }
        let payload = rec.payload.ok_or("empty record (no value)")?;
        if rec.topic == self.intents {
            let mut i: SendIntent = codec::decode(RecordType::SendIntent, payload).map_err(|e| e.to_string())?;
            for (name, v) in [("intent_id", &i.intent_id), ("tenant", &i.tenant)] {
                if v.trim().is_empty() {
                    return Err(format!("{name} is empty"));
                }
            }
            let sender = Address::parse(&i.sender).map_err(|e| format!("sender: {e}"))?;
            let recipient = Address::parse(&i.recipient).map_err(|e| format!("recipient: {e}"))?;
            i.sender = sender.to_string();
            i.recipient = recipient.to_string();
            let route = Route::One(sender.domain().to_string());
            env.intent = Some(i);
            Ok((env, route))
        } else if rec.topic == self.delivery {
            let mut d: DeliveryEvent = codec::decode(RecordType::DeliveryEvent, payload).map_err(|e| e.to_string())?;
            if d.event_id.trim().is_empty() || d.tenant.trim().is_empty() {
                return Err("event_id and tenant must not be empty".into());
            }
            let sender = Address::parse(&d.sender).map_err(|e| format!("sender: {e}"))?;
            let recipient = Address::parse(&d.recipient).map_err(|e| format!("recipient: {e}"))?;
            d.sender = sender.to_string();
            d.recipient = recipient.to_string();
            let route = Route::One(sender.domain().to_string());
            env.delivery = Some(d);
            Ok((env, route))
        } else if rec.topic == self.commands {
            let mut c: Command = codec::decode(RecordType::Command, payload).map_err(|e| e.to_string())?;
            let route = match c.kind {
                CommandKind::Approve | CommandKind::Reject => {
                    let sender = c.sender.as_deref().ok_or("APPROVE/REJECT needs the held intent's sender")?;
                    let sender = Address::parse(sender).map_err(|e| format!("sender: {e}"))?;
                    c.sender = Some(sender.to_string());
                    Route::One(sender.domain().to_string())
                }
                CommandKind::Pause | CommandKind::Resume => match Scope::parse(&c.target)? {
                    Scope::SenderDomain(d) => {
                        c.target = format!("sender_domain:{d}");
                        Route::One(d)
                    }
                    Scope::Mailbox(m) => {
                        let domain = m.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
                        c.target = format!("mailbox:{m}");
                        Route::One(domain)
                    }
                    other => return Err(format!("PAUSE/RESUME target must be sender_domain:D or mailbox:A, not {other}")),
                },
                other => return Err(format!("command {other:?} is not supported by this version of sendgate")),
            };
            env.command = Some(c);
            Ok((env, route))
        } else {
            Err(format!("router does not read topic {}", rec.topic))
        }
    }
}

impl Processor for Router {
    fn name(&self) -> &'static str {
        "router"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.intents.clone(), self.delivery.clone(), self.policies.clone(), self.commands.clone()]
    }

    fn priority_partitions(&self) -> Vec<(String, i32)> {
        // Both topics have one partition (topology/topics.toml).
        vec![(self.policies.clone(), 0), (self.commands.clone(), 0)]
    }

    fn on_assigned(&mut self, _: &[(String, i32)]) -> Result<(), TaskError> {
        Ok(())
    }

    fn on_revoked(&mut self, _: &[(String, i32)], _: bool) {}

    fn process(&mut self, rec: &InputRecord<'_>, out: &mut Outbox<'_>) -> Result<(), TaskError> {
        let Some(log_time_ms) = rec.timestamp_ms else {
            return out.dead_letter(&self.dead_letters, rec, "record has no timestamp; input topics must use LogAppendTime".into(), "router");
        };
        match self.validate(rec, log_time_ms) {
            Err(reason) => out.dead_letter(&self.dead_letters, rec, reason, "router"),
            Ok((env, route)) => {
                if env.intent.is_some() {
                    out.counts.add("sendgate_intents_consumed_total", [("", ""); 2]);
                }
                self.buf.clear();
                codec::encode_into(RecordType::StageEnvelope, &env, &mut self.buf).map_err(|e| TaskError::Fatal(e.to_string()))?;
                let bytes = std::mem::take(&mut self.buf);
                let topic = self.stage_topic.clone();
                let result = match route {
                    Route::One(domain) => {
                        let p = partition_for(&domain, self.stage_partitions);
                        out.send(&topic, Some(p), domain.as_bytes(), Some(&bytes), Some(log_time_ms))
                    }
                    Route::All => (0..self.stage_partitions).try_for_each(|p| out.send(&topic, Some(p), b"*", Some(&bytes), Some(log_time_ms))),
                };
                self.buf = bytes;
                result
            }
        }
    }

    fn prepare_commit(&mut self, _: &mut Outbox<'_>) -> Result<(), TaskError> {
        Ok(())
    }

    fn committed(&mut self, _: &HashMap<i32, i64>) -> Result<(), TaskError> {
        Ok(())
    }

    fn aborted(&mut self) {}

    fn close(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn partitioning_is_stable_and_spread() {
        assert_eq!(partition_for("acme.com", 6), partition_for("acme.com", 6));
        let used: std::collections::HashSet<i32> = (0..100).map(|i| partition_for(&format!("d{i}.com"), 6)).collect();
        assert_eq!(used.len(), 6);
    }
}
