//! Fares and quote signatures must be identical natively and in wasm32.
//!
//! 600 deterministic cases (pickup near a world city, drop-off within
//! ~20 km, a class, a multiplier) are priced and signed; the results must
//! equal `fixtures/fares.csv`, committed from a native run. The same test
//! runs under `wasm-bindgen-test` (see `scripts/test.sh`), so a difference
//! between the edge (wasm) and the origin (native) fails one of the two.
//!
//! Regenerate after an intended change with
//! `EQ_BLESS=1 cargo test -p equilibrium-shared --test fare_fixture`.

use shared::fare::{price, RouteModel, Tariff, VehicleClass};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::quote::{Ident, Keyring, QuoteClaims};
use shared::surge::Multiplier;
use shared::time::{Millis, Timestamp};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const FIXTURE: &str = include_str!("fixtures/fares.csv");
const CASES: u64 = 600;
const CITIES: [(f64, f64); 8] = [
    (37.7749, -122.4194),
    (40.7128, -74.0060),
    (51.5074, -0.1278),
    (35.6762, 139.6503),
    (-33.8688, 151.2093),
    (-23.5505, -46.6333),
    (64.1466, -21.9426),
    (-17.8, 179.95),
];

/// splitmix64: a tiny deterministic generator, identical on every target.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

fn case(i: u64) -> String {
    let (clat, clng) = CITIES[(mix(i * 7) % CITIES.len() as u64) as usize];
    let jitter = |k: u64, span: f64| (unit(i * 7 + k) - 0.5) * span;
    let wrap = |lng: f64| {
        if lng > 180.0 {
            lng - 360.0
        } else if lng < -180.0 {
            lng + 360.0
        } else {
            lng
        }
    };
    let pickup = LatLng::new(clat + jitter(1, 0.1), wrap(clng + jitter(2, 0.1))).expect("pickup");
    let dropoff = LatLng::new(
        pickup.lat() + jitter(3, 0.3),
        wrap(pickup.lng() + jitter(4, 0.3)),
    )
    .expect("dropoff");
    let class = VehicleClass::ALL[(mix(i * 7 + 5) % 4) as usize];
    let surge = Multiplier::from_tenths(10 + (mix(i * 7 + 6) % 41) as u16).expect("surge");

    let trip = RouteModel::default()
        .estimate(pickup, dropoff)
        .expect("trip");
    let fare = price(&Tariff::default_for(class), trip, surge);
    let issued = Timestamp(1_760_000_000_000 + i * 1_000);
    let claims = QuoteClaims {
        quote_id: Ident::new(&format!("q{i:06}")).expect("id"),
        region: Ident::new("fixture").expect("region"),
        cell: Cell::at(pickup, DEFAULT_LEVEL),
        class,
        surge,
        base_fare: fare.subtotal + fare.booking_fee,
        final_fare: fare.total,
        currency: fare.currency,
        distance_m: trip.distance_m,
        duration_s: trip.duration_s,
        grid_generation: i,
        issued_at: issued,
        expires_at: issued + Millis::from_secs(120),
        source: None,
        arm: None,
        terms: None,
    };
    let keys = Keyring::parse("fx:fixture-signing-key-0123456789").expect("keys");
    format!(
        "{i},{},{},{},{},{},{},{}",
        trip.distance_m,
        trip.duration_s,
        fare.subtotal,
        fare.surge_amount,
        fare.minimum_fare_adjustment,
        fare.total,
        keys.sign(&claims)
    )
}

#[test]
fn fares_and_quote_tokens_match_the_fixture() {
    let got: Vec<String> = (0..CASES).map(case).collect();
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var_os("EQ_BLESS").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fares.csv");
        let mut text = String::from(
            "case,distance_m,duration_s,subtotal,surge_amount,minimum_adjustment,total,token\n",
        );
        for line in &got {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(path, text).expect("write fixture");
        return;
    }
    let want: Vec<&str> = FIXTURE.lines().skip(1).collect();
    assert_eq!(want.len(), got.len(), "fixture rows");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}
