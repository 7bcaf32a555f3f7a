//! Origin throughput: in-process aggregation and HTTP NDJSON ingest.
//!
//! `cargo bench -p equilibrium-origin --bench ingest` (or
//! `scripts/bench-origin.sh`, which also runs the Python baseline and
//! prints the ratios). Prints one JSON line of results.

mod common;

use std::time::Instant;

use common::{decoded, http, ndjson, Decoded};

use origin::aggregate::{market_config, Aggregator, Settings};
use origin::config::Config;
use origin::ingest::{self, Format};
use shared::fare::VehicleClass;
use shared::market::{DriverId, DriverSeen};
use shared::time::Timestamp;

fn aggregator(cfg: &Config) -> Aggregator {
    let settings = Settings {
        market: market_config(cfg.supply_ttl_seconds, cfg.demand_window_seconds),
        ..Settings::default()
    };
    Aggregator::new(cfg.regions().expect("regions"), settings).expect("aggregator")
}

/// Decoded events → region, cell, driver key → market. One core.
fn in_process(events: &[Decoded], cfg: &Config) -> f64 {
    let regions = cfg.regions().expect("regions");
    let mut agg = aggregator(cfg);
    let start = Instant::now();
    let mut batch = Vec::with_capacity(1_024);
    for e in events {
        if let Ok((idx, cell)) = ingest::locate(e.latitude, e.longitude, &regions) {
            batch.push((
                idx,
                DriverSeen {
                    driver: DriverId::from_external(&e.driver_id),
                    cell,
                    class: VehicleClass::Standard,
                    available: e.available,
                    at: Timestamp(e.timestamp),
                },
            ));
        }
        if batch.len() == batch.capacity() {
            agg.drivers(&batch);
            batch.clear();
        }
    }
    agg.drivers(&batch);
    let secs = start.elapsed().as_secs_f64();
    let end = events.last().map_or(0, |e| e.timestamp);
    std::hint::black_box(agg.tick(Timestamp(end)));
    events.len() as f64 / secs
}

/// NDJSON bytes → parsed, validated → market. One core.
fn ndjson_in_process(body: &[u8], n: usize, now: Timestamp, cfg: &Config) -> f64 {
    let regions = cfg.regions().expect("regions");
    let mut agg = aggregator(cfg);
    let start = Instant::now();
    for chunk in body.chunks(1 << 20) {
        // Chunks split lines; good enough for throughput (a few records per
        // MiB are rejected as broken), counted from the reports.
        let p = ingest::locations(chunk, Format::Ndjson, &regions, now).expect("batch");
        agg.drivers(&p.events);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("EQ_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let secs: f64 = std::env::var("EQ_BENCH_HTTP_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let cfg = Config::default();
    let events = decoded(n);
    let body = ndjson(&events);
    eprintln!("in-process aggregation of {n} decoded events...");
    let agg = in_process(&events, &cfg);
    eprintln!("in-process NDJSON parse + aggregation...");
    let now = Timestamp(events.last().map_or(0, |e| e.timestamp));
    let nd = ndjson_in_process(&body, n as usize, now, &cfg);
    eprintln!("HTTP NDJSON ingest for {secs} s, 4 clients...");
    let (http_rate, http_total) = http(&events[..(n as usize).min(400_000)], &cfg, secs, 4);
    println!(
        "{{\"events\": {n}, \"aggregate_events_per_s\": {agg:.0}, \"ndjson_events_per_s\": {nd:.0}, \"http_events_per_s\": {http_rate:.0}, \"http_events\": {http_total}}}"
    );
}
