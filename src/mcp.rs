//! `sendgate mcp`: tools for AI agents over the Model Context Protocol
//! (the official Rust SDK, rmcp), on stdio or streamable HTTP. The tools
//! ask a running processor's HTTP API, with a token, as any client would:
//! whether a send is allowed now, a request to send (the intent goes
//! through the log and the stages, and its decision comes back), usage and
//! remaining capacity, an intent's decision, and why. No tool sends mail:
//! each answer tells the agent whether it may, and when to ask again.
//!
//! The token: on stdio, `SENDGATE_MCP_API_TOKEN`; on HTTP, the bearer token
//! the agent's MCP client sends (passed on to the API, which checks it),
//! else that setting. A tenant's token acts for its tenant alone, which the
//! server learns from the API (`GET /v1/whoami`).

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, Json, RoleServer, ServerHandler, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How long `request_send` waits for the decision before answering PENDING.
const DECISION_WAIT_MS: u64 = 10_000;
/// Where the API is, and how to reach it.
#[derive(Clone, Debug)]
pub struct McpSettings {
    pub api_url: String,
    /// The token when the MCP client sends none (always, on stdio).
    pub token: Option<String>,
    /// PEM CA certificates for an API served over TLS.
    pub ca_file: Option<String>,
}

use crate::api::client::{api_error, ApiClient};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SendArgs {
    /// The sending mailbox, e.g. agent@acme.com.
    pub sender: String,
    /// The recipient's address.
    pub recipient: String,
    /// OUTBOUND (default: first contact, campaigns), TRANSACTIONAL
    /// (receipts, resets) or REPLY (answering a thread the recipient started).
    #[serde(default)]
    pub class: Option<String>,
    /// The message template, for per-recipient cooldowns.
    #[serde(default)]
    pub template_id: Option<String>,
    /// A hash of the content, for duplicate detection.
    #[serde(default)]
    pub content_hash: Option<String>,
    #[serde(default)]
    pub thread_id: Option<String>,
    /// Ask a person to approve this send first.
    #[serde(default)]
    pub requires_approval: Option<bool>,
    /// An id for this send, unique within the tenant; the same id asked
    /// again gets the same final answer. Made up when absent.
    #[serde(default)]
    pub intent_id: Option<String>,
    /// With an operator's token only: the tenant to act for.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct IntentArgs {
    pub intent_id: String,
    /// With an operator's token only: the intent's tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UsageArgs {
    /// mailbox:ADDRESS, sender_domain:DOMAIN, tenant:T, recipient:ADDRESS or
    /// recipient_domain:DOMAIN.
    pub scope: String,
    /// For recipient scopes: the sender (an address or a domain) whose
    /// per-sender limits and ISP backoff to include.
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
}

/// One window's capacity.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Window {
    pub scope: String,
    pub window: String,
    #[serde(default)]
    pub class: Option<String>,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    #[serde(default)]
    pub resets_at_ms: Option<i64>,
}

/// A check behind a decision.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub stage: String,
    pub check: String,
    /// `pass`, or what it decided.
    pub outcome: String,
    pub detail: String,
}

/// What the agent may do, and why.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    /// True only for ALLOWED: the one answer that means "send it now".
    pub may_send_now: bool,
    /// ALLOWED, DEFERRED, PAUSED, BLOCKED, HELD, or PENDING (published, not
    /// decided within the wait: ask get_decision later).
    pub status: String,
    /// Why (e.g. hourly_limit_exceeded, recipient_suppressed).
    pub reason: String,
    /// When to ask again (DEFERRED), in ms since the epoch and RFC 3339.
    pub retry_at_ms: Option<i64>,
    pub retry_at: Option<String>,
    pub intent_id: String,
    pub tenant: String,
    /// What to do, in one sentence.
    pub advice: String,
    /// The windows counted, with what remains.
    pub usage: Vec<Window>,
    /// Every check behind the answer (check_send only).
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageView {
    pub scope: String,
    pub windows: Vec<Window>,
    /// Who paused the sender, when it is paused.
    #[serde(default)]
    pub paused: Option<String>,
    #[serde(default)]
    pub backoff_until_ms: Option<i64>,
    /// The least remaining of all the windows: how many more sends fit now.
    #[serde(default)]
    pub remaining_now: Option<i64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Explanation {
    pub verdict: Verdict,
    /// The check that decided; none when every check passed.
    pub decided_by: Option<Check>,
    /// Every check of the intent's last evaluation, stage by stage.
    pub checks: Vec<Check>,
    /// The policy documents that applied (scope and version).
    pub documents: Vec<String>,
}

fn advice(status: &str, reason: &str, retry_at: Option<&str>, intent_id: &str) -> String {
    match status {
        "ALLOWED" => "Allowed: send it now, once.".into(),
        "DEFERRED" => format!("Deferred ({reason}): do not send now; ask again {}.", retry_at.map(|t| format!("at or after {t}")).unwrap_or_else(|| "later".into())),
        "PAUSED" => format!("Paused ({reason}): the sender is paused; do not send until an operator resumes it."),
        "BLOCKED" => format!("Blocked ({reason}): do not send this message to this recipient."),
        "HELD" => format!("Held for approval: do not send; a person must approve intent {intent_id}; ask get_decision later."),
        _ => format!("Not decided yet: do not send; ask get_decision for intent {intent_id} in a few seconds."),
    }
}

fn windows(v: &Value) -> Vec<Window> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// A decision record of the API as the agent's verdict.
fn verdict(d: &Value, checks: Vec<Check>) -> Verdict {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let status = s("status");
    let retry_at_ms = d.get("retry_at_ms").and_then(Value::as_i64);
    let retry_at = retry_at_ms.and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Verdict {
        may_send_now: status == "ALLOWED",
        advice: advice(&status, &s("reason"), retry_at.as_deref(), &s("intent_id")),
        reason: s("reason"),
        status,
        retry_at_ms,
        retry_at,
        intent_id: s("intent_id"),
        tenant: s("tenant"),
        usage: windows(d.get("usage").unwrap_or(&Value::Null)),
        checks,
    }
}

/// The MCP server: the tools, and the API they ask.
#[derive(Clone)]
pub struct Guard {
    api: Arc<ApiClient>,
    settings: McpSettings,
    seq: Arc<AtomicU64>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Guard {
    pub fn new(settings: McpSettings) -> Result<Guard, String> {
        Ok(Guard { api: Arc::new(ApiClient::new(&settings.api_url, settings.ca_file.as_deref(), "SENDGATE_MCP_API_URL / SENDGATE_MCP_API_CA_FILE")?), settings, seq: Arc::default(), tool_router: Self::tool_router() })
    }

    /// The token of this call: the MCP client's bearer token over HTTP,
    /// else the configured one.
    fn token(&self, ctx: &RequestContext<RoleServer>) -> Result<String, String> {
        let from_client = ctx.extensions.get::<axum::http::request::Parts>().and_then(|p| p.headers.get("authorization")).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_string);
        from_client.or_else(|| self.settings.token.clone()).ok_or_else(|| "no sendgate API token: send Authorization: Bearer TOKEN, or set SENDGATE_MCP_API_TOKEN".to_string())
    }

    /// The tenant this call acts for: the token's own, or (an operator's
    /// token) the one named.
    async fn tenant(&self, token: &str, named: Option<String>) -> Result<String, String> {
        let (status, who) = self.api.call(token, "GET", "/v1/whoami", None).await?;
        if status != 200 {
            return Err(api_error(status, &who));
        }
        match (who.get("tenant").and_then(Value::as_str), named) {
            (Some(own), Some(t)) if own != t => Err(format!("this token acts for tenant {own}, not {t}")),
            (Some(own), _) => Ok(own.to_string()),
            (None, Some(t)) => Ok(t),
            (None, None) => Err("this token is an operator's: name the tenant to act for".into()),
        }
    }

    /// GETs `path(tenant)` with this call's token, as the tenant it acts
    /// for: the JSON of a 200, else the API's error.
    async fn get_as(&self, ctx: &RequestContext<RoleServer>, named: Option<String>, path: impl FnOnce(&str) -> String) -> Result<Value, String> {
        let token = self.token(ctx)?;
        let tenant = self.tenant(&token, named).await?;
        let (status, v) = self.api.call(&token, "GET", &path(&tenant), None).await?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        Ok(v)
    }

    fn intent(&self, a: &SendArgs, tenant: &str) -> Value {
        let id = a.intent_id.clone().unwrap_or_else(|| format!("mcp-{}-{}-{}", std::process::id(), crate::clock::wall_ms(), self.seq.fetch_add(1, Ordering::Relaxed)));
        json!({
            "intent_id": id, "tenant": tenant, "sender": a.sender, "recipient": a.recipient,
            "class": a.class.as_deref().unwrap_or("OUTBOUND").to_ascii_uppercase(),
            "template_id": a.template_id, "content_hash": a.content_hash, "thread_id": a.thread_id,
            "requires_approval": a.requires_approval.unwrap_or(false),
        })
    }

    #[tool(description = "Check whether a send would be allowed now, and why, without reserving anything or publishing: the answer's may_send_now, status (ALLOWED, DEFERRED, PAUSED, BLOCKED, HELD), reason, retry_at and advice say what to do. Use request_send to actually ask for permission before sending.")]
    async fn check_send(&self, Parameters(a): Parameters<SendArgs>, ctx: RequestContext<RoleServer>) -> Result<Json<Verdict>, String> {
        let token = self.token(&ctx)?;
        let tenant = self.tenant(&token, a.tenant.clone()).await?;
        let (status, v) = self.api.call(&token, "POST", "/v1/simulate", Some(self.intent(&a, &tenant))).await?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        let first = v.get(0).ok_or("the simulation answered nothing")?;
        let checks: Vec<Check> = serde_json::from_value(first.get("checks").cloned().unwrap_or_default()).unwrap_or_default();
        Ok(Json(verdict(first.get("decision").unwrap_or(&Value::Null), checks)))
    }

    #[tool(description = "Ask permission to send one email, before sending it: the intent goes to sendgate and its decision comes back (waits up to 10 s). Send the email only if may_send_now is true, and only once. DEFERRED: ask again after retry_at. HELD: a person must approve it; ask get_decision later. This tool never sends mail.")]
    async fn request_send(&self, Parameters(a): Parameters<SendArgs>, ctx: RequestContext<RoleServer>) -> Result<Json<Verdict>, String> {
        let token = self.token(&ctx)?;
        let tenant = self.tenant(&token, a.tenant.clone()).await?;
        let intent = self.intent(&a, &tenant);
        let (status, v) = self.api.call(&token, "POST", &format!("/v1/intents?wait_ms={DECISION_WAIT_MS}"), Some(intent.clone())).await?;
        match status {
            200 => Ok(Json(verdict(&v, Vec::new()))),
            202 => {
                let id = intent["intent_id"].as_str().unwrap_or_default().to_string();
                Ok(Json(Verdict { may_send_now: false, status: "PENDING".into(), reason: "not decided within the wait".into(), retry_at_ms: None, retry_at: None, advice: advice("PENDING", "", None, &id), intent_id: id, tenant, usage: Vec::new(), checks: Vec::new() }))
            }
            _ => Err(api_error(status, &v)),
        }
    }

    #[tool(description = "The latest decision of an intent asked for earlier (by request_send or by the app), with may_send_now, reason and retry time.")]
    async fn get_decision(&self, Parameters(a): Parameters<IntentArgs>, ctx: RequestContext<RoleServer>) -> Result<Json<Verdict>, String> {
        let v = self.get_as(&ctx, a.tenant, |t| format!("/v1/decisions/{}?tenant={}", enc(&a.intent_id), enc(t))).await?;
        Ok(Json(verdict(&v, Vec::new())))
    }

    #[tool(description = "Usage and remaining capacity of a scope (a mailbox, sender domain, tenant, recipient or recipient domain): each window's used, limit and remaining, when it resets, whether the sender is paused or backing off, and remaining_now, the least remaining of all windows.")]
    async fn get_usage(&self, Parameters(a): Parameters<UsageArgs>, ctx: RequestContext<RoleServer>) -> Result<Json<UsageView>, String> {
        let sender = a.sender.as_deref().map(|s| format!("&sender={}", enc(s))).unwrap_or_default();
        let v = self.get_as(&ctx, a.tenant, |t| format!("/v1/usage?scope={}&tenant={}{sender}", enc(&a.scope), enc(t))).await?;
        let mut u: UsageView = serde_json::from_value(v).map_err(|e| format!("an unexpected usage answer: {e}"))?;
        u.remaining_now = u.windows.iter().map(|w| w.remaining).min();
        Ok(Json(u))
    }

    #[tool(description = "Why an intent got its decision: every check of every stage, the one that decided, and the policy documents in force. Takes seconds (it replays the log).")]
    async fn explain_decision(&self, Parameters(a): Parameters<IntentArgs>, ctx: RequestContext<RoleServer>) -> Result<Json<Explanation>, String> {
        let v = self.get_as(&ctx, a.tenant, |t| format!("/v1/explain/{}?tenant={}", enc(&a.intent_id), enc(t))).await?;
        let checks: Vec<Check> = serde_json::from_value(v.get("checks").cloned().unwrap_or_default()).unwrap_or_default();
        let decided_by: Option<Check> = serde_json::from_value(v.get("decided_by").cloned().unwrap_or_default()).unwrap_or_default();
        let documents = v.get("documents").and_then(Value::as_array).map(|ds| ds.iter().map(|d| format!("{} v{}", d["scope"].as_str().unwrap_or_default(), d["version"])).collect()).unwrap_or_default();
        Ok(Json(Explanation { verdict: verdict(v.get("decision").unwrap_or(&Value::Null), Vec::new()), decided_by, checks, documents }))
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Guard {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("sendgate", env!("CARGO_PKG_VERSION")))
            .with_instructions("sendgate guards the reputation of the mailboxes and domains you send from. Before sending any email, call request_send and send only when may_send_now is true. check_send previews without asking; get_usage shows remaining capacity; explain_decision says why. No tool here sends mail.")
    }
}

/// Serves the tools on stdin and stdout until the client closes them.
pub async fn serve_stdio(settings: McpSettings) -> Result<(), String> {
    let server = Guard::new(settings)?.serve(rmcp::transport::stdio()).await.map_err(|e| format!("MCP over stdio: {e}"))?;
    server.waiting().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Serves the tools over streamable HTTP at `http://ADDR/mcp` until ctrl-c
/// or SIGTERM. Only Host headers of the loopback names are accepted unless
/// `allowed_hosts` names others (DNS-rebinding protection).
pub async fn serve_http(settings: McpSettings, addr: &str, allowed_hosts: Vec<String>) -> Result<(), String> {
    use rmcp::transport::streamable_http_server::{session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService};
    let guard = Guard::new(settings)?;
    let mut config = StreamableHttpServerConfig::default();
    if !allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(allowed_hosts);
    }
    let service: StreamableHttpService<Guard, LocalSessionManager> = StreamableHttpService::new(move || Ok(guard.clone()), Default::default(), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("--http {addr}: cannot listen: {e}"))?;
    tracing::info!(addr = %addr, "MCP over streamable HTTP at /mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
        .map_err(|e| e.to_string())
}
