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
    // Anonymous riders are outside a user split: no arm, priced by the
    // region's own grid (which surges here).
    let anon = quote(&w, None);
    assert!(anon.get("experiment").is_none(), "{anon}");
    assert!(anon["surge_multiplier"].as_f64().unwrap_or(0.0) > 1.0);

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
}
