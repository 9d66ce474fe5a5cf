//! Address normalisation.
//!
//! Every address is normalised before it keys anything, so that variants of
//! one address (`Ana@ACME.com`, `ana@acme.com `, an IDN written in Unicode)
//! share counters, suppression and pause state.

use std::fmt;

/// Longest address SMTP allows (RFC 5321 path limit less the brackets).
const MAX_ADDRESS_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {why}")]
pub struct AddressError {
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
        let err = |why| AddressError { input: input.to_string(), why };
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
}
