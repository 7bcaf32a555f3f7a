//! The origin's HTTP API in process (`app(state)` with `oneshot`, no
//! network) and its ticks, restores and retention with a manual clock.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use origin::clock::{Clock, ManualClock};
use origin::config::Config;
use origin::http::app;
use origin::state::AppState;
use origin::store::Store;
use origin::tick::tick_once;
use serde_json::{json, Value};
use shared::time::Timestamp;
use tower::ServiceExt as _;

const PRODUCER: &str = "producer-token-0123456789";
const OLD_PRODUCER: &str = "producer-token-old-0123456789";
const READER: &str = "reader-token-0123456789";
const T0: u64 = 1_800_000_000_000;
const SF: (f64, f64) = (37.7749, -122.4194);

fn config() -> Config {
    let mut c = Config::default();
    c.auth.producer_tokens = vec![PRODUCER.into()];
    c.auth.reader_tokens = vec![READER.into()];
    c
}

fn state_with(c: Config, store: Store, clock: &Arc<ManualClock>) -> Arc<AppState> {
    AppState::new(c, store, clock.clone()).expect("state")
}

fn fresh() -> (Arc<AppState>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let s = state_with(config(), Store::open_in_memory().expect("store"), &clock);
    (s, clock)
}

/// One request through the router: status, the body as JSON (`Null` if it
/// is not JSON), and the raw response headers.
async fn call(
    s: &Arc<AppState>,
    method: &str,
    uri: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: String,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = app(s.clone())
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    )
}

async fn get(s: &Arc<AppState>, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let (st, v, _) = call(s, "GET", uri, token, None, String::new()).await;
    (st, v)
}

async fn post_json(
    s: &Arc<AppState>,
    uri: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let (st, v, _) = call(
        s,
        "POST",
        uri,
        token,
        Some("application/json"),
        body.to_string(),
    )
    .await;
    (st, v)
}

/// A busy market at `at`: `drivers` available drivers and `requests` ride
/// requests, all at `t`.
async fn busy(s: &Arc<AppState>, at: (f64, f64), drivers: usize, requests: usize, t: u64) {
    let locs: Vec<Value> = (0..drivers)
        .map(|i| json!({"driver_id": format!("d{i}"), "latitude": at.0, "longitude": at.1, "available": true, "timestamp": t}))
        .collect();
    let (st, r) = post_json(s, "/v1/ingest/locations", Some(PRODUCER), json!(locs)).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let demand: Vec<Value> = (0..requests)
        .map(|i| json!({"kind": "ride_request", "latitude": at.0 + (i % 3) as f64 * 0.004, "longitude": at.1, "timestamp": t}))
        .collect();
    let (st, r) = post_json(s, "/v1/ingest/demand", Some(PRODUCER), json!(demand)).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["accepted"], requests);
}

/// `GET /metrics` without a token, as text.
async fn metrics_text(s: &Arc<AppState>) -> String {
    let res = app(s.clone())
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn assert_error(st: StatusCode, body: &Value, status: u16, code: &str) {
    assert_eq!(st.as_u16(), status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn tokens_guard_every_endpoint_by_role() {
    let (s, _) = fresh();
    let demand = json!([{"kind": "quote", "latitude": SF.0, "longitude": SF.1, "timestamp": T0}]);
    // No token, a wrong token, the other role's token.
    let (st, b, h) = call(
        &s,
        "POST",
        "/v1/ingest/demand",
        None,
        Some("application/json"),
        demand.to_string(),
    )
    .await;
    assert_error(st, &b, 401, "missing_token");
    assert_eq!(
        h.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let (st, b) = post_json(
        &s,
        "/v1/ingest/demand",
        Some("not-a-token-at-all-xyz"),
        demand.clone(),
    )
    .await;
    assert_error(st, &b, 401, "invalid_token");
    let (st, b) = post_json(&s, "/v1/ingest/demand", Some(READER), demand.clone()).await;
    assert_error(st, &b, 403, "forbidden");
    let (st, b) = post_json(&s, "/v1/outcomes", Some(READER), json!([])).await;
    assert_error(st, &b, 403, "forbidden");
    for uri in [
        "/v1/grids/sf",
        "/v1/analytics/least-efficient",
        "/v1/analytics/history?region=sf&cell=8085",
    ] {
        let (st, b) = get(&s, uri, None).await;
        assert_error(st, &b, 401, "missing_token");
        let (st, b) = get(&s, uri, Some(PRODUCER)).await;
        assert_error(st, &b, 403, "forbidden");
    }
    // The right tokens work; nothing was applied by the refused requests.
    let (st, b) = post_json(&s, "/v1/ingest/demand", Some(PRODUCER), demand).await;
    assert_eq!((st, b["accepted"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(
        s.metrics
            .demand_accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let (st, b) = get(&s, "/v1/analytics/least-efficient", Some(READER)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    // Health, the document and (by default) metrics are open.
    for uri in ["/health", "/openapi.json", "/metrics"] {
        assert_eq!(get(&s, uri, None).await.0, StatusCode::OK, "{uri}");
    }
    assert_eq!(
        s.metrics
            .auth_unauthorized
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    assert_eq!(
        s.metrics
            .auth_forbidden
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
}

#[tokio::test]
async fn rotation_keeps_several_tokens_and_retires_old_ones() {
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let mut c = config();
    c.auth.producer_tokens = vec![PRODUCER.into(), OLD_PRODUCER.into()];
    let s = state_with(c.clone(), Store::open_in_memory().expect("store"), &clock);
    let body = json!([{"kind": "quote", "latitude": SF.0, "longitude": SF.1, "timestamp": T0}]);
    for t in [PRODUCER, OLD_PRODUCER] {
        assert_eq!(
            post_json(&s, "/v1/ingest/demand", Some(t), body.clone())
                .await
                .0,
            StatusCode::OK
        );
    }
    // The old token is removed from the configuration: refused.
    c.auth.producer_tokens = vec![PRODUCER.into()];
    let s = state_with(c, Store::open_in_memory().expect("store"), &clock);
    let (st, b) = post_json(&s, "/v1/ingest/demand", Some(OLD_PRODUCER), body.clone()).await;
    assert_error(st, &b, 401, "invalid_token");
    assert_eq!(
        post_json(&s, "/v1/ingest/demand", Some(PRODUCER), body)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_can_require_a_reader_token() {
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let mut c = config();
    c.auth.metrics_open = false;
    let s = state_with(c, Store::open_in_memory().expect("store"), &clock);
    let (st, b) = get(&s, "/metrics", None).await;
    assert_error(st, &b, 401, "missing_token");
    let (st, b) = get(&s, "/metrics", Some(PRODUCER)).await;
    assert_error(st, &b, 403, "forbidden");
    assert_eq!(get(&s, "/metrics", Some(READER)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_rejection_is_the_json_error_shape() {
    let (s, _) = fresh();
    let r = Some(READER);
    let cases: Vec<(&str, &str, Option<&str>, u16, &str)> = vec![
        (
            "GET",
            "/v1/analytics/least-efficient?days=abc",
            r,
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/analytics/least-efficient?days=0",
            r,
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/analytics/least-efficient?limit=-1",
            r,
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/analytics/history?region=sf",
            r,
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/analytics/history?region=sf&cell=zz",
            r,
            400,
            "invalid_cell",
        ),
        (
            "GET",
            "/v1/analytics/history?region=sf&cell=8085&hours=99999",
            r,
            400,
            "invalid_parameter",
        ),
        ("GET", "/v1/grids/nowhere", r, 404, "no_grid"),
        ("GET", "/v1/grids/%FF", r, 400, "invalid_parameter"),
        ("GET", "/no/such/path", None, 404, "not_found"),
        ("DELETE", "/health", None, 405, "method_not_allowed"),
        (
            "GET",
            "/v1/ingest/ws?kind=demand",
            Some(PRODUCER),
            426,
            "websocket_required",
        ),
        (
            "GET",
            "/v1/ingest/ws?kind=nonsense",
            Some(PRODUCER),
            400,
            "invalid_parameter",
        ),
    ];
    for (method, uri, token, status, code) in cases {
        let (st, b, _) = call(&s, method, uri, token, None, String::new()).await;
        assert_eq!(st.as_u16(), status, "{method} {uri}: {b}");
        assert_eq!(b["error"]["code"], code, "{method} {uri}: {b}");
    }
    let p = Some(PRODUCER);
    let (st, b, _) = call(
        &s,
        "POST",
        "/v1/ingest/demand",
        p,
        Some("text/csv"),
        "a,b".into(),
    )
    .await;
    assert_error(st, &b, 415, "unsupported_media_type");
    let (st, b) = post_json(&s, "/v1/ingest/demand", p, json!({"a": 1})).await;
    assert_error(st, &b, 400, "invalid_batch");
    let (st, b) = post_json(&s, "/v1/outcomes", p, json!("nope")).await;
    assert_error(st, &b, 400, "invalid_batch");
}

fn outcome(id: &str) -> Value {
    json!({"ride_id": id, "region": "sf", "latitude": SF.0, "longitude": SF.1, "completed": true,
           "multiplier": 1.5, "fare_minor": 2_350, "currency": "USD", "quote_id": "q", "timestamp": T0})
}

#[tokio::test]
async fn outcomes_store_money_in_minor_units_and_refuse_floats() {
    let (s, _) = fresh();
    let p = Some(PRODUCER);
    let (st, b) = post_json(&s, "/v1/outcomes", p, json!([outcome("r1"), outcome("r2")])).await;
    assert_eq!(
        (st, b["inserted"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{b}"
    );
    let (st, b) = post_json(&s, "/v1/outcomes", p, json!([outcome("r1")])).await;
    assert_eq!(
        (st, b["inserted"].as_u64()),
        (StatusCode::OK, Some(0)),
        "a retried outcome counts once"
    );
    let mut float = outcome("r3");
    float["fare"] = json!(23.5);
    let (st, b) = post_json(&s, "/v1/outcomes", p, json!([float])).await;
    assert_error(st, &b, 400, "invalid_batch");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("fare"),
        "{b}"
    );
    let mut no_currency = outcome("r4");
    no_currency
        .as_object_mut()
        .expect("object")
        .remove("currency");
    let (st, b) = post_json(&s, "/v1/outcomes", p, json!([outcome("r5"), no_currency])).await;
    assert_error(st, &b, 400, "invalid_record");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("outcome 2"),
        "{b}"
    );
    let mut bad_currency = outcome("r6");
    bad_currency["currency"] = json!("dollars");
    assert_eq!(
        post_json(&s, "/v1/outcomes", p, json!([bad_currency]))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A time far ahead of the origin's clock would outlive every retention.
    let mut ahead = outcome("r7");
    ahead["timestamp"] = json!(T0 + 86_400_000);
    let (st, b) = post_json(&s, "/v1/outcomes", p, json!([ahead])).await;
    assert_error(st, &b, 400, "invalid_record");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("now + 5 min"),
        "{b}"
    );
    // Nothing of the refused batches was stored: r5 went with its batch.
    let (st, b) = post_json(&s, "/v1/outcomes", p, json!([outcome("r5")])).await;
    assert_eq!((st, b["inserted"].as_u64()), (StatusCode::OK, Some(1)));
}

#[tokio::test]
async fn events_become_a_grid_on_a_manual_clock() {
    let (s, clock) = fresh();
    busy(&s, SF, 1, 12, T0).await;
    clock.advance(1_000);
    assert_eq!(tick_once(&s).await, 1);
    let (st, g) = get(&s, "/v1/grids/sf", Some(READER)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(g["generation"].as_u64(), Some(T0 + 1_000));
    assert_eq!(g["computed_at"].as_u64(), Some(T0 + 1_000));
    let cells = g["cells"].as_array().expect("cells");
    assert!(
        cells.iter().any(|c| c["multiplier"].as_f64() > Some(1.0)),
        "{g}"
    );
    // The analytics see the tick's snapshots.
    let cell = cells[0]["cell"].as_str().expect("cell").to_owned();
    let (st, h) = get(
        &s,
        &format!("/v1/analytics/history?region=sf&cell={cell}&hours=1"),
        Some(READER),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let rows = h["history"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{h}");
    assert!(
        rows.iter().all(|r| r["at"].as_u64() == Some(T0 + 1_000)),
        "{h}"
    );
}

#[tokio::test]
async fn metrics_show_the_live_accuracy_of_the_demand_forecasts() {
    let (s, clock) = fresh();
    // Eighty minutes of a steady downtown: the same requests every
    // 5-minute bucket, a tick a minute.
    for minute in 0..80u64 {
        let t = T0 + minute * 60_000;
        clock.set(Timestamp(t));
        if minute % 5 == 0 {
            busy(&s, SF, 4, 60, t).await;
        }
        clock.set(Timestamp(t + 1_000));
        tick_once(&s).await;
    }
    let text = metrics_text(&s).await;
    let gauge = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let busy_15 =
        gauge("equilibrium_forecast_wape{region=\"sf\",cells=\"busy\",horizon_minutes=\"15\"}");
    assert!(busy_15 < 0.2, "a steady market is forecast well: {busy_15}");
    let all_5 =
        gauge("equilibrium_forecast_wape{region=\"sf\",cells=\"all\",horizon_minutes=\"5\"}");
    assert!(all_5 < 0.2, "{all_5}");
    assert!(gauge("equilibrium_forecast_busy_series{region=\"sf\"}") >= 1.0);
}

#[tokio::test]
async fn forecasts_are_read_per_vehicle_class_or_summed() {
    let (s, clock) = fresh();
    // Forty minutes downtown: 20 standard and 5 XL requests each bucket.
    for minute in 0..40u64 {
        let t = T0 + minute * 60_000;
        clock.set(Timestamp(t));
        if minute % 5 == 0 {
            let demand: Vec<Value> = (0..25)
                .map(|i| {
                    json!({"kind": "ride_request", "latitude": SF.0, "longitude": SF.1,
                    "vehicle_type": if i < 20 { "standard" } else { "xl" }, "timestamp": t})
                })
                .collect();
            let (st, r) = post_json(&s, "/v1/ingest/demand", Some(PRODUCER), json!(demand)).await;
            assert_eq!(st, StatusCode::OK, "{r}");
        }
        clock.set(Timestamp(t + 1_000));
        tick_once(&s).await;
    }
    let at_15 = |v: &Value| -> f64 {
        let h = &v["cells"][0]["horizons"][2];
        assert_eq!(h["minutes"], 15, "{v}");
        h["demand"]["expected"]
            .as_f64()
            .unwrap_or_else(|| panic!("{v}"))
    };
    let (st, all) = get(&s, "/v1/forecasts/sf", Some(READER)).await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert!(all.get("vehicle_class").is_none(), "{all}");
    assert_eq!(all["region"], "sf");
    let (st, xl) = get(
        &s,
        "/v1/forecasts/sf?vehicle_class=xl&limit=1",
        Some(READER),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{xl}");
    assert_eq!(xl["vehicle_class"], "xl");
    assert_eq!(xl["cells"].as_array().map(Vec::len), Some(1));
    let (_, standard) = get(&s, "/v1/forecasts/sf?vehicle_class=standard", Some(READER)).await;
    let (a, x, st_) = (at_15(&all), at_15(&xl), at_15(&standard));
    // Demand units (a ride request weighs the market's weight): four
    // times as many standard as XL, whatever the weight.
    assert!(
        x > 1.0 && (st_ / x - 4.0).abs() < 0.4,
        "standard {st_}, xl {x}"
    );
    assert!((a - (x + st_)).abs() < 0.05, "the sum {a} = {x} + {st_}");
    assert_eq!(all["cells"][0]["zone_id"], xl["cells"][0]["zone_id"]);
    // Bad input is a 4xx with a code.
    let (st, b) = get(&s, "/v1/forecasts/sf?vehicle_class=boat", Some(READER)).await;
    assert_error(st, &b, 400, "unknown_vehicle_class");
    let (st, b) = get(&s, "/v1/forecasts/sf?limit=0", Some(READER)).await;
    assert_error(st, &b, 400, "invalid_parameter");
    let (st, b) = get(&s, "/v1/forecasts/atlantis", Some(READER)).await;
    assert_error(st, &b, 404, "unknown_region");
    let (st, b) = get(&s, "/v1/forecasts/sf", Some(PRODUCER)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
}

/// Ticks `state` at `at` after feeding it second `s` of a busy evening.
async fn evening_step(st: &Arc<AppState>, clock: &ManualClock, s: u64) -> Value {
    let t = T0 + s * 5_000;
    clock.set(Timestamp(t));
    let spot = (SF.0 + (s % 4) as f64 * 0.01, SF.1 - (s % 3) as f64 * 0.01);
    busy(st, spot, (s % 3) as usize, 4 + (s % 7) as usize, t).await;
    clock.set(Timestamp(t + 4_000));
    tick_once(st).await;
    get(st, "/v1/grids/sf", Some(READER)).await.1
}

#[tokio::test]
async fn a_restart_resumes_the_windows_and_publishes_what_an_uninterrupted_run_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let open = |name: &str| Store::open(&dir.path().join(name)).expect("store");
    let clock_a = Arc::new(ManualClock::new(Timestamp(T0)));
    let clock_b = Arc::new(ManualClock::new(Timestamp(T0)));
    let a = state_with(config(), open("a.sqlite"), &clock_a);
    let b = state_with(config(), open("b.sqlite"), &clock_b);
    // 130 steps of 5 s: past two forecast buckets (5 minutes each), into
    // a third.
    for s in 0..130 {
        assert_eq!(
            evening_step(&a, &clock_a, s).await,
            evening_step(&b, &clock_b, s).await
        );
    }
    // b dies without a shutdown (nothing after its last tick is flushed) and
    // comes back 7 s after that tick, on the same file.
    drop(b);
    let last_tick = T0 + 129 * 5_000 + 4_000;
    clock_b.set(Timestamp(last_tick + 7_000));
    let b = state_with(config(), open("b.sqlite"), &clock_b);
    assert_eq!(b.restored.grids, 1);
    assert_eq!(b.restored.windows, 1);
    assert_eq!(b.restored.forecasts, 1);
    assert_eq!(b.restored.last_tick_at, Some(last_tick));
    assert_eq!(
        b.restored.lost_seconds, 7.0,
        "the true time since the last tick"
    );
    // The first grid after the restart, from restored windows alone, equals
    // the uninterrupted run's grid at the same tick, cell by cell.
    clock_a.set(Timestamp(last_tick + 7_000));
    tick_once(&a).await;
    tick_once(&b).await;
    let (ga, gb) = (
        get(&a, "/v1/grids/sf", Some(READER)).await.1,
        get(&b, "/v1/grids/sf", Some(READER)).await.1,
    );
    assert_eq!(ga, gb);
    let cells = ga["cells"].as_array().expect("cells");
    assert!(
        cells
            .iter()
            .any(|c| c["demand"].as_u64() > Some(0) && c["multiplier"].as_f64() > Some(1.0)),
        "the windows still hold demand and surge: {ga}"
    );
    assert!(
        cells
            .iter()
            .any(|c| c["expected_demand"].as_f64() > Some(0.0)),
        "the forecasts (history and open bucket) came back too: {ga}"
    );
    // And so on, tick after tick, into the next bucket.
    for s in 131..200 {
        assert_eq!(
            evening_step(&a, &clock_a, s).await,
            evening_step(&b, &clock_b, s).await,
            "tick {s}"
        );
    }
}

#[tokio::test]
async fn retention_prunes_old_history_in_batches_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let mut c = config();
    c.retention_days = 35;
    c.prune_batch_rows = 2;
    let s = state_with(
        c,
        Store::open(&dir.path().join("r.sqlite")).expect("store"),
        &clock,
    );
    // Old history: ticks and an outcome 40 days before "now".
    for i in 0..3 {
        clock.set(Timestamp(T0 + i * 5_000));
        busy(&s, SF, 1, 10, T0 + i * 5_000).await;
        tick_once(&s).await;
    }
    let mut old = outcome("old");
    old["timestamp"] = json!(T0);
    assert_eq!(
        post_json(&s, "/v1/outcomes", Some(PRODUCER), json!([old]))
            .await
            .0,
        StatusCode::OK
    );
    let day = 86_400_000;
    let now = T0 + 40 * day;
    clock.set(Timestamp(now));
    busy(&s, SF, 1, 10, now).await;
    tick_once(&s).await;
    let mut new = outcome("new");
    new["timestamp"] = json!(now);
    assert_eq!(
        post_json(&s, "/v1/outcomes", Some(PRODUCER), json!([new]))
            .await
            .0,
        StatusCode::OK
    );

    let cell = shared::geo::Cell::at(
        shared::geo::LatLng::new(SF.0, SF.1).expect("ll"),
        shared::geo::DEFAULT_LEVEL,
    )
    .token();
    let rows = |s: &Arc<AppState>| {
        let mut st = s.store.lock().expect("store");
        st.zone_history("sf", &cell, 0, 1_000).expect("history")
    };
    let before = rows(&s);
    assert!(before.iter().any(|r| r.at_ms < now - 35 * day));
    let pruned = origin::retention::prune_once(&s).await.expect("prune");
    assert_eq!(pruned.cutoff_ms, now - 35 * day);
    assert!(pruned.rows >= 4, "{pruned:?}");
    assert!(pruned.batches >= 3, "batches of 2 rows: {pruned:?}");
    let after = rows(&s);
    assert!(!after.is_empty());
    assert!(after.iter().all(|r| r.at_ms >= now - 35 * day), "{after:?}");
    assert_eq!(
        after.len(),
        before.iter().filter(|r| r.at_ms >= now - 35 * day).count()
    );
    // A second run finds nothing more.
    assert_eq!(
        origin::retention::prune_once(&s).await.expect("prune").rows,
        0
    );
    // The old outcome is gone, the new one stays: re-posting shows which.
    let p = Some(PRODUCER);
    let (_, b) = post_json(&s, "/v1/outcomes", p, json!([outcome("old")])).await;
    assert_eq!(b["inserted"], 1, "the old outcome was pruned");
    let mut again = outcome("new");
    again["timestamp"] = json!(now);
    let (_, b) = post_json(&s, "/v1/outcomes", p, json!([again])).await;
    assert_eq!(b["inserted"], 0, "the new outcome was kept");
    // The grid and the windows are never pruned.
    assert_eq!(
        get(&s, "/v1/grids/sf", Some(READER)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_demo_origin_ticks_on_the_simulators_clock() {
    // The wall clock (here the manual one) stays at T0; the simulator's
    // moves on, and with it the ticks, the windows and the TTLs.
    let wall = Arc::new(ManualClock::new(Timestamp(T0)));
    let c = Config {
        simulated_clock: true,
        ..config()
    };
    let s = state_with(c, Store::open_in_memory().expect("store"), &wall);
    let sim0 = T0 + 86_400_000;
    let (st, r) = post_json(&s, "/v1/clock", Some(PRODUCER), json!({"now": sim0})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (r["now"].as_u64(), r["ticks"].as_u64()),
        (Some(sim0), Some(1))
    );
    busy(&s, SF, 1, 12, sim0).await;
    // 12 simulated seconds at one tick every 5: two ticks, at +5 and +10 s.
    let (_, r) = post_json(
        &s,
        "/v1/clock",
        Some(PRODUCER),
        json!({"now": sim0 + 12_000}),
    )
    .await;
    assert_eq!(r["ticks"].as_u64(), Some(2), "{r}");
    let (_, g) = get(&s, "/v1/grids/sf", Some(READER)).await;
    assert_eq!(g["computed_at"].as_u64(), Some(sim0 + 10_000), "{g}");
    let hot = |g: &Value| {
        g["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["supply"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(hot(&g), 1, "the driver counts within the TTL: {g}");
    // Two simulated minutes later the driver's report is past the 60 s
    // TTL, though no wall-clock time passed at all.
    let (_, r) = post_json(
        &s,
        "/v1/clock",
        Some(PRODUCER),
        json!({"now": sim0 + 120_000}),
    )
    .await;
    assert_eq!(r["ticks"].as_u64(), Some(22), "{r}");
    let (_, g) = get(&s, "/v1/grids/sf", Some(READER)).await;
    assert_eq!(hot(&g), 0, "{g}");
    assert_eq!(wall.now(), Timestamp(T0));
    // The clock never goes back.
    let (st, r) = post_json(&s, "/v1/clock", Some(PRODUCER), json!({"now": sim0})).await;
    assert_error(st, &r, 409, "clock_backwards");
    // An origin on the wall clock refuses to be set.
    let (plain, _) = fresh();
    let (st, r) = post_json(&plain, "/v1/clock", Some(PRODUCER), json!({"now": sim0})).await;
    assert_error(st, &r, 409, "clock_not_simulated");
    let (st, r) = post_json(&s, "/v1/clock", Some(PRODUCER), json!({"at": 5})).await;
    assert_error(st, &r, 400, "invalid_body");
}

#[tokio::test]
async fn a_controlled_region_steers_by_its_stored_ride_outcomes() {
    // The region's policy is the controller; three of four rides of the last
    // ten minutes found no driver. The background lookup of the outcomes
    // feeds the controller one bounded step (threshold 1.0 → 0.95), used by
    // one tick only, until the next lookup 30 s later takes another.
    let mut c = config();
    c.regions[0].policy = Some(origin::config::PolicyConfig {
        name: "controller".into(),
        lead: None,
        target_unfulfilled: Some(0.1),
        target_p90_wait_minutes: None,
        step: Some(0.05),
        min_threshold: None,
        max_threshold: None,
    });
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let s = state_with(c, Store::open_in_memory().expect("store"), &clock);
    let rides: Vec<Value> = (0..20)
        .map(|i| {
            let mut o = outcome(&format!("r{i}"));
            o["completed"] = json!(i % 4 == 0);
            o["wait_ms"] = json!(120_000);
            o["timestamp"] = json!(T0 - 60_000);
            o
        })
        .collect();
    let (st, b) = post_json(&s, "/v1/outcomes", Some(PRODUCER), json!(rides)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let threshold = |s: &Arc<AppState>| {
        s.agg
            .lock()
            .expect("aggregator")
            .threshold(0)
            .expect("a controller")
    };
    assert_eq!(threshold(&s), 1.0);
    // The first tick starts the lookup; poll ticks until its result lands.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while threshold(&s) == 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the feedback never reached the controller"
        );
        tick_once(&s).await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!((threshold(&s) - 0.95).abs() < 1e-9, "{}", threshold(&s));
    // More ticks within the 30 s: the result was used once.
    for _ in 0..5 {
        tick_once(&s).await;
    }
    assert!((threshold(&s) - 0.95).abs() < 1e-9, "{}", threshold(&s));
    // 30 s on: the next lookup, another step.
    clock.advance(origin::feedback::EVERY_MS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while threshold(&s) > 0.95 - 1e-9 {
        assert!(std::time::Instant::now() < deadline, "no second step");
        tick_once(&s).await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!((threshold(&s) - 0.9025).abs() < 1e-9, "{}", threshold(&s));
    let text = metrics_text(&s).await;
    assert!(
        text.contains("equilibrium_controller_threshold{region=\"sf\"} 0.9025"),
        "{text}"
    );
}

#[test]
fn a_region_policy_with_bad_parameters_is_refused_at_start() {
    let mut c = config();
    c.regions[0].policy = Some(origin::config::PolicyConfig {
        name: "forecast".into(),
        lead: Some(0.5),
        target_unfulfilled: Some(0.1),
        target_p90_wait_minutes: None,
        step: None,
        min_threshold: None,
        max_threshold: None,
    });
    let e = c.regions().expect_err("a controller parameter on forecast");
    assert!(e.to_string().contains("target_unfulfilled"), "{e}");
    c.regions[0].policy = Some(origin::config::PolicyConfig {
        name: "surge-everything".into(),
        lead: None,
        target_unfulfilled: None,
        target_p90_wait_minutes: None,
        step: None,
        min_threshold: None,
        max_threshold: None,
    });
    let e = c.regions().expect_err("unknown policy");
    assert!(e.to_string().contains("unknown policy"), "{e}");
    c.regions[0].policy = Some(origin::config::PolicyConfig {
        name: "controller".into(),
        lead: Some(1.5),
        target_unfulfilled: None,
        target_p90_wait_minutes: None,
        step: None,
        min_threshold: None,
        max_threshold: None,
    });
    let e = c.regions().expect_err("lead out of range");
    assert!(e.to_string().contains("lead"), "{e}");
}

/// A controller arm of an experiment steers by the outcomes of its own
/// arm's bookings (looked up in the background from the stored arm
/// events), never by the other arm's.
#[tokio::test]
async fn a_controller_arm_steers_by_its_own_arms_outcomes() {
    use origin::state::lock;
    use origin::store::ArmRecord;
    use shared::experiment::results::{ArmEvent, ArmEventKind};
    let (s, clock) = fresh();
    let definition = json!({
        "id": "c1", "region": "sf", "split": "switchback", "window_minutes": 10,
        "salt": "s", "start": T0 - 1, "end": T0 + 3_600_000,
        "arms": [{"name": "a", "policy": "controller", "share_percent": 50},
                 {"name": "b", "policy": "controller", "share_percent": 50}]
    })
    .to_string();
    assert!(lock(&s.agg).set_experiments("sf", Some(&definition)));
    tick_once(&s).await;
    let start = lock(&s.agg).arm_thresholds("sf");
    assert_eq!(start.len(), 2, "both arms run");
    // Arm a: 40 of 50 bookings failed, long waits; arm b: none ended.
    let rows: Vec<ArmRecord> = (0..50u64)
        .map(|i| ArmRecord {
            event_id: format!("b_{i}:ended"),
            experiment: "c1".into(),
            region: "sf".into(),
            policy: "controller-00000000".into(),
            event: ArmEvent {
                arm: shared::quote::Ident::new("a").expect("id"),
                at: Timestamp(T0 + 1_000 + i),
                kind: if i < 40 {
                    ArmEventKind::Failed
                } else {
                    ArmEventKind::Completed
                },
                multiplier: 1.0,
                fare_minor: None,
                wait_ms: Some(900_000),
                unit: 0,
            },
        })
        .collect();
    lock(&s.store).record_arm_events(&rows).expect("stored");
    // One lookup is due 30 s (manual clock) after the first; it runs in the
    // background, so tick again at the same instant, yielding in between,
    // until its result has reached a tick (polled with a deadline; the
    // clock does not move, so the rows stay in the lookup's window).
    clock.advance(30_000);
    tick_once(&s).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let moved = loop {
        tokio::task::yield_now().await;
        tick_once(&s).await;
        let now = lock(&s.agg).arm_thresholds("sf");
        if now[0].1 != start[0].1 {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "arm a never moved: {now:?}"
        );
    };
    assert!(moved[0].1 < start[0].1, "{start:?} → {moved:?}");
    assert_eq!(moved[1].1, start[1].1, "arm b saw no outcomes of its own");
}

/// Two triangles sharing a square's diagonal (the same box, so only the
/// boundaries tell them apart), the lower one with a named zone.
const TRIANGLES: &str = r#"{"regions":[
  {"id":"lower","currency":"USD","level":13,"boundary":{"type":"Polygon","coordinates":[[[10.0,10.0],[10.4,10.0],[10.4,10.4],[10.0,10.0]]]},
   "zones":[{"id":"harbour","name":"Harbour","boundary":{"type":"Polygon","coordinates":[[[10.25,10.02],[10.35,10.02],[10.35,10.12],[10.25,10.12],[10.25,10.02]]]}}]},
  {"id":"upper","currency":"USD","level":13,"utc_offset_minutes":60,"boundary":{"type":"Polygon","coordinates":[[[10.0,10.0],[10.4,10.4],[10.0,10.4],[10.0,10.0]]]}}]}"#;

fn registry_config(dir: &tempfile::TempDir, regions: &str) -> Config {
    let path = dir.path().join("regions.json");
    std::fs::write(&path, TRIANGLES).expect("write the registry");
    let mut c: Config = toml::from_str(regions).expect("toml");
    c.auth.producer_tokens = vec![PRODUCER.into()];
    c.auth.reader_tokens = vec![READER.into()];
    c.registry = Some(path);
    c
}

#[tokio::test]
async fn the_registry_places_what_is_ingested_and_names_its_zones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = registry_config(
        &dir,
        "[[regions]]\nid = \"lower\"\n[[regions]]\nid = \"upper\"\n",
    );
    let regions = c.regions().expect("regions");
    assert_eq!(
        regions[1].calendar.utc_offset_minutes(),
        60,
        "the registry's calendar"
    );
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let s = state_with(c, Store::open_in_memory().expect("store"), &clock);
    // (lat, lng): the upper triangle is north of the diagonal.
    let (upper, harbour, outside) = ((10.3, 10.1), (10.07, 10.3), (10.5, 10.2));
    let demand = |at: (f64, f64), n: usize| -> Value {
        json!((0..n)
            .map(|_| json!({"kind": "ride_request", "latitude": at.0, "longitude": at.1, "timestamp": T0}))
            .collect::<Vec<_>>())
    };
    let (st, r) = post_json(&s, "/v1/ingest/demand", Some(PRODUCER), demand(upper, 6)).await;
    assert_eq!(
        (st, r["accepted"].as_u64()),
        (StatusCode::OK, Some(6)),
        "{r}"
    );
    let (_, r) = post_json(&s, "/v1/ingest/demand", Some(PRODUCER), demand(harbour, 6)).await;
    assert_eq!(r["accepted"].as_u64(), Some(6), "{r}");
    // Outside both triangles: refused with the reason, and counted (a
    // batch with nothing accepted is a 400 carrying the report).
    let (st, r) = post_json(&s, "/v1/ingest/demand", Some(PRODUCER), demand(outside, 2)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(
        (r["accepted"].as_u64(), r["rejected"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    assert_eq!(r["errors"][0]["code"], "outside_regions", "{r}");
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("equilibrium_ingest_rejected_total 2\n"),
        "{metrics}"
    );
    for minute in 1..=6u64 {
        clock.set(Timestamp(T0 + minute * 60_000));
        tick_once(&s).await;
    }
    let cells = |v: &Value| -> Vec<String> {
        v["cells"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["zone_name"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (st, up) = get(&s, "/v1/forecasts/upper", Some(READER)).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let up = cells(&up);
    assert_eq!(
        up.len(),
        1,
        "the upper triangle's demand is the upper region's: {up:?}"
    );
    assert!(up[0].starts_with("upper "), "{up:?}");
    let (_, low) = get(&s, "/v1/forecasts/lower", Some(READER)).await;
    assert_eq!(cells(&low), vec!["Harbour".to_owned()], "{low}");
    // The efficiency report names the zone too (its row in `zones`).
    let (st, report) = get(
        &s,
        "/v1/analytics/least-efficient?days=1&limit=10",
        Some(READER),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    let names: Vec<&str> = report["zones"]
        .as_array()
        .map(|z| z.iter().filter_map(|z| z["zone_name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"Harbour"), "{report}");
}

#[test]
fn a_registry_is_the_one_home_of_geography() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (regions, reason) in [
        ("[[regions]]\nid = \"nowhere\"\n", "no region of this id"),
        (
            "[[regions]]\nid = \"upper\"\nbounds = [10, 10, 10.4, 10.4]\n",
            "the registry says where",
        ),
        (
            "[[regions]]\nid = \"upper\"\nlevel = 12\n",
            "level 12 differs",
        ),
        (
            "[[regions]]\nid = \"upper\"\nutc_offset_minutes = 0\n",
            "utc_offset_minutes 0 differs",
        ),
    ] {
        let e = registry_config(&dir, regions)
            .regions()
            .expect_err(reason)
            .to_string();
        assert!(e.contains(reason), "{e}");
    }
    let mut c = registry_config(&dir, "[[regions]]\nid = \"upper\"\n");
    std::fs::write(dir.path().join("bad.json"), r#"{"regions":[{"id":"x"}]}"#).expect("write");
    c.registry = Some(dir.path().join("bad.json"));
    let e = c.regions().expect_err("a bad registry").to_string();
    assert!(e.contains("registry") && e.contains("missing field"), "{e}");
}

#[tokio::test]
async fn scoped_producer_tokens_post_only_what_they_are_given() {
    const GATEWAY: &str = "driver-gateway-token-0123456789";
    const WORKER: &str = "edge-worker-token-0123456789";
    let mut c = config();
    c.auth.market_tokens = vec![GATEWAY.into()];
    c.auth.edge_event_tokens = vec![WORKER.into()];
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let s = state_with(c, Store::open_in_memory().expect("store"), &clock);
    let location = json!([{"driver_id": "d1", "latitude": SF.0, "longitude": SF.1,
        "available": true, "timestamp": T0}]);
    let edge_event = json!({"events": []});
    // The gateway posts locations, not outcomes or the edge's events.
    let (st, b) = post_json(&s, "/v1/ingest/locations", Some(GATEWAY), location.clone()).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = post_json(&s, "/v1/outcomes", Some(GATEWAY), json!([outcome("r1")])).await;
    assert_error(st, &b, 403, "forbidden");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ride outcomes"),
        "{b}"
    );
    let (st, b) = post_json(&s, "/v1/edge-events", Some(GATEWAY), edge_event.clone()).await;
    assert_error(st, &b, 403, "forbidden");
    // The worker's token posts the edge's events, not locations.
    let (st, b) = post_json(&s, "/v1/ingest/locations", Some(WORKER), location).await;
    assert_error(st, &b, 403, "forbidden");
    let (st, _) = post_json(&s, "/v1/edge-events", Some(WORKER), edge_event).await;
    assert_ne!(st, StatusCode::FORBIDDEN);
    assert_ne!(st, StatusCode::UNAUTHORIZED);
    // A full producer token posts all three.
    let (st, b) = post_json(&s, "/v1/outcomes", Some(PRODUCER), json!([outcome("r2")])).await;
    assert_eq!(st, StatusCode::OK, "{b}");
}
