//! The edge's estimate path without I/O: JSON → `EstimateRequest` → the
//! core's validation (the same call the worker makes) → the pricing desk
//! with no grid. Valid requests must price within the caps; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::api::{EstimateRequest, MAX_USER_ID};
use shared::desk::{Desk, DeskInputs};
use shared::fare::{price, RouteModel, Tariff};
use shared::grid::Staleness;
use shared::surge::Caps;
use shared::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<EstimateRequest>(data) else {
        return;
    };
    let Ok(v) = r.validate(&RouteModel::default()) else {
        return;
    };
    assert!(v.trip.distance_m <= shared::fare::MAX_TRIP_M);
    assert!(v.user_id.as_ref().is_none_or(|u| u.len() <= MAX_USER_ID));
    let caps = Caps::DEFAULT;
    let desk = Desk::new(
        None,
        DeskInputs {
            caps,
            staleness: Staleness::default(),
            now: Timestamp(1_800_000_000_000),
            from_cache: false,
        },
    );
    let e = desk.at(v.pickup);
    assert!(e.multiplier >= caps.min() && e.multiplier <= caps.max());
    let fare = price(&Tariff::default_for(v.class), v.trip, e.multiplier);
    assert!(fare.total >= 0);
});
