//! `reads`: the read side of the persistence API under concurrent readers,
//! the cost a Redis read cache is there to cut. Provisions C chats of M
//! messages each (published over the engine's HTTP publish, so they are
//! durable and numbered as in production) with one reader in every chat,
//! then measures two phases one after the other with N requests in flight:
//! the newest history page of a chat (`GET /v1/chats/{n}/messages?limit=`,
//! chats round robin) and the reader's feed across all the chats
//! (`GET /v1/users/{user}/messages?limit=`). Every answer is checked (200,
//! a full page in the right order).

use anyhow::ensure;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::closed_loop;
use crate::cli::ReadsArgs;
use crate::provision::Provisioner;
use crate::report;

const READER: &str = "loadgen-reader";
const PUBLISHER: &str = "loadgen-publisher";

#[derive(Deserialize)]
struct Page {
    messages: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    number: u64,
    #[serde(default)]
    chat: Option<u64>,
}

pub async fn run(args: ReadsArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    super::check_common(common)?;
    ensure!(args.chats >= 1, "--chats must be at least 1");
    ensure!(args.messages >= 1, "--messages must be at least 1");
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    ensure!(
        (1..=1_000).contains(&args.page) && (1..=1_000).contains(&args.feed),
        "--page and --feed must be from 1 to 1000"
    );
    let prov = Provisioner::new(common, "loadgen reads").await?;
    let chats = prov.create_chats(args.chats).await?;
    let pairs: Vec<(u64, String)> = chats.iter().map(|&c| (c, READER.to_string())).collect();
    prov.subscribe(&pairs).await?;
    seed(&prov, &chats, &args).await?;

    let page_full = args.page.min(args.messages);
    let feed_full = args.feed.min(args.messages * args.chats);
    let history_urls: Vec<String> = chats
        .iter()
        .map(|chat| prov.api_url(&format!("/v1/chats/{chat}/messages?limit={}", args.page)))
        .collect();
    let feed_url = prov.api_url(&format!("/v1/users/{READER}/messages?limit={}", args.feed));
    // One pass unmeasured: the first read of each chat fills a cache.
    for url in history_urls.iter().chain(std::iter::once(&feed_url)) {
        let _ = read(&prov, url).await;
    }
    let prov = &prov;
    let history = closed_loop::run("history", args.concurrency, args.duration, |i| {
        let url = &history_urls[i % history_urls.len()];
        async move {
            read(prov, url)
                .await
                .and_then(|page| check_history(&page, page_full))
        }
    })
    .await;
    let feed = closed_loop::run("feed", args.concurrency, args.duration, |_| async {
        read(prov, &feed_url)
            .await
            .and_then(|page| check_feed(&page, feed_full))
    })
    .await;

    let api_metrics = prov.api_metrics().await.unwrap_or_default();
    let cache_line = cache_summary(&api_metrics);
    println!(
        "reads: {} chats x {} messages, {} in flight, pages of {} and feeds of {}",
        args.chats, args.messages, args.concurrency, args.page, args.feed
    );
    let mut ok = true;
    for phase in [&history, &feed] {
        ok &= phase.print();
    }
    println!("   cache: {cache_line}");
    if let Some(path) = &common.json {
        let out = json!({
            "scenario": "reads",
            "chats": args.chats,
            "messages": args.messages,
            "concurrency": args.concurrency,
            "history": history.to_json(),
            "feed": feed.to_json(),
            "cache": cache_line,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(ok)
}

/// Publishes every chat's messages, bounded concurrency, behind a bar.
async fn seed(prov: &Provisioner, chats: &[u64], args: &ReadsArgs) -> anyhow::Result<()> {
    let total = args.chats * args.messages;
    let bar = report::counter_bar(total as u64, "messages");
    let padding = "x".repeat(args.body_bytes.saturating_sub(12));
    let urls: Vec<String> = chats.iter().map(|&chat| prov.publish_url(chat)).collect();
    let results: Vec<Result<u64, String>> = futures_util::stream::iter(0..total)
        .map(|i| {
            let (bar, url, padding) = (&bar, &urls[i % urls.len()], &padding);
            async move {
                let body = format!("m{i} {padding}");
                let number = prov.publish(url, &body, PUBLISHER).await;
                bar.inc(1);
                number
            }
        })
        .buffer_unordered(args.concurrency.max(64))
        .collect()
        .await;
    bar.finish_and_clear();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    ensure!(
        failed.is_empty(),
        "{} publishes failed, the first: {}",
        failed.len(),
        failed[0]
    );
    Ok(())
}

async fn read(prov: &Provisioner, url: &str) -> Result<Page, String> {
    prov.get_json(url).await
}

fn check_history(page: &Page, full: usize) -> Result<(), String> {
    let numbers: Vec<u64> = page.messages.iter().map(|m| m.number).collect();
    if numbers.len() != full || !numbers.windows(2).all(|w| w[0] + 1 == w[1]) {
        return Err(format!(
            "a history page of {} messages, not {full} in a row",
            numbers.len()
        ));
    }
    Ok(())
}

fn check_feed(page: &Page, full: usize) -> Result<(), String> {
    if page.messages.len() != full || page.messages.iter().any(|m| m.chat.is_none()) {
        return Err(format!(
            "a feed page of {} messages, not {full}",
            page.messages.len()
        ));
    }
    Ok(())
}

/// The API's cache counters: hits and misses of both kinds of reads.
fn cache_summary(metrics: &str) -> String {
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    let ready = value("chat_api_cache_ready");
    if ready == 0.0 && !metrics.contains("chat_api_cache_ready") {
        return "none (the API runs without CHAT_REDIS_URL)".into();
    }
    let outcome = |family: &str, outcome: &str| {
        value(&format!("chat_api_{family}_total{{outcome=\"{outcome}\"}}"))
    };
    format!(
        "history {} hits / {} misses, memberships {} hits / {} misses",
        outcome("cache_reads", "hit"),
        outcome("cache_reads", "miss"),
        outcome("cache_membership_reads", "hit"),
        outcome("cache_membership_reads", "miss"),
    )
}
