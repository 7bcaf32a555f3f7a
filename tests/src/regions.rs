//! The region registry the test workers run with: the shipped one's `sf`,
//! and a small square of its own for each scenario's region, far from any
//! other, so that each scenario prices in its own region because its
//! pickups are there (a request no longer names its region: the pickup
//! does). [`crate::Worker`] puts it in the worker's KV before it starts.

use serde_json::{json, Value};

/// The scenarios' regions, each a square of [`SIDE`] degrees. All charge
/// in USD but `admin` (EUR) and `yen` (JPY); `zoned` has named zones
/// ([`ZONED_HOT`], [`ZONED_CALM`]).
pub const TEST_REGIONS: [&str; 15] = [
    "authz", "pushed", "order", "confirm", "stale", "live", "heat", "admin", "badpush", "desk",
    "nogrid", "yen", "zoned", "spare", "euro",
];

/// In `zoned`: a named zone capped at 2.0 around the region's centre.
pub const ZONED_HOT: &str = "Hot Spot";
/// In `zoned`: an inactive zone (never surges), south-west of the centre.
pub const ZONED_CALM: &str = "Calm Park";

/// A test region's side, in degrees (about 22 km).
pub const SIDE: f64 = 0.2;

/// The south-west corner of a test region's square.
fn corner(region: &str) -> (f64, f64) {
    let i = TEST_REGIONS
        .iter()
        .position(|r| *r == region)
        .unwrap_or_else(|| panic!("{region} is not a test region"));
    (10.0 + 0.5 * i as f64, 20.0)
}

/// Test regions where a scenario needs a real city's coordinates:
/// `[south, west, north, east]`.
pub const CITIES: [(&str, [f64; 4]); 1] = [("nyc", [40.5, -74.3, 40.95, -73.7])];

/// The centre of a region the test workers know: [`crate::SF`] for `sf`,
/// lower Manhattan for `nyc`, the middle of its square for a test region.
pub fn place(region: &str) -> (f64, f64) {
    match region {
        "sf" => return crate::SF,
        "nyc" => return (40.7128, -74.006),
        _ => {}
    }
    let (s, w) = corner(region);
    (s + SIDE / 2.0, w + SIDE / 2.0)
}

/// A point in `zoned`'s inactive zone.
pub fn calm_place() -> (f64, f64) {
    let (s, w) = corner("zoned");
    (s + 0.03, w + 0.03)
}

/// `bounds=south,west,north,east` of a test region's square.
pub fn bounds(region: &str) -> String {
    let (s, w) = corner(region);
    format!("{s},{w},{},{}", s + SIDE, w + SIDE)
}

fn square(south: f64, west: f64, side: f64) -> Value {
    let (n, e) = (south + side, west + side);
    json!({"type": "Polygon", "coordinates": [[[west, south], [e, south], [e, n], [west, n], [west, south]]]})
}

/// The registry: the shipped one with the test regions after its own.
pub fn registry_json() -> String {
    let shipped = std::fs::read_to_string(crate::root().join("config/regions.json"))
        .expect("config/regions.json");
    let mut registry: Value = serde_json::from_str(&shipped).expect("the shipped registry");
    let regions = registry["regions"]
        .as_array_mut()
        .expect("the shipped registry's regions");
    for r in TEST_REGIONS {
        let (s, w) = corner(r);
        let currency = match r {
            "admin" | "euro" => "EUR",
            "yen" => "JPY",
            _ => "USD",
        };
        let mut region = json!({"id": r, "currency": currency, "boundary": square(s, w, SIDE)});
        if r == "zoned" {
            let (lat, lng) = place(r);
            region["zones"] = json!([
                {"id": "hot", "name": ZONED_HOT, "max_multiplier": 2.0,
                 "boundary": square(lat - 0.02, lng - 0.02, 0.04)},
                {"id": "calm", "name": ZONED_CALM, "active": false,
                 "boundary": square(s + 0.01, w + 0.01, 0.04)},
            ]);
        }
        regions.push(region);
    }
    for (id, [s, w, n, e]) in CITIES {
        let ring = json!([[[w, s], [e, s], [e, n], [w, n], [w, s]]]);
        regions.push(
            json!({"id": id, "currency": "USD", "utc_offset_minutes": -300,
            "boundary": {"type": "Polygon", "coordinates": ring}}),
        );
    }
    registry.to_string()
}
