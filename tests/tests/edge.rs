//! End-to-end tests of the edge worker running in workerd (`wrangler dev`).
//!
//! One worker with fresh local state serves every scenario below; each
//! scenario uses its own region so they do not see each other's grids (a
//! test region is a square of its own: `equilibrium_tests::regions`, and
//! the pickup decides the region).

use std::time::Duration;

use equilibrium_tests::regions::{bounds, place};
use equilibrium_tests::{now_ms, provider, rider_token, wait_for, Client, Worker, ADMIN_TOKEN};
use serde_json::{json, Value};
use shared::api::stream::StreamMessage;
use shared::api::{GridCellWire, GridPush};
use shared::fare::{Currency, VehicleClass};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::grid::GRID_FORMAT;
use shared::quote::{Ident, Keyring, QuoteClaims};
use shared::surge::Multiplier;
use shared::time::Timestamp;

/// The scenario's pickup: the middle of its region.
fn pickup(region: &str) -> (f64, f64) {
    place(region)
}

/// About 1.4 km from the pickup.
fn dropoff(region: &str) -> (f64, f64) {
    let (lat, lng) = place(region);
    (lat + 0.01, lng + 0.01)
}

fn pickup_cell(region: &str) -> Cell {
    let (lat, lng) = pickup(region);
    Cell::at(LatLng::new(lat, lng).expect("ll"), DEFAULT_LEVEL)
}

fn grid(region: &str, generation: u64, tenths: u16, computed_at: u64) -> GridPush {
    let centre = pickup_cell(region);
    let mut cells = vec![GridCellWire {
        cell: centre.token(),
        multiplier: Multiplier::from_tenths(tenths).expect("m"),
        supply: 2,
        demand: 9,
        trend: "increasing".into(),
        expected_demand: None,
        expected_supply: None,
    }];
    for n in centre.neighbours().into_iter().take(3) {
        cells.push(GridCellWire {
            cell: n.token(),
            multiplier: Multiplier::ONE,
            supply: 5,
            demand: 1,
            trend: "stable".into(),
            expected_demand: None,
            expected_supply: None,
        });
    }
    GridPush {
        format: GRID_FORMAT,
        region: region.into(),
        level: DEFAULT_LEVEL.get(),
        generation,
        computed_at,
        cells,
        lawful_cap: None,
        arms: vec![],
    }
}

struct Api<'a> {
    w: &'a Worker,
    http: Client,
}

impl Api<'_> {
    fn push(&self, g: &GridPush) -> (u16, Value) {
        let r = self
            .http
            .put(self.w.url(&format!("/admin/v1/grids/{}", g.region)))
            .bearer_auth(ADMIN_TOKEN)
            .json(g)
            .send()
            .expect("push");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn estimate(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.w.url("/api/v1/pricing/estimate"))
            .json(body)
            .send()
            .expect("estimate");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    /// An estimate with `Authorization: Bearer <token>`.
    fn estimate_as(&self, body: &Value, token: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.w.url("/api/v1/pricing/estimate"))
            .bearer_auth(token)
            .json(body)
            .send()
            .expect("estimate");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn quote(&self, region: &str) -> Value {
        let (p, d) = (pickup(region), dropoff(region));
        let (status, body) = self.estimate(&json!({
            "pickup_location": {"latitude": p.0, "longitude": p.1},
            "dropoff_location": {"latitude": d.0, "longitude": d.1},
            "vehicle_type": "standard",
            "region": region,
        }));
        assert_eq!(status, 200, "estimate failed: {body}");
        body
    }

    /// An estimate in `region` (at its pickup): status and body.
    fn quote_status(&self, region: &str) -> (u16, Value) {
        let (p, d) = (pickup(region), dropoff(region));
        self.estimate(&json!({
            "pickup_location": {"latitude": p.0, "longitude": p.1},
            "dropoff_location": {"latitude": d.0, "longitude": d.1},
        }))
    }

    fn confirm(&self, id: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.w.url(&format!("/api/v1/quotes/{id}/confirm")))
            .json(&json!({ "quote_token": token }))
            .send()
            .expect("confirm");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

fn multiplier(body: &Value) -> f64 {
    body["surge_multiplier"].as_f64().expect("surge_multiplier")
}

#[test]
fn edge_worker_end_to_end() {
    let w = Worker::start_with_vars(&[
        ("CONFIG_CACHE_MS", "300"),
        ("GRID_CACHE_MS", "300"),
        ("MAX_ZONE_SUBSCRIBERS", "3"),
    ]);
    let api = Api {
        w: &w,
        http: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    };
    health_and_openapi(&api);
    quote_without_any_grid(&api);
    push_requires_the_admin_token(&api);
    pushed_grid_prices_quotes(&api);
    older_generation_is_ignored(&api);
    confirm_honours_the_quote_exactly_once(&api);
    concurrent_confirms_one_wins(&api);
    forged_tampered_and_expired_quotes(&api);
    stale_grid_decays_without_failing(&api);
    websocket_subscriber_gets_next_generation(&api);
    heatmaps(&api);
    admin_kv_settings(&api);
    the_pickup_decides_the_region(&api);
    made_up_regions_create_nothing(&api);
    money_in_the_regions_currency(&api);
    named_zones_in_every_view(&api);
    a_full_zone_refuses_the_next_subscriber(&api);
    bad_inputs_get_4xx_codes(&api);
    a_chunked_body_is_capped_while_it_streams(&api);
    riders_are_who_their_tokens_say(&api);
    rate_limit_per_user(&api);
}

fn health_and_openapi(api: &Api<'_>) {
    let h: Value = api
        .http
        .get(api.w.url("/health"))
        .send()
        .expect("h")
        .json()
        .expect("json");
    assert_eq!(h["status"], "ok");
    let doc: Value = api
        .http
        .get(api.w.url("/openapi.json"))
        .send()
        .expect("openapi")
        .json()
        .expect("openapi json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/v1/pricing/estimate",
        "/api/v1/quotes/{id}/confirm",
        "/api/v1/pricing/heatmap",
        "/api/v1/driver/heatmap",
        "/api/v1/pricing/stream",
        "/admin/v1/grids/{region}",
        "/health",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
}

fn quote_without_any_grid(api: &Api<'_>) {
    let q = api.quote("nogrid");
    assert_eq!(multiplier(&q), 1.0);
    assert_eq!(q["surge_source"]["source"], "default");
    assert_eq!(q["degraded"], true);
    assert!(q["final_fare"].as_f64().expect("fare") > 0.0);
    assert_eq!(q["currency"], "USD");
    assert!(q["quote_id"].as_str().expect("id").starts_with("q_"));
}

fn push_requires_the_admin_token(api: &Api<'_>) {
    let g = grid("authz", 1, 20, now_ms());
    let url = api.w.url("/admin/v1/grids/authz");
    let none = api.http.put(&url).json(&g).send().expect("push");
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(code(&none.json().expect("json")), "unauthorized");
    let wrong = api
        .http
        .put(&url)
        .bearer_auth("not-the-token")
        .json(&g)
        .send()
        .expect("push");
    assert_eq!(wrong.status().as_u16(), 401);
    // Nothing was applied: quotes in that region are still unsurged.
    assert_eq!(multiplier(&api.quote("authz")), 1.0);
    // The refusal is logged, the token given is not.
    wait_for("the refusal in the log", Duration::from_secs(10), || {
        api.w.log().contains("admin push refused")
    });
    assert!(!api.w.log().contains("not-the-token"));
    assert!(!api.w.log().contains(ADMIN_TOKEN));
}

fn pushed_grid_prices_quotes(api: &Api<'_>) {
    let (status, body) = api.push(&grid("pushed", 2, 20, now_ms()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "applied");
    let q = api.quote("pushed");
    assert_eq!(multiplier(&q), 2.0, "{q}");
    assert!(matches!(
        q["surge_source"]["source"].as_str(),
        Some("fresh" | "cached")
    ));
    assert_eq!(q["surge_source"]["grid_generation"], 2);
    assert_eq!(q["degraded"], false);
    assert_eq!(q["zone_info"]["zone_id"], pickup_cell("pushed").token());
    assert_eq!(q["zone_info"]["current_demand_level"], "high");
    // The breakdown explains the price: subtotal × 2 + booking fee.
    let b = &q["fare_breakdown"];
    let sum = b["subtotal"].as_f64().expect("s")
        + b["surge_amount"].as_f64().expect("a")
        + b["booking_fee"].as_f64().expect("b")
        + b["minimum_fare_adjustment"].as_f64().expect("m");
    assert!(
        (sum - q["final_fare"].as_f64().expect("f")).abs() < 0.005,
        "{b}"
    );
    assert!(
        (b["surge_amount"].as_f64().expect("a") - b["subtotal"].as_f64().expect("s")).abs() < 0.015
    );
}

fn older_generation_is_ignored(api: &Api<'_>) {
    assert_eq!(api.push(&grid("order", 5, 30, now_ms())).0, 200);
    let (status, body) = api.push(&grid("order", 3, 12, now_ms()));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["status"], "stale");
    assert_eq!(body["generation"], 5);
    // A duplicate of the held generation is stale too.
    assert_eq!(api.push(&grid("order", 5, 12, now_ms())).0, 409);
    assert_eq!(multiplier(&api.quote("order")), 3.0);
    assert_eq!(api.push(&grid("order", 6, 15, now_ms())).0, 200);
    wait_for("generation 6 in quotes", Duration::from_secs(20), || {
        multiplier(&api.quote("order")) == 1.5
    });
}

fn confirm_honours_the_quote_exactly_once(api: &Api<'_>) {
    assert_eq!(api.push(&grid("confirm", 1, 15, now_ms())).0, 200);
    let q = api.quote("confirm");
    assert_eq!(multiplier(&q), 1.5);
    // Surge moves after the quote.
    assert_eq!(api.push(&grid("confirm", 2, 30, now_ms())).0, 200);
    wait_for("surge to move", Duration::from_secs(20), || {
        multiplier(&api.quote("confirm")) == 3.0
    });
    let id = q["quote_id"].as_str().expect("id");
    let token = q["quote_token"].as_str().expect("token");
    let (status, c) = api.confirm(id, token);
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["status"], "confirmed");
    assert_eq!(
        c["final_fare"], q["final_fare"],
        "the quoted price is honoured"
    );
    assert_eq!(c["surge_multiplier"], 1.5);
    let (again, body) = api.confirm(id, token);
    assert_eq!(again, 409, "{body}");
    assert_eq!(code(&body), "quote_already_confirmed");
}

fn concurrent_confirms_one_wins(api: &Api<'_>) {
    let q = api.quote("confirm");
    let id = q["quote_id"].as_str().expect("id").to_owned();
    let token = q["quote_token"].as_str().expect("token").to_owned();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| api.confirm(&id, &token).0))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
}

fn claims(id: &str, issued: u64, ttl: u64) -> QuoteClaims {
    QuoteClaims {
        quote_id: Ident::new(id).expect("id"),
        region: Ident::new("confirm").expect("region"),
        cell: pickup_cell("confirm"),
        class: VehicleClass::Standard,
        surge: Multiplier::ONE,
        base_fare: 100,
        final_fare: 100,
        currency: Currency::USD,
        distance_m: 1_000,
        duration_s: 300,
        grid_generation: 0,
        issued_at: Timestamp(issued),
        expires_at: Timestamp(issued + ttl),
        source: Some(shared::desk::Source::Fresh),
        arm: None,
        terms: None,
    }
}

fn forged_tampered_and_expired_quotes(api: &Api<'_>) {
    let keys = Keyring::parse(equilibrium_tests::SIGNING_KEYS).expect("keys");
    // Expired: validly signed, ttl long gone.
    let expired = keys.sign(&claims("q_expired", now_ms() - 600_000, 60_000));
    let (status, body) = api.confirm("q_expired", &expired);
    assert_eq!((status, code(&body)), (410, "quote_expired"), "{body}");
    // Forged: signed with another secret under the same key id.
    let forger = Keyring::parse("k1:someone-elses-secret-000").expect("forger");
    let forged = forger.sign(&claims("q_forged", now_ms(), 60_000));
    let (status, body) = api.confirm("q_forged", &forged);
    assert_eq!((status, code(&body)), (403, "quote_forged"), "{body}");
    // Tampered: a real quote with its price lowered.
    let q = api.quote("confirm");
    let token = q["quote_token"].as_str().expect("token");
    let (b64, sig) = token.split_once('.').expect("shape");
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = String::from_utf8(engine.decode(b64).expect("b64")).expect("utf8");
    let mut fields: Vec<String> = text.split('|').map(str::to_owned).collect();
    fields[8] = "1".into(); // final fare: one cent
    let tampered = format!("{}.{sig}", engine.encode(fields.join("|")));
    let id = q["quote_id"].as_str().expect("id");
    let (status, body) = api.confirm(id, &tampered);
    assert_eq!((status, code(&body)), (403, "quote_forged"), "{body}");
    // A real token under another id.
    let (status, body) = api.confirm("q_other", token);
    assert_eq!((status, code(&body)), (400, "quote_id_mismatch"), "{body}");
    // Garbage.
    let (status, body) = api.confirm(id, "not-a-token");
    assert_eq!((status, code(&body)), (400, "invalid_quote"), "{body}");
    // The untouched quote still confirms.
    assert_eq!(api.confirm(id, token).0, 200);
}

fn stale_grid_decays_without_failing(api: &Api<'_>) {
    // Fresh for 30 s, then decays to 1.0 over 300 s (wrangler.toml).
    let now = now_ms();
    assert_eq!(api.push(&grid("stale", 1, 30, now - 120_000)).0, 200);
    let q = api.quote("stale");
    assert_eq!(q["surge_source"]["source"], "stale", "{q}");
    assert_eq!(q["degraded"], true);
    let m = multiplier(&q);
    assert!(m > 1.0 && m < 3.0, "decayed multiplier {m}");
    assert_eq!(q["surge_source"]["published_multiplier"], 3.0);
    assert!(q["surge_source"]["age_seconds"].as_f64().expect("age") >= 120.0);
    // Far past the decay: default 1.0, still a quote.
    assert_eq!(api.push(&grid("stale", 2, 30, now - 3_600_000)).0, 200);
    wait_for("fully decayed grid", Duration::from_secs(20), || {
        let q = api.quote("stale");
        q["surge_source"]["source"] == "default" && multiplier(&q) == 1.0
    });
}

fn websocket_subscriber_gets_next_generation(api: &Api<'_>) {
    assert_eq!(api.push(&grid("live", 1, 12, now_ms())).0, 200);
    let (mut ws, _) = tungstenite::connect(api.w.ws_url("/api/v1/pricing/stream?region=live"))
        .expect("websocket connect");
    let next_grid = |ws: &mut tungstenite::WebSocket<_>| -> Value {
        loop {
            match ws.read().expect("ws read") {
                tungstenite::Message::Text(t) => return serde_json::from_str(&t).expect("json"),
                tungstenite::Message::Close(_) => panic!("socket closed"),
                _ => continue,
            }
        }
    };
    let first = next_grid(&mut ws);
    assert_eq!(first["type"], "grid");
    assert_eq!(first["grid"]["generation"], 1);
    // A subscriber that takes changes (`changes=1`): its first message is
    // the whole grid.
    let (mut changing, _) =
        tungstenite::connect(api.w.ws_url("/api/v1/pricing/stream?region=live&changes=1"))
            .expect("websocket connect");
    let mut held: GridPush =
        serde_json::from_value(next_grid(&mut changing)["grid"].clone()).expect("a whole grid");
    assert_eq!(api.push(&grid("live", 2, 25, now_ms())).0, 200);
    let second = next_grid(&mut ws);
    assert_eq!(second["grid"]["generation"], 2);
    // One cell of four changed: the changes are sent, and applied they
    // hold what a subscriber connecting now is sent whole.
    let apply = |held: &GridPush, m: Value| -> GridPush {
        match serde_json::from_value(m.clone()).expect("a stream message") {
            StreamMessage::Changes { changes } => {
                shared::api::stream::apply(held, &changes).expect("the changes apply")
            }
            StreamMessage::Grid { .. } => panic!("a whole grid where changes were smaller: {m}"),
        }
    };
    let fresh = |api: &Api<'_>| -> GridPush {
        let (mut ws, _) = tungstenite::connect(api.w.ws_url("/api/v1/pricing/stream?region=live"))
            .expect("websocket connect");
        let g = serde_json::from_value(next_grid(&mut ws)["grid"].clone()).expect("grid");
        let _ = ws.close(None);
        g
    };
    held = apply(&held, next_grid(&mut changing));
    assert_eq!(held.generation, 2);
    assert_eq!(held, fresh(api));
    // And again from there.
    assert_eq!(api.push(&grid("live", 3, 31, now_ms())).0, 200);
    held = apply(&held, next_grid(&mut changing));
    assert_eq!(held, fresh(api));
    let _ = changing.close(None);
    let centre = pickup_cell("live").token();
    let hot = second["grid"]["cells"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["cell"] == centre.as_str()))
        .map(|c| c["multiplier"].clone());
    assert_eq!(hot, Some(json!(2.5)), "{second}");
    // A plain GET is told to upgrade.
    let r = api
        .http
        .get(api.w.url("/api/v1/pricing/stream?region=live"))
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 426);
    let _ = ws.close(None);
}

fn heatmaps(api: &Api<'_>) {
    assert_eq!(api.push(&grid("heat", 1, 22, now_ms())).0, 200);
    let r: Value = api
        .http
        .get(api.w.url(&format!(
            "/api/v1/pricing/heatmap?bounds={}&zoom=14&region=heat",
            bounds("heat")
        )))
        .send()
        .expect("heatmap")
        .json()
        .expect("json");
    assert_eq!(r["generation"], 1);
    assert_eq!(r["total_zones"], 4, "{r}");
    let hot = r["zones"]
        .as_array()
        .expect("zones")
        .iter()
        .find(|z| z["zone_id"] == pickup_cell("heat").token())
        .expect("hot cell");
    assert_eq!(hot["surge_multiplier"], 2.2);
    assert_eq!(hot["color"], "#e74c3c");
    assert_eq!(hot["demand_count"], 9);
    // Zoomed out: aggregated to a coarser level, one zone per level-7
    // parent of the four cells, the hot one showing its price.
    let (lat, lng) = place("heat");
    let far: Value = api
        .http
        .get(api.w.url(&format!(
            "/api/v1/pricing/heatmap?bounds={},{},{},{}&zoom=6&region=heat",
            lat - 0.7,
            lng - 0.5,
            lat + 0.8,
            lng + 0.5
        )))
        .send()
        .expect("heatmap")
        .json()
        .expect("json");
    assert_eq!(far["level"], 7);
    let level7 = shared::geo::Level::new(7).expect("level");
    let mut parents: Vec<Cell> = grid("heat", 1, 22, 0)
        .cells
        .iter()
        .map(|c| Cell::from_token(&c.cell).expect("cell").parent(level7))
        .collect();
    parents.sort();
    parents.dedup();
    assert_eq!(far["total_zones"], parents.len(), "{far}");
    let hot_parent = pickup_cell("heat").parent(level7).token();
    let merged = far["zones"]
        .as_array()
        .and_then(|z| z.iter().find(|z| z["zone_id"] == hot_parent.as_str()))
        .expect("the hot cell's parent");
    assert_eq!(merged["surge_multiplier"], 2.2);

    let d: Value = api
        .http
        .get(api.w.url(&format!(
            "/api/v1/driver/heatmap?lat={}&lng={}&radius=5000&region=heat",
            lat + 0.005,
            lng + 0.009
        )))
        .send()
        .expect("driver")
        .json()
        .expect("json");
    let zones = d["recommended_zones"].as_array().expect("zones");
    assert_eq!(zones.len(), 4, "{d}");
    assert_eq!(
        zones[0]["zone_id"],
        pickup_cell("heat").token(),
        "best earnings first"
    );
    assert!(
        zones[0]["estimated_earnings_per_hour"].as_f64().expect("e")
            > zones[1]["estimated_earnings_per_hour"].as_f64().expect("e")
    );
    assert!(zones[0]["distance_meters"].as_u64().expect("d") < 5_000);
    assert_eq!(zones[0]["demand_trend"], "increasing");
}

fn admin_kv_settings(api: &Api<'_>) {
    // The region charges in EUR (the test registry): no built-in tariff
    // prices it, so a quote waits for the admin's.
    let p = pickup("admin");
    let (status, body) = api.estimate(&json!({
        "pickup_location": {"latitude": p.0, "longitude": p.1},
        "dropoff_location": {"latitude": p.0 + 0.01, "longitude": p.1},
    }));
    assert_eq!((status, code(&body)), (503, "config_unavailable"), "{body}");
    // A tariff for the region, in its currency; one in another currency
    // is refused where it is read.
    api.w.kv_put(
        "CONFIG",
        "tariff:admin:standard",
        r#"{"currency":"EUR","base":1000,"per_km":0,"per_minute":0,"booking_fee":0,"minimum_fare":0}"#,
    );
    assert_eq!(api.push(&grid("admin", 1, 40, now_ms())).0, 200);
    wait_for("the tariff", Duration::from_secs(30), || {
        api.estimate(&json!({
            "pickup_location": {"latitude": p.0, "longitude": p.1},
            "dropoff_location": {"latitude": p.0 + 0.01, "longitude": p.1},
        }))
        .0 == 200
    });
    let q = api.quote("admin");
    assert_eq!((multiplier(&q), q["currency"].as_str()), (4.0, Some("EUR")));
    assert_eq!(q["final_fare"].as_f64(), Some(40.0));
    // The admin's tools are wrangler's: an emergency cap.
    api.w.kv_put("CONFIG", "emergency_cap", "1.5");
    wait_for("the emergency cap", Duration::from_secs(30), || {
        multiplier(&api.quote("admin")) == 1.5
    });
    let q = api.quote("admin");
    assert_eq!(q["final_fare"].as_f64(), Some(15.0));
    api.w.kv_delete("CONFIG", "emergency_cap");
    wait_for("the emergency cap lifted", Duration::from_secs(30), || {
        multiplier(&api.quote("admin")) == 4.0
    });
}

fn the_pickup_decides_the_region(api: &Api<'_>) {
    // sf surges; an SF pickup that names another region does not get
    // that region's price, whatever it names.
    let mut g = grid("sf", 1, 30, now_ms());
    g.cells.retain(|c| c.cell == pickup_cell("sf").token());
    assert_eq!(api.push(&g).0, 200);
    let (p, d) = (pickup("sf"), dropoff("sf"));
    let ask = |region: Option<&str>| {
        let mut body = json!({
            "pickup_location": {"latitude": p.0, "longitude": p.1},
            "dropoff_location": {"latitude": d.0, "longitude": d.1},
        });
        if let Some(r) = region {
            body["region"] = r.into();
        }
        api.estimate(&body)
    };
    let (status, q) = ask(None);
    assert_eq!(status, 200, "{q}");
    assert_eq!(
        (q["zone_info"]["region"].as_str(), multiplier(&q)),
        (Some("sf"), 3.0)
    );
    let (status, q) = ask(Some("sf"));
    assert_eq!((status, multiplier(&q)), (200, 3.0));
    for (asked, want_status, want_code) in [
        ("nogrid", 422, "region_mismatch"),
        ("pushed", 422, "region_mismatch"),
        ("zz", 404, "unknown_region"),
    ] {
        let (status, body) = ask(Some(asked));
        assert_eq!(
            (status, code(&body)),
            (want_status, want_code),
            "{asked}: {body}"
        );
    }
    // The driver's region is where the driver is.
    let r = api
        .http
        .get(api.w.url(&format!(
            "/api/v1/driver/heatmap?lat={}&lng={}&region=pushed",
            p.0, p.1
        )))
        .send()
        .expect("driver");
    assert_eq!(r.status().as_u16(), 422);
    let r = api
        .http
        .get(api.w.url("/api/v1/driver/heatmap?lat=0.5&lng=0.5"))
        .send()
        .expect("driver");
    let body: Value = r.json().expect("json");
    assert_eq!(code(&body), "outside_service_area");
}

fn made_up_regions_create_nothing(api: &Api<'_>) {
    let before = api.w.zone_objects();
    assert!(
        before > 0,
        "the scenarios before pushed grids to zone objects"
    );
    let (p, d) = (pickup("sf"), dropoff("sf"));
    for name in ["zz", "made-up-1", "made-up-2"] {
        let (status, body) = api.estimate(&json!({
            "pickup_location": {"latitude": p.0, "longitude": p.1},
            "dropoff_location": {"latitude": d.0, "longitude": d.1},
            "region": name,
        }));
        assert_eq!((status, code(&body)), (404, "unknown_region"), "{body}");
        let r = api
            .http
            .get(api.w.url(&format!(
                "/api/v1/pricing/heatmap?bounds={}&region={name}",
                bounds("heat")
            )))
            .send()
            .expect("heatmap");
        assert_eq!(r.status().as_u16(), 404, "heatmap of {name}");
        let ws = tungstenite::connect(
            api.w
                .ws_url(&format!("/api/v1/pricing/stream?region={name}")),
        );
        match ws {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 404),
            other => panic!("a stream of {name} was not refused: {other:?}"),
        }
        let mut g = grid("badpush", 1, 20, now_ms());
        g.region = name.into();
        let (status, body) = api.push(&g);
        assert_eq!((status, code(&body)), (404, "unknown_region"), "{body}");
    }
    assert_eq!(
        api.w.zone_objects(),
        before,
        "no zone object for a made-up name"
    );
    // The count does see a new object: a registered region's first push.
    assert_eq!(api.push(&grid("spare", 1, 12, now_ms())).0, 200);
    assert_eq!(api.w.zone_objects(), before + 1);
}

fn money_in_the_regions_currency(api: &Api<'_>) {
    // JPY has no minor unit: a 500-yen fare reads 500, not 5.00.
    api.w.kv_put(
        "CONFIG",
        "tariff:yen:standard",
        r#"{"currency":"JPY","base":500,"per_km":100,"per_minute":0,"booking_fee":0,"minimum_fare":0}"#,
    );
    let p = pickup("yen");
    let ask = json!({
        "pickup_location": {"latitude": p.0, "longitude": p.1},
        "dropoff_location": {"latitude": p.0 + 0.01, "longitude": p.1},
    });
    wait_for("the yen tariff", Duration::from_secs(30), || {
        api.estimate(&ask).0 == 200
    });
    let (_, q) = api.estimate(&ask);
    assert_eq!(q["currency"], "JPY");
    let fare = q["final_fare"].as_f64().expect("fare");
    assert!(fare >= 600.0 && fare.fract() == 0.0, "whole yen: {q}");
    let lines = q["fare_breakdown"]["explanation"].to_string();
    assert!(lines.contains("base 500 JPY"), "{lines}");
    // A tariff in another currency than the region's is refused where it
    // is read: no quote rather than a price in the wrong money.
    api.w.kv_put(
        "CONFIG",
        "tariff:nogrid:standard",
        r#"{"currency":"EUR","base":500,"per_km":100,"per_minute":0,"booking_fee":0,"minimum_fare":0}"#,
    );
    wait_for(
        "the wrong currency refused",
        Duration::from_secs(30),
        || {
            let (status, body) = api.quote_status("nogrid");
            status == 503 && code(&body) == "config_unavailable"
        },
    );
    let health: Value = api
        .http
        .get(api.w.url("/health"))
        .send()
        .expect("health")
        .json()
        .expect("json");
    let why = health["degraded"]["tariff:nogrid:standard"]
        .as_str()
        .unwrap_or("");
    assert!(why.contains("EUR"), "{health}");
    api.w.kv_delete("CONFIG", "tariff:nogrid:standard");
}

fn named_zones_in_every_view(api: &Api<'_>) {
    use equilibrium_tests::regions::{calm_place, ZONED_CALM, ZONED_HOT};
    let calm_cell = {
        let (lat, lng) = calm_place();
        Cell::at(LatLng::new(lat, lng).expect("ll"), DEFAULT_LEVEL)
    };
    let mut g = grid("zoned", 1, 40, now_ms());
    g.cells.push(GridCellWire {
        cell: calm_cell.token(),
        multiplier: Multiplier::from_tenths(30).expect("m"),
        supply: 1,
        demand: 9,
        trend: "increasing".into(),
        expected_demand: None,
        expected_supply: None,
    });
    assert_eq!(api.push(&g).0, 200);
    let q = api.quote("zoned");
    assert_eq!(q["zone_info"]["zone_name"], ZONED_HOT);
    assert_eq!(multiplier(&q), 2.0, "the zone's cap: {q}");
    let (lat, lng) = calm_place();
    let (status, calm) = api.estimate(&json!({
        "pickup_location": {"latitude": lat, "longitude": lng},
        "dropoff_location": {"latitude": lat + 0.01, "longitude": lng},
    }));
    assert_eq!(status, 200, "{calm}");
    assert_eq!(calm["zone_info"]["zone_name"], ZONED_CALM);
    assert_eq!(multiplier(&calm), 1.0, "an inactive zone never surges");
    let map: Value = api
        .http
        .get(api.w.url(&format!(
            "/api/v1/pricing/heatmap?bounds={}&zoom=14",
            bounds("zoned")
        )))
        .send()
        .expect("heatmap")
        .json()
        .expect("json");
    assert_eq!(map["region"], "zoned", "the view's region is where it is");
    let zone = |token: String| {
        map["zones"]
            .as_array()
            .and_then(|z| z.iter().find(|z| z["zone_id"] == token.as_str()))
            .cloned()
            .expect("the cell is on the map")
    };
    let hot = zone(pickup_cell("zoned").token());
    assert_eq!(
        (hot["zone_name"].as_str(), hot["surge_multiplier"].as_f64()),
        (Some(ZONED_HOT), Some(2.0))
    );
    let calm = zone(calm_cell.token());
    assert_eq!(
        (
            calm["zone_name"].as_str(),
            calm["surge_multiplier"].as_f64()
        ),
        (Some(ZONED_CALM), Some(1.0))
    );
    let p = pickup("zoned");
    let d: Value = api
        .http
        .get(api.w.url(&format!(
            "/api/v1/driver/heatmap?lat={}&lng={}&radius=20000",
            p.0, p.1
        )))
        .send()
        .expect("driver")
        .json()
        .expect("json");
    let names: Vec<(&str, f64)> = d["recommended_zones"]
        .as_array()
        .expect("zones")
        .iter()
        .map(|z| {
            (
                z["zone_name"].as_str().unwrap_or(""),
                z["surge_multiplier"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert!(
        names.contains(&(ZONED_HOT, 2.0)) && names.contains(&(ZONED_CALM, 1.0)),
        "{names:?}"
    );
    // The stream: the zones' caps on every cell.
    let (mut ws, _) = tungstenite::connect(api.w.ws_url("/api/v1/pricing/stream?region=zoned"))
        .expect("websocket connect");
    let first: Value = loop {
        if let tungstenite::Message::Text(t) = ws.read().expect("ws read") {
            break serde_json::from_str(&t).expect("json");
        }
    };
    let streamed: Vec<(String, f64)> = first["grid"]["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            (
                c["cell"].as_str().unwrap_or("").to_owned(),
                c["multiplier"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert!(
        streamed.contains(&(pickup_cell("zoned").token(), 2.0)),
        "{streamed:?}"
    );
    assert!(streamed.contains(&(calm_cell.token(), 1.0)), "{streamed:?}");
    let _ = ws.close(None);
}

/// The next grid message's generation on a socket.
fn next_generation(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
) -> u64 {
    loop {
        match ws.read().expect("ws read") {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                return v["grid"]["generation"].as_u64().expect("generation");
            }
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

fn a_full_zone_refuses_the_next_subscriber(api: &Api<'_>) {
    // This worker's zones take three subscribers (MAX_ZONE_SUBSCRIBERS).
    assert_eq!(api.push(&grid("spare", 10, 15, now_ms())).0, 200);
    let url = api.w.ws_url("/api/v1/pricing/stream?region=spare");
    let mut subscribers: Vec<_> = (0..3)
        .map(|_| tungstenite::connect(&url).expect("connect").0)
        .collect();
    for ws in &mut subscribers {
        assert_eq!(next_generation(ws), 10);
    }
    let (mut fourth, _) = tungstenite::connect(&url).expect("the upgrade itself succeeds");
    let closed = loop {
        match fourth.read() {
            Ok(tungstenite::Message::Close(c)) => break c,
            Ok(tungstenite::Message::Text(t)) => panic!("a full zone sent {t}"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    let frame = closed.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1013);
    let reason: Value = serde_json::from_str(&frame.reason).expect("a JSON reason");
    assert_eq!(reason, json!({"code": "zone_full", "limit": 3}));
    // The next push is answered, then every subscriber gets it.
    let (status, body) = api.push(&grid("spare", 11, 25, now_ms()));
    assert_eq!((status, body["status"].as_str()), (200, Some("applied")));
    for ws in &mut subscribers {
        assert_eq!(next_generation(ws), 11);
    }
    for mut ws in subscribers {
        let _ = ws.close(None);
        // Drain until the close completes, so the zone frees the slot.
        while ws.read().is_ok() {}
    }
}

fn bad_inputs_get_4xx_codes(api: &Api<'_>) {
    let url = api.w.url("/api/v1/pricing/estimate");
    let send = |body: &str, ct: &str| {
        let r = api
            .http
            .post(&url)
            .header("content-type", ct)
            .body(body.to_owned())
            .send()
            .expect("send");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let ok_body = |pick: Value, class: &str| {
        json!({
            "pickup_location": pick,
            "dropoff_location": {"latitude": 37.78, "longitude": -122.41},
            "vehicle_type": class,
        })
        .to_string()
    };
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        ("malformed JSON", "{\"pickup_location\":".into(), "application/json", 400, "invalid_json"),
        ("not an object", "[1,2,3]".into(), "application/json", 400, "invalid_field"),
        ("missing pickup", json!({"dropoff_location": {"latitude": 1, "longitude": 1}}).to_string(), "application/json", 400, "missing_field"),
        ("latitude out of range", ok_body(json!({"latitude": 91, "longitude": 0}), "standard"), "application/json", 400, "invalid_coordinates"),
        ("longitude out of range", ok_body(json!({"latitude": 0, "longitude": -181}), "standard"), "application/json", 400, "invalid_coordinates"),
        ("coordinate as text", ok_body(json!({"latitude": "north", "longitude": 0}), "standard"), "application/json", 400, "invalid_field"),
        ("unknown vehicle class", ok_body(json!({"latitude": 37.77, "longitude": -122.42}), "spaceship"), "application/json", 400, "unknown_vehicle_class"),
        ("trip across the world", ok_body(json!({"latitude": -33.86, "longitude": 151.2}), "standard"), "application/json", 400, "trip_too_long"),
        ("wrong content type", ok_body(json!({"latitude": 37.77, "longitude": -122.42}), "standard"), "text/plain", 415, "unsupported_media_type"),
        ("huge body", format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000)), "application/json", 413, "body_too_large"),
        ("user id too long", json!({"pickup_location": {"latitude": 37.77, "longitude": -122.42}, "dropoff_location": {"latitude": 37.78, "longitude": -122.41}, "user_id": "u".repeat(300)}).to_string(), "application/json", 400, "invalid_user_id"),
        ("bad region", json!({"pickup_location": {"latitude": 37.77, "longitude": -122.42}, "dropoff_location": {"latitude": 37.78, "longitude": -122.41}, "region": "no such|region"}).to_string(), "application/json", 400, "invalid_region"),
        ("another region", json!({"pickup_location": {"latitude": 37.77, "longitude": -122.42}, "dropoff_location": {"latitude": 37.78, "longitude": -122.41}, "region": "pushed"}).to_string(), "application/json", 422, "region_mismatch"),
        ("a made-up region", json!({"pickup_location": {"latitude": 37.77, "longitude": -122.42}, "dropoff_location": {"latitude": 37.78, "longitude": -122.41}, "region": "zz"}).to_string(), "application/json", 404, "unknown_region"),
        ("outside every region", json!({"pickup_location": {"latitude": 0.5, "longitude": 0.5}, "dropoff_location": {"latitude": 0.51, "longitude": 0.5}}).to_string(), "application/json", 422, "outside_service_area"),
    ];
    for (what, body, ct, status, want) in cases {
        let (got, resp) = send(&body, ct);
        assert_eq!((got, code(&resp)), (status, want), "{what}: {resp}");
    }
    let get = |path: &str| {
        let r = api.http.get(api.w.url(path)).send().expect("get");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    for (path, status, want) in [
        ("/api/v1/pricing/heatmap", 400, "missing_parameter"),
        (
            "/api/v1/pricing/heatmap?bounds=1,2,3",
            400,
            "invalid_bounds",
        ),
        (
            "/api/v1/pricing/heatmap?bounds=38,-122,37,-121",
            400,
            "invalid_bounds",
        ),
        (
            "/api/v1/pricing/heatmap?bounds=37,-122,38,-121&zoom=99",
            400,
            "invalid_zoom",
        ),
        (
            "/api/v1/pricing/heatmap?bounds=37,-122,38,-121&zoom=abc",
            400,
            "invalid_zoom",
        ),
        ("/api/v1/driver/heatmap?lat=37.7", 400, "missing_parameter"),
        (
            "/api/v1/driver/heatmap?lat=97&lng=1",
            400,
            "invalid_coordinates",
        ),
        (
            "/api/v1/driver/heatmap?lat=37&lng=-122&radius=-5",
            400,
            "invalid_radius",
        ),
        (
            "/api/v1/driver/heatmap?lat=37&lng=-122&radius=1e9",
            400,
            "invalid_radius",
        ),
        (
            "/api/v1/driver/heatmap?lat=37&lng=-122&vehicle_type=boat",
            400,
            "unknown_vehicle_class",
        ),
        ("/api/v1/pricing/estimate", 405, "method_not_allowed"),
        ("/no/such/thing", 404, "not_found"),
    ] {
        let (got, resp) = get(path);
        assert_eq!((got, code(&resp)), (status, want), "{path}: {resp}");
    }
    // A method workers-rs does not know is refused, not served as a GET.
    let q = api
        .http
        .request(
            reqwest::Method::from_bytes(b"QUERY").expect("method"),
            api.w.url("/health"),
        )
        .send()
        .expect("query");
    assert_eq!(q.status().as_u16(), 405);
    assert_eq!(
        q.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
    let post_pickup = |path: &str| {
        api.http
            .post(api.w.url(path))
            .json(&json!({"pickup_location": {"latitude": 1.0, "longitude": 2.0}}))
            .send()
            .expect(path)
    };
    // The bench build's probes (feature `probes`) are not in this worker.
    for probe in ["/__probe/price?n=1", "/__upto/answer"] {
        assert_eq!(post_pickup(probe).status().as_u16(), 404, "{probe}");
    }
    // POST /health reads a JSON body and says how long it was (the
    // benchmark's body-reading baseline), with the estimate's body rules.
    let r = post_pickup("/health");
    assert_eq!(r.status().as_u16(), 200);
    let b: Value = r.json().expect("json");
    assert_eq!(
        (b["status"].as_str(), b["bytes"].as_u64()),
        (Some("ok"), Some(52))
    );
    let r = api
        .http
        .post(api.w.url("/health"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .expect("post health");
    assert_eq!(r.status().as_u16(), 415);
    // Admin push: bad bodies with a valid token.
    let push = |region: &str, body: String| {
        let r = api
            .http
            .put(api.w.url(&format!("/admin/v1/grids/{region}")))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("push");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let mut bad_cell = grid("badpush", 1, 20, now_ms());
    bad_cell.cells[0].cell = "zzzz".into();
    let mut bad_mult = serde_json::to_value(grid("badpush", 1, 20, now_ms())).expect("v");
    bad_mult["cells"][0]["multiplier"] = json!(0.2);
    for (what, region, body, want) in [
        ("bad json", "badpush", "{".to_owned(), "invalid_json"),
        (
            "bad cell",
            "badpush",
            serde_json::to_string(&bad_cell).expect("j"),
            "invalid_grid",
        ),
        (
            "multiplier below 1",
            "badpush",
            bad_mult.to_string(),
            "invalid_field",
        ),
        (
            "region mismatch",
            "pushed",
            serde_json::to_string(&grid("badpush", 1, 20, 1)).expect("j"),
            "region_mismatch",
        ),
        (
            "generation zero",
            "badpush",
            serde_json::to_string(&grid("badpush", 0, 20, 1)).expect("j"),
            "invalid_grid",
        ),
    ] {
        let (got, resp) = push(region, body);
        assert_eq!((got, code(&resp)), (400, want), "{what}: {resp}");
    }
}

/// A body of `total` spaces with no declared length (sent chunked),
/// counting what the client has handed to the connection.
struct Unending {
    left: u64,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::io::Read for Unending {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].fill(b' ');
        self.left -= n as u64;
        self.sent
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

fn a_chunked_body_is_capped_while_it_streams(api: &Api<'_>) {
    let total: u64 = 256 << 20;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let body = reqwest::blocking::Body::new(Unending {
        left: total,
        sent: sent.clone(),
    });
    let r = api
        .http
        .post(api.w.url("/api/v1/pricing/estimate"))
        .header("content-type", "application/json")
        .body(body)
        .send();
    // The worker answers 413 once the cap (16 KB) is passed and reads no
    // more: the client either gets that answer or sees the upload cut off,
    // having handed over far less than the whole body.
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
        let v: Value = r.json().expect("json");
        assert_eq!(code(&v), "body_too_large");
    }
    let handed = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        handed < total / 4,
        "the client sent {handed} of {total} bytes before the worker refused"
    );
}

fn rate_limit_per_user(api: &Api<'_>) {
    // USER_LIMITER: 60 per 10 s (wrangler.toml), per verified rider.
    let (p, d) = (pickup("sf"), dropoff("sf"));
    let body = json!({
        "pickup_location": {"latitude": p.0, "longitude": p.1},
        "dropoff_location": {"latitude": d.0, "longitude": d.1},
    });
    let mut limited = None;
    let token = rider_token("rider-who-refreshes-a-lot");
    for _ in 0..100 {
        let (status, resp) = api.estimate_as(&body, &token);
        if status == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(status, 200, "{resp}");
    }
    let resp = limited.expect("the user limit never triggered in 100 requests");
    assert_eq!(code(&resp), "rate_limited");
    // Other riders are unaffected, and so is an anonymous client that
    // names the limited rider: a stated id spends nobody's budget.
    let (status, _) = api.estimate_as(&body, &rider_token("someone-else"));
    assert_eq!(status, 200);
    let mut claimed = body.clone();
    claimed["user_id"] = "rider-who-refreshes-a-lot".into();
    assert_eq!(api.estimate(&claimed).0, 200);
}

/// Riders' tokens: each algorithm the provider signs with verifies; a
/// forged, expired, wrong-audience, wrong-issuer, unsigned or garbled
/// token is 401 `invalid_token` with its reason; a broken identity setting
/// keeps the last good one (reported degraded) instead of letting tokens
/// through unchecked.
fn riders_are_who_their_tokens_say(api: &Api<'_>) {
    use sim::identity::{Alg, Provider, AUDIENCE, ISSUER};
    let (p, d) = (pickup("sf"), dropoff("sf"));
    let body = json!({
        "pickup_location": {"latitude": p.0, "longitude": p.1},
        "dropoff_location": {"latitude": d.0, "longitude": d.1},
    });
    let ours = provider();
    let now = sim::identity::now_secs();
    for alg in [Alg::Es256, Alg::Rs256, Alg::Hs256] {
        let (status, q) = api.estimate_as(&body, &ours.token(alg, "rider-tok", now));
        assert_eq!(status, 200, "{alg:?}: {q}");
    }
    let claims = |k: &str, v: Value| {
        let mut c = json!({"sub": "rider-tok", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600});
        c[k] = v;
        c
    };
    let stranger = Provider::new().expect("another provider");
    let refused = [
        (
            "forged",
            stranger.token(Alg::Es256, "rider-tok", now),
            "signature",
        ),
        (
            "forged hs256",
            stranger.token(Alg::Hs256, "rider-tok", now),
            "signature",
        ),
        (
            "expired",
            ours.sign(Alg::Es256, &claims("exp", json!(now - 3600))),
            "expired",
        ),
        (
            "wrong audience",
            ours.sign(Alg::Rs256, &claims("aud", json!("another-app"))),
            "audience",
        ),
        (
            "wrong issuer",
            ours.sign(Alg::Es256, &claims("iss", json!("https://evil.example/"))),
            "issuer",
        ),
        (
            "not yet valid",
            ours.sign(Alg::Hs256, &claims("nbf", json!(now + 3600))),
            "not_yet_valid",
        ),
        ("garbled", "not.a.jwt".to_owned(), "malformed"),
    ];
    for (what, token, reason) in refused {
        let (status, resp) = api.estimate_as(&body, &token);
        assert_eq!(
            (status, code(&resp)),
            (401, "invalid_token"),
            "{what}: {resp}"
        );
        let message = resp["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&format!("({reason})")),
            "{what}: {message}"
        );
    }
    // `alg: none`, unsigned.
    use base64::Engine as _;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none"})),
        b64(claims("sub", json!("x")))
    );
    assert_eq!(api.estimate_as(&body, &unsigned).0, 401);
    // The heatmaps check the token too.
    let r = api
        .http
        .get(api.w.url(&format!(
            "/api/v1/driver/heatmap?lat={}&lng={}&radius=2000",
            p.0, p.1
        )))
        .bearer_auth(stranger.token(Alg::Es256, "rider-tok", now))
        .send()
        .expect("heatmap");
    assert_eq!(r.status().as_u16(), 401);

    // A broken identity setting: the isolate keeps its last good one,
    // says so on /health, and never lets a forged token through.
    // A request with a token reads the setting; /health then says whether
    // it is degraded.
    let identity_degraded = || {
        let _ = api.estimate_as(&body, &ours.token(Alg::Es256, "rider-tok", now));
        let h: Value = api
            .http
            .get(api.w.url("/health"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        h["degraded"].get("identity").is_some()
    };
    api.w.kv_put("CONFIG", "identity", r#"{"issuer": "x"}"#);
    wait_for(
        "the bad identity setting to be seen",
        Duration::from_secs(60),
        identity_degraded,
    );
    assert_eq!(
        api.estimate_as(&body, &ours.token(Alg::Es256, "rider-tok", now))
            .0,
        200
    );
    let (status, resp) = api.estimate_as(&body, &stranger.token(Alg::Es256, "rider-tok", now));
    assert_eq!((status, code(&resp)), (401, "invalid_token"), "{resp}");
    api.w
        .kv_put("CONFIG", "identity", &provider().identity_json());
    wait_for(
        "the identity setting to be restored",
        Duration::from_secs(60),
        || !identity_degraded(),
    );
}
