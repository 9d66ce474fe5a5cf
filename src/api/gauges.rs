//! Gauges of the state this instance serves, refreshed every
//! [`REFRESH_EVERY`] from the committed state (the API's view): held and
//! parked intents, paused senders, sender domains by signal tier, the
//! partitions served and the stores' sizes. A stage task never pays for
//! them; each refresh reads a bounded number of keys.

use super::LiveState;
use crate::metrics::*;
use crate::stage::signals::Tier;
use crate::stage::{keys, StageKind};
use crate::state::{CopyOnWrite, StageStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const REFRESH_EVERY: Duration = Duration::from_secs(15);
/// Most keys one count reads (a gauge past it reads this bound).
const COUNT_MAX: usize = 100_000;

/// Counts keys under `prefix` in the served partitions of `kind`.
fn count(live: &LiveState, kind: StageKind, prefixes: &[&[u8]]) -> Result<usize, String> {
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&kind].clone())));
    let mut n = 0;
    for p in live.served(kind) {
        let view = store.view(p);
        for prefix in prefixes {
            n += view.scan(prefix, COUNT_MAX.saturating_sub(n)).map_err(|e| e.to_string())?.len();
        }
    }
    Ok(n)
}

pub fn refresh(live: &LiveState) -> Result<(), String> {
    metrics::gauge!(HELD_INTENTS).set(count(live, StageKind::Sender, &[b"t-held/", b"held/"])? as f64);
    metrics::gauge!(PAUSED_SENDERS).set(count(live, StageKind::Sender, &[b"pause/"])? as f64);
    let mut parked = 0i64;
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::Sender].clone())));
    for p in live.served(StageKind::Sender) {
        parked += store.view(p).get_time(keys::PARKED_COUNT).map_err(|e| e.to_string())?.unwrap_or(0);
    }
    metrics::gauge!(PARKED_INTENTS).set(parked as f64);
    let mut tiers = [0usize; 4];
    for d in super::operator::domains(live, crate::clock::wall_ms(), COUNT_MAX)? {
        let worse = Tier::parse(&d.signals.bounce_tier).max(Tier::parse(&d.signals.complaint_tier));
        tiers[worse as usize] += 1;
    }
    for (tier, n) in [Tier::Healthy, Tier::Warn, Tier::Slow, Tier::Pause].iter().zip(tiers) {
        metrics::gauge!(SENDER_DOMAINS, "tier" => tier.as_str()).set(n as f64);
    }
    for kind in StageKind::ALL {
        metrics::gauge!(SERVED_PARTITIONS, "stage" => kind.name()).set(live.served(kind).len() as f64);
        if let Some(bytes) = live.stores[&kind].approximate_bytes() {
            metrics::gauge!(STATE_BYTES, "stage" => kind.name()).set(bytes as f64);
        }
    }
    Ok(())
}

/// Refreshes the gauges until `shutdown`, on its own thread.
pub fn spawn(live: Arc<LiveState>, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("gauges".into())
        .spawn(move || {
            let mut last: Option<Instant> = None;
            let mut served_then = usize::MAX;
            while !shutdown.load(Ordering::Relaxed) {
                // At once when what this instance serves changes (start-up,
                // a rebalance), else every REFRESH_EVERY.
                let served_now: usize = StageKind::ALL.iter().map(|k| live.served(*k).len()).sum();
                if served_now != served_then || last.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
                    served_then = served_now;
                    if let Err(e) = refresh(&live) {
                        tracing::warn!(error = %e, "refreshing the state gauges");
                    }
                    last = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .map_err(|e| e.to_string())
}
