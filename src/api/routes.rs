//! The API's routes and handlers, and the OpenAPI document generated from
//! them (`/openapi.json`): each handler's `#[utoipa::path]` is its entry.

use super::auth::Caller;
use super::board::IntentKey;
use super::forward::{answer_from, gather, Hop};
use crate::stage::driver::partition_for;
use crate::stage::StageKind;
use super::{simulate, usage, Api, Simulated, UsageOut, SIMULATE_MAX};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::Scope;
use crate::stage::pipeline::domain_of;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Longest a request may wait for decisions (`wait_ms`).
pub const WAIT_MAX_MS: u64 = 30_000;

pub use super::error::{ApiError, ErrorBody};

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, msg.into())
}

/// The caller a request's bearer token names: 401 without a known token.
pub struct Authed(pub Caller);

impl FromRequestParts<Api> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let presented = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match api.tokens.caller(presented) {
            Some(c) => Ok(Authed(c)),
            None if api.tokens.is_empty() => Err(ApiError(StatusCode::UNAUTHORIZED, "no API tokens are configured (SENDGATE_API_TOKENS or SENDGATE_API_TOKENS_FILE): every request is refused".into())),
            None => Err(ApiError(StatusCode::UNAUTHORIZED, "send Authorization: Bearer TOKEN (a tenant's token or an operator's)".into())),
        }
    }
}

use crate::clock::wall_ms as now_ms;

/// Intents from a JSON object or array, with `requested_at_ms` (now) and
/// `requires_approval` (false) filled in when absent; each must be of a
/// tenant the caller acts for.
fn intents_from(body: Result<Bytes, BytesRejection>, caller: &Caller, max: usize) -> Result<(Vec<SendIntent>, bool), ApiError> {
    let body = body.map_err(|e| ApiError(e.status(), format!("request body: {e}")))?;
    let (values, single) = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(a)) => (a, false),
        Ok(v @ serde_json::Value::Object(_)) => (vec![v], true),
        Ok(_) => return Err(bad("send an intent object or an array of them")),
        Err(e) => return Err(bad(format!("not JSON: {e}"))),
    };
    if values.is_empty() || values.len() > max {
        return Err(bad(format!("send 1 to {max} intents, not {}", values.len())));
    }
    let mut intents = Vec::with_capacity(values.len());
    for (n, mut v) in values.into_iter().enumerate() {
        if let serde_json::Value::Object(o) = &mut v {
            o.entry("requested_at_ms").or_insert(serde_json::Value::from(now_ms()));
            o.entry("requires_approval").or_insert(serde_json::Value::Bool(false));
        }
        let i: SendIntent = serde_json::from_value(v).map_err(|e| bad(format!("intent #{}: {e}", n + 1)))?;
        if !caller.may_act_for(&i.tenant) {
            return Err(forbidden(format!("intent #{} is of tenant {:?}; this token acts for another tenant", n + 1, i.tenant)));
        }
        intents.push(i);
    }
    Ok((intents, single))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait up to this many milliseconds (at most 30000) for the
    /// decisions; 0 or absent: answer once the intents are published.
    pub wait_ms: Option<u64>,
}

/// The answer when some decisions did not come within `wait_ms`.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Published, and will be decided; not decided within the wait.
    pub pending: Vec<String>,
    /// The decisions that did come, in the order of the request.
    pub decisions: Vec<Decision>,
    /// Where each pending decision can be fetched, e.g.
    /// `/v1/decisions/{intent_id}?tenant=T`.
    pub poll: Vec<String>,
}

/// Publish intents (one object or an array of up to 1000), as producing
/// them to the intents topic would. With `wait_ms`, wait for their
/// decisions and answer with the decision records themselves (read
/// committed from the decisions topic), in the order of the request: an
/// object for one intent, an array for an array. 202 when the wait ends
/// first (or without `wait_ms`), with what came and where to fetch the rest.
/// An intent the processor would refuse as a dead letter is refused here
/// (400) and nothing of the request is published.
#[utoipa::path(post, path = "/v1/intents", tag = "intents", params(WaitQuery), request_body(content = Vec<SendIntent>, description = "An intent or an array of intents; requested_at_ms defaults to now, requires_approval to false."),
    responses(
        (status = 200, description = "Every intent's decision", body = Vec<Decision>),
        (status = 202, description = "Published; not every decision came within wait_ms", body = Accepted),
        (status = 400, description = "An intent is invalid; nothing was published", body = ErrorBody),
        (status = 401, description = "No known bearer token", body = ErrorBody),
        (status = 403, description = "An intent of another tenant", body = ErrorBody),
        (status = 503, description = "The intents could not be published", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn publish_intents(State(api): State<Api>, Authed(caller): Authed, query: Result<Query<WaitQuery>, QueryRejection>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let wait = q.wait_ms.unwrap_or(0);
    if wait > WAIT_MAX_MS {
        return Err(bad(format!("wait_ms is at most {WAIT_MAX_MS}")));
    }
    let (intents, single) = intents_from(body, &caller, SIMULATE_MAX)?;
    // The router's own checks, before anything is published: an intent it
    // would dead-letter is refused here with the same reason. The encoded
    // values checked are the ones published.
    let mut encoded = Vec::with_capacity(intents.len());
    for (n, i) in intents.iter().enumerate() {
        let bytes = codec::encode(RecordType::SendIntent, i).map_err(|e| bad(e.to_string()))?;
        let rec = InputRecord { topic: &api.live.ingress.intents, partition: -1, offset: 0, key: None, payload: Some(&bytes), timestamp_ms: Some(now_ms()) };
        api.live.ingress.route(&rec).map_err(|e| bad(format!("intent #{} ({}): {}", n + 1, i.intent_id, crate::redact::text(&e))))?;
        encoded.push(bytes);
    }
    let keys: Vec<IntentKey> = intents.iter().map(|i| (i.tenant.clone(), i.intent_id.clone())).collect();
    let seq = api.board.seq();
    api.publisher.publish(&intents, &encoded).await.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let found = if wait > 0 { api.board.wait_all(&keys, seq, tokio::time::Instant::now() + Duration::from_millis(wait)).await } else { vec![None; keys.len()] };
    if found.iter().all(Option::is_some) {
        let decisions: Vec<Decision> = found.into_iter().flatten().map(|d| (*d).clone()).collect();
        return Ok(if single { Json(&decisions[0]).into_response() } else { Json(decisions).into_response() });
    }
    let pending: Vec<&IntentKey> = keys.iter().zip(&found).filter(|(_, d)| d.is_none()).map(|(k, _)| k).collect();
    let accepted = Accepted {
        pending: pending.iter().map(|(_, id)| id.clone()).collect(),
        decisions: found.into_iter().flatten().map(|d| (*d).clone()).collect(),
        poll: pending.iter().map(|(t, id)| format!("/v1/decisions/{}?tenant={}", encode_path(id), encode_path(t))).collect(),
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Everything but RFC 3986's unreserved characters is percent-encoded in
/// the poll URLs' path and query values.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode_path(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// The intent's tenant: a tenant's token implies its own; an
    /// operator's token must name it (default "default").
    pub tenant: Option<String>,
}

fn tenant_of(caller: &Caller, asked: Option<String>) -> Result<String, ApiError> {
    let tenant = asked.unwrap_or_else(|| match caller {
        Caller::Tenant(t) => t.clone(),
        Caller::Operator => "default".into(),
    });
    if !caller.may_act_for(&tenant) {
        return Err(forbidden(format!("tenant {tenant:?}: this token acts for another tenant")));
    }
    Ok(tenant)
}

/// An intent's latest decision, from the decisions this instance has read
/// since it started (the most recent 100,000 of every tenant).
#[utoipa::path(get, path = "/v1/decisions/{intent_id}", tag = "intents", params(("intent_id" = String, Path, description = "The intent's id"), TenantQuery),
    responses(
        (status = 200, description = "The decision record", body = Decision),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No decision read for it (not decided yet, or older)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_decision(State(api): State<Api>, Authed(caller): Authed, Path(intent_id): Path<String>, query: Result<Query<TenantQuery>, QueryRejection>) -> Result<Json<Decision>, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let tenant = tenant_of(&caller, q.tenant)?;
    match api.board.get(&(tenant.clone(), intent_id.clone())) {
        Some(d) => Ok(Json((*d).clone())),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no decision for intent {intent_id:?} of tenant {tenant:?} among those read since this instance started (at most the last {}): not decided yet, or decided before", api.board.capacity()),
        )),
    }
}

/// What intents would get now, and every check behind it, without
/// reserving anything or publishing; intents of one request are evaluated
/// in order, each seeing the ones before it. Previews from this instance's
/// committed state and wall clock, never decisions.
#[utoipa::path(post, path = "/v1/simulate", tag = "previews", request_body(content = Vec<SendIntent>, description = "An intent or an array of up to 1000"),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), 
        (status = 200, description = "Each intent's would-be decision and checks", body = Vec<Simulated>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn simulate_intents(State(api): State<Api>, Authed(caller): Authed, hop: Hop, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let raw = body.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    let (intents, _) = intents_from(body, &caller, SIMULATE_MAX)?;
    let needs = simulate_needs(&api, &intents);
    // Standby copies will do for a preview: they trail the owners by the
    // changelog's lag at most.
    Ok(answer_from(&api, &hop, &needs, true, Some(raw), || async {
        match simulate(&api.live, &intents, now_ms()) {
            Ok(s) => Json(s).into_response(),
            Err(super::simulate::SimulateError::Invalid(e)) => bad(e).into_response(),
            Err(super::simulate::SimulateError::InFlight(e)) => super::forward::unavailable(e),
        }
    }).await)
}

/// Every stage partition the intents' evaluation reads (the recipient-domain
/// stage's key depends on the policy's provider groups: read from a
/// partition served here, else the built-in defaults, which the instance
/// answering computes again with its own).
fn simulate_needs(api: &Api, intents: &[SendIntent]) -> Vec<(crate::stage::StageKind, i32)> {
    use crate::stage::StageKind;
    let parts = api.live.partitions;
    let mut book = super::usage::any_book(&api.live);
    let mut needs = std::collections::BTreeSet::new();
    for i in intents {
        let mut i = i.clone();
        // As the router normalises them; an invalid one is refused by the
        // simulation itself.
        if let (Ok(s), Ok(r)) = (crate::model::Address::parse(&i.sender), crate::model::Address::parse(&i.recipient)) {
            i.sender = s.to_string();
            i.recipient = r.to_string();
        }
        // The tenant stage is visited only when a tenant-wide limit applies.
        let tenant_limits = book.effective(&i.tenant, domain_of(&i.sender), &i.sender, None).limits_at(i.class, &[crate::policy::LimitScope::Tenant]).next().is_some();
        for kind in StageKind::ALL.into_iter().filter(|k| *k != StageKind::Tenant || tenant_limits) {
            needs.insert((kind, partition_for(&crate::stage::pipeline::route_key(kind, &i, &mut book), parts)));
        }
    }
    needs.into_iter().collect()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// mailbox:ADDRESS, sender_domain:DOMAIN, tenant:T, recipient:ADDRESS
    /// or recipient_domain:DOMAIN (percent-encode a '+' in an address as
    /// %2B: a bare '+' in a query is a space).
    pub scope: Option<String>,
    /// The tenant whose policy applies; a tenant's token implies its own.
    pub tenant: Option<String>,
    /// recipient and recipient_domain scopes: the sender (an address or a
    /// domain) whose policy applies; a recipient domain's per-sender-domain
    /// windows and ISP backoff are shown only with it.
    pub sender: Option<String>,
}

/// A scope's windows with the numbers the next decision would use:
/// the policy's limits, a sender domain's warm-up caps, and the slow
/// tier's halving; its signal tiers and any pause.
#[utoipa::path(get, path = "/v1/usage", tag = "previews", params(UsageQuery),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), 
        (status = 200, body = UsageOut),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Another tenant's scope, or a domain another tenant owns", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_usage(State(api): State<Api>, Authed(caller): Authed, hop: Hop, query: Result<Query<UsageQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let Some(scope) = q.scope else {
        return Err(bad("give ?scope=mailbox:A, sender_domain:D, tenant:T, recipient:A or recipient_domain:D (with an operator's token, &tenant=T; for the recipient scopes, &sender=A or D)"));
    };
    let tenant = tenant_of(&caller, q.tenant)?;
    if let Some(t) = scope.strip_prefix("tenant:") {
        if !caller.may_act_for(t) {
            return Err(forbidden(format!("tenant {t:?}: this token acts for another tenant")));
        }
    }
    if let Some(r) = scope.strip_prefix("recipient:") {
        let r = crate::model::Address::parse(r).map_err(|e| bad(format!("recipient: {e}")))?.to_string();
        return Ok(recipient_usage(&api, &hop, super::usage::RecipientScope::Recipient(r), tenant, q.sender.unwrap_or_default()).await);
    }
    if let Some(d) = scope.strip_prefix("recipient_domain:") {
        let Ok(Scope::RecipientDomain(d)) = Scope::parse(&format!("recipient_domain:{d}")) else { return Err(bad(format!("{scope}: not a domain"))) };
        return Ok(recipient_usage(&api, &hop, super::usage::RecipientScope::RecipientDomain(d), tenant, q.sender.unwrap_or_default()).await);
    }
    let parsed = Scope::parse(&scope).map_err(bad)?;
    let needs = match &parsed {
        Scope::Mailbox(m) => vec![(StageKind::Sender, partition_for(domain_of(m), api.live.partitions))],
        Scope::SenderDomain(d) => vec![(StageKind::Sender, partition_for(d, api.live.partitions))],
        Scope::Tenant(t) => vec![(StageKind::Tenant, partition_for(t, api.live.partitions))],
        other => return Err(bad(format!("usage is kept for mailbox:, sender_domain:, tenant:, recipient: and recipient_domain: scopes, not {other}"))),
    };
    Ok(answer_from(&api, &hop, &needs, false, None, || async {
        // A domain a tenant owns, and its mailboxes, are that tenant's to read.
        let domain = match &parsed {
            Scope::Mailbox(m) => Some(domain_of(m)),
            Scope::SenderDomain(d) => Some(d.as_str()),
            _ => None,
        };
        if let Some(d) = domain {
            match super::owner_of(&api.live, d) {
                Ok(Some(owner)) if !caller.may_act_for(&owner) || owner != tenant => {
                    return forbidden(format!("{scope} is kept for another tenant: this token acts for another tenant")).into_response();
                }
                Ok(_) => {}
                Err(e) => return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
            }
        }
        usage(&api.live, &parsed, &tenant, now_ms()).map(|u| Json(u).into_response()).unwrap_or_else(|e| bad(e).into_response())
    })
    .await)
}

/// A recipient's or recipient domain's usage, where it is kept. Recipients
/// are the tenant's own (counted per tenant): any tenant may ask of any.
async fn recipient_usage(api: &Api, hop: &Hop, scope: super::usage::RecipientScope, tenant: String, sender: String) -> Response {
    let needs = [scope.place(&mut super::usage::any_book(&api.live), &tenant, &sender, api.live.partitions)];
    answer_from(api, hop, &needs, false, None, || async {
        // A sender domain another tenant owns: its counters are that tenant's.
        let sd = if sender.contains('@') { domain_of(&sender) } else { sender.as_str() };
        if let Some(owner) = super::usage::any_book(&api.live).owner_of(sd) {
            if owner != tenant {
                return forbidden(format!("sender {sender} is kept for another tenant: this token acts for another tenant")).into_response();
            }
        }
        super::usage::recipient_usage(&api.live, &scope, &tenant, &sender, now_ms()).map(|u| Json(u).into_response()).unwrap_or_else(|e| bad(e).into_response())
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this tenant's (a tenant's token implies its own; an
    /// operator's token sees every tenant's without it).
    pub tenant: Option<String>,
    /// At most this many rows (default 100, at most 1000).
    pub limit: Option<usize>,
}

fn list_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(100) {
        0 => Err(bad("limit must be at least 1")),
        n if n > super::operator::LIST_MAX => Err(bad(format!("limit is at most {}", super::operator::LIST_MAX))),
        n => Ok(n),
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct HeldList {
    /// Held intents, by partition.
    pub held: Vec<SendIntent>,
    /// Which instances answered, each for the partitions it serves.
    pub covers: Vec<String>,
    /// What the list may lack: instances that did not answer, partitions
    /// no instance served at the moment. Empty: the list is complete.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// What one instance's part of a listing covers.
fn covers(api: &Api, kind: StageKind) -> String {
    let served: Vec<String> = api.live.served(kind).iter().map(i32::to_string).collect();
    format!("instance {}: {} partitions [{}]", api.directory.me(), kind.name(), served.join(", "))
}

/// Intents held for an operator's approval.
#[utoipa::path(get, path = "/v1/held", tag = "operator", params(ListQuery),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), (status = 200, body = HeldList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_held(State(api): State<Api>, Authed(caller): Authed, hop: Hop, query: Result<Query<ListQuery>, QueryRejection>) -> Result<Json<HeldList>, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let limit = list_limit(q.limit)?;
    let tenant = match (&caller, q.tenant) {
        (Caller::Operator, None) => None,
        (c, t) => Some(tenant_of(c, t)?),
    };
    let held = super::operator::held(&api.live, tenant.as_deref(), limit).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let mut list = HeldList { held, covers: vec![covers(&api, StageKind::Sender)], missing: Vec::new() };
    let (parts, missing) = gather::<HeldList>(&api, &hop, &[StageKind::Sender]).await;
    for part in parts {
        list.held.extend(part.held);
        list.covers.extend(part.covers);
    }
    list.held.truncate(limit);
    list.missing = missing;
    Ok(Json(list))
}

#[derive(Deserialize, Default, ToSchema)]
pub struct CommandBody {
    /// Why (kept with the command, shown in alerts and the log).
    pub reason: Option<String>,
    /// Who acts (an operator's name); defaults to the caller.
    pub operator: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CommandAccepted {
    pub command_id: String,
    pub kind: CommandKind,
    pub tenant: String,
    pub target: String,
}

fn command_body(body: Result<Bytes, BytesRejection>) -> Result<CommandBody, ApiError> {
    let body = body.map_err(|e| ApiError(e.status(), format!("request body: {e}")))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CommandBody::default());
    }
    serde_json::from_slice(&body).map_err(|e| bad(format!("body: {e}")))
}

static COMMAND_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn publish_command(api: &Api, caller: &Caller, kind: CommandKind, tenant: &str, target: &str, sender: Option<String>, body: CommandBody) -> Result<Response, ApiError> {
    let who = match caller {
        Caller::Operator => "api:operator".to_string(),
        Caller::Tenant(t) => format!("api:tenant:{t}"),
    };
    let id = format!("api-{}-{}-{}", now_ms(), std::process::id(), COMMAND_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let cmd = Command { sender, reason: body.reason, operator: Some(body.operator.map(|o| format!("{o} ({who})")).unwrap_or(who)), ..Command::new(kind, tenant, target, id) };
    crate::stage::ingress::normalise_command(cmd.clone()).map_err(|e| bad(crate::redact::text(&e).into_owned()))?;
    api.publisher.publish_command(&cmd).await.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok((StatusCode::ACCEPTED, Json(CommandAccepted { command_id: cmd.command_id, kind, tenant: cmd.tenant, target: cmd.target })).into_response())
}

async fn act_on_held(api: Api, caller: Caller, hop: Hop, intent_id: String, q: TenantQuery, body: Result<Bytes, BytesRejection>, kind: CommandKind) -> Result<Response, ApiError> {
    let tenant = tenant_of(&caller, q.tenant)?;
    let raw = body.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    let body = command_body(body)?;
    if let Some(intent) = super::operator::find_held(&api.live, &tenant, &intent_id).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))? {
        return publish_command(&api, &caller, kind, &tenant, &intent_id, Some(intent.sender), body).await;
    }
    // The intent id does not tell its partition: the instance that holds
    // it is the one that finds it.
    let mut looked = Vec::new();
    if !hop.forwarded() {
        for peer in api.directory.live(now_ms()) {
            if let Ok(a) = api.forwarder.send(&peer, api.directory.me(), &hop.method, &hop.path_and_query, hop.authorization.as_deref(), Some(raw.clone())).await {
                if a.status != 404 {
                    return Ok(super::forward::peer_response(&peer, a));
                }
                looked.push(peer);
            }
        }
    }
    // Not found: certain only if every sender partition was looked in.
    let unseen = super::forward::uncovered(&api, StageKind::Sender, &looked);
    if !hop.forwarded() && !unseen.is_empty() {
        return Ok(super::forward::unavailable(format!("intent {intent_id:?} was not found, but sender partitions {unseen:?} are served by no instance right now (a rebalance); retry")));
    }
    Err(ApiError(StatusCode::NOT_FOUND, format!("no intent {intent_id:?} of tenant {tenant:?} is held")))
}

/// Approve a held intent: an APPROVE command goes to the commands topic;
/// the intent is then decided again with its approval (its new decision
/// comes at GET /v1/decisions/{intent_id}).
#[utoipa::path(post, path = "/v1/held/{intent_id}/approve", tag = "operator", params(("intent_id" = String, Path), TenantQuery), request_body(content = Option<CommandBody>),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), (status = 202, body = CommandAccepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve_held(State(api): State<Api>, Authed(caller): Authed, hop: Hop, Path(intent_id): Path<String>, query: Result<Query<TenantQuery>, QueryRejection>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    act_on_held(api, caller, hop, intent_id, q, body, CommandKind::Approve).await
}

/// Reject a held intent (a REJECT command): it is BLOCKED.
#[utoipa::path(post, path = "/v1/held/{intent_id}/reject", tag = "operator", params(("intent_id" = String, Path), TenantQuery), request_body(content = Option<CommandBody>),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), (status = 202, body = CommandAccepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reject_held(State(api): State<Api>, Authed(caller): Authed, hop: Hop, Path(intent_id): Path<String>, query: Result<Query<TenantQuery>, QueryRejection>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    act_on_held(api, caller, hop, intent_id, q, body, CommandKind::Reject).await
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Senders {
    /// Paused sender domains and mailboxes.
    pub paused: Vec<super::operator::PausedOut>,
    /// Sender domains with delivery signals: rates and tiers now, warm-up.
    pub domains: Vec<super::operator::DomainOut>,
    /// ISP backoffs in force, per (sender domain, recipient group).
    pub backoffs: Vec<super::operator::BackoffOut>,
    /// Which instances answered, each for the partitions it serves.
    pub covers: Vec<String>,
    /// What the answer may lack (see HeldList.missing).
    #[serde(default)]
    pub missing: Vec<String>,
}

/// Sender domains and mailboxes: pauses, signal tiers and rates, warm-up,
/// and ISP backoffs. A tenant's token sees those of domains no other tenant
/// owns; of another tenant's pause of a shared domain, not who nor why.
#[utoipa::path(get, path = "/v1/senders", tag = "operator", params(ListQuery),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), (status = 200, body = Senders), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_senders(State(api): State<Api>, Authed(caller): Authed, hop: Hop, query: Result<Query<ListQuery>, QueryRejection>) -> Result<Json<Senders>, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let limit = list_limit(q.limit)?;
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    let now = now_ms();
    let mut out = Senders {
        paused: super::operator::paused(&api.live, limit).map_err(internal)?,
        domains: super::operator::domains(&api.live, now, limit).map_err(internal)?,
        backoffs: super::operator::backoffs(&api.live, now, limit).map_err(internal)?,
        covers: vec![covers(&api, StageKind::Sender), covers(&api, StageKind::RecipientDomain)],
        missing: Vec::new(),
    };
    // An operator naming a tenant sees what that tenant would.
    let viewer = match (&caller, q.tenant) {
        (Caller::Operator, None) => None,
        (c, t) => Some(tenant_of(c, t)?),
    };
    if let Some(t) = &viewer {
        let own_mark = format!("api:tenant:{t}");
        let mut visible = Vec::with_capacity(out.paused.len());
        for mut p in out.paused {
            match super::owner_of(&api.live, &p.domain).map_err(internal)? {
                Some(owner) if owner != *t => {}
                _ => {
                    // A shared domain's pause is every tenant's to see, but
                    // not who of another tenant paused it, nor why.
                    if p.by.contains("api:tenant:") && !p.by.contains(&own_mark) {
                        p.by = "another tenant".into();
                        p.reason = "(not shown to other tenants)".into();
                    }
                    visible.push(p)
                }
            }
        }
        out.paused = visible;
        out.domains.retain(|d| d.owner.as_ref().is_none_or(|o| o == t));
        out.backoffs.retain(|b| b.owner.as_ref().is_none_or(|o| o == t));
    }
    // Each instance filters its own part for the same caller.
    let (parts, missing) = gather::<Senders>(&api, &hop, &[StageKind::Sender, StageKind::RecipientDomain]).await;
    for part in parts {
        out.paused.extend(part.paused);
        out.domains.extend(part.domains);
        out.backoffs.extend(part.backoffs);
        out.covers.extend(part.covers);
    }
    out.paused.truncate(limit);
    out.domains.truncate(limit);
    out.backoffs.truncate(limit);
    out.missing = missing;
    Ok(Json(out))
}

async fn pause_or_resume(api: Api, caller: Caller, hop: Hop, scope: String, q: TenantQuery, body: Result<Bytes, BytesRejection>, kind: CommandKind) -> Result<Response, ApiError> {
    let tenant = tenant_of(&caller, q.tenant)?;
    let raw = body.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    let body = command_body(body)?;
    let domain = match scope.split_once(':') {
        Some(("sender_domain", d)) => d.to_string(),
        Some(("mailbox", m)) => domain_of(m).to_string(),
        _ => return Err(bad(format!("scope {scope:?}: use sender_domain:D or mailbox:A"))),
    };
    // Who owns the domain is known where its sender partition is served.
    let needs = [(StageKind::Sender, partition_for(&domain.to_ascii_lowercase(), api.live.partitions))];
    match api.route(&needs, hop.forwarded(), false) {
        super::Route::Here => {}
        super::Route::Peer(peer) => return Ok(super::forward::pass_on(&api, &peer, &hop, Some(raw)).await),
        super::Route::Nowhere(why) => return Ok(super::forward::unavailable(why)),
    }
    // A domain a tenant owns is that tenant's (or an operator's) to pause
    // and resume; the sender stage refuses it again, visibly.
    if let Some(owner) = super::owner_of(&api.live, &domain.to_ascii_lowercase()).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))? {
        if owner != tenant {
            return Err(forbidden(format!("{scope} is kept for another tenant: this token acts for another tenant")));
        }
    }
    publish_command(&api, &caller, kind, &tenant, &scope, None, body).await
}

/// Pause a sender domain or mailbox (a PAUSE command): its intents are
/// PAUSED until it is resumed.
#[utoipa::path(post, path = "/v1/senders/{scope}/pause", tag = "operator", params(("scope" = String, Path, description = "sender_domain:D or mailbox:A"), TenantQuery), request_body(content = Option<CommandBody>),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), (status = 202, body = CommandAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause_sender(State(api): State<Api>, Authed(caller): Authed, hop: Hop, Path(scope): Path<String>, query: Result<Query<TenantQuery>, QueryRejection>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    pause_or_resume(api, caller, hop, scope, q, body, CommandKind::Pause).await
}

/// Resume a paused sender domain or mailbox (a RESUME command).
#[utoipa::path(post, path = "/v1/senders/{scope}/resume", tag = "operator", params(("scope" = String, Path, description = "sender_domain:D or mailbox:A"), TenantQuery), request_body(content = Option<CommandBody>),
    responses(
        (status = 503, description = "No instance serves what this request needs right now (a rebalance, an instance gone): retry after Retry-After", body = ErrorBody), (status = 202, body = CommandAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume_sender(State(api): State<Api>, Authed(caller): Authed, hop: Hop, Path(scope): Path<String>, query: Result<Query<TenantQuery>, QueryRejection>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    pause_or_resume(api, caller, hop, scope, q, body, CommandKind::Resume).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// Only this tenant's (a tenant's token implies its own).
    pub tenant: Option<String>,
    /// Decisions: only this status (ALLOWED, DEFERRED, PAUSED, BLOCKED,
    /// HELD). Alerts: only this kind (tier_changed, isp_backoff_escalated, ...).
    pub status: Option<String>,
    pub kind: Option<String>,
    /// Alerts: only this scope, or scopes starting with it when it ends
    /// with ':' (`sender_domain:`).
    pub scope: Option<String>,
    /// Alerts: only those at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

fn recent_tenant(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (caller, asked) {
        (Caller::Operator, None) => Ok(None),
        (c, t) => tenant_of(c, t).map(Some),
    }
}

#[derive(Serialize, ToSchema)]
pub struct RecentDecisions {
    /// Newest first, each intent's latest.
    pub decisions: Vec<Decision>,
}

/// The most recent decisions this instance read from the decisions topic
/// (every partition, since it started; up to 100,000 kept).
#[utoipa::path(get, path = "/v1/decisions", tag = "intents", params(RecentQuery),
    responses((status = 200, body = RecentDecisions), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn recent_decisions(State(api): State<Api>, Authed(caller): Authed, query: Result<Query<RecentQuery>, QueryRejection>) -> Result<Json<RecentDecisions>, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let limit = list_limit(q.limit)?;
    let tenant = recent_tenant(&caller, q.tenant)?;
    let status = q.status.map(|s| s.to_ascii_uppercase());
    let decisions = api.board.recent(limit, |d| tenant.as_ref().is_none_or(|t| *t == d.tenant) && status.as_ref().is_none_or(|s| s == d.status.as_str()));
    Ok(Json(RecentDecisions { decisions: decisions.iter().map(|d| (**d).clone()).collect() }))
}

#[derive(Serialize, ToSchema)]
pub struct RecentAlerts {
    /// Newest first.
    pub alerts: Vec<Alert>,
}

/// The most recent alerts (the last 2,000 on the alerts topic), filtered.
#[utoipa::path(get, path = "/v1/alerts", tag = "operator", params(RecentQuery),
    responses((status = 200, body = RecentAlerts), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn recent_alerts(State(api): State<Api>, Authed(caller): Authed, query: Result<Query<RecentQuery>, QueryRejection>) -> Result<Json<RecentAlerts>, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let limit = list_limit(q.limit)?;
    let tenant = recent_tenant(&caller, q.tenant)?;
    let filter = super::alerts::AlertFilter { tenant: tenant.as_deref(), kind: q.kind.as_deref(), scope: q.scope.as_deref(), since_ms: q.since_ms };
    Ok(Json(RecentAlerts { alerts: api.alerts.recent(&filter, limit) }))
}

/// Why an intent got its latest decision: every check of every stage in
/// its last evaluation, the policy documents in force, the check that
/// decided, and the delivery events behind the signal rates. Replays the
/// stage logs: seconds on a large log; one at a time per instance (429
/// while another runs).
#[utoipa::path(get, path = "/v1/explain/{intent_id}", tag = "intents", params(("intent_id" = String, Path), TenantQuery),
    responses((status = 200, body = super::explain::ExplainOut), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn explain_intent(State(api): State<Api>, Authed(caller): Authed, Path(intent_id): Path<String>, query: Result<Query<TenantQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let tenant = tenant_of(&caller, q.tenant)?;
    match api.explainer.explain(&tenant, &intent_id).await {
        Ok(Some(e)) => Ok(Json(e).into_response()),
        Ok(None) => {
            let mut r = ApiError(StatusCode::TOO_MANY_REQUESTS, "another explanation is running on this instance; ask again in a moment".into()).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            Ok(r)
        }
        Err(e) if e.starts_with("no decision for intent") => Err(ApiError(StatusCode::NOT_FOUND, format!("no decision for intent {intent_id:?} of tenant {tenant:?} on the decisions topic"))),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// This instance's own metrics, in the Prometheus text format (as its
/// metrics endpoint serves them): the operator page's view of it. An
/// operator's token only.
#[utoipa::path(get, path = "/v1/metrics", tag = "operator",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "Metrics are off (metrics_addr is empty)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn instance_metrics(Authed(caller): Authed) -> Result<Response, ApiError> {
    if !matches!(caller, Caller::Operator) {
        return Err(forbidden("an operator's token only: the metrics cover every tenant"));
    }
    match crate::metrics::render() {
        Some(text) => Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "metrics are off on this instance (metrics_addr is empty)".into())),
    }
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// `operator` or `tenant`.
    pub caller: &'static str,
    /// A tenant's token: its tenant.
    pub tenant: Option<String>,
}

/// Whom the bearer token names: an operator, or a tenant (which).
#[utoipa::path(get, path = "/v1/whoami", tag = "health", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn whoami(Authed(caller): Authed) -> Json<WhoAmI> {
    Json(match caller {
        Caller::Operator => WhoAmI { caller: "operator", tenant: None },
        Caller::Tenant(t) => WhoAmI { caller: "tenant", tenant: Some(t) },
    })
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// What is not ready yet: a task that has not joined its group, is
    /// restoring its state or has input left to read; the decisions reader
    /// before it found the topic's end.
    pub waiting_for: Vec<String>,
}

/// Ready: every task has joined its group, restored the state of the
/// partitions it owns and read its input to the end at its last poll, and
/// the decisions reader is positioned (no token needed). 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(api): State<Api>) -> Response {
    let mut waiting_for: Vec<String> = api
        .health
        .iter()
        .filter(|(_, h)| !h.ready())
        .map(|(name, h)| format!("{name}: {}", if h.joined() { "restoring or catching up" } else { "joining its group" }))
        .collect();
    if !api.board.positioned() {
        waiting_for.push("decisions reader: finding the topic's end".into());
    }
    let status = if waiting_for.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready: waiting_for.is_empty(), waiting_for })).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "sendgate", description = "A Kafka-native guard for sender reputation: publish intents and read their decisions, preview decisions and usage. Every request but /healthz, /readyz, /openapi.json and the operator page's files (/ui/) carries Authorization: Bearer TOKEN (a tenant's token acts for that tenant alone, an operator's for every tenant)."),
    paths(publish_intents, get_decision, recent_decisions, explain_intent, simulate_intents, get_usage, list_held, approve_held, reject_held, list_senders, pause_sender, resume_sender, recent_alerts, instance_metrics, whoami, healthz, readyz, openapi_json),
    modifiers(&BearerAuth),
    tags((name = "intents", description = "Publish intents and read decisions"), (name = "previews", description = "What the next decision would use, without deciding"), (name = "operator", description = "Held intents and paused senders, and the commands that act on them"), (name = "health", description = "Liveness, readiness and this document"))
)]
pub struct ApiDoc;

/// Every route, with the shared state.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/intents", post(publish_intents))
        .route("/v1/decisions", get(recent_decisions))
        .route("/v1/decisions/{intent_id}", get(get_decision))
        .route("/v1/explain/{intent_id}", get(explain_intent))
        .route("/v1/alerts", get(recent_alerts))
        .route("/v1/simulate", post(simulate_intents))
        .route("/v1/usage", get(get_usage))
        .route("/v1/held", get(list_held))
        .route("/v1/held/{intent_id}/approve", post(approve_held))
        .route("/v1/held/{intent_id}/reject", post(reject_held))
        .route("/v1/senders", get(list_senders))
        .route("/v1/senders/{scope}/pause", post(pause_sender))
        .route("/v1/senders/{scope}/resume", post(resume_sender))
        .route("/v1/whoami", get(whoami))
        .route("/v1/metrics", get(instance_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        // The operator page: static files, no token (the page asks for one).
        .route("/", get(super::page::root))
        .route("/ui", get(super::page::root))
        .route("/ui/", get(super::page::index))
        .route("/ui/app.js", get(super::page::app_js))
        .route("/ui/style.css", get(super::page::style))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route: see /openapi.json".into()) })
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_urls_encode_all_but_unreserved_characters() {
        assert_eq!(encode_path("rr-later_1.x~"), "rr-later_1.x~");
        assert_eq!(encode_path("a b/ü?&"), "a%20b%2F%C3%BC%3F%26");
    }

    #[test]
    fn the_document_lists_every_route_and_its_security() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for p in ["/v1/intents", "/v1/decisions", "/v1/decisions/{intent_id}", "/v1/explain/{intent_id}", "/v1/alerts", "/v1/whoami", "/v1/metrics", "/v1/simulate", "/v1/usage", "/v1/held", "/v1/held/{intent_id}/approve", "/v1/held/{intent_id}/reject", "/v1/senders", "/v1/senders/{scope}/pause", "/v1/senders/{scope}/resume", "/healthz", "/readyz", "/openapi.json"] {
            assert!(doc["paths"].get(p).is_some(), "{p} missing");
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert!(doc["components"]["schemas"].get("Decision").is_some());
    }
}
