//! `reconnect`: K clients of one chat go offline, M messages are published
//! over HTTP, then all K reconnect and `sync` at once. Measures the time
//! until every client has its `synced` frame and every missed message (in
//! order, once), and each client's own catch-up time.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::ReconnectArgs;
use crate::client::{self, Connector, Ws};
use crate::provision::Provisioner;
use crate::report::{self, Cpu, Report};
use crate::stats::{Receiver, Shared, histogram};
use crate::sys;
use crate::traffic;

const READ_BUFFER: usize = 16 * 1024;
/// Longest wait for the warm-up message and for the engine to see the
/// clients gone.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for everyone to catch up after the reconnect.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for a restarted engine to answer.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);
/// The engine's most messages per chat in one sync.
const SYNC_MESSAGES_MAX: usize = 10_000;
const PUBLISHER: &str = "loadgen-publisher";

pub async fn run(args: ReconnectArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    super::check_common(common)?;
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(
        (1..SYNC_MESSAGES_MAX).contains(&args.missed),
        "--missed must be from 1 to {} (one sync returns at most {SYNC_MESSAGES_MAX} messages)",
        SYNC_MESSAGES_MAX - 1
    );
    let mut engine_pid = sys::engine_pid(common.engine_pid);
    super::prepare_fds(args.clients * 2, engine_pid)?;

    let prov = Rc::new(Provisioner::new(common, "loadgen reconnect").await?);
    let chat = prov.create_chats(1).await?[0];
    let users: Vec<String> = (0..args.clients).map(|i| format!("r{i}")).collect();
    let pairs: Vec<(u64, String)> = users.iter().map(|u| (chat, u.clone())).collect();
    prov.subscribe(&pairs).await?;
    let tokens = prov.mint_tokens(&users).await?;
    let connector = Connector::new(
        common.engine_addr,
        args.clients,
        common.source_ips,
        READ_BUFFER,
    );

    // 1. Everyone online; one message proves the live path and loads the chat.
    let sockets = super::check_connects(
        client::connect_all(
            &connector,
            &super::as_strs(&tokens),
            common.connect_concurrency,
            "connections",
        )
        .await,
    )?;
    let receivers = (0..args.clients)
        .map(|_| {
            let mut receiver = Receiver::new(chat);
            receiver.open = true;
            receiver
        })
        .collect();
    let shared = Shared::new(receivers);
    let online: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(id, ws)| tokio::task::spawn_local(client::read_loop(ws, id, shared.clone(), None)))
        .collect();
    let url = prov.publish_url(chat);
    let warm = prov
        .publish(&url, &traffic::body(0, args.body_bytes), PUBLISHER)
        .await
        .map_err(|e| anyhow::anyhow!("publishing the first message: {e}"))?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while shared
        .stats
        .borrow()
        .receivers
        .iter()
        .any(|r| r.last < warm)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 2. Everyone offline (the read tasks own the sockets: aborting closes them).
    let before_close = super::engine_counters(&prov).await;
    for task in &online {
        task.abort();
    }
    drop(online);
    {
        let mut stats = shared.stats.borrow_mut();
        for receiver in &mut stats.receivers {
            receiver.open = false;
        }
    }
    let target = before_close
        .get("chat_engine_connections")
        .map(|open| open - args.clients as f64);
    let deadline = Instant::now() + STEP_TIMEOUT;
    while let Some(target) = target {
        let now_open = super::engine_counters(&prov)
            .await
            .get("chat_engine_connections")
            .copied();
        if now_open.is_none_or(|open| open <= target) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. M messages while they are away.
    let bar = report::counter_bar(args.missed as u64, "publishing");
    let published_at = Instant::now();
    let results: Vec<Result<u64, String>> = futures_util::stream::iter(1..=args.missed as u64)
        .map(|seq| {
            let (prov, url, shared, bar) = (&prov, &url, &shared, &bar);
            async move {
                let began = Instant::now();
                let result = prov
                    .publish(url, &traffic::body(seq, args.body_bytes), PUBLISHER)
                    .await;
                let mut stats = shared.stats.borrow_mut();
                stats.on_sent(1);
                match &result {
                    Ok(number) => {
                        stats.on_ack(chat, *number);
                        stats
                            .publish_latency
                            .saturating_record(began.elapsed().as_micros().max(1) as u64);
                    }
                    Err(code) => stats.on_error(code),
                }
                bar.inc(1);
                result
            }
        })
        .buffer_unordered(args.publish_concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let publish_time = published_at.elapsed();
    let publish_failures = results.iter().filter(|r| r.is_err()).count();
    let last = prov.messages_count(chat).await?;
    if let Some(command) = &args.restart_engine {
        let took = restart_engine(command, &prov).await?;
        println!(
            "engine restarted (empty rings) in {}",
            report::fmt_us(took.as_micros() as u64)
        );
        engine_pid = sys::engine_pid(None);
    }

    // 4. Everyone back at once, each syncing from what it had.
    shared.stats.borrow_mut().reset_measurements();
    let counters_before = super::engine_counters(&prov).await;
    let engine_cpu_before = super::engine_cpu(engine_pid);
    let cpu_before = sys::self_cpu();
    let start = Instant::now();
    let start_us = crate::stats::now_us();
    let caught_up = Rc::new(Cell::new(0usize));
    let catch_up = Rc::new(std::cell::RefCell::new(histogram()));
    let connected_all = Rc::new(Cell::new(None::<Duration>));
    let connected = Rc::new(Cell::new(0usize));
    let failures = Rc::new(std::cell::RefCell::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let gate = Rc::new(tokio::sync::Semaphore::new(
        if args.reconnect_concurrency == 0 {
            args.clients
        } else {
            args.reconnect_concurrency
        },
    ));
    let connector = Rc::new(connector);
    let mut tasks = Vec::with_capacity(args.clients);
    for (id, token) in tokens.into_iter().enumerate() {
        let ctx = Rejoin {
            id,
            chat,
            last,
            shared: shared.clone(),
            connector: connector.clone(),
            gate: gate.clone(),
            caught_up: caught_up.clone(),
            catch_up: catch_up.clone(),
            connected: connected.clone(),
            connected_all: connected_all.clone(),
            failures: failures.clone(),
            clients: args.clients,
            start,
        };
        tasks.push(tokio::task::spawn_local(rejoin(ctx, token)));
    }
    let bar = report::counter_bar(args.clients as u64, "caught up");
    let deadline = start + CATCH_UP_TIMEOUT;
    loop {
        let done = caught_up.get();
        bar.set_position(done as u64);
        let failed = failures.borrow().values().sum::<u64>() as usize;
        let closed = shared.stats.borrow().closes.values().sum::<u64>() as usize;
        if done + failed + closed >= args.clients || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bar.finish_and_clear();
    let all_caught_up = (caught_up.get() == args.clients).then(|| start.elapsed());
    // A moment more to catch any duplicate that would follow.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let wall = start.elapsed();
    let cpu = Cpu {
        loadgen: sys::self_cpu().saturating_sub(cpu_before),
        engine: engine_cpu_before
            .zip(super::engine_cpu(engine_pid))
            .map(|(before, after)| after.saturating_sub(before)),
        wall,
    };
    let counters_after = super::engine_counters(&prov).await;
    for task in &tasks {
        task.abort();
    }

    let expected = std::collections::HashMap::from([(chat, last)]);
    let mut stats = shared.stats.borrow_mut();
    let synced = stats
        .receivers
        .iter()
        .filter(|r| r.synced_to.is_some())
        .count();
    let bad_synced = stats
        .receivers
        .iter()
        .filter(|r| r.synced_to.is_some_and(|n| n != last))
        .count();
    if bad_synced > 0 {
        stats.misrouted += bad_synced as u64;
        stats.problem(|| {
            format!("{bad_synced} clients got a synced frame whose number is not {last}")
        });
    }
    let mut report = Report::new("reconnect", connected.get());
    report.window = stats.delivery_window(start_us).unwrap_or(wall);
    report.lost = stats.verify(&expected);
    report.cpu = cpu;
    let catch_up = catch_up.borrow();
    report.notes.push(format!(
        "{} clients, {} messages missed (numbers {}..={last}), published over HTTP in {:.2} s{}",
        args.clients,
        args.missed,
        warm + 1,
        publish_time.as_secs_f64(),
        if publish_failures > 0 {
            format!(" ({publish_failures} publishes failed)")
        } else {
            String::new()
        }
    ));
    report.notes.push(format!(
        "all reconnected {}; all caught up {}; synced {synced} of {}",
        connected_all.get().map_or("never".into(), |d| format!(
            "after {:.1} ms",
            d.as_secs_f64() * 1e3
        )),
        all_caught_up.map_or("never (timed out)".into(), |d| format!(
            "after {:.1} ms",
            d.as_secs_f64() * 1e3
        )),
        args.clients
    ));
    report.notes.push(format!(
        "catch-up        {}",
        report::latency_line(&catch_up)
    ));
    if !failures.borrow().is_empty() {
        report
            .notes
            .push(format!("reconnect failures {:?}", failures.borrow()));
    }
    report.extra.insert("app".into(), json!(prov.app_id));
    report.extra.insert("clients".into(), json!(args.clients));
    report.extra.insert("missed".into(), json!(args.missed));
    report.extra.insert("last_number".into(), json!(last));
    report.extra.insert(
        "all_caught_up_ms".into(),
        json!(all_caught_up.map(|d| d.as_secs_f64() * 1e3)),
    );
    report.extra.insert(
        "all_connected_ms".into(),
        json!(connected_all.get().map(|d| d.as_secs_f64() * 1e3)),
    );
    report
        .extra
        .insert("catch_up_us".into(), report::latency_json(&catch_up));
    report.extra.insert("synced".into(), json!(synced));
    report
        .extra
        .insert("reconnect_failures".into(), json!(*failures.borrow()));
    report.extra.insert(
        "engine_metrics_delta".into(),
        super::counters_delta(&counters_before, &counters_after),
    );
    let failed = report.failed(&stats)
        || all_caught_up.is_none()
        || !failures.borrow().is_empty()
        || publish_failures > 0;
    if all_caught_up.is_none() {
        report
            .notes
            .push("FAILED: not every client caught up in time".into());
    }
    report.finish(&stats, common.json.as_deref(), common.plot.as_deref())?;
    Ok(!failed)
}

struct Rejoin {
    id: usize,
    chat: u64,
    last: u64,
    shared: Rc<Shared>,
    connector: Rc<Connector>,
    gate: Rc<tokio::sync::Semaphore>,
    caught_up: Rc<Cell<usize>>,
    catch_up: Rc<std::cell::RefCell<hdrhistogram::Histogram<u64>>>,
    connected: Rc<Cell<usize>>,
    connected_all: Rc<Cell<Option<Duration>>>,
    failures: Rc<std::cell::RefCell<std::collections::BTreeMap<String, u64>>>,
    clients: usize,
    start: Instant,
}

/// One client's return: connect, sync from its last number, read until it
/// has everything (then keep reading, to see any duplicate).
async fn rejoin(ctx: Rejoin, token: String) {
    let permit = ctx.gate.acquire().await;
    let result = ctx.connector.connect(ctx.id, &token).await;
    drop(permit);
    let mut ws: Ws = match result {
        Ok(ws) => ws,
        Err(kind) => {
            *ctx.failures.borrow_mut().entry(kind).or_insert(0) += 1;
            return;
        }
    };
    ctx.connected.set(ctx.connected.get() + 1);
    if ctx.connected.get() == ctx.clients {
        ctx.connected_all.set(Some(ctx.start.elapsed()));
    }
    let had = {
        let mut stats = ctx.shared.stats.borrow_mut();
        let receiver = &mut stats.receivers[ctx.id];
        receiver.open = true;
        receiver.last
    };
    let sync = format!(r#"{{"type":"sync","chats":{{"{}":{had}}}}}"#, ctx.chat);
    if let Err(error) = ws.send(Message::text(sync)).await {
        ctx.shared
            .stats
            .borrow_mut()
            .on_closed(ctx.id, format!("error: {error}"));
        return;
    }
    let mut done = false;
    let end = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                client::handle_text(text.as_str(), ctx.id, &ctx.shared, None);
                if !done {
                    let stats = ctx.shared.stats.borrow();
                    let receiver = &stats.receivers[ctx.id];
                    if receiver.synced_to.is_some() && receiver.last >= ctx.last {
                        done = true;
                        ctx.catch_up
                            .borrow_mut()
                            .saturating_record(ctx.start.elapsed().as_micros().max(1) as u64);
                        ctx.caught_up.set(ctx.caught_up.get() + 1);
                    }
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            other => break client::close_reason(other),
        }
    };
    ctx.shared.stats.borrow_mut().on_closed(ctx.id, end);
}

/// Runs `command` with `sh -c`, then waits until the engine answers its
/// health check again.
async fn restart_engine(command: &str, prov: &Provisioner) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .map_err(|error| anyhow::anyhow!("running --restart-engine: {error}"))?;
    anyhow::ensure!(status.success(), "--restart-engine exited with {status}");
    let deadline = Instant::now() + RESTART_TIMEOUT;
    while !prov.engine_healthy().await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the engine did not answer /healthz within {RESTART_TIMEOUT:?} of its restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}
