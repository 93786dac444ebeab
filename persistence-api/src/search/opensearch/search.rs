//! One search page over OpenSearch, in the embedded backend's steps:
//! tier by tier (`queries`), newest first inside a tier in chunks bounded
//! by `ordinal < last seen` (a keyset, never an offset), each candidate
//! verified by `matching::verify` (so hits, classes and highlights are the
//! shared code's), until the page has one hit more than asked or
//! `candidates_scan_max` candidates were examined. Routed to the app's
//! shard; a page with a failed shard or a timeout is an error, never a
//! silently shorter page.

use reqwest::Method;
use serde::Deserialize;

use super::client::{Body, Client, json};
use super::queries;
use crate::search::SearchError;
use crate::search::index::{Hit, Position, SearchPage, SearchRequest, SortOrder};
use crate::search::limits::SearchLimits;
use crate::search::matching::verify;

/// Fewest candidates fetched per request (a page that wants 1 hit may
/// have to skip unverified candidates).
const CHUNK_CANDIDATES_MIN: usize = 32;

#[derive(Deserialize)]
struct Answer {
    timed_out: bool,
    #[serde(rename = "_shards")]
    shards: Shards,
    hits: Hits,
}

#[derive(Deserialize)]
struct Shards {
    failed: u64,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<Candidate>,
}

#[derive(Deserialize)]
struct Candidate {
    #[serde(rename = "_source")]
    source: Source,
    sort: Vec<u64>,
}

#[derive(Deserialize)]
struct Source {
    chat: u64,
    number: u64,
    sender: String,
    sent_at: i64,
    body: String,
}

async fn fetch(
    client: &Client,
    path: &str,
    query: &serde_json::Value,
) -> Result<Vec<Candidate>, SearchError> {
    let body = serde_json::to_vec(query)
        .map_err(|e| SearchError::Corrupt(format!("encoding a query: {e}")))?;
    let answer = client.send(Method::POST, path, Body::Json(body)).await?;
    if answer.status == reqwest::StatusCode::NOT_FOUND {
        return Err(SearchError::Unavailable(format!(
            "the messages index is missing: {}",
            super::client::quote(&answer.body)
        )));
    }
    let answer: Answer = json("a search", &answer.body)?;
    if answer.timed_out || answer.shards.failed > 0 {
        return Err(SearchError::Unavailable(format!(
            "a search timed out or failed on {} shards",
            answer.shards.failed
        )));
    }
    Ok(answer.hits.hits)
}

pub async fn search(
    client: &Client,
    index: &str,
    limits: &SearchLimits,
    request: &SearchRequest,
) -> Result<SearchPage, SearchError> {
    let path = format!("/{index}/_search?routing={}", request.app);
    let tiers: &[u8] = match request.sort {
        SortOrder::Relevance => &[3, 2, 1],
        SortOrder::Recent => &[0],
    };
    let scan_max = limits.candidates_scan_max;
    let want = request.limit.saturating_add(1);
    let mut hits: Vec<Hit> = Vec::with_capacity(want.min(256));
    let mut scanned = 0usize;
    let mut last_examined: Option<Position> = None;
    let mut capped = false;
    'tiers: for &tier in tiers {
        let mut bound = match request.after {
            Some(after) if after.tier < tier => continue,
            Some(after) if after.tier == tier => Some(after.ordinal),
            _ => None,
        };
        let matches = queries::tier(request, tier);
        loop {
            let chunk = (want - hits.len())
                .max(CHUNK_CANDIDATES_MIN)
                .min(scan_max - scanned);
            if chunk == 0 {
                capped = true;
                break 'tiers;
            }
            let found = fetch(
                client,
                &path,
                &queries::chunk(request, &matches, bound, chunk),
            )
            .await?;
            if found.len() > chunk {
                return Err(SearchError::Malformed(format!(
                    "a search for {chunk} candidates answered {}",
                    found.len()
                )));
            }
            let exhausted = found.len() < chunk;
            for candidate in found {
                let ordinal = match candidate.sort.as_slice() {
                    [ordinal] => *ordinal,
                    _ => {
                        return Err(SearchError::Malformed(
                            "a search hit without its one sort value".into(),
                        ));
                    }
                };
                if bound.is_some_and(|bound| ordinal >= bound) {
                    return Err(SearchError::Malformed(
                        "a search hit out of the requested order".into(),
                    ));
                }
                scanned += 1;
                bound = Some(ordinal);
                let position = Position { tier, ordinal };
                last_examined = Some(position);
                let Source {
                    chat,
                    number,
                    sender,
                    sent_at,
                    body,
                } = candidate.source;
                let Some(verified) = verify(&body, &request.query) else {
                    continue;
                };
                hits.push(Hit {
                    chat,
                    number,
                    from: sender,
                    sent_at_us: sent_at,
                    body,
                    class: verified.class,
                    highlights: verified.highlights,
                    position,
                });
                if hits.len() == want {
                    break 'tiers;
                }
            }
            if exhausted {
                break;
            }
        }
    }
    let next = if hits.len() > request.limit {
        hits.truncate(request.limit);
        hits.last().map(|hit| hit.position)
    } else if capped {
        last_examined
    } else {
        None
    };
    Ok(SearchPage { hits, next })
}
