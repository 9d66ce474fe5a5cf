//! Signal budgets: hard-bounce and complaint rates over recent volume.
//!
//! Sends and signals are counted in hourly buckets (UTC) per sender domain;
//! a rate counts once the window holds `min_volume` sends. Tiers: healthy,
//! warn, slow (limits halved), pause. The most restrictive signal wins.

use crate::policy::SignalPolicy;
use crate::policy::spec::TierThresholds;
use crate::state::{SignalBucket, SignalRing};

const HOUR_MS: i64 = 3_600_000;
/// Never keep more than a week of buckets, whatever the policy says.
const MAX_BUCKETS: usize = 168;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Healthy,
    Warn,
    Slow,
    Pause,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Healthy => "healthy",
            Tier::Warn => "warn",
            Tier::Slow => "slow",
            Tier::Pause => "pause",
        }
    }
    pub fn parse(s: &str) -> Tier {
        match s {
            "warn" => Tier::Warn,
            "slow" => Tier::Slow,
            "pause" => Tier::Pause,
            _ => Tier::Healthy,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Send,
    HardBounce,
    Complaint,
}

/// A sender domain's signal ring as the state holds it (empty if none).
pub fn load(view: &crate::state::PartitionView<'_>, sender_domain: &str) -> Result<SignalRing, crate::state::StoreError> {
    Ok(match view.get(&super::keys::signals(sender_domain))? {
        Some(crate::state::StateValue::Signals(r)) => r,
        _ => empty_ring(),
    })
}

pub fn empty_ring() -> SignalRing {
    SignalRing { buckets: Vec::new(), bounce_tier: "healthy".into(), complaint_tier: "healthy".into() }
}

/// Adds one observation at `now`, dropping buckets older than the window.
pub fn record(ring: &mut SignalRing, signal: Signal, now: i64, window_hours: u32) {
    let start = now - now.rem_euclid(HOUR_MS);
    prune(ring, now, window_hours);
    let idx = match ring.buckets.iter().position(|b| b.start_ms == start) {
        Some(i) => i,
        None => {
            // Buckets stay in start order; a late record lands in its own hour.
            let pos = ring.buckets.partition_point(|b| b.start_ms < start);
            ring.buckets.insert(pos, SignalBucket { start_ms: start, sends: 0, hard_bounces: 0, complaints: 0 });
            pos
        }
    };
    let b = &mut ring.buckets[idx];
    match signal {
        Signal::Send => b.sends += 1,
        Signal::HardBounce => b.hard_bounces += 1,
        Signal::Complaint => b.complaints += 1,
    }
    while ring.buckets.len() > MAX_BUCKETS {
        ring.buckets.remove(0);
    }
}

fn prune(ring: &mut SignalRing, now: i64, window_hours: u32) {
    let oldest = now - now.rem_euclid(HOUR_MS) - (window_hours.max(1) as i64 - 1) * HOUR_MS;
    ring.buckets.retain(|b| b.start_ms >= oldest);
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub sends: i64,
    pub hard_bounces: i64,
    pub complaints: i64,
}

impl Rates {
    pub fn bounce_rate(&self) -> f64 {
        if self.sends == 0 { 0.0 } else { self.hard_bounces as f64 / self.sends as f64 }
    }
    pub fn complaint_rate(&self) -> f64 {
        if self.sends == 0 { 0.0 } else { self.complaints as f64 / self.sends as f64 }
    }
}

pub fn totals(ring: &SignalRing, now: i64, window_hours: u32) -> Rates {
    let oldest = now - now.rem_euclid(HOUR_MS) - (window_hours.max(1) as i64 - 1) * HOUR_MS;
    let mut r = Rates { sends: 0, hard_bounces: 0, complaints: 0 };
    for b in ring.buckets.iter().filter(|b| b.start_ms >= oldest && b.start_ms <= now) {
        r.sends += b.sends;
        r.hard_bounces += b.hard_bounces;
        r.complaints += b.complaints;
    }
    r
}

fn tier_of(rate: f64, t: &TierThresholds) -> Tier {
    if rate >= t.pause {
        Tier::Pause
    } else if rate >= t.slow {
        Tier::Slow
    } else if rate >= t.warn {
        Tier::Warn
    } else {
        Tier::Healthy
    }
}

/// (bounce tier, complaint tier) now; healthy below the minimum volume.
pub fn tiers(rates: &Rates, policy: &SignalPolicy) -> (Tier, Tier) {
    if (rates.sends as u64) < policy.min_volume {
        return (Tier::Healthy, Tier::Healthy);
    }
    (tier_of(rates.bounce_rate(), &policy.hard_bounce), tier_of(rates.complaint_rate(), &policy.complaint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_volume: u64) -> SignalPolicy {
        SignalPolicy {
            hard_bounce: TierThresholds { warn: 0.02, slow: 0.03, pause: 0.05 },
            complaint: TierThresholds { warn: 0.0005, slow: 0.0008, pause: 0.001 },
            min_volume,
            window_hours: 24,
            auto_resume_ms: None,
        }
    }

    #[test]
    fn rates_need_the_minimum_volume() {
        let mut ring = empty_ring();
        for _ in 0..10 {
            record(&mut ring, Signal::Send, 1_000, 24);
        }
        record(&mut ring, Signal::HardBounce, 1_000, 24);
        let r = totals(&ring, 1_000, 24);
        assert_eq!(tiers(&r, &policy(100)), (Tier::Healthy, Tier::Healthy));
        assert_eq!(tiers(&r, &policy(10)).0, Tier::Pause);
    }

    #[test]
    fn tiers_follow_the_thresholds_and_old_hours_fall_out() {
        let mut ring = empty_ring();
        let t0 = 10 * HOUR_MS;
        for _ in 0..100 {
            record(&mut ring, Signal::Send, t0, 24);
        }
        for _ in 0..3 {
            record(&mut ring, Signal::HardBounce, t0, 24);
        }
        assert_eq!(tiers(&totals(&ring, t0, 24), &policy(100)).0, Tier::Slow);
        // 24 hours later the bucket is outside the window.
        let later = t0 + 24 * HOUR_MS;
        assert_eq!(totals(&ring, later, 24).sends, 0);
        record(&mut ring, Signal::Send, later, 24);
        assert_eq!(ring.buckets.len(), 1);
    }
}
