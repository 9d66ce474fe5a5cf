//! The Kafka ACLs of a deployment, per principal, as `kafka-acls.sh`
//! commands (`sendgate config acls`).
//!
//! Who may write what is the first line of tenant isolation: a client that
//! can write the commands topic can approve any held intent, and one that
//! can write a stage topic can forge the records that release counters. The
//! grants below give each principal only what its role needs:
//! - sendgate itself: read its inputs, write its outputs, read and write
//!   its stage and changelog topics, its consumer groups and transactional
//!   ids (all named `<namespace>.…`), and create and check its topics;
//! - an app: write intents, read decisions, in consumer groups of its own;
//! - a mail pipeline: write delivery events;
//! - an operator (optional): write commands and policies, read what the CLI
//!   reads.
//!
//! The names come from the topology, so the grants follow the topics that
//! `topics apply` creates. tests/acls.rs runs the processor, an app and a
//! pipeline with exactly these grants on a broker with the standard
//! authorizer.

use crate::topology::Topology;

/// The principals to grant to, as the broker names them (`User:name`).
#[derive(Debug, Clone, Default)]
pub struct Principals {
    pub sendgate: String,
    pub app: Option<String>,
    /// Consumer groups the app may use: names starting with this.
    pub app_group_prefix: String,
    pub pipeline: Option<String>,
    pub operator: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic,
    Group,
    TransactionalId,
}

/// One allow-ACL: a principal, a resource name (a prefix if `prefixed`),
/// and the operations allowed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub principal: String,
    pub resource: Resource,
    pub name: String,
    pub prefixed: bool,
    pub operations: Vec<&'static str>,
    /// Why the principal needs it (a comment above the command).
    pub why: String,
}

/// Longest principal accepted; Kafka names are far shorter in practice.
const MAX_PRINCIPAL: usize = 256;

/// A principal must be `Type:name` with a type the broker knows (`User`,
/// or a custom principal builder's type) and nothing a shell would read.
pub fn check_principal(what: &str, p: &str) -> Result<(), String> {
    let Some((kind, name)) = p.split_once(':') else {
        return Err(format!("{what} {p:?} must be TYPE:NAME, for example User:sendgate"));
    };
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{what} {p:?}: the type before ':' must be letters and digits, for example User"));
    }
    if name.is_empty() || p.len() > MAX_PRINCIPAL {
        return Err(format!("{what} {p:?}: the name after ':' must be 1 to {MAX_PRINCIPAL} characters"));
    }
    if name.chars().any(|c| c.is_control() || c == '\'') {
        return Err(format!("{what} {p:?}: the name must not contain quotes or control characters"));
    }
    Ok(())
}

impl Principals {
    pub fn check(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        let named = [("--sendgate", Some(&self.sendgate)), ("--app", self.app.as_ref()), ("--pipeline", self.pipeline.as_ref()), ("--operator", self.operator.as_ref())];
        for (what, p) in named {
            if let Some(p) = p {
                if let Err(e) = check_principal(what, p) {
                    errors.push(e);
                }
            }
        }
        if self.app.is_some() {
            let g = &self.app_group_prefix;
            if g.is_empty() || g.len() > 200 || !g.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                errors.push(format!("--app-group-prefix {g:?} must be 1 to 200 letters, digits, '.', '_' or '-'"));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (what, p) in named {
            if let Some(p) = p {
                if seen.contains(&p.as_str()) {
                    errors.push(format!("{what} {p:?} is also another role's principal: give each role its own principal, so that each has only its own rights"));
                }
                seen.push(p);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

fn grant(principal: &str, resource: Resource, name: String, prefixed: bool, operations: &[&'static str], why: &str) -> Grant {
    Grant { principal: principal.to_string(), resource, name, prefixed, operations: operations.to_vec(), why: why.to_string() }
}

/// Every grant for `p` in `topology`'s namespace, in a stable order.
pub fn grants(topology: &Topology, p: &Principals) -> Vec<Grant> {
    let ns = &topology.namespace;
    let prefix = format!("{ns}.");
    let named = |role: &str| -> Vec<String> { topology.topics.iter().filter(|t| t.role == role).map(|t| topology.full(&t.name)).collect() };
    let mut out = Vec::new();
    let s = &p.sendgate;
    out.push(grant(s, Resource::Topic, prefix.clone(), true, &["Create", "DescribeConfigs", "Describe"], "sendgate: create missing topics at start-up and check existing ones (Create can go if an administrator creates them and sendgate runs with --no-create-topics)"));
    for t in named("input") {
        out.push(grant(s, Resource::Topic, t, false, &["Read", "Describe"], "sendgate: read an input"));
    }
    for t in named("output") {
        out.push(grant(s, Resource::Topic, t, false, &["Write", "Read", "Describe"], "sendgate: write an output, and read it back (the API's request-reply, recent decisions and alerts, and explain)"));
    }
    for t in named("internal").into_iter().chain(named("changelog")) {
        out.push(grant(s, Resource::Topic, t, false, &["Read", "Write", "Describe"], "sendgate: a stage's input or state changelog, written and read by sendgate alone"));
    }
    out.push(grant(s, Resource::Group, prefix.clone(), true, &["Read", "Describe"], "sendgate: its consumer groups (tasks, restores, standbys, the CLI's reader)"));
    out.push(grant(s, Resource::TransactionalId, prefix.clone(), true, &["Write", "Describe"], "sendgate: its tasks' transactions (exactly-once)"));
    if let Some(a) = &p.app {
        out.push(grant(a, Resource::Topic, topology.full("intents"), false, &["Write", "Describe"], "app: publish send intents"));
        out.push(grant(a, Resource::Topic, topology.full("decisions"), false, &["Read", "Describe"], "app: read decisions"));
        out.push(grant(a, Resource::Group, p.app_group_prefix.clone(), true, &["Read", "Describe"], "app: its own consumer groups for the decisions"));
    }
    if let Some(m) = &p.pipeline {
        out.push(grant(m, Resource::Topic, topology.full("delivery"), false, &["Write", "Describe"], "mail pipeline: publish delivery events"));
    }
    if let Some(o) = &p.operator {
        for t in ["commands", "policies"] {
            out.push(grant(o, Resource::Topic, topology.full(t), false, &["Write", "Read", "Describe"], "operator: publish commands and policies (sendgate command, sendgate policy apply/show)"));
        }
        for t in ["decisions", "alerts", "shadow-decisions", "dead-letters"] {
            out.push(grant(o, Resource::Topic, topology.full(t), false, &["Read", "Describe"], "operator: read what sendgate decided and reported"));
        }
        out.push(grant(o, Resource::Group, format!("{ns}.cli-reader"), false, &["Read", "Describe"], "operator: the CLI's reader group"));
    }
    out
}

/// Single-quoted for a POSIX shell (names are checked to hold no quote).
fn quoted(s: &str) -> String {
    format!("'{s}'")
}

/// A POSIX shell script of `kafka-acls.sh --add` commands, one per grant.
pub fn render(topology: &Topology, grants: &[Grant]) -> String {
    let mut out = String::new();
    out.push_str("#!/bin/sh\n");
    out.push_str(&format!("# Kafka ACLs for sendgate namespace {:?}, written by `sendgate config acls`.\n", topology.namespace));
    out.push_str("# Run by a principal allowed to alter ACLs. BOOTSTRAP: the cluster's bootstrap\n");
    out.push_str("# servers; ADMIN_CONFIG (optional): a client properties file for that principal;\n");
    out.push_str("# KAFKA_ACLS (optional): the command, kafka-acls.sh unless set.\n");
    out.push_str("set -eu\n");
    out.push_str(": \"${BOOTSTRAP:?set BOOTSTRAP to the cluster's bootstrap servers}\"\n");
    for g in grants {
        out.push_str(&format!("\n# {}\n", g.why));
        out.push_str("${KAFKA_ACLS:-kafka-acls.sh} --bootstrap-server \"$BOOTSTRAP\" ${ADMIN_CONFIG:+--command-config \"$ADMIN_CONFIG\"} --add");
        out.push_str(&format!(" --allow-principal {}", quoted(&g.principal)));
        for op in &g.operations {
            out.push_str(&format!(" --operation {op}"));
        }
        let flag = match g.resource {
            Resource::Topic => "--topic",
            Resource::Group => "--group",
            Resource::TransactionalId => "--transactional-id",
        };
        out.push_str(&format!(" {flag} {}", quoted(&g.name)));
        if g.prefixed {
            out.push_str(" --resource-pattern-type prefixed");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::parse(crate::topology::DEFAULT_TOPOLOGY, "acme").unwrap()
    }

    fn principals() -> Principals {
        Principals {
            sendgate: "User:sendgate".into(),
            app: Some("User:app".into()),
            app_group_prefix: "app.".into(),
            pipeline: Some("User:mta".into()),
            operator: Some("User:ops".into()),
        }
    }

    fn allowed(gs: &[Grant], principal: &str, op: &str, topic: &str) -> bool {
        gs.iter().any(|g| {
            g.principal == principal && g.resource == Resource::Topic && g.operations.contains(&op) && if g.prefixed { topic.starts_with(&g.name) } else { topic == g.name }
        })
    }

    #[test]
    fn each_role_writes_only_its_own_topics() {
        let t = topo();
        let gs = grants(&t, &principals());
        for spec in &t.topics {
            let name = t.full(&spec.name);
            let app_writes = allowed(&gs, "User:app", "Write", &name);
            assert_eq!(app_writes, spec.name == "intents", "app writes {name}");
            assert_eq!(allowed(&gs, "User:mta", "Write", &name), spec.name == "delivery", "pipeline writes {name}");
            assert_eq!(allowed(&gs, "User:app", "Read", &name), spec.name == "decisions", "app reads {name}");
            let ops_writes = allowed(&gs, "User:ops", "Write", &name);
            assert_eq!(ops_writes, spec.name == "commands" || spec.name == "policies", "operator writes {name}");
            // sendgate writes everything but its inputs, and reads everything
            // (its API reads its outputs back).
            assert_eq!(allowed(&gs, "User:sendgate", "Write", &name), spec.role != "input", "sendgate writes {name}");
            assert!(allowed(&gs, "User:sendgate", "Read", &name), "sendgate reads {name}");
        }
        // No grant reaches past the namespace, except the app's own groups.
        for g in &gs {
            assert!(g.name.starts_with("acme.") || (g.principal == "User:app" && g.resource == Resource::Group), "{g:?}");
        }
    }

    #[test]
    fn the_script_quotes_names_and_marks_prefixes() {
        let t = topo();
        let text = render(&t, &grants(&t, &principals()));
        assert!(text.contains("--allow-principal 'User:app' --operation Write --operation Describe --topic 'acme.intents'\n"), "{text}");
        assert!(text.contains("--transactional-id 'acme.' --resource-pattern-type prefixed\n"), "{text}");
        assert_eq!(text.matches(" --add ").count(), grants(&t, &principals()).len());
    }

    #[test]
    fn bad_principals_are_refused_with_what_to_fix() {
        let mut p = principals();
        p.app = Some("app".into());
        assert!(p.check().unwrap_err().contains("must be TYPE:NAME"));
        let mut p = principals();
        p.pipeline = Some("User:o'neil".into());
        assert!(p.check().unwrap_err().contains("quotes"));
        let mut p = principals();
        p.operator = Some("User:sendgate".into());
        assert!(p.check().unwrap_err().contains("another role's principal"));
        let mut p = principals();
        p.app_group_prefix = "app groups".into();
        assert!(p.check().unwrap_err().contains("--app-group-prefix"));
        assert!(principals().check().is_ok());
    }
}
