//! The processor process: Kafka clients, the exactly-once task loop, the
//! router (with the log-time merge of its inputs) and the stage tasks, the
//! stages' standby replicas, their start-up and shutdown, and the watchdog
//! that restarts the process when a client call hangs.

pub mod clients;
pub mod merge;
pub mod router;
pub mod standby;
pub mod stage_task;
pub mod task;
pub mod unreadable;
pub mod watchdog;

use crate::config::Config;
use crate::stage::{make_stage, StageKind};
use crate::state::{rocks::RocksStore, StageStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use task::{supervise, TaskError, TaskSettings};

/// Runs the router and every stage, each as its own task, until `shutdown`
/// is set or a task fails fatally.
pub fn run(cfg: &Config, shutdown: Arc<AtomicBool>) -> Result<(), String> {
    crate::codec::check_schemas()?;
    let topo = cfg.topology()?;
    cfg.require_bootstrap()?;
    let registry = crate::registry::SchemaRegistry::from_settings(&cfg.schema_registry)?.map(Arc::new);
    if let Some(r) = &registry {
        // A wrong URL, credential or CA fails here, not at the first
        // framed record.
        r.check()?;
        tracing::info!(url = %cfg.schema_registry.url, "schema registry configured");
    }
    // Every task's settings, made once: their health handles are what the
    // API's /readyz reads.
    let mut all_settings: std::collections::HashMap<&'static str, TaskSettings> = std::iter::once("router").chain(StageKind::ALL.iter().map(|k| k.name())).map(|t| (t, TaskSettings::from_config(cfg, t, &cfg.instance_id))).collect();
    let health: Vec<(&'static str, Arc<crate::runtime::task::TaskHealth>)> = all_settings.iter().map(|(t, s)| (*t, s.health.clone())).collect();
    watchdog::spawn(all_settings.iter().map(|(t, s)| (*t, s.watch.clone())).collect(), shutdown.clone());
    let mut settings = |task: &'static str| all_settings.remove(task).expect("settings made for every task");
    let sender_config = cfg.sender_settings();
    let mut stage_tasks = Vec::new();
    for kind in StageKind::ALL {
        let state_path = cfg.state_dir.join(&cfg.namespace).join(kind.name());
        let (store, wiped) = RocksStore::open_with(&state_path, (cfg.state_write_buffer_mb as usize) << 20).map_err(|e| match crate::state::disk_full_hint(&e.to_string()) {
            Some(_) => e.to_string(),
            None => format!("{e} (is another sendgate instance using this state_dir?)"),
        })?;
        if wiped {
            tracing::warn!(state = %state_path.display(), "the last stop was not clean: local state wiped, restoring it from the changelog");
        }
        stage_tasks.push(stage_task::StageTask::new(cfg, &topo, make_stage(kind, sender_config.clone()), StageStore::new(Box::new(store))));
    }
    let mut standbys = Vec::new();
    if cfg.standby_replicas {
        for task in stage_tasks.iter_mut() {
            standbys.push(task.with_standby(&topo));
        }
    }

    let mut handles = Vec::new();
    // The committed state, as the API and the state gauges read it.
    let live = Arc::new(crate::api::LiveState {
        stores: stage_tasks.iter().map(|t: &stage_task::StageTask| (t.kind(), t.shared_state())).collect(),
        ingress: cfg.ingress(),
        partitions: topo.partitions("stage.sender"),
        sender: sender_config.clone(),
        serving: stage_tasks.iter().map(|t| (t.kind(), t.serving())).collect(),
        standby: cfg.standby_replicas,
    });
    if !cfg.metrics_addr.is_empty() {
        let gauges = crate::api::gauges::spawn(live.clone(), shutdown.clone())?;
        handles.push(("gauges", std::thread::spawn(move || gauges.join().map_err(|_| TaskError::Fatal("gauges thread panicked".into())))));
    }
    if !cfg.api_addr.is_empty() {
        let tokens = crate::api::auth::Tokens::from_env(&|k| std::env::var(k).ok())?;
        if tokens.is_empty() {
            tracing::warn!(addr = %cfg.api_addr, "the HTTP API has no tokens (SENDGATE_API_TOKENS or SENDGATE_API_TOKENS_FILE): it refuses every request but /healthz, /readyz, /openapi.json and the operator page's files");
        }
        let tls = if cfg.api_tls_cert_file.is_empty() { None } else { Some(crate::api::server::tls_acceptor(&cfg.api_tls_cert_file, &cfg.api_tls_key_file)?) };
        let board = Arc::new(crate::api::board::Board::new(crate::api::board::BOARD_CAPACITY));
        let reader = crate::api::board::spawn_reader(cfg, topo.full("decisions"), board.clone(), shutdown.clone())?;
        let alerts = Arc::new(crate::api::alerts::Alerts::default());
        let alerts_sink = alerts.clone();
        let alerts_reader = crate::api::board::spawn_tail(cfg, "api-alerts", topo.full("alerts"), crate::api::alerts::ALERTS_KEPT as i64, move |v| alerts_sink.take(v), Arc::default(), shutdown.clone())?;
        let directory = Arc::new(crate::api::peers::Directory::new(&cfg.instance_id));
        let announcer = crate::api::peers::spawn(cfg, topo.full("instances"), directory.clone(), live.serving.clone(), cfg.api_url(), shutdown.clone())?;
        let api = crate::api::Api {
            directory,
            forwarder: Arc::new(crate::api::peers::Forwarder::new(cfg)?),
            alerts,
            explainer: Arc::new(crate::api::explain::Explainer::new(cfg, sender_config.clone())),
            live,
            tokens: Arc::new(tokens),
            board,
            publisher: Arc::new(crate::api::board::Publisher::new(cfg, topo.full("intents"), topo.full("commands"))?),
            health: Arc::new(health),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let api = crate::api::server::spawn(&cfg.api_addr, api, tls, shutdown.clone())?;
        tracing::info!(addr = %cfg.api_addr, scheme, advertised = %cfg.api_url(), "HTTP API (described at /openapi.json)");
        handles.push(("api-decisions", std::thread::spawn(move || reader.join().map_err(|_| TaskError::Fatal("decisions reader panicked".into())))));
        handles.push(("api-alerts", std::thread::spawn(move || alerts_reader.join().map_err(|_| TaskError::Fatal("alerts reader panicked".into())))));
        handles.push(("api-instances", std::thread::spawn(move || announcer.join().map_err(|_| TaskError::Fatal("instances announcer panicked".into())))));
        handles.push(("api", std::thread::spawn(move || api.join().map_err(|_| TaskError::Fatal("api thread panicked".into())))));
    }
    {
        let router = router::Router::new(&topo, registry, cfg);
        let (cfg, s, stop) = (cfg.clone(), settings("router"), shutdown.clone());
        handles.push(("router", std::thread::Builder::new().name("router".into()).spawn(move || guard(supervise(router, &cfg, s, &stop), &stop)).map_err(|e| e.to_string())?));
    }
    for (task, kind) in stage_tasks.into_iter().zip(StageKind::ALL) {
        let (cfg, s, stop) = (cfg.clone(), settings(kind.name()), shutdown.clone());
        handles.push((kind.name(), std::thread::Builder::new().name(kind.name().into()).spawn(move || guard(supervise(task, &cfg, s, &stop), &stop)).map_err(|e| e.to_string())?));
    }
    for standby in standbys {
        let stop = shutdown.clone();
        handles.push((
            "standby",
            std::thread::Builder::new()
                .name("standby".into())
                .spawn(move || {
                    standby.run(&stop);
                    Ok(())
                })
                .map_err(|e| e.to_string())?,
        ));
    }
    tracing::info!(namespace = %cfg.namespace, instance = %cfg.instance_id, bootstrap = %cfg.bootstrap, state = %cfg.state_dir.display(), "sendgate running");
    let mut failures = Vec::new();
    for (name, h) in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// A fatal error in one task stops the others too.
fn guard(r: Result<(), TaskError>, stop: &AtomicBool) -> Result<(), TaskError> {
    if r.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    r
}
