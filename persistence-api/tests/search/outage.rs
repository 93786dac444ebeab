//! OpenSearch down mid-ingest, and back: batch commits keep answering 200,
//! searches answer 503 `search_unavailable` meanwhile, and once it is back
//! the index catches up with every acknowledged message, each found once.
//!
//! "Down" is a proxy between this test's API and the shared node
//! (`proxy`), so the tests running beside it keep their OpenSearch. The
//! proxy cuts the API's open connections (a bulk request in flight fails
//! half-way, as in a crash of the node) and stalls new ones, so every
//! request runs into its timeout, as against a stopped (SIGSTOP) node.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::assert_error;
use crate::proxy::Proxy;
use crate::world::{Backend, World, keys, opensearch_config, opensearch_hosts_or_skip};

/// Batches committed while OpenSearch is down, in two bursts.
const BATCHES_DOWN: u64 = 12;
const MESSAGES_PER_BATCH: u64 = 25;

/// Commits batch `id` (its messages share the word `b{id}`) after `last`.
async fn ingest(
    world: &mut World,
    chat: u64,
    last: &mut u64,
    id: u64,
    batches: &mut Vec<(u64, u64, u64)>,
) {
    let bodies: Vec<String> = (0..MESSAGES_PER_BATCH)
        .map(|m| format!("outage b{id} m{m}"))
        .collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let first = *last + 1;
    *last = world.say(chat, *last, "ann", &bodies).await;
    batches.push((id, first, *last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_goes_on_while_opensearch_is_down_and_the_index_catches_up() {
    let Some(hosts) = opensearch_hosts_or_skip("the OpenSearch outage test") else {
        return;
    };
    let target = hosts.split(',').next().unwrap().to_owned();
    let proxy = Proxy::start(&target).await;
    let mut config = opensearch_config(&proxy.addr.to_string());
    // Short, so that the searches meanwhile fail fast.
    config.request_timeout_ms = 1_000;
    config.connect_timeout_ms = 500;
    let mut world = World::start(Backend::OpenSearch(config)).await;
    let chat = world.chat_with(&["ann"]).await;
    let mut last = world.say(chat, 0, "ann", &["steady before"]).await;
    world.wait_indexed().await;
    let page = world
        .hits("/v1/messages/search?q=steady", &world.token)
        .await;
    assert_eq!(keys(&page), [(chat, 1)]);

    let mut batches = Vec::new();
    // The first burst goes in as OpenSearch stops, some of it mid-bulk.
    for id in 0..BATCHES_DOWN / 2 {
        if id == 1 {
            proxy.take_down();
        }
        ingest(&mut world, chat, &mut last, id, &mut batches).await;
    }
    for path in [
        "/v1/messages/search?q=outage".to_owned(),
        format!("/v1/chats/{chat}/messages/search?q=steady"),
    ] {
        assert_error(
            &world.search(&path, &world.token).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "search_unavailable",
        );
    }
    // The second burst while the indexer is backing off.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for id in BATCHES_DOWN / 2..BATCHES_DOWN {
        ingest(&mut world, chat, &mut last, id, &mut batches).await;
    }
    let head = world
        .api
        .metric("chat_api_search_log_head_position")
        .await
        .unwrap();
    let indexed = world
        .api
        .metric("chat_api_search_indexed_position")
        .await
        .unwrap();
    assert!(indexed < head, "indexed {indexed} of {head} while down");
    // The first burst has waited 1.5 s or more: the lag gauge says so,
    // though the indexer has read nothing since (every try fails).
    let lag_s = world
        .api
        .metric("chat_api_search_lag_seconds")
        .await
        .unwrap();
    assert!(lag_s >= 1.0, "the lag gauge says {lag_s} s while down");
    assert!(
        world
            .api
            .metric("chat_api_search_index_failures_total")
            .await
            .is_some_and(|failures| failures >= 1.0),
        "the failures are counted"
    );

    proxy.bring_up();
    world.wait_indexed().await;
    let mut total = 0;
    for &(id, first, last) in &batches {
        let path = format!("/v1/messages/search?q=%22b{id}%22&limit=100&sort=recent");
        let found = keys(&world.hits(&path, &world.token).await);
        let distinct: BTreeSet<_> = found.iter().copied().collect();
        assert_eq!(distinct.len(), found.len(), "batch {id} twice: {found:?}");
        let expected: BTreeSet<_> = (first..=last).map(|number| (chat, number)).collect();
        assert_eq!(distinct, expected, "batch {id}: a message is missing");
        total += found.len();
    }
    let mut everything = 0;
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/messages/search?q=outage&limit=100&sort=recent{cursor}");
        let page = world.hits(&path, &world.token).await;
        everything += keys(&page).len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(everything, total);
    assert_eq!(total as u64, BATCHES_DOWN * MESSAGES_PER_BATCH);
}

/// A free loopback port: nothing listens there (connections are refused).
fn refusing_host() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

/// Several hosts: one that refuses connections is skipped for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_refuses_connections_is_skipped() {
    let Some(hosts) = opensearch_hosts_or_skip("the OpenSearch host test") else {
        return;
    };
    let config = opensearch_config(&format!("{},{hosts}", refusing_host()));
    let mut world = World::start(Backend::OpenSearch(config)).await;
    let chat = world.chat_with(&["ann"]).await;
    world
        .say(chat, 0, "ann", &["through the second host"])
        .await;
    world.wait_indexed().await;
    let page = world
        .hits("/v1/messages/search?q=second", &world.token)
        .await;
    assert_eq!(keys(&page), [(chat, 1)]);
}

/// OpenSearch unreachable from the start: the API starts all the same,
/// commits batches, and answers searches 503 `search_unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_starts_and_ingests_without_opensearch() {
    let mut config = opensearch_config(&refusing_host());
    config.request_timeout_ms = 1_000;
    let mut world = World::start(Backend::OpenSearch(config)).await;
    let chat = world.chat_with(&["ann"]).await;
    world
        .say(chat, 0, "ann", &["nobody indexes this yet"])
        .await;
    assert_error(
        &world
            .search("/v1/messages/search?q=nobody", &world.token)
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "search_unavailable",
    );
}
