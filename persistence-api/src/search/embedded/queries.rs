//! Search requests to tantivy queries. Relevance order is three tiers, each
//! an exact slice of the matches, fetched one after another newest first:
//! - tier 3: every term as a whole word (phrases as phrases);
//! - tier 2: every term at least as a word prefix, minus tier 3;
//! - tier 1: every term at least as an infix (trigram candidates, verified
//!   afterwards), minus tier 2.
//!
//! Recent order is tier 1's query without the subtraction (tier 0). Terms
//! shorter than a trigram match as prefixes in tier 1 too.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    BooleanQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::IndexRecordOption;

use super::schema::Fields;
use crate::search::index::{ChatScope, SearchRequest};
use crate::search::query::Term as QueryTerm;
use crate::search::words::{TRIGRAM_CHARS, for_each_trigram};

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

fn all_of(queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(
        queries.into_iter().map(|q| (Occur::Must, q)).collect(),
    ))
}

/// One term at one tier's strictness.
fn clause(fields: &Fields, term: &QueryTerm, tier: u8, expansions_max: u32) -> Box<dyn Query> {
    let word_term = |word: &str| Term::from_field_text(fields.words, word);
    let prefix = |word: &str| -> Box<dyn Query> {
        let mut query = PhrasePrefixQuery::new(vec![word_term(word)]);
        query.set_max_expansions(expansions_max);
        Box::new(query)
    };
    match term {
        QueryTerm::Phrase(words) if words.len() == 1 => term_query(word_term(&words[0])),
        QueryTerm::Phrase(words) => Box::new(PhraseQuery::new(
            words.iter().map(|word| word_term(word)).collect(),
        )),
        QueryTerm::Word(word) if tier == 3 => term_query(word_term(word)),
        QueryTerm::Word(word) if tier == 2 || word.chars().count() < TRIGRAM_CHARS => prefix(word),
        QueryTerm::Word(word) => {
            let mut grams = Vec::new();
            for_each_trigram(word, |gram| {
                grams.push(term_query(Term::from_field_text(fields.trigrams, gram)));
            });
            all_of(grams)
        }
    }
}

fn terms_at(
    fields: &Fields,
    request: &SearchRequest,
    tier: u8,
    expansions_max: u32,
) -> Box<dyn Query> {
    all_of(
        request
            .query
            .terms
            .iter()
            .map(|term| clause(fields, term, tier, expansions_max))
            .collect(),
    )
}

/// What a tier matches, before the filters: exactly its own slice.
pub fn tier(
    fields: &Fields,
    request: &SearchRequest,
    tier: u8,
    expansions_max: u32,
) -> Box<dyn Query> {
    match tier {
        0 => terms_at(fields, request, 1, expansions_max),
        3 => terms_at(fields, request, 3, expansions_max),
        _ => Box::new(BooleanQuery::new(vec![
            (Occur::Must, terms_at(fields, request, tier, expansions_max)),
            (
                Occur::MustNot,
                terms_at(fields, request, tier + 1, expansions_max),
            ),
        ])),
    }
}

/// The app, chat scope, sender, number bound and visibility of a request.
pub fn filters(fields: &Fields, request: &SearchRequest) -> Vec<Box<dyn Query>> {
    let mut filters = vec![term_query(Term::from_field_u64(fields.app, request.app))];
    if let ChatScope::Some(chats) = &request.chats {
        filters.push(match chats.as_slice() {
            [chat] => term_query(Term::from_field_u64(fields.chat, *chat)),
            chats => Box::new(TermSetQuery::new(
                chats
                    .iter()
                    .map(|&chat| Term::from_field_u64(fields.chat, chat)),
            )),
        });
    }
    if let Some(from) = &request.from {
        filters.push(term_query(Term::from_field_text(fields.sender, from)));
    }
    if let Some(before) = request.before {
        filters.push(Box::new(RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_u64(fields.number, before)),
        )));
    }
    if let Some(viewer) = &request.viewer {
        // `Message::is_visible_to`: to everyone, from the viewer, or to them.
        filters.push(Box::new(BooleanQuery::new(vec![
            (
                Occur::Should,
                term_query(Term::from_field_u64(fields.to_all, 1)),
            ),
            (
                Occur::Should,
                term_query(Term::from_field_text(fields.sender, viewer)),
            ),
            (
                Occur::Should,
                term_query(Term::from_field_text(fields.recipient, viewer)),
            ),
        ])));
    }
    filters
}

/// `ordinal < bound`: the keyset cursor inside a tier.
pub fn before_ordinal(fields: &Fields, bound: u64) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Unbounded,
        Bound::Excluded(Term::from_field_u64(fields.ordinal, bound)),
    ))
}
