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
    /// Milliseconds between the last persisted tick and this start.
    pub restored_lost_ms: AtomicU64,
    /// Ticks whose persistence failed (their grids were still pushed).
    pub tick_persist_failures: AtomicU64,
    /// Bytes of market state written by the last tick (all regions).
    pub state_bytes: AtomicU64,
    /// Pushes that failed because the edge's certificate was not trusted.
    pub push_tls_failures: AtomicU64,
    /// Requests refused for a missing or unknown token (401).
    pub auth_unauthorized: AtomicU64,
    /// Requests refused for a token of the wrong role (403).
    pub auth_forbidden: AtomicU64,
    /// Ride outcomes stored (repeats of a stored ride are not counted).
    pub outcomes_stored: AtomicU64,
    /// Lawful emergency cap lookups that failed (retried after a minute).
    pub lawful_cap_failures: AtomicU64,
    /// Controller feedback lookups that failed (the threshold holds).
    pub feedback_failures: AtomicU64,
    /// Guardrail lookups of running experiments that failed.
    pub guardrail_failures: AtomicU64,
    /// Experiments ended by their guardrail.
    pub experiments_ended: AtomicU64,
    /// Edge events applied (`POST /v1/edge-events`).
    pub edge_events_applied: AtomicU64,
    /// Edge events already applied before (redeliveries), ignored.
    pub edge_events_duplicates: AtomicU64,
    /// Edge events refused as invalid.
    pub edge_events_rejected: AtomicU64,
    /// Rows deleted by retention.
    pub pruned_rows: AtomicU64,
    /// Retention runs that failed (retried at the next interval).
    pub prune_failures: AtomicU64,
    /// Cluster: regions this node owns.
    pub regions_owned: AtomicU64,
    /// Cluster: region leases acquired.
    pub leases_acquired: AtomicU64,
    /// Cluster: region leases lost (a renewal failed).
    pub leases_lost: AtomicU64,
    /// Cluster: regions taken over with their forecast history.
    pub forecasts_restored: AtomicU64,
    /// Cluster: milliseconds the last take-over's replay took.
    pub replay_ms: AtomicU64,
    /// Cluster: owned regions' messages in the stream not yet applied.
    pub stream_lag: AtomicU64,
    /// Cluster: ingest requests the stream did not acknowledge (503).
    pub publish_failures: AtomicU64,
    /// Cluster: ingest messages the stream had already stored (repeated
    /// requests with the same `Idempotency-Key`).
    pub publish_duplicates: AtomicU64,
    /// Cluster: stream messages that could not be decoded (skipped).
    pub stream_bad_messages: AtomicU64,
    /// Cluster: failed heartbeats, member listings and stored-grid writes.
    pub cluster_errors: AtomicU64,
    /// Cluster: ticks whose history waits to be written.
    pub history_backlog: AtomicU64,
    /// Cluster: ticks whose history was dropped (the backlog was full).
    pub history_dropped: AtomicU64,
    /// Cluster: failed history writes (retried).
    pub history_failures: AtomicU64,
}

impl Metrics {
    /// Records a tick: its duration, the state it persisted, and whether
    /// persisting failed.
    pub fn tick(&self, micros: u64, state_bytes: u64, persist_failed: bool) {
        self.ticks.fetch_add(1, Relaxed);
        self.state_bytes.store(state_bytes, Relaxed);
        if persist_failed {
            self.tick_persist_failures.fetch_add(1, Relaxed);
        }
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
            "Seconds between the last persisted tick and this start (events accepted then were lost).",
            format!("{:.3}", g(&self.restored_lost_ms) as f64 / 1e3),
        );
        put(
            "equilibrium_tick_persist_failures_total",
            "counter",
            "Ticks whose persistence failed (grids were still pushed).",
            g(&self.tick_persist_failures).to_string(),
        );
        put(
            "equilibrium_market_state_bytes",
            "gauge",
            "Bytes of market state persisted by the last tick.",
            g(&self.state_bytes).to_string(),
        );
        put(
            "equilibrium_push_tls_failures_total",
            "counter",
            "Grid pushes that failed because the edge's certificate was not trusted.",
            g(&self.push_tls_failures).to_string(),
        );
        put(
            "equilibrium_auth_unauthorized_total",
            "counter",
            "Requests refused for a missing or unknown token (401).",
            g(&self.auth_unauthorized).to_string(),
        );
        put(
            "equilibrium_auth_forbidden_total",
            "counter",
            "Requests refused for a token of the wrong role (403).",
            g(&self.auth_forbidden).to_string(),
        );
        put(
            "equilibrium_outcomes_stored_total",
            "counter",
            "Ride outcomes stored (a repeated ride id is not counted again).",
            g(&self.outcomes_stored).to_string(),
        );
        put(
            "equilibrium_lawful_cap_failures_total",
            "counter",
            "Lookups of a region's lawful emergency cap in the history that failed (retried after a minute).",
            g(&self.lawful_cap_failures).to_string(),
        );
        put(
            "equilibrium_controller_feedback_failures_total",
            "counter",
            "Lookups of a controller's feedback (recent ride outcomes) that failed; its threshold holds.",
            g(&self.feedback_failures).to_string(),
        );
        put(
            "equilibrium_guardrail_failures_total",
            "counter",
            "Lookups of a running experiment's results for its guardrail that failed; the experiment goes on.",
            g(&self.guardrail_failures).to_string(),
        );
        put(
            "equilibrium_experiments_ended_total",
            "counter",
            "Experiments ended by their guardrail (the region's own policy prices again).",
            g(&self.experiments_ended).to_string(),
        );
        put(
            "equilibrium_edge_events_applied_total",
            "counter",
            "Edge events (price checks, bookings) applied.",
            g(&self.edge_events_applied).to_string(),
        );
        put(
            "equilibrium_edge_events_duplicates_total",
            "counter",
            "Edge events delivered again and ignored (known at this node: stored outcomes, single-node demand).",
            g(&self.edge_events_duplicates).to_string(),
        );
        put(
            "equilibrium_edge_events_rejected_total",
            "counter",
            "Edge events refused as invalid.",
            g(&self.edge_events_rejected).to_string(),
        );
        put(
            "equilibrium_retention_pruned_rows_total",
            "counter",
            "History rows deleted by retention.",
            g(&self.pruned_rows).to_string(),
        );
        put(
            "equilibrium_cluster_forecasts_restored_total",
            "counter",
            "Regions taken over with their forecast history from the shared history.",
            g(&self.forecasts_restored).to_string(),
        );
        put(
            "equilibrium_retention_failures_total",
            "counter",
            "Retention runs that failed.",
            g(&self.prune_failures).to_string(),
        );
        for (name, kind, help, v) in [
            (
                "equilibrium_cluster_regions_owned",
                "gauge",
                "Regions this node owns.",
                &self.regions_owned,
            ),
            (
                "equilibrium_cluster_lease_acquisitions_total",
                "counter",
                "Region leases acquired.",
                &self.leases_acquired,
            ),
            (
                "equilibrium_cluster_lease_losses_total",
                "counter",
                "Region leases lost (a renewal failed).",
                &self.leases_lost,
            ),
            (
                "equilibrium_cluster_replay_milliseconds",
                "gauge",
                "How long the last take-over's replay took.",
                &self.replay_ms,
            ),
            (
                "equilibrium_cluster_stream_lag_messages",
                "gauge",
                "Owned regions' stream messages not yet applied.",
                &self.stream_lag,
            ),
            (
                "equilibrium_cluster_publish_failures_total",
                "counter",
                "Ingest requests the event stream did not acknowledge.",
                &self.publish_failures,
            ),
            (
                "equilibrium_cluster_publish_duplicates_total",
                "counter",
                "Ingest messages already stored (a repeated Idempotency-Key).",
                &self.publish_duplicates,
            ),
            (
                "equilibrium_cluster_bad_messages_total",
                "counter",
                "Stream messages that could not be decoded.",
                &self.stream_bad_messages,
            ),
            (
                "equilibrium_cluster_errors_total",
                "counter",
                "Failed heartbeats, member listings and stored-grid writes.",
                &self.cluster_errors,
            ),
            (
                "equilibrium_history_backlog_ticks",
                "gauge",
                "Ticks whose history waits for the database.",
                &self.history_backlog,
            ),
            (
                "equilibrium_history_dropped_ticks_total",
                "counter",
                "Ticks whose history was dropped because the backlog was full.",
                &self.history_dropped,
            ),
            (
                "equilibrium_history_write_failures_total",
                "counter",
                "History writes that failed (retried).",
                &self.history_failures,
            ),
        ] {
            put(name, kind, help, g(v).to_string());
        }
        s
    }
}
