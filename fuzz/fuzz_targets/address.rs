//! Address and domain normalisation (lower case, IDNA): never a panic, and
//! normalising a normalised address changes nothing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendgate_core::model::address::normalise_domain;
use sendgate_core::model::Address;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(a) = Address::parse(s) {
        let again = Address::parse(a.as_str()).expect("a normalised address parses");
        assert_eq!(again.as_str(), a.as_str(), "normalisation is idempotent");
    }
    if let Ok(d) = normalise_domain(s) {
        assert_eq!(normalise_domain(&d).as_deref(), Ok(d.as_str()), "domain normalisation is idempotent");
    }
});
