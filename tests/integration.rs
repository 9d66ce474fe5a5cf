//! The integration tests against the real broker, as one test binary.
//!
//! One binary, not one per file: each test binary links RocksDB and
//! librdkafka (a link of minutes on this project's build machine), and
//! `cargo test` runs binaries one after another, so a file of a single
//! slow test used to leave the other test thread idle. Here every test is
//! in one pool. The broker-outage test stays its own binary
//! (tests/broker_outage.rs): it stops and restarts the broker the others
//! use, so it must never run beside them.
//!
//! The files stay where they were, beside this one (hence the `#[path]`s).
//! One file's tests: `cargo test --release --test integration -- guards::`.

#[path = "common/mod.rs"]
mod common;

#[path = "acls.rs"]
mod acls;
#[path = "api.rs"]
mod api;
#[path = "audit.rs"]
mod audit;
#[path = "clients.rs"]
mod clients;
#[path = "guards.rs"]
mod guards;
#[path = "interop.rs"]
mod interop;
#[path = "mcp.rs"]
mod mcp;
#[path = "observability.rs"]
mod observability;
#[path = "operator_page.rs"]
mod operator_page;
#[path = "pipeline.rs"]
mod pipeline;
#[path = "process_pause.rs"]
mod process_pause;
#[path = "tenants.rs"]
mod tenants;
