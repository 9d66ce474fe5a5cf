//! Keyed stages. Each is a pure function of (state, record, log time,
//! policy) returning decisions, alerts and state changes.

pub mod keys;
pub mod sender;
pub mod signals;

pub use sender::{SenderConfig, SenderStage, StageError, StageOutput};

#[cfg(test)]
mod tests;
