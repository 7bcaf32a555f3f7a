//! Wire types of every endpoint, shared by edge, origin, simulator and tests:
//! one file per endpoint family, mirroring the edge's and the origin's
//! handler files. `api` is a leaf of the core: it converts core values to
//! and from the wire; no core module imports it (`tests/layers.rs`).
//!
//! Field names follow the original design (`pickup_location.latitude`,
//! `quote_id`, `surge_multiplier`, `final_fare`, `quote_valid_until`, ...):
//! apps already speak that shape. New fields are added; none are renamed.
//! Unknown request fields are ignored so older servers accept newer apps.
//!
//! Every error response has the body [`ErrorBody`]: a stable
//! machine-readable `code` and a human `message`.

use serde::{Deserialize, Serialize};

use crate::booking::{Action, BookingStatus, Party};
use crate::desk::{DemandLevel, Source};
use crate::fare::{FareBreakdown, VehicleClass};
use crate::geo::{Cell, InvalidLatLng, LatLng, Level};
use crate::grid::{CellForecast, GridCell, InvalidGrid, SurgeGrid, GRID_FORMAT, GRID_FORMATS_READ};
use crate::quote::{Ident, InvalidIdent};
use crate::surge::{Multiplier, Trend};
use crate::time::Timestamp;

pub mod admin;
pub mod stream;

mod analytics;
mod bookings;
mod edge_events;
mod experiments;
mod grid;
mod heatmap;
mod ingest;
mod ops;
mod pricing;

pub use analytics::*;
pub use bookings::*;
pub use edge_events::*;
pub use experiments::*;
pub use grid::*;
pub use heatmap::*;
pub use ingest::*;
pub use ops::*;
pub use pricing::*;

/// Closed sets travel as their names: serialised with the type's
/// `as_str`, read back with its `parse` (the one parser of each set).
macro_rules! wire_name {
    ($($t:ty),+) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
                <$t>::parse(&name).map_err(serde::de::Error::custom)
            }
        }
    )+};
}

wire_name!(
    Trend,
    VehicleClass,
    Source,
    DemandLevel,
    BookingStatus,
    Party,
    Action
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fare_explanation_lists_every_component() {
        let f = FareBreakdown {
            currency: crate::fare::Currency::new("USD").expect("currency"),
            base: 250,
            distance: 1_205,
            time: 90,
            subtotal: 1_545,
            surge_multiplier: Multiplier::from_tenths(18).expect("m"),
            surge_amount: 1_236,
            booking_fee: 200,
            minimum_fare_adjustment: 5,
            total: 2_986,
        };
        let w = FareBreakdownWire::from(&f);
        assert_eq!(
            w.explanation,
            [
                "base 2.50 USD",
                "distance 12.05 USD",
                "time 0.90 USD",
                "surge x1.8 on 15.45: +12.36 USD",
                "booking fee 2.00 USD",
                "raised to the minimum fare: +0.05 USD",
            ]
        );
        let no_surge = FareBreakdown {
            surge_amount: 0,
            minimum_fare_adjustment: 0,
            ..f
        };
        assert_eq!(FareBreakdownWire::from(&no_surge).explanation.len(), 4);
    }

    #[test]
    fn estimate_request_accepts_the_design_shape() {
        let body = r#"{
            "pickup_location": {"latitude": 37.7749, "longitude": -122.4194},
            "dropoff_location": {"latitude": 37.7849, "longitude": -122.4094},
            "vehicle_type": "standard",
            "user_id": "user_123",
            "something_new": true
        }"#;
        let r: EstimateRequest = serde_json::from_str(body).expect("parse");
        assert_eq!(r.vehicle_type.as_deref(), Some("standard"));
        assert!(r.pickup_location.to_latlng().is_ok());
    }

    #[test]
    fn grid_push_round_trips_and_validates() {
        let cell = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), Level::default());
        let push = GridPush {
            format: GRID_FORMAT,
            region: "sf".into(),
            level: 13,
            generation: 9,
            computed_at: 1_000,
            cells: vec![GridCellWire {
                cell: cell.token(),
                multiplier: Multiplier::from_tenths(17).expect("m"),
                supply: 3,
                demand: 9,
                trend: "increasing".into(),
                expected_demand: None,
                expected_supply: None,
            }],
            lawful_cap: None,
            arms: vec![ArmGridWire {
                experiment: "e1".into(),
                arm: "treatment".into(),
                policy: "forecast-0123abcd".into(),
                multipliers: [(cell.token(), Multiplier::from_tenths(12).expect("m"))].into(),
            }],
        };
        let grid = SurgeGrid::try_from(push.clone()).expect("valid");
        assert_eq!(GridPush::from(&grid), push);
        // Outside an experiment a grid is written as format 2, which an
        // edge that predates arms still reads.
        let plain = SurgeGrid::try_from(GridPush {
            arms: vec![],
            ..push.clone()
        })
        .expect("valid");
        assert_eq!(GridPush::from(&plain).format, 2);
        assert_eq!(user_id(Some("")), Ok(None));
        assert_eq!(user_id(Some("u1")), Ok(Some("u1")));
        assert!(user_id(Some(&"x".repeat(MAX_USER_ID + 1))).is_err());
        let id = |s: &str| Ident::new(s).expect("id");
        let arm = grid.arm(&id("e1"), &id("treatment")).expect("the arm");
        assert_eq!(arm.lookup(cell).map(|m| m.tenths()), Some(12));
        assert!(grid.arm(&id("e1"), &id("control")).is_none());
        let mut bad_arm = push.clone();
        bad_arm.arms[0].multipliers = [("zz".to_owned(), Multiplier::ONE)].into();
        assert!(matches!(
            SurgeGrid::try_from(bad_arm),
            Err(InvalidGridPush::Arm { index: 0, .. })
        ));
        let mut too_many = push.clone();
        too_many.arms = vec![push.arms[0].clone(); 9];
        assert!(SurgeGrid::try_from(too_many).is_err());

        let mut bad = push.clone();
        bad.cells[0].cell = "nonsense".into();
        assert!(matches!(
            SurgeGrid::try_from(bad),
            Err(InvalidGridPush::Cell { index: 0, .. })
        ));
        let mut bad = push.clone();
        bad.format = 99;
        assert!(matches!(
            SurgeGrid::try_from(bad),
            Err(InvalidGridPush::Grid(InvalidGrid::Format(99)))
        ));
        let json = serde_json::to_string(&push).expect("json");
        assert!(json.contains("\"multiplier\":1.7"), "{json}");
        let below_one = json.replace("1.7", "0.7");
        assert!(serde_json::from_str::<GridPush>(&below_one).is_err());
    }

    #[test]
    fn demand_levels_are_monotone() {
        let ms: Vec<Multiplier> = (10..=60)
            .map(|t| Multiplier::from_tenths(t).expect("m"))
            .collect();
        for w in ms.windows(2) {
            assert!(DemandLevel::of(w[0]) <= DemandLevel::of(w[1]));
        }
    }

    /// Every closed set reads back what it writes, through its one parser,
    /// and refuses other names with the set's own message.
    #[test]
    fn closed_sets_travel_as_their_names() {
        fn round_trip<T>(all: &[T])
        where
            T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        {
            for x in all {
                let json = serde_json::to_string(x).expect("json");
                assert_eq!(&serde_json::from_str::<T>(&json).expect("parse"), x);
            }
            let err = serde_json::from_str::<T>("\"Nonsense\"").expect_err("refused");
            assert!(err.to_string().contains("Nonsense"), "{err}");
        }
        round_trip(&[Trend::Increasing, Trend::Stable, Trend::Decreasing]);
        round_trip(&VehicleClass::ALL);
        round_trip(&Source::ALL);
        round_trip(&DemandLevel::ALL);
        assert_eq!(
            serde_json::to_string(&DemandLevel::VeryHigh).expect("json"),
            "\"very_high\""
        );
    }

    #[test]
    fn an_experiment_parses_from_its_json_and_a_typo_is_named() {
        let json = r#"{"id": "fa-1", "region": "sf", "split": "switchback", "window_minutes": 30,
            "salt": "2026-11", "start": 1800000000000, "end": 1801000000000,
            "arms": [{"name": "control", "policy": "default", "share_percent": 50},
                     {"name": "forecast", "policy": "forecast", "params": {"lead": 0.75},
                      "share_percent": 50}],
            "guardrails": {"max_completion_drop_points": 5}}"#;
        let e = parse_experiment(json).expect("valid");
        assert_eq!(e.arms().len(), 2);
        assert_eq!(e.max_completion_drop_points(), Some(5.0));
        let typo = json.replace("\"lead\"", "\"laed\"");
        assert!(parse_experiment(&typo)
            .expect_err("unknown field")
            .contains("laed"));
        let bad = json.replace("\"share_percent\": 50}]", "\"share_percent\": 60}]");
        assert_eq!(
            parse_experiment(&bad).expect_err("shares"),
            "arms: shares sum to 110, not 100"
        );

        // A region's value: one experiment or several after one another.
        let sf = Ident::new("sf").expect("id");
        let (one, refused) = parse_experiments(&sf, json);
        assert_eq!((one.len(), refused.len()), (1, 0));
        let later = json.replace("fa-1", "fa-2").replace(
            r#""start": 1800000000000, "end": 1801000000000"#,
            r#""start": 1801000000000, "end": 1802000000000"#,
        );
        assert_ne!(later.replace("fa-2", "fa-1"), json);
        let (two, refused) = parse_experiments(&sf, &format!("[{json}, {later}]"));
        assert_eq!((two.len(), refused.len()), (2, 0), "{refused:?}");
        // Overlapping ones are both refused; the typo is refused alone.
        let overlapping = json.replace("fa-1", "fa-3");
        let (kept, refused) =
            parse_experiments(&sf, &format!("[{json}, {overlapping}, {later}, {typo}]"));
        assert_eq!(kept.len(), 1, "{refused:?}");
        assert_eq!(kept[0].id().as_str(), "fa-2");
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused.iter().any(|r| r.contains("laed")), "{refused:?}");
        assert!(
            refused.iter().any(|r| r.contains("overlaps")),
            "{refused:?}"
        );
        // One id for two experiments of the region: both refused.
        let again = later.replace("fa-2", "fa-1");
        let (kept, refused) = parse_experiments(&sf, &format!("[{json}, {again}]"));
        assert!(kept.is_empty(), "{refused:?}");
        assert!(
            refused.iter().all(|r| r.contains("names two")),
            "{refused:?}"
        );
        // Another region's definition under this key is refused.
        let (none, refused) = parse_experiments(&Ident::new("nyc").expect("id"), json);
        assert!(none.is_empty());
        assert!(refused[0].contains("region sf, not nyc"), "{refused:?}");
        assert!(!parse_experiments(&sf, "42").1.is_empty());
        assert!(!parse_experiments(&sf, "{").1.is_empty());
    }
}
