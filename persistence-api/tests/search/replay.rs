//! The OpenSearch backend's replay rule, driven through `SearchIndex`
//! itself: documents added but not committed when the API dies stay in
//! OpenSearch (a bulk request cannot be taken back), and the restarted
//! indexer sends them again from the recorded position; their ids make
//! that an overwrite. Deterministic, unlike a kill at a random moment.

use chat_persistence::search::SearchIndex;
use chat_persistence::search::index::{ChatScope, SearchRequest, SortOrder};
use chat_persistence::search::limits::SearchLimits;
use chat_persistence::search::opensearch::OpenSearchIndex;
use chat_persistence::search::query::parse;
use chat_persistence::store::{LoggedBatch, LoggedMessage, Message};

use crate::world::{RemoveOnDrop, opensearch_config, opensearch_hosts_or_skip};

fn logged_batch(position: u64, numbers: std::ops::RangeInclusive<u64>) -> LoggedBatch {
    LoggedBatch {
        position,
        committed_at_us: 0,
        messages: numbers
            .map(|number| LoggedMessage {
                app: 7,
                chat: 1,
                message: Message {
                    number,
                    sender: "ann".into(),
                    recipients: None,
                    body: format!("replayed m{number}"),
                    client_id: None,
                    sent_at_us: 1,
                },
            })
            .collect(),
    }
}

fn everything(limits: &SearchLimits) -> SearchRequest {
    SearchRequest {
        app: 7,
        chats: ChatScope::All,
        viewer: None,
        from: None,
        before: None,
        query: parse("replayed", limits).unwrap(),
        sort: SortOrder::Recent,
        after: None,
        limit: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_uncommitted_adds_overwrites_them() {
    let Some(hosts) = opensearch_hosts_or_skip("the OpenSearch replay test") else {
        return;
    };
    let config = opensearch_config(&hosts);
    let _cleanup = RemoveOnDrop(Some(config.clone()));
    let limits = SearchLimits::default();
    let first = OpenSearchIndex::new(&config, limits.clone()).unwrap();
    first.add(vec![logged_batch(1, 1..=3)]).await.unwrap();
    first.commit(1).await.unwrap();
    // Added, not committed: the process dies here.
    first.add(vec![logged_batch(2, 4..=6)]).await.unwrap();
    drop(first);

    let second = OpenSearchIndex::new(&config, limits.clone()).unwrap();
    assert_eq!(
        second.rollback().await.unwrap(),
        1,
        "resume after position 1"
    );
    second.add(vec![logged_batch(2, 4..=6)]).await.unwrap();
    second.commit(2).await.unwrap();
    assert_eq!(second.indexed_position().await.unwrap(), 2);
    let page = second.search(everything(&limits)).await.unwrap();
    let numbers: Vec<u64> = page.hits.iter().map(|hit| hit.number).collect();
    assert_eq!(
        numbers,
        [6, 5, 4, 3, 2, 1],
        "each message once, newest first"
    );

    // A rebuild's start: nothing left, the position recorded.
    second.clear(9).await.unwrap();
    assert_eq!(second.indexed_position().await.unwrap(), 9);
    assert!(
        second
            .search(everything(&limits))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
}
