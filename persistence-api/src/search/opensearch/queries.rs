//! Search requests to OpenSearch's query DSL: the same three tiers as the
//! embedded backend (`embedded::queries`), each an exact slice of the
//! matches, all in filter context (no scores: order is by `ordinal`):
//! - tier 3: every term as a whole word (`term`; phrases `match_phrase`
//!   over the same space-separated words, so positions are word indices);
//! - tier 2: every term at least a word prefix (`prefix`), minus tier 3;
//! - tier 1: every term at least an infix (a conjunction of its trigrams
//!   on `words.trigrams`, verified afterwards), minus tier 2.
//!
//! Recent order is tier 1's query without the subtraction (tier 0). Terms
//! shorter than a trigram match as prefixes in tier 1 too. One difference
//! from tantivy: a prefix here expands to every indexed word it starts
//! (tantivy stops at `prefix_expansions_max` per segment).

use serde_json::{Value, json};

use crate::search::index::{ChatScope, SearchRequest};
use crate::search::query::Term;
use crate::search::words::{TRIGRAM_CHARS, for_each_trigram};

const WORDS: &str = "words";
const TRIGRAMS: &str = "words.trigrams";

fn all_of(clauses: Vec<Value>) -> Value {
    json!({ "bool": { "filter": clauses } })
}

fn clause(term: &Term, tier: u8) -> Value {
    match term {
        Term::Phrase(words) if words.len() == 1 => json!({ "term": { WORDS: words[0] } }),
        Term::Phrase(words) => json!({
            "match_phrase": { WORDS: { "query": words.join(" "), "slop": 0 } }
        }),
        Term::Word(word) if tier == 3 => json!({ "term": { WORDS: word } }),
        Term::Word(word) if tier == 2 || word.chars().count() < TRIGRAM_CHARS => {
            json!({ "prefix": { WORDS: { "value": word } } })
        }
        Term::Word(word) => {
            let mut grams = Vec::new();
            for_each_trigram(word, |gram| {
                grams.push(json!({ "term": { TRIGRAMS: gram } }))
            });
            all_of(grams)
        }
    }
}

fn terms_at(request: &SearchRequest, tier: u8) -> Value {
    all_of(
        request
            .query
            .terms
            .iter()
            .map(|term| clause(term, tier))
            .collect(),
    )
}

/// What a tier matches, before the filters: exactly its own slice.
pub fn tier(request: &SearchRequest, tier: u8) -> Value {
    match tier {
        0 => terms_at(request, 1),
        3 => terms_at(request, 3),
        _ => json!({
            "bool": {
                "filter": [terms_at(request, tier)],
                "must_not": [terms_at(request, tier + 1)]
            }
        }),
    }
}

/// The app, chat scope, sender, number bound and visibility of a request.
pub fn filters(request: &SearchRequest) -> Vec<Value> {
    let mut filters = vec![json!({ "term": { "app": request.app } })];
    if let ChatScope::Some(chats) = &request.chats {
        filters.push(json!({ "terms": { "chat": chats } }));
    }
    if let Some(from) = &request.from {
        filters.push(json!({ "term": { "sender": from } }));
    }
    if let Some(before) = request.before {
        filters.push(json!({ "range": { "number": { "lt": before } } }));
    }
    if let Some(viewer) = &request.viewer {
        // `Message::is_visible_to`: to everyone, from the viewer, or to them.
        filters.push(json!({
            "bool": {
                "should": [
                    { "term": { "to_all": true } },
                    { "term": { "sender": viewer } },
                    { "term": { "recipients": viewer } }
                ],
                "minimum_should_match": 1
            }
        }));
    }
    filters
}

/// One chunk of one tier: the `size` newest matches below `bound`.
pub fn chunk(request: &SearchRequest, matches: &Value, bound: Option<u64>, size: usize) -> Value {
    let mut clauses = vec![matches.clone()];
    clauses.extend(filters(request));
    if let Some(bound) = bound {
        clauses.push(json!({ "range": { "ordinal": { "lt": bound } } }));
    }
    json!({
        "size": size,
        "track_total_hits": false,
        "_source": ["chat", "number", "sender", "sent_at", "body"],
        "sort": [{ "ordinal": { "order": "desc" } }],
        "query": { "bool": { "filter": clauses } }
    })
}
