//! Policy files: TOML with one `[[policy]]` table per scope.
//!
//! ```toml
//! [[policy]]
//! scope = "tenant:acme"
//! timezone = "Europe/Berlin"
//! business_hours = { start = "08:00", end = "18:00", days = ["mon", "tue", "wed", "thu", "fri"] }
//! limits = { "mailbox.outbound.day" = 25, "mailbox.outbound.hour" = 3 }
//! ```

use super::spec::{PolicySpec, Scope};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    policy: Vec<toml::Value>,
}

/// Parses and validates every document in a file. Returns all problems at
/// once, each naming the document, so nothing is published until all are fixed.
pub fn parse_policy_file(text: &str) -> Result<Vec<(Scope, PolicySpec)>, Vec<String>> {
    let file: PolicyFile = toml::from_str(text).map_err(|e| vec![format!("not a policy file: {e}")])?;
    if file.policy.is_empty() {
        return Err(vec!["the file has no [[policy]] table".into()]);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, doc) in file.policy.into_iter().enumerate() {
        let n = i + 1;
        let mut table = match doc {
            toml::Value::Table(t) => t,
            _ => {
                errors.push(format!("policy #{n}: must be a table"));
                continue;
            }
        };
        let scope = match table.remove("scope") {
            Some(toml::Value::String(s)) => match Scope::parse(&s) {
                Ok(sc) => sc,
                Err(e) => {
                    errors.push(format!("policy #{n}: {e}"));
                    continue;
                }
            },
            _ => {
                errors.push(format!("policy #{n}: missing scope = \"...\" (default, tenant:T, sender_domain:D, mailbox:A or recipient_domain:D)"));
                continue;
            }
        };
        if !seen.insert(scope.clone()) {
            errors.push(format!("policy #{n} ({scope}): the scope appears twice in the file"));
            continue;
        }
        let spec: PolicySpec = match toml::Value::Table(table).try_into() {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("policy #{n} ({scope}): {e}"));
                continue;
            }
        };
        if let Err(es) = spec.validate() {
            errors.extend(es.into_iter().map(|e| format!("policy #{n} ({scope}): {e}")));
            continue;
        }
        if let Err(e) = spec.validate_for(&scope) {
            errors.push(format!("policy #{n} ({scope}): {e}"));
            continue;
        }
        out.push((scope, spec));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_two_scopes_parses() {
        let docs = parse_policy_file(
            r#"
[[policy]]
scope = "default"
business_hours = "off"

[[policy]]
scope = "mailbox:Ana@ACME.com"
limits = { "mailbox.outbound.day" = { max = 25, on_breach = "hold" }, "mailbox.outbound.hour" = "off" }
"#,
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].0, Scope::Mailbox("ana@acme.com".into()));
    }

    #[test]
    fn the_example_policy_file_is_valid() {
        let docs = parse_policy_file(include_str!("../../../../examples/policy.toml")).unwrap();
        assert!(docs.len() >= 5);
    }

    #[test]
    fn every_error_is_reported_with_its_document() {
        let errs = parse_policy_file(
            r#"
[[policy]]
scope = "planet:mars"

[[policy]]
scope = "tenant:acme"
limits = { "mailbox.outbound.fortnight" = 3 }
"#,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("policy #1"));
        assert!(errs[1].starts_with("policy #2 (tenant:acme)"));
    }
}
