//! `chat up`: the newcomer's command. Starts every service (persistence API,
//! auth service, engine) as a child process of this binary (so each keeps its own runtime and can be
//! killed alone), waits until each answers `GET /healthz`, prints the URLs
//! and the operator key, and on SIGTERM or Ctrl-C stops them all gracefully.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::cli::UpArgs;

/// How long a service may take to answer its first health check.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a service may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

struct Service {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let (operator_key, generated) = match args.operator_key.clone().filter(|key| !key.is_empty()) {
        Some(key) => (key, false),
        None => (chat_persistence::credentials::new_operator_key(), true),
    };
    let exe = std::env::current_exe().context("locating the chat binary")?;
    // Each service is this binary with a subcommand; all share the operator
    // key, the data dir and one another's addresses through the environment.
    let command = |subcommand: &str| {
        let mut command = Command::new(&exe);
        command
            .arg(subcommand)
            .env("CHAT_ENGINE_ADDR", args.engine_addr.to_string())
            .env("CHAT_API_ADDR", args.api_addr.to_string())
            .env("CHAT_AUTH_ADDR", args.auth_addr.to_string())
            .env("CHAT_OPERATOR_KEY", &operator_key)
            .env("CHAT_DATA_DIR", &args.store.data_dir)
            .env("CHAT_STORE", &args.store.store)
            .kill_on_drop(true);
        // Embedded search needs the embedded store; on ScyllaDB it is off
        // until the OpenSearch backend exists.
        if args.store.store.starts_with("scylla://") {
            command.env("CHAT_SEARCH", "off");
        }
        command
    };
    // In dependency order: the engine reads the auth service's keys at start,
    // and both call the persistence API.
    let plan = [
        ("persistence API", "api", args.api_addr),
        ("auth service", "auth", args.auth_addr),
        ("engine", "engine", args.engine_addr),
    ];
    let mut services: Vec<Service> = Vec::new();
    for (name, subcommand, addr) in plan {
        let spawned = command(subcommand)
            .spawn()
            .with_context(|| format!("starting the {name}"));
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                stop_all(&mut services).await;
                return Err(error);
            }
        };
        services.push(Service { name, addr, child });
        let started = services.last_mut().expect("just pushed");
        if let Err(error) = wait_ready(started).await {
            stop_all(&mut services).await;
            return Err(error);
        }
    }

    println!("chat is up");
    for service in &services {
        println!("  {:<16} http://{}", service.name, service.addr);
    }
    let origin = if generated {
        "generated for this run"
    } else {
        "from CHAT_OPERATOR_KEY"
    };
    println!("  {:<16} {operator_key}  ({origin})", "operator key");
    println!("Ctrl-C stops everything.");

    let outcome = tokio::select! {
        () = chat_persistence::shutdown_signal() => Ok(()),
        (name, status) = first_exit(&mut services) => Err(anyhow::anyhow!("{name} exited unexpectedly: {status}")),
    };
    let clean = stop_all(&mut services).await;
    outcome?;
    if !clean {
        bail!("a service did not stop cleanly");
    }
    Ok(())
}

async fn wait_ready(service: &mut Service) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://{}/healthz", service.addr);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = service.child.try_wait()? {
            bail!("{} exited during start-up: {status}", service.name);
        }
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} did not answer {url} within {READY_TIMEOUT:?}",
                service.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn first_exit(services: &mut [Service]) -> (&'static str, ExitStatus) {
    loop {
        for service in services.iter_mut() {
            if let Ok(Some(status)) = service.child.try_wait() {
                return (service.name, status);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends SIGTERM to every running service and waits for each; kills one
/// that outlives [`STOP_TIMEOUT`]. Returns whether all exited with success.
async fn stop_all(services: &mut [Service]) -> bool {
    let mut clean = true;
    for service in services.iter_mut().rev() {
        if service.child.try_wait().ok().flatten().is_some() {
            continue;
        }
        if let Some(pid) = service.child.id() {
            // SAFETY: kill(2) with a pid of our own child and a valid signal has no memory effects.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        match tokio::time::timeout(STOP_TIMEOUT, service.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                eprintln!("chat: {} exited with {status}", service.name);
                clean = false;
            }
            Ok(Err(error)) => {
                eprintln!("chat: waiting for {}: {error}", service.name);
                clean = false;
            }
            Err(_) => {
                eprintln!(
                    "chat: {} did not stop within {STOP_TIMEOUT:?}; killing it",
                    service.name
                );
                let _ = service.child.kill().await;
                clean = false;
            }
        }
    }
    clean
}
