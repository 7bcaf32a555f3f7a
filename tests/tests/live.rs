//! The simulator's live mode against the real origin and the real worker.

use std::time::Duration;

use equilibrium_tests::{wait_for, Origin, Worker};
use serde_json::Value;
use sim::live::{self, LiveConfig};
use sim::Scenario;

#[test]
fn live_mode_drives_the_real_stack() {
    let dir = tempfile::tempdir().expect("tmp");
    // The origin's port is chosen first: the worker's queue posts to it.
    let origin_port = equilibrium_tests::free_port();
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    let worker = Worker::start_with_vars(&[("GRID_CACHE_MS", "200"), ("ORIGIN_URL", &origin_url)]);
    let origin = Origin::start_on(
        origin_port,
        &dir.path().join("live.sqlite"),
        &worker.base,
        0.5,
        &[],
    );
    let cfg = LiveConfig {
        origin: origin.base.clone(),
        edge: worker.base.clone(),
        region: "sf".into(),
        speedup: 60.0,
        // The whole scenario, however long this machine takes: the
        // assertions below count simulated time, not real time.
        max_seconds: 0.0,
        origin_token: equilibrium_tests::PRODUCER_TOKEN.into(),
        dispatch_token: equilibrium_tests::DISPATCH_TOKEN.into(),
        drive_clock: false,
        reader_token: None,
        ca_file: None,
    };
    let mut ticks = 0;
    let report = live::run(Scenario::short(11, 8.0), &cfg, |_| ticks += 1).expect("live run");
    assert!(ticks > 10, "progress reported per tick ({ticks})");
    assert!(report.simulated_minutes > 5.0, "{}", report.summary());
    assert!(report.locations_accepted > 500, "{}", report.summary());
    assert!(report.demand_accepted > 10, "{}", report.summary());
    assert!(report.quotes > 10, "{}", report.summary());
    assert_eq!(report.quote_errors, 0, "{}", report.summary());
    assert!(report.confirmed > 0, "{}", report.summary());
    assert!(report.latencies_ms.iter().all(|l| *l > 0.0));
    // The same metrics as in-process mode, from the live run.
    let outcome = report.outcome.as_ref().expect("outcome");
    assert!(outcome.requests > 0 && outcome.completed > 0, "{outcome:?}");
    assert!(sim::report::table(std::slice::from_ref(outcome)).contains("| default curve |"));
    // The origin turned the stream into grids that reached the edge.
    let http = equilibrium_tests::http();
    wait_for(
        "a grid with cells at the edge",
        Duration::from_secs(20),
        || {
            let h: Value = http
                .get(worker.url(
                    "/api/v1/pricing/heatmap?bounds=37.6,-122.6,37.9,-122.3&zoom=13&region=sf",
                ))
                .send()
                .and_then(|r| r.json())
                .unwrap_or(Value::Null);
            h["total_zones"].as_u64() > Some(10) && h["generation"].as_u64() > Some(0)
        },
    );
    // Every booking was driven to a final status at the edge...
    assert_eq!(report.lifecycle_errors, 0, "{}", report.summary());
    assert_eq!(
        report.completed + report.cancelled + report.failed,
        report.confirmed,
        "{}",
        report.summary()
    );
    assert!(report.completed > 0, "{}", report.summary());
    // ...and reached the origin's store through the edge's queue, once.
    let confirmed = f64::from(report.confirmed);
    wait_for(
        "every booking's outcome at the origin",
        Duration::from_secs(120),
        || origin.metric("equilibrium_outcomes_stored_total") >= confirmed,
    );
    assert_eq!(
        origin.metric("equilibrium_outcomes_stored_total"),
        confirmed,
        "{}",
        report.summary()
    );
}

/// The demo's region (origin/demo.toml, with the shipped registry): the
/// simulator's cells and the forecast-aware policy.
const SIM_REGION: &str = include_str!("../../origin/demo.toml");

#[test]
fn the_demo_stack_prices_in_the_simulators_time_frame() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("regions.toml");
    std::fs::write(&config, SIM_REGION).expect("config");
    let origin_port = equilibrium_tests::free_port();
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    let worker = Worker::start_with_vars(&[("ORIGIN_URL", &origin_url)]);
    let origin = Origin::start_on(
        origin_port,
        &dir.path().join("demo.sqlite"),
        &worker.base,
        5.0,
        &[
            ("EQ_SIMULATED_CLOCK", "true"),
            ("EQ_CONFIG", config.to_str().expect("utf-8 path")),
            (
                "EQ_REGISTRY",
                equilibrium_tests::root()
                    .join("config/regions.json")
                    .to_str()
                    .expect("utf-8 path"),
            ),
        ],
    );
    let cfg = LiveConfig {
        origin: origin.base.clone(),
        edge: worker.base.clone(),
        region: "sf".into(),
        // As fast as the machine goes: the origin follows the simulator's
        // clock, so the speed changes nothing it computes.
        speedup: 1e9,
        max_seconds: 0.0,
        origin_token: equilibrium_tests::PRODUCER_TOKEN.into(),
        dispatch_token: equilibrium_tests::DISPATCH_TOKEN.into(),
        drive_clock: true,
        reader_token: Some(equilibrium_tests::READER_TOKEN.into()),
        ca_file: None,
    };
    let report = live::run(Scenario::evening(7, 40.0), &cfg, |_| {}).expect("live run");
    let surge = report.surge.expect("the origin's grids were read");
    eprintln!("{} · {surge:?}", report.summary());
    // The goal: before the spike at most 20 % of cell-minutes surge.
    assert!(
        surge.before_spike <= 0.20,
        "before the concert {:.0} % of cell-minutes surged",
        100.0 * surge.before_spike
    );
    assert!(surge.during_spike > surge.before_spike, "{surge:?}");
    // The origin's clock is the simulator's: a day ahead of the wall clock.
    let h: Value = equilibrium_tests::http()
        .get(origin.url("/v1/grids/sf"))
        .bearer_auth(equilibrium_tests::READER_TOKEN)
        .send()
        .and_then(|r| r.json())
        .expect("grid");
    assert!(
        h["computed_at"].as_u64() > Some(equilibrium_tests::now_ms() + 82_800_000),
        "{}",
        h["computed_at"]
    );
}
