//! Public-API tests of the origin's SQLite store.

use origin::store::*;

const DAY: u64 = 86_400_000;
const NOW: u64 = 1_700_000_000_000;

fn zone(region: &str, cell: &str, name: &str, active: bool) -> Zone {
    Zone {
        region: region.into(),
        cell: cell.into(),
        name: name.into(),
        min_multiplier: 1.0,
        max_multiplier: 3.0,
        active,
    }
}

fn snap(cell: &str, class: &str, multiplier: f64) -> SnapshotRow {
    SnapshotRow {
        cell: cell.into(),
        class: class.into(),
        supply: 10,
        demand: 20,
        multiplier,
    }
}

fn change(cell: &str, old: f64, new: f64) -> PriceChange {
    PriceChange {
        cell: cell.into(),
        old_multiplier: old,
        new_multiplier: new,
        reason: "demand".into(),
        supply: 10,
        demand: 20,
    }
}

fn tick(
    region: &str,
    at_ms: u64,
    generation: u64,
    snapshots: Vec<SnapshotRow>,
    changes: Vec<PriceChange>,
) -> TickRecord {
    let max_multiplier = snapshots.iter().map(|s| s.multiplier).fold(1.0, f64::max);
    TickRecord {
        region: region.into(),
        at_ms,
        generation,
        grid_json: format!(r#"{{"region":"{region}","generation":{generation}}}"#),
        snapshots,
        changes,
        state: vec![],
        forecast_history: None,
        max_multiplier,
    }
}

fn outcome(ride_id: &str, region: &str, cell: &str, at_ms: u64, completed: bool) -> RideOutcome {
    RideOutcome {
        ride_id: ride_id.into(),
        region: region.into(),
        cell: cell.into(),
        at_ms,
        completed,
        multiplier: 1.5,
        fare_minor: completed.then_some(1_250),
        currency: completed.then(|| "USD".to_owned()),
        quote_id: Some(format!("q-{ride_id}")),
        wait_ms: completed.then_some(240_000),
    }
}

#[test]
fn a_recorded_tick_reads_back_through_every_view() {
    let mut s = Store::open_in_memory().unwrap();
    assert_eq!(s.last_tick_at().unwrap(), None);
    assert!(s.last_grids().unwrap().is_empty());

    let t = TickRecord {
        region: "nyc".into(),
        at_ms: 1_000,
        generation: 7,
        grid_json: r#"{"cells":[]}"#.into(),
        snapshots: vec![
            SnapshotRow {
                cell: "89c25".into(),
                class: "xl".into(),
                supply: 3,
                demand: 9,
                multiplier: 2.1,
            },
            SnapshotRow {
                cell: "89c25".into(),
                class: "economy".into(),
                supply: 12,
                demand: 30,
                multiplier: 1.8,
            },
            SnapshotRow {
                cell: "89c27".into(),
                class: "economy".into(),
                supply: 40,
                demand: 4,
                multiplier: 1.0,
            },
        ],
        changes: vec![PriceChange {
            cell: "89c25".into(),
            old_multiplier: 1.4,
            new_multiplier: 1.8,
            reason: "demand".into(),
            supply: 12,
            demand: 30,
        }],
        state: b"EQS-state-bytes".to_vec(),
        forecast_history: None,
        max_multiplier: 2.1,
    };
    s.record_tick(&t).unwrap();

    assert_eq!(s.last_tick_at().unwrap(), Some(1_000));
    assert_eq!(
        s.last_grids().unwrap(),
        vec![StoredGrid {
            region: "nyc".into(),
            generation: 7,
            at_ms: 1_000,
            grid_json: r#"{"cells":[]}"#.into(),
        }]
    );
    // Rows of one tick come back ordered by class.
    assert_eq!(
        s.zone_history("nyc", "89c25", 0, 10).unwrap(),
        vec![
            HistoryRow {
                at_ms: 1_000,
                class: "economy".into(),
                supply: 12,
                demand: 30,
                multiplier: 1.8,
            },
            HistoryRow {
                at_ms: 1_000,
                class: "xl".into(),
                supply: 3,
                demand: 9,
                multiplier: 2.1,
            },
        ]
    );
    assert_eq!(
        s.price_changes("nyc", 0, 10).unwrap(),
        vec![PriceChangeRow {
            at_ms: 1_000,
            cell: "89c25".into(),
            old_multiplier: 1.4,
            new_multiplier: 1.8,
            reason: "demand".into(),
            supply: 12,
            demand: 30,
        }]
    );
    // Other regions and cells see nothing.
    assert!(s.zone_history("sf", "89c25", 0, 10).unwrap().is_empty());
    assert!(s.price_changes("sf", 0, 10).unwrap().is_empty());
}

#[test]
fn last_grids_keep_the_newest_generation_per_region() {
    let mut s = Store::open_in_memory().unwrap();
    s.record_tick(&tick("nyc", 1_000, 1, vec![], vec![]))
        .unwrap();
    s.record_tick(&tick("ber", 1_100, 1, vec![], vec![]))
        .unwrap();
    s.record_tick(&tick("nyc", 2_000, 2, vec![], vec![]))
        .unwrap();
    s.record_tick(&tick("nyc", 3_000, 3, vec![], vec![]))
        .unwrap();
    s.record_tick(&tick("ber", 3_100, 2, vec![], vec![]))
        .unwrap();
    // A late tick with an older generation still records its rows and the
    // tick time, but never replaces the newer grid.
    s.record_tick(&tick(
        "nyc",
        3_500,
        2,
        vec![snap("c1", "economy", 1.3)],
        vec![],
    ))
    .unwrap();

    let grids = s.last_grids().unwrap();
    assert_eq!(
        grids,
        vec![
            StoredGrid {
                region: "ber".into(),
                generation: 2,
                at_ms: 3_100,
                grid_json: r#"{"region":"ber","generation":2}"#.into(),
            },
            StoredGrid {
                region: "nyc".into(),
                generation: 3,
                at_ms: 3_000,
                grid_json: r#"{"region":"nyc","generation":3}"#.into(),
            },
        ]
    );
    assert_eq!(s.last_tick_at().unwrap(), Some(3_500));
    assert_eq!(s.zone_history("nyc", "c1", 0, 10).unwrap().len(), 1);

    // An equal generation does not replace either.
    let mut same = tick("ber", 4_000, 2, vec![], vec![]);
    same.grid_json = "{}".into();
    s.record_tick(&same).unwrap();
    assert_eq!(s.last_grids().unwrap()[0].at_ms, 3_100);
}

#[test]
fn reopening_a_file_restores_zones_grids_and_last_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("origin.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.upsert_zone(&zone("nyc", "89c25", "Midtown", true))
            .unwrap();
        s.upsert_zone(&zone("nyc", "89c23", "Chelsea", false))
            .unwrap();
        s.upsert_zone(&zone("ber", "47a85", "Mitte", true)).unwrap();
        s.record_tick(&tick(
            "nyc",
            5_000,
            41,
            vec![snap("89c25", "economy", 1.7)],
            vec![],
        ))
        .unwrap();
        s.record_tick(&tick("ber", 6_000, 9, vec![], vec![]))
            .unwrap();
        // The file is in WAL mode: commits go to the write-ahead log.
        assert!(dir.path().join("origin.db-wal").exists());
    }

    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.all_zones().unwrap(),
        vec![
            zone("ber", "47a85", "Mitte", true),
            zone("nyc", "89c23", "Chelsea", false),
            zone("nyc", "89c25", "Midtown", true),
        ]
    );
    assert_eq!(s.last_tick_at().unwrap(), Some(6_000));
    let grids = s.last_grids().unwrap();
    assert_eq!(
        grids
            .iter()
            .map(|g| (g.region.as_str(), g.generation, g.at_ms))
            .collect::<Vec<_>>(),
        vec![("ber", 9, 6_000), ("nyc", 41, 5_000)]
    );
    assert_eq!(grids[1].grid_json, r#"{"region":"nyc","generation":41}"#);
    assert_eq!(
        s.zone_history("nyc", "89c25", 0, 10).unwrap()[0].multiplier,
        1.7
    );
}

#[test]
fn zones_are_upserted_and_sorted_by_cell() {
    let mut s = Store::open_in_memory().unwrap();
    s.upsert_zone(&zone("nyc", "89c27", "B", true)).unwrap();
    s.upsert_zone(&zone("nyc", "89c21", "A", true)).unwrap();
    s.upsert_zone(&zone("sf", "80857", "C", true)).unwrap();
    let mut renamed = zone("nyc", "89c27", "B2", false);
    renamed.max_multiplier = 2.5;
    s.upsert_zone(&renamed).unwrap();

    assert_eq!(
        s.zones("nyc").unwrap(),
        vec![zone("nyc", "89c21", "A", true), renamed]
    );
    assert_eq!(s.zones("sf").unwrap().len(), 1);
    assert!(s.zones("ber").unwrap().is_empty());

    let mut bad = zone("nyc", "x", "bad", true);
    bad.min_multiplier = 4.0;
    assert!(matches!(
        s.upsert_zone(&bad),
        Err(StoreError::InvalidData(_))
    ));
    assert_eq!(s.all_zones().unwrap().len(), 3);
}

#[test]
fn duplicate_outcomes_are_ignored() {
    let mut s = Store::open_in_memory().unwrap();
    // One batch with a duplicate inside it.
    let first = vec![
        outcome("r1", "nyc", "a", NOW - DAY, true),
        outcome("r2", "nyc", "a", NOW - DAY, false),
        outcome("r1", "nyc", "a", NOW - DAY, false),
    ];
    assert_eq!(s.record_outcomes(&first).unwrap(), 2);
    // A retried batch: r1 and r2 again (r1 now claiming failure), r3 new.
    let second = vec![
        outcome("r1", "nyc", "a", NOW - DAY, false),
        outcome("r2", "nyc", "a", NOW - DAY, false),
        outcome("r3", "nyc", "a", NOW - DAY, true),
    ];
    assert_eq!(s.record_outcomes(&second).unwrap(), 1);
    assert_eq!(s.record_outcomes(&second).unwrap(), 0);
    assert_eq!(s.record_outcomes(&[]).unwrap(), 0);

    // The first report of r1 (completed) stands: 2 of 3 completed.
    s.record_tick(&tick(
        "nyc",
        NOW - DAY,
        1,
        vec![snap("a", "economy", 2.0)],
        vec![],
    ))
    .unwrap();
    let report = s.least_efficient_zones(NOW, 30, 5).unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].rides, 3);
    assert_eq!(report[0].completion_rate, 66.67);
}

/// The history behind the efficiency report; see the expectations in
/// `least_efficient_zones_ranks_the_seeded_history`.
fn seed_efficiency_history(s: &mut Store) {
    s.upsert_zone(&zone("nyc", "a", "Alpha", true))
        .expect("seed");
    s.upsert_zone(&zone("nyc", "b", "Bravo", true))
        .expect("seed");
    // nyc/c has no zones row: named "nyc c".
    s.upsert_zone(&zone("nyc", "off", "Switched off", false))
        .expect("seed");
    s.upsert_zone(&zone("nyc", "low", "Low", true))
        .expect("seed");
    s.upsert_zone(&zone("nyc", "old", "Old", true))
        .expect("seed");
    s.upsert_zone(&zone("sf", "d", "Delta", true))
        .expect("seed");
    s.upsert_zone(&zone("sf", "e", "Echo", true)).expect("seed");

    // Outside the 30-day window: would make old the worst zone and lift a.
    s.record_tick(&tick(
        "nyc",
        NOW - 31 * DAY,
        1,
        vec![snap("old", "economy", 3.0), snap("a", "economy", 5.0)],
        vec![change("a", 1.0, 5.0), change("old", 1.0, 3.0)],
    ))
    .expect("seed");
    // Exactly at the window's start: counts.
    s.record_tick(&tick(
        "nyc",
        NOW - 30 * DAY,
        2,
        vec![snap("b", "economy", 1.0)],
        vec![change("b", 1.2, 1.0)],
    ))
    .expect("seed");
    s.record_tick(&tick(
        "nyc",
        NOW - 2 * DAY,
        3,
        vec![
            snap("a", "economy", 2.0),
            snap("b", "economy", 2.0),
            snap("c", "economy", 2.0),
            snap("off", "economy", 3.0),
            snap("low", "economy", 1.2),
        ],
        vec![
            change("a", 1.0, 2.0),
            change("b", 1.0, 2.0),
            change("c", 1.0, 2.0),
            change("off", 1.0, 3.0),
        ],
    ))
    .expect("seed");
    s.record_tick(&tick(
        "nyc",
        NOW - DAY,
        4,
        vec![snap("a", "economy", 3.0)],
        vec![change("a", 2.0, 3.0)],
    ))
    .expect("seed");
    // Exactly now: counts.
    s.record_tick(&tick(
        "nyc",
        NOW,
        5,
        vec![snap("a", "economy", 2.5)],
        vec![change("a", 3.0, 2.5)],
    ))
    .expect("seed");
    // After now: does not count.
    s.record_tick(&tick(
        "nyc",
        NOW + 1,
        6,
        vec![snap("a", "economy", 9.0), snap("c", "economy", 9.0)],
        vec![change("a", 2.5, 9.0)],
    ))
    .expect("seed");

    // sf: d and e tie; d has two classes.
    s.record_tick(&tick(
        "sf",
        NOW - 2 * DAY,
        1,
        vec![
            snap("d", "economy", 1.8),
            snap("d", "xl", 1.8),
            snap("e", "economy", 1.8),
        ],
        vec![],
    ))
    .expect("seed");
    s.record_tick(&tick(
        "sf",
        NOW - DAY,
        2,
        vec![snap("e", "economy", 1.8)],
        vec![change("e", 1.8, 1.8)],
    ))
    .expect("seed");

    let at = NOW - 3 * DAY;
    let outcomes = vec![
        // a: 1 of 4 completed; the old completed ride is outside the window.
        outcome("a1", "nyc", "a", at, true),
        outcome("a2", "nyc", "a", at, false),
        outcome("a3", "nyc", "a", at, false),
        outcome("a4", "nyc", "a", at, false),
        outcome("a-old", "nyc", "a", NOW - 40 * DAY, true),
        // b: 2 of 3.
        outcome("b1", "nyc", "b", at, true),
        outcome("b2", "nyc", "b", at, true),
        outcome("b3", "nyc", "b", at, false),
        // c: only a ride after now, so no rides in the window.
        outcome("c-future", "nyc", "c", NOW + 1, true),
        // d and e: 1 of 2 each.
        outcome("d1", "sf", "d", at, true),
        outcome("d2", "sf", "d", at, false),
        outcome("e1", "sf", "e", at, true),
        outcome("e2", "sf", "e", at, false),
        outcome("off1", "nyc", "off", at, false),
        // Same cell name in another region must not mix in.
        outcome("x1", "sf", "a", at, true),
    ];
    assert_eq!(s.record_outcomes(&outcomes).expect("seed"), outcomes.len());
}

#[allow(clippy::too_many_arguments)]
fn expected(
    region: &str,
    cell: &str,
    zone_name: &str,
    average_multiplier: f64,
    completion_rate: f64,
    rides: u64,
    events: (u64, u64),
    rank: u32,
) -> ZoneEfficiency {
    ZoneEfficiency {
        region: region.into(),
        cell: cell.into(),
        zone_name: zone_name.into(),
        average_multiplier,
        completion_rate,
        rides,
        surge_events: events.0,
        decrease_events: events.1,
        // The same IEEE operations SQLite performs.
        inefficiency_score: average_multiplier * 0.7 + (100.0 - completion_rate) * 0.3,
        rank,
    }
}

#[test]
fn least_efficient_zones_ranks_the_seeded_history() {
    let mut s = Store::open_in_memory().unwrap();
    seed_efficiency_history(&mut s);

    let report = s.least_efficient_zones(NOW, 30, 5).unwrap();
    let c = expected("nyc", "c", "nyc c", 2.0, 0.0, 0, (1, 0), 1);
    let a = expected("nyc", "a", "Alpha", 2.5, 25.0, 4, (2, 1), 2);
    let d = expected("sf", "d", "Delta", 1.8, 50.0, 2, (0, 0), 3);
    let e = expected("sf", "e", "Echo", 1.8, 50.0, 2, (0, 0), 3);
    let b = expected("nyc", "b", "Bravo", 1.5, 66.67, 3, (1, 1), 5);
    assert_eq!(
        report,
        vec![c.clone(), a.clone(), d.clone(), e.clone(), b.clone()]
    );

    // The scores in plain numbers.
    let scores: Vec<f64> = report.iter().map(|z| z.inefficiency_score).collect();
    for (got, want) in scores.iter().zip([31.4, 24.25, 16.26, 16.26, 11.049]) {
        assert!((got - want).abs() < 1e-9, "score {got}, expected {want}");
    }

    // The limit applies to the rank: the tie at 3 yields four rows for both
    // 3 and 4, since no zone has rank 4.
    let top3 = s.least_efficient_zones(NOW, 30, 3).unwrap();
    assert_eq!(top3, vec![c.clone(), a.clone(), d.clone(), e.clone()]);
    assert_eq!(s.least_efficient_zones(NOW, 30, 4).unwrap(), top3);
    assert_eq!(s.least_efficient_zones(NOW, 30, 1).unwrap(), vec![c]);
    assert!(s.least_efficient_zones(NOW, 30, 0).unwrap().is_empty());

    // A one-day window: only a (3.0 and 2.5, no rides in it) and e remain.
    let day = s.least_efficient_zones(NOW, 1, 5).unwrap();
    assert_eq!(
        day.iter()
            .map(|z| (z.cell.as_str(), z.average_multiplier, z.rank))
            .collect::<Vec<_>>(),
        vec![("a", 2.75, 1), ("e", 1.8, 2)]
    );
}

#[test]
fn prune_deletes_only_rows_older_than_the_cutoff() {
    let mut s = Store::open_in_memory().unwrap();
    s.upsert_zone(&zone("nyc", "a", "Alpha", true)).unwrap();
    for (i, at) in [1_000u64, 2_000, 3_000].into_iter().enumerate() {
        s.record_tick(&tick(
            "nyc",
            at,
            i as u64 + 1,
            vec![snap("a", "economy", 1.5), snap("a", "xl", 2.0)],
            vec![change("a", 1.0, 1.5)],
        ))
        .unwrap();
    }
    s.record_outcomes(&[
        outcome("r1", "nyc", "a", 1_500, true),
        outcome("r2", "nyc", "a", 2_500, true),
        outcome("r3", "nyc", "a", 3_500, false),
    ])
    .unwrap();

    // Cutoff 2_500: the ticks at 1_000 and 2_000 (2 snapshots + 1 change
    // each) and the outcome at 1_500 go; the outcome at exactly 2_500 stays.
    assert_eq!(s.prune(2_500).unwrap(), 7);
    let history = s.zone_history("nyc", "a", 0, 100).unwrap();
    assert_eq!(
        history.iter().map(|h| h.at_ms).collect::<Vec<_>>(),
        vec![3_000, 3_000]
    );
    assert_eq!(
        s.price_changes("nyc", 0, 100)
            .unwrap()
            .iter()
            .map(|c| c.at_ms)
            .collect::<Vec<_>>(),
        vec![3_000]
    );
    // The pruned outcome id can be reported again; the kept ones are still
    // duplicates.
    assert_eq!(
        s.record_outcomes(&[
            outcome("r1", "nyc", "a", 1_500, true),
            outcome("r2", "nyc", "a", 2_500, true),
        ])
        .unwrap(),
        1
    );
    // State needed for a restart survives.
    assert_eq!(s.zones("nyc").unwrap().len(), 1);
    assert_eq!(s.last_grids().unwrap()[0].generation, 3);
    assert_eq!(s.last_tick_at().unwrap(), Some(3_000));
    // Nothing older left: a second prune deletes nothing but the re-reported r1.
    assert_eq!(s.prune(2_500).unwrap(), 1);
    assert_eq!(s.prune(2_500).unwrap(), 0);
}

#[test]
fn history_and_price_changes_are_newest_first_and_limited() {
    let mut s = Store::open_in_memory().unwrap();
    for i in 1..=6u64 {
        s.record_tick(&tick(
            "nyc",
            i * 1_000,
            i,
            vec![
                snap("a", "economy", 1.0 + i as f64 / 10.0),
                snap("b", "economy", 1.0),
            ],
            vec![change(
                "a",
                1.0 + (i - 1) as f64 / 10.0,
                1.0 + i as f64 / 10.0,
            )],
        ))
        .unwrap();
    }
    s.record_tick(&tick(
        "sf",
        9_000,
        1,
        vec![snap("a", "economy", 3.0)],
        vec![change("a", 1.0, 3.0)],
    ))
    .unwrap();

    let h = s.zone_history("nyc", "a", 0, 3).unwrap();
    assert_eq!(
        h.iter()
            .map(|r| (r.at_ms, r.multiplier))
            .collect::<Vec<_>>(),
        vec![
            (6_000, 1.0 + 6.0 / 10.0),
            (5_000, 1.0 + 5.0 / 10.0),
            (4_000, 1.0 + 4.0 / 10.0)
        ]
    );
    // since_ms is inclusive and bounds the other end.
    let h = s.zone_history("nyc", "a", 5_000, 100).unwrap();
    assert_eq!(
        h.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![6_000, 5_000]
    );
    assert!(s.zone_history("nyc", "a", 6_001, 100).unwrap().is_empty());
    assert!(s.zone_history("nyc", "a", 0, 0).unwrap().is_empty());

    let c = s.price_changes("nyc", 2_000, 4).unwrap();
    assert_eq!(
        c.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![6_000, 5_000, 4_000, 3_000]
    );
    assert_eq!(c[0].old_multiplier, 1.0 + 5.0 / 10.0);
    assert_eq!(c[0].new_multiplier, 1.0 + 6.0 / 10.0);
    assert_eq!(s.price_changes("nyc", 2_000, 100).unwrap().len(), 5);
    assert_eq!(s.price_changes("sf", 0, 100).unwrap().len(), 1);
}

#[test]
fn a_tick_stores_the_market_state_with_its_grid() {
    let mut s = Store::open_in_memory().unwrap();
    let mut t = tick("sf", 1_000, 5, vec![], vec![]);
    t.state = b"EQS\x01windows".to_vec();
    s.record_tick(&t).unwrap();
    let st = s.market_states().unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].generation, st[0].at_ms), (5, 1_000));
    assert_eq!(st[0].state, t.state);
    // An older generation keeps both the grid and the state.
    let mut older = tick("sf", 2_000, 4, vec![], vec![]);
    older.state = b"older".to_vec();
    s.record_tick(&older).unwrap();
    assert_eq!(s.market_states().unwrap()[0].state, t.state);
    assert_eq!(s.last_grids().unwrap()[0].generation, 5);
}

/// The version 1 schema as shipped, to test the migration.
const V1_SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', 1), ('last_tick_at', 5000);
CREATE TABLE zones (region TEXT NOT NULL, cell TEXT NOT NULL, name TEXT NOT NULL,
    min_multiplier REAL NOT NULL, max_multiplier REAL NOT NULL,
    active INTEGER NOT NULL CHECK (active IN (0, 1)), PRIMARY KEY (region, cell));
CREATE TABLE snapshots (id INTEGER PRIMARY KEY, region TEXT NOT NULL, cell TEXT NOT NULL,
    class TEXT NOT NULL, at_ms INTEGER NOT NULL, supply INTEGER NOT NULL,
    demand INTEGER NOT NULL, multiplier REAL NOT NULL);
CREATE INDEX snapshots_by_zone_time ON snapshots (region, cell, at_ms);
CREATE INDEX snapshots_by_time ON snapshots (at_ms);
CREATE TABLE price_changes (id INTEGER PRIMARY KEY, region TEXT NOT NULL, cell TEXT NOT NULL,
    at_ms INTEGER NOT NULL, old_multiplier REAL NOT NULL, new_multiplier REAL NOT NULL,
    reason TEXT NOT NULL, supply INTEGER NOT NULL, demand INTEGER NOT NULL);
CREATE INDEX price_changes_by_region_time ON price_changes (region, at_ms);
CREATE INDEX price_changes_by_time ON price_changes (at_ms);
CREATE TABLE last_grids (region TEXT PRIMARY KEY, generation INTEGER NOT NULL,
    at_ms INTEGER NOT NULL, grid_json TEXT NOT NULL);
INSERT INTO last_grids VALUES ('sf', 42, 5000, '{}');
CREATE TABLE ride_outcomes (ride_id TEXT PRIMARY KEY, region TEXT NOT NULL, cell TEXT NOT NULL,
    at_ms INTEGER NOT NULL, completed INTEGER NOT NULL, multiplier REAL NOT NULL,
    fare REAL, quote_id TEXT);
CREATE INDEX ride_outcomes_by_zone_time ON ride_outcomes (region, cell, at_ms);
CREATE INDEX ride_outcomes_by_time ON ride_outcomes (at_ms);
INSERT INTO ride_outcomes VALUES ('r1', 'sf', 'c', 1000, 1, 1.5, 23.45, 'q1');
INSERT INTO snapshots VALUES (1, 'sf', 'c', 'standard', 1000, 1, 3, 2.5);
INSERT INTO snapshots VALUES (2, 'sf', 'c', 'standard', 2000, 1, 3, 1.5);
INSERT INTO ride_outcomes VALUES ('r2', 'sf', 'c', 1000, 0, 1.5, NULL, NULL);
";

#[test]
fn a_version_1_file_is_migrated_with_fares_in_minor_units() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(V1_SCHEMA)
        .unwrap();
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.last_tick_at().unwrap(), Some(5_000));
    assert_eq!(s.last_grids().unwrap()[0].generation, 42);
    assert!(s.market_states().unwrap().is_empty());
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let fares: Vec<(String, Option<i64>)> = c
        .prepare("SELECT ride_id, fare_minor FROM ride_outcomes ORDER BY ride_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(fares, vec![("r1".into(), Some(2_345)), ("r2".into(), None)]);
    // Version 4: the daily maxima, filled from the stored snapshots.
    let daily: Vec<(String, i64, f64)> = c
        .prepare("SELECT region, day, max_multiplier FROM daily_max")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(daily, vec![("sf".to_owned(), 0, 2.5)]);
    // Version 5: the forecast history table, empty until a tick writes it.
    let histories: i64 = c
        .query_row("SELECT count(*) FROM forecast_history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(histories, 0);
    // Version 3: the pickup wait.
    let has_wait: i64 = c
        .query_row(
            "SELECT count(*) FROM pragma_table_info('ride_outcomes') WHERE name = 'wait_ms'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(has_wait, 1);
    let has_real_fare: i64 = c
        .query_row(
            "SELECT count(*) FROM pragma_table_info('ride_outcomes') WHERE name = 'fare'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(has_real_fare, 0, "the REAL column is gone");
    drop(c);
    // The migrated file takes new outcomes and opens again unchanged.
    s = Store::open(&path).unwrap();
    let o = outcome("r3", "sf", "c", 2_000, true);
    assert_eq!(s.record_outcomes(&[o]).unwrap(), 1);
}

#[test]
fn the_daily_maxima_give_the_lawful_cap() {
    let mut s = Store::open_in_memory().unwrap();
    let day = shared::emergency::DAY_MS;
    let maxima = [1.4, 3.2, 2.0, 4.5, 1.1, 2.6];
    let mut generation = 0;
    for (d, m) in maxima.iter().enumerate() {
        // Three ticks a day: the day keeps its highest.
        for (k, tick_max) in [1.0, *m, 1.0].into_iter().enumerate() {
            generation += 1;
            let mut t = tick(
                "sf",
                (100 + d as u64) * day + k as u64 * 60_000,
                generation,
                vec![],
                vec![],
            );
            t.max_multiplier = tick_max;
            s.record_tick(&t).unwrap();
        }
    }
    // Another region's days do not count.
    let mut other = tick("oak", 101 * day, 1, vec![], vec![]);
    other.max_multiplier = 9.0;
    s.record_tick(&other).unwrap();
    let mut got = s.daily_maxima("sf", 100 * day, 106 * day).unwrap();
    got.sort_by(f64::total_cmp);
    let mut want = maxima.to_vec();
    want.sort_by(f64::total_cmp);
    assert_eq!(got, want);
    // The window is whole days, the last one excluded.
    assert_eq!(s.daily_maxima("sf", 101 * day, 103 * day).unwrap().len(), 2);
    // The cap on day 106: the fourth-highest of the six days (4.5, 3.2 and
    // 2.6 are left out).
    let (from, to) = shared::emergency::lookback(shared::time::Timestamp(106 * day + 5));
    let days: Vec<shared::surge::Multiplier> = s
        .daily_maxima("sf", from.0, to.0)
        .unwrap()
        .into_iter()
        .map(|m| shared::surge::Multiplier::from_f64(m).unwrap())
        .collect();
    assert_eq!(
        shared::emergency::lawful_cap(&days).map(|m| m.as_f64()),
        Some(2.0)
    );
}

/// Arm events: each event id stored once, read back oldest first with
/// every field, and a value that does not fit is refused with nothing
/// written.
fn arm_events_round_trip(store: &mut dyn History) {
    use shared::experiment::results::{ArmEvent, ArmEventKind};
    let ev = |id: &str, at: u64, kind: ArmEventKind| ArmRecord {
        event_id: id.into(),
        experiment: "e1".into(),
        region: "sf".into(),
        policy: "none-0123abcd".into(),
        event: ArmEvent {
            arm: shared::quote::Ident::new("flat").expect("id"),
            at: shared::time::Timestamp(at),
            kind,
            multiplier: 1.5,
            fare_minor: (kind == ArmEventKind::Completed).then_some(1_234),
            wait_ms: (kind == ArmEventKind::Started).then_some(90_000),
            unit: 7,
        },
    };
    let rows = vec![
        ev("q_1", 2_000, ArmEventKind::Quote),
        ev("b_1:in_progress", 3_000, ArmEventKind::Started),
        ev("b_1:completed", 4_000, ArmEventKind::Completed),
    ];
    assert_eq!(store.record_arm_events(&rows).expect("record"), 3);
    // Redelivered: nothing new.
    assert_eq!(store.record_arm_events(&rows).expect("again"), 0);
    let mut other = ev("q_2", 1_000, ArmEventKind::Quote);
    other.experiment = "e2".into();
    store.record_arm_events(&[other]).expect("other experiment");
    let mut back = store.arm_tallies("sf", "e1", 100).expect("read");
    back.sort_by_key(|t| (t.arm.clone(), t.unit, t.kind));
    let events: Vec<_> = rows.iter().map(|r| r.event.clone()).collect();
    assert_eq!(back, shared::experiment::results::tally(&events));
    assert_eq!(store.arm_tallies("sf", "e1", 2).expect("limited").len(), 2);
    assert!(store
        .arm_tallies("sf", "nope", 10)
        .expect("none")
        .is_empty());
    let mut bad = ev("q_3", u64::MAX, ArmEventKind::Quote);
    assert!(matches!(
        store.record_arm_events(&[ev("q_4", 5_000, ArmEventKind::Quote), bad.clone()]),
        Err(StoreError::InvalidData(_))
    ));
    bad.event.at = shared::time::Timestamp(6_000);
    bad.event.multiplier = f64::NAN;
    assert!(store.record_arm_events(&[bad]).is_err());
    assert_eq!(store.arm_tallies("sf", "e1", 100).expect("read").len(), 3);
    // An experiment's early end, once per id, by region.
    store
        .record_experiment_end("sf", "e1", "arm flat: completion", 7_000)
        .expect("end");
    store
        .record_experiment_end("sf", "e1", "again", 8_000)
        .expect("repeat ignored");
    assert_eq!(
        store.experiment_ends("sf").expect("ends"),
        vec![("e1".to_owned(), "arm flat: completion".to_owned())]
    );
    assert!(store.experiment_ends("nyc").expect("none").is_empty());
    // Every value of a region's key is kept once, oldest first.
    store
        .record_experiment_value("sf", "[1]", 1_000)
        .expect("value");
    store
        .record_experiment_value("sf", "[1]", 2_000)
        .expect("again");
    store
        .record_experiment_value("sf", "[2]", 3_000)
        .expect("value");
    assert_eq!(
        store.experiment_values().expect("values"),
        vec![
            ("sf".to_owned(), "[1]".to_owned()),
            ("sf".to_owned(), "[2]".to_owned())
        ]
    );
    // Regions keep their own: the same id elsewhere is another experiment.
    let mut elsewhere = ev("q_9", 2_500, ArmEventKind::Quote);
    elsewhere.region = "nyc".into();
    assert_eq!(store.record_arm_events(&[elsewhere]).expect("nyc"), 1);
    assert_eq!(store.arm_tallies("sf", "e1", 100).expect("sf").len(), 3);
    assert_eq!(store.arm_tallies("nyc", "e1", 100).expect("nyc").len(), 1);
    store
        .record_experiment_end("nyc", "e1", "its own reason", 9_000)
        .expect("nyc end");
    assert_eq!(
        store.experiment_ends("nyc").expect("ends"),
        vec![("e1".to_owned(), "its own reason".to_owned())]
    );
}

#[test]
fn arm_events_are_stored_once_and_read_back() {
    let mut s = Store::open_in_memory().expect("store");
    arm_events_round_trip(&mut s);
    // A controller arm's feedback: the arm's bookings that ended in the
    // window, newest first, with their waits; quotes and starts are not
    // outcomes.
    let recent = s
        .recent_arm_outcomes("sf", "e1", 0, 10_000, 10)
        .expect("recent");
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert!(recent[0].1, "the one ended booking completed");
    assert!(s
        .recent_arm_outcomes("sf", "e1", 5_000, 10_000, 10)
        .expect("later")
        .is_empty());
}

/// Every table has a lifetime: arm events go with the history; daily
/// maxima are kept for the retention plus the lawful cap's 60-day lookback.
#[test]
fn arm_events_and_daily_maxima_are_pruned_too() {
    use shared::experiment::results::{ArmEvent, ArmEventKind};
    const DAY: u64 = 86_400_000;
    let mut s = Store::open_in_memory().unwrap();
    // Ticks on day 0 and day 200, each a daily maximum.
    s.record_tick(&tick("nyc", 1_000, 1, vec![snap("a", "xl", 2.0)], vec![]))
        .unwrap();
    s.record_tick(&tick(
        "nyc",
        200 * DAY,
        2,
        vec![snap("a", "xl", 3.0)],
        vec![],
    ))
    .unwrap();
    let ev = |id: &str, at: u64| ArmRecord {
        event_id: id.into(),
        experiment: "e1".into(),
        region: "nyc".into(),
        policy: "none-0123abcd".into(),
        event: ArmEvent {
            arm: shared::quote::Ident::new("flat").expect("id"),
            at: shared::time::Timestamp(at),
            kind: ArmEventKind::Quote,
            multiplier: 1.5,
            fare_minor: None,
            wait_ms: None,
            unit: 7,
        },
    };
    s.record_arm_events(&[ev("q_old", 1_000), ev("q_new", 200 * DAY)])
        .unwrap();
    let maxima = |s: &Store| s.daily_maxima("nyc", 0, 300 * DAY).unwrap().len();
    assert_eq!(maxima(&s), 2);
    // History before day 150 goes: the old tick's snapshot and arm event;
    // daily maxima before day 150 - 61 = 89: day 0's.
    assert_eq!(s.prune(150 * DAY).unwrap(), 3);
    assert_eq!(maxima(&s), 1);
    let kept: u64 = s
        .arm_tallies("nyc", "e1", 100)
        .unwrap()
        .iter()
        .map(|t| t.count)
        .sum();
    assert_eq!(kept, 1, "the new arm event only");
    // Daily maxima within the lookback of a recent cutoff stay.
    assert_eq!(
        s.prune(250 * DAY).unwrap(),
        2,
        "the day-200 snapshot and arm event, not its daily maximum"
    );
    assert_eq!(maxima(&s), 1);
}
