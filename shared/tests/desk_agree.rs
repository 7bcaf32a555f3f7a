//! The pricing desk's one-price rule on both targets: for 400 generated
//! regions (grids of up to 40 cells, any caps, an emergency cap or none,
//! any grid age), the price a quote gets at each cell's centre equals what
//! the heatmap and the stream show for that cell. Runs natively and under
//! `wasm-bindgen-test` in wasm32 (see `scripts/test.sh`), the target the
//! worker runs the desk on.

use std::collections::HashMap;

use shared::desk::{Desk, DeskInputs, DriverAsk, QuoteAsk, Source};
use shared::fare::{RouteModel, Tariff, Trip, VehicleClass};
use shared::geo::{BoundingBox, Cell, LatLng, DEFAULT_LEVEL};
use shared::grid::{GridCell, Staleness, SurgeGrid};
use shared::quote::Ident;
use shared::surge::{Caps, Multiplier, Trend};
use shared::time::{Millis, Timestamp};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// splitmix64: a tiny deterministic generator, identical on every target.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn tenths(seed: u64, lo: u16, hi: u16) -> Multiplier {
    let span = u64::from(hi - lo + 1);
    Multiplier::from_tenths(lo + (mix(seed) % span) as u16).expect("tenths")
}

#[test]
fn every_view_shows_what_a_quote_charges() {
    let t0 = 1_800_000_000_000u64;
    let mut degraded = 0;
    let mut capped = 0;
    for case in 0..400u64 {
        let s = case * 1_000;
        let n = 1 + mix(s) % 40;
        let mut cells: Vec<GridCell> = Vec::new();
        for i in 0..n {
            let lat = 37.6 + (mix(s + i * 7 + 1) % 2_000) as f64 * 1e-4;
            let lng = -122.5 + (mix(s + i * 7 + 2) % 2_000) as f64 * 1e-4;
            let cell = Cell::at(LatLng::new(lat, lng).expect("ll"), DEFAULT_LEVEL);
            if cells.iter().any(|c| c.cell == cell) {
                continue;
            }
            cells.push(GridCell {
                cell,
                multiplier: tenths(s + i * 7 + 3, 10, 50),
                supply: (mix(s + i * 7 + 4) % 9) as u32,
                demand: (mix(s + i * 7 + 5) % 30) as u32,
                trend: Trend::Stable,
                forecast: None,
            });
        }
        let computed = t0 + mix(s + 900) % 1_000_000;
        let grid = SurgeGrid::new(
            Ident::new("sf").expect("id"),
            DEFAULT_LEVEL,
            case + 1,
            Timestamp(computed),
            cells,
        )
        .expect("grid")
        // Some grids carry a lawful emergency cap.
        .with_lawful_cap(
            mix(s + 908)
                .is_multiple_of(2)
                .then(|| tenths(s + 909, 10, 40)),
        );
        let lo = tenths(s + 901, 10, 20);
        let hi = tenths(s + 902, lo.tenths(), 50);
        let emergency = mix(s + 903)
            .is_multiple_of(3)
            .then(|| tenths(s + 904, 10, 40));
        let caps = Caps::new(lo, hi).expect("caps").effective(emergency);
        let declared = mix(s + 907).is_multiple_of(4);
        let inputs = DeskInputs {
            caps,
            staleness: Staleness {
                fresh_for: Millis::from_secs(30),
                decay_over: Millis::from_secs(300),
            },
            now: Timestamp(computed + mix(s + 905) % 400_000),
            from_cache: mix(s + 906).is_multiple_of(2),
            emergency: declared,
            degraded: false,
        };
        // The caps in force: a declared emergency narrows them to the
        // grid's lawful cap (1.0 without one).
        let caps = if declared {
            shared::emergency::emergency_caps(caps, grid.lawful_cap())
        } else {
            caps
        };
        let desk = Desk::new(Some(&grid), inputs);
        let streamed = desk.effective_grid().expect("stream grid");
        assert_eq!(streamed.cells(), desk.cells().as_slice(), "case {case}");
        // The whole answers agree too: the quote, the map's zone and the
        // driver's recommendation of every cell show one multiplier.
        let region = grid.region().clone();
        let tariff = Tariff::default_for(VehicleClass::Standard);
        let world = BoundingBox::new(
            LatLng::new(-80.0, -179.0).expect("sw"),
            LatLng::new(80.0, 179.0).expect("ne"),
        )
        .expect("bounds");
        let map = shared::api::HeatmapResponse::from(
            &desk.rider_heatmap(&region, &world, 22).expect("map"),
        );
        assert_eq!(map.zones.len(), desk.cells().len(), "case {case}");
        let zones: HashMap<&str, _> = map.zones.iter().map(|z| (z.zone_id.as_str(), z)).collect();
        for c in desk.cells() {
            let quote = desk.quote(QuoteAsk {
                region: &region,
                class: VehicleClass::Standard,
                pickup: c.cell.center(),
                trip: Trip {
                    distance_m: 5_000,
                    duration_s: 900,
                },
                terms: &shared::fare::Terms::with_defaults(tariff),
                quote_id: Ident::new("q_1").expect("id"),
                valid_for: Millis::from_secs(120),
            });
            let answer = shared::api::EstimateResponse::new(&quote, "token".into());
            let zone = zones[answer.zone_info.zone_id.as_str()];
            assert_eq!(
                zone.surge_multiplier, answer.surge_multiplier,
                "case {case}"
            );
            assert_eq!(zone.demand_level, answer.zone_info.current_demand_level);
            assert_eq!(answer.degraded, answer.surge_source.source.degraded());
            let driver = shared::api::DriverHeatmapResponse::from(&desk.driver_zones(DriverAsk {
                region: &region,
                here: c.cell.center(),
                radius_m: 1.0,
                tariff: &tariff,
                route: &RouteModel::default(),
            }));
            let [here] = &driver.recommended_zones[..] else {
                panic!("case {case}: one cell within 1 m, got {driver:?}");
            };
            assert_eq!(here.zone_id, answer.zone_info.zone_id);
            assert_eq!(
                here.surge_multiplier, answer.surge_multiplier,
                "case {case}"
            );

            let quote = desk.at(c.cell.center());
            assert_eq!(quote.multiplier, c.multiplier, "case {case}, {c:?}");
            assert!(caps.min() <= quote.multiplier && quote.multiplier <= caps.max());
            assert!(quote.multiplier <= caps.clamp(quote.published));
            degraded += usize::from(quote.source.degraded());
            capped +=
                usize::from(quote.multiplier < quote.published && quote.source != Source::Stale);
        }
    }
    assert!(
        degraded > 0 && capped > 0,
        "the cases cover staleness ({degraded}) and caps ({capped})"
    );
}
