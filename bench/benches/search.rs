//! The embedded search index's hot paths (tantivy, through `SearchIndex`):
//! - indexing: batches of 1,024 messages of ~200 bytes of varied words
//!   (a vocabulary of 20,000, Zipf-like, and a few in other scripts),
//!   added and committed (throughput in messages per second; the target is
//!   100k/s in release builds);
//! - queries over 100,000 indexed messages in 100 chats: a one-chat infix
//!   search and an app-wide word search, one page of 20.
//!
//! `cargo bench -p chat-bench --bench search`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_persistence::search::embedded::{EmbeddedSearchConfig, TantivyIndex};
use chat_persistence::search::index::{ChatScope, SearchIndex, SearchRequest, SortOrder};
use chat_persistence::search::limits::SearchLimits;
use chat_persistence::search::query;
use chat_persistence::store::{LoggedBatch, LoggedMessage, Message};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const WORDS: &[&str] = &[
    "hello",
    "meeting",
    "tomorrow",
    "budget",
    "deploy",
    "release",
    "coffee",
    "lunch",
    "review",
    "schedule",
    "project",
    "customer",
    "ticket",
    "urgent",
    "thanks",
    "weekend",
    "report",
    "design",
    "server",
    "latency",
    "crème",
    "brûlée",
    "привет",
    "καλημέρα",
    "東京",
];
const BATCH_MESSAGES: usize = 1_024;
const BODY_BYTES: usize = 200;

/// Distinct pseudo-words beside `WORDS`: a realistic vocabulary, so the
/// index's term tables grow as they do with real text (with `WORDS`
/// alone they stay tiny and cached, and indexing measured twice as fast).
const VOCABULARY_WORDS: u64 = 20_000;
/// One word in this many is from `WORDS` (the queries' words).
const KNOWN_WORD_EVERY: u64 = 4;

fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Pseudo-word `rank`: consonant-vowel syllables, distinct per rank.
fn pseudo_word(mut rank: u64, text: &mut String) {
    const CONSONANTS: &[u8] = b"bcdfghklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let syllables = (CONSONANTS.len() * VOWELS.len()) as u64;
    loop {
        let syllable = (rank % syllables) as usize;
        text.push(CONSONANTS[syllable / VOWELS.len()] as char);
        text.push(VOWELS[syllable % VOWELS.len()] as char);
        rank /= syllables;
        if rank == 0 {
            break;
        }
    }
}

/// A body of about `BODY_BYTES` bytes: words of `WORDS`, and pseudo-words
/// with Zipf-like frequencies (log-uniform ranks), chosen by a small LCG.
fn body(seed: &mut u64) -> String {
    let mut text = String::with_capacity(BODY_BYTES + 16);
    while text.len() < BODY_BYTES {
        if !text.is_empty() {
            text.push(' ');
        }
        if next(seed).is_multiple_of(KNOWN_WORD_EVERY) {
            text.push_str(WORDS[next(seed) as usize % WORDS.len()]);
        } else {
            let unit = next(seed) as f64 / (1u64 << 31) as f64;
            let rank = (VOCABULARY_WORDS as f64).powf(unit) as u64 - 1;
            pseudo_word(rank.min(VOCABULARY_WORDS - 1), &mut text);
        }
    }
    text
}

fn logged_batch(position: u64, chats: u64, seed: &mut u64) -> LoggedBatch {
    let messages = (0..BATCH_MESSAGES as u64)
        .map(|i| LoggedMessage {
            app: 1,
            chat: 1 + i % chats,
            message: Message {
                number: position * BATCH_MESSAGES as u64 + i + 1,
                sender: format!("user{}", i % 50),
                recipients: None,
                body: body(seed),
                client_id: None,
                sent_at_us: 1_700_000_000_000_000 + (position * 1_000 + i) as i64,
            },
        })
        .collect();
    LoggedBatch {
        position,
        committed_at_us: 0,
        messages,
    }
}

fn open(dir: &std::path::Path) -> Arc<TantivyIndex> {
    Arc::new(
        TantivyIndex::open(&EmbeddedSearchConfig {
            dir: dir.to_path_buf(),
            writer_threads: 2,
            writer_heap_bytes: 256 * 1024 * 1024,
            limits: SearchLimits::default(),
        })
        .expect("open the index"),
    )
}

/// Batches per commit: 10 (a commit per 10k messages), and 20, what the
/// indexer's 200 ms commit interval gathers at 100k messages/s.
const BATCHES_PER_COMMIT: [usize; 2] = [10, 20];

fn indexing(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    let mut group = c.benchmark_group("search_index");
    let mut position = 0u64;
    let mut seed = 1u64;
    for batches_per_commit in BATCHES_PER_COMMIT {
        group.throughput(Throughput::Elements(
            (BATCH_MESSAGES * batches_per_commit) as u64,
        ));
        let name = format!("{batches_per_commit}_batches_of_1024x200b_then_commit");
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let batches: Vec<_> = (0..batches_per_commit)
                        .map(|_| {
                            position += 1;
                            logged_batch(position, 100, &mut seed)
                        })
                        .collect();
                    let started = Instant::now();
                    runtime.block_on(async {
                        index.add(batches).await.unwrap();
                        index.commit(position).await.unwrap();
                    });
                    elapsed += started.elapsed();
                }
                elapsed
            });
        });
    }
    group.finish();
}

fn queries(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    let mut seed = 7u64;
    runtime.block_on(async {
        for position in 1..=100 {
            index
                .add(vec![logged_batch(position, 100, &mut seed)])
                .await
                .unwrap();
        }
        index.commit(100).await.unwrap();
    });
    let limits = SearchLimits::default();
    let request = |q: &str, chats: ChatScope| SearchRequest {
        app: 1,
        chats,
        viewer: None,
        from: None,
        before: None,
        query: query::parse(q, &limits).unwrap(),
        sort: SortOrder::Relevance,
        after: None,
        limit: 20,
    };
    let mut group = c.benchmark_group("search_query_100k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_chat_infix", |b| {
        b.iter(|| {
            runtime
                .block_on(index.search(request("eeti", ChatScope::Some(vec![7]))))
                .unwrap()
        })
    });
    group.bench_function("app_wide_word", |b| {
        b.iter(|| {
            runtime
                .block_on(index.search(request("budget", ChatScope::All)))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, indexing, queries);
criterion_main!(benches);
