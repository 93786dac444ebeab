//! `chaos`: crash loops under traffic. The load generator starts the
//! persistence API, the auth service and the engine as its children, drives
//! WebSocket publishers, HTTP publishers, syncing readers and subscription
//! churn at them, and kills one service with SIGKILL at a time, at moments
//! drawn from a seeded schedule, restarting it on the same port with the
//! same data dir. At checkpoints and at the end it stops new traffic, waits
//! until every send is answered, and checks history against what it was
//! told (`check.rs`).
//!
//! Why one Rust process orchestrates everything rather than a shell script
//! that kills while a client runs: the ledger of acknowledged messages must
//! outlive every kill, so it lives in the one process that is never killed;
//! the same process knowing when each kill happened lets it print the ack
//! count at each kill, require progress after each restart (a wedged
//! service is a finding, not a hang), and quiesce the traffic for an exact
//! check without a second channel between a script and a client. The shell
//! wrapper (`scripts/chaos.sh`) only finds the binaries and the options.

mod actors;
mod check;
mod ledger;
mod services;

use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use self::actors::Ctx;
use self::ledger::Ledger;
use self::services::{Kind, Plan, Services};
use crate::cli::ChaosArgs;
use crate::traffic::Rng;

/// Longest wait for every send to be answered before a check.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long readers may take to catch up with history at a check.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Acknowledgements before the first kill: the traffic runs.
const WARM_UP_ACKS: u64 = 20;
/// How long services get to stop on SIGTERM at the end.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn run(args: ChaosArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.chats >= 1, "--chats must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be positive"
    );
    anyhow::ensure!(
        args.ws_publishers + args.http_publishers >= 1,
        "at least one publisher per chat"
    );
    anyhow::ensure!(
        args.kill_gap_ms_min <= args.kill_gap_ms_max,
        "--kill-gap-ms-min exceeds --kill-gap-ms-max"
    );
    anyhow::ensure!(
        (1..=1_000).contains(&args.window),
        "--window must be from 1 to 1000"
    );
    anyhow::ensure!(
        (32..=4_096).contains(&args.body_bytes),
        "--body-bytes must be from 32 to 4096"
    );
    let seed = args.seed.unwrap_or_else(crate::stats::now_us);
    let chat_bin = match &args.chat_bin {
        Some(path) => path.clone(),
        None => services::default_chat_bin()
            .context("no `chat` binary next to loadgen: pass --chat-bin")?,
    };
    let (data_dir, made_dir) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("chat-chaos-{seed}-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let plan = Plan {
        chat_bin,
        log_dir: data_dir.join("logs"),
        data_dir: data_dir.clone(),
        store: args.store.clone(),
        shards: args.shards,
        operator_key: format!("op_chaos_{seed:x}"),
        api: ([127, 0, 0, 1], services::free_port()?).into(),
        auth: ([127, 0, 0, 1], services::free_port()?).into(),
        engine: ([127, 0, 0, 1], services::free_port()?).into(),
    };
    println!(
        "chaos: seed {seed}, {} kills, store {}, {} chats x ({} ws + {} http publishers, {} readers), \
         {} msgs/s; data dir {} (service logs in logs/)",
        args.kills,
        args.store,
        args.chats,
        args.ws_publishers,
        args.http_publishers,
        args.readers,
        args.rate,
        data_dir.display()
    );
    println!(
        "chaos: replay with --seed {seed} --kills {} (binary {})",
        args.kills,
        services::describe(&plan.chat_bin)
    );
    let mut services = Services::new(plan)?;
    let outcome = drive(&args, seed, &mut services).await;
    services.stop_all(STOP_TIMEOUT).await;
    let summary = outcome?;
    let passed = summary.violations == 0;
    if passed && made_dir {
        let _ = std::fs::remove_dir_all(&data_dir);
    } else if !passed {
        println!(
            "chaos: data dir and service logs kept in {}",
            data_dir.display()
        );
    }
    if let Some(path) = &args.json {
        let json = json!({
            "seed": seed,
            "kills": summary.kills,
            "kills_api": summary.kills_by[0],
            "kills_auth": summary.kills_by[1],
            "kills_engine": summary.kills_by[2],
            "acked_checked": summary.checked.acked_checked,
            "stored": summary.checked.stored,
            "stored_unacked": summary.checked.stored_unacked,
            "checkpoints": summary.checkpoints,
            "violations": summary.violations,
            "violation_list": summary.violation_list,
            "run_s": summary.run_s,
            "store": args.store,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(passed)
}

struct Summary {
    kills: u32,
    kills_by: [u32; 3],
    checked: check::Checked,
    checkpoints: u32,
    violations: u64,
    violation_list: Vec<String>,
    run_s: f64,
}

async fn drive(args: &ChaosArgs, seed: u64, services: &mut Services) -> anyhow::Result<Summary> {
    let began = Instant::now();
    // In dependency order: the auth service checks app tokens with the API,
    // the engine reads the auth service's keys before it serves.
    for kind in Kind::ALL {
        services.start(kind)?;
        services
            .wait_healthy(kind, args.ready_timeout)
            .await
            .context("starting the services")?;
    }
    let plan = &services.plan;
    let ledger = Ledger::new();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()?;
    let api = format!("http://{}", plan.api);
    let created = http
        .post(format!("{api}/v1/apps"))
        .bearer_auth(&plan.operator_key)
        .json(&json!({ "title": "chaos" }))
        .send()
        .await
        .context("creating the app")?;
    if created.status() != 201 {
        bail!("creating the app: {}", created.status());
    }
    let created: serde_json::Value = created.json().await?;
    let app_token = created["token"]
        .as_str()
        .context("the app has no token")?
        .to_string();
    let ctx = Rc::new(Ctx {
        ledger: ledger.clone(),
        http,
        api: api.clone(),
        auth: format!("http://{}", plan.auth),
        engine: format!("http://{}", plan.engine),
        engine_ws: format!("ws://{}/v1/ws", plan.engine),
        app_token,
        body_bytes: args.body_bytes,
        readers_stop: std::cell::Cell::new(false),
        stop: tokio::sync::Notify::new(),
    });

    // Provisioning happens before any kill, so plain retries suffice.
    let mut chats = Vec::with_capacity(args.chats);
    for _ in 0..args.chats {
        let answer = ctx
            .request("create chat", args.ready_timeout, || {
                ctx.http
                    .post(format!("{api}/v1/chats"))
                    .bearer_auth(&ctx.app_token)
                    .json(&json!({}))
            })
            .await
            .context("creating a chat: no answer")?;
        let number = answer.body["number"]
            .as_u64()
            .with_context(|| format!("creating a chat: {} {}", answer.status, answer.body))?;
        chats.push(number);
    }
    let publishers_total = args.chats * (args.ws_publishers + args.http_publishers);
    let pace = Duration::from_secs_f64(publishers_total as f64 / args.rate);
    let mut tasks = Vec::new();
    for (c, &chat) in chats.iter().enumerate() {
        let ws_users: Vec<String> = (0..args.ws_publishers)
            .map(|k| format!("c{c}w{k}"))
            .collect();
        let readers: Vec<String> = (0..args.readers).map(|k| format!("c{c}r{k}")).collect();
        for user in ws_users.iter().chain(&readers) {
            let answer = ctx
                .request("subscribe", args.ready_timeout, || {
                    ctx.http
                        .put(format!("{api}/v1/chats/{chat}/subscribers/{user}"))
                        .bearer_auth(&ctx.app_token)
                })
                .await;
            match answer {
                Some(a) if a.status == 201 => {}
                other => bail!(
                    "subscribing {user}: {:?}",
                    other.map(|a| (a.status, a.body))
                ),
            }
            ledger
                .subscribers
                .borrow_mut()
                .entry(chat)
                .or_default()
                .insert(user.clone());
        }
        for user in ws_users {
            tasks.push(tokio::task::spawn_local(actors::ws_publisher(
                ctx.clone(),
                chat,
                user,
                pace,
                args.window,
            )));
        }
        for k in 0..args.http_publishers {
            tasks.push(tokio::task::spawn_local(actors::http_publisher(
                ctx.clone(),
                chat,
                format!("c{c}h{k}"),
                pace,
            )));
        }
        for user in readers {
            let index = {
                let mut readers = ledger.readers.borrow_mut();
                readers.push((chat, ledger::Delivered::default()));
                readers.len() - 1
            };
            // Spread the readers' deliberate reconnects apart.
            let every = args.reader_reconnect + Duration::from_millis(137 * index as u64);
            tasks.push(tokio::task::spawn_local(actors::reader(
                ctx.clone(),
                index,
                chat,
                user,
                every,
            )));
        }
        tasks.push(tokio::task::spawn_local(actors::churner(
            ctx.clone(),
            chat,
            format!("c{c}x"),
            Duration::from_millis(700),
        )));
    }

    wait_for_acks(&ledger, WARM_UP_ACKS, args.stall_timeout)
        .await
        .context("the traffic did not start")?;
    println!(
        "[{:7.1}s] traffic running: {} acks; killing",
        ledger.elapsed_s(),
        ledger.acks()
    );

    let mut rng = Rng::new(seed);
    let mut kills_by = [0u32; 3];
    let mut kills = 0u32;
    let mut checkpoints = 0u32;
    let mut checked = check::Checked::default();
    while kills < args.kills {
        let gap_ms = args.kill_gap_ms_min
            + rng.below((args.kill_gap_ms_max - args.kill_gap_ms_min + 1) as usize) as u64;
        let kind = Kind::ALL[rng.below(3)];
        let down_ms = rng.below(args.down_ms_max as usize + 1) as u64;
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
        if let Some((kind, status)) = services.exited() {
            ledger.violation(format!("{} exited by itself: {status}", kind.name()));
            services.start(kind)?;
        }
        let acks_at_kill = ledger.acks();
        let at_s = ledger.elapsed_s();
        let pid = services.kill(kind).await?;
        kills += 1;
        kills_by[kind.index()] += 1;
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        services.start(kind)?;
        let ready = services.wait_healthy(kind, args.ready_timeout).await;
        let line = format!(
            "[{at_s:7.1}s] kill {kills}/{}: {:<6} (pid {pid}), {acks_at_kill} acks so far; down {down_ms} ms",
            args.kills,
            kind.name()
        );
        match ready {
            Ok(took) => println!(
                "{line}, healthy again {:.2} s after restart",
                took.as_secs_f64()
            ),
            Err(error) => {
                println!("{line}");
                ledger.violation(format!("wedged after kill {kills}: {error:#}"));
                break;
            }
        }
        // The others must have stayed up and must serve again (the engine
        // answers 503 while its commits fail).
        if let Err(error) = services.wait_all_healthy(args.ready_timeout).await {
            ledger.violation(format!("after kill {kills}: {error:#}"));
            break;
        }
        let after = ledger.acks();
        if let Err(error) = wait_for_acks(&ledger, after + 1, args.stall_timeout).await {
            ledger.violation(format!(
                "wedged after kill {kills} ({}): {error:#}",
                kind.name()
            ));
            break;
        }
        if args.checkpoint_every > 0
            && kills.is_multiple_of(args.checkpoint_every)
            && kills < args.kills
        {
            checkpoints += 1;
            checked = checkpoint(&ctx, &chats, &format!("checkpoint after kill {kills}")).await;
        }
    }

    // The end: no new messages; every send answered; then the check.
    ledger.stopping.set(true);
    ledger.changed.notify_waiters();
    checkpoints += 1;
    checked = match quiesce(&ledger).await {
        Ok(()) => {
            let result = check::check(&ctx, &chats, CATCH_UP).await;
            report_check(&ledger, "final check", &result);
            result
        }
        Err(error) => {
            ledger.violation(format!("at the end: {error:#}"));
            checked
        }
    };
    // Then all three killed at rest and started again: what was durable
    // must still be there, unchanged.
    for kind in [Kind::Engine, Kind::Auth, Kind::Api] {
        services.kill(kind).await?;
    }
    for kind in Kind::ALL {
        services.start(kind)?;
        if let Err(error) = services.wait_healthy(kind, args.ready_timeout).await {
            ledger.violation(format!("restart after killing all three: {error:#}"));
        }
    }
    let again = check::check(&ctx, &chats, CATCH_UP).await;
    report_check(&ledger, "after killing all three at rest", &again);
    ctx.readers_stop.set(true);
    ctx.stop.notify_waiters();
    for task in &tasks {
        task.abort();
    }

    let run_s = began.elapsed().as_secs_f64();
    let counters = &ledger.counters;
    println!("chaos summary (seed {seed}):");
    println!(
        "  kills: {kills} (api {}, auth {}, engine {}), {checkpoints} checks at rest",
        kills_by[0], kills_by[1], kills_by[2]
    );
    println!(
        "  acknowledged messages checked: {} (stored {}, stored without an ack: {})",
        checked.acked_checked, checked.stored, checked.stored_unacked
    );
    println!(
        "  traffic: {} ws sends, {} ws resends, {} ws publisher reconnects, {} http publishes \
         ({} retries), {} deliveries, {} reader reconnects, {} tokens minted",
        counters.ws_sent.get(),
        counters.ws_resends.get(),
        counters.ws_reconnects.get(),
        counters.http_publishes.get(),
        counters.http_retries.get(),
        counters.deliveries.get(),
        counters.reader_reconnects.get(),
        counters.tokens_minted.get()
    );
    let mut passing: Vec<(String, u64)> = counters
        .retryable_errors
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    passing.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    let passing: Vec<String> = passing
        .iter()
        .take(12)
        .map(|(k, v)| format!("{k} x{v}"))
        .collect();
    println!("  retried through: {}", passing.join(", "));
    let violations = ledger.violations_count();
    println!("  violations: {violations}");
    for violation in ledger.violations() {
        println!("    - {violation}");
    }
    println!("  run time: {run_s:.1} s");
    println!("chaos: {}", if violations == 0 { "PASS" } else { "FAIL" });
    Ok(Summary {
        kills,
        kills_by,
        checked,
        checkpoints,
        violations,
        violation_list: ledger.violations(),
        run_s,
    })
}

/// Pauses new traffic, waits until every send is answered, checks, resumes.
async fn checkpoint(ctx: &Ctx, chats: &[u64], what: &str) -> check::Checked {
    let ledger = &ctx.ledger;
    ledger.paused.set(true);
    ledger.changed.notify_waiters();
    let result = match quiesce(ledger).await {
        Ok(()) => {
            let result = check::check(ctx, chats, CATCH_UP).await;
            report_check(ledger, what, &result);
            result
        }
        Err(error) => {
            ledger.violation(format!("{what}: {error:#}"));
            check::Checked::default()
        }
    };
    ledger.paused.set(false);
    ledger.changed.notify_waiters();
    result
}

fn report_check(ledger: &Ledger, what: &str, result: &check::Checked) {
    println!(
        "[{:7.1}s] {what}: {} acknowledged messages checked, {} stored, {} violations so far",
        ledger.elapsed_s(),
        result.acked_checked,
        result.stored,
        ledger.violations_count()
    );
}

async fn quiesce(ledger: &Ledger) -> anyhow::Result<()> {
    let deadline = Instant::now() + QUIESCE_TIMEOUT;
    while ledger.outstanding.get() > 0 {
        if Instant::now() >= deadline {
            bail!(
                "{} sends still unanswered after {QUIESCE_TIMEOUT:?}",
                ledger.outstanding.get()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_for_acks(ledger: &Ledger, acks: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while ledger.acks() < acks {
        if Instant::now() >= deadline {
            bail!(
                "no new acknowledgement for {limit:?} ({} so far)",
                ledger.acks()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
