//! Pricing-state snapshots: a market and engine restored from a snapshot
//! continue exactly as the originals do, and no byte string makes the
//! decoder panic.

use proptest::prelude::*;
use shared::fare::VehicleClass;
use shared::forecast::CellForecasts;
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::market::{DemandKind, DemandSeen, DriverId, DriverSeen, Market, MarketConfig};
use shared::state::StateError;

use shared::surge::{Caps, CellInput, DefaultCurve, SurgeConfig, SurgeEngine};
use shared::time::{Millis, Timestamp};

type Engine = SurgeEngine<DefaultCurve>;

fn encode(m: &Market, e: &Engine) -> Vec<u8> {
    shared::state::encode(m, e, &CellForecasts::default())
}

fn decode_into(bytes: &[u8], m: &mut Market, e: &mut Engine) -> Result<(), StateError> {
    shared::state::decode_into(bytes, m, e, &mut CellForecasts::default())
}

fn config() -> MarketConfig {
    MarketConfig {
        supply_ttl: Millis::from_secs(60),
        demand_window: Millis::from_secs(300),
        bucket: Millis::from_secs(5),
        ..MarketConfig::default()
    }
}

fn fresh() -> (Market, Engine) {
    (
        Market::new(config()).expect("market"),
        SurgeEngine::new(DefaultCurve, SurgeConfig::default()).expect("engine"),
    )
}

fn cell(i: u64) -> Cell {
    let lat = 37.70 + (i % 7) as f64 * 0.01;
    let lng = -122.48 + (i % 5) as f64 * 0.01;
    Cell::at(LatLng::new(lat, lng).expect("ll"), DEFAULT_LEVEL)
}

/// Events of second `s` of a deterministic busy market.
fn feed(m: &mut Market, s: u64, t0: u64) {
    let at = Timestamp(t0 + s * 1_000);
    for d in 0..(s % 9) {
        m.driver_seen(DriverSeen {
            driver: DriverId::from_external(&format!("d{}", (s * 7 + d) % 40)),
            cell: cell(s + d),
            class: if d % 3 == 0 {
                VehicleClass::Premium
            } else {
                VehicleClass::Standard
            },
            available: d % 4 != 0,
            at,
        });
    }
    for k in 0..(s % 13) {
        m.demand_seen(DemandSeen {
            cell: cell(s * 3 + k),
            class: VehicleClass::Standard,
            kind: if k % 2 == 0 {
                DemandKind::RideRequest
            } else {
                DemandKind::Quote
            },
            at: Timestamp(at.0 - k * 700),
            // Some keyed: their keys are part of the state too.
            once: (k % 3 == 0).then_some(s * 7 + k),
        });
    }
}

/// A tick as the origin runs it: counts per cell into the engine.
fn tick(m: &mut Market, e: &mut Engine, now: u64) -> Vec<(Cell, u16, u32, u32)> {
    let counts = m.snapshot(Timestamp(now));
    let mut per_cell = std::collections::BTreeMap::<Cell, (u32, u32)>::new();
    for ((c, _), n) in &counts {
        let x = per_cell.entry(*c).or_default();
        x.0 += n.supply;
        x.1 += n.demand;
    }
    let inputs: Vec<CellInput> = per_cell
        .iter()
        .map(|(c, (s, d))| CellInput {
            cell: *c,
            supply: *s,
            demand: *d,
            caps: Caps::DEFAULT,
            ahead: None,
        })
        .collect();
    e.update(&inputs)
        .iter()
        .map(|r| (r.cell, r.multiplier.tenths(), r.supply, r.demand))
        .collect()
}

#[test]
fn a_restored_region_continues_exactly_like_the_original() {
    let t0 = 1_800_000_000_000;
    let (mut m, mut e) = fresh();
    for s in 0..120 {
        feed(&mut m, s, t0);
        if s % 5 == 4 {
            tick(&mut m, &mut e, t0 + s * 1_000 + 999);
        }
    }
    let snapshot = encode(&m, &e);
    assert_eq!(&snapshot[..4], b"EQS\x04");
    let (mut m2, mut e2) = fresh();
    decode_into(&snapshot, &mut m2, &mut e2).expect("decodes");
    assert_eq!(encode(&m2, &e2), snapshot, "encoding is deterministic");
    let mut surged = false;
    for s in 120..500 {
        feed(&mut m, s, t0);
        feed(&mut m2, s, t0);
        if s % 5 == 4 {
            let now = t0 + s * 1_000 + 999;
            let a = tick(&mut m, &mut e, now);
            assert_eq!(a, tick(&mut m2, &mut e2, now), "tick at second {s}");
            surged |= a.iter().any(|c| c.1 > 10);
        }
    }
    assert!(surged, "the scenario exercises surge, not only 1.0");
}

#[test]
fn an_empty_region_round_trips() {
    let (m, e) = fresh();
    let bytes = encode(&m, &e);
    let (mut m2, mut e2) = fresh();
    decode_into(&bytes, &mut m2, &mut e2).expect("decodes");
    assert_eq!(encode(&m2, &e2), bytes);
}

#[test]
fn damaged_snapshots_are_refused_and_leave_the_state_alone() {
    let t0 = 1_800_000_000_000;
    let (mut m, mut e) = fresh();
    for s in 0..30 {
        feed(&mut m, s, t0);
    }
    tick(&mut m, &mut e, t0 + 30_000);
    let good = encode(&m, &e);
    let (mut m2, mut e2) = fresh();
    let before = encode(&m2, &e2);
    assert_eq!(
        decode_into(b"nope", &mut m2, &mut e2),
        Err(StateError::NotASnapshot)
    );
    let mut v5 = good.clone();
    v5[3] = 5;
    assert_eq!(
        decode_into(&v5, &mut m2, &mut e2),
        Err(StateError::UnsupportedVersion(5))
    );
    for cut in 4..good.len() {
        assert!(
            decode_into(&good[..cut], &mut m2, &mut e2).is_err(),
            "cut {cut}"
        );
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        decode_into(&long, &mut m2, &mut e2),
        Err(StateError::TrailingBytes(1))
    );
    assert_eq!(encode(&m2, &e2), before, "nothing was half-applied");
}

proptest! {
    #[test]
    fn no_byte_string_panics_the_decoder(
        version in 1u8..=3,
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = b"EQS".to_vec();
        bytes.push(version);
        bytes.extend_from_slice(&tail);
        let (mut m, mut e) = fresh();
        let _ = decode_into(&bytes, &mut m, &mut e);
    }

    #[test]
    fn flipped_bytes_never_panic(pos in 4usize..200, byte in any::<u8>()) {
        let t0 = 1_800_000_000_000;
        let (mut m, mut e) = fresh();
        for s in 0..20 {
            feed(&mut m, s, t0);
        }
        tick(&mut m, &mut e, t0 + 20_000);
        let mut bytes = encode(&m, &e);
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        let (mut m2, mut e2) = fresh();
        let _ = decode_into(&bytes, &mut m2, &mut e2);
    }
}
