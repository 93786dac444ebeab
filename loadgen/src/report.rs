//! Output: progress bars, the human summary, the JSON file and the plot.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::stats::{Sample, Stats, quantile};

/// A bar for provisioning or connecting `len` items.
pub fn counter_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<14} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// The bar of the measured phase: elapsed seconds of `len`, and a message
/// with the current rate and p99.
pub fn run_bar(len: Duration) -> ProgressBar {
    let bar = ProgressBar::new(len.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:20}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Microseconds as "850 µs", "12.3 ms", "1.20 s".
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

pub fn latency_json(histogram: &Histogram<u64>) -> Value {
    json!({
        "count": histogram.len(),
        "p50": quantile(histogram, 0.5),
        "p90": quantile(histogram, 0.9),
        "p99": quantile(histogram, 0.99),
        "p999": quantile(histogram, 0.999),
        "max": histogram.max(),
        "mean": if histogram.is_empty() { 0.0 } else { (histogram.mean() * 10.0).round() / 10.0 },
    })
}

pub fn latency_line(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return "none recorded".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        fmt_us(quantile(histogram, 0.5)),
        fmt_us(quantile(histogram, 0.9)),
        fmt_us(quantile(histogram, 0.99)),
        fmt_us(quantile(histogram, 0.999)),
        fmt_us(histogram.max()),
        histogram.len()
    )
}

/// CPU time of the load generator and the engine over the measured phase.
#[derive(Default, Clone, Copy)]
pub struct Cpu {
    pub loadgen: Duration,
    pub engine: Option<Duration>,
    pub wall: Duration,
}

/// Everything a run reports. `extra` holds the scenario's own fields.
pub struct Report {
    pub scenario: &'static str,
    pub connections: usize,
    /// The measured window: first send to last delivery (or end of drain).
    pub window: Duration,
    pub lost: u64,
    pub cpu: Cpu,
    pub extra: Map<String, Value>,
    /// Lines printed under the summary's title.
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &'static str, connections: usize) -> Self {
        Self {
            scenario,
            connections,
            window: Duration::ZERO,
            lost: 0,
            cpu: Cpu::default(),
            extra: Map::new(),
            notes: Vec::new(),
        }
    }

    /// Did the run see anything wrong with the deliveries?
    pub fn failed(&self, stats: &Stats) -> bool {
        self.lost > 0 || stats.duplicates > 0 || stats.misrouted > 0 || !stats.closes.is_empty()
    }

    fn deliveries_per_sec(&self, stats: &Stats) -> f64 {
        let seconds = self.window.as_secs_f64();
        if seconds > 0.0 {
            stats.deliveries as f64 / seconds
        } else {
            0.0
        }
    }

    fn cpu_per_delivery_us(&self, cpu: Duration, stats: &Stats) -> Option<f64> {
        (stats.deliveries > 0).then(|| cpu.as_secs_f64() * 1e6 / stats.deliveries as f64)
    }

    pub fn to_json(&self, stats: &Stats) -> Value {
        let mut out = json!({
            "scenario": self.scenario,
            "deliveries": stats.deliveries,
            "deliveries_per_sec": (self.deliveries_per_sec(stats) * 10.0).round() / 10.0,
            "latency_us": latency_json(&stats.latency),
            "lost": self.lost,
            "duplicates": stats.duplicates,
            "misrouted": stats.misrouted,
            "connections": self.connections,
            "window_s": self.window.as_secs_f64(),
            "sent": stats.sent,
            "acked": stats.acked,
            "errors": stats.errors,
            "unexpected_closes": stats.closes,
            "problems": stats.problems,
            "loadgen_cpu_s": self.cpu.loadgen.as_secs_f64(),
            "loadgen_cpu_us_per_delivery": self.cpu_per_delivery_us(self.cpu.loadgen, stats),
            "loadgen_cpu_utilisation": utilisation(self.cpu.loadgen, self.cpu.wall),
            "engine_cpu_s": self.cpu.engine.map(|d| d.as_secs_f64()),
            "engine_cpu_us_per_delivery": self.cpu.engine.and_then(|d| self.cpu_per_delivery_us(d, stats)),
            "timeline": stats.timeline,
        });
        if !stats.publish_latency.is_empty() {
            out["publish_latency_us"] = latency_json(&stats.publish_latency);
        }
        if !stats.lag.is_empty() {
            out["loadgen_timer_lag_us"] = latency_json(&stats.lag);
        }
        if let Value::Object(map) = &mut out {
            for (key, value) in &self.extra {
                map.insert(key.clone(), value.clone());
            }
        }
        out
    }

    pub fn print(&self, stats: &Stats) {
        println!();
        println!("== loadgen {} ==", self.scenario);
        for note in &self.notes {
            println!("  {note}");
        }
        println!("  connections     {}", self.connections);
        if stats.sent > 0 || stats.acked > 0 {
            println!("  sent            {}  (acked {})", stats.sent, stats.acked);
        }
        if stats.deliveries > 0 {
            println!(
                "  deliveries      {} in {:.2} s = {:.0}/s",
                stats.deliveries,
                self.window.as_secs_f64(),
                self.deliveries_per_sec(stats)
            );
            println!("  latency         {}", latency_line(&stats.latency));
        }
        if !stats.publish_latency.is_empty() {
            println!("  publish answer  {}", latency_line(&stats.publish_latency));
        }
        let cpu = self.cpu;
        let per = |d: Duration| {
            self.cpu_per_delivery_us(d, stats)
                .map_or(String::new(), |us| format!(", {us:.2} µs per delivery"))
        };
        println!(
            "  loadgen CPU     {:.2} s over {:.2} s ({:.0}% of a core{})",
            cpu.loadgen.as_secs_f64(),
            cpu.wall.as_secs_f64(),
            utilisation(cpu.loadgen, cpu.wall) * 100.0,
            per(cpu.loadgen)
        );
        if !stats.lag.is_empty() {
            println!(
                "  loadgen lag     10 ms timer late by p50 {}  p99 {}  max {}",
                fmt_us(quantile(&stats.lag, 0.5)),
                fmt_us(quantile(&stats.lag, 0.99)),
                fmt_us(stats.lag.max())
            );
        }
        if let Some(engine) = cpu.engine {
            println!(
                "  engine CPU      {:.2} s ({:.0}% of a core{})",
                engine.as_secs_f64(),
                utilisation(engine, cpu.wall) * 100.0,
                per(engine)
            );
        }
        if let Some(Value::Object(engine)) = self.extra.get("engine_metrics_delta") {
            let get = |name: &str| engine.get(name).and_then(Value::as_f64);
            if let (Some(commit), Some(batch)) =
                (get("mean_commit_latency_us"), get("mean_batch_messages"))
            {
                println!(
                    "  engine commits  {:.0} batches, mean {batch:.1} messages, mean commit {} \
                     (of which the API's store commit {})",
                    get("chat_engine_commit_latency_us_count").unwrap_or(0.0),
                    fmt_us(commit as u64),
                    get("mean_api_commit_us").map_or("?".into(), |us| fmt_us(us as u64))
                );
            }
            let quantiles = |stem: &str| {
                let one = |label: &str| match engine.get(&format!("{stem}_{label}")) {
                    Some(Value::Number(us)) => fmt_us(us.as_f64().unwrap_or(0.0) as u64),
                    Some(other) => other.to_string(),
                    None => "?".into(),
                };
                format!(
                    "p50 {}  p99 {}  p99.9 {}",
                    one("p50"),
                    one("p99"),
                    one("p999")
                )
            };
            if engine.contains_key("chat_engine_commit_latency_us_p50") {
                println!(
                    "  commit          {}  (bucket bounds)",
                    quantiles("chat_engine_commit_latency_us")
                );
                println!(
                    "  of it the API   {}",
                    quantiles("chat_engine_commit_api_us")
                );
            }
            if engine.contains_key("chat_engine_reactor_lag_us_p50") {
                println!(
                    "  reactor lag     {}",
                    quantiles("chat_engine_reactor_lag_us")
                );
                println!(
                    "    of it on CPU  {}",
                    quantiles("chat_engine_reactor_lag_on_cpu_us")
                );
            }
            if let Some(delivered) = get("chat_engine_deliveries_total") {
                println!("  engine counted  {delivered:.0} deliveries");
            }
        }
        if !stats.errors.is_empty() {
            println!("  error frames    {:?}", stats.errors);
        }
        if stats.errors.contains_key("rate_limited") {
            println!(
                "  note: rate_limited: the engine allows 200 sends/s per connection by default; \
                 raise CHAT_SENDS_PER_SECOND_MAX for this run"
            );
        }
        if !stats.closes.is_empty() {
            println!("  unexpected ends {:?}", stats.closes);
        }
        println!(
            "  check           lost {}  duplicates {}  misrouted {}",
            self.lost, stats.duplicates, stats.misrouted
        );
        if !stats.problems.is_empty() {
            println!(
                "  problems ({} in all, first {}):",
                stats.problems_total,
                stats.problems.len()
            );
            for problem in &stats.problems {
                println!("    {problem}");
            }
        }
        println!(
            "  result          {}",
            if self.failed(stats) {
                "FAILED: deliveries were lost, duplicated, misrouted or cut off"
            } else {
                "ok: every receiver got every message once, in order"
            }
        );
    }

    /// Prints the summary and writes the JSON and the plot when asked.
    pub fn finish(
        &self,
        stats: &Stats,
        json_path: Option<&Path>,
        plot_path: Option<&Path>,
    ) -> anyhow::Result<()> {
        self.print(stats);
        if let Some(path) = json_path {
            let text = serde_json::to_string_pretty(&self.to_json(stats))?;
            std::fs::write(path, text + "\n")?;
            println!("  wrote           {}", path.display());
        }
        if let Some(path) = plot_path {
            let title = format!("loadgen {}", self.scenario);
            crate::plot::draw(path, &title, &stats.timeline)?;
            println!("  wrote           {}", path.display());
        }
        Ok(())
    }
}

fn utilisation(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        (cpu.as_secs_f64() / wall.as_secs_f64() * 1000.0).round() / 1000.0
    }
}

/// Points of one line of a plot.
pub type Points = Vec<(f64, f64)>;

/// Throughput and p99 (ms) for a plot, from the timeline.
pub fn series(timeline: &[Sample]) -> (Points, Points) {
    let throughput = timeline
        .iter()
        .map(|s| (s.t_s, s.deliveries_per_sec))
        .collect();
    let p99 = timeline
        .iter()
        .filter(|s| s.deliveries > 0)
        .map(|s| (s.t_s, s.p99_us as f64 / 1_000.0))
        .collect();
    (throughput, p99)
}
