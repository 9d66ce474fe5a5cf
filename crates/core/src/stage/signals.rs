//! Signal budgets: hard-bounce and complaint rates over recent volume.
//!
//! Sends and signals are counted in hourly buckets (UTC) per sender domain
//! and, with `per_mailbox`, per mailbox too (the mailbox's breaker: a
//! smaller denominator, so it trips before its domain's when one mailbox's
//! list is bad). A rate counts once the window holds `min_volume` sends
//! and `min_events` of that signal's events.
//! Tiers: healthy, warn, slow (limits halved), pause. The most restrictive
//! signal wins.

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
    /// An open, click or reply, in a domain's engagement ring (which
    /// counts them where a signal ring counts sends).
    Engaged,
}

/// A sender domain's signal ring as the state holds it (empty if none).
pub fn load(view: &crate::state::PartitionView<'_>, sender_domain: &str) -> Result<SignalRing, crate::state::StoreError> {
    load_key(view, &super::keys::signals(sender_domain))
}

/// The signal ring under a key (a domain's, a mailbox's, an engagement
/// ring; empty if none).
pub fn load_key(view: &crate::state::PartitionView<'_>, key: &[u8]) -> Result<SignalRing, crate::state::StoreError> {
    Ok(match view.get(key)? {
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
        Signal::Send | Signal::Engaged => b.sends += 1,
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
    totals_since(ring, now, oldest)
}

/// The counts of the buckets from the one holding `since_ms` to now (a
/// local day that starts on a half hour takes its whole first hour).
pub fn totals_since(ring: &SignalRing, now: i64, since_ms: i64) -> Rates {
    let oldest = since_ms - since_ms.rem_euclid(HOUR_MS);
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

/// Whether a signal's rate counts: the window holds `min_volume` sends and
/// `min_events` of the signal's events. The count of events is what keeps
/// one or two unlucky events from tripping a tier at any volume, and what
/// lets a few real ones trip it at low volume, where a minimum of sends
/// would keep the guard silent.
fn counts(rates: &Rates, events: i64, policy: &SignalPolicy) -> bool {
    rates.sends as u64 >= policy.min_volume && events as u64 >= policy.min_events
}

/// (bounce tier, complaint tier) now; healthy while a rate does not count.
pub fn tiers(rates: &Rates, policy: &SignalPolicy) -> (Tier, Tier) {
    let tier = |events: i64, rate: f64, t: &TierThresholds| if counts(rates, events, policy) { tier_of(rate, t) } else { Tier::Healthy };
    (tier(rates.hard_bounces, rates.bounce_rate(), &policy.hard_bounce), tier(rates.complaints, rates.complaint_rate(), &policy.complaint))
}

/// The rest-of-day rule: which of today's rates (since `day_start_ms`)
/// is over its threshold, if any ("hard_bounce_rate" or
/// "complaint_rate"). A rate must also count (`min_volume` sends and
/// `min_events` of its events today), so one bounce in the day's first
/// send does not stop a mailbox for the day.
pub fn over_today(ring: &SignalRing, now: i64, day_start_ms: i64, policy: &SignalPolicy) -> Option<(&'static str, Rates)> {
    let (bounce, complaint) = policy.rest_of_day?;
    let today = totals_since(ring, now, day_start_ms);
    let over = |max: Option<f64>, events: i64, rate: f64| max.is_some_and(|m| counts(&today, events, policy) && rate > m);
    if over(bounce, today.hard_bounces, today.bounce_rate()) {
        Some(("hard_bounce_rate", today))
    } else if over(complaint, today.complaints, today.complaint_rate()) {
        Some(("complaint_rate", today))
    } else {
        None
    }
}

/// How the engagement of the last 7 days moves a domain's warm-up: one step
/// back (held), forward (the next one early), or none; with the rate, when
/// it counts. The rate is the week's opens, clicks and replies over the
/// week's sends less the last 24 hours' (too recent to have been read:
/// today's sends would otherwise dilute yesterday's opens).
pub fn engagement_shift(signals: &SignalRing, engaged: &SignalRing, now: i64, policy: &SignalPolicy) -> (i32, Option<f64>) {
    let Some(e) = policy.engagement else { return (0, None) };
    let sends = totals(signals, now, crate::policy::resolve::ENGAGEMENT_HOURS).sends - totals(signals, now, 24).sends;
    if sends <= 0 || (sends as u64) < e.min_sends {
        return (0, None);
    }
    let rate = totals(engaged, now, crate::policy::resolve::ENGAGEMENT_HOURS).sends as f64 / sends as f64;
    (if rate < e.hold_below { -1 } else if rate >= e.advance_above { 1 } else { 0 }, Some(rate))
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
            min_events: 0,
            per_mailbox: true,
            rest_of_day: None,
            engagement: None,
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
    fn at_low_volume_a_few_bad_events_count_and_one_does_not() {
        let p = SignalPolicy { min_events: 3, ..policy(0) };
        let rates = |sends, hard_bounces, complaints| Rates { sends, hard_bounces, complaints };
        // Three hard bounces in a first week of 40 sends (7.5%): pause.
        assert_eq!(tiers(&rates(40, 3, 0), &p).0, Tier::Pause);
        // Three in 60 (5%) still pause; in 61, the rate is under 5%.
        assert_eq!(tiers(&rates(60, 3, 0), &p).0, Tier::Pause);
        assert_eq!(tiers(&rates(61, 3, 0), &p).0, Tier::Slow);
        // One or two bounces in ten sends: no tier yet.
        assert_eq!(tiers(&rates(10, 2, 0), &p), (Tier::Healthy, Tier::Healthy));
        // Complaints alike: three in 50 sends pause.
        assert_eq!(tiers(&rates(50, 0, 3), &p).1, Tier::Pause);
        // At volume the rate decides: 3 in 1,000 is healthy, 50 pause.
        assert_eq!(tiers(&rates(1_000, 3, 0), &p).0, Tier::Healthy);
        assert_eq!(tiers(&rates(1_000, 50, 0), &p).0, Tier::Pause);
        // Two complaints never set a tier (at 1,000 sends they would be 0.2%).
        assert_eq!(tiers(&rates(1_000, 0, 2), &p).1, Tier::Healthy);
        assert_eq!(tiers(&rates(3_000, 0, 3), &p).1, Tier::Pause);
    }

    #[test]
    fn the_rest_of_day_rule_reads_today_only() {
        let p = SignalPolicy { min_events: 1, rest_of_day: Some((Some(0.05), None)), ..policy(0) };
        let day = 48 * HOUR_MS;
        let mut ring = empty_ring();
        // Yesterday: 2 bounces in 10 sends; they do not count today.
        for _ in 0..10 {
            record(&mut ring, Signal::Send, day - HOUR_MS, 48);
        }
        for _ in 0..2 {
            record(&mut ring, Signal::HardBounce, day - HOUR_MS, 48);
        }
        for _ in 0..20 {
            record(&mut ring, Signal::Send, day + HOUR_MS, 48);
        }
        assert_eq!(over_today(&ring, day + 2 * HOUR_MS, day, &p), None);
        // Today: 1 bounce in 20 sends is 5%, not over; 2 is 10%.
        record(&mut ring, Signal::HardBounce, day + 2 * HOUR_MS, 48);
        assert_eq!(over_today(&ring, day + 2 * HOUR_MS, day, &p), None);
        record(&mut ring, Signal::HardBounce, day + 2 * HOUR_MS, 48);
        assert_eq!(over_today(&ring, day + 2 * HOUR_MS, day, &p).map(|(why, r)| (why, r.sends, r.hard_bounces)), Some(("hard_bounce_rate", 20, 2)));
        // Off: never.
        assert_eq!(over_today(&ring, day + 2 * HOUR_MS, day, &SignalPolicy { rest_of_day: None, ..p }), None);
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
