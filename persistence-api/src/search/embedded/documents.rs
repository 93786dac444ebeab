//! Messages to tantivy documents. The body is folded once into a reused
//! buffer and tokenized here (words and trigrams handed to tantivy as
//! pre-tokenized text), so the index and the query side share one
//! definition of a word.

use tantivy::TantivyDocument;
use tantivy::tokenizer::{PreTokenizedString, Token};

use super::schema::Fields;
use crate::search::fold::fold_into;
use crate::search::index::{ORDINAL_INDEX_BITS, SearchError};
use crate::search::words::{for_each_trigram, for_each_word};
use crate::store::LoggedMessage;

/// Reused across documents: the folded body.
#[derive(Default)]
pub struct Builder {
    folded: String,
}

fn token(text: &str, from: usize, to: usize, position: usize) -> Token {
    Token {
        offset_from: from,
        offset_to: to,
        position,
        text: text.to_owned(),
        position_length: 1,
    }
}

/// The ordinal of the `index`-th message of the batch at `position`.
pub fn ordinal(position: u64, index: usize) -> Result<u64, SearchError> {
    let index = u64::try_from(index)
        .ok()
        .filter(|&index| index < 1 << ORDINAL_INDEX_BITS)
        .ok_or_else(|| {
            SearchError::Corrupt(format!(
                "a batch of more than 2^{ORDINAL_INDEX_BITS} messages"
            ))
        })?;
    position
        .checked_mul(1 << ORDINAL_INDEX_BITS)
        .map(|base| base | index)
        .ok_or_else(|| SearchError::Corrupt("commit log position overflows an ordinal".into()))
}

impl Builder {
    pub fn document(
        &mut self,
        fields: &Fields,
        logged: &LoggedMessage,
        ordinal: u64,
    ) -> TantivyDocument {
        let message = &logged.message;
        let mut doc = TantivyDocument::default();
        doc.add_u64(fields.app, logged.app);
        doc.add_u64(fields.chat, logged.chat);
        doc.add_u64(fields.number, message.number);
        doc.add_u64(fields.ordinal, ordinal);
        doc.add_i64(fields.sent_at, message.sent_at_us);
        doc.add_text(fields.sender, &message.sender);
        match &message.recipients {
            None => doc.add_u64(fields.to_all, 1),
            Some(recipients) => {
                for recipient in recipients {
                    doc.add_text(fields.recipient, recipient);
                }
            }
        }
        doc.add_text(fields.body, &message.body);
        fold_into(&message.body, &mut self.folded);
        let mut words = Vec::new();
        let mut trigrams = Vec::new();
        for_each_word(&self.folded, |word| {
            let position = words.len();
            words.push(token(word.text, word.start, word.end, position));
            for_each_trigram(word.text, |gram| {
                trigrams.push(token(gram, word.start, word.end, position));
            });
        });
        doc.add_pre_tokenized_text(
            fields.words,
            PreTokenizedString {
                text: String::new(),
                tokens: words,
            },
        );
        doc.add_pre_tokenized_text(
            fields.trigrams,
            PreTokenizedString {
                text: String::new(),
                tokens: trigrams,
            },
        );
        doc
    }
}
