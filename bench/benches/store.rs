//! The embedded store's hot paths, with the durability the API promises
//! (every commit fsyncs its journal before it returns):
//! - commit of batches of 1, 64 and 1024 messages of 200 bytes (throughput
//!   in messages per second);
//! - a history read of 100 messages.

use std::time::{Duration, Instant};

use chat_bench::{batch, store_with_chat};
use chat_persistence::store::{HistoryQuery, Store};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const BODY_BYTES: usize = 200;

fn commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("store_commit");
    for size in [1u64, 64, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let (store, app, chat) = runtime.block_on(store_with_chat(dir.path()));
        let mut next = 1;
        group.throughput(Throughput::Elements(size));
        group.bench_with_input(
            BenchmarkId::new("messages_200b", size),
            &size,
            |b, &size| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let batch = batch(app, chat, next, size, BODY_BYTES);
                        next += size;
                        let started = Instant::now();
                        runtime.block_on(store.commit_batch(batch)).unwrap();
                        elapsed += started.elapsed();
                    }
                    elapsed
                });
            },
        );
    }
    group.finish();
}

fn history(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, app, chat) = runtime.block_on(store_with_chat(dir.path()));
    const STORED: u64 = 10_000;
    for first in (1..=STORED).step_by(1000) {
        runtime
            .block_on(store.commit_batch(batch(app, chat, first, 1000, BODY_BYTES)))
            .unwrap();
    }
    let mut group = c.benchmark_group("store_history");
    group.throughput(Throughput::Elements(100));
    group.bench_function("read_100_of_10000", |b| {
        let mut after = 0;
        b.iter(|| {
            let query = HistoryQuery {
                after: Some(after),
                before: None,
                limit: 100,
                viewer: None,
            };
            let page = runtime.block_on(store.messages(app, chat, query)).unwrap();
            assert_eq!(page.items.len(), 100);
            after = (after + 100) % (STORED - 100);
        });
    });
    group.finish();
}

criterion_group!(benches, commit, history);
criterion_main!(benches);
