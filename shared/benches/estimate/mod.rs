//! The estimate's work after its body is read, as the edge does it, shared
//! by the native bench (`core.rs`, Criterion) and the wasm32 one
//! (`wasm.rs`, wasm-bindgen-test's Criterion under node): the same fixture
//! and the same steps, so the two numbers compare.

use shared::api::EstimateRequest;
use shared::desk::{Desk, DeskInputs, QuoteAsk};
use shared::fare::{RouteModel, Tariff, Terms, VehicleClass};
use shared::geo::{BoundingBox, Cell, LatLng, DEFAULT_LEVEL};
use shared::grid::{GridCell, Staleness, SurgeGrid};
use shared::quote::{Ident, Keyring};
use shared::regions::Registry;
use shared::surge::{Caps, Multiplier, Trend};
use shared::time::{Millis, Timestamp};

/// The edge benchmark's exact request (`scripts/edge-load.sh`).
pub const BODY: &[u8] = br#"{"pickup_location":{"latitude":37.7749,"longitude":-122.4194},"dropoff_location":{"latitude":37.7849,"longitude":-122.4094},"vehicle_type":"standard"}"#;

/// 10,000 level-13 cells around the Bay Area, the benches' busy region.
pub fn ten_thousand_cells() -> Vec<Cell> {
    let sw = LatLng::new(37.2, -122.9).expect("sw");
    let ne = LatLng::new(38.2, -121.75).expect("ne");
    let mut cells = BoundingBox::new(sw, ne)
        .expect("box")
        .covering(DEFAULT_LEVEL, 20_000)
        .expect("covering");
    cells.truncate(10_000);
    cells
}

/// The registry an operator in a hundred cities would put: the shipped
/// one (sf with its named zones) and 99 more cities, each a 64-sided
/// polygon about 40 km across, a degree and more apart.
pub fn hundred_regions_json() -> String {
    let shipped = include_str!("../../../config/regions.json");
    let mut registry: serde_json::Value = serde_json::from_str(shipped).expect("shipped");
    let regions = registry["regions"].as_array_mut().expect("regions");
    for i in 0..99 {
        let (lat, lng) = (
            -40.0 + f64::from(i / 10) * 9.0,
            -170.0 + f64::from(i % 10) * 30.0,
        );
        let mut ring: Vec<[f64; 2]> = (0..64)
            .map(|k| {
                let a = std::f64::consts::TAU * f64::from(k) / 64.0;
                [lng + 0.2 * a.cos(), lat + 0.18 * a.sin()]
            })
            .collect();
        ring.push(ring[0]);
        regions.push(serde_json::json!({
            "id": format!("city-{i}"), "currency": "EUR",
            "boundary": {"type": "Polygon", "coordinates": [ring]},
        }));
    }
    registry.to_string()
}

/// What an isolate holds when an estimate arrives: a 10,000-cell grid
/// covering the pickup, the region registry, the signing keys, the tariff
/// and the caps.
pub struct EstimateWork {
    registry: Registry,
    region: Ident,
    grid: SurgeGrid,
    keys: Keyring,
    terms: Terms,
    inputs: DeskInputs,
    quote_id: Ident,
}

impl EstimateWork {
    /// The fixture.
    pub fn new() -> Self {
        let region = Ident::new("sf").expect("region");
        let now = 1_800_000_000_000u64;
        let mut cells = ten_thousand_cells();
        cells.push(Cell::at(
            LatLng::new(37.7749, -122.4194).expect("pickup"),
            DEFAULT_LEVEL,
        ));
        cells.sort();
        cells.dedup();
        let cells = cells
            .iter()
            .enumerate()
            .map(|(i, cell)| GridCell {
                cell: *cell,
                multiplier: Multiplier::from_tenths(10 + (i % 20) as u16).expect("m"),
                supply: (i % 20) as u32,
                demand: (i % 40) as u32,
                trend: Trend::Stable,
                forecast: None,
            })
            .collect();
        let grid = SurgeGrid::new(
            region.clone(),
            DEFAULT_LEVEL,
            7,
            Timestamp(now - 2_000),
            cells,
        )
        .expect("grid");
        Self {
            registry: shared::api::admin::parse_registry(&hundred_regions_json())
                .expect("registry"),
            region,
            grid,
            keys: Keyring::parse("k1:benchmark-secret-0123456789").expect("keys"),
            terms: Terms::with_defaults(Tariff::default_for(VehicleClass::Standard)),
            inputs: DeskInputs {
                caps: Caps::DEFAULT,
                staleness: Staleness::default(),
                now: Timestamp(now),
                from_cache: true,
                emergency: false,
                degraded: false,
            },
            quote_id: Ident::new("q_0123456789abcdef0123456789abcdef").expect("id"),
        }
    }

    /// One estimate after its body: parse and validate the request, find
    /// the pickup's region, price it at the pickup, sign it, and write the
    /// quote event's and the answer's JSON.
    pub fn run(&self, body: &[u8]) -> (String, Vec<u8>) {
        let r: EstimateRequest = serde_json::from_slice(body).expect("request");
        let v = r.validate(&RouteModel::default()).expect("valid");
        let geo = self
            .registry
            .resolve(v.pickup, v.region.as_ref().map(Ident::as_str))
            .expect("the pickup is in sf");
        debug_assert_eq!(geo.id(), &self.region);
        let quote = Desk::new(Some(&self.grid), self.inputs)
            .with_region(Some(geo))
            .quote(QuoteAsk {
                region: geo.id(),
                class: v.class,
                pickup: v.pickup,
                trip: v.trip,
                terms: &self.terms,
                quote_id: self.quote_id.clone(),
                valid_for: Millis::from_secs(120),
            });
        let token = self.keys.sign(&quote.claims);
        let event = serde_json::to_string(&shared::api::EdgeEvent::quote(
            &quote.claims,
            v.pickup,
            shared::events::client_key(&self.keys, "203.0.113.7", quote.claims.issued_at),
        ))
        .expect("event");
        let answer =
            serde_json::to_vec(&shared::api::EstimateResponse::new(&quote, token)).expect("answer");
        (event, answer)
    }
}

/// What the edge's `POST /health` baseline does after reading the same
/// body: a one-line answer.
pub fn baseline(body: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"status": "ok", "bytes": body.len()})).expect("answer")
}
