//! Closed-loop request phases: N requests in flight for a duration, each
//! checked, their latency recorded. Shared by `reads` and `search`.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::report;
use crate::stats;

/// What one phase measured.
pub struct Phase {
    pub name: &'static str,
    pub latency_us: Histogram<u64>,
    pub requests: u64,
    pub failures: Vec<String>,
    pub elapsed: Duration,
}

impl Phase {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Prints the phase's line and its first failures; true when none failed.
    pub fn print(&self) -> bool {
        println!(
            "{:>12}: {:.0} requests/s  {}",
            self.name,
            self.requests_per_second(),
            report::latency_line(&self.latency_us)
        );
        for failure in self.failures.iter().take(5) {
            println!("              failure: {failure}");
        }
        self.failures.is_empty()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "failures": self.failures.len(),
            "seconds": self.elapsed.as_secs_f64(),
            "latency_us": report::latency_json(&self.latency_us),
        })
    }
}

/// Runs `concurrency` workers for `duration`; each sends `request(i)`
/// (i counts requests from 1 over all workers) and waits for its outcome.
pub async fn run<F, Fut>(
    name: &'static str,
    concurrency: usize,
    duration: Duration,
    request: F,
) -> Phase
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let phase = RefCell::new(Phase {
        name,
        latency_us: stats::histogram(),
        requests: 0,
        failures: Vec::new(),
        elapsed: Duration::ZERO,
    });
    let bar = report::run_bar(duration);
    bar.set_message(name);
    let started = Instant::now();
    let next = RefCell::new(0usize);
    let worker = || async {
        while started.elapsed() < duration {
            let i = {
                let mut next = next.borrow_mut();
                *next += 1;
                *next
            };
            let sent = Instant::now();
            let outcome = request(i).await;
            let took_us = sent.elapsed().as_micros() as u64;
            let mut phase = phase.borrow_mut();
            phase.requests += 1;
            let _ = phase
                .latency_us
                .record(took_us.clamp(1, stats::LATENCY_MAX_US));
            if let Err(failure) = outcome {
                phase.failures.push(failure);
            }
            bar.set_position(started.elapsed().as_secs());
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
    bar.finish_and_clear();
    let mut phase = phase.into_inner();
    phase.elapsed = started.elapsed();
    phase
}
