//! Origin throughput: in-process aggregation and HTTP NDJSON ingest.
//!
//! `cargo bench -p equilibrium-origin --bench ingest` (or
//! `scripts/bench-origin.sh`, which also runs the Python baseline and
//! prints the ratios). Prints one JSON line of results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use origin::aggregate::{market_config, Aggregator, Settings};
use origin::clock::SystemClock;
use origin::config::Config;
use origin::http::app;
use origin::ingest::{self, Format};
use origin::state::AppState;
use origin::store::Store;
use shared::fare::VehicleClass;
use shared::market::{DriverId, DriverSeen};
use shared::time::Timestamp;

/// splitmix64, deterministic.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

struct Decoded {
    driver_id: String,
    latitude: f64,
    longitude: f64,
    available: bool,
    timestamp: u64,
}

/// Event times end now, so the HTTP server's clock accepts them.
fn t0(n: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now - n
}

fn decoded(n: u64) -> Vec<Decoded> {
    let base = t0(n);
    (0..n)
        .map(|i| Decoded {
            driver_id: format!("driver-{}", mix(i * 5) % 50_000),
            latitude: 37.60 + unit(i * 5 + 1) * 0.25,
            longitude: -122.55 + unit(i * 5 + 2) * 0.20,
            available: unit(i * 5 + 3) < 0.8,
            timestamp: base + i,
        })
        .collect()
}

fn ndjson(events: &[Decoded]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 130);
    for e in events {
        out.extend_from_slice(
            format!(
                "{{\"driver_id\":\"{}\",\"latitude\":{},\"longitude\":{},\"available\":{},\"vehicle_type\":\"standard\",\"timestamp\":{}}}\n",
                e.driver_id, e.latitude, e.longitude, e.available, e.timestamp
            )
            .as_bytes(),
        );
    }
    out
}

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

/// The producer token the HTTP bench posts with.
const BENCH_TOKEN: &str = "bench-producer-token-0123";

/// HTTP: a real origin server (axum, SQLite store, ticks) on loopback and
/// `clients` concurrent clients posting 10,000-line NDJSON batches.
fn http(events: &[Decoded], cfg: &Config, seconds: f64, clients: usize) -> (f64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = cfg.clone();
    cfg.database = dir.path().join("bench.sqlite");
    cfg.auth.producer_tokens = vec![BENCH_TOKEN.into()];
    cfg.auth.reader_tokens = vec!["bench-reader-token-0123".into()];
    rt.block_on(async move {
        let store = Store::open(&cfg.database).expect("store");
        let state = AppState::new(cfg, store, Arc::new(SystemClock)).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app(state)).await;
        });
        // Pre-built bodies; `Bytes` clones share the buffer.
        let bodies: Vec<axum::body::Bytes> = events
            .chunks(10_000)
            .map(|c| axum::body::Bytes::from(ndjson(c)))
            .collect();
        let bodies = Arc::new(bodies);
        let url = format!("http://{addr}/v1/ingest/locations");
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (bodies, url) = (bodies.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut accepted = 0u64;
                let mut i = c;
                while Instant::now() < deadline {
                    let body = bodies[i % bodies.len()].clone();
                    i += clients;
                    let r = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .bearer_auth(BENCH_TOKEN)
                        .body(body)
                        .send()
                        .await
                        .expect("post");
                    let v: serde_json::Value = r.json().await.expect("report");
                    accepted += v["accepted"].as_u64().unwrap_or(0);
                }
                accepted
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client");
        }
        (total as f64 / start.elapsed().as_secs_f64(), total)
    })
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
