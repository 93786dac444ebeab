//! `GET /healthz`: 200 only if the store takes a durable write now. Each
//! check is [`Store::probe_write`] (one tiny synced record), and its result
//! is reused for [`PROBE_CACHE`], so however often `/healthz` is called the
//! store pays at most one probe (one fsync) per that interval; concurrent
//! checks wait for the one probe in progress instead of starting their own.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::http::AppState;
use crate::store::Store;

/// How long a probe's result answers health checks.
pub const PROBE_CACHE: Duration = Duration::from_secs(1);

/// The last probe: when it ran and what it found (`Err` holds the reason).
#[derive(Default)]
pub struct HealthProbe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl HealthProbe {
    /// The store's health, probed unless a probe ran within [`PROBE_CACHE`].
    pub async fn check(&self, store: &dyn Store) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < PROBE_CACHE
        {
            return result.clone();
        }
        let result = store.probe_write().await.map_err(|error| {
            tracing::warn!(%error, "health probe: the store refuses writes");
            format!("the store refuses writes: {error}")
        });
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.health.check(state.store.as_ref()).await {
        Ok(()) => "ok\n".into_response(),
        Err(reason) => ApiError::Unavailable(reason).into_response(),
    }
}
