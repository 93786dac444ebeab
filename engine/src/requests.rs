//! What the engine reads from an HTTP request before it does anything with
//! it: the credentials of an upgrade or a publish, the chat a publish path
//! names, and a publish's JSON body. Pure functions of the request's bytes,
//! so one fuzz target (`fuzz/fuzz_targets/engine_request.rs`) drives every
//! one of them; the handlers in `http/` only call them.

use hyper::Uri;
use hyper::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;

use crate::config::EngineLimits;
use crate::error::EngineError;
use crate::validate;

/// The `Authorization: Bearer` token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

/// The token of a route that takes no query (publish, presence): in the
/// header only. A URL ends up in access logs, proxies and browser history,
/// so a token in the query is refused even next to a good header (it has
/// leaked already, and a client that does it must hear so).
pub fn token_without_query(headers: &HeaderMap, uri: &Uri) -> Result<String, EngineError> {
    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        if form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "token") {
            return Err(EngineError::TokenInQuery);
        }
        return Err(EngineError::InvalidQuery(
            "this route takes no query parameters".into(),
        ));
    }
    bearer_token(headers).ok_or(EngineError::MissingCredentials)
}

/// The user token of a WebSocket upgrade: `Authorization: Bearer`, or the
/// `token` query parameter (browsers cannot set headers on a WebSocket).
/// The query may hold that one parameter once and nothing else.
pub fn upgrade_token(headers: &HeaderMap, uri: &Uri) -> Result<String, EngineError> {
    let mut in_query = None;
    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name != "token" {
                return Err(EngineError::InvalidQuery(format!(
                    "unknown query parameter {name:?}: the upgrade takes only `token`"
                )));
            }
            if in_query.is_some() {
                return Err(EngineError::InvalidQuery(
                    "`token` is given more than once".into(),
                ));
            }
            in_query = Some(value.into_owned());
        }
    }
    bearer_token(headers)
        .or(in_query.filter(|t| !t.is_empty()))
        .ok_or(EngineError::MissingCredentials)
}

/// The chat segment of `/v1/chats/{n}/messages`, raw; `None` for other paths.
pub fn chat_of_path(path: &str) -> Option<&str> {
    let chat = path.strip_prefix("/v1/chats/")?.strip_suffix("/messages")?;
    (!chat.contains('/')).then_some(chat)
}

/// The `{n}` of `/v1/chats/{n}/presence`, still unparsed.
pub fn presence_chat_of_path(path: &str) -> Option<&str> {
    let chat = path.strip_prefix("/v1/chats/")?.strip_suffix("/presence")?;
    (!chat.contains('/')).then_some(chat)
}

/// The chat number of a publish path's segment (`validate::chat_number`).
pub fn publish_chat(segment: &str) -> Result<u64, EngineError> {
    validate::chat_number(segment)
}

/// A publish's body: `{"body","from","to"?,"id"?}`, read strictly
/// (`chat_wire::json`) and checked like a WebSocket `send` of that chat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub body: String,
    pub from: String,
    #[serde(default)]
    pub to: Option<Vec<String>>,
    #[serde(default)]
    pub id: Option<String>,
}

pub fn publish_body(
    chat: u64,
    bytes: &[u8],
    limits: &EngineLimits,
) -> Result<PublishBody, EngineError> {
    let body: PublishBody = validate::json_object(bytes)?;
    validate::user_id(&body.from)?;
    validate::message(
        chat,
        &body.body,
        body.to.as_deref(),
        body.id.as_deref(),
        limits,
    )?;
    Ok(body)
}
