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
use std::net::SocketAddr;

pub fn install(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Ok(());
    }
    let addr: SocketAddr = addr.parse().map_err(|e| format!("metrics_addr {addr:?}: {e}"))?;
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0])
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    Ok(())
}

fn describe() {
    describe_counter!("sendgate_intents_consumed_total", Unit::Count, "Send intents read and validated by the router");
    describe_counter!("sendgate_decisions_total", Unit::Count, "Decisions emitted, by status and reason");
    describe_counter!("sendgate_alerts_total", Unit::Count, "Alerts emitted, by kind");
    describe_counter!("sendgate_dead_letters_total", Unit::Count, "Input records sent to the dead-letter topic, by input topic");
    describe_counter!("sendgate_transactions_total", Unit::Count, "Kafka transactions, by outcome (committed, failed, aborted)");
    describe_counter!("sendgate_router_merge_waits_expired_total", Unit::Count, "Times the router stopped waiting for a lagging input partition and went on in fetch order instead of log-time order");
    describe_counter!("sendgate_task_restarts_total", Unit::Count, "Task restarts after retriable failures");
    describe_gauge!(REGISTRY_SCHEMAS_CACHED, Unit::Count, "Writer schemas of registry-framed input held in the bounded cache");
    describe_counter!(REGISTRY_RECORDS, Unit::Count, "Input records in the schema registry's wire format, converted to single object");
    describe_counter!(UNREADABLE_RECORDS, Unit::Count, "Input offsets the Kafka client could not consume (a batch that does not decompress or parse), skipped and dead-lettered");
    describe_histogram!("sendgate_processing_seconds", Unit::Seconds, "Time to decide one stage record");
    describe_histogram!("sendgate_transaction_commit_seconds", Unit::Seconds, "Time to commit one transaction");
    describe_histogram!("sendgate_restore_seconds", Unit::Seconds, "Time to restore one partition's state from its changelog");
}
