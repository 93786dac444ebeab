//! Result order and paging: relevance puts whole words first, then
//! prefixes, then infixes, newest first in each; recent is newest first;
//! cursors walk either list without a duplicate or a gap.

use std::collections::HashSet;

use reqwest::StatusCode;

use crate::common::assert_error;
use crate::world::{Backend, World, enc, keys, on_both_backends};

/// Walks every page of `path` (which has a `limit`); returns the hits'
/// keys in order.
async fn walk(world: &World, path: &str, token: &str) -> Vec<(u64, u64)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let page_path = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let page = world.hits(&page_path, token).await;
        all.extend(keys(&page));
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page["has_more"], true);
                cursor = Some(next.to_owned());
            }
            None => {
                assert_eq!(page["has_more"], false);
                return all;
            }
        }
    }
    panic!("more than 1,000 pages");
}

/// Two chats; in each, for i in 0..n: a whole-word, a prefix and an infix
/// match of "rain", plus one non-match, in commit order.
async fn rainy(backend: Backend, n: u64) -> (World, u64, u64) {
    let mut world = World::start(backend).await;
    let one = world.chat_with(&["ann"]).await;
    let two = world.chat_with(&["ann"]).await;
    let (mut last_one, mut last_two) = (0, 0);
    for _ in 0..n {
        let bodies = ["rain today", "rainbow", "terrain", "sunny"];
        last_one = world.say(one, last_one, "ann", &bodies).await;
        last_two = world.say(two, last_two, "ann", &bodies).await;
    }
    world.wait_indexed().await;
    (world, one, two)
}

async fn relevance_orders_by_match_class_then_recency(backend: Backend) {
    let (world, one, _) = rainy(backend, 3).await;
    let path = format!("/v1/chats/{one}/messages/search?q=rain&limit=100");
    let page = world.hits(&path, &world.token).await;
    let classes: Vec<&str> = page["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["match"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        [
            "word", "word", "word", "prefix", "prefix", "prefix", "infix", "infix", "infix"
        ]
    );
    let numbers: Vec<u64> = keys(&page).into_iter().map(|(_, n)| n).collect();
    // Within a class, newest first: rounds were 1-4, 5-8, 9-12.
    assert_eq!(numbers, [9, 5, 1, 10, 6, 2, 11, 7, 3]);
    assert_eq!(page["has_more"], false);
    assert!(page["next_cursor"].is_null());
}

async fn cursors_walk_both_orders_without_duplicates_or_gaps(backend: Backend) {
    let (world, one, two) = rainy(backend, 7).await;
    for sort in ["relevance", "recent"] {
        let whole = world
            .hits(
                &format!("/v1/messages/search?q=rain&limit=100&sort={sort}"),
                &world.token,
            )
            .await;
        let expected = keys(&whole);
        assert_eq!(expected.len(), 2 * 7 * 3, "{sort}");
        for limit in [1, 4, 7] {
            let path = format!("/v1/messages/search?q=rain&limit={limit}&sort={sort}");
            let walked = walk(&world, &path, &world.token).await;
            assert_eq!(walked, expected, "{sort}, limit {limit}");
            let distinct: HashSet<_> = walked.iter().collect();
            assert_eq!(distinct.len(), walked.len());
        }
    }
    // Recent: commit order, newest first; the chats interleave.
    let recent = world
        .hits(
            "/v1/messages/search?q=rain&limit=4&sort=recent",
            &world.token,
        )
        .await;
    assert_eq!(keys(&recent), [(two, 27), (two, 26), (two, 25), (one, 27)]);
    // One chat's route pages the same way.
    let path = format!("/v1/chats/{one}/messages/search?q=rain&limit=5");
    assert_eq!(walk(&world, &path, &world.token).await.len(), 21);
}

async fn filters_before_chats_and_from(backend: Backend) {
    let mut world = World::start(backend).await;
    let one = world.chat_with(&["ann", "bob"]).await;
    let two = world.chat_with(&["ann"]).await;
    world.say(one, 0, "ann", &["apple one", "apple two"]).await;
    world.say(one, 2, "bob", &["apple three"]).await;
    world.say(two, 0, "ann", &["apple four"]).await;
    world.wait_indexed().await;
    let path = format!("/v1/chats/{one}/messages/search?q=apple&before=3&sort=recent");
    assert_eq!(
        keys(&world.hits(&path, &world.token).await),
        [(one, 2), (one, 1)]
    );
    let path = format!("/v1/messages/search?q=apple&chats={two}&sort=recent");
    assert_eq!(keys(&world.hits(&path, &world.token).await), [(two, 1)]);
    let path = "/v1/messages/search?q=apple&from=bob&sort=recent";
    assert_eq!(keys(&world.hits(path, &world.token).await), [(one, 3)]);
    let path = format!("/v1/messages/search?q=apple&chats={one},{two}&from=ann&sort=recent");
    assert_eq!(
        keys(&world.hits(&path, &world.token).await),
        [(two, 1), (one, 2), (one, 1)]
    );
}

async fn a_cursor_only_continues_its_own_search(backend: Backend) {
    let (world, one, _) = rainy(backend, 2).await;
    let first = world
        .hits("/v1/messages/search?q=rain&limit=1", &world.token)
        .await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    for other in [
        format!("/v1/messages/search?q=rai&limit=1&cursor={cursor}"),
        format!("/v1/messages/search?q=rain&limit=1&sort=recent&cursor={cursor}"),
        format!("/v1/messages/search?q=rain&from=ann&limit=1&cursor={cursor}"),
        format!("/v1/chats/{one}/messages/search?q=rain&limit=1&cursor={cursor}"),
        format!(
            "/v1/messages/search?q=rain&limit=1&cursor={}",
            enc(&format!("{cursor}x"))
        ),
        "/v1/messages/search?q=rain&cursor=AAAA".to_owned(),
    ] {
        let response = world.search(&other, &world.token).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "invalid_cursor");
    }
    // Another app's token with this app's cursor: refused too.
    let (other_token, _) = world.api.create_app("Other").await;
    let path = format!("/v1/messages/search?q=rain&limit=1&cursor={cursor}");
    let response = world.search(&path, &other_token).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_cursor");
}

on_both_backends!(
    relevance_orders_by_match_class_then_recency,
    cursors_walk_both_orders_without_duplicates_or_gaps,
    filters_before_chats_and_from,
    a_cursor_only_continues_its_own_search,
);
