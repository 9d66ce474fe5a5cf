//! sendgate-core: the guard itself, with no I/O.
//!
//! A stage's decision is a pure function of (state, record, log time,
//! policy). This crate holds everything that function needs and nothing
//! that reaches outside the process: no Kafka client, no RocksDB, no async
//! runtime (CI checks its dependency tree), so the compiler keeps the rule.
//! The `sendgate` crate adds the runtime around it: Kafka tasks, the RocksDB
//! store, the HTTP API and the CLI.
//!
//! Map of the modules:
//! - [`model`]: the records of the public contract and address normalisation.
//! - [`codec`]: Avro single-object encoding of every record (`schemas/`),
//!   and JSON lines read into contract records.
//! - [`clock`]: window and business-hours arithmetic in a tenant's zone.
//! - [`policy`]: policy documents, scopes, files and the effective-policy merge.
//! - [`state`]: the typed store interface, the in-memory store and the
//!   transaction overlay that keeps local state behind the committed log.
//! - [`stage`]: ingress (validation and fan-out) and the keyed stages
//!   (sender, tenant, recipient, recipient domain): decisions, alerts,
//!   records for other stages and state changes; the reserve/release
//!   protocol between them; the whole pipeline in memory for tests.

pub mod clock;
pub mod codec;
pub mod model;
pub mod policy;
pub mod stage;
pub mod state;
