//! Answers from any instance. A stage's partitions are spread over the
//! instances of its group, and an instance's API can read only the state of
//! the partitions it serves. So each instance announces, on the compacted
//! instances topic (keyed by instance id), the stage partitions it has
//! restored and serves and the URL its API answers on; every instance reads
//! every announcement into a [`Directory`]. A request for a key another
//! instance serves is forwarded there ([`Forwarder`]), with the caller's own
//! token: the owner checks it again, so forwarding grants nothing. A listing
//! (held intents, senders) asks every instance for its own part.
//!
//! An instance that stops cleanly withdraws its announcement (a tombstone);
//! one that crashes is forgotten once its announcement is older than
//! [`STALE_AFTER_MS`]. During a rebalance a partition may be served by
//! nobody for a moment: such a request is answered 503 with Retry-After.

use crate::config::Config;
use crate::stage::StageKind;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often an instance announces itself even when nothing changed.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
/// An announcement older than this (three missed) is of a gone instance.
pub const STALE_AFTER_MS: i64 = 35_000;
/// Most instances the directory keeps (a bound on a topic anyone with
/// write access could fill).
pub const DIRECTORY_MAX: usize = 1_024;
/// The header a forwarded request carries: the instance that forwarded it.
/// The receiver answers from its own partitions only, never forwards again.
pub const FORWARDED_BY: &str = "x-sendgate-forwarded-by";
/// The header on every answer: the instance that computed it.
pub const ANSWERED_BY: &str = "x-sendgate-answered-by";

/// The stage partitions each local task serves (restored and owned).
pub type Serving = HashMap<StageKind, crate::runtime::standby::Owned>;

/// What an instance announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub instance: String,
    pub api_url: String,
    /// Stage name -> partitions served.
    pub serving: BTreeMap<String, BTreeSet<i32>>,
    /// When announced (the announcer's clock; only for staleness).
    pub at_ms: i64,
}

impl Announcement {
    pub fn serves(&self, kind: StageKind, partition: i32) -> bool {
        self.serving.get(kind.name()).is_some_and(|s| s.contains(&partition))
    }
}

/// This instance's announcement as of now.
pub fn local_announcement(instance: &str, api_url: &str, serving: &Serving, at_ms: i64) -> Announcement {
    let serving = serving.iter().map(|(k, owned)| (k.name().to_string(), owned.lock().expect("not poisoned").iter().copied().collect())).collect();
    Announcement { instance: instance.to_string(), api_url: api_url.to_string(), serving, at_ms }
}

/// Every other instance's latest announcement.
pub struct Directory {
    me: String,
    others: Mutex<HashMap<String, Announcement>>,
}

impl Directory {
    pub fn new(me: &str) -> Directory {
        Directory { me: me.to_string(), others: Mutex::default() }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Takes a record of the instances topic: an announcement, or a
    /// tombstone (None) of the keyed instance.
    pub fn apply(&self, instance: &str, a: Option<Announcement>) {
        if instance == self.me {
            return;
        }
        let mut others = self.others.lock().expect("directory lock");
        match a {
            Some(a) if a.instance == instance => {
                if others.len() < DIRECTORY_MAX || others.contains_key(instance) {
                    others.insert(instance.to_string(), a);
                }
            }
            _ => {
                others.remove(instance);
            }
        }
    }

    /// The other instances announced within the last [`STALE_AFTER_MS`].
    pub fn live(&self, now_ms: i64) -> Vec<Announcement> {
        let others = self.others.lock().expect("directory lock");
        let mut v: Vec<Announcement> = others.values().filter(|a| now_ms - a.at_ms <= STALE_AFTER_MS).cloned().collect();
        v.sort_by(|a, b| a.instance.cmp(&b.instance));
        v
    }

    /// The live instance that serves every one of `needs`; the most
    /// recently announced when two claim them (a rebalance in flight).
    pub fn serving_all(&self, needs: &[(StageKind, i32)], now_ms: i64) -> Option<Announcement> {
        self.live(now_ms).into_iter().filter(|a| needs.iter().all(|(k, p)| a.serves(*k, *p))).max_by_key(|a| a.at_ms)
    }

    /// Who serves one partition, for messages: an instance id or "nobody".
    pub fn who_serves(&self, kind: StageKind, partition: i32, now_ms: i64) -> String {
        self.live(now_ms).into_iter().filter(|a| a.serves(kind, partition)).max_by_key(|a| a.at_ms).map(|a| a.instance).unwrap_or_else(|| "no instance".into())
    }
}

use crate::clock::wall_ms as now_ms;

/// Announces this instance and reads every announcement into `directory`
/// until `shutdown`, on its own thread; withdraws the announcement at a
/// clean stop.
pub fn spawn(cfg: &Config, topic: String, directory: Arc<Directory>, serving: Serving, api_url: String, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, String> {
    let consumer = super::board::reader(cfg, "instances reader", 100)?;
    let producer: BaseProducer = cfg
        .producer_config()
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .set("queue.buffering.max.messages", "1000")
        .set("log_level", "4")
        .create()
        .map_err(|e| format!("instances announcer: {e}"))?;
    let me = cfg.instance_id.clone();
    std::thread::Builder::new()
        .name("api-instances".into())
        .spawn(move || {
            let mut assigned = false;
            let mut last: Option<(Announcement, Instant)> = None;
            let mut backoff = Duration::from_millis(200);
            while !shutdown.load(Ordering::Relaxed) {
                if !assigned {
                    match super::board::assign_all(&consumer, &topic, |_, _| Offset::Beginning) {
                        Ok(()) => assigned = true,
                        Err(e) => {
                            tracing::warn!(error = %e, "instances reader: cannot read the instances topic yet; retrying");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    }
                }
                let now = local_announcement(&me, &api_url, &serving, now_ms());
                let due = match &last {
                    None => true,
                    Some((a, at)) => a.serving != now.serving || at.elapsed() >= ANNOUNCE_EVERY,
                };
                if due {
                    let value = serde_json::to_vec(&now).expect("an announcement serialises");
                    match producer.send(BaseRecord::to(&topic).key(me.as_bytes()).payload(&value)) {
                        Ok(()) => last = Some((now, Instant::now())),
                        Err((e, _)) => tracing::warn!(error = %e, "instances: announcement not sent; retrying"),
                    }
                }
                producer.poll(Duration::ZERO);
                // Drain what arrived; the poll's wait paces the loop.
                let mut budget = 1_000;
                while budget > 0 {
                    budget -= 1;
                    match consumer.poll(Duration::from_millis(if budget == 999 { 200 } else { 0 })) {
                        Some(Ok(m)) => {
                            let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { continue };
                            let a = m.payload().map(serde_json::from_slice::<Announcement>);
                            match a {
                                None => directory.apply(&key, None),
                                Some(Ok(a)) => directory.apply(&key, Some(a)),
                                Some(Err(e)) => tracing::debug!(error = %e, "instances: a record that is not an announcement"),
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "instances reader");
                            break;
                        }
                        None => break,
                    }
                }
            }
            // Withdrawn at once, rather than waited out by the others.
            if producer.send(BaseRecord::<[u8], [u8]>::to(&topic).key(me.as_bytes())).is_ok() {
                let _ = producer.flush(Duration::from_secs(3));
            }
        })
        .map_err(|e| e.to_string())
}

/// A forwarded request's answer.
pub struct PeerAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends requests on to other instances' APIs.
pub struct Forwarder {
    agent: ureq::Agent,
}

/// Longest a forwarded request may take (within the API's own timeout).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(20);
/// Most bytes of a peer's answer read.
const FORWARD_BODY_MAX: u64 = 8 * 1024 * 1024;

impl Forwarder {
    /// Trusts the system's roots, and `api_peer_ca_file`'s when given.
    pub fn new(cfg: &Config) -> Result<Forwarder, String> {
        let mut tls = native_tls::TlsConnector::builder();
        if !cfg.api_peer_ca_file.is_empty() {
            let pem = std::fs::read_to_string(&cfg.api_peer_ca_file).map_err(|e| format!("api_peer_ca_file {:?}: {e}", cfg.api_peer_ca_file))?;
            // A bundle: every certificate in it, not only the first.
            const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
            const END: &str = "-----END CERTIFICATE-----";
            let blocks: Vec<&str> = pem.split_inclusive(END).filter_map(|b| b.find(BEGIN).map(|at| &b[at..])).collect();
            if blocks.is_empty() {
                return Err(format!("api_peer_ca_file {:?} holds no PEM certificate", cfg.api_peer_ca_file));
            }
            for b in blocks {
                let cert = native_tls::Certificate::from_pem(b.as_bytes()).map_err(|e| format!("api_peer_ca_file {:?}: a certificate that does not parse: {e}", cfg.api_peer_ca_file))?;
                tls.add_root_certificate(cert);
            }
        }
        let tls = tls.build().map_err(|e| format!("forwarding TLS: {e}"))?;
        let agent = ureq::AgentBuilder::new().timeout(FORWARD_TIMEOUT).max_idle_connections_per_host(4).tls_connector(Arc::new(tls)).build();
        Ok(Forwarder { agent })
    }

    /// Sends `method path_and_query` with the caller's Authorization header
    /// (and body) to `peer`, marked as forwarded by `me`.
    pub async fn send(&self, peer: &Announcement, me: &str, method: &str, path_and_query: &str, authorization: Option<&str>, body: Option<Vec<u8>>) -> Result<PeerAnswer, String> {
        let url = format!("{}{}", peer.api_url, path_and_query);
        let mut req = self.agent.request(method, &url).set(FORWARDED_BY, me);
        if let Some(a) = authorization {
            req = req.set("authorization", a);
        }
        let instance = peer.instance.clone();
        tokio::task::spawn_blocking(move || {
            let answer = match body {
                Some(b) => req.set("content-type", "application/json").send_bytes(&b),
                None => req.call(),
            };
            let resp = match answer {
                Ok(r) => r,
                // An error status is still the peer's answer.
                Err(ureq::Error::Status(_, r)) => r,
                Err(e) => return Err(format!("instance {instance} ({url}) did not answer: {e}")),
            };
            let status = resp.status();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(resp.into_reader(), FORWARD_BODY_MAX), &mut body).map_err(|e| format!("instance {instance}: {e}"))?;
            Ok(PeerAnswer { status, body })
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(id: &str, sender: &[i32], at_ms: i64) -> Announcement {
        Announcement { instance: id.into(), api_url: format!("http://{id}"), serving: BTreeMap::from([("sender".to_string(), sender.iter().copied().collect())]), at_ms }
    }

    #[test]
    fn the_directory_finds_the_live_owner_and_forgets_the_gone() {
        let d = Directory::new("me");
        d.apply("a", Some(ann("a", &[0, 1], 1_000)));
        d.apply("b", Some(ann("b", &[2], 1_000)));
        d.apply("me", Some(ann("me", &[3], 1_000)));
        let needs = [(StageKind::Sender, 1)];
        assert_eq!(d.serving_all(&needs, 2_000).map(|a| a.instance), Some("a".into()));
        assert!(d.serving_all(&[(StageKind::Sender, 1), (StageKind::Sender, 2)], 2_000).is_none(), "no one instance serves both");
        assert!(d.serving_all(&[(StageKind::Sender, 3)], 2_000).is_none(), "its own announcement is not a peer");
        // During a rebalance both claim partition 1: the latest wins.
        d.apply("b", Some(ann("b", &[1, 2], 1_500)));
        assert_eq!(d.who_serves(StageKind::Sender, 1, 2_000), "b");
        assert!(d.serving_all(&needs, 1_500 + STALE_AFTER_MS + 1).is_none(), "stale announcements are of gone instances");
        d.apply("b", None);
        assert_eq!(d.who_serves(StageKind::Sender, 2, 2_000), "no instance");
        // A record keyed by one instance cannot speak for another.
        d.apply("c", Some(ann("a", &[4], 2_000)));
        assert_eq!(d.who_serves(StageKind::Sender, 4, 2_000), "no instance");
    }
}
