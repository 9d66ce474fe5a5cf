//! What the logs say about people: by default no email address reaches a
//! log line. A dead letter's reason, an error that quotes a record, a
//! warning about a command: every address in them is replaced by a keyed
//! hash (`<address 1f0c9a2b>`), the same for the same address under the
//! same key, so an operator can still follow one address through the logs
//! without reading it. `log_addresses = true` (SENDGATE_LOG_ADDRESSES)
//! shows them, for debugging. The records themselves (dead letters,
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

/// `text` with every email address in it replaced by its keyed hash, unless
/// addresses are shown.
pub fn text(text: &str) -> Cow<'_, str> {
    if SHOW.load(Ordering::Relaxed) || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    redact_with(text, key())
}

fn redact_with(text: &str, (k0, k1): (u64, u64)) -> Cow<'_, str> {
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
            let mut h = SipHasher13::new_with_keys(k0, k1);
            h.write(text[start..end].to_ascii_lowercase().as_bytes());
            out.push_str(&text[copied..start]);
            out.push_str(&format!("<address {:08x}>", h.finish() as u32));
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
    fn text_without_an_address_is_untouched() {
        for t in ["no at sign", "a scope mailbox:@", "@handle", "2 @ 3"] {
            assert_eq!(redact_with(t, K), t);
        }
    }
}
