//! The indexer takes the newest batch commits from the store's memory of
//! them and reads older ones back from the store: both give the same
//! index, and `/metrics` says which served it.

use crate::world::{Backend, World, bodies, enc};

const MEMORY: &str = "chat_api_search_log_entries_read_total{source=\"memory\"}";
const STORE: &str = "chat_api_search_log_entries_read_total{source=\"store\"}";

/// Three batch commits into a fresh API with `memory_messages_max`; the
/// bodies a search finds and the entries read from memory and the store.
async fn index_three_commits(memory_messages_max: usize) -> (Vec<String>, f64, f64) {
    let mut world = World::start_configured(Backend::Embedded, |config| {
        config.search.log_memory_messages_max = memory_messages_max;
    })
    .await;
    let chat = world.chat_with(&["ann"]).await;
    let mut last = 0;
    for bodies in [
        ["hello one", "hello two"],
        ["shell three", "x"],
        ["yellow", "y"],
    ] {
        last = world.say(chat, last, "ann", &bodies).await;
    }
    world.wait_indexed().await;
    let path = format!(
        "/v1/chats/{chat}/messages/search?q={}&sort=recent",
        enc("ell")
    );
    let found = bodies(&world.hits(&path, &world.token).await);
    let memory = world.api.metric(MEMORY).await.expect("the memory counter");
    let store = world.api.metric(STORE).await.expect("the store counter");
    (found, memory, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_commits_are_indexed_from_memory_and_the_rest_from_the_store() {
    let in_memory = index_three_commits(1_000).await;
    let read_back = index_three_commits(0).await;
    let expected = ["yellow", "shell three", "hello two", "hello one"];
    assert_eq!(in_memory.0, expected);
    assert_eq!(read_back.0, expected);
    assert_eq!((in_memory.1, in_memory.2), (3.0, 0.0), "memory, store");
    assert_eq!((read_back.1, read_back.2), (0.0, 3.0), "memory, store");
}
