//! Pricing experiments end to end: the admin puts a definition in the
//! edge's KV with wrangler, the origin learns it from its pushes and sends
//! a grid per arm, and the edge assigns each quote's arm, prices it from
//! that arm's grid and signs the arm into the quote and its booking.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use equilibrium_tests::{http, now_ms, wait_for, Origin, Worker, SF};
use serde_json::{json, Value};
use shared::quote::Ident;
use shared::time::Timestamp;

/// A user split: the control keeps the default curve, the treatment
/// prices flat (policy `none`), so the arm of a quote shows in its price.
fn definition(start: u64) -> String {
    json!({
        "id": "flat-vs-default",
        "region": "sf",
        "split": "user",
        "salt": "e2e-1",
        "start": start,
        "end": start + 3_600_000,
        "arms": [
            {"name": "control", "policy": "default", "share_percent": 50},
            {"name": "flat", "policy": "none", "share_percent": 50}
        ],
        "guardrails": {"max_completion_drop_points": 20}
    })
    .to_string()
}

fn quote(w: &Worker, user: Option<&str>) -> Value {
    let (s, q) = w.estimate_sf(user);
    assert_eq!(s, 200, "{q}");
    q
}

fn confirm(w: &Worker, token: &str, id: &str) -> (u16, Value) {
    let r = http()
        .post(w.url(&format!("/api/v1/quotes/{id}/confirm")))
        .json(&json!({ "quote_token": token }))
        .send()
        .expect("confirm");
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

#[test]
fn quotes_are_priced_and_signed_in_their_arm() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = Worker::start();
    let start = now_ms() - 60_000;
    let text = definition(start);
    // A typo'd definition in another region is ignored with a logged
    // reason; pricing goes on.
    w.kv_put("CONFIG", "experiment:nyc", r#"{"id": "typo", "arms": []}"#);
    w.kv_put("CONFIG", "experiment:sf", &text);
    let origin = Origin::start(&dir.path().join("o.sqlite"), &w.base, 0.5);
    // One driver, forty ride requests: the default curve surges there.
    origin.post_busy_market(SF, 40);

    // The arm each user belongs to, from the definition alone (no shared
    // state: any edge computes the same).
    let sf = Ident::new("sf").expect("id");
    let (defs, refused) = shared::api::parse_experiments(&sf, &text);
    assert!(refused.is_empty(), "{refused:?}");
    let expected = |user: &str| -> String {
        defs[0]
            .assign(Timestamp(now_ms()), Some(user))
            .expect("a user in a live user split has an arm")
            .arm
            .name
            .to_string()
    };
    let users: Vec<String> = (0..24).map(|i| format!("rider-{i}")).collect();
    let control = users
        .iter()
        .find(|u| expected(u) == "control")
        .expect("a control user")
        .clone();
    let flat = users
        .iter()
        .find(|u| expected(u) == "flat")
        .expect("a flat user")
        .clone();

    // Once the arms' grids reach the edge, a control quote surges and a
    // flat one does not.
    wait_for(
        "quotes priced in both arms, the control one surging",
        Duration::from_secs(90),
        || {
            let c = quote(&w, Some(&control));
            let f = quote(&w, Some(&flat));
            c["experiment"]["arm"] == "control"
                && f["experiment"]["arm"] == "flat"
                && c["surge_multiplier"].as_f64().unwrap_or(0.0) > 1.0
        },
    );
    for user in &users {
        let q = quote(&w, Some(user));
        let arm = q["experiment"]["arm"].as_str().expect("an arm").to_owned();
        assert_eq!(arm, expected(user), "{user}: {q}");
        assert_eq!(q["experiment"]["id"], "flat-vs-default");
        let policy = q["experiment"]["policy"].as_str().expect("policy");
        assert!(
            policy.starts_with(if arm == "flat" { "none-" } else { "default-" }),
            "{policy}"
        );
        if arm == "flat" {
            assert_eq!(q["surge_multiplier"].as_f64(), Some(1.0), "{q}");
        }
        // The same user again: the same arm.
        assert_eq!(quote(&w, Some(user))["experiment"]["arm"], arm.as_str());
    }
    // The map and the driver view of a rider show what their quotes
    // charge: the flat arm's 1.0 at the pickup for a flat rider, the
    // control arm's surge for a control rider.
    let views = |user: &str| -> (f64, f64, f64) {
        let token = shared::geo::Cell::at(
            shared::geo::LatLng::new(SF.0, SF.1).expect("ll"),
            shared::geo::DEFAULT_LEVEL,
        )
        .token();
        let at = |v: &Value, list: &str| {
            v[list]
                .as_array()
                .and_then(|z| z.iter().find(|z| z["zone_id"] == token.as_str()))
                .and_then(|z| z["surge_multiplier"].as_f64())
                .unwrap_or(f64::NAN)
        };
        let get = |path: String| -> Value {
            http()
                .get(w.url(&path))
                .bearer_auth(equilibrium_tests::rider_token(user))
                .send()
                .and_then(|r| r.json())
                .unwrap_or(Value::Null)
        };
        let map = get(
            "/api/v1/pricing/heatmap?bounds=37.70,-122.50,37.85,-122.35&zoom=13&region=sf"
                .to_owned(),
        );
        let driver = get(format!(
            "/api/v1/driver/heatmap?lat={}&lng={}&radius=3000&region=sf",
            SF.0, SF.1
        ));
        let q = quote(&w, Some(user));
        (
            q["surge_multiplier"].as_f64().unwrap_or(f64::NAN),
            at(&map, "zones"),
            at(&driver, "recommended_zones"),
        )
    };
    assert_eq!(views(&flat), (1.0, 1.0, 1.0));
    // The control arm moves with the market: poll until one moment's three
    // views are read within one grid.
    wait_for(
        "a control rider's views to agree",
        Duration::from_secs(60),
        || {
            let (q, m, d) = views(&control);
            q > 1.0 && q == m && m == d
        },
    );

    // Anonymous riders are outside a user split: no arm, priced by the
    // region's own grid (which surges here).
    let anon = quote(&w, None);
    assert!(anon.get("experiment").is_none(), "{anon}");
    assert!(anon["surge_multiplier"].as_f64().unwrap_or(0.0) > 1.0);
    // A rider id the client states is not a verified rider: the flat
    // rider's id in the body, without their token, chooses no arm.
    let claimed: Value = http()
        .post(w.url("/api/v1/pricing/estimate"))
        .json(&json!({
            "pickup_location": {"latitude": SF.0, "longitude": SF.1},
            "dropoff_location": {"latitude": 37.7849, "longitude": -122.4094},
            "user_id": flat,
        }))
        .send()
        .and_then(|r| r.json())
        .expect("estimate");
    assert!(claimed.get("experiment").is_none(), "{claimed}");
    assert!(claimed["surge_multiplier"].as_f64().unwrap_or(0.0) > 1.0);
    // Nor does the heatmap show a stated rider their arm's prices.
    let map: Value = http()
        .get(w.url(&format!(
            "/api/v1/pricing/heatmap?bounds=37.70,-122.50,37.85,-122.35&zoom=13&region=sf&user_id={flat}"
        )))
        .send()
        .and_then(|r| r.json())
        .expect("heatmap");
    let token = shared::geo::Cell::at(
        shared::geo::LatLng::new(SF.0, SF.1).expect("ll"),
        shared::geo::DEFAULT_LEVEL,
    )
    .token();
    let at_pickup = map["zones"]
        .as_array()
        .and_then(|z| z.iter().find(|z| z["zone_id"] == token.as_str()))
        .and_then(|z| z["surge_multiplier"].as_f64());
    assert!(at_pickup.unwrap_or(0.0) > 1.0, "{map}");

    // The arm is signed: moving a flat quote to the control arm (or the
    // other way) is refused at confirmation.
    let q = quote(&w, Some(&flat));
    let token = q["quote_token"].as_str().expect("token");
    let (body, sig) = token.split_once('.').expect("token shape");
    let line = String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("b64")).expect("utf8");
    assert!(line.contains("|flat|"), "{line}");
    let moved = [
        URL_SAFE_NO_PAD.encode(line.replace("|flat|", "|control|")),
        sig.to_owned(),
    ]
    .join(".");
    let id = q["quote_id"].as_str().expect("id");
    let (status, err) = confirm(&w, &moved, id);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("quote_forged")),
        "{err}"
    );
    // The untouched quote books, and its booking carries the arm.
    let (status, booking) = confirm(&w, token, id);
    assert_eq!(status, 200, "{booking}");
    let rider = booking["booking_token"].as_str().expect("rider token");
    let id = booking["booking_id"].as_str().expect("booking id");
    let record: Value = http()
        .get(w.url(&format!("/api/v1/bookings/{id}")))
        .bearer_auth(rider)
        .send()
        .and_then(|r| r.json())
        .expect("booking");
    assert_eq!(record["experiment"]["arm"], "flat", "{record}");
    assert_eq!(record["experiment"]["id"], "flat-vs-default");

    // A quote in nyc reads its typo'd definition: priced, and the reason
    // logged.
    let r = http()
        .post(w.url("/api/v1/pricing/estimate"))
        .json(&json!({
            "pickup_location": {"latitude": 40.7128, "longitude": -74.006},
            "dropoff_location": {"latitude": 40.7228, "longitude": -74.0},
            "region": "nyc",
            "user_id": "rider-0",
        }))
        .send()
        .expect("estimate");
    assert_eq!(r.status().as_u16(), 200);
    let q: Value = r.json().expect("quote");
    assert!(q.get("experiment").is_none(), "{q}");
    wait_for(
        "the refusal in the worker's log",
        Duration::from_secs(30),
        || w.log().contains("experiment:nyc: experiment ignored"),
    );
    assert!(
        origin.log().contains("experiment started"),
        "{}",
        origin.log()
    );
    // While it runs, the origin reports each arm's grid volatility: the
    // flat arm never moves once at 1.0.
    let r: Value = origin
        .get("/v1/analytics/experiments/flat-vs-default")
        .send()
        .and_then(|r| r.json())
        .expect("report");
    assert_eq!(r["status"], "running", "{r}");
    assert!(
        r["arms"][0]["volatility"]["value"].as_f64().is_some(),
        "{r}"
    );
    assert!(
        r["arms"][1]["volatility"]["units"].as_u64() >= Some(1),
        "{r}"
    );
}

/// Books a quote of `user` and drives it to `end` (`complete` or `fail`)
/// as dispatch.
fn book_and(w: &Worker, user: &str, end: &str) {
    let q = quote(w, Some(user));
    let id = q["quote_id"].as_str().expect("id");
    let (status, b) = confirm(w, q["quote_token"].as_str().expect("token"), id);
    assert_eq!(status, 200, "{b}");
    let booking = b["booking_id"].as_str().expect("booking");
    let steps: &[(&str, Value)] = if end == "complete" {
        &[
            ("start", json!({})),
            (
                "complete",
                json!({"distance_km": 1.4, "duration_minutes": 5.0}),
            ),
        ]
    } else {
        &[("fail", json!({"reason": "no driver found"}))]
    };
    for (action, body) in steps {
        let r = http()
            .post(w.url(&format!("/api/v1/bookings/{booking}/{action}")))
            .bearer_auth(equilibrium_tests::DISPATCH_TOKEN)
            .json(body)
            .send()
            .expect("act");
        assert_eq!(r.status().as_u16(), 200, "{action}");
    }
}

#[test]
fn results_per_arm_follow_the_bookings_and_a_breached_guardrail_ends_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = equilibrium_tests::free_port();
    let w = Worker::start_with_vars(&[("ORIGIN_URL", &format!("http://127.0.0.1:{port}"))]);
    let text = definition(now_ms() - 60_000);
    w.kv_put("CONFIG", "experiment:sf", &text);
    let origin = Origin::start_on(port, &dir.path().join("o.sqlite"), &w.base, 0.5, &[]);
    let sf = Ident::new("sf").expect("id");
    let (defs, _) = shared::api::parse_experiments(&sf, &text);
    let arm_of = |user: &str| {
        defs[0]
            .assign(Timestamp(now_ms()), Some(user))
            .expect("an arm")
            .arm
            .name
            .to_string()
    };
    let pool: Vec<String> = (0..400).map(|i| format!("rider-{i}")).collect();
    let control: Vec<&String> = pool.iter().filter(|u| arm_of(u) == "control").collect();
    let flat: Vec<&String> = pool.iter().filter(|u| arm_of(u) == "flat").collect();
    wait_for(
        "both arms priced at the edge",
        Duration::from_secs(90),
        || {
            quote(&w, Some(control[0]))["experiment"]["arm"] == "control"
                && quote(&w, Some(flat[0]))["experiment"]["arm"] == "flat"
        },
    );
    // Control riders all complete; the flat arm's bookings fail half the
    // time: 100 % against 50 %, far past the guardrail's 20 points.
    let n = shared::experiment::results::GUARDRAIL_MIN_ENDED as usize;
    for i in 0..n {
        book_and(&w, control[i % control.len()], "complete");
        book_and(
            &w,
            flat[i % flat.len()],
            if i % 2 == 0 { "complete" } else { "fail" },
        );
    }
    let report = || -> Value {
        origin
            .get("/v1/analytics/experiments/flat-vs-default")
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    };
    wait_for(
        "every booking's outcome in the arms' results",
        Duration::from_secs(120),
        || {
            // Price checks travel in the isolate's batches, bookings through
            // the ledger's outbox: each reaches the origin in its own time.
            let r = report();
            let at_least = |arm: usize, what: &str, k: usize| {
                r["arms"][arm][what].as_u64().unwrap_or(0) >= k as u64
            };
            r["arms"][0]["completed"].as_u64() == Some(n as u64)
                && r["arms"][1]["failed"].as_u64() == Some((n / 2) as u64)
                && r["arms"][1]["completed"].as_u64() == Some(n.div_ceil(2) as u64)
                && at_least(0, "quotes", n)
                && at_least(1, "quotes", n)
                && at_least(0, "confirmed", n)
                && at_least(1, "confirmed", n)
        },
    );
    let r = report();
    assert_eq!(r["split"], "user");
    let (c, f) = (&r["arms"][0], &r["arms"][1]);
    assert_eq!(
        (c["arm"].as_str(), f["arm"].as_str()),
        (Some("control"), Some("flat"))
    );
    assert_eq!(c["confirmed"].as_u64(), Some(n as u64));
    assert_eq!(f["completed"].as_u64(), Some(n.div_ceil(2) as u64));
    assert_eq!(c["completion"]["value"].as_f64(), Some(1.0));
    assert_eq!(f["completion"]["value"].as_f64(), Some(0.5));
    assert!(
        f["completion_vs_control"]["difference"].as_f64() == Some(-0.5),
        "{r}"
    );
    assert!(c["revenue_minor"].as_u64().unwrap_or(0) > 0);
    let per_quote = c["revenue_per_quote_minor"]["value"]
        .as_f64()
        .unwrap_or(0.0);
    let quotes = c["quotes"].as_f64().unwrap_or(0.0);
    let revenue = c["revenue_minor"].as_f64().unwrap_or(0.0);
    assert!((per_quote * quotes - revenue).abs() < 1e-6 * revenue, "{r}");
    assert!(
        f["revenue_per_quote_vs_control"]["difference"].is_f64(),
        "{r}"
    );
    // Conversion is confirmed over quotes (the waits above quoted too).
    let conversion = c["conversion"]["value"].as_f64().expect("conversion");
    assert!(conversion > 0.0 && conversion <= 1.0, "{r}");
    assert!(f["multiplier"]["value"].as_f64() == Some(1.0), "{r}");
    // The guardrail ends it: the report says why, and quotes are priced by
    // the region's own grid again, with no arm.
    wait_for(
        "the guardrail to end the experiment",
        Duration::from_secs(120),
        || report()["status"] == "ended",
    );
    let r = report();
    assert!(
        r["ended_reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("arm flat"),
        "{r}"
    );
    wait_for(
        "quotes outside the ended experiment",
        Duration::from_secs(60),
        || quote(&w, Some(flat[0])).get("experiment").is_none(),
    );
    assert_eq!(origin.metric("equilibrium_experiments_ended_total"), 1.0);
    // It stays ended across a restart: the origin relearns the definition
    // from its pushes and the end from its store, and never starts it.
    let mut origin = origin;
    assert!(origin.terminate(), "graceful stop");
    let origin = Origin::start_on(port, &dir.path().join("o.sqlite"), &w.base, 0.5, &[]);
    wait_for(
        "the restarted origin to know the experiment",
        Duration::from_secs(60),
        || {
            origin
                .get("/v1/analytics/experiments/flat-vs-default")
                .send()
                .and_then(|r| r.json::<Value>())
                .is_ok_and(|r| r["status"] == "ended")
        },
    );
    // Pushes go on with no arms: quotes stay outside.
    let generation = |o: &Origin| -> u64 {
        o.get("/v1/grids/sf")
            .send()
            .and_then(|r| r.json::<Value>())
            .map_or(0, |g| g["generation"].as_u64().unwrap_or(0))
    };
    let after_restart = generation(&origin);
    wait_for("a few more grids", Duration::from_secs(60), || {
        generation(&origin) > after_restart + 3
    });
    assert!(quote(&w, Some(flat[0])).get("experiment").is_none());
    let grid: Value = origin
        .get("/v1/grids/sf")
        .send()
        .and_then(|r| r.json())
        .expect("grid");
    assert!(grid.get("arms").is_none(), "{grid}");
    assert_eq!(
        origin.log().matches("experiment started").count(),
        1,
        "started once, before the restart"
    );
    // The definition leaves KV: its results stay readable from what the
    // origin kept.
    w.kv_put("CONFIG", "experiment:sf", "[]");
    let after_delete = generation(&origin);
    wait_for(
        "the edge to report the empty value",
        Duration::from_secs(60),
        || generation(&origin) > after_delete + 3,
    );
    let r: Value = origin
        .get("/v1/analytics/experiments/flat-vs-default")
        .send()
        .and_then(|r| r.json())
        .expect("report");
    assert_eq!(r["status"], "ended", "{r}");
    assert_eq!(r["arms"][0]["completed"].as_u64(), Some(n as u64), "{r}");
    // An unknown experiment is a clear 404.
    let r = origin
        .get("/v1/analytics/experiments/nope")
        .send()
        .expect("report");
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().expect("json");
    assert_eq!(body["error"]["code"], "experiment_not_found", "{body}");
}
