//! Messages to `_bulk` request bodies (NDJSON: an action line, then the
//! document), and the reading of `_bulk` answers.
//!
//! The id `<app>.<chat>.<number>` names a message for good, and the routing
//! (the app) puts it on the same shard every time, so a replay after a
//! crash overwrites the document it indexed before instead of adding a
//! second one: indexing is idempotent.
//!
//! Back of the envelope: a 200-byte message is ~700 bytes of NDJSON (body
//! once, folded words once, ids and action); [`BULK_DOCUMENTS_MAX`] of
//! them is ~1.4 MB per request, well under OpenSearch's 100 MB
//! `http.max_content_length`, and small enough that a retry after a
//! failure costs little.

use serde::{Deserialize, Serialize};

use super::client::quote;
use crate::search::SearchError;
use crate::search::fold::fold_into;
use crate::search::index::ordinal;
use crate::search::words::for_each_word;
use crate::store::LoggedBatch;

/// Most documents in one `_bulk` request.
pub const BULK_DOCUMENTS_MAX: usize = 2_000;
/// Largest `_bulk` request body, in bytes (a request closes at whichever
/// limit comes first).
pub const BULK_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most `_bulk` requests of one `add` in flight at once. One at a time, a
/// node's write threads idle while a request travels, is parsed and waits
/// for its translog fsync; measured on a 2-core node by
/// `scripts/opensearch-bulk.sh` (100k messages of 200 bytes, a refresh
/// per 20k): 10.0k messages/s one at a time, 12.8k with 2, 15.9k with 4,
/// 16.6k with 8 (docs/BENCHMARKS.md).
pub const BULK_CONCURRENCY: usize = 4;

#[derive(Serialize)]
struct Action<'a> {
    index: ActionTarget<'a>,
}

#[derive(Serialize)]
struct ActionTarget<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id")]
    id: &'a str,
    routing: &'a str,
}

#[derive(Serialize)]
struct Document<'a> {
    app: u64,
    chat: u64,
    number: u64,
    ordinal: u64,
    sent_at: i64,
    sender: &'a str,
    recipients: &'a [String],
    to_all: bool,
    body: &'a str,
    words: &'a str,
}

/// The largest ordinal OpenSearch's signed `long` holds.
const ORDINAL_MAX: u64 = i64::MAX as u64;

/// The bulk bodies for `batches` (each within the limits above), and the
/// number of documents in them.
pub fn bulk_bodies(
    index: &str,
    batches: &[LoggedBatch],
) -> Result<(Vec<Vec<u8>>, usize), SearchError> {
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut in_body = 0usize;
    let mut total = 0usize;
    let mut folded = String::new();
    let mut words = String::new();
    let mut id = String::new();
    let mut routing = String::new();
    for batch in batches {
        for (at, logged) in batch.messages.iter().enumerate() {
            // Placeholders of lost messages have no text and no reader.
            if logged.message.is_lost() {
                continue;
            }
            let ordinal = ordinal(batch.position, at)?;
            if ordinal > ORDINAL_MAX {
                return Err(SearchError::Corrupt(format!(
                    "ordinal {ordinal} does not fit OpenSearch's long"
                )));
            }
            let message = &logged.message;
            fold_into(&message.body, &mut folded);
            words.clear();
            for_each_word(&folded, |word| {
                if !words.is_empty() {
                    words.push(' ');
                }
                words.push_str(word.text);
            });
            id.clear();
            id.push_str(&format!(
                "{}.{}.{}",
                logged.app, logged.chat, message.number
            ));
            routing.clear();
            routing.push_str(&logged.app.to_string());
            let action = Action {
                index: ActionTarget {
                    index,
                    id: &id,
                    routing: &routing,
                },
            };
            let document = Document {
                app: logged.app,
                chat: logged.chat,
                number: message.number,
                ordinal,
                sent_at: message.sent_at_us,
                sender: &message.sender,
                recipients: message.recipients.as_deref().unwrap_or(&[]),
                to_all: message.recipients.is_none(),
                body: &message.body,
                words: &words,
            };
            let encode = |body: &mut Vec<u8>| -> Result<(), SearchError> {
                serde_json::to_writer(&mut *body, &action)
                    .and_then(|()| {
                        body.push(b'\n');
                        serde_json::to_writer(&mut *body, &document)
                    })
                    .map_err(|e| SearchError::Corrupt(format!("encoding a document: {e}")))?;
                body.push(b'\n');
                Ok(())
            };
            encode(&mut body)?;
            in_body += 1;
            total += 1;
            if in_body >= BULK_DOCUMENTS_MAX || body.len() >= BULK_BYTES_MAX {
                bodies.push(std::mem::take(&mut body));
                in_body = 0;
            }
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    Ok((bodies, total))
}

#[derive(Deserialize)]
pub struct BulkAnswer {
    errors: bool,
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    index: Option<BulkOutcome>,
}

#[derive(Deserialize)]
struct BulkOutcome {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Whether every document of a `_bulk` answer was indexed: an item refused
/// with 429 or a 5xx is `Unavailable` (retried), any other refusal
/// `Refused`; an answer with another count of items than we sent is
/// malformed.
pub fn check_bulk(answer: &BulkAnswer, sent: usize) -> Result<(), SearchError> {
    if answer.items.len() != sent {
        return Err(SearchError::Malformed(format!(
            "a _bulk answer with {} items for {sent} documents",
            answer.items.len()
        )));
    }
    if !answer.errors {
        return Ok(());
    }
    for item in &answer.items {
        let Some(outcome) = &item.index else {
            return Err(SearchError::Malformed(
                "a _bulk item that is not an index outcome".into(),
            ));
        };
        if (200..300).contains(&outcome.status) {
            continue;
        }
        let why = match &outcome.error {
            Some(error) => quote(error.to_string().as_bytes()),
            None => String::new(),
        };
        let detail = format!("a bulk item answered {}: {why}", outcome.status);
        return Err(if outcome.status == 429 || outcome.status >= 500 {
            SearchError::Unavailable(detail)
        } else {
            SearchError::Refused(detail)
        });
    }
    Err(SearchError::Malformed(
        "a _bulk answer with errors but no failed item".into(),
    ))
}

/// Documents in one bulk body (its lines come in pairs).
pub fn documents_in(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count() / 2
}
