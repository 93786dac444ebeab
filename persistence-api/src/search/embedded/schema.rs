//! The tantivy schema of the embedded index: one document per message.
//!
//! Both text fields index the folded body through our own tokenizers
//! (`tokenizers`):
//! - `words`: the folded body's words with positions (whole words, phrases,
//!   and word prefixes through the term dictionary);
//! - `trigrams`: every three-character window inside each folded word,
//!   without positions or frequencies (candidates for infix matches);
//! - `app`, `chat`, `sender`, `recipient`, `to_all`: the filters (app
//!   isolation, chat scope, `from=`, and the history visibility rule);
//! - `ordinal`: commit order, fast, for newest-first collection and the
//!   keyset cursor; `number` fast for `before=`;
//! - `body`, `sent_at` and the ids stored, to answer and verify hits.
//!
//! No field norms anywhere: ranking is by match class and recency, not BM25.

use super::tokenizers;
use tantivy::schema::{
    FAST, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};

#[derive(Clone, Copy)]
pub struct Fields {
    pub app: tantivy::schema::Field,
    pub chat: tantivy::schema::Field,
    pub number: tantivy::schema::Field,
    pub ordinal: tantivy::schema::Field,
    pub sent_at: tantivy::schema::Field,
    pub sender: tantivy::schema::Field,
    pub recipient: tantivy::schema::Field,
    pub to_all: tantivy::schema::Field,
    pub body: tantivy::schema::Field,
    pub words: tantivy::schema::Field,
    pub trigrams: tantivy::schema::Field,
}

/// The fast field that orders results.
pub const ORDINAL: &str = "ordinal";

pub fn build() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let tokenized = |tokenizer: &str, record: IndexRecordOption| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(record)
                .set_fieldnorms(false),
        )
    };
    let fields = Fields {
        app: builder.add_u64_field("app", INDEXED),
        chat: builder.add_u64_field("chat", INDEXED | STORED),
        number: builder.add_u64_field("number", INDEXED | STORED | FAST),
        ordinal: builder.add_u64_field(ORDINAL, INDEXED | STORED | FAST),
        sent_at: builder.add_i64_field("sent_at", STORED),
        sender: builder.add_text_field("sender", STRING | STORED),
        recipient: builder.add_text_field("recipient", STRING),
        to_all: builder.add_u64_field("to_all", INDEXED),
        body: builder.add_text_field("body", TextOptions::default().set_stored()),
        words: builder.add_text_field(
            "words",
            tokenized(tokenizers::WORDS, IndexRecordOption::WithFreqsAndPositions),
        ),
        trigrams: builder.add_text_field(
            "trigrams",
            tokenized(tokenizers::TRIGRAMS, IndexRecordOption::Basic),
        ),
    };
    (builder.build(), fields)
}
