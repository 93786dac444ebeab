//! The ingest benchmark: durable messages per second through the API's
//! batch endpoint (`POST /internal/v1/batches`, rkyv, as the engine sends
//! them), for batches of 64 and 1,024 messages, on each backend. Ignored by
//! default; run it with
//!
//! ```text
//! scripts/cassandra.sh start
//! CHAT_TEST_SCYLLA=127.0.0.1:9042 cargo test -p chat-persistence --release \
//!     --test conformance ingest -- --ignored --nocapture
//! ```
//!
//! Writers: `CHATS` chats at once, each with one batch in flight at a time
//! (the engine's rule), over one loopback HTTP connection pool, 100-byte
//! bodies. On the 2-core development machine (release build, API, client
//! and a 1 GiB Cassandra 5.0.9 node sharing the cores), messages/second:
//! embedded 52,000 (64) and 185,000 (1,024); Cassandra 10,000 to 14,000 (64)
//! and 37,000 to 41,000 (1,024). The embedded store fsyncs every batch;
//! the test node's commit log syncs every 10 s (`scripts/cassandra/`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::Backend;
use crate::common::{TestApi, batch, message};

const CHATS: u64 = 4;
/// Stop sending new batches after this long, per measurement.
const BUDGET: Duration = Duration::from_secs(20);

async fn measure(backend: &Backend, label: &str, size: u64, batches_per_chat: u64) {
    let api: Arc<TestApi> = Arc::new(backend.start().await);
    let (token, app) = api.create_app("ingest").await;
    for _ in 0..CHATS {
        api.create_chat(&token).await;
    }
    let body = "x".repeat(100);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chat in 1..=CHATS {
        let (api, body) = (api.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            for b in 0..batches_per_chat {
                if started.elapsed() > BUDGET {
                    break;
                }
                let messages = (1..=size)
                    .map(|i| message(app, chat, b * size + i, "bench", &body))
                    .collect();
                let (status, receipt) = api.post_batch(&batch(b, messages)).await;
                assert_eq!(status, StatusCode::OK, "{receipt}");
                sent += size;
            }
            sent
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "ingest {label:<9} batch {size:>5}: {total:>7} messages in {:>6.2} s = {:>8.0} messages/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn ingest_messages_per_second() {
    let embedded = Backend::embedded();
    measure(&embedded, "embedded", 64, 250).await;
    measure(&embedded, "embedded", 1024, 25).await;
    if let Some(scylla) = Backend::scylla("ingest").await {
        measure(&scylla, "cassandra", 64, 250).await;
        measure(&scylla, "cassandra", 1024, 25).await;
    }
}
