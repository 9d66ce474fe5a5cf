//! Prometheus metrics. Names follow `sendgate_<name>_<unit>`; labels come
//! from small fixed sets (status, reason code, task), never from addresses.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Writer schemas of registry-framed input held in the cache.
pub const REGISTRY_SCHEMAS_CACHED: &str = "sendgate_registry_schemas_cached";
/// Registry-framed input records converted to single object.
pub const REGISTRY_RECORDS: &str = "sendgate_registry_records_total";
/// Input records the client could not consume (a batch that does not
/// decompress or parse), skipped and dead-lettered.
pub const UNREADABLE_RECORDS: &str = "sendgate_unreadable_records_total";
/// Records a task has yet to read, by task (librdkafka's statistics).
pub const CONSUMER_LAG: &str = "sendgate_consumer_lag_records";
/// From an intent's append to the intents topic to its decision's
/// production by a stage (before the commit that publishes it).
pub const DECISION_LATENCY: &str = "sendgate_decision_latency_seconds";
/// Intents held for an operator's approval, in the partitions this
/// instance serves.
pub const HELD_INTENTS: &str = "sendgate_held_intents";
/// Intents parked behind reservations still in flight.
pub const PARKED_INTENTS: &str = "sendgate_parked_intents";
/// Paused sender domains and mailboxes.
pub const PAUSED_SENDERS: &str = "sendgate_paused_senders";
/// Sender domains with delivery signals, by their worse tier.
pub const SENDER_DOMAINS: &str = "sendgate_sender_domains";
/// A stage's local state (RocksDB's estimate), by stage.
pub const STATE_BYTES: &str = "sendgate_state_bytes";
/// Stage partitions this instance serves, by stage.
pub const SERVED_PARTITIONS: &str = "sendgate_served_partitions";
use std::net::SocketAddr;

static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();

/// This process's metrics in the Prometheus text format, as its metrics
/// endpoint serves them; None when metrics are off.
pub fn render() -> Option<String> {
    HANDLE.get().map(|h| h.render())
}

pub fn install(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Ok(());
    }
    let addr: SocketAddr = addr.parse().map_err(|e| format!("metrics_addr {addr:?}: {e}"))?;
    // As the builder's own install does, keeping a handle for the API's
    // GET /v1/metrics (the operator page's view of this instance).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (recorder, exporter) = {
        let _entered = runtime.enter();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets(&[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0])
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?
    };
    std::thread::Builder::new().name("metrics-exporter".into()).spawn(move || runtime.block_on(exporter)).map_err(|e| e.to_string())?;
    let _ = HANDLE.set(recorder.handle());
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    describe();
    // Series a dashboard rates from the start, even before their first
    // event (a restart, an unreadable batch): at zero, not absent.
    metrics::counter!(UNREADABLE_RECORDS).absolute(0);
    metrics::counter!("sendgate_intents_consumed_total").absolute(0);
    for task in std::iter::once("router").chain(crate::stage::StageKind::ALL.iter().map(|k| k.name())) {
        metrics::counter!("sendgate_task_restarts_total", "task" => task).absolute(0);
    }
    Ok(())
}

fn describe() {
    describe_counter!("sendgate_intents_consumed_total", Unit::Count, "Send intents read and validated by the router");
    describe_counter!("sendgate_decisions_total", Unit::Count, "Decisions emitted, by status and reason");
    describe_counter!("sendgate_alerts_total", Unit::Count, "Alerts emitted, by kind");
    describe_counter!("sendgate_shadow_decisions_total", Unit::Count, "Would-be decisions of candidate policies in shadow, paired with the enforced ones, by whether they differ (changed)");
    describe_counter!("sendgate_shadow_changes_total", Unit::Count, "Would-be decisions of candidate policies in shadow that differ from the enforced ones, by the candidate's status and reason");
    describe_counter!("sendgate_dead_letters_total", Unit::Count, "Input records sent to the dead-letter topic, by the stage that refused them");
    describe_counter!("sendgate_transactions_total", Unit::Count, "Kafka transactions, by outcome (committed, failed, aborted)");
    describe_counter!("sendgate_router_merge_waits_expired_total", Unit::Count, "Times the router stopped waiting for a lagging input partition and went on in fetch order instead of log-time order");
    describe_counter!("sendgate_task_restarts_total", Unit::Count, "Task restarts after retriable failures");
    describe_gauge!(REGISTRY_SCHEMAS_CACHED, Unit::Count, "Writer schemas of registry-framed input held in the bounded cache");
    describe_counter!(REGISTRY_RECORDS, Unit::Count, "Input records in the schema registry's wire format, converted to single object");
    describe_counter!(UNREADABLE_RECORDS, Unit::Count, "Input offsets the Kafka client could not consume (a batch that does not decompress or parse), skipped and dead-lettered");
    describe_histogram!("sendgate_processing_seconds", Unit::Seconds, "Time to decide one stage record");
    describe_histogram!("sendgate_transaction_commit_seconds", Unit::Seconds, "Time to commit one transaction");
    describe_histogram!("sendgate_restore_seconds", Unit::Seconds, "Time to restore one partition's state from its changelog");
    describe_gauge!(CONSUMER_LAG, Unit::Count, "Records a task has yet to read, by task");
    describe_histogram!(DECISION_LATENCY, Unit::Seconds, "From an intent's append to the intents topic to its decision, as the stage produces it");
    describe_gauge!(HELD_INTENTS, Unit::Count, "Intents held for approval in the partitions this instance serves");
    describe_gauge!(PARKED_INTENTS, Unit::Count, "Intents parked behind reservations still in flight, in the partitions this instance serves");
    describe_gauge!(PAUSED_SENDERS, Unit::Count, "Paused sender domains and mailboxes in the partitions this instance serves");
    describe_gauge!(SENDER_DOMAINS, Unit::Count, "Sender domains with delivery signals, by their worse tier (healthy, warn, slow, pause)");
    describe_gauge!(STATE_BYTES, Unit::Bytes, "A stage's local state (RocksDB's estimate of live data and memtables), by stage");
    describe_gauge!(SERVED_PARTITIONS, Unit::Count, "Stage partitions this instance owns and has restored, by stage");
}
