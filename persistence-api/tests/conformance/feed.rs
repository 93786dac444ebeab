//! The member feed (`GET /v1/users/{user}/messages`): a member's newest
//! messages across their chats, newest first, paged with `before`, showing
//! only what they may see, and only chats they are a member of now.

use reqwest::{Method, StatusCode};

use crate::Backend;
use crate::common::{TestApi, assert_error, batch, message};

/// `(sent_at_us, chat, number)` of one feed item: the feed's order.
type Key = (i64, u64, u64);

const BASE_US: i64 = 1_700_000_000_000_000;

async fn read_feed(api: &TestApi, token: &str, user: &str, limit: usize) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..1_000 {
        let path = match &before {
            Some(before) => format!("/v1/users/{user}/messages?limit={limit}&before={before}"),
            None => format!("/v1/users/{user}/messages?limit={limit}"),
        };
        let (status, page) = api.get(&path, token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let items = page["messages"].as_array().expect("messages");
        assert!(items.len() <= limit, "{page}");
        for item in items {
            let sent_at = item["sent_at"].as_str().unwrap();
            let sent_at_us = humantime::parse_rfc3339(sent_at)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64;
            keys.push((
                sent_at_us,
                item["chat"].as_u64().unwrap(),
                item["number"].as_u64().unwrap(),
            ));
        }
        if page["has_more"] == false {
            assert!(page.get("next").is_none(), "{page}");
            return keys;
        }
        before = Some(page["next"].as_str().expect("next while has_more").into());
    }
    panic!("the feed of {user} did not end in 1,000 pages");
}

/// 16 chats; bob is in 12 of them. Chat 1 is busy (120 messages spread over
/// the whole time range), the others have a few each, interleaved in time.
/// Some messages are addressed to carol alone (bob must not see them), some
/// to bob, and some bob sent to carol (his own). Paged 9 at a time the feed
/// is exactly the model's list; after bob leaves a chat it is gone at once;
/// another app's chat of the same number is never in it.
pub async fn a_members_feed_spans_their_chats_newest_first(backend: Backend) {
    let api = backend.start_with(Default::default()).await;
    let (token, app) = api.create_app("feed").await;
    let (other_token, other_app) = api.create_app("other").await;
    let chats: Vec<u64> = {
        let mut chats = Vec::new();
        for _ in 0..16 {
            chats.push(api.create_chat(&token).await);
        }
        chats
    };
    let bobs: Vec<u64> = chats.iter().copied().filter(|c| c % 4 != 0).collect();
    for &chat in &chats {
        api.subscribe(&token, chat, "carol").await;
        if bobs.contains(&chat) {
            api.subscribe(&token, chat, "bob").await;
        }
    }
    // The other app's chat 1 has bob too, and a newer message.
    let theirs = api.create_chat(&other_token).await;
    api.subscribe(&other_token, theirs, "bob").await;
    let mut foreign = message(other_app, theirs, 1, "dave", "not yours");
    foreign.sent_at_us = BASE_US + 10_000_000;
    assert_eq!(
        api.post_batch(&batch(900, vec![foreign])).await.0,
        StatusCode::OK
    );

    let mut model: Vec<Key> = Vec::new();
    let mut messages = Vec::new();
    for &chat in &chats {
        let count = if chat == chats[0] { 120 } else { chat % 5 + 2 };
        for number in 1..=count {
            let sent_at_us = if chat == chats[0] {
                BASE_US + number as i64 * 1_000
            } else {
                // Rising with the number, as the engine stamps them.
                BASE_US + ((chat * 7_919) % 60_000 + number * (10_000 + chat * 37)) as i64
            };
            let sender = if (chat + number) % 6 == 0 {
                "bob"
            } else {
                "alice"
            };
            let mut m = message(app, chat, number, sender, &format!("c{chat} m{number}"));
            m.sent_at_us = sent_at_us;
            m.recipients = match (chat + number) % 5 {
                0 => Some(vec!["carol".into()]),
                1 => Some(vec!["bob".into(), "carol".into()]),
                _ => None,
            };
            let visible = sender == "bob"
                || m.recipients
                    .as_ref()
                    .is_none_or(|to| to.iter().any(|r| r == "bob"));
            if visible && bobs.contains(&chat) {
                model.push((sent_at_us, chat, number));
            }
            messages.push(m);
        }
    }
    // Inside a chat, times rise with numbers.
    for chat in &chats {
        let times: Vec<i64> = messages
            .iter()
            .filter(|m| m.chat == *chat)
            .map(|m| m.sent_at_us)
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "chat {chat}");
    }
    for (id, part) in messages.chunks(100).enumerate() {
        let (status, receipt) = api.post_batch(&batch(id as u64 + 1, part.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
    }
    model.sort_unstable_by(|a, b| b.cmp(a));

    assert_eq!(read_feed(&api, &token, "bob", 9).await, model);
    assert_eq!(read_feed(&api, &token, "bob", 1000).await, model);
    // Read twice, the second time through a warm cache where there is one.
    assert_eq!(read_feed(&api, &token, "bob", 9).await, model);

    let left = bobs[2];
    let path = format!("/v1/chats/{left}/subscribers/bob");
    let (status, body) = api.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let after_leaving: Vec<Key> = model.iter().copied().filter(|k| k.1 != left).collect();
    assert_eq!(read_feed(&api, &token, "bob", 9).await, after_leaving);

    // The other app sees only its own chat in bob's feed.
    let theirs_feed = read_feed(&api, &other_token, "bob", 9).await;
    assert_eq!(theirs_feed, vec![(BASE_US + 10_000_000, theirs, 1)]);
    // Someone in no chat has an empty feed.
    assert_eq!(read_feed(&api, &token, "nobody", 9).await, vec![]);
}

/// A feed cursor is checked like every other parameter.
pub async fn a_feed_refuses_bad_cursors_and_limits(backend: Backend) {
    let api = backend.start().await;
    let (token, _) = api.create_app("feed").await;
    for query in [
        "before=",
        "before=1.2",
        "before=1.0.3",
        "before=abc",
        "before=01.2.3",
        "before=1.2.3.4",
    ] {
        let response = api
            .get(&format!("/v1/users/bob/messages?{query}"), &token)
            .await;
        assert_error(&response, StatusCode::BAD_REQUEST, "invalid_cursor");
    }
    let response = api.get("/v1/users/bob/messages?limit=0", &token).await;
    assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit");
    let response = api.get("/v1/users/bob/messages?after=1", &token).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_query");
    let response = api.get("/v1/me/messages", &token).await;
    assert_error(&response, StatusCode::FORBIDDEN, "forbidden");
    let long = "u".repeat(200);
    let response = api.get(&format!("/v1/users/{long}/messages"), &token).await;
    assert_error(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_user_id",
    );
}

/// A chat whose newest 19,645 messages bob may not see (addressed to carol)
/// stops its scan at the bound, above its messages 350-354 that bob may
/// see; the other chat's messages below that bound must wait for a later
/// page, or those five would be skipped. Pages come back short (the first
/// one empty), and the feed is still exactly the model's list.
pub async fn a_scan_bound_shortens_pages_and_skips_nothing(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("feed").await;
    let (hidden, open) = (api.create_chat(&token).await, api.create_chat(&token).await);
    for chat in [hidden, open] {
        api.subscribe(&token, chat, "bob").await;
    }
    let mut model = Vec::new();
    let mut messages = Vec::new();
    for number in 1..=20_000u64 {
        let mut m = message(app, hidden, number, "alice", "hidden");
        m.sent_at_us = BASE_US + number as i64 * 10;
        if number <= 5 || (350..355).contains(&number) {
            model.push((m.sent_at_us, hidden, number));
        } else {
            m.recipients = Some(vec!["carol".into()]);
        }
        messages.push(m);
    }
    for number in 1..=40u64 {
        let mut m = message(app, open, number, "alice", "open");
        m.sent_at_us = BASE_US + number as i64 * 100;
        model.push((m.sent_at_us, open, number));
        messages.push(m);
    }
    for (id, part) in messages.chunks(1_000).enumerate() {
        let (status, receipt) = api.post_batch(&batch(id as u64 + 1, part.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
    }
    model.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(read_feed(&api, &token, "bob", 10).await, model);
}
