//! One OpenSearch REST request: sent to the configured hosts in turn until
//! one accepts the connection, bounded in time (connect and whole-request
//! timeouts) and in answer size, and turned into a typed outcome. Nothing
//! OpenSearch answers can panic here: a status becomes [`SearchError`], a
//! body is only read as bytes (its JSON is the callers', through serde).
//!
//! Every request we send is idempotent (documents by deterministic id,
//! refreshes, searches, the meta document by id), so sending it again to
//! another host after a connection failure cannot double anything.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::config::OpenSearchConfig;
use crate::search::SearchError;

/// Largest answer read, in bytes: a search page of [`crate::search::limits::CANDIDATES_SCAN_MAX`]
/// candidates with 4 KB bodies, or a bulk answer, fits many times.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest part of an error answer quoted in our errors, in bytes.
const ERROR_QUOTE_BYTES_MAX: usize = 512;

pub struct Client {
    http: reqwest::Client,
    bases: Vec<String>,
    /// The host that answered last: tried first.
    preferred: AtomicUsize,
}

/// A 2xx answer, or a 404 (which callers read as "no such document").
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

pub enum Body {
    None,
    Json(Vec<u8>),
    NdJson(Vec<u8>),
}

impl Client {
    pub fn new(config: &OpenSearchConfig) -> Result<Self, SearchError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .build()
            .map_err(|e| SearchError::Unavailable(format!("the OpenSearch client: {e}")))?;
        Ok(Self {
            http,
            bases: config
                .hosts
                .iter()
                .map(|host| format!("http://{host}"))
                .collect(),
            preferred: AtomicUsize::new(0),
        })
    }

    /// Sends `method path` with `body`; `path` starts with `/`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Answer, SearchError> {
        let hosts = self.bases.len();
        let first = self.preferred.load(Ordering::Relaxed) % hosts.max(1);
        let mut refused = Vec::new();
        for attempt in 0..hosts {
            let host = (first + attempt) % hosts;
            let url = format!("{}{path}", self.bases[host]);
            let mut request = self.http.request(method.clone(), &url);
            request = match &body {
                Body::None => request,
                Body::Json(bytes) => request
                    .header("content-type", "application/json")
                    .body(bytes.clone()),
                Body::NdJson(bytes) => request
                    .header("content-type", "application/x-ndjson")
                    .body(bytes.clone()),
            };
            let response = match request.send().await {
                Ok(response) => response,
                // Nobody listens there (or not in time): the next host.
                Err(error) if error.is_connect() => {
                    refused.push(format!("{}: {error}", self.bases[host]));
                    continue;
                }
                Err(error) => {
                    return Err(SearchError::Unavailable(format!(
                        "OpenSearch {method} {url}: {}",
                        describe(&error)
                    )));
                }
            };
            self.preferred.store(host, Ordering::Relaxed);
            let status = response.status();
            let body = read_bounded(response).await.map_err(|why| {
                SearchError::Unavailable(format!("OpenSearch {method} {url}: {why}"))
            })?;
            return classify(status, body).map_err(|error| match error {
                SearchError::Unavailable(why) => {
                    SearchError::Unavailable(format!("OpenSearch {method} {url}: {why}"))
                }
                SearchError::Refused(why) => {
                    SearchError::Refused(format!("OpenSearch {method} {url}: {why}"))
                }
                other => other,
            });
        }
        Err(SearchError::Unavailable(format!(
            "no OpenSearch host accepts connections ({})",
            refused.join("; ")
        )))
    }
}

/// A reqwest error with its causes (the outermost alone says little).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        text.push_str(" (timed out)");
    }
    text
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > RESPONSE_BYTES_MAX as u64)
    {
        return Err(format!("an answer larger than {RESPONSE_BYTES_MAX} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(format!("an answer larger than {RESPONSE_BYTES_MAX} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// 2xx and 404 are answers; 429 and 5xx mean "not now" (503 to our
/// clients, and the indexer retries); any other status means OpenSearch
/// refused what we sent.
fn classify(status: StatusCode, body: Vec<u8>) -> Result<Answer, SearchError> {
    if status.is_success() || status == StatusCode::NOT_FOUND {
        return Ok(Answer { status, body });
    }
    let quote = quote(&body);
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(SearchError::Unavailable(format!("{status}: {quote}")))
    } else {
        Err(SearchError::Refused(format!("{status}: {quote}")))
    }
}

/// The start of an error answer, for a log line.
pub fn quote(body: &[u8]) -> String {
    let end = body.len().min(ERROR_QUOTE_BYTES_MAX);
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// Reads a JSON answer as `T`; anything else is a malformed answer.
pub fn json<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, SearchError> {
    serde_json::from_slice(body).map_err(|e| {
        SearchError::Malformed(format!(
            "OpenSearch's answer to {what}: {e}: {}",
            quote(body)
        ))
    })
}
