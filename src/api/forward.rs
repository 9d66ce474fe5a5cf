//! The handlers' side of answering from any instance ([`super::peers`]):
//! what a request needs to be passed on ([`Hop`]), passing it to the one
//! instance that serves its key ([`answer_from`]), and asking every
//! instance for its part of a listing ([`gather`]).

use super::peers::{Announcement, PeerAnswer, ANSWERED_BY, FORWARDED_BY};
use super::error::ApiError;
use super::{Api, Route};
use crate::stage::StageKind;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;

/// What passing a request on takes: its path and query as received, the
/// caller's own Authorization header (the peer checks it again), and
/// whether another instance already forwarded it here.
pub struct Hop {
    pub method: String,
    pub path_and_query: String,
    pub authorization: Option<String>,
    pub forwarded_by: Option<String>,
}

impl Hop {
    pub fn forwarded(&self) -> bool {
        self.forwarded_by.is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Hop {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(Hop {
            method: parts.method.as_str().to_string(),
            path_and_query: parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| parts.uri.path().to_string()),
            authorization: header(header::AUTHORIZATION.as_str()),
            forwarded_by: header(FORWARDED_BY),
        })
    }
}

/// 503 with Retry-After: no instance can answer right now.
pub fn unavailable(msg: String) -> Response {
    let mut r = ApiError(StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The peer's answer, as it gave it, marked with who computed it.
pub async fn pass_on(api: &Api, peer: &Announcement, hop: &Hop, body: Option<Vec<u8>>) -> Response {
    match api.forwarder.send(peer, api.directory.me(), &hop.method, &hop.path_and_query, hop.authorization.as_deref(), body).await {
        Ok(a) => peer_response(peer, a),
        Err(e) => unavailable(e),
    }
}

/// A peer's answer as this instance's response.
pub fn peer_response(peer: &Announcement, a: PeerAnswer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (status, a.body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&peer.instance) {
        r.headers_mut().insert(ANSWERED_BY, v);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Answers here when this instance serves `needs` (`here()`), or passes the
/// request to the instance that does, or says why none can.
pub async fn answer_from<F, Fut>(api: &Api, hop: &Hop, needs: &[(StageKind, i32)], standby_ok: bool, body: Option<Vec<u8>>, here: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match api.route(needs, hop.forwarded(), standby_ok) {
        Route::Here => here().await,
        Route::Peer(peer) => pass_on(api, &peer, hop, body).await,
        Route::Nowhere(why) => unavailable(why),
    }
}

/// Every other live instance's part of a listing (the same request, marked
/// forwarded so that each answers from its own partitions), and what the
/// answer may lack: instances that did not answer, and the partitions of
/// `kinds` that no answer covers. A forwarded request gets this instance's
/// part alone.
pub async fn gather<T: DeserializeOwned>(api: &Api, hop: &Hop, kinds: &[StageKind]) -> (Vec<T>, Vec<String>) {
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    if hop.forwarded() {
        return (parts, missing);
    }
    let mut answered: Vec<Announcement> = Vec::new();
    let peers = api.directory.live(crate::clock::wall_ms());
    let asks = peers.iter().map(|p| api.forwarder.send(p, api.directory.me(), &hop.method, &hop.path_and_query, hop.authorization.as_deref(), None));
    for (peer, answer) in peers.iter().zip(futures::future::join_all(asks).await) {
        match answer {
            Ok(a) if a.status == 200 => match serde_json::from_slice::<T>(&a.body) {
                Ok(part) => {
                    parts.push(part);
                    answered.push(peer.clone());
                }
                Err(e) => missing.push(format!("instance {}: unreadable answer ({e})", peer.instance)),
            },
            Ok(a) => missing.push(format!("instance {}: answered {}", peer.instance, a.status)),
            Err(e) => missing.push(e),
        }
    }
    for kind in kinds {
        let uncovered = uncovered(api, *kind, &answered);
        if !uncovered.is_empty() {
            missing.push(format!("{} partitions {} (no instance answered for them)", kind.name(), uncovered.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")));
        }
    }
    (parts, missing)
}

/// The partitions of `kind` neither this instance nor any of `answered` serves.
pub fn uncovered(api: &Api, kind: StageKind, answered: &[Announcement]) -> Vec<i32> {
    let mut covered: BTreeSet<i32> = api.live.served(kind).into_iter().collect();
    for a in answered {
        covered.extend(a.serving.get(kind.name()).into_iter().flatten().copied());
    }
    (0..api.live.partitions).filter(|p| !covered.contains(p)).collect()
}
