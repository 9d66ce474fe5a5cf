//! Address normalisation.
//!
//! Every address is normalised before it keys anything, so that variants of
//! one address (`Ana@ACME.com`, `ana@acme.com `, an IDN written in Unicode)
//! share counters, suppression and pause state.

use std::fmt;

/// Longest address SMTP allows (RFC 5321 path limit less the brackets).
const MAX_ADDRESS_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
/// Longest written form of a domain that can be valid: every character of a
/// domain takes at most 4 bytes in UTF-8 and at least one in its ASCII form
/// (punycode writes each code point as at least one character), and the ASCII
/// form is at most 253. Longer input could only pass through characters that
/// IDNA drops (soft hyphens, zero-width joiners), which no real address has;
/// it is refused before the IDNA work, whose cost grows with the input.
const MAX_DOMAIN_INPUT_LEN: usize = 4 * 253;

/// How much of a refused input an error quotes.
const QUOTED_INPUT_MAX: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {why}")]
pub struct AddressError {
    /// The input, cut to its first 300 bytes.
    pub input: String,
    pub why: &'static str,
}

/// A normalised mailbox address: trimmed, lower-cased, domain IDNA-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    full: String,
    at: usize,
}

impl Address {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let err = |why| AddressError { input: super::clip(input, QUOTED_INPUT_MAX), why };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(err("empty"));
        }
        let at = trimmed.rfind('@').ok_or_else(|| err("no '@'"))?;
        let (local, domain) = (&trimmed[..at], &trimmed[at + 1..]);
        if local.is_empty() {
            return Err(err("empty local part"));
        }
        if local.len() > MAX_LOCAL_LEN {
            return Err(err("local part longer than 64 characters"));
        }
        if local.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '@') {
            return Err(err("local part has whitespace, a control character, '<', '>' or '@'"));
        }
        let domain = normalise_domain(domain).map_err(err)?;
        // Local parts are case-sensitive in theory and never in practice; folding
        // them keeps one person from getting two budgets.
        let full = format!("{}@{}", local.to_lowercase(), domain);
        if full.len() > MAX_ADDRESS_LEN {
            return Err(err("longer than 254 characters"));
        }
        let at = full.rfind('@').expect("just built with '@'");
        Ok(Address { full, at })
    }

    /// An address the router already normalised (stage records): split it
    /// without redoing the IDNA work on the per-intent path.
    pub fn from_normalised(s: &str) -> Option<Self> {
        let at = s.rfind('@')?;
        (at > 0 && at + 1 < s.len()).then(|| Address { full: s.to_string(), at })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }

    pub fn local(&self) -> &str {
        &self.full[..self.at]
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Lower-cases and IDNA-encodes a domain; refuses what cannot be a mail domain.
pub fn normalise_domain(input: &str) -> Result<String, &'static str> {
    let trimmed = input.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("empty domain");
    }
    if trimmed.len() > MAX_DOMAIN_INPUT_LEN {
        return Err("domain length out of range");
    }
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| "domain is not valid IDNA")?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err("domain length out of range");
    }
    if !ascii.contains('.') {
        return Err("domain has no dot");
    }
    for label in ascii.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("domain has an empty or over-long label");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("domain has a character outside letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with '-'");
        }
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_of_one_address_normalise_alike() {
        let a = Address::parse(" Ana@ACME.Com ").unwrap();
        let b = Address::parse("ana@acme.com.").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "ana@acme.com");
        assert_eq!(a.domain(), "acme.com");
        assert_eq!(a.local(), "ana");
    }

    #[test]
    fn unicode_domains_are_idna_encoded() {
        let a = Address::parse("jo@BÜCHER.example").unwrap();
        assert_eq!(a.domain(), "xn--bcher-kva.example");
        let b = Address::parse("jo@xn--bcher-kva.example").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for bad in ["", "no-at-sign", "@acme.com", "ana@", "ana@localhost", "a b@acme.com", "ana@acme..com", "ana@-acme.com", "ana@ac_me.com"] {
            let e = Address::parse(bad).unwrap_err();
            assert!(!e.why.is_empty(), "{bad}");
        }
    }

    #[test]
    fn an_over_long_domain_is_refused_before_idna_and_the_longest_valid_one_passes() {
        // 253 characters of ASCII: four labels of 63 and a dot each.
        let longest = [["a"; 63].concat(), ["b"; 63].concat(), ["c"; 63].concat(), ["d"; 61].concat()].join(".");
        assert_eq!(longest.len(), 253);
        assert_eq!(normalise_domain(&longest).unwrap(), longest);
        // Unicode at 4 bytes a character up to the bound still reaches IDNA
        // (and is refused there only for its ASCII length).
        let emoji_label = "\u{1F600}".repeat(10);
        assert!(normalise_domain(&format!("{emoji_label}.example")).is_ok());
        // Past the bound: refused for its length, however it would have mapped.
        let padded = format!("a{}.example", "\u{00AD}".repeat(600));
        assert!(padded.len() > MAX_DOMAIN_INPUT_LEN);
        assert_eq!(normalise_domain(&padded), Err("domain length out of range"));
        let e = Address::parse(&format!("ana@{padded}")).unwrap_err();
        assert_eq!(e.why, "domain length out of range");
        assert!(e.input.len() <= QUOTED_INPUT_MAX + '…'.len_utf8(), "the error quotes a bounded part of the input");
    }
}
