//! A client of the HTTP API, for the tools that ask a running processor as
//! any client would (`sendgate mcp`, `sendgate held`): one call at a time,
//! with a bounded time and answer size, over TLS with an extra CA when the
//! API is served that way.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Longest an API call may take.
const API_TIMEOUT: Duration = Duration::from_secs(40);
/// Most bytes of an API answer read.
const ANSWER_MAX: u64 = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
}

impl ApiClient {
    /// `url`: the API's base URL; `ca_file`: PEM CA certificates to trust
    /// beside the system's. `setting` names where they came from, for errors.
    pub fn new(url: &str, ca_file: Option<&str>, setting: &str) -> Result<ApiClient, String> {
        let mut tls = native_tls::TlsConnector::builder();
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("{setting} CA file {ca:?}: {e}"))?;
            tls.add_root_certificate(native_tls::Certificate::from_pem(&pem).map_err(|e| format!("{setting} CA file {ca:?}: {e}"))?);
        }
        let tls = tls.build().map_err(|e| e.to_string())?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{setting} URL {url:?} must be an http:// or https:// URL of a running processor's API"));
        }
        Ok(ApiClient { agent: ureq::AgentBuilder::new().timeout(API_TIMEOUT).tls_connector(Arc::new(tls)).build(), base: url.trim_end_matches('/').to_string() })
    }

    /// One call; (status, JSON answer). A transport failure is an error.
    pub fn call_blocking(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let req = self.agent.request(method, &format!("{}{path}", self.base)).set("authorization", &format!("Bearer {token}"));
        let r = match body {
            Some(b) => req.set("content-type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("the sendgate API at {} did not answer: {e}", self.base)),
        };
        let status = resp.status();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(resp.into_reader(), ANSWER_MAX), &mut text).map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// [`Self::call_blocking`] off the async runtime's threads.
    pub async fn call(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let (me, token, method, path) = (self.clone(), token.to_string(), method.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || me.call_blocking(&token, &method, &path, body.as_ref())).await.map_err(|e| e.to_string())?
    }
}

/// The API's error text, or the whole answer.
pub fn api_error(status: u16, v: &Value) -> String {
    format!("the sendgate API answered {status}: {}", v.get("error").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| v.to_string()))
}
