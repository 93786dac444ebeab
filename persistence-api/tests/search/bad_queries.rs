//! Bad queries: each gets its documented code and a 4xx, and searching
//! with search off answers 503 `search_unavailable`.

use chat_persistence::limits::Limits;
use chat_persistence::search::{SearchMode, limits};
use chat_persistence::store::StoreLocation;
use reqwest::StatusCode;

use crate::common::{TestApi, assert_error};
use crate::world::{Backend, World, enc, on_both_backends};

async fn every_bad_query_has_its_code(backend: Backend) {
    let world = World::start(backend).await;
    let chat = world.chat_with(&["ann"]).await;
    let long = "a".repeat(limits::QUERY_CHARS_MAX + 1);
    let many = ["w"; limits::QUERY_TERMS_MAX + 1].join(" ");
    let too_many_chats = (1..=limits::CHATS_FILTER_MAX as u64 + 1)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let bad = StatusCode::BAD_REQUEST;
    let cases: Vec<(String, StatusCode, &str)> = vec![
        ("q=".into(), unprocessable, "query_empty"),
        ("limit=5".into(), unprocessable, "query_empty"),
        (format!("q={}", enc("  ?! ")), unprocessable, "query_empty"),
        (format!("q={long}"), unprocessable, "query_too_long"),
        (
            format!("q={}", enc(&many)),
            unprocessable,
            "query_too_many_terms",
        ),
        (
            format!("q={}", enc("\"open phrase")),
            bad,
            "query_unbalanced_quote",
        ),
        ("q=a&sort=best".into(), bad, "invalid_sort"),
        ("q=a&cursor=%21%21".into(), bad, "invalid_cursor"),
        ("q=a&limit=0".into(), unprocessable, "invalid_limit"),
        (
            format!("q=a&limit={}", limits::PAGE_SIZE_MAX + 1),
            unprocessable,
            "invalid_limit",
        ),
        ("q=a&limit=ten".into(), unprocessable, "invalid_limit"),
        ("q=a&unknown=1".into(), bad, "invalid_query"),
    ];
    for (params, status, code) in &cases {
        for route in [
            format!("/v1/chats/{chat}/messages/search"),
            "/v1/messages/search".to_owned(),
        ] {
            let path = format!("{route}?{params}");
            let response = world.search(&path, &world.token).await;
            assert_error(&response, *status, code);
        }
    }
    for (params, code) in [
        ("q=a&chats=", "invalid_chats"),
        ("q=a&chats=1,x", "invalid_chats"),
        ("q=a&chats=0", "invalid_chats"),
        (
            &format!("q=a&chats={too_many_chats}") as &str,
            "invalid_chats",
        ),
    ] {
        let response = world
            .search(&format!("/v1/messages/search?{params}"), &world.token)
            .await;
        assert_error(&response, bad, code);
    }
    let response = world
        .search("/v1/messages/search?q=a&from=no%20spaces", &world.token)
        .await;
    assert_error(&response, unprocessable, "invalid_user_id");
    let path = format!("/v1/chats/{chat}/messages/search?q=a&before=0");
    assert_error(
        &world.search(&path, &world.token).await,
        bad,
        "invalid_number",
    );
    let path = format!("/v1/chats/{chat}/messages/search?q=a&chats=1");
    assert_error(
        &world.search(&path, &world.token).await,
        bad,
        "invalid_query",
    );
    // The refusals are counted, and none was a server error.
    let text = world
        .api
        .client
        .get(format!("{}/metrics", world.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|line| line.starts_with("chat_api_search_queries_total{outcome=\"refused\"}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_off_answers_search_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::Embedded(dir.path().to_path_buf());
    let api = TestApi::start_configured(&location, Limits::default(), None, |config| {
        config.search.mode = SearchMode::Off;
    })
    .await;
    let (token, _) = api.create_app("Off").await;
    let chat = api.create_chat(&token).await;
    for path in [
        "/v1/messages/search?q=hello".to_owned(),
        format!("/v1/chats/{chat}/messages/search?q=hello"),
    ] {
        let response = api.get(&path, &token).await;
        assert_error(
            &response,
            StatusCode::SERVICE_UNAVAILABLE,
            "search_unavailable",
        );
    }
    assert!(!dir.path().join("search").exists(), "no index is created");
    api.stop().await;
}

/// Why the server refuses to start with `mode` on a ScyllaDB store (the
/// refusal comes before any connection is tried).
async fn refusal_on_scylla(mode: SearchMode) -> String {
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::parse("scylla://127.0.0.1:1/nowhere", dir.path()).unwrap();
    let config = chat_persistence::ApiConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        operator_key: crate::common::OPERATOR_KEY.into(),
        limits: Limits::default(),
        auth_addr: None,
        connections: Default::default(),
        revocations_stale_s: chat_persistence::user_tokens::REVOCATIONS_STALE_S,
        token_ttl_max_s: 86_400,
        cache: None,
        search: chat_persistence::search::SearchConfig {
            mode,
            ..Default::default()
        },
    };
    match chat_persistence::Server::bind_to(config, &location).await {
        Ok(_) => panic!("search started on ScyllaDB"),
        Err(error) => format!("{error:#}"),
    }
}

/// Embedded search follows the embedded store's commit log; on ScyllaDB the
/// server refuses to start with it rather than serve a search that finds
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_search_on_scylla_is_refused_at_start() {
    let error = refusal_on_scylla(SearchMode::Embedded).await;
    assert!(error.contains("CHAT_SEARCH=off"), "{error}");
}

on_both_backends!(every_bad_query_has_its_code,);

/// The OpenSearch backend follows the same commit log: refused on ScyllaDB
/// at start too, with the way out in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_search_on_scylla_is_refused_at_start() {
    let mode = SearchMode::parse("opensearch://127.0.0.1:1/nowhere").unwrap();
    let error = refusal_on_scylla(mode).await;
    assert!(error.contains("commit log"), "{error}");
    assert!(error.contains("CHAT_SEARCH=off"), "{error}");
}
