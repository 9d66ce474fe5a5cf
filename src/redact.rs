//! What the logs say about people: by default no email address and no value
//! quoted from a record reaches a log line. A dead letter's reason, an error
//! that quotes a record, a warning about a command: every address in them
//! is replaced by a keyed hash (`<address 1f0c9a2b>`), and every other
//! quoted value (`invalid address "Ana Lee": no '@'`, a tenant, a list
//! entry) by one of its own (`<value 5e01d2c7>`). The same text gives the
//! same hash under the same key, so an operator can still follow one
//! address or value through the logs without reading it. Reasons quote
//! record values with `{:?}`, and only them, which is what makes the quotes
//! a reliable marker. `log_addresses = true` (SENDGATE_LOG_ADDRESSES) shows
//! everything, for debugging. The records themselves (dead letters,
//! decisions) are data on access-controlled topics and keep them.
//!
//! Metrics never carry an address: their labels come from small fixed sets
//! (status, reason code, task; see [`crate::metrics`]).

use siphasher::sip::SipHasher13;
use std::borrow::Cow;
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static SHOW: AtomicBool = AtomicBool::new(false);
static KEY: OnceLock<(u64, u64)> = OnceLock::new();

/// Sets what the process's log lines show. `key`: the hash key (the same
/// key on every instance gives the same hash for the same address); None
/// draws one for this process.
pub fn configure(show_addresses: bool, key: Option<&str>) {
    SHOW.store(show_addresses, Ordering::Relaxed);
    let k = match key {
        Some(k) => {
            let mut h = SipHasher13::new_with_keys(0x7365_6e64, 0x6761_7465);
            h.write(k.as_bytes());
            let a = h.finish();
            h.write_u8(1);
            (a, h.finish())
        }
        None => (rand::random(), rand::random()),
    };
    let _ = KEY.set(k);
}

fn key() -> (u64, u64) {
    *KEY.get_or_init(|| (rand::random(), rand::random()))
}

/// A byte that may appear in the local part of an address (RFC 5322's atext,
/// the dot, and any byte of a non-ASCII character).
fn local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80
}

/// Generous on purpose: an invalid address (an underscore in its domain,
/// say) is exactly what a dead letter's reason quotes.
fn domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._".contains(&b) || b >= 0x80
}

/// `text` with every email address and every quoted value in it replaced
/// by its keyed hash, unless they are shown.
pub fn text(text: &str) -> Cow<'_, str> {
    if SHOW.load(Ordering::Relaxed) || !(text.contains('@') || text.contains('"')) {
        return Cow::Borrowed(text);
    }
    redact_with(text, key())
}

fn hash(what: &str, (k0, k1): (u64, u64)) -> u32 {
    let mut h = SipHasher13::new_with_keys(k0, k1);
    h.write(what.as_bytes());
    h.finish() as u32
}

/// Where the `{:?}`-quoted string that starts after an opening quote ends:
/// the index of its closing quote in `s`, skipping escaped characters.
fn closing_quote(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Quoted values first (a quoted address stays a quoted `<address …>`, so
/// that it hashes as it does unquoted), then the addresses outside quotes.
fn redact_with(text: &str, key: (u64, u64)) -> Cow<'_, str> {
    if !text.contains('"') {
        return redact_addresses(text, key);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(q) = rest.find('"') {
        out.push_str(&redact_addresses(&rest[..q], key));
        let body_and_after = &rest[q + 1..];
        let (body, after) = match closing_quote(body_and_after.as_bytes()) {
            Some(e) => (&body_and_after[..e], &body_and_after[e + 1..]),
            // Unterminated (a cut reason): the rest is the value.
            None => (body_and_after, ""),
        };
        let as_address = redact_addresses(body, key);
        let one_address = as_address.starts_with("<address ") && as_address.ends_with('>') && as_address.matches('<').count() == 1;
        if body.is_empty() || one_address {
            out.push('"');
            out.push_str(&as_address);
            out.push('"');
        } else {
            out.push_str(&format!("<value {:08x}>", hash(body, key)));
        }
        rest = after;
    }
    out.push_str(&redact_addresses(rest, key));
    Cow::Owned(out)
}

fn redact_addresses(text: &str, key: (u64, u64)) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'@' {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > copied && local_byte(b[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < b.len() && domain_byte(b[end]) {
            end += 1;
        }
        // A trailing dot ends a sentence, not the domain.
        while end > i + 1 && b[end - 1] == b'.' {
            end -= 1;
        }
        if start < i && end > i + 1 {
            out.push_str(&text[copied..start]);
            out.push_str(&format!("<address {:08x}>", hash(&text[start..end].to_ascii_lowercase(), key)));
            copied = end;
            changed = true;
        }
        i = end.max(i + 1);
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: (u64, u64) = (1, 2);

    #[test]
    fn every_address_is_hashed_and_the_rest_kept() {
        let r = redact_with("recipient: \"Ana.Lee+x@Corp.Example\" is suppressed; sender ops@acme.com.", K);
        assert!(!r.contains("Ana.Lee") && !r.contains("ops@") && !r.contains("acme.com"), "{r}");
        assert!(r.starts_with("recipient: \"<address ") && r.ends_with(">."), "{r}");
        assert_eq!(r.matches("<address ").count(), 2);
    }

    #[test]
    fn an_invalid_address_quoted_by_a_reason_is_hashed_too() {
        let r = redact_with(r#"recipient: "bo@corp_example.com": domain has a character outside letters, digits and '-'; also x@localhost"#, K);
        assert!(!r.contains("bo@") && !r.contains("corp_example") && !r.contains("x@localhost"), "{r}");
    }

    #[test]
    fn the_same_address_gives_the_same_hash_whatever_its_case_and_another_key_another() {
        let a = redact_with("a@b.com", K).into_owned();
        assert_eq!(a, redact_with("A@B.COM", K));
        assert_ne!(a, redact_with("a@b.com", (3, 4)));
        assert_ne!(a, redact_with("c@b.com", K));
    }

    #[test]
    fn text_without_an_address_or_a_quoted_value_is_untouched() {
        for t in ["no at sign", "a scope mailbox:@", "@handle", "2 @ 3", "template_id is 300 bytes; at most 256 are accepted", "empty quotes \"\" stay"] {
            assert_eq!(redact_with(t, K), t);
        }
    }

    #[test]
    fn a_quoted_value_is_hashed_whole_and_a_quoted_address_as_an_address() {
        let r = redact_with(r#"invalid address "Ana Lee \"the boss\"": no '@'"#, K);
        assert!(r.starts_with("invalid address <value ") && r.ends_with(">: no '@'") && !r.contains("Ana") && !r.contains("boss"), "{r}");
        let quoted = redact_with(r#"recipient "ana@corp.example" and ana@corp.example"#, K);
        let parts: Vec<&str> = quoted.split("<address ").collect();
        assert_eq!(parts.len(), 3, "{quoted}");
        assert_eq!(&parts[1][..8], &parts[2][..8], "the same hash in and out of quotes: {quoted}");
        let mixed = redact_with(r#"list entry "Ana <ana@corp.example>" unknown; cut "Bob Smi"#, K);
        assert!(!mixed.contains("Ana") && !mixed.contains("Bob") && mixed.matches("<value ").count() == 2, "{mixed}");
        assert_eq!(redact_with(r#"tenant "acme""#, K), redact_with(r#"tenant "acme""#, K));
        assert_ne!(redact_with(r#"tenant "acme""#, K), redact_with(r#"tenant "acme""#, (3, 4)));
    }
}
