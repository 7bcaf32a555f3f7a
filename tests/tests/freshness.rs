//! Freshness far from the writer: a location whose KV replica is behind the
//! zone object (KV takes up to 60 s to spread) still moves to the newest
//! generation within its refresh period, without a quote ever waiting for
//! the object.

use std::time::Duration;

use equilibrium_tests::{http, now_ms, wait_for, Worker, ADMIN_TOKEN, SF};
use shared::api::{GridCellWire, GridPush};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::grid::GRID_FORMAT;
use shared::surge::Multiplier;

fn grid(generation: u64, tenths: u16) -> GridPush {
    GridPush {
        format: GRID_FORMAT,
        region: "sf".into(),
        level: DEFAULT_LEVEL.get(),
        generation,
        computed_at: now_ms(),
        cells: vec![GridCellWire {
            cell: Cell::at(LatLng::new(SF.0, SF.1).expect("ll"), DEFAULT_LEVEL).token(),
            multiplier: Multiplier::from_tenths(tenths).expect("m"),
            supply: 1,
            demand: 9,
            trend: "increasing".into(),
            expected_demand: None,
            expected_supply: None,
        }],
        lawful_cap: None,
        arms: vec![],
    }
}

#[test]
fn a_location_behind_on_kv_catches_up_from_the_zone_object() {
    let state = tempfile::tempdir().expect("tmp");
    let vars = [("GRID_CACHE_MS", "200"), ("GRID_REFRESH_MS", "500")];
    let mut w = Worker::start_at(state.path(), &vars);
    let r = http()
        .put(w.url("/admin/v1/grids/sf"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&grid(2, 30))
        .send()
        .expect("push");
    assert_eq!(r.status().as_u16(), 200);
    // Another location: its KV replica still holds generation 1, and its
    // location cache is empty (a different location's cache).
    w.kv_put(
        "GRIDS",
        "grid:sf",
        &serde_json::to_string(&grid(1, 15)).expect("json"),
    );
    w.stop();
    let cache = state.path().join("v3").join("cache");
    if cache.exists() {
        std::fs::remove_dir_all(&cache).expect("clear the location cache");
    }
    let w = Worker::start_at(state.path(), &vars);
    let (_, first) = w.estimate_sf(None);
    assert_eq!(
        first["surge_source"]["grid_generation"], 1,
        "the first quote prices from the lagging KV replica without waiting: {first}"
    );
    assert_eq!(first["surge_multiplier"], 1.5);
    wait_for(
        "the zone object's newer generation",
        Duration::from_secs(30),
        || w.estimate_sf(None).1["surge_source"]["grid_generation"] == 2,
    );
    let (_, q) = w.estimate_sf(None);
    assert_eq!(q["surge_multiplier"], 3.0, "{q}");
    // Staleness is the grid's age at the origin, not the fetch's: fresh.
    assert!(
        matches!(
            q["surge_source"]["source"].as_str(),
            Some("fresh" | "cached")
        ),
        "{q}"
    );
}
