//! sendgate: a Kafka-native, event-sourced guard for sender reputation.
//!
//! Apps publish a send intent before each email; mail pipelines publish
//! delivery events; sendgate answers every intent with a decision, derived
//! only from the log, so any decision can be replayed and explained.
//!
//! Two crates (docs/design.md opens with their picture):
//! - `sendgate-core` (crates/core) is the guard with no I/O: no Kafka
//!   client, no RocksDB, no async runtime. Its modules are re-exported here
//!   under the same names:
//!   - [`model`]: the records of the public contract and address normalisation.
//!   - [`codec`]: Avro single-object encoding of every record (`schemas/`),
//!     and JSON lines read into records.
//!   - [`clock`]: window and business-hours arithmetic in a tenant's zone.
//!   - [`policy`]: policy documents, scopes, files and the effective-policy merge.
//!   - [`stage`]: ingress (validation and fan-out) and the keyed stages
//!     (sender, tenant, recipient, recipient domain) as pure functions of
//!     (state, record, policy): decisions, alerts, records for other stages
//!     and state changes; the reserve/release protocol between them; the
//!     whole pipeline in memory for tests.
//! - `sendgate` (this crate) runs it:
//!   - [`state`]: the core's store interface and transaction overlay, and the
//!     RocksDB store ([`state::rocks`]).
//!   - [`runtime`]: Kafka clients and rebalances, the exactly-once task loop,
//!     the router task (intents and delivery events merged by log time), the stage tasks and their standby replicas.
//!   - [`topology`]: topics as data and `topics apply`.
//!   - [`config`]: configuration and its start-up checks.
//!   - [`acls`]: the Kafka ACLs of sendgate, apps, mail pipelines and
//!     operators, as `kafka-acls.sh` commands.
//!   - [`connection`]: how clients connect (TLS, SASL, OIDC, secrets from the
//!     environment or files), the output compression, and the start-up check
//!     that says what is wrong with a connection.
//!   - [`metrics`]: Prometheus metric names and the exporter.
//!   - [`redact`]: no email address in a log line unless asked (keyed hashes).
//!   - [`registry`]: input in the Confluent Schema Registry wire format: the
//!     writer schema fetched by id (bounded cache) and converted to single object.
//!   - [`api`]: the processor's HTTP API (axum, OpenAPI): publish intents and
//!     answer with their decisions, simulate, usage, held intents, senders,
//!     alerts, explain, from any instance; tokens, TLS; the operator page.
//!   - [`mcp`]: `sendgate mcp`, the tools for AI agents (Model Context
//!     Protocol), a client of the HTTP API.
//!   - [`audit`]: replaying the stage logs to reproduce and check decisions.
//!   - [`cli`]: the `sendgate` subcommands other than `run`, including the
//!     benchmark instruments and the fault harness's verifier and probe.
//!
//! No two modules depend on each other, directly or through others
//! (`scripts/check-module-cycles.py`, run by the test command): where a
//! lower module must call back into a higher one, it declares what it
//! needs (a trait, a function type) and the higher one hands it in.

pub mod acls;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod connection;
pub mod mcp;
pub mod metrics;
pub mod redact;
pub mod registry;
pub mod runtime;
pub mod state;
pub mod topology;

pub use sendgate_core::{clock, codec, model, policy, stage};
