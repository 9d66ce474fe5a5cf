//! The processor's HTTP API, beside the stage tasks. Every endpoint is
//! described in the OpenAPI document served at `/openapi.json`, generated
//! from the handlers ([`routes`]).
//!
//! - `POST /v1/intents`: publish intents to the intents topic (the same
//!   contract as producing them); with `wait_ms`, answer with each one's
//!   decision record once it is committed (request-reply through the log:
//!   the intent goes through the stages like any other).
//! - `GET /v1/decisions/{intent_id}`: an intent's decision, from the
//!   decisions this instance read ([`board`]).
//! - `POST /v1/simulate`: what intents would get now, without reserving
//!   anything ([`simulate`]).
//! - `GET /v1/usage`: a scope's windows with the numbers the next decision
//!   would use ([`usage`]).
//! - `GET /v1/held`, `POST /v1/held/{intent_id}/approve|reject`,
//!   `GET /v1/senders`, `POST /v1/senders/{scope}/pause|resume`: what an
//!   operator acts on ([`operator`]).
//! - `GET /v1/decisions` and `GET /v1/alerts`: the most recent ones
//!   ([`alerts`]); `GET /v1/explain/{intent_id}`: why ([`explain`]).
//! - `/ui/`: the operator page, on this API alone ([`page`]).
//! - `GET /healthz` (alive) and `GET /readyz` (every task joined, restored
//!   and caught up), the only answers without a token.
//!
//! [`client`] is the other side: how `sendgate mcp` and `sendgate held`
//! call it. [`error`] is the one error answer every endpoint gives.
//!
//! Any instance answers any request: one for a key another instance serves
//! is forwarded there ([`peers`], [`forward`]), a listing gathers every
//! instance's part.
//!
//! Simulate and usage read the committed state of this instance's stages
//! through a copy-on-write view; "now" is the wall clock there: they are
//! previews, never decisions.
//!
//! Every request but the health checks carries `Authorization: Bearer
//! TOKEN` ([`auth`]): a tenant's token sees and acts on that tenant alone,
//! an operator's token on every tenant. No token, no access; no tokens
//! configured, no access at all. [`server`] serves it, over TLS when
//! configured, with bounded connections, bodies and request times.

pub mod alerts;
pub mod auth;
pub mod board;
pub mod client;
pub mod error;
pub mod explain;
pub mod forward;
pub mod gauges;
pub mod operator;
pub mod page;
pub mod peers;
pub mod routes;
pub mod server;
pub mod simulate;
pub mod usage;

pub use simulate::{simulate, CheckOut, Simulated, SIMULATE_MAX};
pub use usage::{owner_of, usage, SignalsOut, UsageOut, WindowUsage};

use crate::runtime::task::TaskHealth;
use crate::stage::ingress::Ingress;
use crate::stage::{SenderConfig, StageKind};
use crate::state::BaseStore;
use std::collections::HashMap;
use std::sync::Arc;

/// What the API reads: each stage's committed state.
pub struct LiveState {
    pub stores: HashMap<StageKind, Arc<dyn BaseStore>>,
    pub ingress: Ingress,
    pub partitions: i32,
    pub sender: SenderConfig,
    /// The partitions each stage's task serves here: only these are read.
    pub serving: peers::Serving,
    /// Standby replicas keep warm copies of the other partitions, which a
    /// preview (simulate) may read.
    pub standby: bool,
}

impl LiveState {
    /// This instance serves the partition (it owns it and has restored it).
    pub fn serves(&self, kind: StageKind, partition: i32) -> bool {
        self.serving.get(&kind).is_some_and(|s| s.lock().expect("not poisoned").contains(&partition))
    }

    /// The partitions of `kind` served here, in order.
    pub fn served(&self, kind: StageKind) -> Vec<i32> {
        let mut v: Vec<i32> = self.serving.get(&kind).map(|s| s.lock().expect("not poisoned").iter().copied().collect()).unwrap_or_default();
        v.sort_unstable();
        v
    }
}

/// Where a request for some stage partitions is answered.
pub enum Route {
    Here,
    /// By this other instance, which serves all of them.
    Peer(peers::Announcement),
    /// By none right now (a rebalance, an instance gone): why.
    Nowhere(String),
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct Api {
    pub live: Arc<LiveState>,
    pub tokens: Arc<auth::Tokens>,
    /// Recent decisions and the requests waiting for them.
    pub board: Arc<board::Board>,
    /// Publishes intents (POST /v1/intents).
    pub publisher: Arc<board::Publisher>,
    /// Each task's readiness, by task name.
    pub health: Arc<Vec<(&'static str, Arc<TaskHealth>)>>,
    /// The other instances and the partitions they serve.
    pub directory: Arc<peers::Directory>,
    pub forwarder: Arc<peers::Forwarder>,
    /// Recent alerts.
    pub alerts: Arc<alerts::Alerts>,
    pub explainer: Arc<explain::Explainer>,
}

impl Api {
    /// Where a request needing `needs` is answered: here when this instance
    /// serves them all (or, with `standby_ok`, keeps warm copies), else by
    /// the one other instance that serves them all. A request forwarded
    /// here is never forwarded again.
    pub fn route(&self, needs: &[(StageKind, i32)], forwarded: bool, standby_ok: bool) -> Route {
        if needs.iter().all(|(k, p)| self.live.serves(*k, *p) || (standby_ok && self.live.standby)) {
            return Route::Here;
        }
        let now = crate::clock::wall_ms();
        let missing: Vec<String> = needs.iter().filter(|(k, p)| !self.live.serves(*k, *p)).map(|(k, p)| format!("{} partition {p} (served by {})", k.name(), self.directory.who_serves(*k, *p, now))).collect();
        if forwarded {
            return Route::Nowhere(format!("forwarded here, but this instance no longer serves {} (a rebalance moved it); retry", missing.join(", ")));
        }
        match self.directory.serving_all(needs, now) {
            Some(peer) => Route::Peer(peer),
            None => Route::Nowhere(format!("no instance serves all this request needs right now: {} (starting, or rebalancing); retry", missing.join(", "))),
        }
    }
}
