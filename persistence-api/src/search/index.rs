//! The search backend's interface: what the indexer feeds and what the
//! routes ask. The embedded backend (tantivy) implements it; a clustered one
//! (OpenSearch) is meant to implement the same trait, so that routes,
//! indexer, limits and cursors stay as they are.

use async_trait::async_trait;

use super::matching::MatchClass;
use super::query::ParsedQuery;
use crate::store::{AppId, ChatNumber, LoggedBatch, MessageNumber};

/// The result order a request asks for (`sort=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SortOrder {
    /// Whole-word and phrase matches first, then prefix, then infix
    /// matches; newest first within each.
    Relevance = 1,
    /// Newest first, however the message matched.
    Recent = 2,
}

impl SortOrder {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "relevance" => Some(Self::Relevance),
            "recent" => Some(Self::Recent),
            _ => None,
        }
    }
}

/// A hit's place in a result list, which the cursor carries: results
/// continue strictly after it. `ordinal` is the message's commit order
/// (commit log position × 2^20 + its index in the batch), unique and stable
/// across restarts and replays; `tier` is its match class under relevance
/// order (0 under recent order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub tier: u8,
    pub ordinal: u64,
}

/// Bits of an ordinal below the commit log position: room for a batch's
/// messages (`BATCH_MESSAGES_MAX` is 4,096).
pub const ORDINAL_INDEX_BITS: u32 = 20;

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

/// Which chats of the app a request searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatScope {
    /// Every chat of the app (the app token without `chats=`).
    All,
    /// These chats (ascending, deduplicated; never empty).
    Some(Vec<ChatNumber>),
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub app: AppId,
    pub chats: ChatScope,
    /// Only what this user may see (`Message::is_visible_to`); `None`
    /// searches as the app. Membership was checked by the caller, now.
    pub viewer: Option<String>,
    /// Only messages from this sender (`from=`).
    pub from: Option<String>,
    /// Only messages numbered below this (`before=`, one chat).
    pub before: Option<MessageNumber>,
    pub query: ParsedQuery,
    pub sort: SortOrder,
    /// Continue after this hit (from a cursor).
    pub after: Option<Position>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub chat: ChatNumber,
    pub number: MessageNumber,
    pub from: String,
    pub sent_at_us: i64,
    pub body: String,
    pub class: MatchClass,
    /// `[start, end)` in Unicode scalar values of the body.
    pub highlights: Vec<(u32, u32)>,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub hits: Vec<Hit>,
    /// Where the next page starts; `None` when this is the last.
    pub next: Option<Position>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The backend cannot serve now (a retry may succeed): 503.
    #[error("the search index is unavailable: {0}")]
    Unavailable(String),
    /// What the backend holds contradicts itself.
    #[error("the search index is corrupt: {0}")]
    Corrupt(String),
    /// A remote backend refused a request (a 4xx other than 404 and 429):
    /// what we sent or how the backend is set up is wrong; retrying the
    /// same request will not help.
    #[error("the search backend refused a request: {0}")]
    Refused(String),
    /// A remote backend's answer is not what its API defines.
    #[error("the search backend answered something malformed: {0}")]
    Malformed(String),
}

#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// The commit log position whose batches, and all before, are durably
    /// indexed (0 for an empty index): where feeding resumes.
    async fn indexed_position(&self) -> Result<u64, SearchError>;

    /// Adds the batches' messages; not searchable, nor durable, until
    /// [`Self::commit`]. Returns the number of documents added.
    async fn add(&self, batches: Vec<LoggedBatch>) -> Result<usize, SearchError>;

    /// Makes everything added durable and searchable, recording `position`
    /// as indexed in the same atomic step.
    async fn commit(&self, position: u64) -> Result<(), SearchError>;

    /// Drops everything added since the last commit; returns the position
    /// of that commit (where feeding must resume).
    async fn rollback(&self) -> Result<u64, SearchError>;

    /// Drops every document, durably, recording `position` as indexed:
    /// the start of a rebuild (`search::reindex`).
    async fn clear(&self, position: u64) -> Result<(), SearchError>;

    async fn search(&self, request: SearchRequest) -> Result<SearchPage, SearchError>;
}
