//! `fanout` and `rooms`: chats whose members are each one WebSocket
//! connection, some of them sending. Every member checks every message of
//! its chat (no gap, no duplicate, all there at the end) and records the
//! publish-to-deliver latency from the timestamp in the body.

use std::time::Instant;

use serde_json::json;

use crate::cli::{Common, FanoutArgs, Pacing, RoomsArgs};
use crate::client::{self, Connector};
use crate::provision::Provisioner;
use crate::report::{self, Cpu, Report};
use crate::stats::{Receiver, Shared};
use crate::sys;
use crate::traffic::{ChatSenders, Driver, Picker, Rng, spawn_sampler};

/// Bytes of each connection's read buffer.
const READ_BUFFER: usize = 16 * 1024;
/// Sustained sends per second per connection the engine allows by default.
const ENGINE_SENDS_PER_SECOND_DEFAULT: f64 = 200.0;

struct Layout {
    name: &'static str,
    chats: usize,
    members: usize,
    /// The first `senders` members of each chat send.
    senders: usize,
    picker: Picker,
    in_flight_max: u64,
    zipf: f64,
    /// Read positions moved per second by the first chat's senders.
    read_rate: f64,
}

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.members >= 1, "--members must be at least 1");
    anyhow::ensure!(
        (1..=args.members).contains(&args.publishers),
        "--publishers must be from 1 to --members"
    );
    let layout = Layout {
        name: "fanout",
        chats: 1,
        members: args.members,
        senders: args.publishers,
        picker: Picker::new(1, 0.0),
        in_flight_max: u64::from(args.pacing.window) * args.publishers as u64,
        zipf: 0.0,
        read_rate: args.read_rate,
    };
    anyhow::ensure!(
        args.read_rate >= 0.0 && args.read_rate.is_finite(),
        "--read-rate must be 0 or more"
    );
    run(layout, args.pacing, args.common).await
}

pub async fn rooms(args: RoomsArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.chats >= 1, "--chats must be at least 1");
    anyhow::ensure!(args.members >= 1, "--members must be at least 1");
    let layout = Layout {
        name: "rooms",
        chats: args.chats,
        members: args.members,
        senders: args.members,
        picker: Picker::new(args.chats, args.zipf),
        in_flight_max: u64::from(args.in_flight_max.max(1)),
        zipf: args.zipf.max(0.0),
        read_rate: 0.0,
    };
    run(layout, args.pacing, args.common).await
}

async fn run(layout: Layout, pacing: Pacing, common: Common) -> anyhow::Result<bool> {
    super::check_common(&common)?;
    anyhow::ensure!(pacing.window >= 1, "--window must be at least 1");
    anyhow::ensure!(
        (1..=4_096).contains(&pacing.body_bytes),
        "--body-bytes must be from 1 to 4096"
    );
    if let Some(rate) = pacing.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
    }
    let connections = layout.chats * layout.members;
    let engine_pid = sys::engine_pid(common.engine_pid);
    super::prepare_fds(connections, engine_pid)?;

    // Provisioning: app, chats, members, tokens.
    let prov = Provisioner::new(&common, &format!("loadgen {}", layout.name)).await?;
    let chats = prov.create_chats(layout.chats).await?;
    let users: Vec<String> = (0..connections)
        .map(|i| format!("c{}m{}", i / layout.members, i % layout.members))
        .collect();
    let pairs: Vec<(u64, String)> = users
        .iter()
        .enumerate()
        .map(|(i, user)| (chats[i / layout.members], user.clone()))
        .collect();
    prov.subscribe(&pairs).await?;
    let tokens = prov.mint_tokens(&users).await?;

    // Connections: every member, then the senders split into reader and writer.
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
            let mut receiver = Receiver::new(chats[i / layout.members]);
            receiver.open = true;
            receiver
        })
        .collect();
    let shared = Shared::new(receivers);
    let mut tasks = Vec::with_capacity(connections + layout.chats * layout.senders);
    let mut senders: Vec<ChatSenders> = chats
        .iter()
        .map(|chat| ChatSenders {
            chat: *chat,
            senders: Vec::new(),
        })
        .collect();
    for (id, ws) in sockets.into_iter().enumerate() {
        let (chat_index, member) = (id / layout.members, id % layout.members);
        if member < layout.senders {
            let (slot, [reader, writer]) =
                client::spawn_sender(ws, id, &shared, pacing.window as usize + 16);
            senders[chat_index].senders.push(slot);
            tasks.push(reader);
            tasks.push(writer);
        } else {
            tasks.push(tokio::task::spawn_local(client::read_loop(
                ws,
                id,
                shared.clone(),
                None,
            )));
        }
    }

    let total_senders = layout.chats * layout.senders;
    let mut notes = vec![match pacing.rate {
        Some(rate) => format!(
            "{} chat(s) x {} members, {} sender(s) per chat, {rate} msgs/s for {:?}, {}-byte bodies",
            layout.chats, layout.members, layout.senders, pacing.duration, pacing.body_bytes
        ),
        None => format!(
            "{} chat(s) x {} members, {} sender(s) per chat, as fast as acks allow (window {} per \
             connection, {} in all) for {:?}, {}-byte bodies",
            layout.chats,
            layout.members,
            layout.senders,
            pacing.window,
            layout.in_flight_max,
            pacing.duration,
            pacing.body_bytes
        ),
    }];
    if let Some(rate) = pacing.rate {
        // The busiest sender: the hottest chat's share spread over its senders.
        let per_connection = rate * layout.picker.top_share() / layout.senders as f64;
        if per_connection > ENGINE_SENDS_PER_SECOND_DEFAULT {
            eprintln!(
                "note: about {per_connection:.0} sends/s per sending connection; the engine's \
                 default limit is 200 (CHAT_SENDS_PER_SECOND_MAX)"
            );
        }
    }
    if !connector.sources().is_empty() {
        notes.push(format!("source addresses {:?}", connector.sources()));
    }

    // The measured phase.
    let counters_before = super::engine_counters(&prov).await;
    let engine_cpu_before = super::engine_cpu(engine_pid);
    let cpu_before = sys::self_cpu();
    let start = Instant::now();
    let start_us = crate::stats::now_us();
    let bar = report::run_bar(pacing.duration);
    let sampler = spawn_sampler(shared.clone(), start, bar.clone());
    let lag_probe = crate::traffic::spawn_lag_probe(shared.clone());
    let reads = (layout.read_rate > 0.0).then(|| {
        let slots = senders[0].senders.clone();
        notes.push(format!(
            "{} read positions/s moved by the senders",
            layout.read_rate
        ));
        spawn_reads(shared.clone(), chats[0], slots, layout.read_rate)
    });
    let driver = Driver {
        chats: senders,
        picker: layout.picker,
        rate: pacing.rate,
        window: pacing.window,
        in_flight_max: layout.in_flight_max,
        body_bytes: pacing.body_bytes,
        duration: pacing.duration,
        rng: Rng::new(sys::self_cpu().as_nanos() as u64 ^ u64::from(std::process::id())),
    };
    let driven = driver.run(&shared).await;
    bar.set_message("waiting for the last acks and deliveries");
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
    if let Some(reads) = reads {
        reads.abort();
    }
    bar.finish_and_clear();
    let counters_after = super::engine_counters(&prov).await;
    for task in &tasks {
        task.abort();
    }

    let mut stats = shared.stats.borrow_mut();
    let mut report = Report::new(layout.name, connections);
    report.window = stats.delivery_window(start_us).unwrap_or(wall);
    report.lost = stats.verify(&expected);
    report.cpu = cpu;
    report.notes = notes;
    let send_rate = driven.sent as f64 / driven.elapsed.as_secs_f64().max(1e-9);
    report.notes.push(format!(
        "sent {} in {:.2} s ({send_rate:.0}/s){}{}",
        driven.sent,
        driven.elapsed.as_secs_f64(),
        if driven.window_full > 0 {
            format!(", {} ticks found every window full", driven.window_full)
        } else {
            String::new()
        },
        if driven.behind_dropped > 0 {
            format!(
                ", {} due sends dropped (over a second behind)",
                driven.behind_dropped
            )
        } else {
            String::new()
        }
    ));
    report.extra.insert("app".into(), json!(prov.app_id));
    report.extra.insert("chats".into(), json!(layout.chats));
    report.extra.insert("zipf".into(), json!(layout.zipf));
    report
        .extra
        .insert("members_per_chat".into(), json!(layout.members));
    report.extra.insert("senders".into(), json!(total_senders));
    report
        .extra
        .insert("rate_target".into(), json!(pacing.rate));
    report
        .extra
        .insert("send_rate".into(), json!((send_rate * 10.0).round() / 10.0));
    report
        .extra
        .insert("body_bytes".into(), json!(pacing.body_bytes));
    report.extra.insert("window".into(), json!(pacing.window));
    report
        .extra
        .insert("read_rate".into(), json!(layout.read_rate));
    report
        .extra
        .insert("read_events".into(), json!(stats.read_events));
    report
        .extra
        .insert("reads_events".into(), json!(stats.reads_events));
    report
        .extra
        .insert("window_full_ticks".into(), json!(driven.window_full));
    report
        .extra
        .insert("behind_dropped".into(), json!(driven.behind_dropped));
    report.extra.insert(
        "engine_metrics_delta".into(),
        super::counters_delta(&counters_before, &counters_after),
    );
    report.finish(&stats, common.json.as_deref(), common.plot.as_deref())?;
    let failed = report.failed(&stats);
    Ok(!failed)
}

/// Moves a read position `rate` times a second, the chat's senders in turn
/// (sender `i` is connection `i`), each to the newest number it has seen.
fn spawn_reads(
    shared: std::rc::Rc<Shared>,
    chat: u64,
    slots: Vec<std::rc::Rc<crate::stats::SenderSlot>>,
    rate: f64,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for turn in 0usize.. {
            tick.tick().await;
            let id = turn % slots.len();
            let number = shared.stats.borrow().receivers[id].last;
            if number == 0 || !slots[id].open.get() {
                continue;
            }
            let frame = json!({"type": "read", "chat": chat, "number": number}).to_string();
            let _ = slots[id]
                .tx
                .try_send(tokio_tungstenite::tungstenite::Message::text(frame));
        }
    })
}
