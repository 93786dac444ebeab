//! Checks on the text of error messages, which reach whoever sent the input.

/// Whether `message` shows something that looks like a memory address: `0x`
/// and more than 8 hex digits (a 64-bit pointer; smaller numbers are tags
/// and lengths). An address helps an attacker defeat address space layout
/// randomisation.
pub fn shows_address(message: &str) -> bool {
    message.match_indices("0x").any(|(at, _)| {
        message[at + 2..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .count()
            > 8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pointers_only() {
        assert!(shows_address("ptr 0x00007fa2a8000e30 size 24"));
        assert!(!shows_address("tag 0x05, offset 16, 0x"));
    }
}
