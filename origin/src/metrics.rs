//! Live metrics in the Prometheus text format (`GET /metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters and gauges, updated lock-free from every task.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Driver location records accepted.
    pub locations_accepted: AtomicU64,
    /// Demand records accepted.
    pub demand_accepted: AtomicU64,
    /// Records rejected (both kinds).
    pub records_rejected: AtomicU64,
    /// Batches refused as a whole (bad body, too large, wrong type).
    pub batches_refused: AtomicU64,
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Sum of tick durations, microseconds.
    pub tick_micros_sum: AtomicU64,
    /// Longest tick, microseconds.
    pub tick_micros_max: AtomicU64,
    /// Grid pushes the edge accepted (applied or already newer).
    pub pushes_ok: AtomicU64,
    /// Grid pushes that failed (network, 5xx); retried with backoff.
    pub pushes_failed: AtomicU64,
    /// Sum of successful push latencies, microseconds.
    pub push_micros_sum: AtomicU64,
    /// Regions waiting to be pushed.
    pub pushes_pending: AtomicU64,
    /// Seconds of events lost at the last restart (upper bound).
    pub restored_lost_seconds: AtomicU64,
}

impl Metrics {
    /// Records a tick's duration.
    pub fn tick(&self, micros: u64) {
        self.ticks.fetch_add(1, Relaxed);
        self.tick_micros_sum.fetch_add(micros, Relaxed);
        self.tick_micros_max.fetch_max(micros, Relaxed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut put = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let g = |a: &AtomicU64| a.load(Relaxed);
        let secs = |a: &AtomicU64| format!("{:.6}", g(a) as f64 / 1e6);
        put(
            "equilibrium_ingest_locations_total",
            "counter",
            "Driver location records accepted.",
            g(&self.locations_accepted).to_string(),
        );
        put(
            "equilibrium_ingest_demand_total",
            "counter",
            "Demand records accepted.",
            g(&self.demand_accepted).to_string(),
        );
        put(
            "equilibrium_ingest_rejected_total",
            "counter",
            "Records rejected by validation.",
            g(&self.records_rejected).to_string(),
        );
        put(
            "equilibrium_ingest_batches_refused_total",
            "counter",
            "Batches refused as a whole.",
            g(&self.batches_refused).to_string(),
        );
        put(
            "equilibrium_tick_total",
            "counter",
            "Grid recompute ticks run.",
            g(&self.ticks).to_string(),
        );
        put(
            "equilibrium_tick_duration_seconds_sum",
            "counter",
            "Total time spent in ticks.",
            secs(&self.tick_micros_sum),
        );
        put(
            "equilibrium_tick_duration_seconds_max",
            "gauge",
            "Longest tick.",
            secs(&self.tick_micros_max),
        );
        put(
            "equilibrium_push_total",
            "counter",
            "Grid pushes the edge accepted.",
            g(&self.pushes_ok).to_string(),
        );
        put(
            "equilibrium_push_failures_total",
            "counter",
            "Grid pushes that failed and will be retried.",
            g(&self.pushes_failed).to_string(),
        );
        put(
            "equilibrium_push_latency_seconds_sum",
            "counter",
            "Total latency of accepted pushes.",
            secs(&self.push_micros_sum),
        );
        put(
            "equilibrium_push_pending",
            "gauge",
            "Regions with a grid waiting to be pushed.",
            g(&self.pushes_pending).to_string(),
        );
        put(
            "equilibrium_restore_lost_seconds",
            "gauge",
            "Upper bound of event seconds lost at the last restart.",
            g(&self.restored_lost_seconds).to_string(),
        );
        s
    }
}
