//! `GET /v1/alerts`: the most recent alerts, read from the alerts topic by
//! every instance (from shortly before its end at start-up), kept in a
//! bounded ring.

use crate::codec::{self, RecordType};
use crate::model::Alert;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Alerts kept (and read back from the topic at start-up).
pub const ALERTS_KEPT: usize = 2_000;

#[derive(Default)]
pub struct Alerts {
    ring: Mutex<VecDeque<Alert>>,
}

/// Which alerts a request asks for.
#[derive(Default)]
pub struct AlertFilter<'a> {
    pub tenant: Option<&'a str>,
    pub kind: Option<&'a str>,
    /// A scope, or a prefix of one ending in ':' (`sender_domain:`).
    pub scope: Option<&'a str>,
    pub since_ms: Option<i64>,
}

impl AlertFilter<'_> {
    fn keeps(&self, a: &Alert) -> bool {
        self.tenant.is_none_or(|t| t == a.tenant)
            && self.kind.is_none_or(|k| k == a.kind)
            && self.scope.is_none_or(|s| if s.ends_with(':') { a.scope.starts_with(s) } else { a.scope == s })
            && self.since_ms.is_none_or(|t| a.at_ms >= t)
    }
}

impl Alerts {
    /// Takes a record of the alerts topic; one that is not an alert is
    /// counted and skipped.
    pub fn take(&self, payload: &[u8]) {
        match codec::decode::<Alert>(RecordType::Alert, payload) {
            Ok(a) => {
                let mut ring = self.ring.lock().expect("alerts lock");
                if ring.len() >= ALERTS_KEPT {
                    ring.pop_front();
                }
                ring.push_back(a);
            }
            Err(e) => {
                metrics::counter!("sendgate_api_undecodable_alerts_total").increment(1);
                tracing::debug!(error = %e, "alerts reader: a record that is not an alert");
            }
        }
    }

    /// Newest first, up to `limit`.
    pub fn recent(&self, filter: &AlertFilter<'_>, limit: usize) -> Vec<Alert> {
        self.ring.lock().expect("alerts lock").iter().rev().filter(|a| filter.keeps(a)).take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(n: i64, tenant: &str, kind: &str, scope: &str) -> Vec<u8> {
        let a = Alert { alert_id: n.to_string(), tenant: tenant.into(), scope: scope.into(), kind: kind.into(), message: "m".into(), at_ms: n, details: Default::default() };
        codec::encode(RecordType::Alert, &a).unwrap()
    }

    #[test]
    fn alerts_are_kept_bounded_newest_first_and_filtered() {
        let alerts = Alerts::default();
        for n in 0..(ALERTS_KEPT as i64 + 10) {
            alerts.take(&alert(n, if n % 2 == 0 { "acme" } else { "globex" }, "tier_changed", "sender_domain:a.com"));
        }
        alerts.take(b"not an alert");
        alerts.take(&alert(1_000_000, "acme", "isp_backoff_escalated", "recipient_domain:gmail.com"));
        let all = alerts.recent(&AlertFilter::default(), usize::MAX);
        assert_eq!(all.len(), ALERTS_KEPT);
        assert_eq!(all[0].at_ms, 1_000_000);
        let acme = alerts.recent(&AlertFilter { tenant: Some("acme"), kind: Some("tier_changed"), ..Default::default() }, 3);
        assert_eq!(acme.iter().map(|a| a.at_ms).collect::<Vec<_>>(), vec![ALERTS_KEPT as i64 + 8, ALERTS_KEPT as i64 + 6, ALERTS_KEPT as i64 + 4]);
        assert_eq!(alerts.recent(&AlertFilter { scope: Some("recipient_domain:"), ..Default::default() }, 10).len(), 1);
        assert_eq!(alerts.recent(&AlertFilter { since_ms: Some(ALERTS_KEPT as i64 + 9), ..Default::default() }, 10).len(), 2);
    }
}
