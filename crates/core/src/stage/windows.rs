//! Windowed limits: load every window an intent falls in, judge them
//! together, and reserve all or none. Shared by every stage.

use super::keys;
use super::context::Cx;
use crate::clock::{window_end, window_start, Window, ROLLING_BUCKETS, ROLLING_BUCKET_MS};
use crate::model::{DecisionStatus, Undo, UndoKind, Usage};
use crate::policy::{BreachAction, Limit};
use chrono_tz::Tz;
use crate::state::{StateValue, StoreError, WindowCounter};

/// One window an intent was checked against.
pub struct WindowCheck {
    pub limit: Limit,
    /// The counted scope, e.g. `mailbox:ana@acme.com`.
    pub scope: String,
    /// The counter a reservation goes into (of a rolling window: its
    /// current hour's bucket).
    pub key: Vec<u8>,
    pub counter: WindowCounter,
    /// A rolling window's earlier buckets, summed: (count, pending).
    pub earlier: (i64, i64),
    /// The limit in force (halved in the slow tier, lowered in warm-up).
    pub max: u64,
    /// When capacity returns: the window's end (of a rolling window, when
    /// enough of what it holds has left it for one more).
    pub end_ms: i64,
    /// The window's length (a local day can be 23 or 25 hours).
    pub window_ms: i64,
    /// When the counter is dead weight and dropped.
    pub expires_ms: i64,
    pub reason: &'static str,
    /// A smoothed limit: (interval between sends, burst).
    pub smooth: Option<(i64, u64)>,
}

/// The counter key of a smoothed limit (apart from the same window's count).
pub fn smooth_key(scope: &str, counter_name: &str, window: Window) -> Vec<u8> {
    keys::counter(scope, counter_name, &format!("{}~smooth", window.as_str()))
}

/// A smoothed limit's state (GCRA) as a counter: `count` sends counted
/// from the epoch `bucket_start_ms`, so the next send's theoretical time is
/// epoch + count x interval. Once that is past, the state is spent and a
/// new epoch starts now. A release takes one send back while the epoch
/// lasts, as a counter's does. `None`: a fresh epoch.
pub fn smooth_state(view: &crate::state::PartitionView<'_>, key: &[u8], interval_ms: i64, now: i64) -> Result<Option<WindowCounter>, StoreError> {
    Ok(match view.get(key)? {
        Some(StateValue::Counter(c)) if c.bucket_start_ms + c.count * interval_ms > now => Some(c),
        _ => None,
    })
}

/// The time between sends of a smoothed limit of `max` per window `w`.
pub fn smooth_interval(w: Window, tz: Tz, now: i64, max: u64) -> i64 {
    ((window_end(w, tz, now) - window_start(w, tz, now)) / max.max(1) as i64).max(1)
}

/// A smoothed limit's state now: how many of its sends still sit in the
/// burst, and when one more fits.
pub fn smooth_room(c: &WindowCounter, interval_ms: i64, burst: u64, now: i64) -> (i64, i64) {
    let level = (c.count - (now - c.bucket_start_ms) / interval_ms).max(0);
    (level, (c.bucket_start_ms + (c.count + 1 - burst as i64) * interval_ms).max(now))
}

/// The buckets of a rolling window that holds `now`, oldest first, the
/// current one included: (start, count, pending). `base` is the window's
/// counter key; each bucket is `base@START`.
pub fn rolling_buckets(view: &crate::state::PartitionView<'_>, base: &[u8], now: i64) -> Result<Vec<(i64, i64, i64)>, StoreError> {
    let current = window_start(Window::Rolling24h, chrono_tz::UTC, now);
    let first = current - (ROLLING_BUCKETS - 1) * ROLLING_BUCKET_MS;
    let mut prefix = base.to_vec();
    prefix.push(b'@');
    let mut out = Vec::new();
    for k in view.scan_from(&prefix, &keys::rolling_bucket(base, first), ROLLING_BUCKETS as usize + 1)? {
        if let Some(StateValue::Counter(c)) = view.get(&k)? {
            if (first..=current).contains(&c.bucket_start_ms) {
                out.push((c.bucket_start_ms, c.count, c.pending as i64));
            }
        }
    }
    Ok(out)
}

impl WindowCheck {
    /// Loads the current window's counter of `scope` for `limit`. `tz` is
    /// the zone of the scope that owns the counter (a shared counter must
    /// not see its windows move with the zone of whoever sends).
    pub fn load(cx: &Cx<'_, '_>, tz: Tz, limit: &Limit, scope: String, counter_name: &str, max: u64, reason: &'static str) -> Result<WindowCheck, StoreError> {
        let w = limit.key.window;
        let base = keys::counter(&scope, counter_name, w.as_str());
        let start = window_start(w, tz, cx.now);
        if let Some(burst) = limit.smooth {
            // One send every window / max, up to `burst` at once (GCRA).
            let len = window_end(w, tz, cx.now) - start;
            let interval = smooth_interval(w, tz, cx.now, max);
            let key = smooth_key(&scope, counter_name, w);
            let counter = smooth_state(cx.view, &key, interval, cx.now)?.unwrap_or(WindowCounter { bucket_start_ms: cx.now, count: 0, alerted_pct: 100, pending: 0 });
            // Allowed so far in this epoch, and when one more fits.
            let allowed = burst as i64 + (cx.now - counter.bucket_start_ms) / interval;
            let (_, end_ms) = smooth_room(&counter, interval, burst, cx.now);
            // A state that lives longer than a day is dropped and starts
            // afresh: at worst one burst early, once a day.
            let expires_ms = cx.now + (2 * len).max(86_400_000);
            return Ok(WindowCheck { limit: limit.clone(), scope, key, counter, earlier: (0, 0), max: allowed.max(0) as u64, end_ms, window_ms: interval, expires_ms, reason, smooth: Some((interval, burst)) });
        }
        if !w.is_rolling() {
            let counter = cx.view.get_counter(&base, start)?;
            let end_ms = window_end(w, tz, cx.now);
            return Ok(WindowCheck { limit: limit.clone(), scope, key: base, counter, earlier: (0, 0), max, end_ms, window_ms: end_ms - start, expires_ms: end_ms, reason, smooth: None });
        }
        let key = keys::rolling_bucket(&base, start);
        let counter = cx.view.get_counter(&key, start)?;
        let buckets = rolling_buckets(cx.view, &base, cx.now)?;
        let earlier = buckets.iter().filter(|b| b.0 != start).fold((0, 0), |(n, p), b| (n + b.1, p + b.2));
        // One more fits once enough of the oldest buckets have left.
        let leaves = |bucket_start: i64| bucket_start + ROLLING_BUCKETS * ROLLING_BUCKET_MS;
        let mut held = counter.count + earlier.0;
        let mut end_ms = leaves(start);
        for (bucket_start, count, _) in buckets.iter().filter(|b| b.0 != start) {
            held -= count;
            if held < max as i64 {
                end_ms = leaves(*bucket_start);
                break;
            }
        }
        Ok(WindowCheck { limit: limit.clone(), scope, key, counter, earlier, max, end_ms, window_ms: 24 * ROLLING_BUCKET_MS, expires_ms: leaves(start), reason, smooth: None })
    }

    /// What the window holds, reservations in flight included.
    fn used(&self) -> i64 {
        self.counter.count + self.earlier.0
    }

    fn breached(&self) -> bool {
        self.used() as u64 + 1 > self.max
    }

    /// Breached only because of reservations still in flight: it fits if
    /// enough of them are released.
    fn could_fit(&self) -> bool {
        ((self.used() - self.counter.pending as i64 - self.earlier.1).max(0) as u64) < self.max
    }

    pub fn usage(&self) -> Usage {
        if let Some((_, burst)) = self.smooth {
            // A smoothed limit: how much of its burst is in use (the sends
            // of the epoch less those the time since has made room for).
            let (used, limit) = ((self.counter.count - (self.max as i64 - burst as i64)).max(0), burst as i64);
            return Usage { scope: self.scope.clone(), window: format!("{}~smooth", self.limit.key.window.as_str()), used, limit, remaining: (limit - used).max(0) };
        }
        Usage {
            scope: self.scope.clone(),
            window: self.limit.key.window.as_str().into(),
            used: self.used(),
            limit: self.max as i64,
            remaining: (self.max as i64 - self.used()).max(0),
        }
    }
}

/// Records every window of a check in the audit trace: used before (and
/// after, when reserved) against the limit in force.
pub fn note(cx: &mut Cx<'_, '_>, intent_id: &str, checks: &[WindowCheck], reserved: bool) {
    if !cx.tracing(intent_id) {
        return;
    }
    for c in checks {
        let before = if reserved { c.used() - 1 } else { c.used() };
        let outcome = if before as u64 + 1 > c.max { format!("breached (on_breach {})", c.limit.on_breach.as_str()) } else { "pass".into() };
        cx.note(intent_id, "window", outcome, || {
            let after = if reserved { format!(" -> {}", c.used()) } else { String::new() };
            format!("{} {} ({}): used {before}{after} of {}, window ends {}", c.scope, c.limit.key.window.as_str(), c.reason, c.max, crate::clock::format_ms(c.end_ms))
        });
    }
}

/// Whether every breached window could still fit once the reservations in
/// flight resolve (so waiting, rather than deferring, is the honest answer).
/// Returns the counter to wait on (the first binding breach) when every
/// binding breach could still fit.
pub fn waiting_on_in_flight(checks: &[WindowCheck], approved: bool) -> Option<&WindowCheck> {
    let mut binding = checks.iter().filter(|c| c.breached() && binds(c, approved)).peekable();
    let first = binding.peek().copied();
    binding.all(WindowCheck::could_fit).then_some(first).flatten()
}

/// Whether a breach of this window stops the intent (alert-only never does;
/// hold does not once an operator approved).
fn binds(c: &WindowCheck, approved: bool) -> bool {
    match c.limit.on_breach {
        BreachAction::Defer => true,
        BreachAction::Hold => !approved,
        BreachAction::Alert => false,
    }
}

/// The verdict of a set of windows: None = allow. A deferral comes back
/// after the binding window, at the time `retry` gives for its (end,
/// length) (see `retry::after_window`).
pub fn judge(checks: &[WindowCheck], approved: bool, retry: impl Fn(i64, i64) -> i64) -> Option<(DecisionStatus, &'static str, Option<i64>)> {
    let breached: Vec<&WindowCheck> = checks.iter().filter(|c| c.breached()).collect();
    // The binding breach is the one whose capacity returns last. An approved
    // intent was held for exactly the review a hold asks for.
    let binding = |action: BreachAction| breached.iter().filter(|c| c.limit.on_breach == action).max_by_key(|c| c.end_ms).copied();
    if let Some(c) = binding(BreachAction::Defer) {
        return Some((DecisionStatus::Deferred, c.reason, Some(retry(c.end_ms, c.window_ms))));
    }
    if let Some(c) = binding(BreachAction::Hold).filter(|_| !approved) {
        return Some((DecisionStatus::Held, c.reason, None));
    }
    None
}

/// Reserves one unit in every window; returns how to undo it. Raises the
/// 80% / 100% quota alerts (once per window period, for the windows the
/// policy's `alerts.quota_windows` names) and the alert of an alert-only
/// breach.
pub fn reserve(cx: &mut Cx<'_, '_>, checks: &mut [WindowCheck], policy: &crate::policy::EffectivePolicy, tenant: &str, intent_id: &str) -> Vec<Undo> {
    let mut undo = Vec::with_capacity(checks.len());
    for c in checks.iter_mut() {
        // (A rolling window's bucket is not the window, nor a smoothed
        // limit's state a count: they raise none.)
        if !policy.quota_alert_windows.contains(&c.limit.key.window) || c.limit.key.window.is_rolling() || c.smooth.is_some() {
            // This window raises no quota alert: as if both were raised
            // already (the counter carries it to the settle that would).
            c.counter.alerted_pct = c.counter.alerted_pct.max(100);
        }
        // Over an alert-only limit by confirmed sends, not by ones in flight.
        let over = c.limit.on_breach == BreachAction::Alert && !c.could_fit();
        c.counter.count += 1;
        let sender = cx.kind == super::StageKind::Sender;
        if sender {
            // The outcome comes back to the sender stage: in flight until
            // then, and its quota alerts wait for it (see `confirm`).
            c.counter.pending += 1;
        } else {
            quota_alerts(cx, &c.scope, c.limit.key.window.as_str(), &mut c.counter, c.max, tenant);
        }
        if over {
            cx.alert(
                tenant,
                &c.scope,
                "limit_exceeded_allowed",
                format!("{} exceeded its {} limit of {}; allowed by policy (alert only)", c.scope, c.limit.key.window.as_str(), c.max),
                &[("intent_id", intent_id.to_string())],
            );
        }
        if c.counter.count == 1 {
            // A counter of a past window is dead weight: drop it when its window ends.
            cx.expire_at(c.expires_ms, &c.key, Some(c.counter.bucket_start_ms));
        }
        cx.view.put(&c.key, StateValue::Counter(c.counter));
        let limit = if sender { c.max as i64 } else { 0 };
        undo.push(Undo { key: String::from_utf8_lossy(&c.key).into_owned(), kind: UndoKind::Counter, bucket_start_ms: c.counter.bucket_start_ms, limit });
    }
    undo
}

/// The 80% and 100% alerts of a window, once per window period.
pub fn quota_alerts(cx: &mut Cx<'_, '_>, scope: &str, window: &str, counter: &mut WindowCounter, max: u64, tenant: &str) {
    if max == 0 {
        return;
    }
    // At the sender stage, only confirmed sends count toward an alert.
    let used = counter.count - counter.pending as i64;
    let pct = (used.max(0) as u64 * 100 / max) as i32;
    for threshold in [80, 100] {
        if pct >= threshold && counter.alerted_pct < threshold {
            counter.alerted_pct = threshold;
            cx.alert(
                tenant,
                scope,
                if threshold == 80 { "quota_80" } else { "quota_100" },
                format!("{scope} has used {used} of its {max} {window} limit ({pct}%)"),
                &[("window", window.into()), ("used", used.to_string()), ("limit", max.to_string())],
            );
        }
    }
}

/// Counts one unit in a window that has no limit (replies).
pub fn count_uncapped(cx: &mut Cx<'_, '_>, tz: Tz, scope: &str, counter_name: &str, window: crate::clock::Window) -> Result<Undo, StoreError> {
    let key = keys::counter(scope, counter_name, window.as_str());
    let start = window_start(window, tz, cx.now);
    let mut c = cx.view.get_counter(&key, start)?;
    c.count += 1;
    if cx.kind == super::StageKind::Sender {
        c.pending += 1;
    }
    if c.count == 1 {
        cx.expire_at(window_end(window, tz, cx.now), &key, Some(start));
    }
    cx.view.put(&key, StateValue::Counter(c));
    Ok(Undo { key: String::from_utf8_lossy(&key).into_owned(), kind: UndoKind::Counter, bucket_start_ms: start, limit: 0 })
}
