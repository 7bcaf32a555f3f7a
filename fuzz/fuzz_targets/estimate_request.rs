//! The edge's estimate path without I/O: JSON → `EstimateRequest` → the
//! core's validation (the same call the worker makes) → the pricing desk's
//! quote with no grid (the same call too). Valid requests must price within
//! the caps and answer as JSON; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::api::{EstimateRequest, MAX_USER_ID};
use shared::desk::{Desk, DeskInputs, QuoteAsk};
use shared::fare::{RouteModel, Tariff};
use shared::quote::Ident;
use shared::grid::Staleness;
use shared::surge::Caps;
use shared::time::{Millis, Timestamp};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<EstimateRequest>(data) else {
        return;
    };
    let Ok(v) = r.validate(&RouteModel::default()) else {
        return;
    };
    assert!(v.trip.distance_m <= shared::fare::MAX_TRIP_M);
    // A user id over the limit never validates (it keys nothing after).
    assert!(r.user_id.as_ref().is_none_or(|u| u.len() <= MAX_USER_ID));
    let caps = Caps::DEFAULT;
    let desk = Desk::new(
        None,
        DeskInputs {
            caps,
            staleness: Staleness::default(),
            now: Timestamp(1_800_000_000_000),
            from_cache: false,
            // A declared emergency without a grid prices at 1.0: still
            // within the caps.
            emergency: data.len() % 2 == 1,
            degraded: false,
        },
    );
    let region = v.region.clone().unwrap_or_else(|| Ident::new("sf").expect("id"));
    let quote = desk.quote(QuoteAsk {
        region: &region,
        class: v.class,
        pickup: v.pickup,
        trip: v.trip,
        terms: &shared::fare::Terms::with_defaults(Tariff::default_for(v.class)),
        quote_id: Ident::new("q_fuzz").expect("id"),
        valid_for: Millis::from_secs(120),
    });
    let m = quote.effective.multiplier;
    assert!(m >= caps.min() && m <= caps.max());
    assert!(quote.fare.total >= 0);
    let answer = serde_json::to_vec(&shared::api::EstimateResponse::new(&quote, "token".into())).expect("answer encodes");
    assert!(!answer.is_empty());
});
