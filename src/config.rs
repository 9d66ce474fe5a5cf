//! Configuration: defaults, then an optional TOML file, then `SENDGATE_*`
//! environment variables. Unknown keys and bad values fail at start-up with
//! a message that says what to fix.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka bootstrap servers. Empty: not configured.
    pub bootstrap: String,
    /// Prefix of every topic, consumer group and transactional id.
    pub namespace: String,
    /// Stable per instance: a restarted instance with the same id fences its
    /// predecessor's open transaction at once instead of waiting for it to time out.
    pub instance_id: String,
    /// Where RocksDB keeps the local materialisation of stage state.
    pub state_dir: PathBuf,
    /// RocksDB memtable size per stage, in MiB (two at most): the state a
    /// stage holds in memory before flushing it to state_dir.
    pub state_write_buffer_mb: u64,
    /// Prometheus scrape endpoint; empty disables it.
    pub metrics_addr: String,
    /// The HTTP API (docs/api.md); empty disables it.
    pub api_addr: String,
    /// Serve the API over TLS with this PEM certificate (chain) and its
    /// PEM PKCS#8 key; both or neither.
    pub api_tls_cert_file: String,
    pub api_tls_key_file: String,
    /// The URL other instances forward requests to, announced with the
    /// partitions this instance owns. Empty: http(s)://api_addr, or the
    /// host's name in place of an unspecified address (0.0.0.0, [::]).
    pub api_advertised_url: String,
    /// PEM CA certificates that sign the other instances' API certificates
    /// (forwarding over TLS); empty: the system's trust store.
    pub api_peer_ca_file: String,
    /// "exactly_once" (the default: outputs, changelog and offsets in one
    /// Kafka transaction) or "at_least_once" (flush, then commit offsets: a
    /// crash repeats the records since the last commit, so decisions can be
    /// repeated and counters can count them twice).
    pub processing_guarantee: String,
    /// How often a stage commits its transaction (ms).
    pub commit_interval_ms: u64,
    /// Most input records in one transaction.
    pub max_batch_records: usize,
    /// A stage that has read everything there is commits early, once its
    /// transaction is this old (ms), instead of waiting out
    /// `commit_interval_ms`: on a slow stream every hop passes an intent on
    /// as soon as it is done. Off (0) by default: a busy stage also runs
    /// dry between fetches, and its many small transactions cost a third
    /// of the throughput (docs/benchmarks.md).
    pub idle_commit_ms: u64,
    /// Commit at once when every partition a task reads is read to its end
    /// (the broker's, not the client's local queue) and its transaction
    /// holds at most 1,000 records: on a live stream each hop passes an
    /// intent on without waiting out `commit_interval_ms`; a backlog never
    /// triggers it.
    pub commit_when_caught_up: bool,
    /// The consumer group session (ms): how long the group waits for a
    /// member that stopped heartbeating (a crash) before giving its
    /// partitions to others.
    pub session_timeout_ms: u64,
    /// Longest a hand-over may take (ms): on a revocation or a stop, the
    /// open transaction is committed (or aborted) within it. Must be shorter
    /// than the session, or the group gives the partitions away while their
    /// last transaction is still in flight.
    pub drain_deadline_ms: u64,
    /// Keep a fixed group membership per instance_id: a restart within the
    /// session takes the same partitions back without a rebalance, but a
    /// stopping instance does not leave the group, so its partitions wait
    /// out the session before others take them. Off by default: a stop
    /// hands its partitions over at once.
    pub static_membership: bool,
    /// Warm copies: every stage partition this instance does not own is
    /// kept up to date from its changelog, so taking it over (a failover,
    /// a rebalance) replays seconds of changelog instead of all of it.
    /// Costs the disk and the changelog reads of the whole state.
    pub standby_replicas: bool,
    /// Kafka transaction timeout (ms). It bounds how long the open
    /// transaction of a crashed instance that does not come back blocks
    /// read-committed readers (the next owner of its partitions, the
    /// senders reading decisions): Kafka Streams' 10 s under exactly-once.
    pub transaction_timeout_ms: u64,
    /// How long ALLOWED/BLOCKED intent ids are remembered for idempotency.
    pub idempotency_retention_hours: u64,
    /// Topology file; empty uses the one built into the binary.
    pub topology_file: String,
    /// Replication factor for topics that `topics apply` creates.
    pub replication_factor: i32,
    /// How the clients connect: TLS, SASL and where the secrets come from
    /// (`[security]`, SENDGATE_KAFKA_* variables; see [`crate::connection`]).
    pub security: crate::connection::Security,
    /// The compression of every record sendgate writes: none, gzip, snappy,
    /// lz4 (the default, docs/benchmarks.md) or zstd. Input compressed with
    /// any of them is read whatever this says.
    pub compression: String,
    /// Where writer schemas of input in the Confluent Schema Registry wire
    /// format come from (`[schema_registry]`; see [`crate::registry`]).
    pub schema_registry: crate::registry::RegistrySettings,
    /// Show email addresses and values quoted from records in log lines
    /// (debugging); by default each is replaced by a keyed hash
    /// ([`crate::redact`]).
    pub log_addresses: bool,
    /// Route engagement events (opens, clicks, replies) to the sender stage,
    /// for the policies' `signals.engagement`. Off: they are validated and
    /// go nowhere, costing no stage record.
    pub engagement_events: bool,
    /// Route DELIVERED events to the sender stage too, where every event
    /// that shows a send is reconciled with its intent's decision
    /// (`reconcile` in the policies). Off: a delivery costs the sender
    /// stage nothing, and only bounces, deferrals and rejections are
    /// reconciled.
    pub reconcile_deliveries: bool,
    /// Extra librdkafka properties for every client (tuning; no secrets:
    /// those go through `[security]`).
    pub kafka: BTreeMap<String, String>,
}

/// `instance_id = "@hostname"`: the host's name (a container's, under
/// compose or Kubernetes).
pub const HOSTNAME_INSTANCE_ID: &str = "@hostname";

/// This host's name; "localhost" when it cannot be read.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let name = String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())]).into_owned();
        if !name.is_empty() {
            return name;
        }
    }
    "localhost".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bootstrap: String::new(),
            namespace: "sendgate".into(),
            instance_id: "0".into(),
            state_dir: PathBuf::from(".sendgate/state"),
            state_write_buffer_mb: 64,
            metrics_addr: "127.0.0.1:9464".into(),
            api_addr: "127.0.0.1:9465".into(),
            api_tls_cert_file: String::new(),
            api_tls_key_file: String::new(),
            api_advertised_url: String::new(),
            api_peer_ca_file: String::new(),
            processing_guarantee: "exactly_once".into(),
            commit_interval_ms: 100,
            max_batch_records: 5_000,
            idle_commit_ms: 0,
            commit_when_caught_up: true,
            transaction_timeout_ms: 10_000,
            session_timeout_ms: 10_000,
            drain_deadline_ms: 5_000,
            static_membership: false,
            standby_replicas: false,
            idempotency_retention_hours: 168,
            topology_file: String::new(),
            replication_factor: 1,
            security: crate::connection::Security::default(),
            compression: "lz4".into(),
            schema_registry: crate::registry::RegistrySettings::default(),
            log_addresses: false,
            engagement_events: false,
            reconcile_deliveries: true,
            kafka: BTreeMap::new(),
        }
    }
}

/// The environment variables that override the file, and the field each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("SENDGATE_BOOTSTRAP", "bootstrap"),
    ("SENDGATE_NAMESPACE", "namespace"),
    ("SENDGATE_INSTANCE_ID", "instance_id"),
    ("SENDGATE_STATE_DIR", "state_dir"),
    ("SENDGATE_STATE_WRITE_BUFFER_MB", "state_write_buffer_mb"),
    ("SENDGATE_METRICS_ADDR", "metrics_addr"),
    ("SENDGATE_API_ADDR", "api_addr"),
    ("SENDGATE_API_TLS_CERT_FILE", "api_tls_cert_file"),
    ("SENDGATE_API_TLS_KEY_FILE", "api_tls_key_file"),
    ("SENDGATE_API_ADVERTISED_URL", "api_advertised_url"),
    ("SENDGATE_API_PEER_CA_FILE", "api_peer_ca_file"),
    ("SENDGATE_PROCESSING_GUARANTEE", "processing_guarantee"),
    ("SENDGATE_COMMIT_INTERVAL_MS", "commit_interval_ms"),
    ("SENDGATE_MAX_BATCH_RECORDS", "max_batch_records"),
    ("SENDGATE_IDLE_COMMIT_MS", "idle_commit_ms"),
    ("SENDGATE_COMMIT_WHEN_CAUGHT_UP", "commit_when_caught_up"),
    ("SENDGATE_TRANSACTION_TIMEOUT_MS", "transaction_timeout_ms"),
    ("SENDGATE_SESSION_TIMEOUT_MS", "session_timeout_ms"),
    ("SENDGATE_DRAIN_DEADLINE_MS", "drain_deadline_ms"),
    ("SENDGATE_STATIC_MEMBERSHIP", "static_membership"),
    ("SENDGATE_STANDBY_REPLICAS", "standby_replicas"),
    ("SENDGATE_IDEMPOTENCY_RETENTION_HOURS", "idempotency_retention_hours"),
    ("SENDGATE_TOPOLOGY_FILE", "topology_file"),
    ("SENDGATE_REPLICATION_FACTOR", "replication_factor"),
    ("SENDGATE_COMPRESSION", "compression"),
    ("SENDGATE_LOG_ADDRESSES", "log_addresses"),
    ("SENDGATE_ENGAGEMENT_EVENTS", "engagement_events"),
    ("SENDGATE_RECONCILE_DELIVERIES", "reconcile_deliveries"),
];

impl Config {
    /// The ingress routing this configuration asks for over its namespace's
    /// input topics: engagement events and deliveries to the sender stage.
    /// (The stages take their few settings from here; they never read the
    /// process configuration.)
    pub fn ingress(&self) -> crate::stage::ingress::Ingress {
        crate::stage::ingress::Ingress { engagement: self.engagement_events, deliveries_to_sender: self.reconcile_deliveries, ..crate::stage::ingress::Ingress::for_namespace(&self.namespace) }
    }

    /// The sender stage's settings.
    pub fn sender_settings(&self) -> crate::stage::SenderConfig {
        crate::stage::SenderConfig { idempotency_retention_ms: self.idempotency_retention_hours as i64 * 3_600_000 }
    }

    /// Loads and validates. `file` is the `--config` path, if any.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, String> {
        let mut cfg = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {}: {e}", p.display()))?;
                toml::from_str::<Config>(&text).map_err(|e| format!("config file {}: {e}", p.display()))?
            }
            None => Config::default(),
        };
        for (var, field) in ENV_VARS {
            if let Ok(v) = std::env::var(var) {
                cfg.set(field, &v).map_err(|e| format!("{var}={v:?}: {e}"))?;
            }
        }
        for (var, field) in crate::connection::SECURITY_ENV_VARS {
            if let Ok(v) = std::env::var(var) {
                cfg.security.set(field, &v).map_err(|e| format!("{var}={v:?}: {e}"))?;
            }
        }
        for (var, field) in crate::registry::REGISTRY_ENV_VARS {
            if let Ok(v) = std::env::var(var) {
                cfg.schema_registry.set(field, &v).map_err(|e| format!("{var}={v:?}: {e}"))?;
            }
        }
        cfg.security.load_secrets(&|k| std::env::var(k).ok())?;
        cfg.schema_registry.load_secrets(&|k| std::env::var(k).ok())?;
        if cfg.instance_id == HOSTNAME_INSTANCE_ID {
            // Replicas of one container spec (compose --scale, a Kubernetes
            // Deployment) each get their own id, stable across restarts of
            // the container.
            cfg.instance_id = host_name().chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn set(&mut self, field: &str, v: &str) -> Result<(), String> {
        let num = |v: &str| v.trim().parse::<u64>().map_err(|_| "must be a whole number".to_string());
        let flag = |v: &str| match v.trim() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err("must be true or false".to_string()),
        };
        match field {
            "bootstrap" => self.bootstrap = v.trim().to_string(),
            "namespace" => self.namespace = v.trim().to_string(),
            "instance_id" => self.instance_id = v.trim().to_string(),
            "state_dir" => self.state_dir = PathBuf::from(v),
            "state_write_buffer_mb" => self.state_write_buffer_mb = num(v)?,
            "metrics_addr" => self.metrics_addr = v.trim().to_string(),
            "api_addr" => self.api_addr = v.trim().to_string(),
            "api_tls_cert_file" => self.api_tls_cert_file = v.trim().to_string(),
            "api_tls_key_file" => self.api_tls_key_file = v.trim().to_string(),
            "api_advertised_url" => self.api_advertised_url = v.trim().to_string(),
            "api_peer_ca_file" => self.api_peer_ca_file = v.trim().to_string(),
            "processing_guarantee" => self.processing_guarantee = v.trim().to_string(),
            "commit_interval_ms" => self.commit_interval_ms = num(v)?,
            "max_batch_records" => self.max_batch_records = num(v)? as usize,
            "idle_commit_ms" => self.idle_commit_ms = num(v)?,
            "commit_when_caught_up" => self.commit_when_caught_up = flag(v)?,
            "transaction_timeout_ms" => self.transaction_timeout_ms = num(v)?,
            "session_timeout_ms" => self.session_timeout_ms = num(v)?,
            "drain_deadline_ms" => self.drain_deadline_ms = num(v)?,
            "static_membership" => self.static_membership = flag(v)?,
            "standby_replicas" => self.standby_replicas = flag(v)?,
            "idempotency_retention_hours" => self.idempotency_retention_hours = num(v)?,
            "topology_file" => self.topology_file = v.to_string(),
            "replication_factor" => self.replication_factor = num(v)? as i32,
            "compression" => self.compression = v.trim().to_ascii_lowercase(),
            "log_addresses" => self.log_addresses = flag(v)?,
            "engagement_events" => self.engagement_events = flag(v)?,
            "reconcile_deliveries" => self.reconcile_deliveries = flag(v)?,
            _ => unreachable!("ENV_VARS names only known fields"),
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok(&self.namespace) {
            errors.push(format!("namespace {:?} must be non-empty letters, digits, '.', '_' or '-' (it prefixes topic names)", self.namespace));
        }
        if !name_ok(&self.instance_id) {
            errors.push(format!("instance_id {:?} must be non-empty letters, digits, '.', '_' or '-' (or \"@hostname\": the host's name)", self.instance_id));
        }
        if !self.api_addr.is_empty() && self.api_addr.parse::<SocketAddr>().is_err() {
            errors.push(format!("api_addr {:?} must be IP:PORT (e.g. 127.0.0.1:9465), or empty to disable", self.api_addr));
        }
        if self.api_tls_cert_file.is_empty() != self.api_tls_key_file.is_empty() {
            errors.push("api_tls_cert_file and api_tls_key_file go together: give both (TLS on the API) or neither".into());
        }
        if !self.api_advertised_url.is_empty() && !(self.api_advertised_url.starts_with("http://") || self.api_advertised_url.starts_with("https://")) {
            errors.push(format!("api_advertised_url {:?} must be an http:// or https:// URL (e.g. http://sendgate-1:9465) that the other instances can reach", self.api_advertised_url));
        }
        for (name, path) in [("api_tls_cert_file", &self.api_tls_cert_file), ("api_tls_key_file", &self.api_tls_key_file), ("api_peer_ca_file", &self.api_peer_ca_file)] {
            if !path.is_empty() {
                if let Err(e) = std::fs::metadata(path) {
                    errors.push(format!("{name} {path:?} cannot be read: {e}"));
                }
            }
        }
        if !self.metrics_addr.is_empty() && self.metrics_addr.parse::<SocketAddr>().is_err() {
            errors.push(format!("metrics_addr {:?} must be IP:PORT (e.g. 127.0.0.1:9464), or empty to disable", self.metrics_addr));
        }
        if !["exactly_once", "at_least_once"].contains(&self.processing_guarantee.as_str()) {
            errors.push(format!("processing_guarantee {:?} must be exactly_once or at_least_once", self.processing_guarantee));
        }
        if !(10..=60_000).contains(&self.commit_interval_ms) {
            errors.push(format!("commit_interval_ms {} must be between 10 and 60000", self.commit_interval_ms));
        }
        if self.idle_commit_ms >= self.commit_interval_ms {
            errors.push(format!(
                "idle_commit_ms {} must be shorter than commit_interval_ms {} (or 0 to commit by the interval only)",
                self.idle_commit_ms, self.commit_interval_ms
            ));
        }
        if !(1..=1024).contains(&self.state_write_buffer_mb) {
            errors.push(format!("state_write_buffer_mb {} must be between 1 and 1024 (MiB per stage, two memtables at most)", self.state_write_buffer_mb));
        }
        if !(1..=1_000_000).contains(&self.max_batch_records) {
            errors.push(format!("max_batch_records {} must be between 1 and 1000000", self.max_batch_records));
        }
        if self.transaction_timeout_ms < self.commit_interval_ms * 10 || self.transaction_timeout_ms > 900_000 {
            errors.push(format!("transaction_timeout_ms {} must be at least 10 x commit_interval_ms and at most 900000 (the broker's default transaction.max.timeout.ms)", self.transaction_timeout_ms));
        }
        if self.idempotency_retention_hours == 0 {
            errors.push("idempotency_retention_hours must be at least 1".into());
        }
        if self.replication_factor < 1 {
            errors.push("replication_factor must be at least 1".into());
        }
        // The broker's default group.min.session.timeout.ms and group.max.session.timeout.ms.
        if !(6_000..=1_800_000).contains(&self.session_timeout_ms) {
            errors.push(format!("session_timeout_ms {} must be between 6000 and 1800000 (the broker's default group.min/max.session.timeout.ms)", self.session_timeout_ms));
        }
        if self.drain_deadline_ms < self.commit_interval_ms || self.drain_deadline_ms >= self.session_timeout_ms {
            errors.push(format!(
                "drain_deadline_ms {} must be at least commit_interval_ms ({}) and shorter than session_timeout_ms ({}): a hand-over that outlives the session gives the partitions away while their last transaction is in flight",
                self.drain_deadline_ms, self.commit_interval_ms, self.session_timeout_ms
            ));
        }
        if let Some(v) = self.kafka.get("partition.assignment.strategy") {
            if v.split(',').any(|s| !["range", "roundrobin", "cooperative-sticky"].contains(&s.trim())) {
                errors.push(format!("kafka.partition.assignment.strategy {v:?} must be cooperative-sticky (the default), range or roundrobin"));
            }
        }
        for k in self.kafka.keys() {
            if ["transactional.id", "group.id", "group.instance.id", "session.timeout.ms", "isolation.level", "enable.auto.commit", "bootstrap.servers"].contains(&k.as_str()) {
                errors.push(format!("kafka.{k} is set by sendgate itself and cannot be overridden"));
            }
        }
        if !crate::connection::COMPRESSIONS.contains(&self.compression.as_str()) {
            errors.push(format!("compression {:?} must be one of {} (SENDGATE_COMPRESSION)", self.compression, crate::connection::COMPRESSIONS.join(", ")));
        }
        if self.kafka.contains_key("compression.codec") || self.kafka.contains_key("compression.type") {
            errors.push("kafka.compression.codec/type: set `compression` instead".into());
        }
        errors.extend(self.security.problems(&self.kafka));
        errors.extend(self.schema_registry.problems());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("invalid configuration:\n  - {}", errors.join("\n  - ")))
        }
    }

    /// The settings every Kafka client of the process starts from: the
    /// bootstrap servers, the security settings and the `[kafka]` table. Empty bootstrap servers are refused by the
    /// commands that connect ([`Config::require_bootstrap`]).
    pub fn client_config(&self) -> rdkafka::config::ClientConfig {
        let mut c = rdkafka::config::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        self.security.apply(&mut c);
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        c
    }

    /// [`Config::client_config`] with the output compression: the start of
    /// every producer.
    pub fn producer_config(&self) -> rdkafka::config::ClientConfig {
        let mut c = self.client_config();
        c.set("compression.codec", &self.compression);
        c
    }

    pub fn exactly_once(&self) -> bool {
        self.processing_guarantee != "at_least_once"
    }

    /// Where other instances reach this one's API (`api_advertised_url`, or
    /// derived from `api_addr`).
    pub fn api_url(&self) -> String {
        if !self.api_advertised_url.is_empty() {
            return self.api_advertised_url.trim_end_matches('/').to_string();
        }
        let scheme = if self.api_tls_cert_file.is_empty() { "http" } else { "https" };
        match self.api_addr.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => {
                // Bound on every interface: the host's name is what a peer
                // on the same network resolves (a container's, under compose).
                format!("{scheme}://{}:{}", host_name(), a.port())
            }
            _ => format!("{scheme}://{}", self.api_addr),
        }
    }

    pub fn require_bootstrap(&self) -> Result<&str, String> {
        if self.bootstrap.is_empty() {
            Err("no Kafka configured: set SENDGATE_BOOTSTRAP=host:port (or bootstrap in the config file); scripts/run.sh starts a local broker for you".into())
        } else {
            Ok(&self.bootstrap)
        }
    }

    pub fn topology(&self) -> Result<crate::topology::Topology, String> {
        let text = if self.topology_file.is_empty() {
            crate::topology::DEFAULT_TOPOLOGY.to_string()
        } else {
            std::fs::read_to_string(&self.topology_file).map_err(|e| format!("cannot read topology file {}: {e}", self.topology_file))?
        };
        crate::topology::Topology::parse(&text, &self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_are_all_reported() {
        let cfg = Config { namespace: "no spaces".into(), metrics_addr: "localhost".into(), commit_interval_ms: 1, processing_guarantee: "once".into(), ..Config::default() };
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("namespace") && e.contains("metrics_addr") && e.contains("commit_interval_ms") && e.contains("processing_guarantee"), "{e}");
    }

    #[test]
    fn a_drain_deadline_that_outlives_the_session_is_refused() {
        let cfg = Config { session_timeout_ms: 10_000, drain_deadline_ms: 10_000, ..Config::default() };
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("drain_deadline_ms 10000") && e.contains("shorter than session_timeout_ms"), "{e}");
        Config { drain_deadline_ms: 9_999, ..cfg }.validate().unwrap();
    }

    #[test]
    fn an_idle_commit_as_long_as_the_interval_is_refused() {
        let cfg = Config {
            commit_interval_ms: 50,
            idle_commit_ms: 50,
            ..Config::default()
        };
        let e = cfg.validate().unwrap_err();
        assert!(
            e.contains("idle_commit_ms 50") && e.contains("shorter than commit_interval_ms 50"),
            "{e}"
        );
        for ok in [0, 49] {
            Config {
                idle_commit_ms: ok,
                ..cfg.clone()
            }
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn flags_from_the_environment_must_be_true_or_false() {
        let mut cfg = Config::default();
        cfg.set("standby_replicas", "yes").unwrap();
        assert!(cfg.standby_replicas);
        assert!(cfg.set("static_membership", "maybe").unwrap_err().contains("true or false"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<Config>("bootstrapp = \"x\"").is_err());
    }
}
