//! Tables and charts of simulation outcomes.

use std::fmt::Write as _;

use crate::{percentile, Outcome};

/// A Markdown table of the spike window only (the buckets it overlaps).
pub fn spike_table(outcomes: &[Outcome], start_s: f64, end_s: f64) -> String {
    let mut s = format!(
        "During the spike (requests made {:.0}–{:.0} min):\n\n| policy | requests | unfulfilled | median wait | p90 wait |\n| --- | --- | --- | --- | --- |\n",
        (start_s / 600.0).floor() * 10.0,
        (end_s / 600.0).ceil() * 10.0
    );
    for o in outcomes {
        let w = o.window(start_s, end_s);
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} % | {:.1} min | {:.1} min |",
            o.policy.name(),
            w.requests,
            100.0 * w.unfulfilled_share(),
            w.median_wait() / 60.0,
            percentile(&w.waits, 0.9) / 60.0
        );
    }
    s
}

/// A Markdown table comparing outcomes.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::from(
        "| policy | riders | declined at price | requests | completion | unfulfilled | median wait | p90 wait | mean multiplier | volatility | mean fare | driver earnings/h |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for o in outcomes {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} % | {} | {:.1} % | {:.1} % | {:.1} min | {:.1} min | {:.2} | {:.3} | {:.2} | {:.2} |",
            o.policy.name(),
            o.riders,
            100.0 * f64::from(o.declined) / f64::from(o.riders.max(1)),
            o.requests,
            100.0 * o.completion_rate(),
            100.0 * o.unfulfilled_share(),
            o.wait_percentile(0.5) / 60.0,
            o.wait_percentile(0.9) / 60.0,
            o.mean_multiplier,
            o.volatility,
            o.mean_fare / 100.0,
            o.earnings_per_hour / 100.0,
        );
    }
    s
}

const COLORS: [&str; 5] = ["#c0392b", "#2471a3", "#229954", "#d68910", "#7d3c98"];

/// An SVG chart: median pickup wait (top) and completion rate (bottom) per
/// 10-minute bucket, one line per policy; the spike window shaded.
pub fn svg(outcomes: &[Outcome], spike: Option<(f64, f64)>) -> String {
    let (w, h, left, top, panel) = (900.0, 620.0, 70.0, 40.0, 220.0);
    let buckets = outcomes
        .iter()
        .map(|o| o.buckets.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let x = |i: f64| left + i / buckets as f64 * (w - left - 30.0);
    let max_wait = outcomes
        .iter()
        .flat_map(|o| o.buckets.iter().map(|b| percentile(&b.waits, 0.5) / 60.0))
        .fold(1.0f64, f64::max)
        .ceil();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    if let Some((start, end)) = spike {
        let (a, b) = (x(start / 600.0), x(end / 600.0));
        for y0 in [top, top + panel + 60.0] {
            let _ = writeln!(
                s,
                r##"<rect x="{a:.1}" y="{y0}" width="{:.1}" height="{panel}" fill="#f5e6b3"/>"##,
                b - a
            );
        }
    }
    for (k, (title, y0)) in [
        ("median pickup wait (min)", top),
        ("completion rate (%)", top + panel + 60.0),
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{:.1}" font-weight="bold">{title}</text>"#,
            y0 - 8.0
        );
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
            y0 + panel,
            w - 30.0,
            y0 + panel
        );
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y0}" x2="{left}" y2="{:.1}" stroke="#333"/>"##,
            y0 + panel
        );
        let top_label = if k == 0 {
            format!("{max_wait:.0}")
        } else {
            "100".into()
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{top_label}</text>"#,
            left - 6.0,
            y0 + 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#,
            left - 6.0,
            y0 + panel
        );
        for (j, o) in outcomes.iter().enumerate() {
            let pts: Vec<String> = o
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let v = if k == 0 {
                        percentile(&b.waits, 0.5) / 60.0 / max_wait
                    } else if b.requests > 0 {
                        f64::from(b.completed) / f64::from(b.requests)
                    } else {
                        1.0
                    };
                    format!(
                        "{:.1},{:.1}",
                        x(i as f64 + 0.5),
                        y0 + panel - v.clamp(0.0, 1.0) * panel
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                COLORS[j % COLORS.len()],
                pts.join(" ")
            );
        }
    }
    let axis_y = top + 2.0 * panel + 80.0;
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{axis_y:.1}" text-anchor="middle">minutes into the scenario (10-minute buckets; shaded: demand spike)</text>"#,
        w / 2.0
    );
    for (j, o) in outcomes.iter().enumerate() {
        let lx = left + 20.0 + j as f64 * 200.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            axis_y + 14.0,
            COLORS[j % COLORS.len()],
            lx + 20.0,
            axis_y + 20.0,
            o.policy.name()
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The policies over a multi-day city's held-out days (from `from_s`):
/// trips, waits, and the rainy evening and the concert apart.
pub fn city_table(outcomes: &[Outcome], scenario: &crate::Scenario, from_s: f64) -> String {
    let end = scenario.duration_s;
    let rain = scenario
        .city
        .as_ref()
        .and_then(|c| c.rain.first().copied())
        .map(|r| (r.start_s, r.start_s + r.duration_s));
    let concert = scenario
        .concert_spike()
        .map(|s| (s.start_s, s.start_s + s.duration_s));
    let mut s = String::from(
        "| policy | requests | completed trips | completion | p90 wait | rainy evening: unfulfilled | rainy evening: p90 wait | concert: unfulfilled | concert: p90 wait | volatility (whole run) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let part = |o: &Outcome, span: Option<(f64, f64)>| match span {
        Some((a, b)) => {
            let w = o.window(a, b);
            (
                format!("{:.1} %", 100.0 * w.unfulfilled_share()),
                format!("{:.1} min", percentile(&w.waits, 0.9) / 60.0),
            )
        }
        None => ("–".into(), "–".into()),
    };
    for o in outcomes {
        let w = o.window(from_s, end);
        let (ru, rw) = part(o, rain);
        let (cu, cw) = part(o, concert);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} % | {:.1} min | {ru} | {rw} | {cu} | {cw} | {:.3} |",
            o.policy.name(),
            w.requests,
            w.completed,
            100.0 * (1.0 - w.unfulfilled_share()),
            percentile(&w.waits, 0.9) / 60.0,
            o.volatility,
        );
    }
    s
}
