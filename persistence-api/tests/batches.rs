//! The batch endpoint's contract: a replay is a no-op with the same answer;
//! a conflicting batch is a 409 and writes nothing.

mod common;

use common::{TestApi, assert_error, batch, implicit_chat, message};
use reqwest::StatusCode;

#[tokio::test]
async fn replaying_a_batch_changes_nothing_and_answers_the_same() {
    let api = TestApi::start().await;
    let (token, app) = api.create_app("replay").await;
    let chat = api.create_chat(&token).await;
    let mut first = batch(
        7,
        (1..=64)
            .map(|n| message(app, chat, n, "alice", &format!("m{n}")))
            .collect(),
    );
    first.chats.push(implicit_chat(app, 9, &["zoe"]));
    first.messages.push(message(app, 9, 1, "zoe", "new chat"));

    let answer = api.post_batch(&first).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let after_first = api.snapshot(&token).await;
    for _ in 0..3 {
        assert_eq!(api.post_batch(&first).await, answer);
        assert_eq!(api.snapshot(&token).await, after_first);
    }
    // A replay of a prefix (a retry of an earlier, smaller batch) is a no-op too.
    let prefix = batch(6, first.messages[..10].to_vec());
    assert_eq!(api.post_batch(&prefix).await.0, StatusCode::OK);
    assert_eq!(api.snapshot(&token).await, after_first);
}

#[tokio::test]
async fn conflicting_batches_are_refused_whole() {
    let api = TestApi::start().await;
    let (token, app) = api.create_app("conflict").await;
    let chat = api.create_chat(&token).await;
    let other_chat = api.create_chat(&token).await;
    let stored = batch(
        1,
        (1..=5)
            .map(|n| message(app, chat, n, "alice", "original"))
            .collect(),
    );
    assert_eq!(api.post_batch(&stored).await.0, StatusCode::OK);
    let before = api.snapshot(&token).await;

    // Each refused batch also carries a valid message for another chat, which must not land.
    let valid_elsewhere = || message(app, other_chat, 1, "bob", "innocent");
    let cases = vec![
        (
            "a number reused with other content",
            vec![valid_elsewhere(), message(app, chat, 3, "alice", "changed")],
        ),
        (
            "a gap after the last number",
            vec![valid_elsewhere(), message(app, chat, 7, "alice", "gap")],
        ),
        (
            "a chat that does not exist",
            vec![valid_elsewhere(), message(app, 99, 1, "alice", "nowhere")],
        ),
    ];
    for (what, messages) in cases {
        let answer = api.post_batch(&batch(2, messages)).await;
        assert_error(&answer, StatusCode::CONFLICT, "batch_conflict");
        assert_eq!(
            api.snapshot(&token).await,
            before,
            "{what} changed the state"
        );
    }

    let unknown_app = batch(3, vec![message(app + 100, 1, 1, "alice", "x")]);
    assert_error(
        &api.post_batch(&unknown_app).await,
        StatusCode::NOT_FOUND,
        "app_not_found",
    );
    assert_eq!(api.snapshot(&token).await, before);
}
