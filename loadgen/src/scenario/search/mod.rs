//! `search`: full-text search of the persistence API at scale, whichever
//! backend it runs (`CHAT_SEARCH`). Four phases, one after the other:
//! 1. seed: C chats of M messages (a deterministic corpus, see `corpus`)
//!    committed flat out through the engine's batch route, then the time
//!    until all of it is searchable (the indexing rate while the API
//!    commits);
//! 2. queries, N in flight for a duration each: a one-chat infix search,
//!    an app-wide word search, an app-wide infix search, every answer
//!    checked;
//! 3. lag: a steady ingest at a rate while probes measure the time from a
//!    batch's acknowledgement to its message being found;
//! 4. the count: every acknowledged message indexed exactly once.

mod corpus;
mod ingest;
mod lag;
mod queries;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use serde_json::json;

use super::closed_loop::{self, Phase};
use crate::cli::SearchArgs;
use crate::provision::Provisioner;
use crate::{report, sys};
use ingest::Ingest;
use lag::{LagPlan, LagReport};
use queries::{Kind, Target};

/// How often the index's position is read while waiting for it.
const POSITION_POLL: Duration = Duration::from_millis(50);

pub async fn run(args: SearchArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    super::check_common(common)?;
    ensure!(args.chats >= 1, "--chats must be at least 1");
    ensure!(args.messages >= 1, "--messages must be at least 1");
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    ensure!(
        (1..=args.chats).contains(&args.lanes),
        "--lanes must be from 1 to --chats"
    );
    ensure!(
        (1..=chat_wire::limits::BATCH_MESSAGES_MAX).contains(&args.batch),
        "--batch must be from 1 to {}",
        chat_wire::limits::BATCH_MESSAGES_MAX
    );
    ensure!(
        (64..=chat_wire::limits::MESSAGE_BODY_BYTES_MAX).contains(&args.body_bytes),
        "--body-bytes must be from 64 to {}",
        chat_wire::limits::MESSAGE_BODY_BYTES_MAX
    );
    ensure!(
        (1..=100).contains(&args.limit),
        "--limit must be from 1 to 100"
    );
    let prov = Provisioner::new(common, "loadgen search").await?;
    let chats = prov.create_chats(args.chats).await?;
    check_search_on(&prov, chats[0]).await?;
    let indexed_before = documents_indexed(&prov).await;
    let ingest = Ingest::new(
        prov.http.clone(),
        prov.api_url(""),
        common.operator_key.clone(),
        prov.app_id,
        chats.clone(),
        args.body_bytes,
        args.lanes,
    );

    let seed = seed(&prov, &ingest, &args).await?;
    let target = Target {
        chats: &chats,
        messages: args.messages as u64,
        body_bytes: args.body_bytes,
        limit: args.limit,
    };
    let mut phases: Vec<Phase> = Vec::new();
    for kind in Kind::ALL {
        let (prov, target) = (&prov, &target);
        phases.push(
            closed_loop::run(
                kind.name(),
                args.concurrency,
                args.duration,
                |i| async move {
                    let (url, chat, q) = queries::request(prov, target, kind, i);
                    let page = queries::search(prov, &url).await?;
                    queries::check(&page, kind, chat, &q, target.limit)
                },
            )
            .await,
        );
    }
    let lag = if args.ingest_rate > 0.0 {
        let plan = LagPlan {
            rate: args.ingest_rate,
            duration: args.ingest_duration,
            probe_interval: args.probe_interval,
            probe_timeout: args.probe_timeout,
        };
        let report = lag::run(&prov, &ingest, &plan).await?;
        wait_searchable(&prov, args.catch_up_timeout).await?;
        Some(report)
    } else {
        None
    };
    let indexed = documents_indexed(&prov).await - indexed_before;
    let acked = ingest.acked_messages.get();

    println!(
        "search: {} chats x {} messages of about {} bytes, {} lanes of batches of {}, {} queries in flight",
        args.chats, args.messages, args.body_bytes, args.lanes, args.batch, args.concurrency
    );
    println!(
        "        seed: {} messages committed in {:.1} s ({:.0}/s; batch answered {}), \
         searchable after {:.1} s ({:.0}/s indexed)",
        seed.messages,
        seed.committed.as_secs_f64(),
        seed.committed_rate(),
        report::latency_line(&ingest.commit_us.borrow()),
        seed.searchable.as_secs_f64(),
        seed.indexed_rate(),
    );
    let mut ok = true;
    for phase in &phases {
        ok &= phase.print();
    }
    if let Some(lag) = &lag {
        print_lag(lag, args.ingest_rate);
        ok &= lag.probes_missing == 0;
    }
    println!("       index: {indexed} documents indexed for {acked} acknowledged messages");
    if indexed as u64 != acked {
        println!("              failure: the index does not hold each acknowledged message once");
        ok = false;
    }
    if let Some(path) = &common.json {
        let mut out = json!({
            "scenario": "search",
            "chats": args.chats,
            "messages": args.messages,
            "body_bytes": args.body_bytes,
            "concurrency": args.concurrency,
            "seed": {
                "messages": seed.messages,
                "committed_seconds": seed.committed.as_secs_f64(),
                "searchable_seconds": seed.searchable.as_secs_f64(),
                "committed_per_second": seed.committed_rate(),
                "indexed_per_second": seed.indexed_rate(),
            },
            "indexed": indexed,
            "acknowledged": acked,
        });
        for phase in &phases {
            out[phase.name] = phase.to_json();
        }
        if let Some(lag) = &lag {
            out["lag"] = json!({
                "offered_per_second": args.ingest_rate,
                "committed_per_second": lag.rate(),
                "probes": lag.probes(),
                "probes_missing": lag.probes_missing,
                "probe_lag_us": report::latency_json(&lag.probe_lag_us),
                "gauge_lag_us": report::latency_json(&lag.gauge_lag_us),
            });
        }
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(ok)
}

fn print_lag(lag: &LagReport, offered: f64) {
    println!(
        "         lag: {offered:.0}/s offered, {:.0}/s committed for {:.1} s; {} probes, {} not found",
        lag.rate(),
        lag.elapsed.as_secs_f64(),
        lag.probes(),
        lag.probes_missing
    );
    println!(
        "              acknowledged to found: {}",
        report::latency_line(&lag.probe_lag_us)
    );
    println!(
        "              API lag gauge, sampled: {}",
        report::latency_line(&lag.gauge_lag_us)
    );
}

struct Seeded {
    messages: u64,
    committed: Duration,
    searchable: Duration,
}

impl Seeded {
    fn committed_rate(&self) -> f64 {
        self.messages as f64 / self.committed.as_secs_f64().max(1e-9)
    }

    fn indexed_rate(&self) -> f64 {
        self.messages as f64 / self.searchable.as_secs_f64().max(1e-9)
    }
}

/// Commits every chat's messages flat out, one batch in flight per lane,
/// then waits until the index holds them.
async fn seed(prov: &Provisioner, ingest: &Ingest, args: &SearchArgs) -> anyhow::Result<Seeded> {
    let total = (args.chats * args.messages) as u64;
    let bar = report::counter_bar(total, "seed");
    let started = Instant::now();
    let lane = |lane: usize| {
        let bar = &bar;
        async move {
            let mut left = ingest.lane_chats(lane) * args.messages;
            while left > 0 {
                let messages = left.min(args.batch);
                ingest.send(lane, messages, None).await?;
                left -= messages;
                bar.inc(messages as u64);
            }
            anyhow::Ok(())
        }
    };
    let outcomes = futures_util::future::join_all((0..args.lanes).map(lane)).await;
    bar.finish_and_clear();
    outcomes.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let committed = started.elapsed();
    for index in 0..args.chats {
        assert_eq!(ingest.last_number(index), args.messages as u64);
    }
    wait_searchable(prov, args.catch_up_timeout).await?;
    Ok(Seeded {
        messages: total,
        committed,
        searchable: started.elapsed(),
    })
}

/// Waits until the index's position reaches the commit log's head.
async fn wait_searchable(prov: &Provisioner, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = report::run_bar(timeout);
    loop {
        let text = prov.api_metrics().await.unwrap_or_default();
        let position = |name| sys::metric_sum(&text, name).unwrap_or(0.0);
        let indexed = position("chat_api_search_indexed_position");
        let head = position("chat_api_search_log_head_position");
        bar.set_message(format!("indexed {indexed} of {head}"));
        bar.set_position(started.elapsed().as_secs());
        if head > 0.0 && indexed >= head {
            bar.finish_and_clear();
            return Ok(());
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            bail!(
                "the index reached position {indexed} of {head} in {:.0} s (--catch-up-timeout)",
                timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(POSITION_POLL).await;
    }
}

async fn documents_indexed(prov: &Provisioner) -> f64 {
    let text = prov.api_metrics().await.unwrap_or_default();
    sys::metric_sum(&text, "chat_api_search_documents_indexed_total").unwrap_or(0.0)
}

/// Fails early, with the reason, when the API does not search.
async fn check_search_on(prov: &Provisioner, chat: u64) -> anyhow::Result<()> {
    let url = prov.api_url(&format!("/v1/chats/{chat}/messages/search?q=hello"));
    if let Err(error) = queries::search(prov, &url).await {
        bail!("the API does not search ({error}); is CHAT_SEARCH off?");
    }
    Ok(())
}
