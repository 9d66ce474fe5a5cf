//! Input in the Confluent Schema Registry wire format: a zero byte, the
//! writer schema's 4-byte big-endian id, then the Avro datum. This is what
//! the standard Avro serializers of the Confluent clients (Java, Python, Go,
//! .NET) write, so an ordinary producer can publish intents and delivery
//! events without sendgate's single-object framing.
//!
//! The writer schema is fetched by id from a registry that serves the
//! Confluent API (Confluent's, Apicurio's compatibility API, Karapace,
//! Redpanda's), kept in a bounded cache (a schema id names one schema for
//! ever), resolved against sendgate's reader schema, and the record is
//! re-encoded as single object, so everything after the router sees one
//! format. Single-object input keeps working beside it.
//!
//! A registry that answers "no such schema" makes the record a dead letter;
//! a registry that does not answer holds the router back (the task retries
//! from its last commit), as a broker outage does: waiting loses nothing.

use crate::codec::{self, RecordType};
use crate::connection::Secret;
use apache_avro::Schema;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first byte of a record in the registry's wire format.
pub const WIRE_MAGIC: u8 = 0;
const WIRE_HEADER_LEN: usize = 5;

/// The `[schema_registry]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Base URL of the Confluent-compatible API (e.g.
    /// https://psrc-xxxx.confluent.cloud or
    /// http://127.0.0.1:8080/apis/ccompat/v7). Empty: records in the
    /// registry's wire format are dead letters.
    pub url: String,
    /// HTTP Basic user (Confluent Cloud: the API key).
    pub username: String,
    /// A file holding the password (Confluent Cloud: the API secret); or set
    /// SENDGATE_SCHEMA_REGISTRY_PASSWORD.
    pub password_file: String,
    /// PEM file of the CA that signed the registry's certificate; empty uses
    /// the system's trust store.
    pub ca_file: String,
    /// Most writer schemas kept in memory.
    pub cache_size: usize,
    /// Longest a schema request may take (ms).
    pub timeout_ms: u64,
    #[serde(skip)]
    pub password: Secret,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings { url: String::new(), username: String::new(), password_file: String::new(), ca_file: String::new(), cache_size: 1_000, timeout_ms: 5_000, password: Secret::default() }
    }
}

pub const REGISTRY_ENV_VARS: &[(&str, &str)] = &[
    ("SENDGATE_SCHEMA_REGISTRY_URL", "url"),
    ("SENDGATE_SCHEMA_REGISTRY_USERNAME", "username"),
    ("SENDGATE_SCHEMA_REGISTRY_PASSWORD_FILE", "password_file"),
    ("SENDGATE_SCHEMA_REGISTRY_CA_FILE", "ca_file"),
];

impl RegistrySettings {
    pub fn set(&mut self, field: &str, v: &str) -> Result<(), String> {
        let v = v.trim().to_string();
        match field {
            "url" => self.url = v.trim_end_matches('/').to_string(),
            "username" => self.username = v,
            "password_file" => self.password_file = v,
            "ca_file" => self.ca_file = v,
            _ => unreachable!("REGISTRY_ENV_VARS names only known fields"),
        }
        Ok(())
    }

    pub fn load_secrets(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        self.url = self.url.trim_end_matches('/').to_string();
        self.password = match env("SENDGATE_SCHEMA_REGISTRY_PASSWORD") {
            Some(v) => Secret::new(v),
            None if !self.password_file.is_empty() => Secret::new(crate::connection::read_secret_file(&self.password_file, "schema_registry.password")?),
            None => Secret::default(),
        };
        Ok(())
    }

    pub fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.url.is_empty() {
            if !self.username.is_empty() || !self.ca_file.is_empty() {
                errors.push("schema_registry.username or ca_file is set but schema_registry.url is empty (SENDGATE_SCHEMA_REGISTRY_URL)".into());
            }
            return errors;
        }
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            errors.push(format!("schema_registry.url {:?} must be an http(s) URL", self.url));
        }
        if self.username.is_empty() != self.password.is_empty() {
            errors.push("the schema registry's HTTP Basic credentials need both schema_registry.username and the password (SENDGATE_SCHEMA_REGISTRY_PASSWORD or schema_registry.password_file)".into());
        }
        if !self.ca_file.is_empty() {
            if let Err(e) = std::fs::read(&self.ca_file) {
                errors.push(format!("schema_registry.ca_file {:?} cannot be read: {e}", self.ca_file));
            }
        }
        if !(1..=100_000).contains(&self.cache_size) {
            errors.push(format!("schema_registry.cache_size {} must be between 1 and 100000", self.cache_size));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            errors.push(format!("schema_registry.timeout_ms {} must be between 100 and 60000", self.timeout_ms));
        }
        errors
    }
}

/// The schema id of a record in the registry's wire format, if it is one.
pub fn framed_schema_id(payload: &[u8]) -> Option<u32> {
    if payload.len() >= WIRE_HEADER_LEN && payload[0] == WIRE_MAGIC {
        Some(u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]))
    } else {
        None
    }
}

/// Why a registry-framed record could not be converted.
#[derive(Debug)]
pub enum Refusal {
    /// The record itself is wrong (unknown id, a schema that does not
    /// resolve, a datum that does not decode): a dead letter.
    Record(String),
    /// The registry did not answer: try again later.
    Unavailable(String),
}

/// A registry client with a bounded cache of writer schemas.
pub struct SchemaRegistry {
    url: String,
    auth: Option<String>,
    agent: ureq::Agent,
    cache: Mutex<SchemaCache>,
}

/// Writer schemas by id; the oldest entry leaves when it is full.
struct SchemaCache {
    capacity: usize,
    by_id: HashMap<u32, Arc<Schema>>,
    order: VecDeque<u32>,
}

impl SchemaCache {
    fn get(&self, id: u32) -> Option<Arc<Schema>> {
        self.by_id.get(&id).cloned()
    }
    fn insert(&mut self, id: u32, schema: Arc<Schema>) {
        if self.by_id.insert(id, schema).is_none() {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.by_id.remove(&old);
                }
            }
        }
    }
    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

impl SchemaRegistry {
    /// None when no registry is configured.
    pub fn from_settings(s: &RegistrySettings) -> Result<Option<SchemaRegistry>, String> {
        if s.url.is_empty() {
            return Ok(None);
        }
        let mut tls = native_tls::TlsConnector::builder();
        if !s.ca_file.is_empty() {
            let pem = std::fs::read(&s.ca_file).map_err(|e| format!("schema_registry.ca_file {:?}: {e}", s.ca_file))?;
            let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| format!("schema_registry.ca_file {:?} is not a PEM certificate: {e}", s.ca_file))?;
            tls.add_root_certificate(cert);
        }
        let tls = tls.build().map_err(|e| format!("schema registry TLS: {e}"))?;
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_millis(s.timeout_ms)).tls_connector(Arc::new(tls)).build();
        let auth = (!s.username.is_empty()).then(|| {
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.username, s.password.expose())))
        });
        Ok(Some(SchemaRegistry { url: s.url.clone(), auth, agent, cache: Mutex::new(SchemaCache { capacity: s.cache_size, by_id: HashMap::new(), order: VecDeque::new() }) }))
    }

    fn get(&self, path: &str) -> Result<ureq::Response, ureq::Error> {
        let mut req = self.agent.get(&format!("{}{path}", self.url)).set("Accept", "application/vnd.schemaregistry.v1+json, application/json");
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        req.call()
    }

    /// Asks the registry something cheap, so that a wrong URL, credential
    /// or CA fails at start-up rather than at the first framed record.
    pub fn check(&self) -> Result<(), String> {
        match self.get("/subjects") {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, r)) => Err(format!("the schema registry at {} answered {code} to GET /subjects: {}", self.url, short(r.into_string().unwrap_or_default()))),
            Err(e) => Err(format!("cannot reach the schema registry at {}: {e}", self.url)),
        }
    }

    /// The writer schema with this id, from the cache or the registry.
    pub fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, Refusal> {
        if let Some(s) = self.cache.lock().expect("not poisoned").get(id) {
            return Ok(s);
        }
        let body = match self.get(&format!("/schemas/ids/{id}")) {
            Ok(r) => r.into_string().map_err(|e| Refusal::Unavailable(format!("reading the registry's answer for schema id {id}: {e}")))?,
            Err(ureq::Error::Status(404, r)) => {
                return Err(Refusal::Record(format!("schema id {id} is not in the schema registry at {} ({})", self.url, short(r.into_string().unwrap_or_default()))));
            }
            Err(ureq::Error::Status(code, r)) if (400..500).contains(&code) && code != 408 && code != 429 => {
                // 401/403: a credential problem is the deployment's, not the
                // record's; hold on rather than dead-letter every record.
                return Err(Refusal::Unavailable(format!("the schema registry at {} answered {code} for schema id {id}: {}", self.url, short(r.into_string().unwrap_or_default()))));
            }
            Err(e) => return Err(Refusal::Unavailable(format!("schema registry at {}: {e}", self.url))),
        };
        let answer: SchemaById = serde_json::from_str(&body).map_err(|e| Refusal::Unavailable(format!("the schema registry's answer for schema id {id} is not JSON: {e}")))?;
        if let Some(kind) = answer.schema_type.as_deref().filter(|k| !k.eq_ignore_ascii_case("AVRO")) {
            return Err(Refusal::Record(format!("schema id {id} is a {kind} schema; sendgate reads Avro")));
        }
        if !answer.references.is_empty() {
            return Err(Refusal::Record(format!("schema id {id} uses schema references, which sendgate does not resolve: register it self-contained (`sendgate schemas` prints the schemas so)")));
        }
        let schema = Arc::new(Schema::parse_str(&answer.schema).map_err(|e| Refusal::Record(format!("schema id {id} does not parse as Avro: {e}")))?);
        let mut cache = self.cache.lock().expect("not poisoned");
        cache.insert(id, schema.clone());
        metrics::gauge!(crate::metrics::REGISTRY_SCHEMAS_CACHED).set(cache.len() as f64);
        Ok(schema)
    }

    /// The record as single object, if it is in the registry's wire format;
    /// None when it is not (single-object input is passed on untouched).
    pub fn to_single_object(&self, t: RecordType, payload: &[u8]) -> Option<Result<Vec<u8>, Refusal>> {
        let id = framed_schema_id(payload)?;
        Some(self.writer_schema(id).and_then(|writer| {
            codec::reencode_from_writer(t, &writer, &payload[WIRE_HEADER_LEN..]).map_err(|e| Refusal::Record(format!("a record with schema id {id}: {e}")))
        }))
    }
}

/// The first 200 bytes of an error body.
fn short(s: String) -> String {
    crate::model::clip(&s, 200)
}

/// The registry's wire format of a datum: what the Confluent serializers
/// write (the tests frame records with it).
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(WIRE_HEADER_LEN + datum.len());
    out.push(WIRE_MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_recognised_and_single_object_is_not() {
        assert_eq!(framed_schema_id(&frame(7, b"x")), Some(7));
        assert_eq!(framed_schema_id(&[0xC3, 0x01, 0, 0, 0, 0]), None);
        assert_eq!(framed_schema_id(&[0, 0, 0]), None, "too short for an id");
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest() {
        let mut c = SchemaCache { capacity: 2, by_id: HashMap::new(), order: VecDeque::new() };
        let s = Arc::new(Schema::parse_str("\"string\"").unwrap());
        for id in 0..5 {
            c.insert(id, s.clone());
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(4).is_some() && c.get(3).is_some() && c.get(0).is_none());
    }

    #[test]
    fn settings_say_what_is_missing() {
        let s = RegistrySettings { url: "ftp://x".into(), username: "key".into(), ..RegistrySettings::default() };
        let p = s.problems().join("\n");
        assert!(p.contains("http(s) URL") && p.contains("both schema_registry.username and the password"), "{p}");
        assert!(RegistrySettings::default().problems().is_empty());
    }
}
