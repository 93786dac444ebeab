//! `--plot FILE.png`: deliveries per second and p99 latency over time, one
//! point a second (plotters, bitmap backend). Text is drawn with a TrueType
//! font found on the system (DejaVu or Liberation, or `LOADGEN_FONT`);
//! without one the chart is drawn unlabelled.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::stats::Sample;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font once; false when none could be loaded.
fn font_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let from_env = std::env::var("LOADGEN_FONT").ok();
        let candidates = from_env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS.iter().copied());
        for path in candidates {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
        false
    })
}

pub fn draw(path: &Path, title: &str, timeline: &[Sample]) -> anyhow::Result<()> {
    let text = font_available();
    if !text {
        eprintln!("note: no TrueType font found (set LOADGEN_FONT); the plot has no labels");
    }
    let (throughput, p99) = crate::report::series(timeline);
    let x_max = timeline.last().map_or(1.0, |s| s.t_s.ceil()).max(1.0);
    let y1_max = throughput.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let y2_max = p99.iter().map(|p| p.1).fold(0.1, f64::max) * 1.1;

    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let (upper, lower) = root.split_vertically(400);
    let panels = [
        (
            &upper,
            format!("{title}: deliveries per second"),
            "deliveries/s",
            throughput,
            y1_max,
            BLUE,
        ),
        (
            &lower,
            format!("{title}: p99 latency per second"),
            "p99 (ms)",
            p99,
            y2_max,
            RED,
        ),
    ];
    for (area, caption, y_desc, points, y_max, color) in panels {
        let mut builder = ChartBuilder::on(area);
        builder.margin(12);
        if text {
            builder
                .caption(caption, ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(80);
        }
        let mut chart = builder
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| anyhow!("plot: {e}"))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("seconds")
                .y_desc(y_desc)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| {
                    if *v >= 100.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                });
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| anyhow!("plot: {e}"))?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}
