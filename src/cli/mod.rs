//! The `sendgate` subcommands other than `run`: producing inputs from JSON,
//! following outputs as JSON, policies, operator commands, audits and the
//! demo. (The benchmark and fault-harness instruments are the
//! `sendgate-bench` binary, src/bin/sendgate-bench.)

pub mod audit;
pub mod collect;
pub mod demo;
pub mod kafka_io;
pub mod ops;
pub mod reconcile;
pub mod shadow;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Sets the returned flag on SIGTERM or Ctrl-C.
pub fn stop_on_signal(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    rt.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: committing the open transaction and flushing state");
        stop.store(true, Ordering::Relaxed);
    });
    shutdown
}

/// Log lines to stderr, filtered by SENDGATE_LOG (default `info`), for both
/// binaries.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SENDGATE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
