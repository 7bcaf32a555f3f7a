//! The stream's changes: applying `diff(a, b)` to `a` gives `b`, for any
//! two grids of a region; and changes apply only to the grid they were
//! made from.

use proptest::prelude::*;
use shared::api::stream::{apply, diff, digest, message_for, StreamMessage};
use shared::api::{GridCellWire, GridPush};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::surge::Multiplier;

/// Twenty cells around San Francisco, in token order.
fn tokens() -> Vec<String> {
    let mut t: Vec<String> = (0..20)
        .map(|i| {
            let p = LatLng::new(37.70 + 0.01 * f64::from(i), -122.45).expect("ll");
            Cell::at(p, DEFAULT_LEVEL).token()
        })
        .collect();
    t.sort();
    t.dedup();
    t
}

fn cell(token: &str, tenths: u16, demand: u32) -> GridCellWire {
    GridCellWire {
        cell: token.to_owned(),
        multiplier: Multiplier::from_tenths(tenths).expect("m"),
        supply: 3,
        demand,
        trend: "stable".into(),
        expected_demand: None,
        expected_supply: None,
    }
}

/// A grid of a subset of [`tokens`], each present cell with its values.
fn grid(generation: u64, picks: &[(bool, u16, u32)]) -> GridPush {
    let cells = tokens()
        .iter()
        .zip(picks)
        .filter(|(_, (present, _, _))| *present)
        .map(|(t, (_, tenths, demand))| cell(t, *tenths, *demand))
        .collect();
    GridPush {
        format: 2,
        region: "sf".into(),
        level: DEFAULT_LEVEL.get(),
        generation,
        computed_at: generation * 1_000,
        cells,
        lawful_cap: generation
            .is_multiple_of(2)
            .then(|| Multiplier::from_tenths(25).expect("m")),
        arms: vec![],
    }
}

fn picks() -> impl Strategy<Value = Vec<(bool, u16, u32)>> {
    prop::collection::vec((any::<bool>(), 10u16..=40, 0u32..20), 20)
}

proptest! {
    #[test]
    fn applying_the_changes_gives_the_next_grid(a in picks(), b in picks(), g in 1u64..1000) {
        let (base, next) = (grid(g, &a), grid(g + 1, &b));
        let changes = diff(&base, &next).expect("same region");
        prop_assert_eq!(apply(&base, &changes).expect("applies"), next.clone());
        // The message a subscriber gets, whichever is smaller, leaves it
        // holding the next grid.
        let held = match serde_json::from_str(&message_for(Some(&base), &next)).expect("json") {
            StreamMessage::Grid { grid } => grid,
            StreamMessage::Changes { changes } => apply(&base, &changes).expect("applies"),
        };
        prop_assert_eq!(held, next);
    }
}

#[test]
fn changes_apply_only_to_their_base_and_are_sent_when_smaller() {
    let all: Vec<(bool, u16, u32)> = (0..20).map(|i| (true, 12, i)).collect();
    let base = grid(1, &all);
    let mut one = all.clone();
    one[3].1 = 30;
    let next = grid(2, &one);
    let changes = diff(&base, &next).expect("diff");
    assert_eq!(changes.set.len(), 1);
    assert!(changes.removed.is_empty());
    assert_eq!(changes.base, digest(&base));
    let other = grid(1, &one);
    assert!(apply(&other, &changes).is_err());
    // One changed cell of twenty: the changes are sent.
    let m: StreamMessage = serde_json::from_str(&message_for(Some(&base), &next)).expect("json");
    assert!(matches!(m, StreamMessage::Changes { .. }), "{m:?}");
    // Everything changed: the whole grid is smaller.
    let every: Vec<(bool, u16, u32)> = (0..20).map(|i| (true, 30, i + 1)).collect();
    let m: StreamMessage =
        serde_json::from_str(&message_for(Some(&base), &grid(2, &every))).expect("json");
    assert!(matches!(m, StreamMessage::Grid { .. }), "{m:?}");
    // No held grid, or another region's: the whole grid.
    let m: StreamMessage = serde_json::from_str(&message_for(None, &next)).expect("json");
    assert!(matches!(m, StreamMessage::Grid { .. }));
    let mut elsewhere = base.clone();
    elsewhere.region = "nyc".into();
    assert!(diff(&elsewhere, &next).is_none());
}
