//! Serves the API on its own thread: a bounded accept loop, TLS when
//! configured, and tower middleware for request time, body size and
//! tracing around the routes.

use super::routes::router;
use super::Api;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted (1000 intents fit).
pub const BODY_MAX: usize = 1 << 20;
/// Connections served at once; more wait in the listen backlog.
const CONNECTIONS_MAX: usize = 64;
/// Longest a request may take: the longest `wait_ms` and some.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(super::routes::WAIT_MAX_MS + 5_000);
/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for the API from a PEM certificate (chain) and a PEM PKCS#8 key.
pub fn tls_acceptor(cert_file: &str, key_file: &str) -> Result<tokio_native_tls::TlsAcceptor, String> {
    let cert = std::fs::read(cert_file).map_err(|e| format!("api_tls_cert_file {cert_file:?}: {e}"))?;
    let key = std::fs::read(key_file).map_err(|e| format!("api_tls_key_file {key_file:?}: {e}"))?;
    let identity = native_tls::Identity::from_pkcs8(&cert, &key).map_err(|e| format!("api_tls_cert_file / api_tls_key_file: not a PEM certificate and PKCS#8 key that belong together ({e}); `openssl pkcs8 -topk8 -nocrypt` converts another key format"))?;
    let acceptor = native_tls::TlsAcceptor::builder(identity).min_protocol_version(Some(native_tls::Protocol::Tlsv12)).build().map_err(|e| format!("API TLS: {e}"))?;
    Ok(acceptor.into())
}

/// Serves `api` on `addr` until `shutdown` is set.
pub fn spawn(addr: &str, api: Api, tls: Option<tokio_native_tls::TlsAcceptor>, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, String> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("api_addr {addr:?}: {e}"))?;
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| format!("api_addr {addr}: cannot listen: {e}"))?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    // Every answer names the instance that computed it; a forwarded one
    // already names its owner.
    let me = axum::http::HeaderValue::from_str(api.directory.me()).map_err(|e| format!("instance_id: {e}"))?;
    let app = router(api)
        .layer(axum::middleware::map_response(move |mut r: axum::response::Response| {
            let me = me.clone();
            async move {
                r.headers_mut().entry(super::peers::ANSWERED_BY).or_insert(me);
                r
            }
        }))
        .layer(DefaultBodyLimit::max(BODY_MAX))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        // The span names the route, never the path or query: those carry
        // addresses (usage?scope=mailbox:...) and intent ids.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
            tracing::debug_span!("api", method = %req.method(), route)
        }));
    let tls = tls.map(Arc::new);
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("api-worker").enable_all().build().expect("api runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("api listener");
                let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
                while !shutdown.load(Ordering::Relaxed) {
                    let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await else { continue };
                    let Ok(permit) = slots.clone().acquire_owned().await else { break };
                    let service = TowerToHyperService::new(app.clone());
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let http = hyper::server::conn::http1::Builder::new();
                        match tls {
                            None => {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                            Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => {
                                    let _ = http.serve_connection(TokioIo::new(tls_stream), service).await;
                                }
                                Ok(Err(e)) => tracing::debug!(error = %e, "API TLS handshake failed"),
                                Err(_) => tracing::debug!("API TLS handshake timed out"),
                            },
                        }
                    });
                }
            });
        })
        .map_err(|e| e.to_string())
}
