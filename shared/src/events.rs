//! What the edge's events mean to the origin: the one rule that turns a
//! price check or a booking's transition into market demand or a ride
//! outcome.
//!
//! * A quote is demand of kind [`DemandKind::Quote`] (weighted below a ride
//!   request by the market's weights), counted once per rider and cell
//!   within the demand window: a rider refreshing the price is one signal.
//! * A confirmed booking is a [`DemandKind::RideRequest`], once per booking.
//! * A completed, cancelled or failed booking is a ride outcome (keyed by
//!   the booking id, so a redelivery stores nothing new).
//! * A started trip changes neither (its wait reaches the origin with the
//!   outcome).
//!
//! Every event may arrive more than once (queues deliver at least once);
//! each effect is idempotent by construction: demand through its key
//! ([`crate::market::DemandSeen::once`]), outcomes through their id.

use crate::api::{EdgeEvent, EdgeEventKind};
use crate::geo::LatLng;
use crate::market::{DemandKind, DriverId};
use crate::quote::QuoteClaims;

/// What an event does at the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Demand in the pickup's cell, counted once per `key` and cell within
    /// the demand window.
    Demand {
        /// Quote or ride request.
        kind: DemandKind,
        /// The dedup key.
        key: u64,
    },
    /// A ride outcome with this id.
    Outcome {
        /// Whether the ride was completed.
        completed: bool,
    },
    /// Nothing (counted only).
    Nothing,
}

/// The key a text dedups under (FNV-1a, the market's hash of external ids).
pub fn key_of(text: &str) -> u64 {
    DriverId::from_external(text).0
}

/// The effect of an event.
pub fn effect(e: &EdgeEvent) -> Effect {
    match e.kind {
        EdgeEventKind::Quote => Effect::Demand {
            kind: DemandKind::Quote,
            // Anonymous quotes dedup by their own id (redeliveries only).
            key: key_of(e.rider.as_deref().unwrap_or(&e.id)),
        },
        EdgeEventKind::BookingConfirmed => Effect::Demand {
            kind: DemandKind::RideRequest,
            key: key_of(e.booking_id.as_deref().unwrap_or(&e.id)),
        },
        EdgeEventKind::BookingStarted => Effect::Nothing,
        EdgeEventKind::BookingCompleted => Effect::Outcome { completed: true },
        EdgeEventKind::BookingCancelled | EdgeEventKind::BookingFailed => {
            Effect::Outcome { completed: false }
        }
    }
}

/// An event of a quote priced in an experiment's arm, as the origin keeps
/// it for the experiment's results ([`crate::experiment::results`]): the
/// arm's stamp and what happened. `None` outside an experiment, or when the
/// stamp is not identifiers.
pub fn arm_event(
    e: &EdgeEvent,
) -> Option<(
    crate::experiment::ArmStamp,
    crate::experiment::results::ArmEvent,
)> {
    use crate::experiment::results::{ArmEvent, ArmEventKind};
    let stamp = e.experiment.as_ref()?.stamp().ok()?;
    let kind = match e.kind {
        EdgeEventKind::Quote => ArmEventKind::Quote,
        EdgeEventKind::BookingConfirmed => ArmEventKind::Confirmed,
        EdgeEventKind::BookingStarted => ArmEventKind::Started,
        EdgeEventKind::BookingCompleted => ArmEventKind::Completed,
        EdgeEventKind::BookingCancelled => ArmEventKind::Cancelled,
        EdgeEventKind::BookingFailed => ArmEventKind::Failed,
    };
    let event = ArmEvent {
        arm: stamp.arm.clone(),
        at: crate::time::Timestamp(e.timestamp),
        kind,
        multiplier: e.multiplier.unwrap_or(1.0),
        fare_minor: e.fare_minor.filter(|_| kind == ArmEventKind::Completed),
        wait_ms: e.wait_ms,
        unit: stamp.unit,
    };
    Some((stamp, event))
}

/// The event a quote sends the origin: demand at its pickup, keyed by
/// the quote id (and the rider's key when the rider is known), with the
/// multiplier and experiment arm it was priced at.
pub fn quote_event(claims: &QuoteClaims, pickup: LatLng, user_id: Option<&str>) -> EdgeEvent {
    EdgeEvent {
        id: claims.quote_id.to_string(),
        kind: EdgeEventKind::Quote,
        region: claims.region.to_string(),
        latitude: pickup.lat(),
        longitude: pickup.lng(),
        vehicle_type: claims.class.as_str().to_owned(),
        timestamp: claims.issued_at.0,
        rider: user_id.map(rider_key),
        booking_id: None,
        quote_id: Some(claims.quote_id.to_string()),
        multiplier: Some(claims.surge.as_f64()),
        fare_minor: None,
        currency: None,
        wait_ms: None,
        experiment: claims.arm.as_ref().map(Into::into),
    }
}

/// The opaque rider key a quote event carries: a hash of the user id, so
/// the origin never sees the id itself.
pub fn rider_key(user_id: &str) -> String {
    format!("{:016x}", key_of(user_id))
}

/// An isolate's batch of events on their way to the queue. A batch goes as
/// one message when it holds `max` events, or when its own timer fires
/// (started by its first event): a timer whose batch has already gone does
/// nothing, so a busy isolate sends full batches rather than whatever has
/// gathered when an older batch's timer fires.
#[derive(Debug)]
pub struct Batcher<T> {
    pending: Vec<T>,
    /// The number of the batch gathering now.
    batch: u64,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            batch: 0,
        }
    }
}

/// What the shell does after [`Batcher::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// Send this full batch now.
    Send(Vec<T>),
    /// The batch's first event: start its timer, and call
    /// [`Batcher::timer_fired`] with this number when it fires.
    StartTimer(u64),
    /// Nothing yet.
    Wait,
}

impl<T> Batcher<T> {
    /// Adds an event to the gathering batch.
    pub fn push(&mut self, event: T, max: usize) -> Next<T> {
        self.pending.push(event);
        if self.pending.len() >= max {
            Next::Send(self.take())
        } else if self.pending.len() == 1 {
            Next::StartTimer(self.batch)
        } else {
            Next::Wait
        }
    }

    /// The timer of batch `batch` fired: that batch's events if it has not
    /// gone yet, else none.
    pub fn timer_fired(&mut self, batch: u64) -> Vec<T> {
        if batch == self.batch && !self.pending.is_empty() {
            self.take()
        } else {
            Vec::new()
        }
    }

    fn take(&mut self) -> Vec<T> {
        self.batch += 1;
        std::mem::take(&mut self.pending)
    }
}

/// How a queue consumer's messages become the origin's posts: consecutive
/// messages (`events_per_message[i]` events in message `i`) grouped so that
/// no post carries more than `max` events. A message is never split (it is
/// acknowledged or retried whole); one holding more than `max` events by
/// itself is a post of its own, for the origin to refuse.
pub fn posts(events_per_message: &[usize], max: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut events) = (0, 0);
    for (i, &n) in events_per_message.iter().enumerate() {
        if i > start && events + n > max {
            out.push(start..i);
            (start, events) = (i, 0);
        }
        events += n;
    }
    if start < events_per_message.len() {
        out.push(start..events_per_message.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_when_full_or_when_its_own_timer_fires() {
        let mut b = Batcher::default();
        assert_eq!(b.push(1, 3), Next::StartTimer(0));
        assert_eq!(b.push(2, 3), Next::Wait);
        assert_eq!(b.push(3, 3), Next::Send(vec![1, 2, 3]));
        // The next batch has its own timer.
        assert_eq!(b.push(4, 3), Next::StartTimer(1));
        // The first batch's timer fires late: it has gone, and the second
        // batch keeps gathering for its own timer.
        assert!(b.timer_fired(0).is_empty());
        assert_eq!(b.push(5, 3), Next::Wait);
        assert_eq!(b.timer_fired(1), vec![4, 5]);
        // A timer fires once per batch; the next event starts a new one.
        assert!(b.timer_fired(1).is_empty());
        assert_eq!(b.push(6, 3), Next::StartTimer(2));
        assert_eq!(b.timer_fired(2), vec![6]);
    }

    #[test]
    fn posts_cover_every_message_in_order_within_the_limit() {
        assert!(posts(&[], 1_000).is_empty());
        assert_eq!(posts(&[100; 10], 1_000), vec![0..10]);
        assert_eq!(posts(&[100; 11], 1_000), vec![0..10, 10..11]);
        assert_eq!(posts(&[1, 999, 1], 1_000), vec![0..2, 2..3]);
        // An oversized message goes alone; its neighbours are not held back.
        assert_eq!(posts(&[5, 1_200, 5], 1_000), vec![0..1, 1..2, 2..3]);
        for counts in [
            vec![3, 7, 100, 1, 99, 100, 100, 2],
            vec![1; 2_500],
            vec![100; 37],
        ] {
            let ps = posts(&counts, 250);
            let flat: Vec<usize> = ps.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..counts.len()).collect::<Vec<_>>());
            for r in &ps {
                assert!(counts[r.clone()].iter().sum::<usize>() <= 250);
                // Greedy: the next message would not have fitted.
                if r.end < counts.len() {
                    assert!(counts[r.clone()].iter().sum::<usize>() + counts[r.end] > 250);
                }
            }
        }
    }

    fn event(kind: EdgeEventKind, id: &str) -> EdgeEvent {
        EdgeEvent {
            id: id.into(),
            kind,
            region: "sf".into(),
            latitude: 37.77,
            longitude: -122.42,
            vehicle_type: "standard".into(),
            timestamp: 1,
            rider: None,
            booking_id: None,
            quote_id: None,
            multiplier: None,
            fare_minor: None,
            currency: None,
            wait_ms: None,
            experiment: None,
        }
    }

    fn claims(quote_id: &str) -> QuoteClaims {
        use crate::fare::VehicleClass;
        use crate::quote::Ident;
        use crate::time::{Millis, Timestamp};
        QuoteClaims {
            quote_id: Ident::new(quote_id).expect("id"),
            region: Ident::new("sf").expect("region"),
            cell: crate::geo::Cell::at(pickup(), crate::geo::DEFAULT_LEVEL),
            class: VehicleClass::Xl,
            surge: crate::surge::Multiplier::from_tenths(17).expect("m"),
            base_fare: 1_000,
            final_fare: 1_700,
            currency: crate::fare::Currency::USD,
            distance_m: 3_000,
            duration_s: 600,
            grid_generation: 4,
            issued_at: Timestamp(5_000),
            expires_at: Timestamp(5_000) + Millis::from_secs(120),
            source: None,
            arm: None,
        }
    }

    fn pickup() -> LatLng {
        LatLng::new(37.77, -122.42).expect("point")
    }

    #[test]
    fn a_quote_is_demand_at_its_pickup_once_per_rider() {
        let e = quote_event(&claims("q_1"), pickup(), Some("rider-7"));
        assert_eq!(e.kind, EdgeEventKind::Quote);
        assert_eq!((e.id.as_str(), e.quote_id.as_deref()), ("q_1", Some("q_1")));
        assert_eq!((e.latitude, e.longitude), (37.77, -122.42));
        assert_eq!((e.region.as_str(), e.vehicle_type.as_str()), ("sf", "xl"));
        assert_eq!((e.timestamp, e.multiplier), (5_000, Some(1.7)));
        // The rider travels as its key, never as the id itself.
        assert_eq!(e.rider, Some(rider_key("rider-7")));
        let again = quote_event(&claims("q_2"), pickup(), Some("rider-7"));
        assert_eq!(effect(&e), effect(&again));
        // Anonymous quotes are each their own demand.
        let (a, b) = (
            quote_event(&claims("q_1"), pickup(), None),
            quote_event(&claims("q_2"), pickup(), None),
        );
        assert_eq!(a.rider, None);
        assert_ne!(effect(&a), effect(&b));
    }

    #[test]
    fn quotes_dedup_per_rider_and_bookings_per_booking() {
        let mut a = event(EdgeEventKind::Quote, "q_1");
        let mut b = event(EdgeEventKind::Quote, "q_2");
        // Anonymous: each quote is its own key.
        assert_ne!(effect(&a), effect(&b));
        a.rider = Some(rider_key("u1"));
        b.rider = Some(rider_key("u1"));
        assert_eq!(effect(&a), effect(&b));
        assert!(matches!(
            effect(&a),
            Effect::Demand {
                kind: DemandKind::Quote,
                ..
            }
        ));
        let mut c = event(EdgeEventKind::BookingConfirmed, "b_1:confirmed");
        c.booking_id = Some("b_1".into());
        assert_eq!(
            effect(&c),
            Effect::Demand {
                kind: DemandKind::RideRequest,
                key: key_of("b_1")
            }
        );
        assert_eq!(
            effect(&event(EdgeEventKind::BookingCompleted, "x")),
            Effect::Outcome { completed: true }
        );
        for k in [
            EdgeEventKind::BookingCancelled,
            EdgeEventKind::BookingFailed,
        ] {
            assert_eq!(effect(&event(k, "x")), Effect::Outcome { completed: false });
        }
        assert_eq!(
            effect(&event(EdgeEventKind::BookingStarted, "x")),
            Effect::Nothing
        );
        assert_ne!(rider_key("u1"), rider_key("u2"));
        assert!(!rider_key("u1").contains("u1"));
    }
}
