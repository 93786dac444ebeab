//! Full-text search through the real HTTP API, on the embedded store with
//! either backend (its tantivy index, or a real OpenSearch node when
//! `CHAT_TEST_OPENSEARCH` names one: see `world`), with user tokens minted
//! by a real auth service. The conformance tests (`matching`, `paging`,
//! `visibility`, the bad queries) run once per backend.
//!
//! - `matching`: what a query finds (infix, prefix, whole word, phrase,
//!   case, diacritics, Greek, Cyrillic, CJK) and its highlights;
//! - `paging`: cursors without duplicates or gaps, both sort orders, both
//!   routes;
//! - `visibility`: addressed messages, members who leave, other apps;
//! - `bad_queries`: every refusal code;
//! - `durability`: kill -9 of an API process during ingest, ten rounds;
//! - `reindex`: rebuilding the index from the store;
//! - `outage`: OpenSearch down mid-ingest and back (through `proxy`), a
//!   host that refuses connections skipped, an API started without it;
//! - `replay`: uncommitted OpenSearch documents overwritten by the replay.
//!
//! Searches wait for the index by polling a bounded time (`World::wait_*`),
//! never by sleeping a fixed time.

#[path = "../common/mod.rs"]
mod common;

mod bad_queries;
mod durability;
mod log_memory;
mod matching;
mod outage;
mod paging;
mod proxy;
mod reindex;
mod replay;
mod visibility;
mod world;
