//! Bookings end to end in workerd: the lifecycle, who may act, idempotent
//! retries (also concurrent ones), a cancel racing a start, and the money
//! (cancellation fee, repricing).

use std::thread;

use equilibrium_tests::{http, Worker, DISPATCH_TOKEN, SF};
use serde_json::{json, Value};
use shared::fare::{price, Currency, Tariff, Trip};
use shared::surge::Multiplier;

/// Who calls.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    None,
    Garbage,
    Token(&'a str),
    Dispatch,
}

/// A booking made through the edge.
#[derive(Debug, Clone)]
struct Booked {
    id: String,
    rider: String,
    confirm: Value,
}

struct Edge {
    w: Worker,
}

impl Edge {
    fn start() -> Self {
        Self { w: Worker::start() }
    }

    fn quote(&self, class: &str) -> Value {
        let r = http()
            .post(self.w.url("/api/v1/pricing/estimate"))
            .json(&json!({
                "pickup_location": {"latitude": SF.0, "longitude": SF.1},
                "dropoff_location": {"latitude": 37.7849, "longitude": -122.4094},
                "region": "sf",
                "vehicle_type": class,
            }))
            .send()
            .expect("estimate");
        assert_eq!(r.status().as_u16(), 200);
        r.json().expect("quote")
    }

    fn confirm_raw(&self, quote: &Value, body: &Value, key: Option<&str>) -> (u16, String) {
        let id = quote["quote_id"].as_str().expect("id");
        let mut req = http()
            .post(self.w.url(&format!("/api/v1/quotes/{id}/confirm")))
            .json(body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let r = req.send().expect("confirm");
        (r.status().as_u16(), r.text().expect("body"))
    }

    fn confirm(&self, quote: &Value, key: Option<&str>) -> (u16, String) {
        self.confirm_raw(quote, &json!({"quote_token": quote["quote_token"]}), key)
    }

    fn book(&self, class: &str) -> Booked {
        let q = self.quote(class);
        let (status, body) = self.confirm(&q, None);
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], "confirmed");
        Booked {
            id: v["booking_id"].as_str().expect("booking_id").to_owned(),
            rider: v["booking_token"].as_str().expect("token").to_owned(),
            confirm: v,
        }
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
        auth: Auth<'_>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let req = match auth {
            Auth::None => req,
            Auth::Garbage => req.bearer_auth("not-a-token"),
            Auth::Token(t) => req.bearer_auth(t),
            Auth::Dispatch => req.bearer_auth(DISPATCH_TOKEN),
        };
        let req = match key {
            Some(k) => req.header("idempotency-key", k),
            None => req,
        };
        let r = req.send().expect("request");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn get(&self, id: &str, auth: Auth<'_>) -> (u16, Value) {
        self.send(
            http().get(self.w.url(&format!("/api/v1/bookings/{id}"))),
            auth,
            None,
        )
    }

    fn act(
        &self,
        id: &str,
        action: &str,
        auth: Auth<'_>,
        body: &Value,
        key: Option<&str>,
    ) -> (u16, Value) {
        self.send(
            http()
                .post(self.w.url(&format!("/api/v1/bookings/{id}/{action}")))
                .json(body),
            auth,
            key,
        )
    }
}

fn body_of(action: &str) -> Value {
    match action {
        "complete" => json!({"distance_km": 1.8, "duration_minutes": 6.0}),
        "cancel" | "fail" => json!({"reason": "test"}),
        _ => json!({}),
    }
}

const STATES: [&str; 5] = [
    "confirmed",
    "in_progress",
    "completed",
    "cancelled",
    "failed",
];
const ACTIONS: [&str; 4] = ["start", "complete", "cancel", "fail"];

/// Drives a new booking to `state` as dispatch.
fn booking_in(edge: &Edge, state: &str) -> Booked {
    let b = edge.book("standard");
    let path: &[&str] = match state {
        "confirmed" => &[],
        "in_progress" => &["start"],
        "completed" => &["start", "complete"],
        "cancelled" => &["cancel"],
        "failed" => &["fail"],
        other => panic!("no state {other}"),
    };
    for action in path {
        let (s, v) = edge.act(&b.id, action, Auth::Dispatch, &body_of(action), None);
        assert_eq!(s, 200, "{action}: {v}");
    }
    let (s, v) = edge.get(&b.id, Auth::Dispatch);
    assert_eq!((s, v["status"].as_str()), (200, Some(state)), "{v}");
    b
}

#[test]
fn every_transition_and_every_credential() {
    let edge = Edge::start();
    // Dispatch: exactly the documented transitions; everything else is 409.
    let legal = [
        ("confirmed", "start", "in_progress"),
        ("confirmed", "cancel", "cancelled"),
        ("confirmed", "fail", "failed"),
        ("in_progress", "complete", "completed"),
        ("in_progress", "cancel", "cancelled"),
    ];
    for from in STATES {
        for action in ACTIONS {
            let b = booking_in(&edge, from);
            let (s, v) = edge.act(&b.id, action, Auth::Dispatch, &body_of(action), None);
            match legal.iter().find(|(f, a, _)| *f == from && *a == action) {
                Some((_, _, to)) => {
                    assert_eq!(s, 200, "{from} {action}: {v}");
                    assert_eq!(v["status"].as_str(), Some(*to), "{v}");
                    let last = v["history"]
                        .as_array()
                        .and_then(|h| h.last())
                        .expect("history");
                    assert_eq!(
                        (last["status"].as_str(), last["actor"].as_str()),
                        (Some(*to), Some("dispatch"))
                    );
                }
                None => {
                    assert_eq!(s, 409, "{from} {action}: {v}");
                    assert_eq!(v["error"]["code"], "invalid_transition", "{v}");
                    // Nothing changed.
                    let (_, after) = edge.get(&b.id, Auth::Dispatch);
                    assert_eq!(after["status"].as_str(), Some(from));
                }
            }
        }
    }

    // The rider: reads, and cancels a booking not yet started; nothing else.
    let b = edge.book("standard");
    let (s, v) = edge.get(&b.id, Auth::Token(&b.rider));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["booking_id"].as_str(), Some(b.id.as_str()));
    assert_eq!(v["quote_id"], b.confirm["quote_id"]);
    assert_eq!(v["quoted_fare"], b.confirm["final_fare"]);
    assert_eq!(v["surge_multiplier"], b.confirm["surge_multiplier"]);
    assert_eq!(
        v["surge_source"], "default",
        "no grid: the default multiplier"
    );
    for action in ["start", "complete", "fail"] {
        let (s, v) = edge.act(&b.id, action, Auth::Token(&b.rider), &body_of(action), None);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{action}: {v}"
        );
    }
    let started = booking_in(&edge, "in_progress");
    let (s, v) = edge.act(
        &started.id,
        "cancel",
        Auth::Token(&started.rider),
        &body_of("cancel"),
        None,
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "a trip under way: {v}"
    );
    let (s, v) = edge.act(
        &b.id,
        "cancel",
        Auth::Token(&b.rider),
        &json!({"reason": "plans changed"}),
        None,
    );
    assert_eq!((s, v["status"].as_str()), (200, Some("cancelled")), "{v}");
    let last = &v["history"][1];
    assert_eq!(
        (last["actor"].as_str(), last["reason"].as_str()),
        (Some("rider"), Some("plans changed"))
    );

    // No credentials, a bad one, a quote token, another booking's token:
    // on every endpoint.
    let other = edge.book("standard");
    let q = edge.quote("standard");
    let quote_token = q["quote_token"].as_str().expect("token");
    for action in ["GET", "start", "complete", "cancel", "fail"] {
        let call = |auth| {
            if action == "GET" {
                edge.get(&b.id, auth)
            } else {
                edge.act(&b.id, action, auth, &body_of(action), None)
            }
        };
        let (s, v) = call(Auth::None);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("missing_credentials")),
            "{action}"
        );
        let (s, v) = call(Auth::Garbage);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("invalid_credentials")),
            "{action}"
        );
        let (s, v) = call(Auth::Token(quote_token));
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("invalid_credentials")),
            "{action}"
        );
        let (s, v) = call(Auth::Token(&other.rider));
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{action}: {v}"
        );
        // Dispatch on an unknown booking.
        let unknown = "b_00000000000000000000000000000000";
        let (s, v) = if action == "GET" {
            edge.get(unknown, Auth::Dispatch)
        } else {
            edge.act(unknown, action, Auth::Dispatch, &body_of(action), None)
        };
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("booking_not_found")),
            "{action}"
        );
    }
    // Bad bodies are 400s with a code.
    let fresh = edge.book("standard");
    let started = booking_in(&edge, "in_progress");
    for (id, action, body, code) in [
        (
            &started.id,
            "complete",
            json!({"distance_km": -1, "duration_minutes": 5}),
            "invalid_trip",
        ),
        (
            &started.id,
            "complete",
            json!({"distance_km": 3}),
            "missing_field",
        ),
        (
            &fresh.id,
            "cancel",
            json!({"reason": "x".repeat(501)}),
            "invalid_field",
        ),
        (&fresh.id, "fail", json!({"reason": 5}), "invalid_field"),
    ] {
        let (s, v) = edge.act(id, action, Auth::Dispatch, &body, None);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{action} {body}: {v}"
        );
    }
    booking_endpoints_are_rate_limited(&edge);
}

/// The idempotency answers the ledger objects hold for `scope`, read from
/// their SQLite files (`wrangler dev` keeps one per object).
fn idempotency_rows(w: &Worker, scope: &str) -> i64 {
    let dir = w.state_dir.join("v3/do/equilibrium-edge-Ledger");
    std::fs::read_dir(&dir)
        .expect("the ledger objects' directory")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "sqlite"))
        .map(|e| {
            let db = rusqlite::Connection::open_with_flags(
                e.path(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .expect("open a ledger's file");
            db.query_row(
                "SELECT COUNT(*) FROM idempotency WHERE scope = ?1",
                [scope],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
        })
        .sum()
}

/// Asks with `ask` until the answer is a 429 (a fixed window: however slow
/// the machine, enough requests land in one window; the bound is
/// generous) and returns its body; every other answer must be `ok`.
fn until_limited(mut ask: impl FnMut(u64) -> (u16, Value), ok: &[u16]) -> Value {
    let start = std::time::Instant::now();
    for i in 0.. {
        let (s, v) = ask(i);
        if s == 429 {
            return v;
        }
        assert!(ok.contains(&s), "request {i}: {s} {v}");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(300),
            "no 429 after {i} requests in 300 s"
        );
    }
    unreachable!()
}

/// A booking's transitions count per booking (20 per 10 s), and booking
/// reads and stream connects count per address (600 per 10 s).
fn booking_endpoints_are_rate_limited(edge: &Edge) {
    // A rider loops cancels on a cancelled booking with fresh keys.
    let b = edge.book("standard");
    let (s, _) = edge.act(&b.id, "cancel", Auth::Token(&b.rider), &json!({}), None);
    assert_eq!(s, 200);
    let v = until_limited(
        |i| {
            edge.act(
                &b.id,
                "cancel",
                Auth::Token(&b.rider),
                &json!({}),
                Some(&format!("loop-{i}")),
            )
        },
        &[409],
    );
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("booking"),
        "{v}"
    );
    // The loop goes on past the limit's windows (a 429 is polled past,
    // with the harness's deadline): the ledger keeps at most 32 answers
    // for the booking, not one per key.
    let mut refused = 0;
    let mut i = 1_000;
    equilibrium_tests::wait_for(
        "60 more refused cancels",
        std::time::Duration::from_secs(300),
        || {
            let (s, v) = edge.act(
                &b.id,
                "cancel",
                Auth::Token(&b.rider),
                &json!({}),
                Some(&format!("loop-{i}")),
            );
            i += 1;
            match s {
                409 => refused += 1,
                429 => {}
                other => panic!("cancel loop: {other} {v}"),
            }
            refused >= 60
        },
    );
    let stored = idempotency_rows(&edge.w, &format!("booking:{}", b.id));
    assert!(stored <= 32, "{stored} answers kept for one booking");
    assert!(stored >= 20, "the newest answers are kept: {stored}");
    // Another booking's transitions are not held up by it.
    let other = edge.book("standard");
    let (s, _) = edge.act(&other.id, "start", Auth::Dispatch, &json!({}), None);
    assert_eq!(s, 200);
    // Reads, from one address.
    let read = |_| {
        let r = http()
            .get(edge.w.url(&format!("/api/v1/bookings/{}", other.id)))
            .header("cf-connecting-ip", "192.0.2.77")
            .bearer_auth(DISPATCH_TOKEN)
            .send()
            .expect("read");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let v = until_limited(read, &[200]);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("address"),
        "{v}"
    );
    // Stream connects (plain GETs count too: they are told to upgrade).
    let connect = |_| {
        let r = http()
            .get(edge.w.url("/api/v1/pricing/stream?region=sf"))
            .header("cf-connecting-ip", "192.0.2.78")
            .send()
            .expect("connect");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let v = until_limited(connect, &[426]);
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
}

#[test]
fn the_fee_and_the_final_fare_follow_the_booking_terms() {
    let edge = Edge::start();
    // Standard in sf: a fee from the first millisecond; premium keeps the
    // built-in terms (two minutes free).
    let tariff = Tariff {
        currency: Currency::USD,
        base: 300,
        per_km: 100,
        per_minute: 20,
        booking_fee: 150,
        minimum_fare: 500,
    };
    edge.w.kv_put(
        "CONFIG",
        "tariff:sf:standard",
        &json!({"currency": "USD", "base": 300, "per_km": 100, "per_minute": 20, "booking_fee": 150,
                "minimum_fare": 500, "cancellation_fee": 350, "cancellation_grace_seconds": 0,
                "reprice_tolerance_percent": 20})
        .to_string(),
    );
    let b = edge.book("standard");
    let (s, v) = edge.act(&b.id, "cancel", Auth::Token(&b.rider), &json!({}), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["cancellation_fee"].as_f64(), v["final_fare"].as_f64()),
        (Some(3.5), Some(3.5)),
        "{v}"
    );
    // Dispatch (or the driver through it) never charges the rider.
    let b = edge.book("standard");
    let (_, v) = edge.act(
        &b.id,
        "cancel",
        Auth::Dispatch,
        &json!({"reason": "driver cancelled"}),
        None,
    );
    assert_eq!(
        (v["cancellation_fee"].as_f64(), v["final_fare"].as_f64()),
        (Some(0.0), Some(0.0)),
        "{v}"
    );
    // Within the grace period: free.
    let b = edge.book("premium");
    let (_, v) = edge.act(&b.id, "cancel", Auth::Token(&b.rider), &json!({}), None);
    assert_eq!(v["cancellation_fee"].as_f64(), Some(0.0), "{v}");

    // Completion: the quoted price while the trip stays within 20 %...
    let b = edge.book("standard");
    let (_, rec) = edge.get(&b.id, Auth::Dispatch);
    let est_km = rec["estimated_distance_km"].as_f64().expect("km");
    let est_min = rec["estimated_duration_minutes"].as_f64().expect("min");
    edge.act(&b.id, "start", Auth::Dispatch, &json!({}), None);
    let (s, v) = edge.act(
        &b.id,
        "complete",
        Auth::Dispatch,
        &json!({"distance_km": est_km * 1.15, "duration_minutes": est_min * 0.9}),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["final_fare"], v["quoted_fare"], "{v}");
    assert!(v.get("fare_adjustment").is_none(), "{v}");
    // ...and the tariff's price of the trip driven, at the quoted
    // multiplier, when it is not.
    let b = edge.book("standard");
    edge.act(&b.id, "start", Auth::Dispatch, &json!({}), None);
    let (s, v) = edge.act(
        &b.id,
        "complete",
        Auth::Dispatch,
        &json!({"distance_km": est_km * 2.0, "duration_minutes": est_min}),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let driven = Trip {
        distance_m: (est_km * 2.0 * 1_000.0).round() as u32,
        duration_s: (est_min * 60.0).round() as u32,
    };
    let m = Multiplier::from_f64(v["surge_multiplier"].as_f64().expect("m")).expect("m");
    let want = price(&tariff, driven, m).total as f64 / 100.0;
    assert_eq!(v["final_fare"].as_f64(), Some(want), "{v}");
    assert!(v["final_fare"].as_f64() > v["quoted_fare"].as_f64(), "{v}");
    let why = v["fare_adjustment"].as_str().expect("a reason");
    // Twice the estimate as the view shows it (to 0.1 km): about +100 %
    // of the estimate itself.
    let percent: i64 = why
        .split("distance differed from the estimate by +")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no distance difference in {why}"));
    assert!((90..=110).contains(&percent), "{why}");
    assert!(why.contains("tolerance 20%"), "{why}");

    the_quote_carries_its_terms(&edge);
}

/// The terms are fixed when the price is: a EUR tariff removed between the
/// quote and the confirm still books and charges the quoted fare and fee,
/// in EUR (the region `euro` charges in EUR: no built-in tariff prices it).
fn the_quote_carries_its_terms(edge: &Edge) {
    edge.w.kv_put(
        "CONFIG",
        "tariff:euro:standard",
        &json!({"currency": "EUR", "base": 900, "per_km": 100, "per_minute": 20, "booking_fee": 150,
                "minimum_fare": 500, "cancellation_fee": 700, "cancellation_grace_seconds": 0})
        .to_string(),
    );
    let (lat, lng) = equilibrium_tests::regions::place("euro");
    let ask = json!({
        "pickup_location": {"latitude": lat, "longitude": lng},
        "dropoff_location": {"latitude": lat + 0.01, "longitude": lng},
    });
    let estimate = || {
        let r = http()
            .post(edge.w.url("/api/v1/pricing/estimate"))
            .json(&ask)
            .send()
            .expect("estimate");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    equilibrium_tests::wait_for("the EUR tariff", std::time::Duration::from_secs(30), || {
        estimate().0 == 200
    });
    let (_, q) = estimate();
    assert_eq!(q["currency"], "EUR", "{q}");
    edge.w.kv_delete("CONFIG", "tariff:euro:standard");
    equilibrium_tests::wait_for(
        "the tariff gone from the worker's view",
        std::time::Duration::from_secs(30),
        || estimate().0 == 503,
    );
    let (status, body) = edge.confirm(&q, None);
    assert_eq!(status, 200, "{body}");
    let c: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (c["currency"].as_str(), &c["final_fare"]),
        (Some("EUR"), &q["final_fare"])
    );
    let id = c["booking_id"].as_str().expect("id");
    let rider = c["booking_token"].as_str().expect("token");
    let (s, v) = edge.act(id, "cancel", Auth::Token(rider), &json!({}), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["currency"].as_str(),
            v["cancellation_fee"].as_f64(),
            v["final_fare"].as_f64()
        ),
        (Some("EUR"), Some(7.0), Some(7.0)),
        "the quoted terms' fee, not the built-in 5.00: {v}"
    );
}

#[test]
fn retries_with_a_key_get_the_first_answer_and_races_have_one_winner() {
    let edge = Edge::start();
    // Confirm, retried with its key: the same status and body, token and all.
    let q = edge.quote("standard");
    let first = edge.confirm(&q, Some("confirm-1"));
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(edge.confirm(&q, Some("confirm-1")), first);
    // The key with another body, and a retry without a key.
    let other = edge.confirm_raw(
        &q,
        &json!({"quote_token": q["quote_token"], "tip": 1}),
        Some("confirm-1"),
    );
    assert_eq!(other.0, 422, "{}", other.1);
    assert!(other.1.contains("idempotency_key_reused"), "{}", other.1);
    let bare = edge.confirm(&q, None);
    assert_eq!(bare.0, 409, "{}", bare.1);
    assert!(bare.1.contains("quote_already_confirmed"), "{}", bare.1);

    // Concurrent duplicates of a confirm with one key: one booking, one
    // answer for all.
    let q = edge.quote("standard");
    let answers: Vec<(u16, String)> = thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| edge.confirm(&q, Some("confirm-2"))))
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    // (Without a key, concurrent confirms book once: tests/tests/edge.rs.)

    // Each transition retried with its key, sequentially and concurrently.
    for (prep, action) in [
        (&[][..], "start"),
        (&["start"][..], "complete"),
        (&[][..], "cancel"),
        (&[][..], "fail"),
    ] {
        let b = edge.book("standard");
        for p in prep {
            edge.act(&b.id, p, Auth::Dispatch, &body_of(p), None);
        }
        let key = format!("{action}-{}", b.id);
        let answers: Vec<(u16, Value)> = thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        edge.act(&b.id, action, Auth::Dispatch, &body_of(action), Some(&key))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(answers[0].0, 200, "{action}: {:?}", answers[0]);
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{action}: {answers:?}"
        );
        // Later, sequentially: still the first answer, not a 409.
        let again = edge.act(&b.id, action, Auth::Dispatch, &body_of(action), Some(&key));
        assert_eq!(again, answers[0], "{action}");
        // One transition recorded, not six.
        let (_, rec) = edge.get(&b.id, Auth::Dispatch);
        assert_eq!(
            rec["history"].as_array().map(Vec::len),
            Some(prep.len() + 2),
            "{rec}"
        );
        // The key with another (valid) body.
        let changed = match action {
            "complete" => json!({"distance_km": 2.5, "duration_minutes": 7.0}),
            _ => json!({"reason": "other"}),
        };
        let (s, v) = edge.act(&b.id, action, Auth::Dispatch, &changed, Some(&key));
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some("idempotency_key_reused")),
            "{action}: {v}"
        );
        // Without the key the transition is simply not legal any more.
        let (s, _) = edge.act(&b.id, action, Auth::Dispatch, &body_of(action), None);
        assert_eq!(s, 409, "{action}");
    }
    // A bad key is refused before anything happens.
    let b = edge.book("standard");
    let (s, v) = edge.act(
        &b.id,
        "start",
        Auth::Dispatch,
        &json!({}),
        Some("has space"),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );

    // The rider cancelling while dispatch starts the trip: exactly one wins,
    // and the booking is in the winner's state.
    for _ in 0..6 {
        let b = edge.book("standard");
        let (cancel, start) = thread::scope(|s| {
            let c = s.spawn(|| edge.act(&b.id, "cancel", Auth::Token(&b.rider), &json!({}), None));
            let st = s.spawn(|| edge.act(&b.id, "start", Auth::Dispatch, &json!({}), None));
            (c.join().expect("cancel"), st.join().expect("start"))
        });
        let (_, rec) = edge.get(&b.id, Auth::Dispatch);
        match (cancel.0, start.0) {
            (200, loser) => {
                assert_eq!(loser, 409, "{start:?}");
                assert_eq!(rec["status"], "cancelled");
            }
            (loser, 200) => {
                // The rider may not cancel a trip under way.
                assert_eq!(loser, 403, "{cancel:?}");
                assert_eq!(rec["status"], "in_progress");
            }
            other => panic!("not exactly one winner: {other:?} {cancel:?} {start:?}"),
        }
        assert_eq!(rec["history"].as_array().map(Vec::len), Some(2), "{rec}");
    }
}

/// Bookings rows across the worker's ledger objects.
fn booking_rows(w: &Worker) -> i64 {
    let dir = w.state_dir.join("v3/do/equilibrium-edge-Ledger");
    std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "sqlite"))
                .map(|e| {
                    rusqlite::Connection::open_with_flags(
                        e.path(),
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .and_then(|db| {
                        db.query_row("SELECT COUNT(*) FROM bookings", [], |r| r.get::<_, i64>(0))
                    })
                    .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn bookings_outlive_their_retention_only_until_their_events_went_out() {
    use equilibrium_tests::wait_for;
    use std::time::Duration;
    let state = tempfile::tempdir().expect("tmp");
    let vars = [("BOOKING_RETENTION_SECONDS", "2"), ("LEDGERS", "64")];
    // The queue is down: the confirmation's event stays in the outbox.
    let edge = Edge {
        w: Worker::start_without_queue(state.path(), &vars),
    };
    let b = edge.book("standard");
    // The id names the 64 ledgers it was made for (hex 40).
    assert!(b.id.starts_with("b_40-"), "{}", b.id);
    // Past its retention the sweep holds it for its unsent event: reads
    // keep finding it.
    wait_for(
        "a sweep to hold the booking for its outbox",
        Duration::from_secs(120),
        || {
            let (status, body) = edge.get(&b.id, Auth::Token(&b.rider));
            assert_eq!(status, 200, "deleted while its event was unsent: {body}");
            edge.w.log().contains("\"held_for_outbox\":1")
        },
    );
    assert_eq!(booking_rows(&edge.w), 1);
    let Edge { mut w } = edge;
    w.stop();
    // The queue is back: the outbox is sent, then the booking goes.
    let edge = Edge {
        w: Worker::start_at(state.path(), &vars),
    };
    wait_for(
        "the booking to be deleted once its event went out",
        Duration::from_secs(120),
        || edge.get(&b.id, Auth::Token(&b.rider)).0 == 404,
    );
    assert_eq!(booking_rows(&edge.w), 0);
}
