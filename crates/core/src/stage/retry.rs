//! When a deferred intent is told to come back.
//!
//! A window that stops a thousand agents would otherwise send all of them
//! back at the same instant (the top of the hour, local midnight), where
//! most of them are stopped again. The retry time is the window's end plus
//! a share of the window (`retry.spread`, at most `retry.max_spread_minutes`)
//! chosen by a hash of the intent: a replay computes the same time, and the
//! times of many intents spread evenly. Cold outbound mail never comes back
//! while business hours are closed: a time that falls there moves to the
//! next opening, spread again over the first part of the open hours.

use crate::model::{IntentClass, SendIntent};
use crate::policy::EffectivePolicy;

const HOUR_MS: i64 = 3_600_000;

/// A stable 64-bit hash (FNV-1a) of the intent's tenant and id: the same
/// in every build and on every machine, unlike the std hashers.
fn intent_hash(intent: &SendIntent) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in intent.tenant.bytes().chain(std::iter::once(0)).chain(intent.intent_id.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The intent's place in a span of `span_ms`: [0, span_ms).
fn offset_in(intent: &SendIntent, span_ms: i64) -> i64 {
    if span_ms <= 0 {
        return 0;
    }
    (intent_hash(intent) % span_ms as u64) as i64
}

/// The span a window of `window_ms` spreads its retries over.
fn span(policy: &EffectivePolicy, window_ms: i64) -> i64 {
    ((window_ms.max(0) as f64 * policy.retry.spread) as i64).min(policy.retry.max_spread_ms)
}

/// The retry time of an intent stopped by a window of `window_ms` that
/// ends at `end_ms`.
pub fn after_window(policy: &EffectivePolicy, intent: &SendIntent, end_ms: i64, window_ms: i64) -> i64 {
    let t = end_ms + offset_in(intent, span(policy, window_ms));
    match &policy.business_hours {
        Some(bh) if intent.class == IntentClass::Outbound && !bh.is_open(policy.tz, t) => match bh.next_opening(policy.tz, t) {
            Some(opening) => at_opening(policy, intent, opening),
            None => t,
        },
        _ => t,
    }
}

/// The retry time of an intent that comes back when business hours open at
/// `opening_ms`: spread over the first part of the open hours, as a window
/// of an hour would be, and inside them.
pub fn at_opening(policy: &EffectivePolicy, intent: &SendIntent, opening_ms: i64) -> i64 {
    let t = opening_ms + offset_in(intent, span(policy, HOUR_MS));
    match &policy.business_hours {
        Some(bh) if !bh.is_open(policy.tz, t) => opening_ms,
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{resolve_local, BusinessHours};
    use crate::policy::resolve::merge;
    use chrono::{NaiveDate, NaiveTime};

    fn intent(id: &str, class: IntentClass) -> SendIntent {
        SendIntent::new(id, "acme", "ana@acme.com", "bo@example.org", class)
    }

    fn at(d: u32, h: u32, m: u32) -> i64 {
        resolve_local(chrono_tz::UTC, NaiveDate::from_ymd_opt(2026, 6, d).unwrap().and_hms_opt(h, m, 0).unwrap())
    }

    #[test]
    fn retries_spread_over_a_share_of_the_window_and_repeat_exactly() {
        let policy = merge(&[]);
        let end = at(3, 11, 0);
        let times: Vec<i64> = (0..100).map(|i| after_window(&policy, &intent(&format!("i{i}"), IntentClass::Transactional), end, HOUR_MS)).collect();
        // A quarter of an hour after the end, never before it.
        assert!(times.iter().all(|t| (end..end + HOUR_MS / 4).contains(t)), "{times:?}");
        // Spread: 100 intents land in most of the 15 one-minute slots.
        let slots: std::collections::BTreeSet<i64> = times.iter().map(|t| (t - end) / 60_000).collect();
        assert!(slots.len() >= 12, "{slots:?}");
        // The same intent, the same time.
        let again: Vec<i64> = (0..100).map(|i| after_window(&policy, &intent(&format!("i{i}"), IntentClass::Transactional), end, HOUR_MS)).collect();
        assert_eq!(times, again);
        // A day's window spreads over an hour at most.
        assert!((0..100).all(|i| after_window(&policy, &intent(&format!("i{i}"), IntentClass::Transactional), end, 24 * HOUR_MS) < end + HOUR_MS));
    }

    #[test]
    fn outbound_never_comes_back_while_business_hours_are_closed() {
        let mut policy = merge(&[]);
        policy.business_hours = Some(BusinessHours::weekdays(NaiveTime::from_hms_opt(8, 0, 0).unwrap(), NaiveTime::from_hms_opt(18, 0, 0).unwrap()));
        // A daily cap reached on Wednesday 3 June: not back at midnight, but
        // over the first quarter hour after Thursday's 08:00.
        let midnight = at(4, 0, 0);
        for i in 0..100 {
            let t = after_window(&policy, &intent(&format!("i{i}"), IntentClass::Outbound), midnight, 24 * HOUR_MS);
            assert!((at(4, 8, 0)..at(4, 8, 15)).contains(&t), "{i}: {t}");
        }
        // Transactional mail is not held to business hours.
        let t = after_window(&policy, &intent("t", IntentClass::Transactional), midnight, 24 * HOUR_MS);
        assert!((midnight..at(4, 1, 0)).contains(&t));
        // Spread off: the window's end itself.
        policy.retry.spread = 0.0;
        assert_eq!(after_window(&policy, &intent("x", IntentClass::Transactional), midnight, 24 * HOUR_MS), midnight);
    }
}
