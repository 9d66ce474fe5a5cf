//! Window and business-hours arithmetic in a tenant's time zone.
//!
//! All of it is a pure function of a log timestamp (milliseconds since the
//! epoch) and a zone: no wall clock is ever read here. Calendar windows
//! (hour, day, month) follow the zone's local calendar, so a daily cap resets
//! at local midnight and a 23- or 25-hour DST day is one day.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    /// The last 24 hours, whatever the calendar: counted in hourly buckets
    /// (UTC hours), the current one included, so it never holds less than
    /// the last 24 hours (a send leaves it 24 to 25 hours later).
    #[serde(rename = "rolling_24h")]
    Rolling24h,
}

/// The length of a rolling window's buckets, and how many it sums.
pub const ROLLING_BUCKET_MS: i64 = 3_600_000;
pub const ROLLING_BUCKETS: i64 = 25;

impl Window {
    pub const ALL: [Window; 6] = [Window::Second, Window::Minute, Window::Hour, Window::Day, Window::Month, Window::Rolling24h];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
            Window::Rolling24h => "rolling_24h",
        }
    }

    pub fn is_rolling(self) -> bool {
        self == Window::Rolling24h
    }

    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// The reason code a breach of this window gives.
    pub fn breach_reason(self) -> &'static str {
        match self {
            Window::Second => "per_second_limit_exceeded",
            Window::Rolling24h => "rolling_24h_limit_exceeded",
            Window::Minute => "minute_limit_exceeded",
            Window::Hour => "hourly_limit_exceeded",
            Window::Day => "daily_cap_reached",
            Window::Month => "monthly_cap_reached",
        }
    }
}

fn local(tz: Tz, t_ms: i64) -> DateTime<Tz> {
    Utc.timestamp_millis_opt(t_ms).single().unwrap_or_else(|| DateTime::<Utc>::MIN_UTC).with_timezone(&tz)
}

/// The first instant at or after a local wall-clock time. A time inside a
/// DST gap (02:30 on a spring-forward night) maps to the end of the gap; an
/// ambiguous one (fall-back) to its earlier occurrence.
pub fn resolve_local(tz: Tz, naive: NaiveDateTime) -> i64 {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(a, b) => a.timestamp_millis().min(b.timestamp_millis()),
        LocalResult::None => {
            // Walk forward minute by minute to the end of the gap (gaps are at
            // most a few hours; this is bounded by the loop count).
            let mut probe = naive;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.timestamp_millis();
                }
            }
            tz.from_utc_datetime(&naive).timestamp_millis()
        }
    }
}

fn offset_ms(tz: Tz, t_ms: i64) -> i64 {
    use chrono::Offset;
    local(tz, t_ms).offset().fix().local_minus_utc() as i64 * 1000
}

/// Start of the window that contains `t_ms` (of a rolling window: of its
/// current bucket).
pub fn window_start(window: Window, tz: Tz, t_ms: i64) -> i64 {
    match window {
        Window::Second => t_ms - t_ms.rem_euclid(1_000),
        Window::Rolling24h => t_ms - t_ms.rem_euclid(ROLLING_BUCKET_MS),
        Window::Minute | Window::Hour => {
            let len = if window == Window::Minute { 60_000 } else { 3_600_000 };
            let off = offset_ms(tz, t_ms);
            t_ms - (t_ms + off).rem_euclid(len)
        }
        Window::Day => {
            let d = local(tz, t_ms).date_naive();
            resolve_local(tz, d.and_time(NaiveTime::MIN))
        }
        Window::Month => {
            let d = local(tz, t_ms).date_naive();
            let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("day 1 exists");
            resolve_local(tz, first.and_time(NaiveTime::MIN))
        }
    }
}

/// End (exclusive) of the window that contains `t_ms`: when its capacity
/// returns (of a rolling window: when its current bucket has left it).
pub fn window_end(window: Window, tz: Tz, t_ms: i64) -> i64 {
    match window {
        Window::Second => window_start(window, tz, t_ms) + 1_000,
        Window::Rolling24h => window_start(window, tz, t_ms) + ROLLING_BUCKETS * ROLLING_BUCKET_MS,
        Window::Minute => window_start(window, tz, t_ms) + 60_000,
        Window::Hour => window_start(window, tz, t_ms) + 3_600_000,
        Window::Day => {
            let d = local(tz, t_ms).date_naive().succ_opt().expect("date in range");
            resolve_local(tz, d.and_time(NaiveTime::MIN))
        }
        Window::Month => {
            let d = local(tz, t_ms).date_naive();
            let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
            let first = NaiveDate::from_ymd_opt(y, m, 1).expect("day 1 exists");
            resolve_local(tz, first.and_time(NaiveTime::MIN))
        }
    }
}

/// Sending hours in local time on the given weekdays: [start, end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    /// Indexed by `Weekday::num_days_from_monday`.
    pub days: [bool; 7],
}

impl BusinessHours {
    pub fn weekdays(start: NaiveTime, end: NaiveTime) -> Self {
        BusinessHours { start, end, days: [true, true, true, true, true, false, false] }
    }

    fn open_on(&self, wd: Weekday) -> bool {
        self.days[wd.num_days_from_monday() as usize]
    }

    pub fn is_open(&self, tz: Tz, t_ms: i64) -> bool {
        let lt = local(tz, t_ms);
        let time = lt.time().with_nanosecond(0).unwrap_or(lt.time());
        self.open_on(lt.weekday()) && time >= self.start && time < self.end
    }

    /// The next opening strictly after `t_ms` (or `t_ms` itself if open).
    /// `None` only when no weekday is enabled.
    pub fn next_opening(&self, tz: Tz, t_ms: i64) -> Option<i64> {
        if self.is_open(tz, t_ms) {
            return Some(t_ms);
        }
        let today = local(tz, t_ms).date_naive();
        for days_ahead in 0..=7 {
            let date = today + Duration::days(days_ahead);
            if !self.open_on(date.weekday()) {
                continue;
            }
            let opening = resolve_local(tz, date.and_time(self.start));
            if opening > t_ms {
                return Some(opening);
            }
        }
        None
    }
}

pub fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

pub fn parse_weekday(s: &str) -> Option<Weekday> {
    match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Some(Weekday::Mon),
        "tue" | "tuesday" => Some(Weekday::Tue),
        "wed" | "wednesday" => Some(Weekday::Wed),
        "thu" | "thursday" => Some(Weekday::Thu),
        "fri" | "friday" => Some(Weekday::Fri),
        "sat" | "saturday" => Some(Weekday::Sat),
        "sun" | "sunday" => Some(Weekday::Sun),
        _ => None,
    }
}

/// Formats a log time for people (UTC, RFC 3339).
pub fn format_ms(t_ms: i64) -> String {
    Utc.timestamp_millis_opt(t_ms).single().map(|t| t.to_rfc3339()).unwrap_or_else(|| t_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Kolkata, Europe::Berlin, UTC};

    fn ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        resolve_local(tz, NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap())
    }

    #[test]
    fn day_window_follows_local_midnight() {
        let t = ms(Berlin, 2026, 3, 10, 15, 30);
        assert_eq!(window_start(Window::Day, Berlin, t), ms(Berlin, 2026, 3, 10, 0, 0));
        assert_eq!(window_end(Window::Day, Berlin, t), ms(Berlin, 2026, 3, 11, 0, 0));
        // 23 hours long on the spring-forward day.
        let dst = ms(Berlin, 2026, 3, 29, 12, 0);
        assert_eq!(window_end(Window::Day, Berlin, dst) - window_start(Window::Day, Berlin, dst), 23 * 3_600_000);
        let fall = ms(Berlin, 2026, 10, 25, 12, 0);
        assert_eq!(window_end(Window::Day, Berlin, fall) - window_start(Window::Day, Berlin, fall), 25 * 3_600_000);
    }

    #[test]
    fn hour_and_minute_windows_respect_half_hour_offsets() {
        let t = ms(Kolkata, 2026, 1, 5, 10, 47);
        assert_eq!(window_start(Window::Hour, Kolkata, t), ms(Kolkata, 2026, 1, 5, 10, 0));
        assert_eq!(window_end(Window::Hour, Kolkata, t), ms(Kolkata, 2026, 1, 5, 11, 0));
        assert_eq!(window_start(Window::Minute, UTC, 61_500), 60_000);
        assert_eq!(window_end(Window::Minute, UTC, 61_500), 120_000);
    }

    #[test]
    fn month_window_rolls_over_the_year() {
        let t = ms(New_York, 2026, 12, 31, 23, 59);
        assert_eq!(window_start(Window::Month, New_York, t), ms(New_York, 2026, 12, 1, 0, 0));
        assert_eq!(window_end(Window::Month, New_York, t), ms(New_York, 2027, 1, 1, 0, 0));
    }

    #[test]
    fn windows_contain_their_instant() {
        for tz in [UTC, Berlin, New_York, Kolkata] {
            let mut t = ms(tz, 2026, 3, 1, 0, 0);
            while t < ms(tz, 2026, 4, 15, 0, 0) {
                for w in Window::ALL {
                    let (s, e) = (window_start(w, tz, t), window_end(w, tz, t));
                    assert!(s <= t && t < e, "{w:?} {tz} {t}");
                    assert_eq!(window_start(w, tz, e), e, "next window starts at the end");
                }
                t += 37 * 60_000 + 11_000;
            }
        }
    }

    #[test]
    fn business_hours_defer_to_next_business_morning() {
        let bh = BusinessHours::weekdays(parse_hhmm("08:00").unwrap(), parse_hhmm("18:00").unwrap());
        // Friday 2026-03-27 19:00 Berlin: next opening Monday 08:00, after the
        // DST change of Sunday 29 March.
        let fri = ms(Berlin, 2026, 3, 27, 19, 0);
        assert!(!bh.is_open(Berlin, fri));
        let mon = bh.next_opening(Berlin, fri).unwrap();
        assert_eq!(mon, ms(Berlin, 2026, 3, 30, 8, 0));
        assert_eq!(local(Berlin, mon).hour(), 8);
        // Inside hours: open now.
        let tue = ms(Berlin, 2026, 3, 31, 9, 15);
        assert_eq!(bh.next_opening(Berlin, tue), Some(tue));
        // Before opening on a weekday: same morning.
        let early = ms(New_York, 2026, 11, 2, 6, 0);
        assert_eq!(bh.next_opening(New_York, early), Some(ms(New_York, 2026, 11, 2, 8, 0)));
        // 18:00 itself is closed.
        assert!(!bh.is_open(UTC, ms(UTC, 2026, 3, 31, 18, 0)));
    }

    #[test]
    fn a_gap_time_resolves_to_the_end_of_the_gap() {
        let naive = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap().and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(resolve_local(Berlin, naive), ms(Berlin, 2026, 3, 29, 3, 0));
    }
}

/// The wall clock, in ms since the epoch: for previews, metrics, liveness
/// and fields a person's client fills in; never read inside a decision
/// (decisions take their time from the log).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
