//! How every Kafka client of sendgate connects: the security protocol, SASL
//! (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER with OIDC client credentials),
//! TLS (a CA file, mutual TLS), the compression of what sendgate writes, and
//! the start-up check that says what is missing or wrong before any task
//! starts.
//!
//! Secrets (the SASL password, the key password, the OIDC client secret)
//! come from the environment or from a file named in the configuration,
//! never from the configuration file itself: a config file is often checked
//! in, a mounted secret is not.

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A secret read from the environment or a file. Never printed.
#[derive(Clone, Default, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "<unset>" } else { "<redacted>" })
    }
}

/// The `[security]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL.
    pub protocol: String,
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (SASL_* only).
    pub sasl_mechanism: String,
    pub sasl_username: String,
    /// A file holding the SASL password (its first line); or set
    /// SENDGATE_KAFKA_SASL_PASSWORD.
    pub sasl_password_file: String,
    /// PEM file of the CA that signed the brokers' certificates; empty uses
    /// the system's trust store (what managed clusters need).
    pub ssl_ca_file: String,
    /// Mutual TLS: this client's certificate and private key (PEM).
    pub ssl_certificate_file: String,
    pub ssl_key_file: String,
    /// A file holding the private key's password; or set
    /// SENDGATE_KAFKA_SSL_KEY_PASSWORD.
    pub ssl_key_password_file: String,
    /// Check that the broker's certificate names the host connected to.
    /// Only a test cluster with certificates for no name turns this off.
    pub ssl_verify_hostname: bool,
    /// OAUTHBEARER with OIDC: the token endpoint and this client's id.
    pub oauth_token_endpoint_url: String,
    pub oauth_client_id: String,
    /// A file holding the client secret; or set SENDGATE_KAFKA_OAUTH_CLIENT_SECRET.
    pub oauth_client_secret_file: String,
    /// Optional scope of the token request.
    pub oauth_scope: String,
    /// SASL extensions, `key=value,key=value` (Confluent Cloud:
    /// `logicalCluster=lkc-...,identityPoolId=pool-...`).
    pub oauth_extensions: String,
    #[serde(skip)]
    pub sasl_password: Secret,
    #[serde(skip)]
    pub ssl_key_password: Secret,
    #[serde(skip)]
    pub oauth_client_secret: Secret,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            protocol: "PLAINTEXT".into(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password_file: String::new(),
            ssl_ca_file: String::new(),
            ssl_certificate_file: String::new(),
            ssl_key_file: String::new(),
            ssl_key_password_file: String::new(),
            ssl_verify_hostname: true,
            oauth_token_endpoint_url: String::new(),
            oauth_client_id: String::new(),
            oauth_client_secret_file: String::new(),
            oauth_scope: String::new(),
            oauth_extensions: String::new(),
            sasl_password: Secret::default(),
            ssl_key_password: Secret::default(),
            oauth_client_secret: Secret::default(),
        }
    }
}

/// Environment variables that set `[security]` fields (after the file).
pub const SECURITY_ENV_VARS: &[(&str, &str)] = &[
    ("SENDGATE_KAFKA_SECURITY_PROTOCOL", "protocol"),
    ("SENDGATE_KAFKA_SASL_MECHANISM", "sasl_mechanism"),
    ("SENDGATE_KAFKA_SASL_USERNAME", "sasl_username"),
    ("SENDGATE_KAFKA_SASL_PASSWORD_FILE", "sasl_password_file"),
    ("SENDGATE_KAFKA_SSL_CA_FILE", "ssl_ca_file"),
    ("SENDGATE_KAFKA_SSL_CERTIFICATE_FILE", "ssl_certificate_file"),
    ("SENDGATE_KAFKA_SSL_KEY_FILE", "ssl_key_file"),
    ("SENDGATE_KAFKA_SSL_KEY_PASSWORD_FILE", "ssl_key_password_file"),
    ("SENDGATE_KAFKA_SSL_VERIFY_HOSTNAME", "ssl_verify_hostname"),
    ("SENDGATE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL", "oauth_token_endpoint_url"),
    ("SENDGATE_KAFKA_OAUTH_CLIENT_ID", "oauth_client_id"),
    ("SENDGATE_KAFKA_OAUTH_CLIENT_SECRET_FILE", "oauth_client_secret_file"),
    ("SENDGATE_KAFKA_OAUTH_SCOPE", "oauth_scope"),
    ("SENDGATE_KAFKA_OAUTH_EXTENSIONS", "oauth_extensions"),
];

/// The secrets, each from its variable or else from its file.
const SECRET_ENV_VARS: &[(&str, &str)] = &[
    ("SENDGATE_KAFKA_SASL_PASSWORD", "sasl_password"),
    ("SENDGATE_KAFKA_SSL_KEY_PASSWORD", "ssl_key_password"),
    ("SENDGATE_KAFKA_OAUTH_CLIENT_SECRET", "oauth_client_secret"),
];

/// librdkafka properties that carry a secret: refused in the file's
/// `[kafka]` table, where they would sit in clear text.
const SECRET_PROPERTIES: &[&str] = &["sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "ssl.keystore.password", "ssl.key.pem", "sasl.oauthbearer.config"];

/// librdkafka properties that `[security]` sets: setting them in `[kafka]`
/// as well would leave two answers to one question.
const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.extensions",
];

const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

impl Security {
    pub fn set(&mut self, field: &str, v: &str) -> Result<(), String> {
        let v = v.trim().to_string();
        match field {
            "protocol" => self.protocol = v,
            "sasl_mechanism" => self.sasl_mechanism = v,
            "sasl_username" => self.sasl_username = v,
            "sasl_password_file" => self.sasl_password_file = v,
            "ssl_ca_file" => self.ssl_ca_file = v,
            "ssl_certificate_file" => self.ssl_certificate_file = v,
            "ssl_key_file" => self.ssl_key_file = v,
            "ssl_key_password_file" => self.ssl_key_password_file = v,
            "ssl_verify_hostname" => {
                self.ssl_verify_hostname = match v.as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err("must be true or false".into()),
                }
            }
            "oauth_token_endpoint_url" => self.oauth_token_endpoint_url = v,
            "oauth_client_id" => self.oauth_client_id = v,
            "oauth_client_secret_file" => self.oauth_client_secret_file = v,
            "oauth_scope" => self.oauth_scope = v,
            "oauth_extensions" => self.oauth_extensions = v,
            _ => unreachable!("SECURITY_ENV_VARS names only known fields"),
        }
        Ok(())
    }

    /// Reads the secrets: each from its environment variable, else from its
    /// file. `env` is the process environment (a parameter for the tests).
    pub fn load_secrets(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        for (var, field) in SECRET_ENV_VARS {
            let file = match *field {
                "sasl_password" => &self.sasl_password_file,
                "ssl_key_password" => &self.ssl_key_password_file,
                _ => &self.oauth_client_secret_file,
            };
            let value = match env(var) {
                Some(v) => v,
                None if !file.is_empty() => read_secret_file(file, field)?,
                None => String::new(),
            };
            let slot = match *field {
                "sasl_password" => &mut self.sasl_password,
                "ssl_key_password" => &mut self.ssl_key_password,
                _ => &mut self.oauth_client_secret,
            };
            *slot = Secret(value);
        }
        self.protocol = self.protocol.to_ascii_uppercase();
        self.sasl_mechanism = self.sasl_mechanism.to_ascii_uppercase();
        Ok(())
    }

    pub fn is_sasl(&self) -> bool {
        self.protocol.starts_with("SASL_")
    }

    pub fn is_tls(&self) -> bool {
        self.protocol.ends_with("SSL")
    }

    /// Every problem at once, each saying what to set.
    pub fn problems(&self, kafka: &std::collections::BTreeMap<String, String>) -> Vec<String> {
        let mut errors = Vec::new();
        if !PROTOCOLS.contains(&self.protocol.as_str()) {
            errors.push(format!("security.protocol {:?} must be one of {} (SENDGATE_KAFKA_SECURITY_PROTOCOL)", self.protocol, PROTOCOLS.join(", ")));
        }
        let mech = self.sasl_mechanism.as_str();
        if self.is_sasl() {
            if mech.is_empty() {
                errors.push(format!("security.protocol {} needs security.sasl_mechanism: one of {} (SENDGATE_KAFKA_SASL_MECHANISM)", self.protocol, MECHANISMS.join(", ")));
            } else if !MECHANISMS.contains(&mech) {
                errors.push(format!("security.sasl_mechanism {mech:?} must be one of {} (GSSAPI/Kerberos is not built in)", MECHANISMS.join(", ")));
            }
        } else if !mech.is_empty() {
            errors.push(format!("security.sasl_mechanism {mech} is set but security.protocol is {}: use SASL_SSL (or SASL_PLAINTEXT)", self.protocol));
        }
        if self.is_sasl() && ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mech) {
            if self.sasl_username.is_empty() {
                errors.push(format!("SASL/{mech} needs a user name: set security.sasl_username or SENDGATE_KAFKA_SASL_USERNAME"));
            }
            if self.sasl_password.is_empty() {
                errors.push(format!("SASL/{mech} needs a password: set SENDGATE_KAFKA_SASL_PASSWORD or security.sasl_password_file (never the config file itself)"));
            }
        }
        if self.is_sasl() && mech == "OAUTHBEARER" {
            for (value, what) in [(&self.oauth_token_endpoint_url, "security.oauth_token_endpoint_url (SENDGATE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL)"), (&self.oauth_client_id, "security.oauth_client_id (SENDGATE_KAFKA_OAUTH_CLIENT_ID)")] {
                if value.is_empty() {
                    errors.push(format!("SASL/OAUTHBEARER with OIDC needs {what}"));
                }
            }
            if self.oauth_client_secret.is_empty() {
                errors.push("SASL/OAUTHBEARER with OIDC needs the client secret: set SENDGATE_KAFKA_OAUTH_CLIENT_SECRET or security.oauth_client_secret_file".into());
            }
            if !self.oauth_token_endpoint_url.is_empty() && !self.oauth_token_endpoint_url.starts_with("https://") && !self.oauth_token_endpoint_url.starts_with("http://") {
                errors.push(format!("security.oauth_token_endpoint_url {:?} must be an http(s) URL", self.oauth_token_endpoint_url));
            }
        }
        let tls_files = [("ssl_ca_file", &self.ssl_ca_file), ("ssl_certificate_file", &self.ssl_certificate_file), ("ssl_key_file", &self.ssl_key_file)];
        for (name, path) in tls_files {
            if path.is_empty() {
                continue;
            }
            if !self.is_tls() {
                errors.push(format!("security.{name} is set but security.protocol is {}: TLS files need SSL or SASL_SSL", self.protocol));
            }
            if let Err(e) = std::fs::File::open(path) {
                errors.push(format!("security.{name} {path:?} cannot be read: {e}"));
            }
        }
        if self.ssl_certificate_file.is_empty() != self.ssl_key_file.is_empty() {
            errors.push("mutual TLS needs both security.ssl_certificate_file and security.ssl_key_file".into());
        }
        for k in kafka.keys() {
            if SECRET_PROPERTIES.contains(&k.as_str()) {
                errors.push(format!("kafka.{k} holds a secret and may not be written in the config file: use the [security] settings and their SENDGATE_KAFKA_* variables or secret files"));
            } else if SECURITY_PROPERTIES.contains(&k.as_str()) {
                errors.push(format!("kafka.{k} is set by the [security] section; set it there instead"));
            }
        }
        errors
    }

    /// The librdkafka properties for this connection.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", self.protocol.to_ascii_lowercase());
        if self.is_sasl() {
            c.set("sasl.mechanism", &self.sasl_mechanism);
            if self.sasl_mechanism == "OAUTHBEARER" {
                c.set("sasl.oauthbearer.method", "oidc")
                    .set("sasl.oauthbearer.token.endpoint.url", &self.oauth_token_endpoint_url)
                    .set("sasl.oauthbearer.client.id", &self.oauth_client_id)
                    .set("sasl.oauthbearer.client.secret", self.oauth_client_secret.expose());
                if !self.oauth_scope.is_empty() {
                    c.set("sasl.oauthbearer.scope", &self.oauth_scope);
                }
                if !self.oauth_extensions.is_empty() {
                    c.set("sasl.oauthbearer.extensions", &self.oauth_extensions);
                }
            } else {
                c.set("sasl.username", &self.sasl_username).set("sasl.password", self.sasl_password.expose());
            }
        }
        if self.is_tls() {
            if !self.ssl_ca_file.is_empty() {
                c.set("ssl.ca.location", &self.ssl_ca_file);
            }
            if !self.ssl_certificate_file.is_empty() {
                c.set("ssl.certificate.location", &self.ssl_certificate_file).set("ssl.key.location", &self.ssl_key_file);
            }
            if !self.ssl_key_password.is_empty() {
                c.set("ssl.key.password", self.ssl_key_password.expose());
            }
            c.set("ssl.endpoint.identification.algorithm", if self.ssl_verify_hostname { "https" } else { "none" });
        }
    }

    /// One line for the logs: what is used, no secret.
    pub fn describe(&self) -> String {
        let mut s = self.protocol.clone();
        if self.is_sasl() {
            s.push_str(&format!(" {}", self.sasl_mechanism));
            if self.sasl_mechanism == "OAUTHBEARER" {
                s.push_str(&format!(" (OIDC client {} at {})", self.oauth_client_id, self.oauth_token_endpoint_url));
            } else {
                s.push_str(&format!(" as {}", self.sasl_username));
            }
        }
        if !self.ssl_certificate_file.is_empty() {
            s.push_str(" with a client certificate");
        }
        s
    }
}

/// A secret file's first line, without its line ending.
pub fn read_secret_file(path: &str, what: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("security.{what}_file {path:?} cannot be read: {e}"))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(format!("security.{what}_file {path:?} is empty"));
    }
    Ok(line)
}

/// The compression of every record sendgate writes: none, gzip, snappy,
/// lz4 or zstd. Input in any of them is always read.
pub const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// The librdkafka features sendgate relies on: every codec Kafka has, TLS,
/// each SASL mechanism it offers, and OIDC token requests.
pub const REQUIRED_FEATURES: [&str; 9] = ["gzip", "snappy", "lz4", "zstd", "ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer", "oidc"];

/// What the linked librdkafka was built with (its `builtin.features`).
pub fn builtin_features() -> Vec<String> {
    use rdkafka::bindings as rd;
    let mut buf = vec![0u8; 1024];
    let mut size = buf.len();
    // SAFETY: a fresh configuration object, read into a buffer of the given
    // size and destroyed before returning.
    let text = unsafe {
        let conf = rd::rd_kafka_conf_new();
        let res = rd::rd_kafka_conf_get(conf, c"builtin.features".as_ptr(), buf.as_mut_ptr().cast(), &mut size);
        rd::rd_kafka_conf_destroy(conf);
        if res != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
            return Vec::new();
        }
        String::from_utf8_lossy(&buf[..size.saturating_sub(1)]).into_owned()
    };
    text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// The required features the linked librdkafka lacks.
pub fn missing_features() -> Vec<&'static str> {
    let have = builtin_features();
    REQUIRED_FEATURES.iter().copied().filter(|f| !have.iter().any(|h| h == f)).collect()
}

/// Errors librdkafka reports while it connects, kept for the check.
#[derive(Default)]
struct ErrorLog(Mutex<Vec<(RDKafkaErrorCode, String)>>);

struct CheckContext {
    errors: ErrorLog,
}

impl ClientContext for CheckContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        let mut e = self.errors.0.lock().expect("not poisoned");
        if e.len() < 32 {
            e.push((code, reason.to_string()));
        }
    }
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
}

/// A producer is the probe: its poll serves the client's error events to
/// [`ClientContext::error`] with their reason text (a consumer's poll would
/// hand them over as bare error codes).
impl ProducerContext for CheckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

/// What the connection check found.
#[derive(Debug)]
pub struct ConnectionReport {
    pub brokers: usize,
    pub topics: usize,
    pub took: Duration,
}

/// Why the connection check failed: the cluster said no (waiting will not
/// help), or it did not answer in time (it may still be starting).
#[derive(Debug)]
pub enum ConnectionError {
    Refused(String),
    Unreachable(String),
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::Refused(m) | ConnectionError::Unreachable(m) => f.write_str(m),
        }
    }
}

/// Connects with `client` (the process's settings) and reads the cluster's
/// metadata. A refused credential or a failed TLS handshake ends the check at
/// once with a message that says what to fix; an unreachable cluster ends it
/// after `timeout`.
pub fn check_connection(client: &ClientConfig, describe: &str, timeout: Duration) -> Result<ConnectionReport, ConnectionError> {
    let started = Instant::now();
    let bootstrap = client.get("bootstrap.servers").unwrap_or("").to_string();
    let probe: BaseProducer<CheckContext> =
        client.clone().create_with_context(CheckContext { errors: ErrorLog::default() }).map_err(|e| ConnectionError::Refused(format!("the Kafka client settings are refused: {e}")))?;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let attempt = probe.client().fetch_metadata(None, left.clamp(Duration::from_millis(1), Duration::from_millis(500)));
        // Serve the error events raised meanwhile.
        probe.poll(Duration::from_millis(50));
        let errors = std::mem::take(&mut *probe.context().errors.0.lock().expect("not poisoned"));
        if let Some(msg) = classify(&errors, &bootstrap, describe) {
            return Err(ConnectionError::Refused(msg));
        }
        match attempt {
            Ok(md) if !md.brokers().is_empty() => {
                return Ok(ConnectionReport { brokers: md.brokers().len(), topics: md.topics().len(), took: started.elapsed() });
            }
            _ if started.elapsed() < timeout => continue,
            Ok(_) => return Err(ConnectionError::Unreachable(format!("Kafka at {bootstrap} ({describe}) answered with no brokers within {timeout:?}"))),
            Err(e) => {
                let last = errors.last().map(|(_, r)| format!(" (last client error: {r})")).unwrap_or_default();
                return Err(ConnectionError::Unreachable(format!("cannot reach Kafka at {bootstrap} ({describe}) within {timeout:?}: {e}{last}")));
            }
        }
    }
}

/// A refused credential or a TLS failure: a message that says what to fix.
fn classify(errors: &[(RDKafkaErrorCode, String)], bootstrap: &str, describe: &str) -> Option<String> {
    for (code, reason) in errors {
        match code {
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
                return Some(format!(
                    "Kafka at {bootstrap} refused the credentials ({describe}): {reason}. Check the user and password (SENDGATE_KAFKA_SASL_USERNAME, SENDGATE_KAFKA_SASL_PASSWORD) or the OIDC client (SENDGATE_KAFKA_OAUTH_*)"
                ));
            }
            RDKafkaErrorCode::SSL => {
                return Some(format!("the TLS handshake with Kafka at {bootstrap} failed ({describe}): {reason}. Check security.ssl_ca_file (the brokers' CA), the client certificate and key, and the protocol"));
            }
            RDKafkaErrorCode::UnsupportedSASLMechanism | RDKafkaErrorCode::IllegalSASLState => {
                return Some(format!("Kafka at {bootstrap} does not accept SASL mechanism {describe}: {reason}. Check security.sasl_mechanism against the listener"));
            }
            _ => {}
        }
        // A TLS client meeting a plaintext listener, or the reverse, shows
        // up as a transport failure with these words.
        if reason.contains("SSL handshake failed") || reason.contains("certificate verify failed") || reason.contains("alert bad certificate") || reason.contains("alert certificate required") {
            return Some(format!("the TLS handshake with Kafka at {bootstrap} failed ({describe}): {reason}. Check security.ssl_ca_file, the client certificate and key (mutual TLS), and the protocol"));
        }
        if reason.contains("Authentication failed") || reason.contains("SASL authentication error") {
            return Some(format!("Kafka at {bootstrap} refused the credentials ({describe}): {reason}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn the_linked_librdkafka_has_every_codec_tls_sasl_and_oidc() {
        assert!(missing_features().is_empty(), "librdkafka lacks {:?}; it reports {:?}", missing_features(), builtin_features());
    }

    #[test]
    fn scram_needs_a_user_and_a_password_from_outside_the_file() {
        let mut s = Security { protocol: "sasl_ssl".into(), sasl_mechanism: "scram-sha-512".into(), ..Security::default() };
        s.load_secrets(&env(&[])).unwrap();
        let p = s.problems(&BTreeMap::new()).join("\n");
        assert!(p.contains("needs a user name") && p.contains("SENDGATE_KAFKA_SASL_PASSWORD"), "{p}");
        s.sasl_username = "app".into();
        s.load_secrets(&env(&[("SENDGATE_KAFKA_SASL_PASSWORD", "pw")])).unwrap();
        assert!(s.problems(&BTreeMap::new()).is_empty());
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("pw"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert!(!format!("{s:?}").contains("pw\""), "the password is never printed: {s:?}");
    }

    #[test]
    fn a_secret_file_is_read_and_the_variable_wins() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let mut s = Security { sasl_password_file: f.display().to_string(), ..Security::default() };
        s.load_secrets(&env(&[])).unwrap();
        assert_eq!(s.sasl_password.expose(), "from-file");
        s.load_secrets(&env(&[("SENDGATE_KAFKA_SASL_PASSWORD", "from-env")])).unwrap();
        assert_eq!(s.sasl_password.expose(), "from-env");
        let mut missing = Security { sasl_password_file: dir.path().join("nope").display().to_string(), ..Security::default() };
        assert!(missing.load_secrets(&env(&[])).unwrap_err().contains("cannot be read"));
    }

    #[test]
    fn secrets_in_the_kafka_table_and_contradictions_are_refused() {
        let s = Security::default();
        let kafka: BTreeMap<String, String> = [("sasl.password".to_string(), "x".to_string()), ("security.protocol".to_string(), "ssl".to_string())].into();
        let p = s.problems(&kafka).join("\n");
        assert!(p.contains("kafka.sasl.password holds a secret") && p.contains("kafka.security.protocol is set by the [security] section"), "{p}");
        let s = Security { sasl_mechanism: "PLAIN".into(), ssl_ca_file: "/nonexistent/ca.pem".into(), ..Security::default() };
        let p = s.problems(&BTreeMap::new()).join("\n");
        assert!(p.contains("use SASL_SSL") && p.contains("TLS files need SSL") && p.contains("cannot be read"), "{p}");
    }

    #[test]
    fn oidc_needs_its_endpoint_client_and_secret() {
        let mut s = Security { protocol: "SASL_SSL".into(), sasl_mechanism: "OAUTHBEARER".into(), ..Security::default() };
        s.load_secrets(&env(&[])).unwrap();
        let p = s.problems(&BTreeMap::new()).join("\n");
        assert!(p.contains("oauth_token_endpoint_url") && p.contains("oauth_client_id") && p.contains("SENDGATE_KAFKA_OAUTH_CLIENT_SECRET"), "{p}");
    }
}
