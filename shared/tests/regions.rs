//! The region index against the reference: for random polygons (with
//! holes, overlapping one another) and random points — many of them a
//! hair from an edge — the index's answer is the first shape, in order,
//! whose even-odd test holds the point.

#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use shared::geo::LatLng;
use shared::regions::{Shape, ShapeIndex};

/// A star-shaped ring around a centre: `radii` at even angles (so it never
/// crosses itself), in degrees of latitude and longitude.
fn star(lat: f64, lng: f64, radii: &[f64]) -> Vec<[f64; 2]> {
    let n = radii.len();
    let mut ring: Vec<[f64; 2]> = radii
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let a = std::f64::consts::TAU * i as f64 / n as f64;
            [lng + r * a.cos(), lat + r * a.sin()]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn shape_strategy() -> impl Strategy<Value = Shape> {
    (
        37.0..38.0f64,
        -123.0..-122.0f64,
        prop::collection::vec(0.02..0.3f64, 3..24),
        any::<bool>(),
    )
        .prop_map(|(lat, lng, radii, hole)| {
            let mut rings = vec![star(lat, lng, &radii)];
            if hole {
                // Inside the smallest radius, so inside the outer ring.
                let r = radii.iter().cloned().fold(f64::INFINITY, f64::min) * 0.5;
                rings.push(star(lat, lng, &[r, r, r, r, r]));
            }
            Shape::new(rings).expect("a star-shaped ring is a valid shape")
        })
}

/// A point: anywhere around the shapes, or near a position of one of them.
fn point_strategy() -> impl Strategy<Value = (f64, f64, usize, usize, f64, f64)> {
    (
        36.6..38.4f64,
        -123.4..-121.6f64,
        any::<usize>(),
        any::<usize>(),
        -1e-6..1e-6f64,
        -1e-6..1e-6f64,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_index_agrees_with_the_even_odd_test(
        shapes in prop::collection::vec(shape_strategy(), 1..5),
        points in prop::collection::vec(point_strategy(), 64),
    ) {
        let index = ShapeIndex::build(&shapes);
        for (lat, lng, s, v, dlat, dlng) in points {
            // A third of the points anywhere, a third a micro-degree from
            // a vertex of some shape, a third from the middle of an edge.
            let shape = &shapes[s % shapes.len()];
            let all: Vec<(f64, f64)> = shape.positions().collect();
            let (x, y) = all[v % all.len()];
            let (x2, y2) = all[(v + 1) % all.len()];
            let (lat, lng) = match v % 3 {
                0 => (lat, lng),
                1 => (y + dlat, x + dlng),
                _ => ((y + y2) / 2.0 + dlat, (x + x2) / 2.0 + dlng),
            };
            let p = LatLng::new(lat, lng).expect("in range");
            let reference = shapes.iter().position(|s| s.contains(p));
            prop_assert_eq!(index.locate(&shapes, p), reference, "{:?}", p);
        }
    }
}

/// The registry shipped with the worker and the demo prices SF pickups in
/// sf, with its named zones.
#[test]
fn the_shipped_registry_holds_the_demo_city() {
    let text = include_str!("../../config/regions.json");
    let registry = shared::api::admin::parse_registry(text).expect("the shipped registry is valid");
    let sf = LatLng::new(37.7749, -122.4194).expect("ll");
    let region = registry.resolve(sf, None).expect("sf is served");
    assert_eq!(region.id().as_str(), "sf");
    assert_eq!(region.currency().as_str(), "USD");
    assert!(
        region.zone_at(sf).is_none(),
        "the tests' pickup is in no named zone"
    );
    let fidi = LatLng::new(37.795, -122.40).expect("ll");
    assert_eq!(
        region.zone_at(fidi).map(|z| z.name()),
        Some("Financial District")
    );
}
