//! Waiting for outputs: the decisions for a set of intents, or alerts of a
//! kind. Used by the demo and by the integration tests.

use super::kafka_io::{read_topic, ReadOptions};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::{Alert, Decision};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Reads decisions from `start` (per-partition offsets) until every id in
/// `ids` has one (returns them all, in log order per partition) or `timeout`
/// passes (returns what arrived).
pub fn decisions_for(cfg: &Config, start: &HashMap<i32, i64>, ids: &HashSet<String>, timeout: Duration) -> Result<Vec<Decision>, String> {
    let topo = cfg.topology()?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    // Read in slices so the deadline is checked even while records flow.
    let mut offsets = start.clone();
    while seen.len() < ids.len() && Instant::now() < deadline {
        let opts = ReadOptions { from_beginning: true, start_offsets: Some(offsets.clone()), max: Some(10_000), idle_timeout: Some(Duration::from_millis(500)) };
        read_topic(cfg, &topo.full("decisions"), &opts, |r| {
            offsets.insert(r.partition, r.offset + 1);
            let d: Decision = codec::decode(RecordType::Decision, r.payload.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?;
            if ids.contains(&d.intent_id) {
                seen.insert(d.intent_id.clone());
                out.push(d);
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Every alert from `start` on, read until idle for `idle`.
pub fn alerts_since(cfg: &Config, start: &HashMap<i32, i64>, idle: Duration) -> Result<Vec<Alert>, String> {
    let topo = cfg.topology()?;
    let mut out = Vec::new();
    let opts = ReadOptions { from_beginning: true, start_offsets: Some(start.clone()), max: None, idle_timeout: Some(idle) };
    read_topic(cfg, &topo.full("alerts"), &opts, |r| {
        out.push(codec::decode(RecordType::Alert, r.payload.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    Ok(out)
}
