//! `idle`: opens N connections and holds them. Reports the connect rate and
//! handshake times, the engine's resident memory per connection (VmRSS
//! before and after, divided by N), `chat_engine_connections`, and checks
//! at the end that every connection still answers a ping.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::IdleArgs;
use crate::client::{self, Connector, Ws};
use crate::provision::Provisioner;
use crate::report::{self, Cpu, Report};
use crate::stats::{Receiver, Shared, histogram};
use crate::sys;

/// Idle connections need little read buffer.
const READ_BUFFER: usize = 4 * 1024;
/// Settling time before memory is read (the engine's tasks finish starting).
const SETTLE: Duration = Duration::from_secs(2);
/// Longest wait for every connection's pong.
const PONG_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: IdleArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    super::check_common(common)?;
    anyhow::ensure!(args.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(
        (1..=16).contains(&args.connections_per_user),
        "--connections-per-user must be from 1 to 16"
    );
    let engine_pid = sys::engine_pid(common.engine_pid);
    if engine_pid.is_none() {
        eprintln!("note: no `chat engine` process found: memory per connection needs --engine-pid");
    }
    super::prepare_fds(args.connections, engine_pid)?;

    let prov = Provisioner::new(common, "loadgen idle").await?;
    let user_count = args.connections.div_ceil(args.connections_per_user);
    let users: Vec<String> = (0..user_count).map(|u| format!("i{u}")).collect();
    let chats = if args.chats > 0 {
        let chats = prov.create_chats(args.chats).await?;
        let pairs: Vec<(u64, String)> = users
            .iter()
            .enumerate()
            .map(|(u, user)| (chats[u % chats.len()], user.clone()))
            .collect();
        prov.subscribe(&pairs).await?;
        chats
    } else {
        Vec::new()
    };
    let tokens = prov.mint_tokens(&users).await?;
    let chat_of_user = |u: usize| {
        if chats.is_empty() {
            0
        } else {
            chats[u % chats.len()]
        }
    };
    let receivers = (0..args.connections)
        .map(|i| Receiver::new(chat_of_user(i / args.connections_per_user)))
        .collect();
    let shared = Shared::new(receivers);
    let ping = Rc::new(Notify::new());

    let connector = Connector::new(
        common.engine_addr,
        args.connections,
        common.source_ips,
        READ_BUFFER,
    );
    let counters_before = super::engine_counters(&prov).await;
    let engine_rss_before = engine_pid.and_then(sys::rss_bytes);
    let own_rss_before = sys::rss_bytes(std::process::id());
    let engine_cpu_before = super::engine_cpu(engine_pid);
    let cpu_before = sys::self_cpu();

    // Connect, each connection's task starting as soon as it is open.
    let start = Instant::now();
    let bar = report::counter_bar(args.connections as u64, "connections");
    let mut handshake = histogram();
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    let mut tasks = Vec::with_capacity(args.connections);
    {
        let mut attempts = futures_util::stream::iter(0..args.connections)
            .map(|i| {
                let token = &tokens[i / args.connections_per_user];
                let connector = &connector;
                async move {
                    let began = Instant::now();
                    (i, connector.connect(i, token).await, began.elapsed())
                }
            })
            .buffer_unordered(common.connect_concurrency.max(1));
        while let Some((id, result, took)) = attempts.next().await {
            bar.inc(1);
            match result {
                Ok(ws) => {
                    handshake.saturating_record(took.as_micros().max(1) as u64);
                    shared.stats.borrow_mut().receivers[id].open = true;
                    tasks.push(tokio::task::spawn_local(hold(
                        ws,
                        id,
                        shared.clone(),
                        ping.clone(),
                    )));
                }
                Err(kind) => *failures.entry(kind).or_insert(0) += 1,
            }
        }
    }
    let connect_time = start.elapsed();
    bar.finish_and_clear();
    let connected = tasks.len();
    let connect_rate = connected as f64 / connect_time.as_secs_f64().max(1e-9);

    tokio::time::sleep(SETTLE).await;
    let engine_rss_after = engine_pid.and_then(sys::rss_bytes);
    let own_rss_after = sys::rss_bytes(std::process::id());
    let counters_open = super::engine_counters(&prov).await;
    let engine_connections = counters_open.get("chat_engine_connections").copied();

    // Hold, then ping every connection and count the pongs.
    let hold_bar = report::run_bar(args.hold);
    hold_bar.set_message(format!("holding {connected} connections"));
    tokio::time::sleep(args.hold).await;
    hold_bar.finish_and_clear();
    ping.notify_waiters();
    let pong_deadline = Instant::now() + PONG_TIMEOUT;
    loop {
        let (pongs, open) = {
            let stats = shared.stats.borrow();
            (
                stats.pongs,
                stats.receivers.iter().filter(|r| r.open).count() as u64,
            )
        };
        if pongs >= open || Instant::now() >= pong_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = start.elapsed();
    let cpu = Cpu {
        loadgen: sys::self_cpu().saturating_sub(cpu_before),
        engine: engine_cpu_before
            .zip(super::engine_cpu(engine_pid))
            .map(|(before, after)| after.saturating_sub(before)),
        wall,
    };

    // Close everything and see whether the engine lets go.
    for task in &tasks {
        task.abort();
    }
    drop(tasks);
    tokio::time::sleep(SETTLE).await;
    let counters_closed = super::engine_counters(&prov).await;
    let engine_rss_closed = engine_pid.and_then(sys::rss_bytes);

    let mut stats = shared.stats.borrow_mut();
    let pongs = stats.pongs;
    let mut report = Report::new("idle", connected);
    report.window = connect_time;
    report.cpu = cpu;
    let per_connection = |before: Option<u64>, after: Option<u64>| {
        before
            .zip(after)
            .filter(|_| connected > 0)
            .map(|(b, a)| (a as f64 - b as f64) / connected as f64)
    };
    let engine_per_connection = per_connection(engine_rss_before, engine_rss_after);
    let own_per_connection = per_connection(own_rss_before, own_rss_after);
    let mib = |bytes: Option<u64>| {
        bytes.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
    };
    report.notes.push(format!(
        "{connected} of {} connections open in {:.2} s = {connect_rate:.0} connections/s ({} users, {} chats)",
        args.connections,
        connect_time.as_secs_f64(),
        user_count,
        chats.len()
    ));
    report.notes.push(format!(
        "handshake       {}",
        report::latency_line(&handshake)
    ));
    if !failures.is_empty() {
        report.notes.push(format!("connect failures {failures:?}"));
    }
    report.notes.push(format!(
        "engine RSS      {} before, {} with the connections, {} after closing them (pid {})",
        mib(engine_rss_before),
        mib(engine_rss_after),
        mib(engine_rss_closed),
        engine_pid.map_or("?".into(), |p| p.to_string())
    ));
    if let Some(bytes) = engine_per_connection {
        report.notes.push(format!(
            "engine memory   {:.1} KiB per connection",
            bytes / 1024.0
        ));
    }
    if let Some(bytes) = own_per_connection {
        report.notes.push(format!(
            "loadgen memory  {:.1} KiB per connection",
            bytes / 1024.0
        ));
    }
    report.notes.push(format!(
        "chat_engine_connections {} before, {} open, {} after closing",
        fmt_opt(counters_before.get("chat_engine_connections")),
        fmt_opt(engine_connections.as_ref()),
        fmt_opt(counters_closed.get("chat_engine_connections")),
    ));
    report.notes.push(format!(
        "pongs           {pongs} of {connected} after holding {:?}",
        args.hold
    ));
    if !connector.sources().is_empty() {
        report
            .notes
            .push(format!("source addresses {:?}", connector.sources()));
    }
    if pongs < connected as u64 {
        let missing = connected as u64 - pongs;
        stats.problem(|| format!("{missing} connections did not answer the final ping"));
        stats.misrouted += missing;
    }
    if !failures.is_empty() {
        let count: u64 = failures.values().sum();
        stats.problem(|| format!("{count} connections failed to open: {failures:?}"));
    }
    report
        .extra
        .insert("connections_requested".into(), json!(args.connections));
    report
        .extra
        .insert("connect_seconds".into(), json!(connect_time.as_secs_f64()));
    report
        .extra
        .insert("connects_per_sec".into(), json!(connect_rate.round()));
    report
        .extra
        .insert("handshake_us".into(), report::latency_json(&handshake));
    report
        .extra
        .insert("connect_failures".into(), json!(failures));
    report.extra.insert("app".into(), json!(prov.app_id));
    report.extra.insert("engine_pid".into(), json!(engine_pid));
    report
        .extra
        .insert("engine_rss_before".into(), json!(engine_rss_before));
    report
        .extra
        .insert("engine_rss_after".into(), json!(engine_rss_after));
    report
        .extra
        .insert("engine_rss_closed".into(), json!(engine_rss_closed));
    report.extra.insert(
        "engine_bytes_per_connection".into(),
        json!(engine_per_connection.map(f64::round)),
    );
    report.extra.insert(
        "loadgen_bytes_per_connection".into(),
        json!(own_per_connection.map(f64::round)),
    );
    report
        .extra
        .insert("chat_engine_connections".into(), json!(engine_connections));
    report.extra.insert(
        "chat_engine_connections_after_close".into(),
        json!(counters_closed.get("chat_engine_connections")),
    );
    report.extra.insert("pongs".into(), json!(pongs));
    let failed = report.failed(&stats) || !failures.is_empty();
    report.finish(&stats, common.json.as_deref(), common.plot.as_deref())?;
    Ok(!failed)
}

fn fmt_opt(value: Option<&f64>) -> String {
    value.map_or("?".into(), |v| format!("{v:.0}"))
}

/// Holds one connection: reads (and checks) whatever arrives, and sends a
/// ping when told to.
async fn hold(mut ws: Ws, id: usize, shared: Rc<Shared>, ping: Rc<Notify>) {
    let end = loop {
        tokio::select! {
            item = ws.next() => match item {
                Some(Ok(Message::Text(text))) => client::handle_text(text.as_str(), id, &shared, None),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                other => break client::close_reason(other),
            },
            () = ping.notified() => {
                if let Err(error) = ws.send(Message::text(r#"{"type":"ping"}"#)).await {
                    break format!("error: {error}");
                }
            }
        }
    };
    shared.stats.borrow_mut().on_closed(id, end);
}
