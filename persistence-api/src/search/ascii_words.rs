//! Word boundaries of ASCII text without the Unicode tables: the rules of
//! UAX #29 that ASCII characters can meet, so that the common case (most
//! chat text folds to ASCII) does not pay for a general segmenter, twice
//! per message (the words field and the trigrams field). Over ASCII it
//! gives exactly what `unicode_segmentation::unicode_word_indices` gives;
//! a test compares both over random text of every class below.
//!
//! Classes (the Word_Break property of each ASCII character): letters
//! (ALetter), digits (Numeric), `_` (ExtendNumLet), `:` (MidLetter), `.`
//! and `'` (MidNumLet and Single_Quote), `,` and `;` (MidNum); everything
//! else breaks. The rules that join:
//! - WB5, WB8, WB9, WB10: letters and digits in any order;
//! - WB6, WB7: letter (`:` `.` `'`) letter;
//! - WB11, WB12: digit (`,` `;` `.` `'`) digit;
//! - WB13a, WB13b: `_` next to a letter, a digit or another `_`.
//!
//! Like `unicode_word_indices`, runs without a letter or digit (`__`) are
//! not words.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Underscore,
    Other,
}

fn class(byte: u8) -> Class {
    match byte {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Digit,
        b'_' => Class::Underscore,
        _ => Class::Other,
    }
}

/// Whether `middle` joins `before` and `after` into one word (WB6, WB7,
/// WB11, WB12).
fn joins(before: Class, middle: u8, after: Class) -> bool {
    match (before, after) {
        (Class::Letter, Class::Letter) => matches!(middle, b':' | b'.' | b'\''),
        (Class::Digit, Class::Digit) => matches!(middle, b',' | b';' | b'.' | b'\''),
        _ => false,
    }
}

/// Calls `each` with the byte range of every word of ASCII `text`.
pub fn for_each_ascii_word(text: &[u8], mut each: impl FnMut(usize, usize)) {
    debug_assert!(text.is_ascii());
    let mut at = 0;
    while at < text.len() {
        if class(text[at]) == Class::Other {
            at += 1;
            continue;
        }
        let start = at;
        let mut alphanumeric = false;
        loop {
            let here = class(text[at]);
            alphanumeric |= here != Class::Underscore;
            at += 1;
            let Some(&next) = text.get(at) else { break };
            let next_class = class(next);
            if next_class != Class::Other {
                // WB5, WB8-WB10, WB13a/b: any two of letter, digit, `_`.
                continue;
            }
            let after = text.get(at + 1).map_or(Class::Other, |&b| class(b));
            if joins(here, next, after) {
                at += 1;
                continue;
            }
            break;
        }
        if alphanumeric {
            each(start, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::words::for_each_random_text;
    use unicode_segmentation::UnicodeSegmentation;

    fn ours(text: &str) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        for_each_ascii_word(text.as_bytes(), |start, end| {
            out.push((start, &text[start..end]))
        });
        out
    }

    fn theirs(text: &str) -> Vec<(usize, &str)> {
        text.unicode_word_indices().collect()
    }

    #[test]
    fn examples() {
        let text = "it's 3.14, e.g. foo_bar __ a:b x1y 1,000;5 a,b 1:2 _ _a 'q' a..b";
        assert_eq!(ours(text), theirs(text));
        assert_eq!(
            ours("it's e.g. __ _a")
                .iter()
                .map(|w| w.1)
                .collect::<Vec<_>>(),
            ["it's", "e.g", "_a"]
        );
    }

    /// Random text over every class and every joiner, against the Unicode
    /// segmenter.
    #[test]
    fn random_ascii_matches_the_unicode_segmenter() {
        let alphabet: Vec<char> = "aZ7_:.',; \n\t\"-!x0".chars().collect();
        for_each_random_text(&alphabet, 0x9E37_79B9_7F4A_7C15, |text| {
            assert_eq!(ours(text), theirs(text), "{text:?}");
        });
    }
}
