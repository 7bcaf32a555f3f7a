//! What the origin's benches share: a deterministic stream of driver
//! reports, its NDJSON, and the HTTP ingest load (clients posting
//! 10,000-line batches to origin servers on loopback).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use origin::clock::SystemClock;
use origin::config::Config;
use origin::http::app;
use origin::state::AppState;
use origin::store::Store;

/// splitmix64, deterministic.
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn unit(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

pub struct Decoded {
    pub driver_id: String,
    pub latitude: f64,
    pub longitude: f64,
    pub available: bool,
    pub timestamp: u64,
}

/// Event times end now, so the HTTP server's clock accepts them.
pub fn t0(n: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now - n
}

pub fn decoded(n: u64) -> Vec<Decoded> {
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

pub fn ndjson(events: &[Decoded]) -> Vec<u8> {
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

/// The producer token the HTTP bench posts with.
pub const BENCH_TOKEN: &str = "bench-producer-token-0123";

/// HTTP: a real origin server (axum, SQLite store, ticks) on loopback and
/// `clients` concurrent clients posting 10,000-line NDJSON batches.
pub fn http(events: &[Decoded], cfg: &Config, seconds: f64, clients: usize) -> (f64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = bench_config(cfg);
    cfg.database = dir.path().join("bench.sqlite");
    rt.block_on(async move {
        let store = Store::open(&cfg.database).expect("store");
        let state = AppState::new(cfg, store, Arc::new(SystemClock)).expect("state");
        let url = serve(state).await;
        load(events, &[url], seconds, clients).await
    })
}

/// `cfg` with the bench's tokens.
pub fn bench_config(cfg: &Config) -> Config {
    let mut cfg = cfg.clone();
    cfg.auth.producer_tokens = vec![BENCH_TOKEN.into()];
    cfg.auth.reader_tokens = vec!["bench-reader-token-0123".into()];
    cfg
}

/// Serves `state`'s API on a loopback port; returns its base URL.
pub async fn serve(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app(state)).await;
    });
    format!("http://{addr}")
}

/// `clients` concurrent clients posting the events' 10,000-line NDJSON
/// batches for `seconds`, each client to the `urls` in turn (one origin or
/// the members of a cluster). Returns accepted events per second and in
/// all.
pub async fn load(events: &[Decoded], urls: &[String], seconds: f64, clients: usize) -> (f64, u64) {
    let bodies: Vec<axum::body::Bytes> = events
        .chunks(10_000)
        .map(|c| axum::body::Bytes::from(ndjson(c)))
        .collect();
    let bodies = Arc::new(bodies);
    let urls = Arc::new(urls.to_vec());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (bodies, urls) = (bodies.clone(), urls.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                let url = &urls[i % urls.len()];
                i += clients;
                let r = client
                    .post(format!("{url}/v1/ingest/locations"))
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
}
