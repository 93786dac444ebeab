//! Request extractors that turn every way a request can be wrong into an
//! [`ApiError`] with its documented code, before a handler runs.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::credentials;
use crate::error::ApiError;
use crate::store::App;

/// A JSON body parsed strictly: the size limit, UTF-8, syntax, unknown
/// fields and types each give their own code. The content type is not
/// required: the body is JSON by contract.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(request, state, state.limits.request_body_bytes_max).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], for routes whose body is optional: an empty body is `None`.
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(request, state, state.limits.request_body_bytes_max).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        parse_json(&bytes).map(|value| OptionalJsonBody(Some(value)))
    }
}

/// Reads a whole body. The router's `DefaultBodyLimit` layer for the route
/// enforces `max`; this names it in the error.
pub async fn read_body(request: Request, state: &AppState, max: usize) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::BodyTooLarge(max)
            }
            other => ApiError::InvalidRequest(other.body_text()),
        })
}

/// Parses a JSON object body strictly (`chat_wire::json`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    Ok(chat_wire::json::parse_object(bytes)?)
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::MissingCredentials)?;
    let value = header.to_str().map_err(|_| ApiError::InvalidCredentials)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::InvalidCredentials)?
        .trim();
    if token.is_empty() {
        return Err(ApiError::MissingCredentials);
    }
    Ok(token)
}

/// The app whose token the request carries.
pub struct AppAuth(pub App);

impl FromRequestParts<AppState> for AppAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if state.operator.matches(token) {
            return Err(ApiError::Forbidden(
                "the operator key only provisions apps; use the app's token",
            ));
        }
        let digest = credentials::digest(token);
        match state.app_tokens.app(state.store.as_ref(), digest).await? {
            Some(app) => Ok(AppAuth(app)),
            None => Err(ApiError::InvalidCredentials),
        }
    }
}

/// Who reads: the app (its token), or one of its users (a user token).
pub enum Reader {
    App(App),
    User { app: u64, user: String },
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        // A JWT has three dot-separated parts; an app token has none.
        if token.split('.').count() == 3 {
            let claims = state.user_tokens.verify(token).await?;
            return Ok(Reader::User {
                app: claims.app,
                user: claims.sub,
            });
        }
        AppAuth::from_request_parts(parts, state)
            .await
            .map(|AppAuth(app)| Reader::App(app))
    }
}

/// A request made with the operator key.
pub struct OperatorAuth;

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if state.operator.matches(token) {
            return Ok(OperatorAuth);
        }
        if state
            .store
            .app_by_token(credentials::digest(token))
            .await?
            .is_some()
        {
            return Err(ApiError::Forbidden("only the operator key may do this"));
        }
        Err(ApiError::InvalidCredentials)
    }
}

/// Parses a positive number from a path segment or query value: canonical
/// decimal from 1 to `NUMBER_MAX` (`chat_wire::number`, the reader every
/// service shares).
pub fn positive_number(raw: &str, what: &'static str) -> Result<u64, ApiError> {
    chat_wire::number::parse_positive(raw, what)
        .map_err(|error| ApiError::InvalidNumber(error.to_string()))
}

/// The `{n}` of `/v1/chats/{n}/...`.
pub struct ChatPath(pub u64);

impl FromRequestParts<AppState> for ChatPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let raw = segments
            .get("n")
            .ok_or_else(|| ApiError::InvalidNumber("missing chat number".into()))?;
        positive_number(raw, "chat number").map(ChatPath)
    }
}

/// The `{app}` of the internal `/internal/v1/apps/{app}/...`.
pub struct InternalAppPath(pub u64);

impl FromRequestParts<AppState> for InternalAppPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let raw = segments.get("app").map_or("", String::as_str);
        positive_number(raw, "app id").map(InternalAppPath)
    }
}

/// The `{app}` and `{n}` of the internal `/internal/v1/apps/{app}/chats/{n}/...`.
pub struct InternalChatPath(pub u64, pub u64);

impl FromRequestParts<AppState> for InternalChatPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let number = |key: &str, what: &'static str| {
            let raw = segments.get(key).map_or("", String::as_str);
            positive_number(raw, what)
        };
        Ok(InternalChatPath(
            number("app", "app id")?,
            number("n", "chat number")?,
        ))
    }
}

/// The `{app}`, `{n}` and `{user}` of the internal
/// `/internal/v1/apps/{app}/chats/{n}/subscribers/{user}`.
pub struct InternalSubscriberPath(pub u64, pub u64, pub String);

impl FromRequestParts<AppState> for InternalSubscriberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut segments = path_segments(parts, state).await?;
        let app = positive_number(segments.get("app").map_or("", String::as_str), "app id")?;
        let chat = positive_number(segments.get("n").map_or("", String::as_str), "chat number")?;
        let user = segments.remove("user").unwrap_or_default();
        super::validate::user_id(&user, &state.limits)?;
        Ok(InternalSubscriberPath(app, chat, user))
    }
}

/// The `{app}` and `{user}` of the internal `/internal/v1/apps/{app}/users/{user}/...`.
pub struct InternalUserPath(pub u64, pub String);

impl FromRequestParts<AppState> for InternalUserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut segments = path_segments(parts, state).await?;
        let app = positive_number(segments.get("app").map_or("", String::as_str), "app id")?;
        let user = segments.remove("user").unwrap_or_default();
        super::validate::user_id(&user, &state.limits)?;
        Ok(InternalUserPath(app, user))
    }
}

/// The `{user}` of `/v1/users/{user}/...`.
pub struct UserPath(pub String);

impl FromRequestParts<AppState> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut segments = path_segments(parts, state).await?;
        let user = segments.remove("user").unwrap_or_default();
        super::validate::user_id(&user, &state.limits)?;
        Ok(UserPath(user))
    }
}

/// The `{n}` and `{user}` of `/v1/chats/{n}/subscribers/{user}`.
pub struct SubscriberPath(pub u64, pub String);

impl FromRequestParts<AppState> for SubscriberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut segments = path_segments(parts, state).await?;
        let raw = segments
            .get("n")
            .ok_or_else(|| ApiError::InvalidNumber("missing chat number".into()))?;
        let chat = positive_number(raw, "chat number")?;
        let user = segments.remove("user").unwrap_or_default();
        super::validate::user_id(&user, &state.limits)?;
        Ok(SubscriberPath(chat, user))
    }
}

async fn path_segments(
    parts: &mut Parts,
    state: &AppState,
) -> Result<HashMap<String, String>, ApiError> {
    use axum::extract::path::ErrorKind;
    use axum::extract::rejection::PathRejection;
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(segments)| segments)
        .map_err(|rejection| {
            // A segment that is not UTF-8 gets the code of what it names.
            if let PathRejection::FailedToDeserializePathParams(error) = &rejection
                && let ErrorKind::InvalidUtf8InPathParam { key } = error.kind()
            {
                return match key.as_str() {
                    "user" => ApiError::InvalidUserId("user id is not valid UTF-8".into()),
                    _ => ApiError::InvalidNumber(format!("{key} is not a number")),
                };
            }
            ApiError::InvalidRequest(rejection.body_text())
        })
}

/// Query parameters checked against the names a route accepts.
pub struct QueryParams(pub HashMap<String, String>);

impl FromRequestParts<AppState> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if params.contains_key(&name) {
                // As with a repeated JSON field: refuse rather than pick one.
                return Err(ApiError::InvalidQuery(format!(
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
    pub fn allow(&self, names: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|key| !names.contains(&key.as_str())) {
            Some(unknown) => Err(ApiError::InvalidQuery(format!(
                "unknown query parameter {unknown:?}; expected one of {names:?}"
            ))),
            None => Ok(()),
        }
    }

    pub fn number(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(name)
            .map(|raw| positive_number(raw, name))
            .transpose()
    }

    /// A paging cursor: like [`Self::number`], but 0 (before the first) is allowed.
    pub fn cursor(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(name)
            .map(|raw| {
                chat_wire::number::parse_cursor(raw, name)
                    .map_err(|error| ApiError::InvalidNumber(error.to_string()))
            })
            .transpose()
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The `limit` parameter: 1 to the configured page size maximum.
    pub fn limit(&self, state: &AppState) -> Result<usize, ApiError> {
        let Some(raw) = self.0.get("limit") else {
            return Ok(state.limits.page_size_default);
        };
        let max = state.limits.page_size_max;
        match positive_number(raw, "limit") {
            Ok(limit) if limit <= max as u64 => Ok(limit as usize),
            _ => Err(ApiError::InvalidLimit(format!(
                "limit must be from 1 to {max}, got {raw:?}"
            ))),
        }
    }
}
