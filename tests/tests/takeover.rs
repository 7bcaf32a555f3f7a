//! A take-over publishes what the old owner would have: two origins in
//! process on a real NATS server with a manual clock, against one
//! uninterrupted single-node origin fed the same events and ticked at the
//! same instants.
//!
//! Member A owns `sf`, ingests (through the stream) and ticks, storing its
//! grid and engine smoothing in the cluster each tick; then it dies without
//! a word (its tasks stop; its lease lapses). More events arrive. Member B
//! takes the region over: it restores A's last grid and smoothing and
//! replays the region's stream. B's first grid must equal the reference's
//! grid at that instant: the same cells, multipliers and generation.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use equilibrium_tests::nats::NatsCluster;
use origin::clock::ManualClock;
use origin::cluster::{lease, Cluster};
use origin::config::Config;
use origin::http::ingest::{apply_batch, Kind};
use origin::ingest::Format;
use origin::state::{lock, AppState};
use origin::store::Store;
use origin::tick::tick_once;
use serde_json::json;
use shared::time::Timestamp;

const T0: u64 = 1_800_000_000_000;

fn config(nats: &NatsCluster, node: &str) -> Config {
    let mut c = Config::default();
    c.auth.producer_tokens = vec!["producer-token-0123456789".into()];
    c.auth.reader_tokens = vec!["reader-token-0123456789".into()];
    c.cluster.nats_urls = vec![nats.urls()];
    c.cluster.node_id = node.into();
    c.cluster.lease_ttl_seconds = 2;
    c
}

async fn member(nats: &NatsCluster, node: &str, clock: &Arc<ManualClock>) -> Arc<AppState> {
    let c = config(nats, node);
    let regions = c.regions().expect("regions");
    let cluster = Cluster::connect(&c.cluster, &regions, c.stream_retention())
        .await
        .expect("join");
    AppState::in_cluster(
        c,
        Box::new(Store::open_in_memory().expect("store")),
        clock.clone(),
        Arc::new(cluster),
    )
    .expect("state")
}

fn reference(clock: &Arc<ManualClock>) -> Arc<AppState> {
    let mut c = Config::default();
    c.auth.producer_tokens = vec!["producer-token-0123456789".into()];
    c.auth.reader_tokens = vec!["reader-token-0123456789".into()];
    AppState::new(c, Store::open_in_memory().expect("store"), clock.clone()).expect("state")
}

/// The member's applied count for `sf` (None: it does not own it ready).
fn applied(s: &AppState) -> Option<u64> {
    let c = s.cluster.as_ref()?;
    let owned = lock(&c.owned);
    let o = owned.get(&0)?;
    o.stats
        .ready
        .load(Acquire)
        .then(|| o.stats.applied.load(Relaxed))
}

/// Runs lease rounds on `s` until it owns `sf` and has applied `events`
/// (polled for two minutes at most: a lapse takes a lease TTL of real
/// time on the NATS server).
async fn until_caught_up(s: &Arc<AppState>, events: u64) {
    let c = s.cluster.clone().expect("cluster");
    for _ in 0..2_400 {
        lease::round(s, &c).await;
        if applied(s) == Some(events) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} did not catch up to {events} events: {:?}",
        c.node,
        applied(s)
    );
}

/// A point in one of 24 cells around central San Francisco.
fn spot(i: u64) -> (f64, f64) {
    (
        37.76 + (i % 6) as f64 * 4e-3,
        -122.43 + (i / 6 % 4) as f64 * 5e-3,
    )
}

/// One second's events at `at`: drivers moving between 24 cells, and
/// demand whose place and size keep changing, so multipliers rise and
/// fall (and the engine's smoothing, not just the published values,
/// decides the next grid).
fn events(second: u64, at: u64) -> (String, String) {
    let drivers: Vec<_> = (0..12u64)
        .map(|d| {
            let (lat, lng) = spot(d * 7 + second / 4);
            json!({"driver_id": format!("d-{}", d + 12 * (second % 5)),
                   "latitude": lat, "longitude": lng,
                   "available": !(second + d).is_multiple_of(4), "timestamp": at})
        })
        .collect();
    let demand: Vec<_> = (0..(second * 7 % 11))
        .map(|k| {
            let (lat, lng) = spot(k * 5 + second / 3);
            json!({"kind": "ride_request", "latitude": lat, "longitude": lng, "timestamp": at})
        })
        .collect();
    (json!(drivers).to_string(), json!(demand).to_string())
}

async fn post(s: &AppState, body: &(String, String)) -> u64 {
    let d = apply_batch(
        s,
        Kind::Locations,
        body.0.as_bytes(),
        Format::JsonArray,
        None,
    )
    .await
    .expect("locations");
    let m = apply_batch(s, Kind::Demand, body.1.as_bytes(), Format::JsonArray, None)
        .await
        .expect("demand");
    (d.accepted + m.accepted) as u64
}

fn grid(s: &AppState) -> String {
    s.grid("sf").expect("a grid")
}

#[test]
fn the_next_grid_after_a_take_over_is_the_uninterrupted_one() {
    let nats = NatsCluster::start(1);
    on_runtime(take_over(&nats));
}

/// Runs the members on a runtime of their own (the NATS server is started,
/// and polled with the blocking client, outside it).
fn on_runtime(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f);
}

async fn take_over(nats: &NatsCluster) {
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let reference = reference(&clock);
    let a = member(nats, "member-a", &clock).await;
    until_caught_up(&a, 0).await;

    // A owns sf: 60 s of events, a tick every 5 s, compared each time.
    let mut sent = 0;
    for second in 0..60u64 {
        clock.set(Timestamp(T0 + second * 1_000));
        let body = events(second, T0 + second * 1_000);
        let accepted = post(&a, &body).await;
        assert_eq!(post(&reference, &body).await, accepted);
        sent += accepted;
        if second % 5 == 4 {
            until_caught_up(&a, sent).await;
            clock.set(Timestamp(T0 + second * 1_000 + 500));
            assert_eq!(tick_once(&a).await, 1, "A ticks sf");
            assert_eq!(tick_once(&reference).await, 1);
            assert_eq!(grid(&a), grid(&reference), "A's grid at {second} s");
        }
    }
    let last_of_a = grid(&a);

    // A dies: its feed stops and it renews nothing more. Events keep
    // arriving (through B, any member ingests).
    let b = member(nats, "member-b", &clock).await;
    if let Some(c) = &a.cluster {
        for (_, o) in lock(&c.owned).drain() {
            o.feed.abort();
        }
    }
    drop(a);
    for second in 60..63u64 {
        clock.set(Timestamp(T0 + second * 1_000));
        let body = events(second, T0 + second * 1_000);
        sent += post(&b, &body).await;
        post(&reference, &body).await;
    }

    // B takes over once A's member key and lease lapse (real seconds on the
    // NATS server's clock; polled), replays, and ticks: its first grid and
    // the next ones, with events still arriving, are the uninterrupted
    // run's.
    until_caught_up(&b, sent).await;
    clock.set(Timestamp(T0 + 63_500));
    assert_eq!(tick_once(&b).await, 1, "B ticks sf");
    tick_once(&reference).await;
    let (got, want) = (grid(&b), grid(&reference));
    assert_ne!(got, last_of_a, "B published a new grid");
    assert_eq!(got, want, "B's first grid is the uninterrupted run's");
    let mut surged = 0;
    for second in 63..90u64 {
        clock.set(Timestamp(T0 + second * 1_000));
        let body = events(second, T0 + second * 1_000);
        let accepted = post(&b, &body).await;
        assert_eq!(post(&reference, &body).await, accepted);
        sent += accepted;
        if second % 5 == 2 {
            until_caught_up(&b, sent).await;
            clock.set(Timestamp(T0 + second * 1_000 + 500));
            tick_once(&b).await;
            tick_once(&reference).await;
            assert_eq!(grid(&b), grid(&reference), "B's grid at {second} s");
            let g: serde_json::Value = serde_json::from_str(&grid(&b)).expect("json");
            surged += g["cells"].as_array().map_or(0, |c| {
                c.iter()
                    .filter(|c| c["multiplier"].as_f64() > Some(1.0))
                    .count()
            });
        }
    }
    assert!(surged > 0, "the compared grids have surge in them");
}

/// A replay bigger than the NATS server's per-client buffer (64 MiB) goes
/// through: 400 messages of 8,192 driver reports (about 85 MiB) are all
/// applied. (The ordered consumer this replaced asked for 500 messages at
/// once, was cut off as a slow consumer, and stalled.)
#[test]
fn a_replay_larger_than_the_client_buffer_completes() {
    let nats = NatsCluster::start(1);
    on_runtime(big_replay(&nats));
}

async fn big_replay(nats: &NatsCluster) {
    use shared::fare::VehicleClass;
    use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
    use shared::market::{DriverId, DriverSeen};

    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let writer = member(nats, "writer", &clock).await;
    let cluster = writer.cluster.clone().expect("cluster");
    let cell = Cell::at(LatLng::new(37.7749, -122.4194).expect("ll"), DEFAULT_LEVEL);
    let mut total = 0u64;
    for m in 0..400u64 {
        let drivers: Vec<(usize, DriverSeen)> = (0..8_192u64)
            .map(|d| {
                (
                    0,
                    DriverSeen {
                        driver: DriverId(m * 10_000 + d),
                        cell,
                        class: VehicleClass::Standard,
                        available: true,
                        at: Timestamp(T0),
                    },
                )
            })
            .collect();
        let published = origin::cluster::publish::publish(
            &cluster,
            &writer.regions,
            &drivers,
            &[],
            &format!("big-{m}"),
        )
        .await
        .expect("published");
        assert_eq!(published.stored, 1);
        total += drivers.len() as u64;
    }
    let reader = member(nats, "reader", &clock).await;
    // Whichever member the region goes to replays all of it.
    let c_w = writer.cluster.clone().expect("cluster");
    let c_r = reader.cluster.clone().expect("cluster");
    for _ in 0..2_400 {
        lease::round(&writer, &c_w).await;
        lease::round(&reader, &c_r).await;
        if applied(&writer) == Some(total) || applied(&reader) == Some(total) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "replay of {total} events did not complete: writer {:?}, reader {:?}",
        applied(&writer),
        applied(&reader)
    );
}

/// An owner whose renewal fails stops ticking the region at once: here its
/// lease is overwritten (as if it had lapsed and another member had taken
/// it), so the next compare-and-set renewal fails.
#[test]
fn an_owner_that_cannot_renew_stops_ticking_at_once() {
    let nats = NatsCluster::start(1);
    on_runtime(async {
        let clock = Arc::new(ManualClock::new(Timestamp(T0)));
        let a = member(&nats, "member-a", &clock).await;
        until_caught_up(&a, 0).await;
        assert_eq!(tick_once(&a).await, 1, "the owner ticks");
        let c = a.cluster.clone().expect("cluster");
        c.leases
            .put("sf", "member-x".into())
            .await
            .expect("lease overwritten");
        lease::round(&a, &c).await;
        assert!(applied(&a).is_none(), "the region was dropped");
        assert_eq!(tick_once(&a).await, 0, "and is not ticked");
        assert_eq!(a.metrics.leases_lost.load(Relaxed), 1);
    });
}
