//! Folding: what makes matching case- and diacritic-insensitive. Each
//! character is lowercased (Unicode's full mapping), decomposed (NFD), and
//! stripped of its combining marks; Greek final sigma folds to sigma. So
//! `Crème` → `creme`, `ΆΣΟΣ` → `ασοσ`, `Ёлка` → `елка`.
//!
//! Characters fold one at a time (a combining mark in the input folds to
//! nothing), so every folded byte comes from exactly one input character:
//! [`fold_with_origins`] keeps that map, which turns a match in folded text
//! into offsets in the original body (the highlights).

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Appends the folded form of `c` to `out`.
fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    for lower in c.to_lowercase() {
        decompose_canonical(lower, |part| {
            if !is_combining_mark(part) {
                out.push(if part == 'ς' { 'σ' } else { part });
            }
        });
    }
}

/// The folded form of `text`, appended to `out` (cleared first).
pub fn fold_into(text: &str, out: &mut String) {
    out.clear();
    out.reserve(text.len());
    for c in text.chars() {
        fold_char(c, out);
    }
}

pub fn fold(text: &str) -> String {
    let mut out = String::new();
    fold_into(text, &mut out);
    out
}

/// Folded text with, for each of its bytes, the index (in Unicode scalar
/// values) of the input character it came from.
pub struct Folded {
    pub text: String,
    pub origins: Vec<u32>,
    /// The input's length in Unicode scalar values.
    pub chars: u32,
}

impl Folded {
    /// The input's character range that produced folded bytes `start..end`
    /// (`end` > `start`, both on character boundaries of the folded text).
    pub fn origin_range(&self, start: usize, end: usize) -> (u32, u32) {
        let first = self.origins.get(start).copied().unwrap_or(self.chars);
        let last = end
            .checked_sub(1)
            .and_then(|last| self.origins.get(last))
            .map_or(self.chars, |&index| index + 1);
        (first, last.max(first))
    }
}

pub fn fold_with_origins(text: &str) -> Folded {
    let mut folded = String::with_capacity(text.len());
    let mut origins = Vec::with_capacity(text.len());
    let mut chars = 0u32;
    for c in text.chars() {
        fold_char(c, &mut folded);
        origins.resize(folded.len(), chars);
        chars += 1;
    }
    Folded {
        text: folded,
        origins,
        chars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_marks_in_latin_greek_cyrillic() {
        assert_eq!(fold("Crème BRÛLÉE"), "creme brulee");
        assert_eq!(fold("ΆΣΟΣ ελπίς"), "ασοσ ελπισ");
        assert_eq!(fold("Ёлка Привет"), "елка привет");
        // A combining mark in the input folds away too.
        assert_eq!(fold("Cafe\u{301}"), "cafe");
        assert_eq!(fold("東京"), "東京");
    }

    #[test]
    fn origins_map_folded_bytes_back_to_characters() {
        let folded = fold_with_origins("Crème e\u{301}x");
        assert_eq!(folded.text, "creme ex");
        // "creme" is input characters 0..5; "ex" is 6..9 (the mark is 8).
        assert_eq!(folded.origin_range(0, 5), (0, 5));
        assert_eq!(folded.origin_range(6, 8), (6, 9));
        assert_eq!(folded.chars, 9);
    }
}
