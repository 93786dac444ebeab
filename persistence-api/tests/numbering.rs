//! Chat numbering under concurrency: many creations at once still give
//! exactly 1..N, and the count matches.

mod common;

use common::TestApi;

const CONCURRENT_CREATIONS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_chat_creations_number_one_to_n() {
    let api = std::sync::Arc::new(TestApi::start().await);
    let (token, _) = api.create_app("busy").await;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT_CREATIONS {
        let (api, token) = (api.clone(), token.clone());
        tasks.push(tokio::spawn(async move { api.create_chat(&token).await }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=CONCURRENT_CREATIONS).collect::<Vec<_>>());
    assert_eq!(
        api.get("/v1/app", &token).await.1["chats_count"],
        CONCURRENT_CREATIONS
    );
    // And another app's numbering is its own.
    let (other, _) = api.create_app("quiet").await;
    assert_eq!(api.create_chat(&other).await, 1);
}
