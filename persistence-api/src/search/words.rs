//! Tokenization of folded text: words by Unicode's word boundaries (UAX
//! #29, which already splits Han and Hiragana per character), with every
//! CJK ideograph, kana and Hangul-less CJK symbol as a word of its own, so
//! text without spaces is searchable character by character. Words are
//! what whole-word and phrase matching compare; their trigrams (three
//! consecutive characters inside one word) are what infix matching finds
//! candidates by.

use unicode_segmentation::UnicodeSegmentation;

/// Characters of a trigram: the shortest infix found through the trigram
/// field; shorter terms match as a word prefix only.
pub const TRIGRAM_CHARS: usize = 3;

/// One word of a folded text: its bytes `start..end` in that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word<'a> {
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

/// Ideographs and kana: scripts written without spaces, indexed per character.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x3134F  // CJK Extensions B-G
    )
}

/// Calls `each` with every word of `folded`, in order.
pub fn for_each_word<'a>(folded: &'a str, mut each: impl FnMut(Word<'a>)) {
    for (start, word) in folded.unicode_word_indices() {
        if !word.chars().any(is_cjk) {
            each(Word {
                text: word,
                start,
                end: start + word.len(),
            });
            continue;
        }
        // A run that mixes CJK with other letters: each CJK character is a
        // word, and so is each stretch of the others.
        let mut pending: Option<usize> = None;
        for (offset, c) in word.char_indices() {
            let at = start + offset;
            if is_cjk(c) {
                if let Some(from) = pending.take() {
                    each(Word {
                        text: &folded[from..at],
                        start: from,
                        end: at,
                    });
                }
                let end = at + c.len_utf8();
                each(Word {
                    text: &folded[at..end],
                    start: at,
                    end,
                });
            } else if pending.is_none() {
                pending = Some(at);
            }
        }
        if let Some(from) = pending {
            let end = start + word.len();
            each(Word {
                text: &folded[from..end],
                start: from,
                end,
            });
        }
    }
}

pub fn words(folded: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    for_each_word(folded, |word| out.push(word));
    out
}

/// Calls `each` with every trigram of `word` (none if it is shorter).
pub fn for_each_trigram<'a>(word: &'a str, mut each: impl FnMut(&'a str)) {
    let bounds: Vec<usize> = word
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(word.len()))
        .collect();
    for window in bounds.windows(TRIGRAM_CHARS + 1) {
        each(&word[window[0]..window[TRIGRAM_CHARS]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(folded: &str) -> Vec<&str> {
        words(folded).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_by_unicode_rules_and_cjk_per_character() {
        assert_eq!(texts("hello, world! it's"), ["hello", "world", "it's"]);
        assert_eq!(texts("привет мир"), ["привет", "мир"]);
        assert_eq!(
            texts("東京タワーabc"),
            ["東", "京", "タ", "ワ", "ー", "abc"]
        );
    }

    #[test]
    fn trigrams_stay_inside_a_word() {
        let mut grams = Vec::new();
        for_each_trigram("hello", |g| grams.push(g));
        assert_eq!(grams, ["hel", "ell", "llo"]);
        grams.clear();
        for_each_trigram("hi", |g| grams.push(g));
        assert!(grams.is_empty());
        for_each_trigram("ёлка", |g| grams.push(g));
        assert_eq!(grams, ["ёлк", "лка"]);
    }
}
