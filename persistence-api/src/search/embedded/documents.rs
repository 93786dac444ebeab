//! Messages to tantivy documents. The body is folded once into a reused
//! buffer and handed to both text fields, whose tokenizers (`tokenizers`)
//! cut it into the words and trigrams the query side looks up.

use tantivy::TantivyDocument;

use super::schema::Fields;
use crate::search::fold::fold_into;
use crate::store::LoggedMessage;

/// Reused across documents: the folded body.
#[derive(Default)]
pub struct Builder {
    folded: String,
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
        // Tokenized by the fields' tokenizers when the writer indexes it.
        doc.add_text(fields.words, &self.folded);
        doc.add_text(fields.trigrams, &self.folded);
        doc
    }
}
