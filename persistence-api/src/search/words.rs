//! Tokenization of folded text: words by Unicode's word boundaries (UAX
//! #29, which already splits Han and Hiragana per character), with every
//! CJK ideograph, kana and Hangul-less CJK symbol as a word of its own, so
//! text without spaces is searchable character by character. Words are
//! what whole-word and phrase matching compare; their trigrams (three
//! consecutive characters inside one word) are what infix matching finds
//! candidates by.

use unicode_segmentation::UnicodeSegmentation;

use super::ascii_words::for_each_ascii_word;

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
///
/// UAX #29 breaks on both sides of a space (nothing joins across one, and
/// folding has stripped the combining marks that could attach to it), so
/// the text is cut at spaces and each stretch segmented alone: the ASCII
/// stretches, most of any chat text, without the Unicode tables.
pub fn for_each_word<'a>(folded: &'a str, mut each: impl FnMut(Word<'a>)) {
    let mut start = 0;
    for stretch in folded.split(' ') {
        if stretch.is_ascii() {
            for_each_ascii_word(stretch.as_bytes(), |from, to| {
                each(Word {
                    text: &stretch[from..to],
                    start: start + from,
                    end: start + to,
                })
            });
        } else {
            for_each_unicode_word(folded, start, stretch, &mut each);
        }
        start += stretch.len() + 1;
    }
}

/// The words of `stretch`, which starts at byte `base` of `folded`.
fn for_each_unicode_word<'a>(
    folded: &'a str,
    base: usize,
    stretch: &'a str,
    each: &mut impl FnMut(Word<'a>),
) {
    for (offset, word) in stretch.unicode_word_indices() {
        let start = base + offset;
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

/// Calls `each` with 20,000 texts of 1 to 24 characters drawn from
/// `alphabet` by a small xorshift from `seed`, so a failure reproduces.
#[cfg(test)]
pub(crate) fn for_each_random_text(alphabet: &[char], seed: u64, mut each: impl FnMut(&str)) {
    let mut state = seed;
    let mut text = String::new();
    for round in 0..20_000 {
        text.clear();
        for _ in 0..(1 + round % 24) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        each(&text);
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

    /// Cutting at spaces changes nothing: random text over ASCII of every
    /// word-break class, letters and digits of other scripts, CJK, joiners,
    /// format characters and emoji gives the words of one pass of the
    /// Unicode segmenter over the whole text.
    #[test]
    fn stretches_between_spaces_give_the_words_of_the_whole_text() {
        const ALPHABET: &[char] = &[
            'a', 'z', '7', '_', ':', '.', '\'', ',', ';', ' ', ' ', '\n', '"', '-', 'п', 'σ', '東',
            'ー', 'タ', 'א', '٣', '\u{200D}', '\u{00AD}', '🙂', '\u{3000}',
        ];
        for_each_random_text(ALPHABET, 0x2545_F491_4F6C_DD1D, |text| {
            let mut whole = Vec::new();
            for_each_unicode_word(text, 0, text, &mut |word| whole.push(word));
            assert_eq!(words(text), whole, "{text:?}");
        });
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
