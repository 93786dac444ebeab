//! The OpenSearch search backend, for clusters: [`SearchIndex`] over
//! OpenSearch's REST API (reqwest and serde_json; no client crate, so
//! every request, timeout and answer is ours to bound and check).
//!
//! Map: `config` (the `opensearch://` URL), `client` (one request, host
//! failover, timeouts, status → [`SearchError`]), `mapping` (the indices,
//! their analyzers and mappings), `documents` (messages → `_bulk`, and
//! its answer), `queries` (the three tiers in the query DSL), `search`
//! (the tier-by-tier, verified, keyset-paged search, as the embedded one).
//!
//! Durability, and why it is equivalent to the embedded backend's atomic
//! tantivy commit. The embedded index makes documents and the position
//! they cover durable in one step. Here it takes three, in this order:
//! 1. `add`: `_bulk` the documents; OpenSearch acknowledges a document only
//!    after its translog is fsynced (`translog.durability: request`), so
//!    every acknowledged document survives a crash of the node;
//! 2. `commit(p)`: `_refresh`, so that every document added so far is
//!    searchable (the index refreshes only here: `refresh_interval: -1`);
//! 3. then write `p` into the meta document (durable the same way).
//!
//! A crash between two steps leaves the meta position at or below what is
//! durable and searchable, never above: feeding resumes at that position
//! and sends the batches after it again. Those documents may already be
//! there (added, perhaps even refreshed); their ids (`<app>.<chat>.<number>`,
//! routed by app to one shard) make the second write an overwrite, so
//! nothing is indexed twice. `rollback` cannot take documents back out,
//! and need not: what it would drop is exactly what the replay overwrites,
//! and every one of them is an acknowledged message, which may be found
//! early without harm. So the two invariants of the embedded backend hold:
//! everything at or below the recorded position is searchable, and every
//! message is one document.
//!
//! Availability: no start-up step needs OpenSearch to answer. The indices
//! are created (or checked) by the first request that gets through; until
//! then every call answers `Unavailable` (503 `search_unavailable` to
//! searches; the indexer retries with backoff while ingest goes on, and the
//! commit log keeps what is not indexed yet). A definite refusal at set-up
//! (an index of another schema version under this prefix) is an error that
//! the start reports.

mod client;
pub mod config;
mod documents;
mod mapping;
mod queries;
mod search;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use self::client::{Answer, Body, Client, json};
pub use self::config::OpenSearchConfig;
use self::mapping::{META_ID, Names, SCHEMA_VERSION};
use super::index::{SearchError, SearchIndex, SearchPage, SearchRequest};
use super::limits::SearchLimits;
use crate::store::LoggedBatch;

pub struct OpenSearchIndex {
    client: Client,
    names: Names,
    limits: SearchLimits,
    /// Set once the indices exist with our schema.
    ready: OnceCell<()>,
}

#[derive(Deserialize)]
struct Shards {
    #[serde(default)]
    failed: u64,
}

#[derive(Deserialize)]
struct ShardsAnswer {
    #[serde(rename = "_shards")]
    shards: Shards,
}

#[derive(Deserialize)]
struct MetaSource {
    position: u64,
}

#[derive(Deserialize)]
struct MetaAnswer {
    found: Option<bool>,
    #[serde(rename = "_source")]
    source: Option<MetaSource>,
}

#[derive(Deserialize)]
struct IndexMapping {
    mappings: MappingBody,
}

#[derive(Deserialize)]
struct MappingBody {
    #[serde(rename = "_meta")]
    meta: Option<MappingMeta>,
}

#[derive(Deserialize)]
struct MappingMeta {
    chat_schema_version: Option<u64>,
}

fn encode(value: &serde_json::Value) -> Result<Body, SearchError> {
    serde_json::to_vec(value)
        .map(Body::Json)
        .map_err(|e| SearchError::Corrupt(format!("encoding a request: {e}")))
}

impl OpenSearchIndex {
    /// A backend for `config`; sends nothing yet (see [`Self::prepare`]).
    pub fn new(config: &OpenSearchConfig, limits: SearchLimits) -> Result<Self, SearchError> {
        Ok(Self {
            client: Client::new(config)?,
            names: Names::new(&config.index_prefix),
            limits,
            ready: OnceCell::new(),
        })
    }

    /// Creates or checks the indices now: `Unavailable` if OpenSearch does
    /// not answer (the start goes on; the first request that gets through
    /// does this), any other error if it refuses our schema.
    pub async fn prepare(&self) -> Result<(), SearchError> {
        self.ready().await
    }

    async fn ready(&self) -> Result<(), SearchError> {
        self.ready
            .get_or_try_init(|| async {
                self.ensure_index(&self.names.messages, &self.names.messages_concrete, || {
                    mapping::messages_index(&self.names)
                })
                .await?;
                self.ensure_index(&self.names.meta, &self.names.meta_concrete, || {
                    mapping::meta_index(&self.names)
                })
                .await
            })
            .await
            .map(|_| ())
    }

    /// Creates `concrete` with alias `alias` unless the alias exists; if it
    /// does, its mappings must carry our schema version.
    async fn ensure_index(
        &self,
        alias: &str,
        concrete: &str,
        body: impl FnOnce() -> serde_json::Value,
    ) -> Result<(), SearchError> {
        let answer = self
            .client
            .send(Method::GET, &format!("/{alias}/_mapping"), Body::None)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return self.create_index(concrete, &body()).await;
        }
        let indices: std::collections::HashMap<String, IndexMapping> =
            json("a mapping request", &answer.body)?;
        for (name, index) in indices {
            let version = index
                .mappings
                .meta
                .and_then(|meta| meta.chat_schema_version);
            if version != Some(SCHEMA_VERSION) {
                return Err(SearchError::Refused(format!(
                    "index {name} (alias {alias}) has chat schema version {version:?}, \
                     this build writes {SCHEMA_VERSION}: use another index prefix, or \
                     remove it and run `chat reindex`"
                )));
            }
        }
        Ok(())
    }

    async fn create_index(&self, name: &str, body: &serde_json::Value) -> Result<(), SearchError> {
        match self
            .client
            .send(Method::PUT, &format!("/{name}"), encode(body)?)
            .await
        {
            Ok(answer) if answer.status.is_success() => Ok(()),
            Ok(answer) => Err(SearchError::Refused(format!(
                "creating index {name}: {}: {}",
                answer.status,
                client::quote(&answer.body)
            ))),
            Err(error) => Err(error),
        }
    }

    async fn read_position(&self) -> Result<u64, SearchError> {
        self.ready().await?;
        let answer = self
            .client
            .send(
                Method::GET,
                &format!("/{}/_doc/{META_ID}", self.names.meta),
                Body::None,
            )
            .await?;
        let meta: MetaAnswer = json("reading the indexed position", &answer.body)?;
        match (answer.status, meta.found, meta.source) {
            (StatusCode::OK, Some(true), Some(source)) => Ok(source.position),
            (StatusCode::NOT_FOUND, Some(false), _) => Ok(0),
            // A 404 without `found`: the meta index itself is missing.
            (StatusCode::NOT_FOUND, None, _) => Err(SearchError::Unavailable(format!(
                "the index {} is missing",
                self.names.meta
            ))),
            (status, _, _) => Err(SearchError::Malformed(format!(
                "the indexed position answer {status}: {}",
                client::quote(&answer.body)
            ))),
        }
    }

    async fn write_position(&self, position: u64) -> Result<(), SearchError> {
        let answer = self
            .client
            .send(
                Method::PUT,
                &format!("/{}/_doc/{META_ID}?require_alias=true", self.names.meta),
                encode(&json!({ "position": position }))?,
            )
            .await?;
        expect_found("writing the indexed position", &answer)?;
        let written: ShardsAnswer = json("writing the indexed position", &answer.body)?;
        if written.shards.failed > 0 {
            return Err(SearchError::Unavailable(
                "the indexed position was not written to every shard copy".into(),
            ));
        }
        Ok(())
    }

    /// One `_bulk` request, every item of its answer checked.
    async fn bulk(&self, body: Vec<u8>) -> Result<(), SearchError> {
        let sent = documents::documents_in(&body);
        let answer = self
            .client
            .send(
                Method::POST,
                "/_bulk?require_alias=true",
                Body::NdJson(body),
            )
            .await?;
        expect_found("a bulk request", &answer)?;
        let bulk: documents::BulkAnswer = json("a bulk request", &answer.body)?;
        documents::check_bulk(&bulk, sent)
    }

    async fn refresh(&self) -> Result<(), SearchError> {
        let answer = self
            .client
            .send(
                Method::POST,
                &format!("/{}/_refresh", self.names.messages),
                Body::None,
            )
            .await?;
        expect_found("a refresh", &answer)?;
        let refreshed: ShardsAnswer = json("a refresh", &answer.body)?;
        if refreshed.shards.failed > 0 {
            return Err(SearchError::Unavailable(format!(
                "a refresh failed on {} shards",
                refreshed.shards.failed
            )));
        }
        Ok(())
    }
}

/// A 404 where the index must exist: it was removed under us.
fn expect_found(what: &str, answer: &Answer) -> Result<(), SearchError> {
    if answer.status == StatusCode::NOT_FOUND {
        return Err(SearchError::Unavailable(format!(
            "{what}: the index is missing: {}",
            client::quote(&answer.body)
        )));
    }
    Ok(())
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn indexed_position(&self) -> Result<u64, SearchError> {
        self.read_position().await
    }

    async fn add(&self, batches: Vec<LoggedBatch>) -> Result<usize, SearchError> {
        self.ready().await?;
        let (bodies, added) = documents::bulk_bodies(&self.names.messages, &batches)?;
        // Up to `BULK_CONCURRENCY` requests at once; `add` returns only
        // when every one of them was acknowledged (or with the first
        // failure: the replay from the last commit rewrites the same ids).
        futures_util::stream::iter(bodies.into_iter().map(|body| self.bulk(body)))
            .buffer_unordered(documents::BULK_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(added)
    }

    async fn commit(&self, position: u64) -> Result<(), SearchError> {
        self.ready().await?;
        self.refresh().await?;
        self.write_position(position).await
    }

    /// Nothing to drop (see the module doc): the replay from the recorded
    /// position overwrites whatever was added since.
    async fn rollback(&self) -> Result<u64, SearchError> {
        self.read_position().await
    }

    async fn clear(&self, position: u64) -> Result<(), SearchError> {
        self.ready().await?;
        let concrete = &self.names.messages_concrete;
        self.client
            .send(Method::DELETE, &format!("/{concrete}"), Body::None)
            .await?;
        self.create_index(concrete, &mapping::messages_index(&self.names))
            .await?;
        self.write_position(position).await
    }

    async fn search(&self, request: SearchRequest) -> Result<SearchPage, SearchError> {
        self.ready().await?;
        search::search(&self.client, &self.names.messages, &self.limits, &request).await
    }
}
