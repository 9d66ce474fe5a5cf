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
//! - `GET /healthz` (alive) and `GET /readyz` (every task joined, restored
//!   and caught up), the only answers without a token.
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

pub mod auth;
pub mod board;
pub mod operator;
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
}
