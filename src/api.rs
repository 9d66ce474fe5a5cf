//! The processor's HTTP API, beside the stage tasks:
//!
//! - `POST /v1/simulate`: intents (a JSON object or an array) evaluated
//!   against the live state without reserving anything: the decision each
//!   would get now, and every check behind it. Intents of one request are
//!   evaluated in order, each seeing the ones before it.
//! - `GET /v1/usage?scope=mailbox:A|sender_domain:D|tenant:T&tenant=T`:
//!   used, limit and remaining per window, the signal tiers and any pause,
//!   so a sender can check capacity before a batch.
//!
//! - `GET /healthz`: the only answer without a token.
//!
//! Both read the committed state of this instance's stages (a copy-on-write
//! view: nothing they do reaches live state or any topic). "Now" is the wall
//! clock here: these answers are previews, never decisions.
//!
//! Every request but the health check carries `Authorization: Bearer TOKEN`
//! ([`auth`]): a tenant's token sees and acts on that tenant alone, an
//! operator's token on every tenant. No token, no access; no tokens
//! configured, no access at all.

use crate::clock::{window_end, window_start, Window};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::{LimitScope, PolicyBook, Scope};
use crate::stage::driver::{partition_for, Driver};
use crate::stage::ingress::Ingress;
use crate::stage::pipeline::{self, domain_of};
use crate::stage::signals::{self, Tier};
use crate::stage::{keys, SenderConfig, StageKind};
use crate::state::{BaseStore, CopyOnWrite, StageStore, StateValue};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Most intents one simulation takes.
pub const SIMULATE_MAX: usize = 1_000;

/// What the API reads: each stage's committed state.
pub struct LiveState {
    pub stores: HashMap<StageKind, Arc<dyn BaseStore>>,
    pub ingress: Ingress,
    pub partitions: i32,
    pub sender: SenderConfig,
}

#[derive(Debug, Serialize)]
pub struct CheckOut {
    pub stage: &'static str,
    pub check: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Simulated {
    pub decision: Decision,
    pub checks: Vec<CheckOut>,
}

pub fn simulate(live: &LiveState, intents: &[SendIntent], now_ms: i64) -> Result<Vec<Simulated>, String> {
    if intents.len() > SIMULATE_MAX {
        return Err(format!("at most {SIMULATE_MAX} intents per simulation, got {}", intents.len()));
    }
    let mut driver = Driver::with_stores(live.ingress.clone(), live.partitions, live.sender.clone(), |k| Box::new(CopyOnWrite::new(live.stores[&k].clone()))).with_trace();
    let mut out = Vec::new();
    for (n, intent) in intents.iter().enumerate() {
        let bytes = codec::encode(RecordType::SendIntent, intent).map_err(|e| e.to_string())?;
        let rec = InputRecord { topic: &live.ingress.intents, partition: -1, offset: n as i64, key: None, payload: Some(&bytes), timestamp_ms: Some(now_ms) };
        let refused = driver.refused.len();
        driver.submit(&rec);
        if let Some(r) = driver.refused.get(refused) {
            return Err(format!("intent #{} ({}): {}", n + 1, intent.intent_id, r.reason));
        }
        driver.run();
        let decision = driver.decisions.drain(..).rev().find(|d| d.intent_id == intent.intent_id).ok_or_else(|| format!("intent {} got no decision", intent.intent_id))?;
        let checks = driver.traces.drain(..).filter(|t| t.intent_id == intent.intent_id).map(|t| CheckOut { stage: t.stage.name(), check: t.check, outcome: t.outcome, detail: t.detail }).collect();
        driver.alerts.clear();
        out.push(Simulated { decision, checks });
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct WindowUsage {
    pub scope: String,
    pub class: &'static str,
    pub window: &'static str,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    pub resets_at_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct SignalsOut {
    pub window_hours: u32,
    pub sends: i64,
    pub hard_bounces: i64,
    pub complaints: i64,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
    pub bounce_tier: &'static str,
    pub complaint_tier: &'static str,
}

#[derive(Debug, Serialize)]
pub struct UsageOut {
    pub scope: String,
    pub policy_version: i64,
    pub windows: Vec<WindowUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
}

/// The tenant that owns a sender domain, from the committed policies of the
/// sender stage partition that keeps it.
pub fn owner_of(live: &LiveState, domain: &str) -> Result<Option<String>, String> {
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&StageKind::Sender].clone())));
    let view = store.view(partition_for(domain, live.partitions));
    let mut book = PolicyBook::default();
    pipeline::load_policies(&view, &mut book).map_err(|e| e.to_string())?;
    Ok(book.owner_of(domain).map(str::to_string))
}

pub fn usage(live: &LiveState, scope: &Scope, tenant: &str, now_ms: i64) -> Result<UsageOut, String> {
    let (kind, key, domain, mailbox) = match scope {
        Scope::Mailbox(m) => (StageKind::Sender, domain_of(m).to_string(), domain_of(m).to_string(), m.clone()),
        Scope::SenderDomain(d) => (StageKind::Sender, d.clone(), d.clone(), String::new()),
        Scope::Tenant(t) => (StageKind::Tenant, t.clone(), String::new(), String::new()),
        other => return Err(format!("usage is kept for mailbox:, sender_domain: and tenant: scopes, not {other}")),
    };
    let tenant = if let Scope::Tenant(t) = scope { t.as_str() } else { tenant };
    let mut store = StageStore::new(Box::new(CopyOnWrite::new(live.stores[&kind].clone())));
    let view = store.view(partition_for(&key, live.partitions));
    let mut book = PolicyBook::default();
    pipeline::load_policies(&view, &mut book).map_err(|e| e.to_string())?;
    let policy = book.effective(tenant, &domain, &mailbox, None);
    let get = |k: &[u8]| view.get(k).map_err(|e| e.to_string());

    let mut tier = Tier::Healthy;
    let mut signals_out = None;
    let mut paused = None;
    if !domain.is_empty() {
        let ring = signals::load(&view, &domain).map_err(|e| e.to_string())?;
        let rates = signals::totals(&ring, now_ms, policy.signals.window_hours);
        let (bt, ct) = signals::tiers(&rates, &policy.signals);
        tier = bt.max(ct);
        signals_out = Some(SignalsOut {
            window_hours: policy.signals.window_hours,
            sends: rates.sends,
            hard_bounces: rates.hard_bounces,
            complaints: rates.complaints,
            bounce_rate: rates.bounce_rate(),
            complaint_rate: rates.complaint_rate(),
            bounce_tier: bt.as_str(),
            complaint_tier: ct.as_str(),
        });
        for s in [format!("sender_domain:{domain}"), format!("mailbox:{mailbox}")] {
            if let Some(StateValue::Pause(p)) = get(&keys::pause(&s))? {
                paused = Some(format!("{s} paused since {} by {} ({})", crate::clock::format_ms(p.since_ms), p.by, p.reason));
            }
        }
    }
    let (scope_kind, label) = match scope {
        Scope::Mailbox(m) => (LimitScope::Mailbox, format!("mailbox:{m}")),
        Scope::SenderDomain(d) => (LimitScope::SenderDomain, format!("sender_domain:{d}")),
        _ => (LimitScope::Tenant, format!("tenant:{tenant}")),
    };
    let mut windows = Vec::new();
    for class in [IntentClass::Outbound, IntentClass::Transactional] {
        for limit in policy.limits_for(class).filter(|l| l.key.scope == scope_kind) {
            let w: Window = limit.key.window;
            let max = if kind == StageKind::Sender && tier >= Tier::Slow && limit.max > 0 { (limit.max / 2).max(1) } else { limit.max } as i64;
            let used = view.get_counter(&keys::counter(&label, class.as_str(), w.as_str()), window_start(w, policy.tz, now_ms)).map_err(|e| e.to_string())?.count;
            windows.push(WindowUsage { scope: label.clone(), class: class.as_str(), window: w.as_str(), used, limit: max, remaining: (max - used).max(0), resets_at_ms: window_end(w, policy.tz, now_ms) });
        }
    }
    Ok(UsageOut { scope: label, policy_version: policy.version, windows, signals: signals_out, paused })
}

pub mod auth {
    //! Bearer tokens of the HTTP API, from the environment
    //! (`SENDGATE_API_TOKENS=operator=T1,tenant:acme=T2`) or a file
    //! (`SENDGATE_API_TOKENS_FILE`, one `operator T1` or `tenant:acme T2` per
    //! line, `#` comments): secrets, so never from the configuration file.

    /// Who a request acts as.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Caller {
        Operator,
        Tenant(String),
    }

    impl Caller {
        /// Whether this caller may see or act on `tenant`'s data.
        pub fn may_act_for(&self, tenant: &str) -> bool {
            match self {
                Caller::Operator => true,
                Caller::Tenant(t) => t == tenant,
            }
        }
    }

    /// Shorter tokens are refused at start-up: a guessable token is none.
    pub const TOKEN_MIN_LEN: usize = 16;

    #[derive(Default)]
    pub struct Tokens(Vec<(String, Caller)>);

    impl std::fmt::Debug for Tokens {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Tokens({} configured)", self.0.len())
        }
    }

    impl Tokens {
        /// From the environment: SENDGATE_API_TOKENS, else the file named
        /// by SENDGATE_API_TOKENS_FILE, else none.
        pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Tokens, String> {
            if let Some(list) = env("SENDGATE_API_TOKENS") {
                let pairs = list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| p.split_once('=').map(|(w, t)| (w.trim().to_string(), t.trim().to_string())).ok_or_else(|| format!("SENDGATE_API_TOKENS: {p:?} is not WHO=TOKEN (WHO: operator or tenant:T)")));
                return Tokens::from_pairs(pairs.collect::<Result<Vec<_>, _>>()?, "SENDGATE_API_TOKENS");
            }
            if let Some(path) = env("SENDGATE_API_TOKENS_FILE") {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("SENDGATE_API_TOKENS_FILE {path:?} cannot be read: {e}"))?;
                let pairs = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| l.split_once(char::is_whitespace).map(|(w, t)| (w.trim().to_string(), t.trim().to_string())).ok_or_else(|| format!("SENDGATE_API_TOKENS_FILE {path:?}: a line is not `WHO TOKEN`")));
                return Tokens::from_pairs(pairs.collect::<Result<Vec<_>, _>>()?, "SENDGATE_API_TOKENS_FILE");
            }
            Ok(Tokens::default())
        }

        pub fn from_pairs(pairs: Vec<(String, String)>, source: &str) -> Result<Tokens, String> {
            let mut out: Vec<(String, Caller)> = Vec::new();
            for (who, token) in pairs {
                let caller = match who.as_str() {
                    "operator" => Caller::Operator,
                    w => match w.strip_prefix("tenant:") {
                        Some(t) if !t.is_empty() => Caller::Tenant(t.to_string()),
                        _ => return Err(format!("{source}: {who:?} must be operator or tenant:T")),
                    },
                };
                if token.len() < TOKEN_MIN_LEN {
                    return Err(format!("{source}: the token of {who} is shorter than {TOKEN_MIN_LEN} characters"));
                }
                if out.iter().any(|(t, _)| *t == token) {
                    return Err(format!("{source}: one token is given twice (each caller needs its own)"));
                }
                out.push((token, caller));
            }
            Ok(Tokens(out))
        }

        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }

        /// The caller of an `Authorization` header's value, if it names a
        /// known token. Compared in constant time, so a reply's timing does
        /// not tell how much of a guess was right.
        pub fn caller(&self, authorization: Option<&str>) -> Option<Caller> {
            let presented = authorization?.strip_prefix("Bearer ")?.trim().as_bytes();
            let mut found = None;
            for (token, caller) in &self.0 {
                let t = token.as_bytes();
                let same = t.len() == presented.len() && t.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
                if same && found.is_none() {
                    found = Some(caller.clone());
                }
            }
            found
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tokens_name_their_caller_and_bad_lists_are_refused() {
            let t = Tokens::from_env(&|k| (k == "SENDGATE_API_TOKENS").then(|| "operator=op-0123456789abcdef, tenant:acme=acme-0123456789abcdef".to_string())).unwrap();
            assert_eq!(t.caller(Some("Bearer op-0123456789abcdef")), Some(Caller::Operator));
            assert_eq!(t.caller(Some("Bearer acme-0123456789abcdef")), Some(Caller::Tenant("acme".into())));
            assert_eq!(t.caller(Some("Bearer acme-0123456789abcdeX")), None);
            assert_eq!(t.caller(Some("acme-0123456789abcdef")), None, "the scheme is required");
            assert_eq!(t.caller(None), None);
            assert!(Caller::Tenant("acme".into()).may_act_for("acme") && !Caller::Tenant("acme".into()).may_act_for("globex"));
            for bad in ["operator=short", "someone=0123456789abcdef0", "operator", "operator=0123456789abcdef0,tenant:a=0123456789abcdef0"] {
                assert!(Tokens::from_env(&|k| (k == "SENDGATE_API_TOKENS").then(|| bad.to_string())).is_err(), "{bad}");
            }
            assert!(Tokens::from_env(&|_| None).unwrap().is_empty());
        }
    }
}

pub mod server {
    //! A small HTTP/1 server for the API, on its own thread.

    use super::auth::{Caller, Tokens};
    use super::*;
    use http_body_util::{BodyExt, Full, Limited};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Method, Request, Response, StatusCode};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Largest request body accepted.
    const BODY_MAX: usize = 1 << 20;
    const CONNECTIONS_MAX: usize = 64;

    fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
        let body = serde_json::to_vec_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
        Response::builder().status(status).header("content-type", "application/json").body(Full::new(Bytes::from(body))).expect("a valid response")
    }

    fn error(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
        json(status, &serde_json::json!({ "error": msg }))
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    async fn handle(req: Request<Incoming>, live: Arc<LiveState>, tokens: Arc<Tokens>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
        let path = req.uri().path().to_string();
        if req.method() == Method::GET && path == "/healthz" {
            return Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" })));
        }
        let Some(caller) = tokens.caller(req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok())) else {
            let why = if tokens.is_empty() {
                "no API tokens are configured (SENDGATE_API_TOKENS or SENDGATE_API_TOKENS_FILE): every request is refused"
            } else {
                "send Authorization: Bearer TOKEN (a tenant's token or an operator's)"
            };
            let mut r = error(StatusCode::UNAUTHORIZED, why.into());
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
            return Ok(r);
        };
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%40", "@").replace("%3A", ":").replace("%3a", ":")))
            .collect();
        Ok(match (req.method().clone(), path.as_str()) {
            (Method::POST, "/v1/simulate") => {
                let body = match Limited::new(req.into_body(), BODY_MAX).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e} (at most {BODY_MAX} bytes)"))),
                };
                let parsed: Result<Vec<serde_json::Value>, String> = match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(serde_json::Value::Array(a)) => Ok(a),
                    Ok(v @ serde_json::Value::Object(_)) => Ok(vec![v]),
                    Ok(_) => Err("send an intent object or an array of them".into()),
                    Err(e) => Err(format!("not JSON: {e}")),
                };
                let intents: Result<Vec<SendIntent>, String> = parsed.and_then(|vs| {
                    vs.into_iter()
                        .enumerate()
                        .map(|(i, mut v)| {
                            if let serde_json::Value::Object(o) = &mut v {
                                o.entry("requested_at_ms").or_insert(serde_json::Value::from(now_ms()));
                                o.entry("requires_approval").or_insert(serde_json::Value::Bool(false));
                            }
                            serde_json::from_value(v).map_err(|e| format!("intent #{}: {e}", i + 1))
                        })
                        .collect()
                });
                if let Ok(is) = &intents {
                    if let Some((n, i)) = is.iter().enumerate().find(|(_, i)| !caller.may_act_for(&i.tenant)) {
                        return Ok(error(StatusCode::FORBIDDEN, format!("intent #{} is of tenant {:?}; this token acts for another tenant", n + 1, i.tenant)));
                    }
                }
                match intents.and_then(|is| simulate(&live, &is, now_ms())) {
                    Ok(r) => json(StatusCode::OK, &r),
                    Err(e) => error(StatusCode::BAD_REQUEST, e),
                }
            }
            (Method::GET, "/v1/usage") => {
                let Some(scope) = query.get("scope") else {
                    return Ok(error(StatusCode::BAD_REQUEST, "give ?scope=mailbox:A, sender_domain:D or tenant:T (and &tenant=T for the first two)".into()));
                };
                let own = match &caller {
                    Caller::Tenant(t) => t.clone(),
                    Caller::Operator => "default".into(),
                };
                let tenant = query.get("tenant").cloned().unwrap_or(own);
                let scope_tenant = scope.strip_prefix("tenant:").map(str::to_string);
                if let Some(other) = [Some(&tenant), scope_tenant.as_ref()].into_iter().flatten().find(|t| !caller.may_act_for(t)) {
                    return Ok(error(StatusCode::FORBIDDEN, format!("tenant {other:?}: this token acts for another tenant")));
                }
                // A domain a tenant owns, and its mailboxes, are that tenant's to read.
                let domain = scope.strip_prefix("sender_domain:").or_else(|| scope.strip_prefix("mailbox:").map(domain_of));
                if let Some(d) = domain {
                    match owner_of(&live, d) {
                        Ok(Some(owner)) if !caller.may_act_for(&owner) || owner != tenant => {
                            return Ok(error(StatusCode::FORBIDDEN, format!("{scope} is kept for another tenant: this token acts for another tenant")));
                        }
                        Ok(_) => {}
                        Err(e) => return Ok(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
                    }
                }
                match Scope::parse(scope).and_then(|s| usage(&live, &s, &tenant, now_ms())) {
                    Ok(u) => json(StatusCode::OK, &u),
                    Err(e) => error(StatusCode::BAD_REQUEST, e),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "routes: POST /v1/simulate, GET /v1/usage, GET /healthz".into()),
        })
    }

    /// Serves until `shutdown` is set.
    pub fn spawn(addr: &str, live: Arc<LiveState>, tokens: Tokens, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, String> {
        let tokens = Arc::new(tokens);
        let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("api_addr {addr:?}: {e}"))?;
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| format!("api_addr {addr}: cannot listen: {e}"))?;
        std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("api runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).expect("api listener");
                    // Bounded: at most this many connections served at once.
                    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
                    while !shutdown.load(Ordering::Relaxed) {
                        let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await else { continue };
                        let Ok(permit) = slots.clone().acquire_owned().await else { break };
                        let live = live.clone();
                        let tokens = tokens.clone();
                        tokio::spawn(async move {
                            let _permit = permit;
                            let svc = hyper::service::service_fn(move |req| handle(req, live.clone(), tokens.clone()));
                            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        });
                    }
                });
            })
            .map_err(|e| e.to_string())
    }
}
