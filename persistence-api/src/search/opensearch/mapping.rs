//! The indices of one deployment (`<prefix>` from the URL) and their
//! explicit settings and mappings, created at start if missing.
//!
//! - `<prefix>-messages` (an alias of `<prefix>-messages-v<SCHEMA_VERSION>`):
//!   one document per message, id `<app>.<chat>.<number>`, routed by app.
//! - `<prefix>-meta` (an alias of `<prefix>-meta-v<SCHEMA_VERSION>`): one
//!   document, the commit log position the messages index covers.
//!
//! Every write names the alias with `require_alias=true`, so a write to a
//! removed index fails (and is retried) instead of auto-creating an index
//! with guessed mappings.
//!
//! Analysis: the body is folded and cut into words in Rust, by the very
//! code the embedded backend and the verifier use (`search::fold`,
//! `search::words`), and sent as those words joined by single spaces in
//! the `words` field. Its analyzer only splits at the spaces (a whitespace
//! tokenizer: no word holds whitespace), so its terms and positions are
//! our words exactly (whole words, phrases, prefixes through the term
//! dictionary); its `words.trigrams` subfield cuts each word into its
//! three-character windows (the `ngram` filter counts code points), as the
//! embedded trigram field does. No lowercase or asciifolding filter runs in
//! OpenSearch: it would fold differently from `search::fold` (`ß`, `ё`,
//! final sigma) and so change which tier a message falls into; folding
//! once, in Rust, makes both backends' match semantics the same by
//! construction.

use serde_json::{Value, json};

/// Bumped when the mappings change: a new version gets new concrete
/// indices (to be filled by `chat reindex`), never a silently different one.
pub const SCHEMA_VERSION: u64 = 1;
/// Longest word kept whole by the whitespace tokenizer, in UTF-16 units
/// (a 4 KB body folds to fewer; Lucene's default of 255 would split words).
pub const WORD_CHARS_MAX: u64 = 16_384;
/// The meta document's id.
pub const META_ID: &str = "indexer";

#[derive(Debug, Clone)]
pub struct Names {
    pub messages: String,
    pub messages_concrete: String,
    pub meta: String,
    pub meta_concrete: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            messages: format!("{prefix}-messages"),
            messages_concrete: format!("{prefix}-messages-v{SCHEMA_VERSION}"),
            meta: format!("{prefix}-meta"),
            meta_concrete: format!("{prefix}-meta-v{SCHEMA_VERSION}"),
        }
    }
}

/// Primary shards of each index. One: the documents are routed by app,
/// so a search reads one shard whatever the count, and on a small node
/// more shards only split the same CPU (each with its own segments,
/// refreshes and merges).
pub const SHARDS: u64 = 1;
/// Replicas of each shard at creation. Zero: on a single node (tests,
/// benchmarks, a small deployment) a replica can never be assigned, and
/// OpenSearch's default of one leaves the index yellow. A cluster raises
/// it online (`PUT <prefix>-messages/_settings` with
/// `index.number_of_replicas`, a dynamic setting); the durability of a
/// commit does not depend on it (the primary's translog fsync does it).
pub const REPLICAS: u64 = 0;

/// Settings both indices share. `translog.durability: request` (the
/// default, stated so that a template cannot weaken it): a write is
/// fsynced to the translog before it is acknowledged. `refresh_interval:
/// -1`: documents become searchable at our commits, not on a timer.
fn common_settings() -> Value {
    json!({
        "index.number_of_shards": SHARDS,
        "index.number_of_replicas": REPLICAS,
        "index.translog.durability": "request",
        "index.refresh_interval": "-1",
    })
}

/// The create-index body of the messages index.
pub fn messages_index(names: &Names) -> Value {
    let mut settings = common_settings();
    settings["analysis"] = json!({
        "tokenizer": {
            "chat_spaces": { "type": "whitespace", "max_token_length": WORD_CHARS_MAX }
        },
        "filter": {
            "chat_trigram": { "type": "ngram", "min_gram": 3, "max_gram": 3 }
        },
        "analyzer": {
            "chat_words": { "type": "custom", "tokenizer": "chat_spaces" },
            "chat_trigrams": {
                "type": "custom",
                "tokenizer": "chat_spaces",
                "filter": ["chat_trigram"]
            }
        }
    });
    json!({
        "settings": settings,
        "aliases": { names.messages.clone(): {} },
        "mappings": {
            "dynamic": "strict",
            "_meta": { "chat_schema_version": SCHEMA_VERSION },
            "_routing": { "required": true },
            // The folded words are for the index only.
            "_source": { "excludes": ["words"] },
            "properties": {
                "app": { "type": "long" },
                "chat": { "type": "long" },
                "number": { "type": "long" },
                "ordinal": { "type": "long" },
                "sent_at": { "type": "long", "index": false, "doc_values": false },
                "sender": { "type": "keyword" },
                "recipients": { "type": "keyword" },
                "to_all": { "type": "boolean" },
                "body": { "type": "text", "index": false },
                "words": {
                    "type": "text",
                    "analyzer": "chat_words",
                    "index_options": "positions",
                    "norms": false,
                    "fields": {
                        "trigrams": {
                            "type": "text",
                            "analyzer": "chat_trigrams",
                            "index_options": "docs",
                            "norms": false
                        }
                    }
                }
            }
        }
    })
}

/// The create-index body of the meta index.
pub fn meta_index(names: &Names) -> Value {
    json!({
        "settings": common_settings(),
        "aliases": { names.meta.clone(): {} },
        "mappings": {
            "dynamic": "strict",
            "_meta": { "chat_schema_version": SCHEMA_VERSION },
            "properties": {
                "position": { "type": "long" }
            }
        }
    })
}
