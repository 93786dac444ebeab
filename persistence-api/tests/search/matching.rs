//! What a query finds, and the highlights of each hit.

use serde_json::json;

use crate::world::{Backend, World, bodies, enc, on_both_backends};

/// One chat of messages, indexed; returns the world and the chat.
async fn corpus(backend: Backend, bodies: &[&str]) -> (World, u64) {
    let mut world = World::start(backend).await;
    let chat = world.chat_with(&["ann"]).await;
    world.say(chat, 0, "ann", bodies).await;
    world.wait_indexed().await;
    (world, chat)
}

async fn found(world: &World, chat: u64, q: &str) -> Vec<String> {
    let path = format!("/v1/chats/{chat}/messages/search?q={}&sort=recent", enc(q));
    let mut found = bodies(&world.hits(&path, &world.token).await);
    found.sort();
    found
}

async fn infix_prefix_and_whole_words(backend: Backend) {
    let (world, chat) = corpus(backend, &["hello there", "shell game", "help me", "yellow"]).await;
    assert_eq!(
        found(&world, chat, "ell").await,
        ["hello there", "shell game", "yellow"]
    );
    assert_eq!(
        found(&world, chat, "hel").await,
        ["hello there", "help me", "shell game"]
    );
    assert_eq!(found(&world, chat, "hello").await, ["hello there"]);
    // A short term matches as a word prefix only.
    assert_eq!(found(&world, chat, "he").await, ["hello there", "help me"]);
    // Every term must match.
    assert_eq!(found(&world, chat, "ell gam").await, ["shell game"]);
    assert!(found(&world, chat, "xyz").await.is_empty());
}

async fn phrases_are_consecutive_whole_words(backend: Backend) {
    let (world, chat) = corpus(
        backend,
        &[
            "the quick brown fox",
            "brown quick the",
            "quick browny fox",
            "a well-known fact",
        ],
    )
    .await;
    assert_eq!(
        found(&world, chat, "\"quick brown\"").await,
        ["the quick brown fox"]
    );
    assert_eq!(
        found(&world, chat, "\"quick brown\" fox").await,
        ["the quick brown fox"]
    );
    // A bare term of several words is a phrase too.
    assert_eq!(
        found(&world, chat, "well-known").await,
        ["a well-known fact"]
    );
    assert!(found(&world, chat, "\"brown the\"").await.is_empty());
}

async fn case_and_diacritics_fold(backend: Backend) {
    let (world, chat) = corpus(
        backend,
        &["Crème BRÛLÉE tonight", "naïve Café", "plain text"],
    )
    .await;
    assert_eq!(found(&world, chat, "creme").await, ["Crème BRÛLÉE tonight"]);
    assert_eq!(
        found(&world, chat, "BRULEE").await,
        ["Crème BRÛLÉE tonight"]
    );
    assert_eq!(found(&world, chat, "Rûl").await, ["Crème BRÛLÉE tonight"]);
    assert_eq!(found(&world, chat, "NAIVE cafe").await, ["naïve Café"]);
    // Decomposed input (e + combining acute) finds the composed body.
    assert_eq!(found(&world, chat, "cafe\u{301}").await, ["naïve Café"]);
}

async fn greek_cyrillic_and_cjk(backend: Backend) {
    let (world, chat) = corpus(
        backend,
        &[
            "Καλημέρα κόσμε",
            "Привет, Ёлка!",
            "我在東京工作",
            "東の京都",
            "ΟΔΟΣ",
        ],
    )
    .await;
    assert_eq!(found(&world, chat, "ΚΟΣΜΕ").await, ["Καλημέρα κόσμε"]);
    assert_eq!(found(&world, chat, "λημ").await, ["Καλημέρα κόσμε"]);
    // Final sigma folds to sigma.
    assert_eq!(found(&world, chat, "οδος").await, ["ΟΔΟΣ"]);
    assert_eq!(found(&world, chat, "привет").await, ["Привет, Ёлка!"]);
    assert_eq!(found(&world, chat, "елк").await, ["Привет, Ёлка!"]);
    // CJK: per character, and a run of characters is a phrase.
    assert_eq!(found(&world, chat, "東京").await, ["我在東京工作"]);
    assert_eq!(
        found(&world, chat, "京").await,
        ["我在東京工作", "東の京都"]
    );
}

async fn hits_carry_their_message_and_highlights(backend: Backend) {
    let (world, chat) = corpus(backend, &["Say Héllo to the World, hello!"]).await;
    let path = format!(
        "/v1/chats/{chat}/messages/search?q={}",
        enc("hello \"the world\"")
    );
    let page = world.hits(&path, &world.token).await;
    let hit = &page["hits"][0];
    assert_eq!(hit["chat"], chat);
    assert_eq!(hit["number"], 1);
    assert_eq!(hit["from"], "ann");
    assert_eq!(hit["body"], "Say Héllo to the World, hello!");
    assert!(hit["sent_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(hit["match"], "word");
    // Offsets in Unicode scalar values of the body: "Héllo", "the World", "hello".
    assert_eq!(
        hit["highlights"],
        json!([
            {"start": 4, "end": 9},
            {"start": 13, "end": 22},
            {"start": 24, "end": 29},
        ])
    );
    let path = format!("/v1/chats/{chat}/messages/search?q=orl");
    let page = world.hits(&path, &world.token).await;
    assert_eq!(page["hits"][0]["match"], "infix");
    assert_eq!(
        page["hits"][0]["highlights"],
        json!([{"start": 18, "end": 21}])
    );
}

on_both_backends!(
    infix_prefix_and_whole_words,
    phrases_are_consecutive_whole_words,
    case_and_diacritics_fold,
    greek_cyrillic_and_cjk,
    hits_carry_their_message_and_highlights,
);
