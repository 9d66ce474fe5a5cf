//! `POST /v1/simulate`: what intents would get now, and every check behind
//! it, evaluated on a copy-on-write view of the committed state: nothing
//! reaches live state or any topic. Intents of one request are evaluated
//! in order, each seeing the ones before it.

use super::LiveState;
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::stage::driver::Driver;
use crate::state::CopyOnWrite;
use serde::Serialize;

/// Most intents one simulation takes.
pub const SIMULATE_MAX: usize = 1_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckOut {
    pub stage: &'static str,
    pub check: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Simulated {
    pub decision: Decision,
    pub checks: Vec<CheckOut>,
}

/// Why a simulation gave no answer.
#[derive(Debug)]
pub enum SimulateError {
    /// The request is at fault (an invalid intent, too many).
    Invalid(String),
    /// An intent waits behind a reservation still in flight in the live
    /// pipeline (an earlier intent of the same sender being decided): the
    /// committed state cannot tell yet; a moment later it can.
    InFlight(String),
}

pub fn simulate(live: &LiveState, intents: &[SendIntent], now_ms: i64) -> Result<Vec<Simulated>, SimulateError> {
    use SimulateError::*;
    if intents.len() > SIMULATE_MAX {
        return Err(Invalid(format!("at most {SIMULATE_MAX} intents per simulation, got {}", intents.len())));
    }
    let mut driver = Driver::with_stores(live.ingress.clone(), live.partitions, live.sender.clone(), |k| Box::new(CopyOnWrite::new(live.stores[&k].clone()))).with_trace();
    let mut out = Vec::new();
    for (n, intent) in intents.iter().enumerate() {
        let bytes = codec::encode(RecordType::SendIntent, intent).map_err(|e| Invalid(e.to_string()))?;
        let rec = InputRecord { topic: &live.ingress.intents, partition: -1, offset: n as i64, key: None, payload: Some(&bytes), timestamp_ms: Some(now_ms) };
        let refused = driver.refused.len();
        driver.submit(&rec);
        if let Some(r) = driver.refused.get(refused) {
            return Err(Invalid(format!("intent #{} ({}): {}", n + 1, intent.intent_id, r.reason)));
        }
        driver.run();
        let decision = driver
            .decisions
            .drain(..)
            .rev()
            .find(|d| d.intent_id == intent.intent_id)
            .ok_or_else(|| InFlight(format!("intent {} waits behind a reservation still in flight (an earlier intent of its sender is being decided right now); ask again in a moment", intent.intent_id)))?;
        let checks = driver.traces.drain(..).filter(|t| t.intent_id == intent.intent_id).map(|t| CheckOut { stage: t.stage.name(), check: t.check, outcome: t.outcome, detail: t.detail }).collect();
        driver.alerts.clear();
        out.push(Simulated { decision, checks });
    }
    Ok(out)
}

