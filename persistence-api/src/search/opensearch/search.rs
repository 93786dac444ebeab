//! One search page over OpenSearch: the chunks of each tier (`queries`)
//! that the shared keyset walk (`search::pager`) asks for, bounded by
//! `ordinal < last seen`. Routed to the app's shard; a page with a failed
//! shard or a timeout is an error, never a silently shorter page, and an
//! answer out of the requested order is malformed.

use reqwest::Method;
use serde::Deserialize;

use super::client::{Body, Client, json};
use super::queries;
use crate::search::SearchError;
use crate::search::index::{SearchPage, SearchRequest};
use crate::search::limits::SearchLimits;
use crate::search::pager::{Found, Pager};

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
    let mut pager = Pager::new(request, limits.candidates_scan_max);
    for mut walk in pager.tiers() {
        if pager.is_done() {
            break;
        }
        let matches = queries::tier(request, walk.tier);
        while let Some(chunk) = pager.next_chunk() {
            let found = fetch(
                client,
                &path,
                &queries::chunk(request, &matches, walk.bound, chunk),
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
                if walk.bound.is_some_and(|bound| ordinal >= bound) {
                    return Err(SearchError::Malformed(
                        "a search hit out of the requested order".into(),
                    ));
                }
                let Source {
                    chat,
                    number,
                    sender,
                    sent_at,
                    body,
                } = candidate.source;
                let found = Found {
                    ordinal,
                    chat,
                    number,
                    from: sender,
                    sent_at_us: sent_at,
                    body,
                };
                pager.examine(&mut walk, found);
                if pager.is_done() {
                    break;
                }
            }
            if exhausted {
                break;
            }
        }
    }
    Ok(pager.finish())
}
