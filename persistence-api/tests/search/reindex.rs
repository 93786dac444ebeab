//! Rebuilding the index from the store: history written while search was
//! off becomes searchable, each message once, however often it is rebuilt;
//! a rebuild refuses to run beside a serving API.

use chat_persistence::limits::Limits;
use chat_persistence::search::reindex::{Reindexed, reindex};
use chat_persistence::search::{SearchConfig, SearchMode};
use chat_persistence::store::StoreLocation;
use reqwest::StatusCode;

use crate::common::{TestApi, batch, message};
use crate::world::{Backend, keys, on_both_backends, wait_indexed};

async fn a_rebuild_indexes_history_written_with_search_off_once(backend: Backend) {
    let _cleanup = backend.cleanup();
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::Embedded(dir.path().to_path_buf());
    let off = |config: &mut chat_persistence::ApiConfig| config.search.mode = SearchMode::Off;
    let api = TestApi::start_configured(&location, Limits::default(), None, off).await;
    let (token, app) = api.create_app("Old").await;
    let one = api.create_chat(&token).await;
    let two = api.create_chat(&token).await;
    let _empty = api.create_chat(&token).await;
    // More than one log entry's worth in chat one.
    let messages: Vec<_> = (1..=1_500)
        .map(|n| message(app, one, n, "w", &format!("archive m{n}")))
        .collect();
    for (i, chunk) in messages.chunks(500).enumerate() {
        let (status, body) = api.post_batch(&batch(i as u64 + 1, chunk.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = api
        .post_batch(&batch(9, vec![message(app, two, 1, "w", "archive other")]))
        .await;
    assert_eq!(status, StatusCode::OK);
    api.stop().await;

    let config = SearchConfig {
        mode: backend.mode(),
        ..SearchConfig::default()
    };
    let mut reported = Vec::new();
    let done = reindex(dir.path(), &config, |indexed, total| {
        reported.push((indexed, total))
    })
    .await
    .unwrap();
    assert_eq!(
        done,
        Reindexed {
            messages: 1_501,
            chats: 3
        }
    );
    assert_eq!(reported.last(), Some(&(1_501, 1_501)));
    // Twice: the second rebuild replaces the first.
    reindex(dir.path(), &config, |_, _| {}).await.unwrap();

    let mode = backend.mode();
    let api = TestApi::start_configured(&location, Limits::default(), None, |config| {
        config.search.mode = mode;
    })
    .await;
    // Live indexing goes on after the rebuilt history.
    let (status, _) = api
        .post_batch(&batch(10, vec![message(app, two, 2, "w", "archive new")]))
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_indexed(&api).await;
    let mut found = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/messages/search?q=archive&limit=100&sort=recent{cursor}");
        let (status, page) = api.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        found.extend(keys(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(found.len(), 1_502);
    assert_eq!(found[0], (two, 2), "the live message is the newest");
    found.sort_unstable();
    found.dedup();
    assert_eq!(found.len(), 1_502, "no message twice");
    let (_, page) = api.get("/v1/messages/search?q=%22m1234%22", &token).await;
    assert_eq!(keys(&page), [(one, 1_234)]);

    // Beside a serving API, a rebuild refuses: the embedded index's writer
    // lock, or (OpenSearch has none) the store's lock on its data dir.
    let refused = match reindex(dir.path(), &config, |_, _| {}).await {
        Ok(done) => panic!("a rebuild ran beside a serving API: {done:?}"),
        Err(error) => error.to_string(),
    };
    let expected = match backend {
        Backend::Embedded => "search index",
        Backend::OpenSearch(_) => "store",
    };
    assert!(refused.contains(expected), "{refused}");
    api.stop().await;
}

on_both_backends!(a_rebuild_indexes_history_written_with_search_off_once);
