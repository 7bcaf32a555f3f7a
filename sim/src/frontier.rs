//! The policy frontier: every policy family over a few parameter settings,
//! each run on the concert evening for several seeds, and which settings no
//! other beats on completed trips, the concert's p90 pickup wait and
//! multiplier volatility at once.
//!
//! The goal for a policy: more completed trips than both no surge
//! and the default curve over the evening, a p90 pickup wait of at most 6
//! minutes during the concert, and volatility of at most 0.04.

use std::fmt::Write as _;

use shared::policies::{ControllerParams, ForecastAware, PolicySpec};
use shared::surge::SurgeConfig;

use crate::{percentile, PolicyKind, Scenario, Simulation};

/// One policy setting to run.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// How the tables name it.
    pub label: String,
    /// Its family.
    pub kind: PolicyKind,
    /// The policy as a region would configure it.
    pub spec: PolicySpec,
    /// Engine settings.
    pub surge: SurgeConfig,
}

/// The settings swept: the five named policies, forecast-aware at four
/// leads, the controller at three unfulfilled targets, two wait targets
/// and two leads.
pub fn candidates() -> Vec<Candidate> {
    let mut out: Vec<Candidate> = PolicyKind::ALL
        .iter()
        .map(|k| {
            let (spec, surge) = k.spec();
            Candidate {
                label: k.name().to_string(),
                kind: *k,
                spec,
                surge,
            }
        })
        .collect();
    for lead in [0.0, 0.5, 1.0] {
        out.push(Candidate {
            label: format!("forecast-aware, lead {lead}"),
            kind: PolicyKind::Forecast,
            spec: PolicySpec::Forecast(ForecastAware { lead }),
            surge: SurgeConfig::default(),
        });
    }
    for target_unfulfilled in [0.05, 0.1, 0.3] {
        for wait_min in [6.0, 10.0] {
            for lead in [0.5, 1.0] {
                let params = ControllerParams {
                    target_unfulfilled,
                    target_p90_wait_s: wait_min * 60.0,
                    lead,
                    ..ControllerParams::default()
                };
                out.push(Candidate {
                    label: format!(
                        "controller, {:.0} % unfulfilled, {wait_min} min p90, lead {lead}",
                        100.0 * target_unfulfilled
                    ),
                    kind: PolicyKind::Controller,
                    spec: PolicySpec::Controller(params),
                    surge: SurgeConfig::default(),
                });
            }
        }
    }
    out
}

/// A setting's means over the seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The setting.
    pub label: String,
    /// Completed trips over the evening.
    pub trips: f64,
    /// p90 pickup wait of requests made during the concert, minutes.
    pub concert_p90_min: f64,
    /// p90 pickup wait over the evening, minutes.
    pub p90_min: f64,
    /// Mean absolute change of a cell's multiplier between repricings.
    pub volatility: f64,
    /// Share of cell-minutes at ≥ 1.5x before the concert.
    pub surge_before: f64,
    /// Share of the concert's surging cell-minutes within 2 km of it.
    pub near_venue: f64,
}

/// Runs every candidate on `Scenario::concert(seed)` for each seed;
/// `progress(done, total)` after each run.
pub fn sweep(
    candidates: &[Candidate],
    seeds: &[u64],
    mut progress: impl FnMut(usize, usize),
) -> Vec<Point> {
    let total = candidates.len() * seeds.len();
    let mut done = 0;
    let n = seeds.len().max(1) as f64;
    candidates
        .iter()
        .map(|c| {
            let mut p = Point {
                label: c.label.clone(),
                trips: 0.0,
                concert_p90_min: 0.0,
                p90_min: 0.0,
                volatility: 0.0,
                surge_before: 0.0,
                near_venue: 0.0,
            };
            for seed in seeds {
                let s = Scenario::concert(*seed);
                let spike = s.spikes.first().copied();
                let o = Simulation::with_spec(s, c.kind, c.spec, c.surge).run(|_| {});
                if let Some(spike) = spike {
                    let w = o.window(spike.start_s, spike.start_s + spike.duration_s);
                    p.concert_p90_min += percentile(&w.waits, 0.9) / 60.0 / n;
                }
                p.trips += f64::from(o.completed) / n;
                p.p90_min += o.wait_percentile(0.9) / 60.0 / n;
                p.volatility += o.volatility / n;
                p.surge_before += o.surge.before_spike / n;
                p.near_venue += o.surge.near_venue / n;
                done += 1;
                progress(done, total);
            }
            p
        })
        .collect()
}

/// Whether no other point has at least as many trips, at most the concert
/// wait and at most the volatility, and is better in one of them.
pub fn on_frontier(p: &Point, all: &[Point]) -> bool {
    !all.iter().any(|q| {
        q.trips >= p.trips
            && q.concert_p90_min <= p.concert_p90_min
            && q.volatility <= p.volatility
            && (q.trips > p.trips
                || q.concert_p90_min < p.concert_p90_min
                || q.volatility < p.volatility)
    })
}

/// Which parts of the goal a point meets, against the no-surge and
/// default-curve points of the same sweep.
pub fn goal(p: &Point, none: &Point, default: &Point) -> [bool; 3] {
    [
        p.trips > none.trips && p.trips > default.trips,
        p.concert_p90_min <= 6.0,
        p.volatility <= 0.04,
    ]
}

/// The Markdown table: every setting, frontier points marked, and the
/// goal's three parts per setting.
pub fn table(points: &[Point]) -> String {
    let find = |name: &str| points.iter().find(|p| p.label == name);
    let (none, default) = (
        find(PolicyKind::None.name()),
        find(PolicyKind::Default.name()),
    );
    let mut s = String::from(
        "| policy | trips | concert p90 wait | evening p90 wait | volatility | surging before the concert | surge near the venue | frontier | more trips than none and default | concert p90 ≤ 6 min | volatility ≤ 0.04 |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mark = |b: bool| if b { "yes" } else { "no" };
    for p in points {
        let g = match (none, default) {
            (Some(n), Some(d)) => goal(p, n, d),
            _ => [false; 3],
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.1} min | {:.1} min | {:.3} | {:.0} % | {:.0} % | {} | {} | {} | {} |",
            p.label,
            p.trips,
            p.concert_p90_min,
            p.p90_min,
            p.volatility,
            100.0 * p.surge_before,
            100.0 * p.near_venue,
            if on_frontier(p, points) { "**on**" } else { "" },
            mark(g[0]),
            mark(g[1]),
            mark(g[2]),
        );
    }
    s
}

/// An SVG scatter: trips (x) against the concert's p90 wait (y), frontier
/// points filled, the 6-minute goal line dashed.
pub fn svg(points: &[Point]) -> String {
    let (w, h, pad) = (720.0, 420.0, 60.0);
    let (x0, x1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.trips), b.max(p.trips))
    });
    let y1 = points
        .iter()
        .map(|p| p.concert_p90_min)
        .fold(6.0_f64, f64::max)
        .ceil()
        + 1.0;
    let (x0, x1) = (x0 - 10.0, x1 + 10.0);
    let sx = |x: f64| pad + (x - x0) / (x1 - x0).max(1.0) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - y / y1 * (h - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"20\" font-size=\"14\">Completed trips against the concert's p90 pickup wait (mean of seeds)</text>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{xl}\" text-anchor=\"middle\">completed trips over the evening</text>\n\
         <text x=\"14\" y=\"{cy}\" transform=\"rotate(-90 14 {cy})\" text-anchor=\"middle\">concert p90 wait, min</text>\n\
         <line x1=\"{pad}\" y1=\"{g}\" x2=\"{r}\" y2=\"{g}\" stroke=\"#888\" stroke-dasharray=\"4 4\"/>\n\
         <text x=\"{r}\" y=\"{gt}\" text-anchor=\"end\" fill=\"#555\">goal: 6 min</text>\n",
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        xl = h - 20.0,
        cy = h / 2.0,
        g = sy(6.0),
        gt = sy(6.0) - 4.0,
    );
    for y in 0..=(y1 as u32) {
        if y % 2 == 0 {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{y}</text>",
                pad - 6.0,
                sy(f64::from(y)) + 4.0
            );
        }
    }
    for t in [x0 + 10.0, (x0 + x1) / 2.0, x1 - 10.0] {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{t:.0}</text>",
            sx(t),
            h - pad + 16.0
        );
    }
    for p in points {
        let on = on_frontier(p, points);
        let color = if p.label.starts_with("controller") {
            "#229954"
        } else if p.label.starts_with("forecast") {
            "#2471a3"
        } else {
            "#c0392b"
        };
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" stroke=\"{color}\" fill=\"{}\"><title>{}: {:.0} trips, {:.1} min, volatility {:.3}</title></circle>",
            sx(p.trips),
            sy(p.concert_p90_min),
            if on { color } else { "white" },
            p.label,
            p.trips,
            p.concert_p90_min,
            p.volatility
        );
        if !p.label.contains(',') {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                sx(p.trips) + 8.0,
                sy(p.concert_p90_min) + 4.0,
                p.label
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, trips: f64, wait: f64, vol: f64) -> Point {
        Point {
            label: label.into(),
            trips,
            concert_p90_min: wait,
            p90_min: 0.0,
            volatility: vol,
            surge_before: 0.0,
            near_venue: 0.0,
        }
    }

    #[test]
    fn a_point_beaten_on_every_measure_is_off_the_frontier() {
        let all = vec![
            point("a", 100.0, 5.0, 0.01),
            point("b", 90.0, 6.0, 0.02),
            point("c", 120.0, 9.0, 0.01),
        ];
        assert!(on_frontier(&all[0], &all));
        assert!(!on_frontier(&all[1], &all));
        assert!(on_frontier(&all[2], &all));
    }
}
