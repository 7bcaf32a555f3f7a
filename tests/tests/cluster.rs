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
use equilibrium_tests::postgres::Postgres;
use equilibrium_tests::{http, now_ms, wait_for, Origin, Worker, PRODUCER_TOKEN, SF};
use serde_json::{json, Value};

/// Four regions. Rendezvous hashing over `origin-a`, `-b` and `-c` gives
/// `sd` to a, `sf` and `oak` to b and `sac` to c, so once all three are
/// members every origin owns a region (the first one up owns all four
/// until the others join and it hands theirs back).
const REGIONS: &str = r#"
[[regions]]
id = "sf"
bounds = [37.60, -122.55, 37.85, -122.35]
[[regions]]
id = "oak"
bounds = [37.70, -122.34, 37.90, -122.10]
[[regions]]
id = "sac"
bounds = [38.45, -121.60, 38.70, -121.30]
[[regions]]
id = "sd"
bounds = [32.60, -117.30, 32.95, -116.95]
[regions.policy]
name = "controller"
"#;

/// A point inside each region.
fn point(region: &str) -> (f64, f64) {
    match region {
        "sf" => SF,
        "oak" => (37.80, -122.27),
        "sac" => (38.58, -121.49),
        _ => (32.72, -117.16),
    }
}

fn start_origin(
    dir: &std::path::Path,
    nats: &NatsCluster,
    pg: &Postgres,
    node: &str,
    edge: &str,
) -> Origin {
    let config = dir.join("regions.toml");
    std::fs::write(&config, REGIONS).expect("config");
    Origin::start_with_env(
        &dir.join(format!("{node}.sqlite")),
        edge,
        0.5,
        &[
            ("EQ_CONFIG", config.to_str().expect("utf-8 path")),
            ("EQ_NATS_URLS", &nats.urls()),
            ("EQ_NODE_ID", node),
            ("EQ_STREAM_REPLICAS", "3"),
            ("EQ_LEASE_TTL_SECONDS", "3"),
            ("EQ_POSTGRES_URL", &pg.url()),
        ],
    )
}

/// Which origin owns each region (caught up), as their `/health` says.
fn owners(origins: &[Option<Origin>]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for (i, o) in origins.iter().enumerate() {
        let Some(o) = o else { continue };
        let h = health(o);
        for r in h["cluster"]["owned"].as_array().into_iter().flatten() {
            if r["ready"] == true {
                out.insert(r["region"].as_str().unwrap_or_default().to_owned(), i);
            }
        }
    }
    out
}

/// A busy market in `region` (one driver, 20 ride requests), through
/// origin `via`. Returns the events acknowledged.
fn busy(origins: &[Option<Origin>], via: usize, region: &str) -> u64 {
    let o = origins[via].as_ref().expect("origin");
    let (lat, lng) = point(region);
    let t = now_ms();
    let driver = json!([{"driver_id": format!("busy-{region}"), "latitude": lat, "longitude": lng,
                         "available": true, "timestamp": t}]);
    let demand: Vec<Value> = (0..20)
        .map(|i| json!({"kind": "ride_request", "latitude": lat, "longitude": lng, "timestamp": t + i}))
        .collect();
    let mut acked = 0;
    for (path, body) in [
        ("/v1/ingest/locations", driver),
        ("/v1/ingest/demand", json!(demand)),
    ] {
        let r = o.post(path).json(&body).send().expect("post");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let report: Value = r.json().expect("report");
        acked += report["accepted"].as_u64().expect("accepted");
    }
    assert_eq!(acked, 21, "every event of the busy market is valid");
    acked
}

fn metric_sum(origins: &[Option<Origin>], name: &str) -> f64 {
    origins.iter().flatten().map(|o| o.metric(name)).sum()
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
    owner_of(origins, "sf")
}

/// The live origin that owns `region`, caught up, and what it has counted.
fn owner_of(origins: &[Option<Origin>], region: &str) -> Option<(usize, u64)> {
    origins.iter().enumerate().find_map(|(i, o)| {
        let h = health(o.as_ref()?);
        let owned = h["cluster"]["owned"]
            .as_array()?
            .iter()
            .find(|r| r["region"] == region)?
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
    let mut pg = Postgres::start();
    let edge_dir = tempfile::tempdir().expect("tmp");
    let worker = Worker::start_at(
        edge_dir.path(),
        &[("GRID_CACHE_MS", "200"), ("GRID_REFRESH_MS", "200")],
    );
    let edge = worker.url("");
    let edge = edge.trim_end_matches('/');
    let mut origins: Vec<Option<Origin>> = ["origin-a", "origin-b", "origin-c"]
        .iter()
        .map(|n| Some(start_origin(dir.path(), &nats, &pg, n, edge)))
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

    // 4. Shared history: the least-efficient-zones report, asked of any
    //    origin, has rows of regions owned by different origins.
    let mut by_region = std::collections::BTreeMap::new();
    wait_for(
        "the regions spread over the three origins",
        Duration::from_secs(90),
        || {
            by_region = owners(&origins);
            let distinct: std::collections::BTreeSet<_> = by_region.values().collect();
            by_region.len() == 4 && distinct.len() == 3
        },
    );
    eprintln!("owners: {by_region:?}");
    // Every member answers for every region's grid, owner or not.
    for o in origins.iter().flatten() {
        for region in ["sf", "oak", "sac", "sd"] {
            let g: Value = o
                .get(&format!("/v1/grids/{region}"))
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.json())
                .unwrap_or_else(|e| panic!("{region} from {}: {e}", o.base));
            assert_eq!(g["region"], region);
        }
    }
    let (r1, o1) = by_region
        .iter()
        .next()
        .map(|(r, o)| (r.clone(), *o))
        .expect("a region");
    let (r2, o2) = by_region
        .iter()
        .find(|(_, o)| **o != o1)
        .map(|(r, o)| (r.clone(), *o))
        .expect("regions spread over more than one origin");
    // Counted with the other acknowledged events when a region is sf.
    acked += busy(&origins, 2, &r1) * u64::from(r1 == "sf");
    acked += busy(&origins, 0, &r2) * u64::from(r2 == "sf");
    let asked = (0..3).find(|i| *i != o1 && *i != o2).unwrap_or(0);
    wait_for(
        "both regions in the report of a third origin",
        Duration::from_secs(90),
        || {
            let report: Value = origins[asked]
                .as_ref()
                .expect("origin")
                .get("/v1/analytics/least-efficient?days=1&limit=100")
                .send()
                .ok()
                .and_then(|r| r.json().ok())
                .unwrap_or(Value::Null);
            let regions: Vec<&str> = report["zones"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|z| z["region"].as_str())
                .collect();
            regions.contains(&r1.as_str()) && regions.contains(&r2.as_str())
        },
    );

    // 4b. A controlled region steers by the shared history: rides of `sd`
    //     reported to one origin (three in four found no driver) reach the
    //     controller of `sd`'s owner through PostgreSQL, and its threshold
    //     steps down from 1.0.
    let sd_owner = *by_region.get("sd").expect("sd has an owner");
    let reporter = (sd_owner + 1) % 3;
    let (lat, lng) = point("sd");
    let t = now_ms();
    let rides: Vec<Value> = (0..20)
        .map(|i| {
            json!({"ride_id": format!("sd-ride-{i}"), "region": "sd", "latitude": lat,
                   "longitude": lng, "completed": i % 4 == 0, "multiplier": 1.0,
                   "wait_ms": 240_000, "timestamp": t})
        })
        .collect();
    let r = origins[reporter]
        .as_ref()
        .expect("origin")
        .post("/v1/outcomes")
        .json(&rides)
        .send()
        .expect("post outcomes");
    assert_eq!(r.status().as_u16(), 200, "outcomes");
    let threshold = r#"equilibrium_controller_threshold{region="sd"}"#;
    wait_for(
        "the owner's controller of sd steps on the stored outcomes",
        Duration::from_secs(120),
        || origins[sd_owner].as_ref().expect("owner").metric(threshold) < 1.0,
    );

    // 5. PostgreSQL stops for a while: ticks and pushes go on, the history
    //    waits in the backlog and catches up when it returns.
    acked += busy(&origins, 1, "sf");
    pg.stop();
    let stopped_at = now_ms();
    // Wait for sf's owner itself to tick inside the outage (it ticks every
    // 0.5 s: past a second, one of its ticks is stamped within it and
    // waits in its backlog), not for any origin's backlog: the three tick
    // on different phases, and another's tick alone left sf without a
    // tick in a short outage.
    let sf_owner = wait_owner(&origins, "sf's owner during the outage");
    wait_for(
        "sf's owner's ticks of the outage waiting in its history backlog",
        Duration::from_secs(60),
        || {
            now_ms() > stopped_at + 1_000
                && origins[sf_owner]
                    .as_ref()
                    .expect("owner")
                    .metric("equilibrium_history_backlog_ticks")
                    > 0.0
        },
    );
    // A grid made during the outage reaches the edge.
    let before = edge_generation(&worker);
    wait_for(
        "grids keep reaching the edge without PostgreSQL",
        Duration::from_secs(60),
        || edge_generation(&worker) > before,
    );
    let restarted_at = now_ms();
    pg.restart();
    wait_for(
        "the history backlog written out",
        Duration::from_secs(90),
        || metric_sum(&origins, "equilibrium_history_backlog_ticks") == 0.0,
    );
    assert_eq!(
        metric_sum(&origins, "equilibrium_history_dropped_ticks_total"),
        0.0
    );
    let sf_cell = shared::geo::Cell::at(
        shared::geo::LatLng::new(SF.0, SF.1).expect("ll"),
        shared::geo::DEFAULT_LEVEL,
    )
    .token();
    let history: Value = origins[asked]
        .as_ref()
        .expect("origin")
        .get(&format!(
            "/v1/analytics/history?region=sf&cell={sf_cell}&hours=1&limit=10000"
        ))
        .send()
        .and_then(|r| r.json())
        .expect("history");
    let during = history["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| {
            h["at"]
                .as_u64()
                .is_some_and(|t| stopped_at < t && t < restarted_at)
        })
        .count();
    assert!(
        during > 0,
        "ticks of the outage are in the history: {history}"
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
    let forecasts_restored = "equilibrium_cluster_forecasts_restored_total";
    let restored_before: Vec<f64> = origins
        .iter()
        .map(|o| o.as_ref().map_or(0.0, |o| o.metric(forecasts_restored)))
        .collect();
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
    // It took the forecasts' history over too (from PostgreSQL).
    let restored_after = origins[new_owner]
        .as_ref()
        .expect("new owner")
        .metric(forecasts_restored);
    assert!(
        restored_after > restored_before[new_owner],
        "the new owner restored the forecast history: {restored_after} vs {}",
        restored_before[new_owner]
    );
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

    // 6. The edge's queue batches reach any member: a booking's outcome is
    //    stored once in the shared PostgreSQL whichever member gets its
    //    redelivery, and a rider's second price check, through another
    //    member, is not counted again by the region's owner.
    let live: Vec<usize> = (0..3).filter(|i| origins[*i].is_some()).collect();
    let at = (37.75, -122.20);
    let event = |id: &str, kind: &str| {
        json!({"id": id, "kind": kind, "region": "oak", "latitude": at.0, "longitude": at.1,
               "vehicle_type": "standard", "timestamp": now_ms()})
    };
    let mut completed = event("b_phase6:completed", "booking_completed");
    for (k, v) in [
        ("booking_id", json!("b_phase6")),
        ("multiplier", json!(1.3)),
        ("fare_minor", json!(1_234)),
        ("currency", json!("USD")),
        ("wait_ms", json!(240_000)),
    ] {
        completed[k] = v;
    }
    let check = |id: &str| {
        let mut q = event(id, "quote");
        q["rider"] = json!("rider-phase6");
        q
    };
    let (_, applied_before) = owner_of(&origins, "oak").expect("an owner of oak");
    let mut reports = Vec::new();
    for (via, body) in [
        (live[0], json!([check("q_phase6a"), completed.clone()])),
        (live[1], json!([check("q_phase6b"), completed.clone()])),
    ] {
        let r = origins[via]
            .as_ref()
            .expect("origin")
            .post("/v1/edge-events")
            .json(&body)
            .send()
            .expect("post edge events");
        assert_eq!(r.status().as_u16(), 200);
        reports.push(r.json::<Value>().expect("report"));
    }
    assert_eq!(reports[0]["duplicates"], 0, "{reports:?}");
    assert_eq!(
        reports[1]["duplicates"], 1,
        "the outcome, again: {reports:?}"
    );
    wait_for(
        "oak's owner to apply both price checks",
        Duration::from_secs(90),
        || owner_of(&origins, "oak").is_some_and(|(_, a)| a >= applied_before + 2),
    );
    let grid = |o: &Origin| -> Value {
        o.get("/v1/grids/oak")
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    };
    let reader = origins[live[0]].as_ref().expect("origin");
    let applied_at = grid(reader)["generation"].as_u64().unwrap_or(0);
    let cell = shared::geo::Cell::at(
        shared::geo::LatLng::new(at.0, at.1).expect("ll"),
        shared::geo::DEFAULT_LEVEL,
    )
    .token();
    let mut demand = None;
    wait_for(
        "a grid of oak ticked after both checks",
        Duration::from_secs(60),
        || {
            let g = grid(reader);
            if g["generation"].as_u64().unwrap_or(0) <= applied_at {
                return false;
            }
            demand = g["cells"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["cell"].as_str() == Some(cell.as_str()))
                .and_then(|c| c["demand"].as_u64());
            true
        },
    );
    assert_eq!(
        demand,
        Some(1),
        "one rider's two checks are one unit of demand"
    );
}
