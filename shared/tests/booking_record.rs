//! A booking's transitions in the core (`shared::booking::BookingRecord`):
//! any sequence keeps the state machine, the history and the money
//! straight; the stored shape reads back.

use proptest::prelude::*;
use shared::booking::{
    Action, BookingRecord, BookingStatus, Party, StepRecord, Terms, TermsRecord, Transition,
    DEFAULT_CANCELLATION_GRACE,
};
use shared::fare::{Currency, Tariff, Trip, VehicleClass};
use shared::time::Timestamp;

const QUOTE: i64 = 2_450;

fn record() -> BookingRecord {
    let tariff = Tariff::built_in(Currency::USD, VehicleClass::Standard).expect("usd");
    let terms = Terms::with_defaults(tariff);
    BookingRecord {
        booking_id: "b_1".into(),
        quote_id: "q_1".into(),
        region: "sf".into(),
        cell: "8085809c".into(),
        class: VehicleClass::Standard,
        status: BookingStatus::Confirmed,
        quoted_fare: QUOTE,
        final_fare: QUOTE,
        currency: "USD".into(),
        surge_tenths: 15,
        source: None,
        distance_m: 4_000,
        duration_s: 600,
        terms: TermsRecord::of(&terms),
        confirmed_at: 1_000_000,
        started_at: None,
        cancellation_fee: None,
        fare_adjustment: None,
        history: vec![StepRecord {
            status: BookingStatus::Confirmed,
            at: 1_000_000,
            actor: Party::Rider,
            reason: None,
        }],
        experiment: None,
    }
}

fn transition() -> impl Strategy<Value = Transition> {
    let action = prop_oneof![
        Just(Action::Start),
        Just(Action::Complete),
        Just(Action::Cancel),
        Just(Action::Fail)
    ];
    let party = prop_oneof![Just(Party::Rider), Just(Party::Dispatch)];
    let driven = prop::option::of((1u32..20_000, 1u32..3_600));
    (action, party, 0u64..1_000_000, driven).prop_map(|(action, party, after, driven)| Transition {
        action,
        party,
        at: Timestamp(1_000_000 + after),
        reason: Some("why".into()),
        driven: driven.map(|(distance_m, duration_s)| Trip {
            distance_m,
            duration_s,
        }),
    })
}

fn terminal(s: BookingStatus) -> bool {
    matches!(
        s,
        BookingStatus::Completed | BookingStatus::Cancelled | BookingStatus::Failed
    )
}

proptest! {
    #[test]
    fn any_sequence_keeps_the_money_and_the_history_straight(
        ts in prop::collection::vec(transition(), 0..12)
    ) {
        let mut b = record();
        let fee = b.terms.terms(Currency::USD).cancellation_fee;
        let mut applied = 0;
        for t in &ts {
            let before = b.clone();
            match b.apply(t) {
                Ok(next) => {
                    applied += 1;
                    prop_assert!(!terminal(before.status), "acted on a terminal booking");
                    prop_assert_eq!(next, b.status);
                }
                Err(_) => prop_assert_eq!(&b, &before, "a refused transition changed the record"),
            }
        }
        // Every status entered is in the history, once; a terminal
        // state is reached at most once and is the last.
        prop_assert_eq!(b.history.len(), 1 + applied);
        let terminals = b.history.iter().filter(|s| terminal(s.status)).count();
        prop_assert!(terminals <= 1);
        if terminals == 1 {
            prop_assert!(terminal(b.history.last().expect("steps").status));
        }
        // The money: nothing but the fee for a cancellation, nothing
        // for a failure, the quote unless a completed trip was
        // repriced (and then the reason is given).
        match b.status {
            BookingStatus::Cancelled => {
                prop_assert!(b.final_fare == 0 || b.final_fare == fee);
                prop_assert_eq!(b.cancellation_fee, Some(b.final_fare));
            }
            BookingStatus::Failed => prop_assert_eq!(b.final_fare, 0),
            BookingStatus::Completed => prop_assert!(
                b.final_fare == QUOTE || b.fare_adjustment.is_some()
            ),
            _ => prop_assert_eq!(b.final_fare, QUOTE),
        }
        prop_assert!(b.final_fare <= QUOTE + fee || b.fare_adjustment.is_some());
    }
}

#[test]
fn a_riders_cancellation_is_free_within_the_grace_and_costs_the_fee_after() {
    let cancel = |after: u64| {
        let mut b = record();
        b.apply(&Transition {
            action: Action::Cancel,
            party: Party::Rider,
            at: Timestamp(b.confirmed_at + after),
            reason: None,
            driven: None,
        })
        .expect("cancels");
        b.final_fare
    };
    assert_eq!(cancel(1_000), 0);
    assert_eq!(
        cancel(DEFAULT_CANCELLATION_GRACE.0 + 1),
        record().terms.terms(Currency::USD).cancellation_fee
    );
}

#[test]
fn the_stored_shape_reads_back() {
    let b = record();
    let text = serde_json::to_string(&b).expect("json");
    let back: BookingRecord = serde_json::from_str(&text).expect("reads");
    assert_eq!(back, b);
    // A record from before experiments reads without one.
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v.as_object_mut().expect("object").remove("experiment");
    let old: BookingRecord = serde_json::from_value(v).expect("reads");
    assert_eq!(old.experiment, None);
}
