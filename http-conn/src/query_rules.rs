//! Which query parameters a route reads, checked the same way by every
//! service before any handler runs: a parameter a route does not know is
//! refused (as unknown JSON fields are), and so is a repeated one. A route
//! missing from a service's table accepts none, so a new route cannot
//! silently ignore what a client sends it.

/// (method, route template as the router names it, the parameters it reads).
pub type QueryTable = &'static [(&'static str, &'static str, &'static [&'static str])];

/// Why a request's query is refused (the service answers 400
/// `invalid_query` with it), or `None` when every name is one the route reads.
/// `route` is the matched route template; `None` (no route matched) accepts
/// anything, since the request is answered 404 anyway.
/// The refusal of an axum request's query, as `refusal` judges it from the
/// request's method, matched route and query; `None` without a query.
#[cfg(feature = "tokio")]
pub fn request_refusal(table: QueryTable, request: &axum::extract::Request) -> Option<String> {
    let query = request.uri().query()?;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    refusal(table, request.method().as_str(), route, query)
}

pub fn refusal(
    table: QueryTable,
    method: &str,
    route: Option<&str>,
    query: &str,
) -> Option<String> {
    let route = route?;
    let names: &[&str] = table
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map_or(&[], |(_, _, names)| names);
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in form_urlencoded::parse(query.as_bytes()) {
        let shown: String = name.chars().take(64).collect();
        if !names.contains(&name.as_ref()) {
            return Some(format!(
                "unknown query parameter {shown:?}; this route accepts {names:?}"
            ));
        }
        if seen.iter().any(|s| *s == name) {
            return Some(format!("query parameter {shown:?} is repeated"));
        }
        seen.push(name.into_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: QueryTable = &[("GET", "/v1/chats", &["after", "limit"])];

    #[test]
    fn only_listed_routes_take_their_parameters_once() {
        let refused = |method, route, query| refusal(TABLE, method, Some(route), query);
        assert_eq!(refused("GET", "/v1/chats", "after=1&limit=2"), None);
        assert!(refused("GET", "/v1/chats", "after=1&after=2").is_some());
        assert!(refused("GET", "/v1/chats", "x=1").is_some());
        assert!(refused("POST", "/v1/chats", "after=1").is_some());
        assert!(refused("GET", "/v1/app", "a").is_some());
        assert_eq!(refused("GET", "/v1/app", ""), None);
        assert_eq!(refusal(TABLE, "GET", None, "anything=1"), None);
    }
}
