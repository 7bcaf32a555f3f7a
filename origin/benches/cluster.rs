//! Cluster throughput and take-over replay, against a single node in the
//! same run. Needs a NATS cluster: `scripts/bench-cluster.sh` starts three
//! `nats-server`s on loopback and runs this with `EQ_NATS_URLS` set.
//!
//! 1. Single node: one origin (SQLite) on loopback, 4 clients posting
//!    10,000-line NDJSON batches for `EQ_BENCH_HTTP_SECONDS` (10).
//! 2. Cluster: three members in this process (each its own HTTP server,
//!    all publishing to the stream with `EQ_STREAM_REPLICAS` replicas),
//!    the same clients posting to the three in turn; the region's owner
//!    consumes the stream meanwhile.
//! 3. Replay: the members stop; a new member takes the region over and
//!    replays everything the stream holds for it. Its replay time per
//!    million events is reported.
//!
//! Prints one JSON line.

mod common;

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bench_config, decoded, http, load, serve};
use origin::clock::SystemClock;
use origin::cluster::{lease, Cluster};
use origin::config::Config;
use origin::state::{lock, AppState};
use origin::store::Store;

fn cluster_config(urls: &str, node: &str, replicas: usize) -> Config {
    let mut c = bench_config(&Config::default());
    c.cluster.nats_urls = urls.split(',').map(str::to_owned).collect();
    c.cluster.node_id = node.into();
    c.cluster.replicas = replicas;
    c.cluster.lease_ttl_seconds = 3;
    c
}

async fn member(urls: &str, node: &str, replicas: usize) -> Arc<AppState> {
    let c = cluster_config(urls, node, replicas);
    let regions = c.regions().expect("regions");
    let cluster = Cluster::connect(&c.cluster, &regions, c.stream_retention())
        .await
        .expect("join the cluster");
    let history = Store::open_in_memory().expect("store");
    AppState::in_cluster(
        c,
        Box::new(history),
        Arc::new(SystemClock),
        Arc::new(cluster),
    )
    .expect("state")
}

/// (events applied, whether caught up) of a member's region 0.
fn progress(s: &AppState) -> Option<(u64, bool)> {
    let c = s.cluster.as_ref()?;
    let owned = lock(&c.owned);
    let o = owned.get(&0)?;
    Some((o.stats.applied.load(Relaxed), o.stats.ready.load(Acquire)))
}

fn main() {
    let urls = std::env::var("EQ_NATS_URLS").expect("EQ_NATS_URLS (run scripts/bench-cluster.sh)");
    let replicas: usize = std::env::var("EQ_STREAM_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let secs: f64 = std::env::var("EQ_BENCH_HTTP_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let events = decoded(400_000);

    eprintln!("single node: HTTP NDJSON ingest for {secs} s, 4 clients...");
    let (single, _) = http(&events, &Config::default(), secs, 4);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (cluster_rate, total, replay) = rt.block_on(async {
        let mut members = Vec::new();
        let mut urls_http = Vec::new();
        let mut loops = Vec::new();
        for n in ["bench-a", "bench-b", "bench-c"] {
            let s = member(&urls, n, replicas).await;
            urls_http.push(serve(s.clone()).await);
            let stop = std::future::pending::<()>();
            loops.push(tokio::spawn(lease::run(s.clone(), stop)));
            members.push(s);
        }
        eprintln!("cluster: 3 members, {replicas} replicas, HTTP NDJSON ingest for {secs} s, 4 clients...");
        let (rate, total) = load(&events, &urls_http, secs, 4).await;

        // The members stop (their loops and feeds end, their leases lapse);
        // a new member takes the region over and replays the stream.
        for l in &loops {
            l.abort();
        }
        for s in &members {
            if let Some(c) = &s.cluster {
                for (_, o) in lock(&c.owned).drain() {
                    o.feed.abort();
                }
            }
        }
        drop(members);
        eprintln!("replay: a new member takes the region over...");
        let taker = member(&urls, "bench-taker", replicas).await;
        let c = taker.cluster.clone().expect("cluster");
        let mut acquired = None;
        let mut ready = None;
        for _ in 0..6_000 {
            lease::round(&taker, &c).await;
            match progress(&taker) {
                Some((_, false)) if acquired.is_none() => acquired = Some(Instant::now()),
                Some((applied, true)) => {
                    ready = Some((applied, taker.metrics.replay_ms.load(Relaxed)));
                    break;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (applied, replay_ms) = ready.expect("the new member caught up");
        (rate, total, (applied, replay_ms))
    });
    let (replayed, replay_ms) = replay;
    println!(
        "{{\"single_events_per_s\": {single:.0}, \"cluster_events_per_s\": {cluster_rate:.0}, \"cluster_events\": {total}, \"ratio\": {:.3}, \"replicas\": {replicas}, \"replayed_events\": {replayed}, \"replay_ms\": {replay_ms}, \"replay_ms_per_million\": {:.0}}}",
        cluster_rate / single,
        replay_ms as f64 * 1e6 / (replayed.max(1) as f64)
    );
}
