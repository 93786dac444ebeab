//! Read positions and unread counts: positions only move forward, survive a
//! restart and a membership's end, and each unread count equals a reference
//! count over the chat's messages (addressed messages and a member's own
//! do not count).

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Backend;
use crate::common::{OPERATOR_KEY, TestApi, assert_error, batch, message};

const MEMBERS: [&str; 3] = ["alice", "bob", "carol"];
const LAST: u64 = 40;

/// Message `n`: from alice, bob or carol in turn; every fifth to bob alone,
/// every seventh otherwise to carol alone.
fn sender(n: u64) -> &'static str {
    MEMBERS[(n % 3) as usize]
}

fn recipients(n: u64) -> Option<Vec<String>> {
    if n.is_multiple_of(5) {
        Some(vec!["bob".into()])
    } else if n.is_multiple_of(7) {
        Some(vec!["carol".into()])
    } else {
        None
    }
}

/// The reference: messages after `position` that `user` may see, sent by
/// someone else.
fn expected_unread(user: &str, position: u64) -> u64 {
    (position + 1..=LAST)
        .filter(|&n| {
            sender(n) != user && recipients(n).is_none_or(|to| to.iter().any(|r| r == user))
        })
        .count() as u64
}

fn read_path(app: u64, chat: u64, user: &str) -> String {
    format!("/internal/v1/apps/{app}/chats/{chat}/reads/{user}")
}

async fn mark(api: &TestApi, app: u64, chat: u64, user: &str, number: u64) -> (StatusCode, Value) {
    let body = json!({ "number": number });
    api.call(
        Method::PUT,
        &read_path(app, chat, user),
        Some(OPERATOR_KEY),
        Some(body),
    )
    .await
}

async fn show(api: &TestApi, app: u64, chat: u64, user: &str) -> (StatusCode, Value) {
    api.get(&read_path(app, chat, user), OPERATOR_KEY).await
}

/// Asserts an answer of `PUT`/`GET …/reads/{user}` against the reference.
fn assert_read(answer: &(StatusCode, Value), chat: u64, user: &str, number: u64) {
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(
        answer.1,
        json!({
            "chat": chat,
            "user": user,
            "number": number,
            "messages_count": LAST,
            "unread_count": expected_unread(user, number),
            "unread_capped": false,
        }),
        "{user} at {number}"
    );
}

/// Every member's position as `GET /v1/chats/{n}/reads` pages them.
async fn all_positions(api: &TestApi, token: &str, chat: u64) -> Vec<(String, u64)> {
    let mut positions = Vec::new();
    let mut after = String::new();
    loop {
        let query = match after.as_str() {
            "" => "limit=2".to_string(),
            after => format!("limit=2&after={after}"),
        };
        let (status, page) = api
            .get(&format!("/v1/chats/{chat}/reads?{query}"), token)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for read in page["reads"].as_array().unwrap() {
            positions.push((
                read["user"].as_str().unwrap().to_string(),
                read["number"].as_u64().unwrap(),
            ));
        }
        if page["has_more"] != true {
            return positions;
        }
        after = positions.last().unwrap().0.clone();
    }
}

fn positions(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected
        .iter()
        .map(|(user, number)| (user.to_string(), *number))
        .collect()
}

pub async fn read_positions_move_forward_and_count_what_is_left(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("reads").await;
    let chat = api.create_chat(&token).await;
    for user in MEMBERS {
        api.subscribe(&token, chat, user).await;
    }
    let messages: Vec<_> = (1..=LAST)
        .map(|n| {
            let mut m = message(app, chat, n, sender(n), &format!("m{n}"));
            m.recipients = recipients(n);
            m
        })
        .collect();
    for (batch_id, part) in [(1, &messages[..20]), (2, &messages[20..])] {
        let (status, receipt) = api.post_batch(&batch(batch_id, part.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
    }

    for user in MEMBERS {
        assert_read(&show(&api, app, chat, user).await, chat, user, 0);
    }
    assert_read(&mark(&api, app, chat, "alice", 10).await, chat, "alice", 10);
    // Backwards and sideways are no-ops that answer the position in force.
    assert_read(&mark(&api, app, chat, "alice", 5).await, chat, "alice", 10);
    assert_read(&mark(&api, app, chat, "alice", 0).await, chat, "alice", 10);
    assert_read(&mark(&api, app, chat, "alice", 10).await, chat, "alice", 10);
    assert_read(&mark(&api, app, chat, "bob", LAST).await, chat, "bob", LAST);
    assert_read(&mark(&api, app, chat, "carol", 33).await, chat, "carol", 33);
    assert_eq!(expected_unread("bob", LAST), 0);

    // Refused, and nothing moves.
    let beyond = mark(&api, app, chat, "alice", LAST + 1).await;
    assert_error(
        &beyond,
        StatusCode::UNPROCESSABLE_ENTITY,
        "read_beyond_last",
    );
    let stranger = mark(&api, app, chat, "dave", 1).await;
    assert_error(&stranger, StatusCode::FORBIDDEN, "not_subscribed");
    let stranger = show(&api, app, chat, "dave").await;
    assert_error(&stranger, StatusCode::FORBIDDEN, "not_subscribed");
    let missing = mark(&api, app, chat + 1, "alice", 1).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "chat_not_found");
    // Another app's chat of the same number is another chat.
    let (other_token, other_app) = api.create_app("other").await;
    assert_eq!(api.create_chat(&other_token).await, chat);
    let foreign = mark(&api, other_app, chat, "alice", 1).await;
    assert_error(&foreign, StatusCode::FORBIDDEN, "not_subscribed");
    api.subscribe(&other_token, chat, "alice").await;
    assert_eq!(
        all_positions(&api, &other_token, chat).await,
        positions(&[("alice", 0)])
    );

    let expected = positions(&[("alice", 10), ("bob", LAST), ("carol", 33)]);
    assert_eq!(all_positions(&api, &token, chat).await, expected);

    // A position outlives the membership: listed again once alice rejoins.
    let leave = format!("/v1/chats/{chat}/subscribers/alice");
    let (status, body) = api.call(Method::DELETE, &leave, Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        all_positions(&api, &token, chat).await,
        positions(&[("bob", LAST), ("carol", 33)])
    );
    let gone = show(&api, app, chat, "alice").await;
    assert_error(&gone, StatusCode::FORBIDDEN, "not_subscribed");
    api.subscribe(&token, chat, "alice").await;
    assert_read(&show(&api, app, chat, "alice").await, chat, "alice", 10);

    // Concurrent moves of one position: the highest wins, whatever the order.
    let marks = [36, 34, 39, 35, 38, 34, 37, 39, 36, 35];
    let answers = join_all(
        marks
            .iter()
            .map(|&number| mark(&api, app, chat, "carol", number)),
    )
    .await;
    for (answer, number) in answers.iter().zip(marks) {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
        let in_force = answer.1["number"].as_u64().unwrap();
        assert!((number..=39).contains(&in_force), "{}", answer.1);
    }
    assert_read(&show(&api, app, chat, "carol").await, chat, "carol", 39);

    // A sync's membership check answers each member's read state up to
    // what their client has seen (the engine counts what it sends past it).
    let checks = json!({"checks": [
        {"user": "alice", "chats": [chat, chat + 1], "seen": [25, 3]},
        {"user": "bob", "chats": [chat], "seen": [7]},
        {"user": "carol", "chats": [chat], "seen": [LAST]},
        {"user": "dave", "chats": [chat], "seen": [LAST]},
    ]});
    let path = format!("/internal/v1/apps/{app}/memberships");
    let (status, answer) = api
        .call(Method::POST, &path, Some(OPERATOR_KEY), Some(checks))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let through = |user: &str, number: u64, seen: u64| {
        let unread_through_seen =
            expected_unread(user, number) - expected_unread(user, seen.max(number));
        json!({"number": number, "unread_through_seen": unread_through_seen, "capped": false})
    };
    assert_eq!(
        answer,
        json!({
            "members": [[chat], [chat], [chat], []],
            "reads": [
                [through("alice", 10, 25)],
                [through("bob", LAST, 7)],
                [through("carol", 39, LAST)],
                [],
            ],
        })
    );

    // Durable: the next process finds every position.
    api.stop().await;
    let api = backend.start().await;
    let expected = positions(&[("alice", 10), ("bob", LAST), ("carol", 39)]);
    assert_eq!(all_positions(&api, &token, chat).await, expected);
    for (user, number) in &expected {
        assert_read(&show(&api, app, chat, user).await, chat, user, *number);
    }
    api.stop().await;
}

/// A window wider than the API reads for one count: the count covers its
/// newest `UNREAD_WINDOW_MAX` numbers and says so; at the bound it is
/// exact again.
pub async fn an_unread_count_past_the_window_is_capped(backend: Backend) {
    use chat_persistence::unread::UNREAD_WINDOW_MAX;
    let total = UNREAD_WINDOW_MAX + 20;
    let api = backend.start().await;
    let (token, app) = api.create_app("wide").await;
    let chat = api.create_chat(&token).await;
    api.subscribe(&token, chat, "bob").await;
    let to_carol = |n: u64| n.is_multiple_of(10);
    let messages: Vec<_> = (1..=total)
        .map(|n| {
            let mut m = message(app, chat, n, "alice", "w");
            if to_carol(n) {
                m.recipients = Some(vec!["carol".into()]);
            }
            m
        })
        .collect();
    for (index, part) in messages.chunks(4_000).enumerate() {
        let (status, receipt) = api
            .post_batch(&batch(index as u64 + 1, part.to_vec()))
            .await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
    }
    let visible = |from: u64| (from + 1..=total).filter(|&n| !to_carol(n)).count() as u64;
    let (status, read) = show(&api, app, chat, "bob").await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(
        (&read["unread_count"], &read["unread_capped"]),
        (&json!(visible(total - UNREAD_WINDOW_MAX)), &json!(true)),
        "{read}"
    );
    let (status, read) = mark(&api, app, chat, "bob", total - UNREAD_WINDOW_MAX).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(
        (&read["unread_count"], &read["unread_capped"]),
        (&json!(visible(total - UNREAD_WINDOW_MAX)), &json!(false)),
        "{read}"
    );
    api.stop().await;
}
