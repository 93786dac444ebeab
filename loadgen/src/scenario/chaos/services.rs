//! The three services of a chaos run as child processes of the load
//! generator: the persistence API, the auth service and the engine, each a
//! `chat <subcommand>` on a fixed loopback port with one data dir. A service
//! is killed with SIGKILL and started again with the same command, so a
//! restart sees exactly what the killed process left on disk.
//!
//! The load generator is never killed: it is the parent, and its children
//! die with it (`PR_SET_PDEATHSIG`), so an aborted run leaves no service
//! behind holding the ports.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// How often a service's `/healthz` is asked while it starts.
const HEALTH_POLL: Duration = Duration::from_millis(50);
/// One health request's longest wait.
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Api,
    Auth,
    Engine,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Api, Kind::Auth, Kind::Engine];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Auth => "auth",
            Kind::Engine => "engine",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Kind::Api => 0,
            Kind::Auth => 1,
            Kind::Engine => 2,
        }
    }
}

/// Where and how the services run; the same for every (re)start.
pub struct Plan {
    pub chat_bin: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub store: String,
    pub shards: usize,
    pub operator_key: String,
    pub api: SocketAddr,
    pub auth: SocketAddr,
    pub engine: SocketAddr,
}

impl Plan {
    pub fn addr(&self, kind: Kind) -> SocketAddr {
        match kind {
            Kind::Api => self.api,
            Kind::Auth => self.auth,
            Kind::Engine => self.engine,
        }
    }

    fn command(&self, kind: Kind) -> anyhow::Result<Command> {
        let log_path = self.log_dir.join(format!("{}.log", kind.name()));
        // Appended, so the log of every incarnation of a service is kept.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new(&self.chat_bin);
        command
            .arg(kind.name())
            .env("CHAT_ENGINE_ADDR", self.engine.to_string())
            .env("CHAT_API_ADDR", self.api.to_string())
            .env("CHAT_AUTH_ADDR", self.auth.to_string())
            .env("CHAT_OPERATOR_KEY", &self.operator_key)
            .env("CHAT_DATA_DIR", &self.data_dir)
            .env("CHAT_STORE", &self.store)
            // Embedded search needs the embedded store (OpenSearch is not built yet).
            .env(
                "CHAT_SEARCH",
                if self.store.starts_with("scylla://") {
                    "off"
                } else {
                    "embedded"
                },
            )
            .env("CHAT_SHARDS", self.shards.to_string())
            // The run's publishers send far above a person's rate.
            .env("CHAT_SENDS_PER_SECOND_MAX", "100000")
            .env(
                "RUST_LOG",
                std::env::var("CHAT_CHAOS_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // SAFETY: prctl in the forked child before exec touches no memory of
        // the parent; it asks the kernel to SIGKILL the child when we die.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(command)
    }
}

pub struct Services {
    pub plan: Plan,
    children: [Option<Child>; 3],
    http: reqwest::Client,
}

impl Services {
    pub fn new(plan: Plan) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&plan.log_dir)
            .with_context(|| format!("creating {}", plan.log_dir.display()))?;
        let http = reqwest::Client::builder()
            .timeout(HEALTH_REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            plan,
            children: [None, None, None],
            http,
        })
    }

    /// Starts a service (not waiting for it to be healthy).
    pub fn start(&mut self, kind: Kind) -> anyhow::Result<u32> {
        let child = self.plan.command(kind)?.spawn().with_context(|| {
            format!("starting {} {}", self.plan.chat_bin.display(), kind.name())
        })?;
        let pid = child.id().unwrap_or(0);
        self.children[kind.index()] = Some(child);
        Ok(pid)
    }

    /// SIGKILL, then reaps it. Returns the pid it had.
    pub async fn kill(&mut self, kind: Kind) -> anyhow::Result<u32> {
        let Some(child) = self.children[kind.index()].as_mut() else {
            bail!("{} is not running", kind.name());
        };
        let pid = child.id().unwrap_or(0);
        child
            .start_kill()
            .with_context(|| format!("killing {}", kind.name()))?;
        child.wait().await?;
        self.children[kind.index()] = None;
        Ok(pid)
    }

    /// A service that ended by itself since the last look, and how.
    pub fn exited(&mut self) -> Option<(Kind, ExitStatus)> {
        for kind in Kind::ALL {
            if let Some(child) = self.children[kind.index()].as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.children[kind.index()] = None;
                return Some((kind, status));
            }
        }
        None
    }

    /// Waits until the service answers `/healthz` with 200, at most `limit`.
    /// Fails when it exits meanwhile or does not get healthy in time.
    pub async fn wait_healthy(&mut self, kind: Kind, limit: Duration) -> anyhow::Result<Duration> {
        let began = Instant::now();
        let url = format!("http://{}/healthz", self.plan.addr(kind));
        loop {
            if let Some(child) = self.children[kind.index()].as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.children[kind.index()] = None;
                bail!("{} exited while starting: {status}", kind.name());
            }
            let last = match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(began.elapsed()),
                Ok(response) => {
                    format!(
                        "{} {}",
                        response.status(),
                        response.text().await.unwrap_or_default().trim()
                    )
                }
                Err(error) => error.to_string(),
            };
            if began.elapsed() > limit {
                bail!(
                    "{} not healthy within {limit:?} (last answer: {last})",
                    kind.name()
                );
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Waits until every service is healthy.
    pub async fn wait_all_healthy(&mut self, limit: Duration) -> anyhow::Result<()> {
        for kind in Kind::ALL {
            self.wait_healthy(kind, limit).await?;
        }
        Ok(())
    }

    /// Stops every service with SIGTERM (a graceful end of the run), killing
    /// one that takes longer than `limit`.
    pub async fn stop_all(&mut self, limit: Duration) {
        for kind in [Kind::Engine, Kind::Auth, Kind::Api] {
            let Some(mut child) = self.children[kind.index()].take() else {
                continue;
            };
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on our own child's pid with a valid signal.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
            if tokio::time::timeout(limit, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}

/// Picks a free loopback port (bound and released: the services bind it
/// with SO_REUSEADDR, so a restart finds it again after a kill).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `chat` next to this executable (`target/<profile>/chat` when both were
/// built by cargo).
pub fn default_chat_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("chat");
    candidate.exists().then_some(candidate)
}

pub fn describe(path: &Path) -> String {
    path.display().to_string()
}
