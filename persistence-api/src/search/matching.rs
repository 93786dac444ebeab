//! Verification of a candidate against its body, and its highlights. The
//! index only proposes candidates (trigrams over-approximate an infix);
//! this is the definition of a match, applied to the folded body, so every
//! hit is exact. It also yields how well the message matched and the
//! character ranges of the body to mark.

use super::fold::fold_with_origins;
use super::query::{ParsedQuery, Term};
use super::words::{Word, words};

/// How a message matched, best first: the worst class over its terms
/// (a message is a whole-word match only if every term is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchClass {
    Infix = 1,
    Prefix = 2,
    Word = 3,
}

impl MatchClass {
    pub fn name(self) -> &'static str {
        match self {
            MatchClass::Word => "word",
            MatchClass::Prefix => "prefix",
            MatchClass::Infix => "infix",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub class: MatchClass,
    /// `[start, end)` of each matched part of the body, in Unicode scalar
    /// values, ascending and not overlapping.
    pub highlights: Vec<(u32, u32)>,
}

/// Whether `body` matches every term; `None` if not.
pub fn verify(body: &str, query: &ParsedQuery) -> Option<Verified> {
    let folded = fold_with_origins(body);
    let body_words: Vec<Word<'_>> = words(&folded.text);
    let mut class = MatchClass::Word;
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for term in &query.terms {
        let term_class = match term {
            Term::Word(word) => match_word(&body_words, word, &mut ranges)?,
            Term::Phrase(phrase) => match_phrase(&body_words, phrase, &mut ranges)?,
        };
        class = class.min(term_class);
    }
    ranges.sort_unstable();
    let mut highlights: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        let (start, end) = folded.origin_range(start, end);
        match highlights.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => highlights.push((start, end)),
        }
    }
    Some(Verified { class, highlights })
}

/// The best class of `term` among the words, recording every occurrence.
fn match_word(
    words: &[Word<'_>],
    term: &str,
    ranges: &mut Vec<(usize, usize)>,
) -> Option<MatchClass> {
    let mut best: Option<MatchClass> = None;
    for word in words {
        let class = if word.text == term {
            MatchClass::Word
        } else if word.text.starts_with(term) {
            MatchClass::Prefix
        } else if let Some(at) = word.text.find(term) {
            ranges.push((word.start + at, word.start + at + term.len()));
            best = best.max(Some(MatchClass::Infix));
            continue;
        } else {
            continue;
        };
        ranges.push((word.start, word.start + term.len()));
        best = best.max(Some(class));
    }
    best
}

fn match_phrase(
    words: &[Word<'_>],
    phrase: &[String],
    ranges: &mut Vec<(usize, usize)>,
) -> Option<MatchClass> {
    if phrase.is_empty() || words.len() < phrase.len() {
        return None;
    }
    let mut found = false;
    for window in words.windows(phrase.len()) {
        if window
            .iter()
            .zip(phrase)
            .all(|(word, want)| word.text == want)
        {
            if let (Some(first), Some(last)) = (window.first(), window.last()) {
                ranges.push((first.start, last.end));
            }
            found = true;
        }
    }
    found.then_some(MatchClass::Word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::limits::SearchLimits;
    use crate::search::query::parse;

    fn check(body: &str, q: &str) -> Option<Verified> {
        verify(body, &parse(q, &SearchLimits::default()).unwrap())
    }

    #[test]
    fn classes_and_highlights() {
        let hit = check("Say Hello to the World", "hello").unwrap();
        assert_eq!(
            (hit.class, hit.highlights),
            (MatchClass::Word, vec![(4, 9)])
        );
        let hit = check("Say Hello", "hel").unwrap();
        assert_eq!(
            (hit.class, hit.highlights),
            (MatchClass::Prefix, vec![(4, 7)])
        );
        let hit = check("Say Hello", "ELL").unwrap();
        assert_eq!(
            (hit.class, hit.highlights),
            (MatchClass::Infix, vec![(5, 8)])
        );
        assert_eq!(check("Say Hello", "hello world"), None);
        let hit = check("a big world, big   world", "\"big world\"").unwrap();
        assert_eq!(hit.highlights, vec![(2, 11), (13, 24)]);
        assert_eq!(check("world big", "\"big world\""), None);
    }

    #[test]
    fn highlights_count_characters_of_the_original() {
        // "é" as e + combining acute: two characters in the body.
        let hit = check("Cafe\u{301} crème", "creme").unwrap();
        assert_eq!(hit.highlights, vec![(6, 11)]);
        let hit = check("Καλημέρα κόσμε", "ΚΟΣΜΕ").unwrap();
        assert_eq!(hit.highlights, vec![(9, 14)]);
        let hit = check("我在東京工作", "東京").unwrap();
        assert_eq!(
            (hit.class, hit.highlights),
            (MatchClass::Word, vec![(2, 4)])
        );
    }
}
