//! Ordinary producers and real clusters, through the real broker: every
//! compression codec from the standard Java client, the schema registry's
//! wire format from the standard Python serializer against a real registry,
//! records that must not wedge a task (an oversized intent, a batch that does
//! not decompress), and the secured listeners (SASL_SSL with each mechanism,
//! mutual TLS) in the shapes of the documented connection examples.

use crate::common::*;
use sendgate::codec::{self, RecordType};
use sendgate::model::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

/// Every record batch of a partition's log segments on the broker's disk
/// but the transaction markers: (position in the file, base offset,
/// compression codec id).
fn batches(segment: &Path) -> Vec<(usize, i64, u8)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 61 <= bytes.len() {
        let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let attributes = u16::from_be_bytes(bytes[pos + 21..pos + 23].try_into().unwrap());
        // Bit 5: a control batch (a commit or abort marker), never compressed.
        if attributes & 0x20 == 0 {
            out.push((pos, base, (attributes & 0x7) as u8));
        }
        pos += 12 + len;
    }
    out
}

/// The log segments of a topic's partitions with data, on the test broker's disk.
fn segments(topic: &str) -> Vec<PathBuf> {
    let data = PathBuf::from(env_var("SENDGATE_TEST_KAFKA_DATA_DIR")).join("data");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name.rsplit_once('-').map(|(t, p)| t == topic && p.parse::<u32>().is_ok()).unwrap_or(false) {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "log") && f.metadata().unwrap().len() > 0 {
                    out.push(f);
                }
            }
        }
    }
    out
}

/// Publishes records with the standard Java client and a compression codec.
fn java_produce(bootstrap: &str, topic: &str, codec_name: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    let libs = env_var("SENDGATE_TEST_KAFKA_LIBS");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/Produce.java");
    let log4j = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka/tools-log4j2.xml");
    let mut child = Command::new("java")
        .arg("-Xmx256m")
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{libs}/*"))
        .arg(&source)
        .args([bootstrap, topic, codec_name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java must be installed (scripts/setup.sh checks it)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (k, v) in records {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            writeln!(stdin, "{}\t{}", hex(k), hex(v)).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Java producer failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), records.len().to_string());
}

fn encoded(intents: &[SendIntent]) -> Vec<(Vec<u8>, Vec<u8>)> {
    intents.iter().map(|i| (i.sender.clone().into_bytes(), codec::encode(RecordType::SendIntent, i).unwrap())).collect()
}

#[test]
fn intents_compressed_by_the_java_client_with_every_codec_are_decided_and_outputs_use_the_configured_codec() {
    let mut env = TestEnv::with("codecs", |_| {}, vec![("SENDGATE_COMPRESSION".into(), "zstd".into())]);
    env.start();
    env.apply_policy(OPEN_POLICY);
    let topic = env.topic("intents");
    let mut ids = Vec::new();
    for codec_name in ["gzip", "snappy", "lz4", "zstd"] {
        let intents: Vec<SendIntent> = (0..5).map(|i| intent(&format!("{codec_name}-{i}"), &format!("{codec_name}@acme.com"), &format!("r{i}@corp.example"))).collect();
        ids.extend(intents.iter().map(|i| i.intent_id.clone()));
        java_produce(&env.cfg.bootstrap, &topic, codec_name, &encoded(&intents));
    }
    // The broker kept each batch as the producer compressed it.
    let codecs: std::collections::BTreeSet<u8> = segments(&topic).iter().flat_map(|s| batches(s)).map(|(_, _, c)| c).collect();
    assert_eq!(codecs, [1, 2, 3, 4].into_iter().collect(), "gzip, snappy, lz4 and zstd batches on the intents topic");
    let decisions = env.await_decisions(&ids, WAIT);
    assert_eq!(decisions.len(), 20);
    assert!(env.all_dead_letters().is_empty(), "nothing refused: {:?}", env.all_dead_letters());
    // What sendgate wrote is compressed as configured (zstd = 4).
    let out: Vec<u8> = segments(&env.topic("decisions")).iter().flat_map(|s| batches(s)).map(|(_, _, c)| c).collect();
    assert!(!out.is_empty() && out.iter().all(|c| *c == 4), "decision batches compressed with zstd: {out:?}");
}

#[test]
fn an_intent_of_950_kb_and_fields_over_their_limits_are_dead_letters_and_the_next_intent_is_decided() {
    let mut env = TestEnv::new("oversize");
    env.start();
    env.apply_policy(OPEN_POLICY);
    let mut huge = intent("huge-1", "big@acme.com", "r@corp.example");
    huge.template_id = Some("t".repeat(950_000));
    let mut long_template = intent("long-1", "big@acme.com", "r@corp.example");
    long_template.template_id = Some("t".repeat(300));
    let next = intent("after-1", "big@acme.com", "r2@corp.example");
    // One partition (the same sender), in this order: the intents behind
    // the poison records must not wait.
    env.send_intents(&[huge, long_template, next]);
    let decisions = env.await_decisions(&["after-1".to_string()], WAIT);
    assert_eq!(decisions.len(), 1);
    let dls = env.all_dead_letters();
    let big = dls.iter().find(|d| d.reason.contains("at most 65536")).unwrap_or_else(|| panic!("the 950 KB intent is a dead letter: {dls:?}"));
    assert_eq!(big.value.as_ref().map(Vec::len), Some(sendgate::runtime::task::DEAD_LETTER_VALUE_MAX), "the original bytes cut to the stated size");
    assert!(big.original_size.unwrap() > 950_000, "with the original size");
    let long = dls.iter().find(|d| d.reason.contains("template_id is 300 bytes; at most 256")).unwrap_or_else(|| panic!("{dls:?}"));
    assert_eq!(long.original_size, None, "a small record is kept whole");
    assert!(env.all_decisions().iter().all(|d| d.intent_id == "after-1"), "no decision for a refused intent");
}

#[test]
fn a_batch_that_does_not_decompress_is_a_dead_letter_and_the_intents_behind_it_are_decided() {
    let mut env = TestEnv::new("corrupt");
    let topic = env.topic("intents");
    let poisoned: Vec<SendIntent> = (0..3).map(|i| intent(&format!("gz-{i}"), "zip@acme.com", &format!("r{i}@corp.example"))).collect();
    java_produce(&env.cfg.bootstrap, &topic, "gzip", &encoded(&poisoned));
    // Damage the compressed records of that one gzip batch on the broker's
    // disk (as a bad disk or a buggy producer would): the broker serves the
    // bytes as they are, and the client cannot inflate them.
    let segs = segments(&topic);
    assert_eq!(segs.len(), 1, "one partition holds the batch: {segs:?}");
    let found = batches(&segs[0]);
    assert_eq!(found.len(), 1, "{found:?}");
    let (pos, base, codec_id) = found[0];
    assert_eq!((base, codec_id), (0, 1), "a gzip batch at offset 0");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&segs[0]).unwrap();
        // Past the 61-byte batch header and the 10-byte gzip header.
        f.write_all_at(&[0xFF; 24], (pos + 61 + 12) as u64).unwrap();
    }
    let after: Vec<SendIntent> = (0..2).map(|i| intent(&format!("after-{i}"), "zip@acme.com", &format!("s{i}@corp.example"))).collect();
    java_produce(&env.cfg.bootstrap, &topic, "none", &encoded(&after));
    env.start();
    env.apply_policy(OPEN_POLICY);
    let decisions = env.await_decisions(&["after-0".to_string(), "after-1".to_string()], WAIT);
    assert_eq!(decisions.len(), 2);
    let dls = env.all_dead_letters();
    let dl = dls.iter().find(|d| d.reason.contains("could not be read by the Kafka client")).unwrap_or_else(|| panic!("the unreadable batch is a dead letter: {dls:?}\n{}", env.log_tail()));
    assert_eq!((dl.topic.as_str(), dl.offset), (topic.as_str(), 0));
    assert!(dl.reason.contains("offsets 0 to 2"), "the whole batch is named: {}", dl.reason);
    assert!(env.all_decisions().iter().all(|d| d.intent_id.starts_with("after-")));
}

/// The Confluent-compatible API of the registry that scripts/test.sh starts.
fn registry_url() -> String {
    env_var("SENDGATE_TEST_REGISTRY_URL")
}

/// Registers `schema` under `subject`; its id.
fn register(subject: &str, schema: &str) -> u32 {
    let body = serde_json::json!({ "schema": schema }).to_string();
    let resp = ureq::post(&format!("{}/subjects/{subject}/versions", registry_url()))
        .set("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send_string(&body)
        .unwrap_or_else(|e| panic!("registering a schema: {e}"));
    let v: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    v["id"].as_u64().unwrap_or_else(|| panic!("no id in {v}")) as u32
}

#[test]
fn intents_from_the_confluent_avro_serializer_are_decided_and_unknown_or_unresolvable_schemas_are_dead_letters() {
    let url = registry_url();
    let mut env = TestEnv::with("registry", |c| c.schema_registry.url = url.clone(), vec![("SENDGATE_SCHEMA_REGISTRY_URL".into(), url.clone())]);
    env.start();
    env.apply_policy(OPEN_POLICY);
    let topic = env.topic("intents");
    let schema = codec::standalone_schemas().unwrap().into_iter().find(|(n, _)| *n == "send_intent.avsc").unwrap().1;
    let schema_file = env.dir.path().join("send_intent.avsc");
    std::fs::write(&schema_file, &schema).unwrap();

    // An ordinary Python app: the standard serializer registers the schema
    // and writes the wire format.
    let lines: String = (0..5)
        .map(|i| serde_json::json!({"intent_id": format!("py-{i}"), "tenant": "acme", "sender": "py@acme.com", "recipient": format!("r{i}@corp.example"),
            "class": "OUTBOUND", "template_id": null, "content_hash": null, "thread_id": null, "requires_approval": false, "requested_at_ms": 0}).to_string() + "\n")
        .collect();
    let mut child = Command::new(env_var("SENDGATE_TEST_PYTHON"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/registry_produce.py"))
        .args([env.cfg.bootstrap.as_str(), topic.as_str(), url.as_str()])
        .arg(&schema_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python producer failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let schema_id: u32 = stdout.lines().next().unwrap().trim().parse().unwrap();

    // A schema id the registry does not know, and a registered writer schema
    // that does not resolve against sendgate's (intent_id as a number).
    let unknown = sendgate::registry::frame(2_000_000_000, b"\x02x");
    let wrong_schema = r#"{"type":"record","name":"SendIntent","namespace":"sendgate","fields":[{"name":"intent_id","type":"long"}]}"#;
    let wrong_id = register(&format!("{topic}-wrong-value"), wrong_schema);
    let wrong_datum = apache_avro::to_avro_datum(&apache_avro::Schema::parse_str(wrong_schema).unwrap(), apache_avro::types::Value::Record(vec![("intent_id".into(), apache_avro::types::Value::Long(7))])).unwrap();
    let wrong = sendgate::registry::frame(wrong_id, &wrong_datum);
    // And single-object input beside it, as before.
    let plain = intent("so-1", "py@acme.com", "so@corp.example");
    env.send_raw("intents", vec![(b"py@acme.com".to_vec(), Some(unknown)), (b"py@acme.com".to_vec(), Some(wrong)), (b"py@acme.com".to_vec(), Some(codec::encode(RecordType::SendIntent, &plain).unwrap()))]);

    let mut ids: Vec<String> = (0..5).map(|i| format!("py-{i}")).collect();
    ids.push("so-1".into());
    let decisions = env.await_decisions(&ids, WAIT);
    assert_eq!(decisions["py-3"].recipient, "r3@corp.example", "the registry-framed intent decoded field by field");
    let dls = env.all_dead_letters();
    assert_eq!(dls.len(), 2, "{dls:?}");
    assert!(dls.iter().any(|d| d.reason.contains("schema id 2000000000 is not in the schema registry")), "{dls:?}");
    assert!(dls.iter().any(|d| d.reason.contains(&format!("schema id {wrong_id}")) && d.reason.contains("SendIntent")), "{dls:?}");
    assert_ne!(schema_id, wrong_id);
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/connect").join(name).display().to_string()
}

/// `sendgate config check --connect` with a documented example and `env`;
/// (success, output, seconds).
fn config_check(example_file: &str, env: &[(&str, String)]) -> (bool, String, f64) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sendgate"))
        .args(["config", "check", "--connect", "--timeout-secs", "20"])
        .env("SENDGATE_CONFIG", example(example_file))
        .env("SENDGATE_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, started.elapsed().as_secs_f64())
}

/// The secured client settings of the test broker as SENDGATE_* variables,
/// for the example files' shapes.
fn scram_env(sec: &Secure, password: &str) -> Vec<(String, String)> {
    vec![
        ("SENDGATE_CONFIG".into(), example("msk-scram.toml")),
        ("SENDGATE_REPLICATION_FACTOR".into(), "1".into()),
        ("SENDGATE_KAFKA_SASL_USERNAME".into(), sec.get("KAFKA_SCRAM_USERNAME")),
        ("SENDGATE_KAFKA_SASL_PASSWORD".into(), password.into()),
        ("SENDGATE_KAFKA_SSL_CA_FILE".into(), sec.get("KAFKA_SSL_CA_LOCATION")),
    ]
}

fn scram_security(sec: &Secure) -> sendgate::connection::Security {
    sec.scram_security(&sec.get("KAFKA_SCRAM_USERNAME"), &sec.get("KAFKA_SCRAM_PASSWORD"))
}

#[test]
fn intents_are_decided_through_a_sasl_ssl_listener_with_scram_in_the_msk_example_shape() {
    let sec = Secure::load();
    let bootstrap = sec.get("KAFKA_SASL_SSL_BOOTSTRAP");
    let security = scram_security(&sec);
    let mut env = TestEnv::with(
        "sasl",
        |c| {
            c.bootstrap = bootstrap.clone();
            c.security = security.clone();
        },
        scram_env(&sec, &sec.get("KAFKA_SCRAM_PASSWORD")),
    );
    env.start();
    env.apply_policy(OPEN_POLICY);
    let intents: Vec<SendIntent> = (0..10).map(|i| intent(&format!("tls-{i}"), "secure@acme.com", &format!("r{i}@corp.example"))).collect();
    env.send_intents(&intents);
    let ids: Vec<String> = intents.iter().map(|i| i.intent_id.clone()).collect();
    let decisions = env.await_decisions(&ids, WAIT);
    assert_eq!(decisions.len(), 10);
    let how = format!("SASL_SSL SCRAM-SHA-512 as {}", sec.get("KAFKA_SCRAM_USERNAME"));
    assert!(env.log_text().contains(&how), "the processor says how it connected ({how}): {}", env.log_tail());
}

#[test]
fn every_documented_connection_shape_connects_to_the_secured_listeners() {
    let sec = Secure::load();
    let sasl = sec.get("KAFKA_SASL_SSL_BOOTSTRAP");
    let ca = sec.get("KAFKA_SSL_CA_LOCATION");
    let shapes: Vec<(&str, &str, Vec<(&str, String)>)> = vec![
        (
            "Confluent Cloud: SASL_SSL with PLAIN, and the schema registry",
            "confluent-cloud.toml",
            vec![
                ("SENDGATE_BOOTSTRAP", sasl.clone()),
                ("SENDGATE_KAFKA_SASL_USERNAME", sec.get("KAFKA_PLAIN_USERNAME")),
                ("SENDGATE_KAFKA_SASL_PASSWORD", sec.get("KAFKA_PLAIN_PASSWORD")),
                ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone()),
                ("SENDGATE_SCHEMA_REGISTRY_URL", registry_url()),
                ("SENDGATE_SCHEMA_REGISTRY_PASSWORD", "unused-by-the-test-registry".into()),
            ],
        ),
        (
            "MSK: SASL_SSL with SCRAM-SHA-512",
            "msk-scram.toml",
            vec![("SENDGATE_BOOTSTRAP", sasl.clone()), ("SENDGATE_KAFKA_SASL_USERNAME", sec.get("KAFKA_SCRAM_USERNAME")), ("SENDGATE_KAFKA_SASL_PASSWORD", sec.get("KAFKA_SCRAM_PASSWORD")), ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone())],
        ),
        (
            "SCRAM-SHA-256",
            "msk-scram.toml",
            vec![
                ("SENDGATE_BOOTSTRAP", sasl.clone()),
                ("SENDGATE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256".into()),
                ("SENDGATE_KAFKA_SASL_USERNAME", sec.get("KAFKA_SCRAM_USERNAME")),
                ("SENDGATE_KAFKA_SASL_PASSWORD", sec.get("KAFKA_SCRAM_PASSWORD")),
                ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone()),
            ],
        ),
        (
            "OAUTHBEARER with OIDC client credentials",
            "oauth-oidc.toml",
            vec![
                ("SENDGATE_BOOTSTRAP", sasl.clone()),
                ("SENDGATE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL", sec.get("KAFKA_OIDC_TOKEN_ENDPOINT_URL")),
                ("SENDGATE_KAFKA_OAUTH_CLIENT_ID", sec.get("KAFKA_OIDC_CLIENT_ID")),
                ("SENDGATE_KAFKA_OAUTH_CLIENT_SECRET", sec.get("KAFKA_OIDC_CLIENT_SECRET")),
                ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone()),
            ],
        ),
        (
            "self-managed, mutual TLS",
            "self-managed-mtls.toml",
            vec![
                ("SENDGATE_BOOTSTRAP", sec.get("KAFKA_SSL_BOOTSTRAP")),
                ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone()),
                ("SENDGATE_KAFKA_SSL_CERTIFICATE_FILE", sec.get("KAFKA_SSL_CERTIFICATE_LOCATION")),
                ("SENDGATE_KAFKA_SSL_KEY_FILE", sec.get("KAFKA_SSL_KEY_LOCATION")),
            ],
        ),
    ];
    for (what, file, env) in shapes {
        let (ok, out, _) = config_check(file, &env);
        assert!(ok && out.contains("connected:"), "{what} ({file}) did not connect:\n{out}");
    }
}

#[test]
fn a_wrong_password_a_missing_client_certificate_or_an_unknown_ca_is_a_clear_error_at_once() {
    let sec = Secure::load();
    let sasl = sec.get("KAFKA_SASL_SSL_BOOTSTRAP");
    let ca = sec.get("KAFKA_SSL_CA_LOCATION");
    let cases: Vec<(&str, &str, Vec<(&str, String)>, &str)> = vec![
        (
            "a wrong SCRAM password",
            "msk-scram.toml",
            vec![("SENDGATE_BOOTSTRAP", sasl.clone()), ("SENDGATE_KAFKA_SASL_USERNAME", sec.get("KAFKA_SCRAM_USERNAME")), ("SENDGATE_KAFKA_SASL_PASSWORD", "not-the-password".into()), ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone())],
            "refused the credentials",
        ),
        (
            "a wrong OIDC client secret",
            "oauth-oidc.toml",
            vec![
                ("SENDGATE_BOOTSTRAP", sasl.clone()),
                ("SENDGATE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL", sec.get("KAFKA_OIDC_TOKEN_ENDPOINT_URL")),
                ("SENDGATE_KAFKA_OAUTH_CLIENT_ID", sec.get("KAFKA_OIDC_CLIENT_ID")),
                ("SENDGATE_KAFKA_OAUTH_CLIENT_SECRET", "not-the-secret".into()),
                ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone()),
            ],
            "refused the credentials",
        ),
        (
            "mutual TLS without a client certificate",
            "self-managed-mtls.toml",
            vec![("SENDGATE_BOOTSTRAP", sec.get("KAFKA_SSL_BOOTSTRAP")), ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone()), ("SENDGATE_KAFKA_SSL_CERTIFICATE_FILE", String::new()), ("SENDGATE_KAFKA_SSL_KEY_FILE", String::new())],
            "TLS handshake",
        ),
        (
            "the brokers' CA not trusted",
            "msk-scram.toml",
            vec![("SENDGATE_BOOTSTRAP", sasl.clone()), ("SENDGATE_KAFKA_SASL_USERNAME", sec.get("KAFKA_SCRAM_USERNAME")), ("SENDGATE_KAFKA_SASL_PASSWORD", sec.get("KAFKA_SCRAM_PASSWORD"))],
            "TLS handshake",
        ),
        ("a password that is not set", "msk-scram.toml", vec![("SENDGATE_BOOTSTRAP", sasl.clone()), ("SENDGATE_KAFKA_SSL_CA_FILE", ca.clone())], "needs a password: set SENDGATE_KAFKA_SASL_PASSWORD"),
    ];
    for (what, file, env, expected) in cases {
        let (ok, out, secs) = config_check(file, &env);
        assert!(!ok, "{what}: the check passed:\n{out}");
        assert!(out.contains(expected), "{what}: the error does not say {expected:?}:\n{out}");
        assert!(secs < 10.0, "{what}: reported after {secs:.1} s, not at once");
    }

    // The processor itself stops at start-up with the reason, not a hang.
    let mut env = TestEnv::with(
        "badpass",
        |c| {
            c.bootstrap = sasl.clone();
            c.security = scram_security(&sec);
        },
        scram_env(&sec, "not-the-password"),
    );
    env.start();
    let status = env.await_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("sendgate kept running with a wrong password:\n{}", env.log_tail()));
    assert!(!status.success());
    assert!(env.log_text().contains("refused the credentials"), "{}", env.log_tail());
}
