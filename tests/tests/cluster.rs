//! The origin cluster end to end: three real `nats-server` processes
//! (JetStream, stream and buckets replicated three times), three origins in
//! cluster mode, and the real worker under `wrangler dev` receiving the
//! grids. Phases, on one cluster (they would not fit the machine side by
//! side):
//!
//! 1. The same batch with the same `Idempotency-Key`, posted to two
//!    different origins, counts once.
//! 2. `kill -9` of a NATS node: ingest and ticks go on; nothing
//!    acknowledged is lost.
//! 3. `kill -9` of the origin that owns the region while a driver stream
//!    flows: another origin owns it, the edge keeps receiving newer
//!    generations, and the events acknowledged to clients equal the events
//!    the new owner's market counted, exactly.
//!
//! "Counted" is the owner's `applied` in `/health`: events applied to the
//! region's market since it acquired the region, its replay of the stream
//! included. Every wait polls; nothing depends on how fast the machine is.

use std::time::Duration;

use equilibrium_tests::nats::NatsCluster;
use equilibrium_tests::{http, now_ms, wait_for, Origin, Worker, PRODUCER_TOKEN, SF};
use serde_json::{json, Value};

fn start_origin(dir: &std::path::Path, nats: &NatsCluster, node: &str, edge: &str) -> Origin {
    Origin::start_with_env(
        &dir.join(format!("{node}.sqlite")),
        edge,
        0.5,
        &[
            ("EQ_NATS_URLS", &nats.urls()),
            ("EQ_NODE_ID", node),
            ("EQ_STREAM_REPLICAS", "3"),
            ("EQ_LEASE_TTL_SECONDS", "3"),
        ],
    )
}

fn health(o: &Origin) -> Value {
    http()
        .get(o.url("/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .ok()
        .and_then(|r| r.json().ok())
        .unwrap_or(Value::Null)
}

/// The index of the live origin that owns `sf` with its replay caught up,
/// and what its market has counted.
fn owner(origins: &[Option<Origin>]) -> Option<(usize, u64)> {
    origins.iter().enumerate().find_map(|(i, o)| {
        let h = health(o.as_ref()?);
        let owned = h["cluster"]["owned"]
            .as_array()?
            .iter()
            .find(|r| r["region"] == "sf")?
            .clone();
        (owned["ready"] == true).then(|| (i, owned["applied"].as_u64().unwrap_or(0)))
    })
}

fn wait_owner(origins: &[Option<Origin>], what: &str) -> usize {
    let mut found = None;
    wait_for(what, Duration::from_secs(90), || {
        found = owner(origins).map(|(i, _)| i);
        found.is_some()
    });
    found.expect("owner")
}

/// `n` driver reports (drivers `first..first+n`), stamped now.
fn batch(first: u64, n: u64) -> Vec<Value> {
    let t = now_ms();
    (first..first + n)
        .map(|d| {
            json!({"driver_id": format!("d-{d}"), "latitude": SF.0 + (d % 10) as f64 * 1e-3,
                   "longitude": SF.1, "available": d % 3 != 0, "timestamp": t})
        })
        .collect()
}

/// Posts a batch with an `Idempotency-Key` to the origins in turn,
/// starting at `start`, until one acknowledges it (a dead origin or a 503
/// moves on to the next; the key makes a retry of a batch that was in fact
/// stored count once). Returns the events acknowledged.
fn post_until_acked(origins: &[Option<Origin>], start: usize, batch: &[Value], key: &str) -> u64 {
    let n = batch.len() as u64;
    let mut acked = None;
    wait_for(
        "a batch to be acknowledged",
        Duration::from_secs(90),
        || {
            for k in 0..origins.len() {
                let Some(o) = &origins[(start + k) % origins.len()] else {
                    continue;
                };
                let r = http()
                    .post(o.url("/v1/ingest/locations"))
                    .bearer_auth(PRODUCER_TOKEN)
                    .header("idempotency-key", key)
                    .timeout(Duration::from_secs(10))
                    .json(batch)
                    .send();
                if let Ok(r) = r {
                    if r.status().as_u16() == 200 {
                        let report: Value = r.json().expect("report");
                        acked = report["accepted"].as_u64();
                        return true;
                    }
                    assert_eq!(r.status().as_u16(), 503, "only the stream's 503 is retried");
                }
            }
            false
        },
    );
    let acked = acked.expect("acknowledged");
    assert_eq!(acked, n, "every report of the batch is valid");
    acked
}

/// Waits until the owner's market has counted `expected` events, and
/// checks it never counts more.
fn wait_counted(origins: &[Option<Origin>], expected: u64, what: &str) -> usize {
    let mut who = 0;
    wait_for(what, Duration::from_secs(90), || match owner(origins) {
        Some((i, applied)) => {
            assert!(
                applied <= expected,
                "counted {applied} events, {expected} acknowledged"
            );
            who = i;
            applied == expected
        }
        None => false,
    });
    who
}

fn edge_generation(worker: &Worker) -> u64 {
    http()
        .get(worker.url("/api/v1/pricing/heatmap?bounds=37.6,-122.6,37.9,-122.3&region=sf"))
        .send()
        .ok()
        .and_then(|r| r.json::<Value>().ok())
        .and_then(|h| h["generation"].as_u64())
        .unwrap_or(0)
}

#[test]
fn three_origins_on_nats_share_a_region_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut nats = NatsCluster::start(3);
    let edge_dir = tempfile::tempdir().expect("tmp");
    let worker = Worker::start_at(
        edge_dir.path(),
        &[("GRID_CACHE_MS", "200"), ("GRID_REFRESH_MS", "200")],
    );
    let edge = worker.url("");
    let edge = edge.trim_end_matches('/');
    let mut origins: Vec<Option<Origin>> = ["origin-a", "origin-b", "origin-c"]
        .iter()
        .map(|n| Some(start_origin(dir.path(), &nats, n, edge)))
        .collect();
    let first_owner = wait_owner(&origins, "one origin to own sf");
    let members = health(origins[0].as_ref().expect("a"))["cluster"]["members"].clone();
    eprintln!("owner of sf: origin {first_owner}; members {members}");
    wait_for(
        "the edge to receive the owner's grids",
        Duration::from_secs(60),
        || edge_generation(&worker) > 0,
    );

    // 1. One batch, one key, two origins: counted once.
    let mut acked = 0;
    let mut next_driver = 0;
    let twice = batch(next_driver, 20);
    let a = post_until_acked(&origins, 0, &twice, "phase-1-batch");
    let b = post_until_acked(&origins, 1, &twice, "phase-1-batch");
    assert_eq!((a, b), (20, 20), "both origins answer as if they took it");
    acked += a;
    next_driver += 20;
    // A later batch: once it is counted, the repeat (published before it)
    // would have been counted too.
    acked += post_until_acked(&origins, 2, &batch(next_driver, 5), "phase-1-marker");
    next_driver += 5;
    wait_counted(&origins, acked, "the batch counted once");
    let duplicates: f64 = origins
        .iter()
        .flatten()
        .map(|o| o.metric("equilibrium_cluster_publish_duplicates_total"))
        .sum();
    assert_eq!(
        duplicates, 1.0,
        "the repeat was recognised as one duplicate message"
    );

    // 2. A NATS node dies: ingest and ticks go on, nothing is lost.
    nats.kill(1);
    let before = edge_generation(&worker);
    for i in 0..10 {
        acked += post_until_acked(
            &origins,
            i,
            &batch(next_driver, 10),
            &format!("phase-2-{i}"),
        );
        next_driver += 10;
    }
    wait_counted(
        &origins,
        acked,
        "every acknowledged event counted with a NATS node down",
    );
    wait_for(
        "newer grids at the edge with a NATS node down",
        Duration::from_secs(60),
        || edge_generation(&worker) > before,
    );
    nats.restart(1);

    // 3. The owner dies mid-stream: another origin takes over, replays the
    //    stream, and has counted exactly what was acknowledged.
    let owner_before = wait_counted(&origins, acked, "the owner caught up before the kill");
    let mut generations = vec![edge_generation(&worker)];
    for i in 0..30 {
        if i == 10 {
            origins[owner_before].as_mut().expect("owner").kill_hard();
            origins[owner_before] = None;
        }
        acked += post_until_acked(
            &origins,
            i,
            &batch(next_driver, 10),
            &format!("phase-3-{i}"),
        );
        next_driver += 10;
        generations.push(edge_generation(&worker));
    }
    let new_owner = wait_counted(
        &origins,
        acked,
        "the new owner to count every acknowledged event",
    );
    assert_ne!(new_owner, owner_before);
    let at_takeover = edge_generation(&worker);
    wait_for(
        "the new owner's grids at the edge",
        Duration::from_secs(60),
        || {
            let g = edge_generation(&worker);
            generations.push(g);
            g > at_takeover
        },
    );
    assert!(
        generations.windows(2).all(|w| w[0] <= w[1]),
        "the edge's generation never went backwards: {generations:?}"
    );
    let h = health(origins[new_owner].as_ref().expect("new owner"));
    eprintln!("after the kill: {}", h["cluster"]);
    assert_eq!(next_driver, 20 + 5 + 100 + 300);
}
