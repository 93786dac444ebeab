//! Request extractors that turn every way a request can be wrong into an
//! [`AuthError`] with its documented code, before a handler runs. The
//! credentials are checked before the body is read, so a stranger learns
//! nothing about what a valid body looks like.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::app_tokens::{Lookup, Source};
use crate::error::AuthError;

/// A JSON body parsed strictly: the size limit, UTF-8, syntax, unknown
/// fields and types each give their own code. The content type is not
/// required: the body is JSON by contract.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = AuthError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AuthError> {
        let max = state.settings.request_body_bytes_max;
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(error)
                        if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        AuthError::BodyTooLarge(max)
                    }
                    other => AuthError::InvalidRequest(other.body_text()),
                })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON object body strictly (`chat_wire::json`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AuthError> {
    Ok(chat_wire::json::parse_object(bytes)?)
}

fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingCredentials)?;
    let value = header.to_str().map_err(|_| AuthError::InvalidCredentials)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::InvalidCredentials)?
        .trim();
    if token.is_empty() {
        return Err(AuthError::MissingCredentials);
    }
    Ok(token)
}

/// Asks which app a token belongs to, and counts the outcome.
async fn lookup(state: &AppState, token: &str) -> Lookup {
    let (lookup, source) = state.app_tokens.app_of(token).await;
    let outcome = match (&lookup, source) {
        (Lookup::App(_), Source::Cache) => "cached",
        (Lookup::App(_), Source::Api) => "valid",
        (Lookup::Unknown, _) => "invalid",
        (Lookup::Failed(_), _) => "failed",
    };
    state.metrics.app_token_lookup(outcome);
    lookup
}

/// The app whose token the request carries.
pub struct AppAuth(pub u64);

impl FromRequestParts<AppState> for AppAuth {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AuthError> {
        let token = bearer(parts)?;
        if state.operator.matches(token) {
            return Err(AuthError::Forbidden(
                "the operator key cannot mint or revoke user tokens; use the app's token",
            ));
        }
        match lookup(state, token).await {
            Lookup::App(app) => Ok(AppAuth(app)),
            Lookup::Unknown => Err(AuthError::InvalidCredentials),
            Lookup::Failed(detail) => Err(AuthError::Unavailable(detail)),
        }
    }
}

/// A request made with the operator key.
pub struct OperatorAuth;

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AuthError> {
        let token = bearer(parts)?;
        if state.operator.matches(token) {
            return Ok(OperatorAuth);
        }
        match lookup(state, token).await {
            Lookup::App(_) => Err(AuthError::Forbidden("only the operator key may do this")),
            // Not the operator key either way: whether it is an app token
            // only decides between 403 and 401, not worth a 503.
            Lookup::Unknown | Lookup::Failed(_) => Err(AuthError::InvalidCredentials),
        }
    }
}

/// Query parameters checked against the names a route accepts.
pub struct QueryParams(pub HashMap<String, String>);

impl FromRequestParts<AppState> for QueryParams {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AuthError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| AuthError::InvalidQuery(rejection.body_text()))?;
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if params.contains_key(&name) {
                // As with a repeated JSON field: refuse rather than pick one.
                return Err(AuthError::InvalidQuery(format!(
                    "query parameter {name:?} is repeated"
                )));
            }
            params.insert(name, value);
        }
        Ok(QueryParams(params))
    }
}

impl QueryParams {
    /// Refuses a parameter the route does not know, as unknown JSON fields are.
    pub fn allow(&self, names: &[&str]) -> Result<(), AuthError> {
        match self.0.keys().find(|key| !names.contains(&key.as_str())) {
            Some(unknown) => Err(AuthError::InvalidQuery(format!(
                "unknown query parameter {unknown:?}; expected one of {names:?}"
            ))),
            None => Ok(()),
        }
    }

    /// A paging cursor: a whole number from 0, digits only.
    pub fn cursor(&self, name: &str) -> Result<Option<u64>, AuthError> {
        let Some(raw) = self.0.get(name) else {
            return Ok(None);
        };
        let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        match digits.then(|| raw.parse::<u64>().ok()).flatten() {
            Some(number) => Ok(Some(number)),
            None => Err(AuthError::InvalidNumber(format!(
                "{name} must be a whole number from 0 to {}, got {raw:?}",
                u64::MAX
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        user: String,
    }

    #[test]
    fn every_way_a_body_is_wrong_has_its_code() {
        let code = |bytes: &[u8]| parse_json::<Body>(bytes).unwrap_err().code();
        assert_eq!(code(b""), "malformed_json");
        assert_eq!(code(b"{\"user\":"), "malformed_json");
        assert_eq!(code(b"\xff"), "malformed_json");
        assert_eq!(code(b"[\"alice\"]"), "invalid_request");
        assert_eq!(code(b"{}"), "invalid_request");
        assert_eq!(code(b"{\"user\":1}"), "invalid_request");
        assert_eq!(code(b"{\"user\":\"a\",\"user\":\"b\"}"), "invalid_request");
        assert_eq!(code(b"{\"user\":\"a\",\"x\":1}"), "unknown_field");
        assert_eq!(parse_json::<Body>(b" {\"user\":\"a\"}").unwrap().user, "a");
    }
}
