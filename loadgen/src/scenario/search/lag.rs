//! The index lag under a steady ingest: lanes post batches at a total
//! rate; one message every `probe_interval` carries a unique probe word,
//! and from its batch's acknowledgement the prober searches for it until
//! it is found. The time between the two is what a user waits between
//! "sent" and "searchable". Meanwhile the API's own lag gauge
//! (`chat_api_search_lag_seconds`) is sampled.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chat_wire::limits::BATCH_MESSAGES_MAX;
use hdrhistogram::Histogram;

use super::ingest::{Ingest, Probe, TICK};
use super::queries;
use crate::provision::Provisioner;
use crate::{report, stats, sys};

/// How often a pending probe is searched for.
const PROBE_POLL: Duration = Duration::from_millis(10);
/// How often the API's lag gauge is read.
const GAUGE_SAMPLE: Duration = Duration::from_millis(100);

pub struct LagPlan {
    pub rate: f64,
    pub duration: Duration,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
}

pub struct LagReport {
    pub acked_messages: u64,
    pub elapsed: Duration,
    /// Acknowledged to found, per probe, in microseconds.
    pub probe_lag_us: Histogram<u64>,
    /// Probes not found within the timeout.
    pub probes_missing: u64,
    /// The API's lag gauge, sampled, in microseconds.
    pub gauge_lag_us: Histogram<u64>,
}

impl LagReport {
    /// Probes sent: each was found (and its lag recorded) or went missing.
    pub fn probes(&self) -> u64 {
        self.probe_lag_us.len() + self.probes_missing
    }

    pub fn rate(&self) -> f64 {
        self.acked_messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run(prov: &Provisioner, ingest: &Ingest, plan: &LagPlan) -> anyhow::Result<LagReport> {
    let pending: RefCell<VecDeque<Probe>> = RefCell::new(VecDeque::new());
    let sending = Cell::new(true);
    let ingest_elapsed = Cell::new(Duration::ZERO);
    let acked_before = ingest.acked_messages.get();
    let started = Instant::now();
    let bar = report::run_bar(plan.duration);
    bar.set_message("ingest");

    let lane = |lane: usize| {
        let (pending, bar) = (&pending, &bar);
        async move {
            let rate_per_lane = plan.rate / ingest.lanes() as f64;
            let mut sent = 0u64;
            let mut next_probe = started;
            let mut probe_id = 0u64;
            while started.elapsed() < plan.duration {
                tokio::time::sleep(TICK).await;
                let due = (rate_per_lane * started.elapsed().as_secs_f64()) as u64;
                let messages = (due.saturating_sub(sent) as usize).min(BATCH_MESSAGES_MAX);
                if messages == 0 {
                    continue;
                }
                let probe = (lane == 0 && Instant::now() >= next_probe).then(|| {
                    next_probe += plan.probe_interval;
                    probe_id += 1;
                    probe_id
                });
                if let Some(probe) = ingest.send(lane, messages, probe).await? {
                    pending.borrow_mut().push_back(probe);
                }
                sent += messages as u64;
                bar.set_position(started.elapsed().as_secs());
            }
            anyhow::Ok(())
        }
    };
    let lanes = async {
        let outcomes = futures_util::future::join_all((0..ingest.lanes()).map(lane)).await;
        sending.set(false);
        ingest_elapsed.set(started.elapsed());
        outcomes.into_iter().collect::<anyhow::Result<Vec<()>>>()
    };

    let mut probe_lag_us = stats::histogram();
    let mut probes_missing = 0u64;
    let prober = async {
        loop {
            let next = pending.borrow().front().copied();
            let Some(probe) = next else {
                if !sending.get() {
                    return;
                }
                tokio::time::sleep(PROBE_POLL).await;
                continue;
            };
            if probe_found(prov, &probe).await {
                pending.borrow_mut().pop_front();
                let lag_us = probe.acked.elapsed().as_micros() as u64;
                let _ = probe_lag_us.record(lag_us.clamp(1, stats::LATENCY_MAX_US));
            } else if probe.acked.elapsed() > plan.probe_timeout {
                pending.borrow_mut().pop_front();
                probes_missing += 1;
            } else {
                tokio::time::sleep(PROBE_POLL).await;
            }
        }
    };

    let mut gauge_lag_us = stats::histogram();
    let sampler = async {
        while sending.get() {
            if let Some(text) = prov.api_metrics().await
                && let Some(lag_s) = sys::metric_sum(&text, "chat_api_search_lag_seconds")
            {
                let _ = gauge_lag_us.record(((lag_s * 1e6) as u64).clamp(1, stats::LATENCY_MAX_US));
            }
            tokio::time::sleep(GAUGE_SAMPLE).await;
        }
    };

    let (sent, (), ()) = tokio::join!(lanes, prober, sampler);
    bar.finish_and_clear();
    sent?;
    Ok(LagReport {
        acked_messages: ingest.acked_messages.get() - acked_before,
        elapsed: ingest_elapsed.get(),
        probe_lag_us,
        probes_missing,
        gauge_lag_us,
    })
}

/// Whether the probe's message is searchable (exactly it, in its chat).
async fn probe_found(prov: &Provisioner, probe: &Probe) -> bool {
    let url = prov.api_url(&format!(
        "/v1/chats/{}/messages/search?q={}&limit=2",
        probe.chat,
        super::corpus::probe_word(probe.probe)
    ));
    match queries::search(prov, &url).await {
        Ok(page) => page
            .hits
            .iter()
            .any(|hit| hit.number == probe.number && hit.chat == probe.chat),
        Err(_) => false,
    }
}
