//! The tenant stage, keyed by tenant: tenant-wide windows per class.
//!
//! A tenant's mailboxes span several sender domains, and so several sender
//! stage partitions; its windows need a partition of their own. Intents only
//! come here when their tenant has a tenant-wide limit for their class.

use super::pipeline::{domain_of, Cx, Stage, StageError, StageKind, Verdict};
use super::windows::{self, WindowCheck};
use crate::model::*;
use crate::policy::LimitScope;

pub struct TenantStage;

impl Stage for TenantStage {
    fn kind(&self) -> StageKind {
        StageKind::Tenant
    }

    fn check(&self, cx: &mut Cx<'_, '_>, hop: &IntentHop) -> Result<Verdict, StageError> {
        let i = &hop.intent;
        let policy = cx.book.effective(&i.tenant, domain_of(&i.sender), &i.sender, None);
        // The tenant's windows follow the tenant's zone, whoever sends.
        let tz = cx.book.effective(&i.tenant, "", "", None).tz;
        let mut checks = Vec::new();
        for limit in policy.limits_at(i.class, &[LimitScope::Tenant]) {
            checks.push(WindowCheck::load(cx, tz, limit, format!("tenant:{}", i.tenant), limit.key.class.as_str(), limit.max, limit.key.window.breach_reason())?);
        }
        windows::note(cx, &i.intent_id, &checks, false);
        if let Some((status, reason, retry_at_ms)) = windows::judge(&checks, hop.approved, |end, len| super::retry::after_window(&policy, i, end, len)) {
            let usage = checks.iter().map(WindowCheck::usage).collect();
            return Ok(Verdict::Deny { status, reason: reason.into(), retry_at_ms, usage, version: policy.version });
        }
        let undo = windows::reserve(cx, &mut checks, &policy, &i.tenant, &i.intent_id);
        Ok(Verdict::Pass { undo, usage: checks.iter().map(WindowCheck::usage).collect(), version: policy.version })
    }

    fn on_delivery(&self, _cx: &mut Cx<'_, '_>, _ev: &DeliveryEvent) -> Result<(), StageError> {
        Ok(())
    }
}
