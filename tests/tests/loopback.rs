//! The loop back from the edge to the origin through the events queue
//! (producer and consumer in workerd): bookings become the origin's ride
//! outcomes exactly once, also across an origin outage, and price checks
//! (a message per isolate's batch) become demand in their cell, once per
//! rider, also when the origin was down as they were made.

use std::path::Path;
use std::time::Duration;

use equilibrium_tests::{free_port, http, wait_for, Origin, Worker, DISPATCH_TOKEN, SF};
use serde_json::{json, Value};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};

fn quote(w: &Worker, user: Option<&str>) -> Value {
    let (s, q) = w.estimate_sf(user);
    assert_eq!(s, 200, "{q}");
    q
}

/// Books a quote and drives it through `actions` as dispatch; returns the
/// final record.
fn booking(w: &Worker, actions: &[(&str, Value)]) -> Value {
    let q = quote(w, None);
    let id = q["quote_id"].as_str().expect("id");
    let c: Value = http()
        .post(w.url(&format!("/api/v1/quotes/{id}/confirm")))
        .json(&json!({"quote_token": q["quote_token"]}))
        .send()
        .and_then(|r| r.json())
        .expect("confirm");
    let b = c["booking_id"].as_str().expect("booking").to_owned();
    let mut rec = c;
    for (action, body) in actions {
        let r = http()
            .post(w.url(&format!("/api/v1/bookings/{b}/{action}")))
            .bearer_auth(DISPATCH_TOKEN)
            .json(body)
            .send()
            .expect("act");
        assert_eq!(r.status().as_u16(), 200);
        rec = r.json().expect("record");
    }
    rec
}

/// The outcome rows of the origin's store: (ride id, completed, fare, wait).
fn outcomes(db: &Path) -> Vec<(String, bool, Option<i64>, Option<i64>)> {
    let c = rusqlite::Connection::open(db).expect("open the origin's store");
    let mut st = c
        .prepare(
            "SELECT ride_id, completed, fare_minor, wait_ms FROM ride_outcomes ORDER BY ride_id",
        )
        .expect("query");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

#[test]
fn bookings_reach_the_origin_exactly_once_across_an_outage() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("origin.sqlite");
    let port = free_port();
    let origin_url = format!("http://127.0.0.1:{port}");
    let w = Worker::start_with_vars(&[("ORIGIN_URL", &origin_url)]);
    let mut origin = Origin::start_on(port, &db, &w.base, 1.0, &[]);
    let complete = json!({"distance_km": 1.9, "duration_minutes": 6});
    let mut made = vec![booking(
        &w,
        &[("start", json!({})), ("complete", complete.clone())],
    )];
    wait_for("the first outcome", Duration::from_secs(60), || {
        origin.metric("equilibrium_outcomes_stored_total") >= 1.0
    });

    // The origin goes down; bookings go on at the edge.
    origin.kill_hard();
    made.push(booking(
        &w,
        &[("start", json!({})), ("complete", complete.clone())],
    ));
    made.push(booking(&w, &[("cancel", json!({"reason": "rider"}))]));
    made.push(booking(&w, &[("fail", json!({"reason": "no driver"}))]));
    made.push(booking(
        &w,
        &[
            ("start", json!({})),
            ("cancel", json!({"reason": "driver"})),
        ],
    ));
    made.push(booking(
        &w,
        &[
            ("start", json!({})),
            (
                "complete",
                json!({"distance_km": 9, "duration_minutes": 30}),
            ),
        ],
    ));
    // Started but not finished: no outcome yet.
    let open = booking(&w, &[("start", json!({}))]);

    // Back on the same port and store: the queue's retries deliver.
    let origin = Origin::start_on(port, &db, &w.base, 1.0, &[]);
    wait_for(
        "every outcome after the outage",
        Duration::from_secs(120),
        || outcomes(&db).len() >= made.len(),
    );
    let rows = outcomes(&db);
    let mut want: Vec<(String, bool, Option<i64>, bool)> = made
        .iter()
        .map(|r| {
            let fare = (r["final_fare"].as_f64().expect("fare") * 100.0).round() as i64;
            let completed = r["status"] == "completed";
            let fare = if completed || r["cancellation_fee"].is_number() {
                Some(fare)
            } else {
                None
            };
            let started = r["history"]
                .as_array()
                .expect("history")
                .iter()
                .any(|s| s["status"] == "in_progress");
            (
                r["booking_id"].as_str().expect("id").to_owned(),
                completed,
                fare,
                started,
            )
        })
        .collect();
    want.sort();
    let got: Vec<(String, bool, Option<i64>, bool)> = rows
        .iter()
        .map(|(id, c, f, w)| (id.clone(), *c, *f, w.is_some()))
        .collect();
    assert_eq!(
        got, want,
        "one outcome per finished booking, with its fare and wait"
    );
    assert!(!rows
        .iter()
        .any(|r| Some(r.0.as_str()) == open["booking_id"].as_str()));
    // The wait of a started booking is the time from confirmation to pickup.
    assert!(
        rows.iter()
            .filter_map(|r| r.3)
            .all(|w| (0..60_000).contains(&w)),
        "{rows:?}"
    );

    // A redelivered batch stores nothing twice.
    let again: Vec<Value> = made
        .iter()
        .map(|r| {
            json!({"id": format!("{}:{}", r["booking_id"].as_str().unwrap_or(""), r["status"].as_str().unwrap_or("")),
                   "kind": format!("booking_{}", r["status"].as_str().unwrap_or("")),
                   "region": "sf", "latitude": SF.0, "longitude": SF.1, "vehicle_type": "standard",
                   "timestamp": equilibrium_tests::now_ms(), "booking_id": r["booking_id"], "multiplier": 1.0})
        })
        .collect();
    let report: Value = origin
        .post("/v1/edge-events")
        .json(&again)
        .send()
        .and_then(|r| r.json())
        .expect("post");
    assert_eq!(
        (report["applied"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(made.len() as u64)),
        "{report}"
    );
    assert_eq!(outcomes(&db).len(), made.len());
    // This process stored the five made during the outage, each once.
    assert_eq!(
        origin.metric("equilibrium_outcomes_stored_total"),
        (made.len() - 1) as f64
    );
}

/// A price check from a client at `address` (the `CF-Connecting-IP` the
/// edge keys demand by), as `user` (unverified: it keys nothing).
fn quote_from(w: &Worker, address: &str, at: (f64, f64), user: &str) -> Value {
    let r = http()
        .post(w.url("/api/v1/pricing/estimate"))
        .header("cf-connecting-ip", address)
        .json(&json!({
            "pickup_location": {"latitude": at.0, "longitude": at.1},
            "dropoff_location": {"latitude": at.0 + 0.01, "longitude": at.1},
            "user_id": user,
        }))
        .send()
        .expect("estimate");
    assert_eq!(r.status().as_u16(), 200);
    r.json().expect("quote")
}

#[test]
fn price_checks_count_once_per_client_and_cell_and_a_flood_buys_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let w = Worker::start_with_vars(&[("ORIGIN_URL", &format!("http://127.0.0.1:{port}"))]);
    let origin = Origin::start_on(port, &dir.path().join("o.sqlite"), &w.base, 0.5, &[]);
    // One client floods the pickup's cell with twenty checks under twenty
    // made-up rider ids, then asks in ten other cells 1.7 km apart.
    let flooder = "198.51.100.1";
    for i in 0..20 {
        let _ = quote_from(&w, flooder, SF, &format!("made-up-{i}"));
    }
    for i in 1..=10 {
        let at = (SF.0 - 0.09 + 0.015 * f64::from(i), SF.1 - 0.08);
        let _ = quote_from(&w, flooder, at, "made-up-0");
    }
    // Five other clients check once each at the pickup.
    for i in 2..=6 {
        let _ = quote_from(&w, &format!("198.51.100.{i}"), SF, "someone");
    }
    // Twenty verified riders behind one address (a shared network) check
    // once each at the pickup: twenty riders, twenty demand.
    for i in 0..20 {
        let r = http()
            .post(w.url("/api/v1/pricing/estimate"))
            .header("cf-connecting-ip", "198.51.100.200")
            .bearer_auth(equilibrium_tests::rider_token(&format!("rider-{i}")))
            .json(&json!({
                "pickup_location": {"latitude": SF.0, "longitude": SF.1},
                "dropoff_location": {"latitude": SF.0 + 0.01, "longitude": SF.1},
            }))
            .send()
            .expect("estimate");
        assert_eq!(r.status().as_u16(), 200);
    }
    let events = || {
        origin.metric("equilibrium_edge_events_applied_total")
            + origin.metric("equilibrium_edge_events_duplicates_total")
    };
    wait_for(
        "the 55 price checks at the origin",
        Duration::from_secs(60),
        || events() >= 55.0,
    );
    // The flooder counts in MAX_CELLS_PER_KEY (5) cells, once in each; the
    // others once each.
    let cap = f64::from(shared::market::MAX_CELLS_PER_KEY);
    assert_eq!(
        origin.metric("equilibrium_edge_events_applied_total"),
        cap + 5.0 + 20.0
    );
    assert_eq!(
        origin.metric("equilibrium_edge_events_duplicates_total"),
        55.0 - cap - 5.0 - 20.0
    );
    // The pickup's cell: the flooder once, the five others once each, the
    // twenty riders once each.
    let cell = Cell::at(LatLng::new(SF.0, SF.1).expect("ll"), DEFAULT_LEVEL).token();
    let demand = || -> Option<(u64, u64)> {
        let g: Value = origin.get("/v1/grids/sf").send().ok()?.json().ok()?;
        let cells = g["cells"].as_array()?;
        let here = cells
            .iter()
            .find(|c| c["cell"].as_str() == Some(cell.as_str()))
            .and_then(|c| c["demand"].as_u64())?;
        let total = cells.iter().filter_map(|c| c["demand"].as_u64()).sum();
        Some((here, total))
    };
    wait_for(
        "the quotes' demand in the grid",
        Duration::from_secs(60),
        || demand() == Some((26, 30)),
    );
}

#[test]
fn price_checks_made_while_the_origin_is_down_reach_it_when_it_is_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    // Nothing listens on the origin's port yet.
    let w = Worker::start_with_vars(&[("ORIGIN_URL", &format!("http://127.0.0.1:{port}"))]);
    // Four clients, one check each.
    let ids: Vec<String> = (0..4)
        .map(|i| {
            quote_from(&w, &format!("192.0.2.{i}"), SF, "rider")["quote_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    wait_for(
        "the consumer to find the origin down",
        Duration::from_secs(60),
        || w.log().contains("the origin is unreachable"),
    );
    let origin = Origin::start_on(port, &dir.path().join("o.sqlite"), &w.base, 0.5, &[]);
    // Each client's check is demand of its own: four applied, once each,
    // from the messages the queue retried.
    wait_for(
        "the four price checks at the origin",
        Duration::from_secs(90),
        || origin.metric("equilibrium_edge_events_applied_total") >= 4.0,
    );
    assert_eq!(
        origin.metric("equilibrium_edge_events_applied_total"),
        4.0,
        "{ids:?}"
    );
    assert_eq!(origin.metric("equilibrium_edge_events_rejected_total"), 0.0);
}
