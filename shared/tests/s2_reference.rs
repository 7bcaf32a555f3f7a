//! Differential test: lat/lng → S2 cell against an independent reference.
//!
//! `fixtures/s2_cells.csv` was produced by `scripts/gen_s2_fixture.py` with
//! the Python `s2sphere` package (see the script for the version and the
//! points: uniform, poles, antimeridian, cube-face edges, cell vertices
//! nudged by 1e-12°, city centres). This test needs no Python.
//!
//! It runs natively and, under `wasm-bindgen-test`, in wasm32: the edge and
//! the origin must agree on every cell.

use shared::geo::{Cell, LatLng, Level};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const FIXTURE: &str = include_str!("fixtures/s2_cells.csv");

#[test]
fn cells_match_the_s2sphere_reference() {
    let mut rows = 0;
    let mut mismatches = Vec::new();
    for (n, line) in FIXTURE.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "line {}: {line}", n + 1);
        let lat: f64 = f[0].parse().expect("lat");
        let lng: f64 = f[1].parse().expect("lng");
        let level = Level::new(f[2].parse().expect("level")).expect("level range");
        let want_id: u64 = f[3].parse().expect("id");
        let cell = Cell::at(LatLng::new(lat, lng).expect("fixture point"), level);
        if cell.id() != want_id || cell.token() != f[4] {
            mismatches.push(format!(
                "line {}: ({lat}, {lng}) L{}: got {} want {}",
                n + 1,
                level.get(),
                cell.token(),
                f[4]
            ));
        }
        // Tokens parse back to the same cell.
        assert_eq!(Cell::from_token(f[4]).map(Cell::id), Ok(want_id));
        rows += 1;
    }
    assert!(rows >= 10_000, "fixture has only {rows} rows");
    assert!(
        mismatches.is_empty(),
        "{} of {rows} points differ from s2sphere, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}
