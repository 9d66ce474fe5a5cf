//! Audits: every decision reproduced from the log.
//!
//! - [`replay`]: rebuild every stage's state from its recorded input log in
//!   a scratch directory, with the live processor's code, re-derive each
//!   decision and compare it field by field with the decisions topic;
//!   `recorded` keeps the recorded decisions it compares with, and
//!   [`state`] compares the rebuilt state with what the changelogs record.
//! - [`explain`]: one intent's decision, check by check.
//! - [`backtest`]: the recorded inputs under a candidate policy.
//! - [`compare`]: the report format the backtest and the shadow report share.

pub mod backtest;
pub mod compare;
pub mod explain;
mod recorded;
pub mod replay;
pub mod state;
