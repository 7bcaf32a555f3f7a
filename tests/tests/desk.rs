//! One price everywhere, in workerd: under an emergency cap, under a
//! region's caps and with a stale grid, a quote, the rider heatmap, the
//! driver view and the price stream show the same multiplier for the
//! pickup's cell.

use std::time::Duration;

use equilibrium_tests::{http, now_ms, wait_for, Worker, ADMIN_TOKEN};
use serde_json::{json, Value};
use shared::api::{GridCellWire, GridPush};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::grid::GRID_FORMAT;
use shared::surge::Multiplier;

/// The middle of the test region `desk`.
fn pickup() -> (f64, f64) {
    equilibrium_tests::regions::place("desk")
}

fn cell() -> Cell {
    Cell::at(
        LatLng::new(pickup().0, pickup().1).expect("ll"),
        DEFAULT_LEVEL,
    )
}

fn desk_map() -> String {
    format!(
        "/api/v1/pricing/heatmap?bounds={}&zoom=13&region=desk",
        equilibrium_tests::regions::bounds("desk")
    )
}

fn push(w: &Worker, generation: u64, computed_at: u64) {
    push_with_cap(w, generation, computed_at, None);
}

fn push_with_cap(w: &Worker, generation: u64, computed_at: u64, lawful_cap: Option<u16>) {
    let g = GridPush {
        format: GRID_FORMAT,
        region: "desk".into(),
        level: DEFAULT_LEVEL.get(),
        generation,
        computed_at,
        cells: vec![GridCellWire {
            cell: cell().token(),
            multiplier: Multiplier::from_tenths(40).expect("m"),
            supply: 1,
            demand: 9,
            trend: "increasing".into(),
            expected_demand: None,
            expected_supply: None,
        }],
        lawful_cap: lawful_cap.map(|t| Multiplier::from_tenths(t).expect("cap")),
        arms: vec![],
    };
    let r = http()
        .put(w.url("/admin/v1/grids/desk"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&g)
        .send()
        .expect("push");
    assert_eq!(r.status().as_u16(), 200);
}

fn get(w: &Worker, path: &str) -> Value {
    let r = http().get(w.url(path)).send().expect("get");
    assert_eq!(r.status().as_u16(), 200);
    r.json().expect("json")
}

/// (quote, rider heatmap, driver view) multipliers of the pickup's cell,
/// and the quote's source.
fn views(w: &Worker) -> (f64, f64, f64, String) {
    let r = http()
        .post(w.url("/api/v1/pricing/estimate"))
        .json(&json!({
            "pickup_location": {"latitude": pickup().0, "longitude": pickup().1},
            "dropoff_location": {"latitude": pickup().0 + 0.01, "longitude": pickup().1 + 0.01},
            "region": "desk",
        }))
        .send()
        .expect("estimate");
    assert_eq!(r.status().as_u16(), 200);
    let q: Value = r.json().expect("json");
    let token = cell().token();
    let h = get(w, &desk_map());
    let on_map = h["zones"]
        .as_array()
        .and_then(|z| z.iter().find(|z| z["zone_id"] == token.as_str()))
        .and_then(|z| z["surge_multiplier"].as_f64())
        .unwrap_or(f64::NAN);
    let d = get(
        w,
        &format!(
            "/api/v1/driver/heatmap?lat={}&lng={}&radius=3000&region=desk",
            pickup().0,
            pickup().1
        ),
    );
    let for_driver = d["recommended_zones"]
        .as_array()
        .and_then(|z| z.iter().find(|z| z["zone_id"] == token.as_str()))
        .and_then(|z| z["surge_multiplier"].as_f64())
        .unwrap_or(f64::NAN);
    (
        q["surge_multiplier"].as_f64().unwrap_or(f64::NAN),
        on_map,
        for_driver,
        q["surge_source"]["source"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// The pickup cell's multiplier in the next grid message of a stream.
fn next_streamed(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
) -> (u64, f64) {
    loop {
        match ws.read().expect("ws read") {
            tungstenite::Message::Text(t) => {
                let m: Value = serde_json::from_str(&t).expect("json");
                let token = cell().token();
                let multiplier = m["grid"]["cells"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["cell"] == token.as_str()))
                    .and_then(|c| c["multiplier"].as_f64())
                    .unwrap_or(f64::NAN);
                return (m["grid"]["generation"].as_u64().unwrap_or(0), multiplier);
            }
            tungstenite::Message::Close(_) => panic!("socket closed"),
            _ => continue,
        }
    }
}

fn subscribe(
    w: &Worker,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>> {
    tungstenite::connect(w.ws_url("/api/v1/pricing/stream?region=desk"))
        .expect("websocket connect")
        .0
}

#[test]
fn quotes_heatmaps_and_the_driver_view_agree_under_caps_and_staleness() {
    // A decay slow enough that a stale value holds for the whole test.
    let w = Worker::start_with_vars(&[
        ("GRID_CACHE_MS", "200"),
        ("CONFIG_CACHE_MS", "200"),
        ("GRID_DECAY_SECONDS", "100000"),
    ]);
    push(&w, 1, now_ms());
    let (q, map, driver, source) = views(&w);
    assert_eq!((q, map, driver), (4.0, 4.0, 4.0));
    assert!(matches!(source.as_str(), "fresh" | "cached"), "{source}");

    // An emergency: every view shows the capped price a quote charges.
    w.kv_put("CONFIG", "emergency_cap", "1.5");
    wait_for("the emergency cap", Duration::from_secs(30), || {
        views(&w).0 == 1.5
    });
    let (q, map, driver, _) = views(&w);
    assert_eq!((q, map, driver), (1.5, 1.5, 1.5));
    // The stream too: the grid held at connection, then the next push.
    let mut ws = subscribe(&w);
    assert_eq!(next_streamed(&mut ws), (1, 1.5));
    push(&w, 2, now_ms());
    assert_eq!(next_streamed(&mut ws), (2, 1.5));

    // The region's own caps, the emergency lifted.
    w.kv_delete("CONFIG", "emergency_cap");
    w.kv_put("CONFIG", "caps:desk", r#"{"min":1.0,"max":2.0}"#);
    wait_for("the region's caps", Duration::from_secs(30), || {
        views(&w).0 == 2.0
    });
    let (q, map, driver, _) = views(&w);
    assert_eq!((q, map, driver), (2.0, 2.0, 2.0));
    push(&w, 3, now_ms());
    assert_eq!(next_streamed(&mut ws), (3, 2.0));

    // A stale grid (1,030 s old, fresh for 30 s, decaying over 100,000 s):
    // 4.0 decays to 3.9 in every view.
    w.kv_put("CONFIG", "caps:desk", r#"{"min":1.0,"max":5.0}"#);
    wait_for("the caps lifted", Duration::from_secs(30), || {
        views(&w).0 == 4.0
    });
    push(&w, 4, now_ms() - 1_030_000);
    wait_for("the stale grid uncapped", Duration::from_secs(30), || {
        views(&w).3 == "stale" && views(&w).0 == 3.9
    });
    assert_eq!(views(&w), (3.9, 3.9, 3.9, "stale".into()));
    assert_eq!(next_streamed(&mut ws), (4, 3.9));
    let h = get(&w, &desk_map());
    assert_eq!(h["stale"], true, "{h}");

    safety_settings_fail_closed(&w, &mut ws);
}

/// The settings this worker's isolate cannot use now (`/health`).
fn degraded(w: &Worker) -> Value {
    get(w, "/health")["degraded"].clone()
}

/// Caps, the emergency cap and its declaration fail closed: a bad value
/// or a failed read keeps the last good one, and with none every view
/// prices at 1.0 from the `default` source.
fn safety_settings_fail_closed(
    w: &Worker,
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
) {
    push(w, 5, now_ms());
    wait_for("a fresh grid", Duration::from_secs(30), || {
        views(w).0 == 4.0
    });
    assert_eq!(next_streamed(ws), (5, 4.0));
    // A mistyped emergency cap where none was set: nothing good to keep.
    w.kv_put("CONFIG", "emergency_cap", "\"1.5x\"");
    wait_for("the mistyped cap", Duration::from_secs(30), || {
        views(w).0 == 1.0
    });
    assert_eq!(views(w), (1.0, 1.0, 1.0, "default".into()));
    push(w, 6, now_ms());
    assert_eq!(next_streamed(ws), (6, 1.0));
    let why = degraded(w)["emergency_cap"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(why.contains("invalid value"), "{why}");
    // A good cap, then a value that is not JSON: the good one holds.
    w.kv_put("CONFIG", "emergency_cap", "2.5");
    wait_for("the emergency cap", Duration::from_secs(30), || {
        views(w).0 == 2.5
    });
    assert!(degraded(w).get("emergency_cap").is_none(), "restored");
    w.kv_put("CONFIG", "emergency_cap", "{not json");
    // Settings are read by the requests that price (a quote), not by
    // `/health`, which shows what they found.
    wait_for("the bad value read", Duration::from_secs(30), || {
        views(w).0 == 2.5 && degraded(w).get("emergency_cap").is_some()
    });
    assert_eq!(views(w), (2.5, 2.5, 2.5, views(w).3));
    // Region caps without `min`: the last good caps (1.0-5.0) hold, under
    // the emergency cap in force.
    w.kv_put("CONFIG", "caps:desk", r#"{"max":2.0}"#);
    wait_for("the incomplete caps read", Duration::from_secs(30), || {
        views(w).0 == 2.5 && degraded(w).get("caps:desk").is_some()
    });
    assert_eq!(views(w).0, 2.5);
    push(w, 7, now_ms());
    assert_eq!(next_streamed(ws), (7, 2.5));
    // Fixed: every setting in force again.
    w.kv_delete("CONFIG", "emergency_cap");
    w.kv_put("CONFIG", "caps:desk", r#"{"min":1.0,"max":3.0}"#);
    wait_for("the settings fixed", Duration::from_secs(30), || {
        views(w).0 == 3.0
    });
    assert_eq!(degraded(w), json!({}));
}

#[test]
fn a_declared_emergency_holds_every_view_at_the_lawful_cap() {
    let w = Worker::start_with_vars(&[("GRID_CACHE_MS", "200"), ("CONFIG_CACHE_MS", "200")]);
    // The origin ships the region's normal range with its grids: 2.2.
    push_with_cap(&w, 1, now_ms(), Some(22));
    assert_eq!(views(&w).0, 4.0, "no emergency: the cap is not applied");
    w.kv_put("CONFIG", "emergency:desk", "true");
    wait_for("the emergency declared", Duration::from_secs(30), || {
        views(&w).0 == 2.2
    });
    let (q, map, driver, _) = views(&w);
    assert_eq!((q, map, driver), (2.2, 2.2, 2.2));
    let mut ws = subscribe(&w);
    assert_eq!(next_streamed(&mut ws), (1, 2.2));
    push_with_cap(&w, 2, now_ms(), Some(22));
    assert_eq!(next_streamed(&mut ws), (2, 2.2));
    // A region without enough history to have a normal range: 1.0.
    push_with_cap(&w, 3, now_ms(), None);
    assert_eq!(next_streamed(&mut ws), (3, 1.0));
    wait_for("the grid without a cap", Duration::from_secs(30), || {
        views(&w).0 == 1.0
    });
    assert_eq!(views(&w).0, 1.0);
    // The emergency lifted.
    w.kv_put("CONFIG", "emergency:desk", "false");
    wait_for("the emergency lifted", Duration::from_secs(30), || {
        views(&w).0 == 4.0
    });
    let (q, map, driver, _) = views(&w);
    assert_eq!((q, map, driver), (4.0, 4.0, 4.0));
}
