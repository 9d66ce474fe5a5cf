//! The domain: records of the public contract and addresses.

pub mod address;
pub mod records;

pub use address::{Address, AddressError};
pub use records::*;

/// `text` cut to at most `max` bytes on a character boundary, with `…` when
/// cut: what an error or a dead letter's reason quotes of a record field, so
/// that a 60 KiB field does not make a 60 KiB reason.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    #[test]
    fn clip_cuts_on_a_character_boundary_and_marks_the_cut() {
        assert_eq!(super::clip("short", 10), "short");
        assert_eq!(super::clip("abcdef", 3), "abc…");
        // 'é' is two bytes: a cut inside it falls back before it.
        assert_eq!(super::clip("aé", 2), "a…");
    }
}
