//! Policy files (TOML) and policy documents (JSON, as on the policies
//! topic): parsed, validated, and every valid document merged into an
//! effective policy. A valid document survives its canonical JSON form
//! unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendgate_core::policy::file::parse_policy_file;
use sendgate_core::policy::{PolicyBook, PolicySpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut docs = parse_policy_file(text).unwrap_or_default();
    if let Ok(spec) = PolicySpec::from_json(text) {
        if spec.validate().is_ok() {
            docs.push((sendgate_core::policy::Scope::Default, spec));
        }
    }
    let mut book = PolicyBook::default();
    for (version, (scope, spec)) in docs.into_iter().enumerate() {
        let again = PolicySpec::from_json(&spec.to_canonical_json()).expect("a valid document's canonical JSON parses");
        assert_eq!(again, spec, "canonical JSON round trip");
        book.set(scope.clone(), version as i64 + 1, Some(spec.clone()));
        book.set_shadow(scope, version as i64 + 100, Some(spec));
    }
    let _ = book.effective("acme", "acme.com", "ana@acme.com", Some("gmail.com"));
    let _ = book.effective("acme", "acme.com", "ana@acme.com", None);
});
