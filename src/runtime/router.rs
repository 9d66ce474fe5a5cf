//! The router task: reads the four input topics and writes each record,
//! validated and normalised by [`crate::stage::ingress`], to the stage
//! partitions it belongs to, stamped with its log time and origin; intents
//! and delivery events in log-time order across their partitions
//! ([`super::merge`]). Anything that fails goes to the dead-letter topic
//! with its reason. Input in the schema registry's wire format is converted
//! to single object first ([`crate::registry`]).

use super::task::{InputRecord, Outbox, Processor, TaskError};
use crate::codec::{self, RecordType};
use crate::stage::driver::partition_for;
use crate::stage::ingress::{Ingress, Target};
use crate::stage::StageKind;
use crate::registry::{Refusal, SchemaRegistry};
use crate::topology::Topology;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Router {
    ingress: Ingress,
    /// Where writer schemas of registry-framed input come from, if configured.
    registry: Option<Arc<SchemaRegistry>>,
    /// (topic, partitions) per stage kind.
    stage_topics: HashMap<StageKind, (String, i32)>,
    dead_letters: String,
    buf: Vec<u8>,
}

impl Router {
    pub fn new(topo: &Topology, registry: Option<Arc<SchemaRegistry>>, cfg: &crate::config::Config) -> Self {
        Router {
            ingress: cfg.ingress(),
            registry,
            stage_topics: topo.stage_topics(),
            dead_letters: topo.full("dead-letters"),
            buf: Vec::with_capacity(512),
        }
    }
}

impl Router {
    /// The record type an input topic carries.
    fn record_type(&self, topic: &str) -> Option<RecordType> {
        let i = &self.ingress;
        [(&i.intents, RecordType::SendIntent), (&i.delivery, RecordType::DeliveryEvent), (&i.commands, RecordType::Command), (&i.policies, RecordType::PolicyDocument)]
            .into_iter()
            .find(|(t, _)| t.as_str() == topic)
            .map(|(_, rt)| rt)
    }
}

impl Processor for Router {
    fn name(&self) -> &'static str {
        "router"
    }

    fn input_topics(&self) -> Vec<String> {
        let i = &self.ingress;
        vec![i.intents.clone(), i.delivery.clone(), i.policies.clone(), i.commands.clone()]
    }

    fn dead_letter_topic(&self) -> String {
        self.dead_letters.clone()
    }

    fn priority_partitions(&self) -> Vec<(String, i32)> {
        // Both topics have one partition (topology/topics.toml).
        vec![(self.ingress.policies.clone(), 0), (self.ingress.commands.clone(), 0)]
    }

    fn merged_topics(&self) -> Vec<String> {
        // Intents and the delivery events behind the signals meet in the
        // sender stage: routed in log-time order, a backlog does not let
        // either run ahead of the other.
        vec![self.ingress.intents.clone(), self.ingress.delivery.clone()]
    }

    fn on_assigned(&mut self, _: &[(String, i32)]) -> Result<(), TaskError> {
        Ok(())
    }

    fn on_revoked(&mut self, _: &[(String, i32)], _: bool) {}

    fn process(&mut self, rec: &InputRecord<'_>, out: &mut Outbox<'_>) -> Result<(), TaskError> {
        let converted;
        let mut rec = InputRecord { ..*rec };
        if let Some(payload) = rec.payload.filter(|p| crate::registry::framed_schema_id(p).is_some()) {
            let Some(t) = self.record_type(rec.topic) else {
                return out.dead_letter(&self.dead_letters, &rec, format!("schema registry framing on topic {}, which sendgate does not read", rec.topic), "router");
            };
            let Some(registry) = &self.registry else {
                let id = crate::registry::framed_schema_id(payload).unwrap_or_default();
                return out.dead_letter(&self.dead_letters, &rec, format!("record in the schema registry's wire format (schema id {id}) but no registry is configured: set SENDGATE_SCHEMA_REGISTRY_URL"), "router");
            };
            match registry.to_single_object(t, payload) {
                Some(Ok(bytes)) => {
                    converted = bytes;
                    rec.payload = Some(&converted);
                    out.counts.add(crate::metrics::REGISTRY_RECORDS, [("", ""); 2]);
                }
                Some(Err(Refusal::Record(reason))) => return out.dead_letter(&self.dead_letters, &rec, reason, "router"),
                // The registry is away: hold the partition back (the task
                // retries from its last commit) rather than lose the record.
                Some(Err(Refusal::Unavailable(reason))) => return Err(TaskError::Retriable(reason)),
                None => {}
            }
        }
        let rec = &rec;
        let routed = match self.ingress.route(rec) {
            Ok(r) => r,
            Err(reason) => return out.dead_letter(&self.dead_letters, rec, reason, "router"),
        };
        if rec.topic == self.ingress.intents {
            out.counts.add("sendgate_intents_consumed_total", [("", ""); 2]);
        }
        for r in routed {
            self.buf.clear();
            codec::encode_into(RecordType::StageEnvelope, &r.envelope, &mut self.buf).map_err(|e| TaskError::Fatal(e.to_string()))?;
            let (topic, partitions) = &self.stage_topics[&r.stage];
            match &r.target {
                Target::Key(k) => out.send(topic, Some(partition_for(k, *partitions)), k.as_bytes(), Some(&self.buf), Some(r.envelope.log_time_ms))?,
                Target::All => {
                    for p in 0..*partitions {
                        out.send(topic, Some(p), b"*", Some(&self.buf), Some(r.envelope.log_time_ms))?;
                    }
                }
            }
        }
        Ok(())
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
