//! The index's two tokenizers, registered with tantivy under the names the
//! schema gives its fields. They run over the folded body (folded once per
//! message in `documents`) and reuse one token buffer, so indexing a
//! message allocates nothing per word or trigram; the words and trigrams
//! are the very ones the query side builds (`search::words`).

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use crate::search::words::{TRIGRAM_CHARS, for_each_word};

pub const WORDS: &str = "chat_words";
pub const TRIGRAMS: &str = "chat_trigrams";

/// Each word of the folded text, positioned by word index (for phrases).
#[derive(Clone, Default)]
pub struct WordsTokenizer {
    spans: Vec<(usize, usize)>,
    token: Token,
}

/// Every trigram inside each word of the folded text.
#[derive(Clone, Default)]
pub struct TrigramsTokenizer {
    spans: Vec<(usize, usize)>,
    bounds: Vec<usize>,
    token: Token,
}

/// Walks precomputed byte spans of `text`.
pub struct SpanStream<'a> {
    text: &'a str,
    spans: &'a [(usize, usize)],
    next: usize,
    token: &'a mut Token,
}

impl TokenStream for SpanStream<'_> {
    fn advance(&mut self) -> bool {
        let Some(&(start, end)) = self.spans.get(self.next) else {
            return false;
        };
        self.token.text.clear();
        // Spans come from `char_indices` of this very text: on boundaries.
        self.token.text.push_str(&self.text[start..end]);
        self.token.offset_from = start;
        self.token.offset_to = end;
        self.token.position = self.next;
        self.token.position_length = 1;
        self.next += 1;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

impl Tokenizer for WordsTokenizer {
    type TokenStream<'a> = SpanStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SpanStream<'a> {
        let spans = &mut self.spans;
        spans.clear();
        for_each_word(text, |word| spans.push((word.start, word.end)));
        SpanStream {
            text,
            spans: &self.spans,
            next: 0,
            token: &mut self.token,
        }
    }
}

impl Tokenizer for TrigramsTokenizer {
    type TokenStream<'a> = SpanStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SpanStream<'a> {
        let (spans, bounds) = (&mut self.spans, &mut self.bounds);
        spans.clear();
        for_each_word(text, |word| {
            bounds.clear();
            bounds.extend(word.text.char_indices().map(|(i, _)| word.start + i));
            bounds.push(word.end);
            for window in bounds.windows(TRIGRAM_CHARS + 1) {
                spans.push((window[0], window[TRIGRAM_CHARS]));
            }
        });
        SpanStream {
            text,
            spans: &self.spans,
            next: 0,
            token: &mut self.token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::words::{for_each_trigram, words};

    fn all(mut stream: SpanStream<'_>) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        while stream.advance() {
            out.push((stream.token().text.clone(), stream.token().position));
        }
        out
    }

    /// The index side must produce exactly what the query side looks up.
    #[test]
    fn tokens_are_the_query_sides_words_and_trigrams() {
        let text = "hello, wörld 東京 it's";
        let mut tokenizer = WordsTokenizer::default();
        let expected: Vec<(String, usize)> = words(text)
            .iter()
            .enumerate()
            .map(|(i, w)| (w.text.to_owned(), i))
            .collect();
        assert_eq!(all(tokenizer.token_stream(text)), expected);
        let mut tokenizer = TrigramsTokenizer::default();
        let mut expected = Vec::new();
        for word in words(text) {
            for_each_trigram(word.text, |gram| expected.push(gram.to_owned()));
        }
        let got: Vec<String> = all(tokenizer.token_stream(text))
            .into_iter()
            .map(|(gram, _)| gram)
            .collect();
        assert_eq!(got, expected);
    }
}
