//! `http-publish`: an app server publishes with the app token
//! (`POST /v1/chats/{n}/messages`) at a fixed rate; receivers listen over
//! WebSocket and check every message. Reports the publish answer time
//! (201 after the message is durable) besides the delivery latency.

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::time::MissedTickBehavior;

use crate::cli::HttpPublishArgs;
use crate::client::{self, Connector};
use crate::provision::Provisioner;
use crate::report::{self, Cpu, Report};
use crate::stats::{Receiver, Shared};
use crate::sys;
use crate::traffic::{self, spawn_sampler};

const READ_BUFFER: usize = 16 * 1024;
const PUBLISHER: &str = "loadgen-publisher";

pub async fn run(args: HttpPublishArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    super::check_common(common)?;
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be positive"
    );
    anyhow::ensure!(args.chats >= 1, "--chats must be at least 1");
    anyhow::ensure!(
        (1..=4_096).contains(&args.body_bytes),
        "--body-bytes must be from 1 to 4096"
    );
    let connections = args.chats * args.receivers;
    let engine_pid = sys::engine_pid(common.engine_pid);
    super::prepare_fds(connections + args.concurrency, engine_pid)?;

    let prov = Rc::new(Provisioner::new(common, "loadgen http-publish").await?);
    let chats = prov.create_chats(args.chats).await?;
    let users: Vec<String> = (0..connections)
        .map(|i| {
            format!(
                "c{}h{}",
                i / args.receivers.max(1),
                i % args.receivers.max(1)
            )
        })
        .collect();
    let pairs: Vec<(u64, String)> = users
        .iter()
        .enumerate()
        .map(|(i, user)| (chats[i / args.receivers.max(1)], user.clone()))
        .collect();
    prov.subscribe(&pairs).await?;
    let tokens = prov.mint_tokens(&users).await?;
    let connector = Connector::new(
        common.engine_addr,
        connections,
        common.source_ips,
        READ_BUFFER,
    );
    let sockets = super::check_connects(
        client::connect_all(
            &connector,
            &super::as_strs(&tokens),
            common.connect_concurrency,
            "connections",
        )
        .await,
    )?;
    let receivers = (0..connections)
        .map(|i| {
            let mut receiver = Receiver::new(chats[i / args.receivers.max(1)]);
            receiver.open = true;
            receiver
        })
        .collect();
    let shared = Shared::new(receivers);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(id, ws)| tokio::task::spawn_local(client::read_loop(ws, id, shared.clone(), None)))
        .collect();
    let urls: Rc<Vec<String>> = Rc::new(chats.iter().map(|c| prov.publish_url(*c)).collect());

    let counters_before = super::engine_counters(&prov).await;
    let engine_cpu_before = super::engine_cpu(engine_pid);
    let cpu_before = sys::self_cpu();
    let start = Instant::now();
    let start_us = crate::stats::now_us();
    let bar = report::run_bar(args.duration);
    let sampler = spawn_sampler(shared.clone(), start, bar.clone());
    let lag_probe = crate::traffic::spawn_lag_probe(shared.clone());

    // Open loop at the rate, at most `concurrency` requests in flight. A
    // slot that frees up is refilled at once, not at the next tick: on a
    // busy machine a tick comes milliseconds late, and the slot's idle
    // time would be charged to the server.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut issued = 0u64;
    let mut skipped = 0u64;
    let concurrency = args.concurrency.max(1) as u64;
    let carry_max = args.rate.max(1.0) as u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.window_open.notified() => {}
        }
        let elapsed = start.elapsed();
        if elapsed >= args.duration {
            break;
        }
        let target = (elapsed.as_secs_f64() * args.rate) as u64;
        // Publishes that wait for a free request slot are made late, up to
        // a second late; past that they are skipped and counted.
        if target > issued + carry_max {
            skipped += target - issued - carry_max;
            issued = target - carry_max;
        }
        while issued < target {
            if shared.in_flight.get() >= concurrency {
                break;
            }
            let index = (issued % chats.len() as u64) as usize;
            let chat = chats[index];
            let body = traffic::body(issued, args.body_bytes);
            shared.in_flight.set(shared.in_flight.get() + 1);
            shared.stats.borrow_mut().on_sent(1);
            let (prov, urls, shared) = (prov.clone(), urls.clone(), shared.clone());
            tokio::task::spawn_local(async move {
                let began = Instant::now();
                let result = prov.publish(&urls[index], &body, PUBLISHER).await;
                shared.in_flight.set(shared.in_flight.get() - 1);
                shared.window_open.notify_one();
                let mut stats = shared.stats.borrow_mut();
                match result {
                    Ok(number) => {
                        stats.on_ack(chat, number);
                        stats
                            .publish_latency
                            .saturating_record(began.elapsed().as_micros().max(1) as u64);
                    }
                    Err(code) => stats.on_error(&code),
                }
            });
            issued += 1;
        }
    }
    let send_elapsed = start.elapsed();
    bar.set_message("waiting for the last answers and deliveries");
    let expected = super::settle(&shared, &prov, &chats, common.grace).await?;
    let wall = start.elapsed();
    let cpu = Cpu {
        loadgen: sys::self_cpu().saturating_sub(cpu_before),
        engine: engine_cpu_before
            .zip(super::engine_cpu(engine_pid))
            .map(|(before, after)| after.saturating_sub(before)),
        wall,
    };
    sampler.abort();
    lag_probe.abort();
    bar.finish_and_clear();
    let counters_after = super::engine_counters(&prov).await;
    for task in &tasks {
        task.abort();
    }

    let mut stats = shared.stats.borrow_mut();
    let mut report = Report::new("http-publish", connections);
    report.window = stats.delivery_window(start_us).unwrap_or(wall);
    report.lost = stats.verify(&expected);
    report.cpu = cpu;
    let publish_rate = stats.acked as f64 / send_elapsed.as_secs_f64().max(1e-9);
    report.notes.push(format!(
        "{} chat(s) x {} receivers; HTTP publish at {} /s for {:?} ({} in flight at most): \
         {} published ({publish_rate:.0}/s), {skipped} skipped (over a second late: all {} in flight)",
        args.chats,
        args.receivers,
        args.rate,
        args.duration,
        args.concurrency,
        stats.acked,
        args.concurrency
    ));
    report.extra.insert("app".into(), json!(prov.app_id));
    report.extra.insert("chats".into(), json!(args.chats));
    report
        .extra
        .insert("receivers_per_chat".into(), json!(args.receivers));
    report.extra.insert("rate_target".into(), json!(args.rate));
    report.extra.insert(
        "publish_rate".into(),
        json!((publish_rate * 10.0).round() / 10.0),
    );
    report.extra.insert("skipped".into(), json!(skipped));
    report.extra.insert(
        "engine_metrics_delta".into(),
        super::counters_delta(&counters_before, &counters_after),
    );
    let failed = report.failed(&stats);
    report.finish(&stats, common.json.as_deref(), common.plot.as_deref())?;
    Ok(!failed)
}
