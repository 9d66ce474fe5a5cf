//! The Avro schemas of `schemas/`, compiled into the binary, and the
//! splicing that makes each one self-contained.
//!
//! The internal schemas name public types (`sendgate.SendIntent`) instead of
//! repeating them, so that one file stays the single source of each type.
//! At load time every such reference is replaced by its definition, giving
//! each schema a standalone parsing canonical form (and so a fingerprint that
//! changes whenever a type it embeds changes).

use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};

/// (file name, text) of each named file under `schemas/<dir>`, compiled in.
macro_rules! schema_set {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../../schemas/", $dir, $file)))),*]
    };
}

/// (file name, text) of every schema shipped in `schemas/`.
pub const SCHEMA_FILES: &[(&str, &str)] = schema_set!("": "send_intent.avsc", "delivery_event.avsc", "decision.avsc", "alert.avsc", "dead_letter.avsc", "command.avsc", "policy_document.avsc", "shadow_decision.avsc", "internal/policy_change.avsc", "internal/stage_envelope.avsc", "internal/state_entry.avsc");

/// Every earlier released schema set, kept so that records written by an
/// older release (on the input topics, or in a changelog being restored)
/// stay readable: they are decoded with their writer schema and resolved to
/// the current one (fields added since take their defaults).
pub const PREVIOUS_SETS: &[(&str, &[(&str, &str)])] = &[
    ("v1", schema_set!("previous/v1/": "send_intent.avsc", "delivery_event.avsc", "decision.avsc", "alert.avsc", "dead_letter.avsc", "command.avsc", "policy_document.avsc", "internal/policy_change.avsc", "internal/stage_envelope.avsc", "internal/state_entry.avsc")),
    ("v2", schema_set!("previous/v2/": "send_intent.avsc", "delivery_event.avsc", "decision.avsc", "alert.avsc", "dead_letter.avsc", "command.avsc", "policy_document.avsc", "internal/policy_change.avsc", "internal/stage_envelope.avsc", "internal/state_entry.avsc")),
    ("v3", schema_set!("previous/v3/": "send_intent.avsc", "delivery_event.avsc", "decision.avsc", "alert.avsc", "dead_letter.avsc", "command.avsc", "policy_document.avsc", "shadow_decision.avsc", "internal/policy_change.avsc", "internal/stage_envelope.avsc", "internal/state_entry.avsc")),
    ("v4", schema_set!("previous/v4/": "send_intent.avsc", "delivery_event.avsc", "decision.avsc", "alert.avsc", "dead_letter.avsc", "command.avsc", "policy_document.avsc", "shadow_decision.avsc", "internal/policy_change.avsc", "internal/stage_envelope.avsc", "internal/state_entry.avsc")),
];

const PRIMITIVES: &[&str] = &["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

fn full_name(name: &str, namespace: Option<&str>) -> String {
    if name.contains('.') {
        return name.to_string();
    }
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// Every named type defined anywhere in the files, by full name.
fn index_named_types(files: &[(&str, Json)]) -> HashMap<String, Json> {
    fn walk(v: &Json, ns: Option<&str>, out: &mut HashMap<String, Json>) {
        match v {
            Json::Object(o) => {
                let kind = o.get("type").and_then(Json::as_str);
                let mut inner_ns = ns.map(str::to_string);
                if matches!(kind, Some("record" | "enum" | "fixed")) {
                    if let Some(name) = o.get("name").and_then(Json::as_str) {
                        let own_ns = o.get("namespace").and_then(Json::as_str).or(ns);
                        let fqn = full_name(name, own_ns);
                        inner_ns = fqn.rsplit_once('.').map(|(n, _)| n.to_string());
                        // Store with an explicit namespace so that it means the
                        // same thing wherever it is spliced.
                        let mut def = o.clone();
                        if let Some(n) = &inner_ns {
                            def.insert("namespace".into(), Json::String(n.clone()));
                        }
                        out.entry(fqn).or_insert(Json::Object(def));
                    }
                }
                for (k, child) in o {
                    if k == "type" || k == "fields" || k == "items" || k == "values" {
                        walk(child, inner_ns.as_deref(), out);
                    }
                }
            }
            Json::Array(a) => a.iter().for_each(|c| walk(c, ns, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    for (_, j) in files {
        walk(j, None, &mut out);
    }
    out
}

/// Replaces each reference to a named type by its definition, the first
/// time it is met in this schema (later uses stay references, as Avro wants).
fn splice(v: &mut Json, ns: Option<&str>, lib: &HashMap<String, Json>, defined: &mut HashSet<String>) -> Result<(), String> {
    match v {
        Json::String(s) if !PRIMITIVES.contains(&s.as_str()) => {
            let fqn = full_name(s, ns);
            if defined.contains(&fqn) {
                return Ok(());
            }
            let mut def = lib.get(&fqn).cloned().ok_or_else(|| format!("unknown Avro type {fqn}"))?;
            splice(&mut def, ns, lib, defined)?;
            *v = def;
        }
        Json::Object(o) => {
            let kind = o.get("type").and_then(Json::as_str).map(str::to_string);
            let mut inner_ns = ns.map(str::to_string);
            if matches!(kind.as_deref(), Some("record" | "enum" | "fixed")) {
                let name = o.get("name").and_then(Json::as_str).unwrap_or_default();
                let own_ns = o.get("namespace").and_then(Json::as_str).or(ns);
                let fqn = full_name(name, own_ns);
                inner_ns = fqn.rsplit_once('.').map(|(n, _)| n.to_string());
                // A type already defined earlier in this schema (an inline
                // definition inside a spliced type) becomes a reference.
                if defined.contains(&fqn) {
                    *v = Json::String(fqn);
                    return Ok(());
                }
                defined.insert(fqn);
            }
            for key in ["type", "items", "values"] {
                if let Some(child) = o.get_mut(key) {
                    if key == "type" && matches!(child.as_str(), Some("record" | "enum" | "fixed" | "array" | "map")) {
                        continue;
                    }
                    splice(child, inner_ns.as_deref(), lib, defined)?;
                }
            }
            if let Some(Json::Array(fields)) = o.get_mut("fields") {
                for f in fields {
                    if let Some(t) = f.get_mut("type") {
                        splice(t, inner_ns.as_deref(), lib, defined)?;
                    }
                }
            }
        }
        Json::Array(a) => {
            for c in a {
                splice(c, ns, lib, defined)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every top-level schema, self-contained, as JSON text, by file name.
pub fn standalone_schemas() -> Result<Vec<(&'static str, String)>, String> {
    splice_set(SCHEMA_FILES)
}

/// The self-contained schemas of one schema set.
pub fn splice_set(set: &[(&'static str, &str)]) -> Result<Vec<(&'static str, String)>, String> {
    let files: Vec<(&str, Json)> = set
        .iter()
        .map(|(n, t)| serde_json::from_str(t).map(|j| (*n, j)).map_err(|e| format!("{n}: {e}")))
        .collect::<Result<_, _>>()?;
    let lib = index_named_types(&files);
    files
        .into_iter()
        .map(|(name, mut json)| {
            let mut defined = HashSet::new();
            splice(&mut json, None, &lib, &mut defined).map_err(|e| format!("{name}: {e}"))?;
            Ok((name, json.to_string()))
        })
        .collect()
}
