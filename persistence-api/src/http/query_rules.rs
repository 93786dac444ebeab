//! Which query parameters each route accepts, in one table, checked before
//! any handler runs: a parameter a route does not know is refused with 400
//! `invalid_query` (as unknown JSON fields are), and so is a repeated one. A
//! route missing from the table accepts none, so a new route cannot
//! silently ignore what a client sends it.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// (method, route template) → the parameter names it reads.
const QUERY_PARAMETERS: &[(Method, &str, &[&str])] = &[
    (Method::GET, "/v1/chats", &["after", "limit"]),
    (
        Method::GET,
        "/v1/chats/{n}/subscribers",
        &["after", "limit"],
    ),
    (
        Method::GET,
        "/v1/chats/{n}/messages",
        &["after", "before", "limit"],
    ),
    (
        Method::GET,
        "/internal/v1/apps/{app}/chats/{n}/messages",
        &["after", "before", "limit", "user"],
    ),
];

fn allowed(method: &Method, route: &str) -> &'static [&'static str] {
    QUERY_PARAMETERS
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map_or(&[], |(_, _, names)| names)
}

/// The middleware: checks the names (the values are the handlers' to parse).
pub async fn check(request: Request, next: Next) -> Response {
    let Some(query) = request.uri().query() else {
        return next.run(request).await;
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    // No matched route: the fallback answers 404 whatever the query says.
    let Some(route) = route else {
        return next.run(request).await;
    };
    let names = allowed(request.method(), &route);
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in form_urlencoded::parse(query.as_bytes()) {
        if !names.contains(&name.as_ref()) {
            let shown: String = name.chars().take(64).collect();
            return ApiError::InvalidQuery(format!(
                "unknown query parameter {shown:?}; this route accepts {names:?}"
            ))
            .into_response();
        }
        if seen.iter().any(|s| *s == name) {
            return ApiError::InvalidQuery(format!("query parameter {name:?} is repeated"))
                .into_response();
        }
        seen.push(name.into_owned());
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_routes_take_parameters() {
        assert_eq!(allowed(&Method::GET, "/v1/chats"), ["after", "limit"]);
        assert!(allowed(&Method::POST, "/v1/chats").is_empty());
        assert!(allowed(&Method::GET, "/v1/app").is_empty());
        assert!(allowed(&Method::PUT, "/v1/chats/{n}/subscribers/{user}").is_empty());
    }
}
