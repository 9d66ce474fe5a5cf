//! The keyed stages. Each is a pure function of (state, record, policy)
//! returning decisions, alerts, records for other stages and state changes;
//! the runtime does all I/O.
//!
//! - [`context`]: stage kinds and order, what handling a record puts out,
//!   and the context a handler reads and writes state through.
//! - [`pipeline`]: dispatch, the stream clock, expiry, and the reserve /
//!   release protocol between stages.
//! - [`ingress`]: input records validated, normalised and fanned out.
//! - [`windows`]: windowed limits checked and reserved together.
//! - [`sender`], [`tenant`], [`recipient`], [`recipient_domain`]: the stages.
//! - [`signals`]: bounce and complaint budgets.
//! - [`trust`]: the trust ladders of new mailboxes, domains and recipients.
//! - [`feedback`]: ISP and ESP answers matched by rules to actions.
//! - [`reconcile`]: delivery events joined with decisions (unapproved sends).
//! - [`retry`]: when a deferred intent comes back (spread, business hours).
//! - [`shadow`]: candidate policies decided beside the enforced one.
//! - [`driver`]: the whole pipeline in memory, for tests and what-if runs.

pub mod context;
pub mod driver;
pub mod feedback;
pub mod ingress;
pub mod keys;
pub mod pipeline;
pub mod recipient;
pub mod reconcile;
pub mod recipient_domain;
pub mod retry;
pub mod shadow;
pub mod sender;
pub mod signals;
pub mod tenant;
pub mod trust;
pub mod windows;

pub use pipeline::{Stage, StageError, StageKind, StageOutput};
pub use sender::{SenderConfig, SenderStage};

/// The stage object of a kind.
pub fn make_stage(kind: StageKind, sender: SenderConfig) -> Box<dyn Stage + Send> {
    match kind {
        StageKind::Sender => Box::new(SenderStage::new(sender)),
        StageKind::Tenant => Box::new(tenant::TenantStage),
        StageKind::Recipient => Box::new(recipient::RecipientStage),
        StageKind::RecipientDomain => Box::new(recipient_domain::RecipientDomainStage),
    }
}

#[cfg(test)]
mod tests;
