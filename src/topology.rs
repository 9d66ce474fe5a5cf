//! Topics as data (`topology/topics.toml`), and `topics apply`: create what
//! is missing, verify what exists, say exactly what differs.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub const DEFAULT_TOPOLOGY: &str = include_str!("../topology/topics.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub role: String,
    pub partitions: i32,
    pub cleanup_policy: String,
    pub timestamp_type: String,
    #[serde(default)]
    pub retention_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    topic: Vec<TopicSpec>,
}

/// The topics of one namespace, with their full names.
#[derive(Debug, Clone)]
pub struct Topology {
    pub namespace: String,
    pub topics: Vec<TopicSpec>,
}

pub const REQUIRED: &[&str] = &[
    "intents",
    "delivery",
    "policies",
    "commands",
    "decisions",
    "alerts",
    "shadow-decisions",
    "dead-letters",
    "instances",
    "stage.sender",
    "stage.sender.changelog",
    "stage.tenant",
    "stage.tenant.changelog",
    "stage.recipient",
    "stage.recipient.changelog",
    "stage.recipient_domain",
    "stage.recipient_domain.changelog",
];

impl Topology {
    pub fn parse(text: &str, namespace: &str) -> Result<Topology, String> {
        let file: TopologyFile = toml::from_str(text).map_err(|e| format!("topology file: {e}"))?;
        let mut errors = Vec::new();
        for t in &file.topic {
            if t.partitions < 1 {
                errors.push(format!("topic {}: partitions must be at least 1", t.name));
            }
            if !["delete", "compact"].contains(&t.cleanup_policy.as_str()) {
                errors.push(format!("topic {}: cleanup_policy must be delete or compact", t.name));
            }
            if !["LogAppendTime", "CreateTime"].contains(&t.timestamp_type.as_str()) {
                errors.push(format!("topic {}: timestamp_type must be LogAppendTime or CreateTime", t.name));
            }
            if t.role == "input" && t.timestamp_type != "LogAppendTime" {
                errors.push(format!("topic {}: input topics must use LogAppendTime (the log is the clock)", t.name));
            }
        }
        for r in REQUIRED {
            if !file.topic.iter().any(|t| t.name == *r) {
                errors.push(format!("topology has no topic {r:?}"));
            }
        }
        let topo = Topology { namespace: namespace.to_string(), topics: file.topic };
        for kind in crate::stage::StageKind::ALL {
            let (input, changelog) = (kind.topic(), kind.changelog());
            if let (Some(s), Some(c)) = (topo.spec(&input), topo.spec(&changelog)) {
                if s.partitions != c.partitions {
                    errors.push(format!("{input} and {changelog} must have the same partition count (partition N's state lives in changelog partition N)"));
                }
            }
        }
        if errors.is_empty() {
            Ok(topo)
        } else {
            Err(errors.join("\n"))
        }
    }

    pub fn spec(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn full(&self, name: &str) -> String {
        format!("{}.{}", self.namespace, name)
    }

    /// (full topic name, partitions) of every stage's input topic.
    pub fn stage_topics(&self) -> std::collections::HashMap<crate::stage::StageKind, (String, i32)> {
        crate::stage::StageKind::ALL.iter().map(|k| (*k, (self.full(&k.topic()), self.partitions(&k.topic())))).collect()
    }

    pub fn partitions(&self, name: &str) -> i32 {
        self.spec(name).map(|t| t.partitions).unwrap_or(1)
    }

    fn configs(spec: &TopicSpec) -> BTreeMap<&'static str, String> {
        let mut c = BTreeMap::new();
        c.insert("cleanup.policy", spec.cleanup_policy.clone());
        c.insert("message.timestamp.type", spec.timestamp_type.clone());
        if let Some(r) = spec.retention_ms {
            c.insert("retention.ms", r.to_string());
        }
        c
    }
}

/// What `apply` found for one topic.
#[derive(Debug, PartialEq)]
pub enum TopicStatus {
    Created,
    Matches,
    Differs(Vec<String>),
}

/// Creates missing topics and verifies existing ones. Idempotent. `client`:
/// the process's client settings ([`crate::config::Config::client_config`]).
pub async fn apply(topo: &Topology, client: &ClientConfig, replication: i32) -> Result<Vec<(String, TopicStatus)>, String> {
    let bootstrap = client.get("bootstrap.servers").unwrap_or_default().to_string();
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| format!("cannot reach Kafka at {bootstrap}: {e}"))?;
    let existing: BTreeMap<String, usize> = metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| (t.name().to_string(), t.partitions().len())).collect();

    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut report = Vec::new();
    let missing: Vec<&TopicSpec> = topo.topics.iter().filter(|t| !existing.contains_key(&topo.full(&t.name))).collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|t| topo.full(&t.name)).collect();
        let configs: Vec<BTreeMap<&str, String>> = missing.iter().map(|t| Topology::configs(t)).collect();
        let new_topics: Vec<NewTopic> = missing
            .iter()
            .zip(&names)
            .zip(&configs)
            .map(|((t, name), cfg)| {
                let mut nt = NewTopic::new(name, t.partitions, TopicReplication::Fixed(replication));
                for (k, v) in cfg {
                    nt = nt.set(k, v);
                }
                nt
            })
            .collect();
        let results = admin.create_topics(&new_topics, &opts).await.map_err(|e| format!("create topics: {e}"))?;
        for r in results {
            match r {
                Ok(name) => report.push((name, TopicStatus::Created)),
                // Created concurrently by another instance: verify it below.
                Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => report.push((name, TopicStatus::Matches)),
                Err((name, code)) => return Err(format!("cannot create topic {name}: {code}")),
            }
        }
    }
    // Verify the ones that existed.
    let to_check: Vec<&TopicSpec> = topo.topics.iter().filter(|t| existing.contains_key(&topo.full(&t.name))).collect();
    if !to_check.is_empty() {
        let names: Vec<String> = to_check.iter().map(|t| topo.full(&t.name)).collect();
        let specs: Vec<ResourceSpecifier> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let described = admin.describe_configs(&specs, &opts).await.map_err(|e| format!("describe topic configs: {e}"))?;
        for ((t, name), res) in to_check.iter().zip(&names).zip(described) {
            let res = res.map_err(|e| format!("describe {name}: {e}"))?;
            let mut diffs = Vec::new();
            let actual_parts = existing[name] as i32;
            if actual_parts != t.partitions {
                diffs.push(format!("partitions: topology says {}, the broker has {}", t.partitions, actual_parts));
            }
            for (k, want) in Topology::configs(t) {
                let have = res.get(k).and_then(|e| e.value.clone()).unwrap_or_default();
                if have != want {
                    diffs.push(format!("{k}: topology says {want}, the broker has {have}"));
                }
            }
            report.push((name.clone(), if diffs.is_empty() { TopicStatus::Matches } else { TopicStatus::Differs(diffs) }));
        }
    }
    report.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_topology_is_valid() {
        let t = Topology::parse(DEFAULT_TOPOLOGY, "sendgate").unwrap();
        assert_eq!(t.full("intents"), "sendgate.intents");
        assert_eq!(t.spec("intents").unwrap().timestamp_type, "LogAppendTime");
    }

    #[test]
    fn an_input_topic_without_log_append_time_is_refused() {
        let bad = DEFAULT_TOPOLOGY.replacen("timestamp_type = \"LogAppendTime\"", "timestamp_type = \"CreateTime\"", 1);
        let err = Topology::parse(&bad, "x").unwrap_err();
        assert!(err.contains("LogAppendTime"), "{err}");
    }
}
