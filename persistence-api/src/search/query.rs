//! The query language, parsed into terms: whitespace separates terms;
//! `"…"` quotes a phrase. Each term is folded and split into words (see
//! `fold` and `words`): a bare term of one word matches as a word, a word
//! prefix or an infix; a bare term of several words (`e-mail`, `東京`) and a
//! quoted phrase match as those whole words in a row. Every term must match.

use super::fold::fold;
use super::limits::SearchLimits;
use super::words::words;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// One folded word: found as a whole word, a prefix or an infix.
    Word(String),
    /// Folded words that must appear consecutively, each whole.
    Phrase(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuery {
    pub terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query has no words to search for")]
    Empty,
    #[error("the query is {chars} characters, more than {max}")]
    TooLong { chars: usize, max: usize },
    #[error("{0}")]
    TooManyTerms(String),
    #[error("a quote opens a phrase that no quote closes")]
    UnbalancedQuote,
}

fn folded_words(text: &str) -> Vec<String> {
    let folded = fold(text);
    words(&folded)
        .into_iter()
        .map(|word| word.text.to_owned())
        .collect()
}

pub fn parse(q: &str, limits: &SearchLimits) -> Result<ParsedQuery, QueryError> {
    let chars = q.chars().count();
    if chars > limits.query_chars_max {
        return Err(QueryError::TooLong {
            chars,
            max: limits.query_chars_max,
        });
    }
    if q.matches('"').count() % 2 == 1 {
        return Err(QueryError::UnbalancedQuote);
    }
    let mut terms = Vec::new();
    // Between quotes (odd pieces) is a phrase; outside, bare terms.
    for (index, piece) in q.split('"').enumerate() {
        if index % 2 == 1 {
            match folded_words(piece) {
                words if words.is_empty() => {}
                mut words if words.len() == 1 => terms.push(Term::Phrase(vec![words.remove(0)])),
                words => terms.push(Term::Phrase(words)),
            }
            continue;
        }
        for bare in piece.split_whitespace() {
            match folded_words(bare) {
                words if words.is_empty() => {}
                mut words if words.len() == 1 => terms.push(Term::Word(words.remove(0))),
                words => terms.push(Term::Phrase(words)),
            }
        }
    }
    if terms.is_empty() {
        return Err(QueryError::Empty);
    }
    if terms.len() > limits.query_terms_max {
        return Err(QueryError::TooManyTerms(format!(
            "the query has {} terms, more than {}",
            terms.len(),
            limits.query_terms_max
        )));
    }
    for term in &terms {
        if let Term::Phrase(words) = term
            && words.len() > limits.phrase_words_max
        {
            return Err(QueryError::TooManyTerms(format!(
                "a phrase has {} words, more than {}",
                words.len(),
                limits.phrase_words_max
            )));
        }
    }
    Ok(ParsedQuery { terms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Vec<Term> {
        parse(q, &SearchLimits::default()).unwrap().terms
    }

    #[test]
    fn bare_words_phrases_and_multi_word_terms() {
        assert_eq!(
            terms(r#"Héllo "Big  WORLD" e-mail"#),
            [
                Term::Word("hello".into()),
                Term::Phrase(vec!["big".into(), "world".into()]),
                Term::Phrase(vec!["e".into(), "mail".into()]),
            ]
        );
        assert_eq!(
            terms("東京"),
            [Term::Phrase(vec!["東".into(), "京".into()])]
        );
    }

    #[test]
    fn refuses_what_cannot_be_searched() {
        let limits = SearchLimits::default();
        assert_eq!(parse("  ", &limits), Err(QueryError::Empty));
        assert_eq!(parse("?! \"\"", &limits), Err(QueryError::Empty));
        assert_eq!(parse("\"open", &limits), Err(QueryError::UnbalancedQuote));
        let long = "a".repeat(limits.query_chars_max + 1);
        assert!(matches!(
            parse(&long, &limits),
            Err(QueryError::TooLong { .. })
        ));
        let many = vec!["w"; limits.query_terms_max + 1].join(" ");
        assert!(matches!(
            parse(&many, &limits),
            Err(QueryError::TooManyTerms(_))
        ));
    }
}
