//! The `sendgate` subcommands other than `run`: producing inputs from JSON,
//! following outputs as JSON, policies, operator commands, audits, the
//! benchmark instruments and the demo.

pub mod audit;
pub mod bench;
pub mod collect;
pub mod demo;
pub mod kafka_io;
pub mod load;
pub mod ops;
pub mod reconcile;
pub mod shadow;
pub mod verify;
