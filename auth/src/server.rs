//! The auth service's life cycle: load (or make) the signing keys, replay
//! the revocation log, serve until a shutdown signal while a timer rotates
//! and retires keys, then drain in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app_tokens::AppTokens;
use crate::clock;
use crate::config::AuthConfig;
use crate::credentials::OperatorKey;
use crate::http::{AppState, Settings, router};
use crate::keys::{KeyStore, Maintenance};
use crate::limits::{MAINTENANCE_INTERVAL_MAX_S, MAINTENANCE_RETRY_MS};
use crate::metrics::Metrics;
use crate::revocation_log::RevocationLog;

/// The directory of the signing keys, under `<data_dir>/auth/`.
pub const KEYS_DIR: &str = "keys";
/// Shortest pause of the maintenance timer between two runs that did
/// nothing, so a wall clock slightly behind tokio's timer cannot spin it.
const MAINTENANCE_PAUSE_MIN_MS: u64 = 10;

/// A bound server with its keys and revocations loaded, not serving yet;
/// binding first lets a caller learn the port (tests bind port 0) before it
/// serves.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    connections: chat_http_conn::ConnLimits,
}

impl Server {
    pub async fn bind(config: AuthConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let auth_dir = config.auth_dir();
        let now = clock::now_s();
        let metrics = Arc::new(Metrics::default());
        let (keys, report) = KeyStore::open(
            &auth_dir.join(KEYS_DIR),
            config.key_rotation_s,
            config.token_ttl_max_s,
            now,
        )
        .context("loading the signing keys")?;
        record(&metrics, &keys, &report);
        let (revocations, replay) = RevocationLog::open(&auth_dir, config.token_ttl_max_s, now)
            .context("loading the revocation log")?;
        tracing::info!(
            live = replay.live,
            dropped = replay.dropped,
            torn_bytes = replay.torn_bytes,
            "revocation log replayed"
        );
        metrics.live_revocations.set(replay.live as i64);
        let app_tokens = AppTokens::new(config.api_addr, &config.operator_key)
            .context("building the persistence API client")?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let state = AppState {
            keys: Arc::new(keys),
            revocations: Arc::new(revocations),
            app_tokens: Arc::new(app_tokens),
            operator: OperatorKey::new(&config.operator_key),
            settings: Arc::new(Settings {
                token_ttl_default_s: config.token_ttl_default_s,
                token_ttl_max_s: config.token_ttl_max_s,
                request_body_bytes_max: config.request_body_bytes_max,
            }),
            metrics,
            revocation_quota: Arc::new(crate::revocation_quota::RevocationQuota::new(
                config.revocations_per_minute_max,
            )),
        };
        Ok(Self {
            listener,
            state,
            connections: config.connections,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests (and
    /// so their revocation appends) finish. Key rotation runs meanwhile.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.local_addr()?,
            kid = %self.state.keys.signer().kid(),
            "auth service listening"
        );
        let maintenance = tokio::spawn(maintain_forever(self.state.clone()));
        let served = chat_http_conn::serve(
            self.listener,
            router(self.state),
            self.connections,
            shutdown,
        )
        .await
        .context("serving HTTP");
        // A key write in progress finishes on its blocking thread: it is
        // atomic either way (see `keys`).
        maintenance.abort();
        let _ = maintenance.await;
        served?;
        tracing::info!("auth service stopped");
        Ok(())
    }
}

fn record(metrics: &Metrics, keys: &KeyStore, report: &Maintenance) {
    if report.created.is_some() {
        metrics.key_rotations.inc();
    }
    metrics.keys_retired.inc_by(report.retired.len() as u64);
    metrics.verifying_keys.set(keys.jwks().keys.len() as i64);
}

/// The timer: sleeps until the next key is due (or a key retires), runs the
/// key maintenance off the async workers, and forgets expired revocations.
async fn maintain_forever(state: AppState) {
    loop {
        let pause = clock::until_s(state.keys.next_due()).clamp(
            Duration::from_millis(MAINTENANCE_PAUSE_MIN_MS),
            Duration::from_secs(MAINTENANCE_INTERVAL_MAX_S),
        );
        tokio::time::sleep(pause).await;
        let now = clock::now_s();
        let keys = Arc::clone(&state.keys);
        match tokio::task::spawn_blocking(move || keys.maintain(now)).await {
            Ok(Ok(report)) => record(&state.metrics, &state.keys, &report),
            Ok(Err(error)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "key maintenance failed; the current key keeps signing"
                );
                tokio::time::sleep(Duration::from_millis(MAINTENANCE_RETRY_MS)).await;
            }
            Err(error) => {
                tracing::error!(%error, "key maintenance task failed");
                tokio::time::sleep(Duration::from_millis(MAINTENANCE_RETRY_MS)).await;
            }
        }
        let forgotten = state.revocations.prune(now);
        if forgotten > 0 {
            tracing::info!(forgotten, "expired revocations forgotten");
        }
        state
            .metrics
            .live_revocations
            .set(state.revocations.live() as i64);
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}
