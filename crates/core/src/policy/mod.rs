//! Policies: the document format, scopes, files, and the merge that gives
//! each intent its effective policy.

pub mod file;
pub mod resolve;
pub mod spec;

pub use resolve::{builtin_defaults, EffectivePolicy, Limit, PolicyBook, SignalPolicy};
pub use spec::{BreachAction, LimitKey, LimitScope, PolicySpec, Scope};
