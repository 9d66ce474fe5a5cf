//! `sendgate shadow`: candidate policies decided beside the enforced policy
//! on live traffic (see `stage::shadow`): start, stop, promote, list, and
//! the report of what they would change.
//!
//! A candidate is a policy document on the policies topic under the key
//! `shadow/SCOPE`; stopping it is that key's tombstone; promoting it
//! publishes the same document under `SCOPE` and then the tombstone, in
//! that order on the one policies partition, so every intent after the
//! promotion is decided under it.

use super::kafka_io;
use super::ops::{policy_records, publish_policy_record};
use crate::audit::compare::Comparison;
use crate::audit::replay::{within, Bound};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::resolve::{MAX_SHADOWS, SHADOW_PREFIX};
use crate::policy::{file::parse_policy_file, PolicySpec, Scope};
use std::collections::BTreeMap;

/// The candidates in shadow: scope -> (version, document).
fn candidates(cfg: &Config) -> Result<BTreeMap<String, (i64, PolicyDocument)>, String> {
    Ok(policy_records(cfg)?
        .into_iter()
        .filter_map(|(k, (v, d))| Some((k.strip_prefix(SHADOW_PREFIX)?.to_string(), (v, d?))))
        .collect())
}

/// `sendgate shadow start FILE`
pub async fn start(cfg: &Config, file: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let docs = parse_policy_file(&text).map_err(|errs| format!("{} was not published in shadow; fix these first:\n  - {}", file.display(), errs.join("\n  - ")))?;
    let active = candidates(cfg)?;
    let new = docs.iter().filter(|(s, _)| !active.contains_key(&s.to_string())).count();
    if active.len() + new > MAX_SHADOWS {
        return Err(format!(
            "at most {MAX_SHADOWS} candidate policies are in shadow at once; {} are ({}) and {} would start: stop or promote one first",
            active.len(),
            active.keys().cloned().collect::<Vec<_>>().join(", "),
            new
        ));
    }
    for (scope, spec) in docs {
        let doc = PolicyDocument { scope: scope.to_string(), spec_json: spec.to_canonical_json(), source_name: Some(file.display().to_string()) };
        let version = publish_policy_record(cfg, &format!("{SHADOW_PREFIX}{scope}"), Some(&doc)).await?;
        println!("{scope}: candidate in shadow as version {version}; the enforced policy is unchanged");
    }
    Ok(())
}

/// `sendgate shadow stop SCOPE`
pub async fn stop(cfg: &Config, scope: &str) -> Result<(), String> {
    let scope = Scope::parse(scope)?.to_string();
    if !candidates(cfg)?.contains_key(&scope) {
        return Err(format!("{scope}: no candidate in shadow (sendgate shadow list shows them)"));
    }
    let version = publish_policy_record(cfg, &format!("{SHADOW_PREFIX}{scope}"), None).await?;
    println!("{scope}: shadow stopped at version {version}");
    Ok(())
}

/// `sendgate shadow promote SCOPE`
pub async fn promote(cfg: &Config, scope: &str) -> Result<(), String> {
    let scope = Scope::parse(scope)?.to_string();
    let Some((version, doc)) = candidates(cfg)?.remove(&scope) else {
        return Err(format!("{scope}: no candidate in shadow to promote (sendgate shadow list shows them)"));
    };
    // The router checked it when it was published; a document a newer rule
    // refuses is not enforced.
    let spec = PolicySpec::from_json(&doc.spec_json)?;
    spec.validate_for(&Scope::parse(&scope)?)?;
    let enforced = PolicyDocument { source_name: Some(format!("promoted from shadow version {version}")), ..doc };
    let now = publish_policy_record(cfg, &scope, Some(&enforced)).await?;
    publish_policy_record(cfg, &format!("{SHADOW_PREFIX}{scope}"), None).await?;
    println!("{scope}: candidate version {version} promoted; enforced as version {now} from the next intent; its shadow stopped");
    Ok(())
}

/// `sendgate shadow list`
pub fn list(cfg: &Config) -> Result<(), String> {
    let active = candidates(cfg)?;
    if active.is_empty() {
        println!("no candidate policy in shadow");
    }
    for (scope, (version, doc)) in active {
        println!("{scope}  version {version}{}", doc.source_name.map(|s| format!("  from {s}")).unwrap_or_default());
    }
    Ok(())
}

pub struct ReportArgs {
    pub scope: Option<String>,
    pub tenant: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub show: usize,
    pub json: bool,
}

/// `sendgate shadow report`: the shadow-decisions topic, in the backtest's format.
pub fn report(cfg: &Config, args: ReportArgs) -> Result<(), String> {
    let topic = cfg.topology()?.full("shadow-decisions");
    let scope = args.scope.as_deref().map(Scope::parse).transpose()?.map(|s| s.to_string());
    let (from, to) = (args.from.as_deref().map(Bound::parse).transpose()?, args.to.as_deref().map(Bound::parse).transpose()?);
    // By candidate scope: its versions seen, and the comparison.
    let mut by_scope: BTreeMap<String, (std::collections::BTreeSet<i64>, Comparison)> = BTreeMap::new();
    kafka_io::read_ranges(cfg, &topic, &kafka_io::watermarks(cfg, &topic)?, |r| {
        let s: ShadowDecision = codec::decode(RecordType::ShadowDecision, r.payload.unwrap_or_default()).map_err(|e| format!("{topic} [{}] @{}: {e}", r.partition, r.offset))?;
        if scope.as_ref().is_some_and(|w| *w != s.shadow_scope) || args.tenant.as_ref().is_some_and(|t| *t != s.tenant) || !within(&from, &to, &s.enforced) {
            return Ok(());
        }
        let (versions, c) = by_scope.entry(s.shadow_scope.clone()).or_default();
        versions.insert(s.candidate.policy_version);
        c.add(&s.enforced, &s.candidate, args.show);
        Ok(())
    })?;
    if args.json {
        let v: Vec<serde_json::Value> = by_scope
            .iter()
            .map(|(scope, (versions, c))| {
                let mut v = c.to_json("enforced", None);
                v["shadow_scope"] = scope.clone().into();
                v["candidate_versions"] = versions.iter().copied().collect::<Vec<_>>().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    if by_scope.is_empty() {
        println!("no would-be decision of a candidate in shadow{}", if scope.is_some() || args.tenant.is_some() || from.is_some() || to.is_some() { " matches" } else { " yet" });
    }
    for (scope, (versions, c)) in &by_scope {
        let versions: Vec<String> = versions.iter().map(i64::to_string).collect();
        println!("candidate in shadow for {scope} (version {})", versions.join(", "));
        print!("{}", c.summary("enforced"));
        print!("{}", c.tables("enforced", None));
        println!();
    }
    Ok(())
}
