//! Paging: history in both directions across the store's partitions,
//! history for a viewer who may see only some messages, the chat listing
//! over sparse numbers, and the subscriber listing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Backend;
use crate::common::{OPERATOR_KEY, batch, implicit_chat, message};

fn numbers(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|m| m["number"].as_u64().unwrap())
        .collect()
}

/// 2,600 messages: more than two of the ScyllaDB store's 1,024-message
/// partitions, so pages and windows cross partition boundaries.
pub async fn history_pages_across_partitions_both_ways(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("long chat").await;
    let chat = api.create_chat(&token).await;
    let mut next: u64 = 1;
    for (id, size) in [(1, 1000), (2, 1000), (3, 600)] {
        let messages = (0..size)
            .map(|_| {
                let m = message(app, chat, next, "alice", &format!("m{next}"));
                next += 1;
                m
            })
            .collect();
        let (status, receipt) = api.post_batch(&batch(id, messages)).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
    }
    let total = next - 1;
    let history = |query: String| {
        let path = format!("/v1/chats/{chat}/messages?{query}");
        let api = &api;
        let token = &token;
        async move {
            let (status, page) = api.get(&path, token).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page
        }
    };

    // Forward from the start, 333 at a time.
    let mut seen: Vec<u64> = Vec::new();
    let mut after = 0;
    for _ in 0..100 {
        let page = history(format!("after={after}&limit=333")).await;
        let page_numbers = numbers(&page);
        seen.extend(&page_numbers);
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = *page_numbers.last().unwrap();
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());

    // Backward from the newest, 1,000 at a time.
    let mut seen: Vec<u64> = Vec::new();
    let mut before = None;
    for _ in 0..100 {
        let query = match before {
            Some(before) => format!("before={before}&limit=1000"),
            None => "limit=1000".to_string(),
        };
        let page = history(query).await;
        let page_numbers = numbers(&page);
        assert!(page_numbers.windows(2).all(|w| w[0] < w[1]));
        seen.splice(0..0, page_numbers.iter().copied());
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        before = Some(page_numbers[0]);
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());

    // Windows across partition boundaries.
    let window = history("after=1020&before=1030".into()).await;
    assert_eq!(numbers(&window), (1021..=1029).collect::<Vec<_>>());
    assert_eq!(window["has_more"], false);
    let window = history("after=1020&before=1030&limit=4".into()).await;
    assert_eq!(numbers(&window), vec![1021, 1022, 1023, 1024]);
    assert_eq!(window["has_more"], true);
    let window = history("before=1026&limit=5".into()).await;
    assert_eq!(numbers(&window), (1021..=1025).collect::<Vec<_>>());
    assert_eq!(window["has_more"], true);
    let window = history("after=2047&limit=3".into()).await;
    assert_eq!(numbers(&window), vec![2048, 2049, 2050]);
    // Past the end, and an empty window.
    let past = history(format!("after={total}")).await;
    assert_eq!((numbers(&past), &past["has_more"]), (vec![], &json!(false)));
    let past = history(format!("after={}&limit=5", total + 100)).await;
    assert_eq!(numbers(&past), Vec::<u64>::new());
    let empty = history("after=10&before=11".into()).await;
    assert_eq!(
        (numbers(&empty), &empty["has_more"]),
        (vec![], &json!(false))
    );
    let last = history(format!("before={}", total + 100)).await;
    assert_eq!(*numbers(&last).last().unwrap(), total);
    // The fields survive the trip.
    let one = history("after=2599&limit=1".into()).await;
    assert_eq!(one["messages"][0]["body"], "m2600");
    assert_eq!(one["messages"][0]["from"], "alice");
}

/// Messages 1..=30 from alice: odd ones to bob alone, even ones to all.
pub async fn history_for_a_viewer_skips_what_they_may_not_see(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("private").await;
    let chat = api.create_chat(&token).await;
    let messages = (1..=30)
        .map(|n| {
            let mut m = message(app, chat, n, "alice", &format!("m{n}"));
            if n % 2 == 1 {
                m.recipients = Some(vec!["bob".into()]);
            }
            m
        })
        .collect();
    assert_eq!(api.post_batch(&batch(1, messages)).await.0, StatusCode::OK);
    let as_user = |query: String| {
        let path = format!("/internal/v1/apps/{app}/chats/{chat}/messages?{query}");
        let api = &api;
        async move {
            let (status, page) = api.call(Method::GET, &path, Some(OPERATOR_KEY), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page
        }
    };
    let page = as_user("after=0&limit=5&user=carol".into()).await;
    assert_eq!(numbers(&page), vec![2, 4, 6, 8, 10]);
    assert_eq!(page["has_more"], true);
    let page = as_user("after=26&limit=5&user=carol".into()).await;
    assert_eq!(numbers(&page), vec![28, 30]);
    assert_eq!(page["has_more"], false);
    let page = as_user("limit=4&user=carol".into()).await;
    assert_eq!(numbers(&page), vec![24, 26, 28, 30]);
    assert_eq!(page["has_more"], true);
    let page = as_user("before=3&limit=4&user=carol".into()).await;
    assert_eq!(numbers(&page), vec![2]);
    assert_eq!(page["has_more"], false);
    let page = as_user("after=0&limit=100&user=bob".into()).await;
    assert_eq!(numbers(&page), (1..=30).collect::<Vec<_>>());
    let page = as_user("after=0&limit=100&user=alice".into()).await;
    assert_eq!(numbers(&page).len(), 30, "a sender sees their own messages");
    // The page ends with the limit even if nothing after it is visible.
    let page = as_user("after=27&limit=1&user=carol".into()).await;
    assert_eq!(numbers(&page), vec![28]);
    assert_eq!(page["has_more"], true);
}

/// Chat numbers far apart (implicit chats may take any number): the listing
/// is in number order and pages through them all.
pub async fn chat_listing_pages_over_sparse_numbers(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("sparse").await;
    assert_eq!(api.create_chat(&token).await, 1);
    let mut implicit = batch(1, vec![]);
    for number in [200_000, 5, 70_000] {
        implicit.chats.push(implicit_chat(app, number, &["ann"]));
    }
    let (status, receipt) = api.post_batch(&implicit).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["chats"], 3);
    assert_eq!(api.create_chat(&token).await, 200_001);
    assert_eq!(api.create_chat(&token).await, 200_002);
    let all = [1u64, 5, 70_000, 200_000, 200_001, 200_002];

    let listed = |page: &Value| -> Vec<u64> {
        page["chats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["number"].as_u64().unwrap())
            .collect()
    };
    let (_, page) = api.get("/v1/chats?limit=1000", &token).await;
    assert_eq!(listed(&page), all);
    assert_eq!(page["has_more"], false);
    let mut seen: Vec<u64> = Vec::new();
    let mut after = 0;
    for _ in 0..10 {
        let (_, page) = api
            .get(&format!("/v1/chats?after={after}&limit=2"), &token)
            .await;
        seen.extend(listed(&page));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = *seen.last().unwrap();
    }
    assert_eq!(seen, all);
    let (_, page) = api.get("/v1/chats?after=69999&limit=1", &token).await;
    assert_eq!(
        (listed(&page), &page["has_more"]),
        (vec![70_000], &json!(true))
    );
    let (_, page) = api.get("/v1/chats?after=200002", &token).await;
    assert_eq!((listed(&page), &page["has_more"]), (vec![], &json!(false)));
    assert_eq!(api.get("/v1/app", &token).await.1["chats_count"], 6);
}

pub async fn subscriber_listing_pages_in_user_order(backend: Backend) {
    let api = backend.start().await;
    let (token, _) = api.create_app("members").await;
    let chat = api.create_chat(&token).await;
    let users: Vec<String> = (0..25).map(|i| format!("u{:02}", (i * 7) % 25)).collect();
    for user in &users {
        api.subscribe(&token, chat, user).await;
    }
    let page = |query: String| {
        let path = format!("/v1/chats/{chat}/subscribers?{query}");
        let api = &api;
        let token = &token;
        async move { api.get(&path, token).await.1 }
    };
    let expect = |range: std::ops::Range<usize>| -> Value {
        json!(range.map(|i| format!("u{i:02}")).collect::<Vec<_>>())
    };
    let first = page("limit=10".into()).await;
    assert_eq!(first["subscribers"], expect(0..10));
    assert_eq!(first["has_more"], true);
    let second = page("limit=10&after=u09".into()).await;
    assert_eq!(second["subscribers"], expect(10..20));
    let last = page("limit=10&after=u19".into()).await;
    assert_eq!(last["subscribers"], expect(20..25));
    assert_eq!(last["has_more"], false);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/chats/{chat}/subscribers/u05"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let first = page("limit=5".into()).await;
    assert_eq!(
        first["subscribers"],
        json!(["u00", "u01", "u02", "u03", "u04"])
    );
    let next = page("limit=2&after=u04".into()).await;
    assert_eq!(next["subscribers"], json!(["u06", "u07"]));
    let (_, view) = api.get(&format!("/v1/chats/{chat}"), &token).await;
    assert_eq!(view["subscribers_count"], 24);
}
