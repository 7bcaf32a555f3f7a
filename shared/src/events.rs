//! What the edge's events mean to the origin: the one rule that turns a
//! price check or a booking's transition into market demand or a ride
//! outcome.
//!
//! * A quote is demand of kind [`DemandKind::Quote`] (weighted below a ride
//!   request by the market's weights), counted once per asker and cell
//!   within the demand window, in at most
//!   [`crate::market::MAX_CELLS_PER_KEY`] cells per asker: a rider
//!   refreshing the price is one signal, and a client scanning the map is
//!   not a rider everywhere. The asker is the verified rider
//!   ([`rider_key`]) or, for a rider the edge cannot verify, the client
//!   (its address's keyed digest, [`client_key`]): an id the client makes
//!   up buys nothing, since requests cannot choose their key.
//! * A confirmed booking is a [`DemandKind::RideRequest`], once per booking.
//! * A completed, cancelled or failed booking is a ride outcome (keyed by
//!   the booking id, so a redelivery stores nothing new).
//! * A started trip changes neither (its wait reaches the origin with the
//!   outcome).
//!
//! Every event may arrive more than once (queues deliver at least once);
//! each effect is idempotent by construction: demand through its key
//! ([`crate::market::DemandSeen::once`]), outcomes through their id.

use serde::{Deserialize, Serialize};

use crate::market::{DemandKind, DriverId};
use crate::quote::Keyring;

/// What an edge event reports (the wire's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A rider asked for a price (a quote was issued).
    Quote,
    /// A quote was confirmed: a booking exists.
    BookingConfirmed,
    /// The trip started.
    BookingStarted,
    /// The trip ended; `fare_minor` is the final fare.
    BookingCompleted,
    /// The booking was cancelled; `fare_minor` is the fee, if any.
    BookingCancelled,
    /// No driver was found.
    BookingFailed,
}

/// What an event reports, as the core reads it (the wire's `EdgeEvent`
/// converts to it: `EdgeEvent::reported`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reported<'a> {
    /// What happened.
    pub kind: EventKind,
    /// The event's id.
    pub id: &'a str,
    /// Quotes: the asker's key.
    pub rider: Option<&'a str>,
    /// Bookings: the booking.
    pub booking_id: Option<&'a str>,
    /// When.
    pub at: crate::time::Timestamp,
    /// The multiplier quoted.
    pub multiplier: Option<f64>,
    /// Completed: the final fare; cancelled: the fee (minor units).
    pub fare_minor: Option<u64>,
    /// Ms from confirmation to pickup.
    pub wait_ms: Option<u64>,
    /// The experiment arm the quote was priced in.
    pub arm: Option<crate::experiment::ArmStamp>,
}

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
pub fn effect(e: &Reported<'_>) -> Effect {
    match e.kind {
        EventKind::Quote => Effect::Demand {
            kind: DemandKind::Quote,
            // Anonymous quotes dedup by their own id (redeliveries only).
            key: key_of(e.rider.unwrap_or(e.id)),
        },
        EventKind::BookingConfirmed => Effect::Demand {
            kind: DemandKind::RideRequest,
            key: key_of(e.booking_id.unwrap_or(e.id)),
        },
        EventKind::BookingStarted => Effect::Nothing,
        EventKind::BookingCompleted => Effect::Outcome { completed: true },
        EventKind::BookingCancelled | EventKind::BookingFailed => {
            Effect::Outcome { completed: false }
        }
    }
}

/// An event of a quote priced in an experiment's arm, as the origin keeps
/// it for the experiment's results ([`crate::experiment::results`]): the
/// arm's stamp and what happened. `None` outside an experiment, or when the
/// stamp is not identifiers.
pub fn arm_event(
    e: &Reported<'_>,
) -> Option<(
    crate::experiment::ArmStamp,
    crate::experiment::results::ArmEvent,
)> {
    use crate::experiment::results::{ArmEvent, ArmEventKind};
    let stamp = e.arm.clone()?;
    let kind = match e.kind {
        EventKind::Quote => ArmEventKind::Quote,
        EventKind::BookingConfirmed => ArmEventKind::Confirmed,
        EventKind::BookingStarted => ArmEventKind::Started,
        EventKind::BookingCompleted => ArmEventKind::Completed,
        EventKind::BookingCancelled => ArmEventKind::Cancelled,
        EventKind::BookingFailed => ArmEventKind::Failed,
    };
    let event = ArmEvent {
        arm: stamp.arm.clone(),
        at: e.at,
        kind,
        multiplier: e.multiplier.unwrap_or(1.0),
        fare_minor: e.fare_minor.filter(|_| kind == ArmEventKind::Completed),
        wait_ms: e.wait_ms,
        unit: stamp.unit,
    };
    Some((stamp, event))
}

/// Why a ride outcome's figures are refused: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRefusal {
    /// `invalid_multiplier`, `invalid_fare` or `invalid_currency`.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

/// The one check of a ride outcome's figures, wherever an outcome arrives
/// (the origin's outcomes endpoint, the edge's booking events): a
/// multiplier that is a number ≥ 1, a fare in range, and a fare only with
/// its currency (ISO 4217). The currency's code as stored.
pub fn outcome_figures(
    multiplier: f64,
    fare_minor: Option<u64>,
    currency: Option<&str>,
) -> Result<Option<String>, OutcomeRefusal> {
    let refuse = |code, message: &str| OutcomeRefusal {
        code,
        message: message.to_owned(),
    };
    if !(multiplier.is_finite() && multiplier >= 1.0) {
        return Err(refuse(
            "invalid_multiplier",
            "multiplier must be a number >= 1",
        ));
    }
    match (fare_minor, currency) {
        (Some(f), _) if f > i64::MAX as u64 => {
            Err(refuse("invalid_fare", "fare_minor out of range"))
        }
        (Some(_), None) => Err(refuse("invalid_fare", "fare_minor needs a currency")),
        (_, Some(c)) => crate::fare::Currency::new(c)
            .map(|c| Some(c.as_str().to_owned()))
            .map_err(|e| refuse("invalid_currency", &e.to_string())),
        (None, None) => Ok(None),
    }
}

/// Whom a price check counts for: the verified rider ([`rider_key`]) or,
/// without one, the client ([`client_key`]). The one rule of the asker.
pub fn asker(
    rider: Option<&str>,
    keys: &Keyring,
    address: &str,
    now: crate::time::Timestamp,
) -> String {
    match rider {
        Some(r) => rider_key(r),
        None => client_key(keys, address, now),
    }
}

/// The asker key of a verified rider: a hash of its id, so the origin
/// never sees the id itself.
pub fn rider_key(user_id: &str) -> String {
    format!("{:016x}", key_of(user_id))
}

/// The asker key of a client whose rider is not verified: a digest of its
/// address and the UTC day under the signing key ([`Keyring::digest`]).
/// The address is never stored or sent; the key cannot be computed, or
/// chosen, without the signing key; and it changes every day.
pub fn client_key(keys: &Keyring, address: &str, now: crate::time::Timestamp) -> String {
    let day = now.0 / 86_400_000;
    let mut input = String::with_capacity(address.len() + 8);
    input.push_str(itoa::Buffer::new().format(day));
    input.push('|');
    input.push_str(address);
    format!("c{:016x}", keys.digest("demand-client", &input))
}

/// When a batch of events goes: once it holds `events` events, or before
/// its JSON array (`[e1,e2,...]`) would pass `bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most events in one batch (at least 1).
    pub events: usize,
    /// Most bytes of one batch's JSON array; an event that fills a batch by
    /// itself goes alone.
    pub bytes: usize,
}

/// An isolate's batch of events on their way to the queue. A batch goes as
/// one message when it is full ([`BatchLimits`]: the event that would
/// overfill it starts the next one), or when its own timer fires (started
/// by its first event): a timer whose batch has already gone does nothing,
/// so a busy isolate sends full batches rather than whatever has gathered
/// when an older batch's timer fires.
#[derive(Debug)]
pub struct Batcher<T> {
    pending: Vec<T>,
    /// The pending events' JSON bytes plus one separator each: the array's
    /// length less its closing bracket.
    bytes: usize,
    /// The number of the batch gathering now.
    batch: u64,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            bytes: 0,
            batch: 0,
        }
    }
}

/// What the shell does after [`Batcher::push`]: send batches, start the
/// new batch's timer, both or neither.
#[derive(Debug, PartialEq, Eq)]
pub struct Next<T> {
    /// Full batches to send now, in order: none, or the one the event
    /// completed, or the one it would have overfilled (and then, if the
    /// event fills a batch by itself, the event alone).
    pub send: Vec<Vec<T>>,
    /// The gathering batch's first event came: start its timer, and call
    /// [`Batcher::timer_fired`] with this number when it fires.
    pub start_timer: Option<u64>,
}

impl<T> Batcher<T> {
    /// Adds an event whose JSON is `size` bytes to the gathering batch.
    pub fn push(&mut self, event: T, size: usize, limits: BatchLimits) -> Next<T> {
        let mut send = Vec::new();
        // `[` or `,` before each event, `]` after the last.
        if !self.pending.is_empty() && self.bytes + size + 2 > limits.bytes {
            send.push(self.take());
        }
        self.pending.push(event);
        self.bytes += size + 1;
        let start_timer = if self.pending.len() >= limits.events || self.bytes + 1 >= limits.bytes {
            send.push(self.take());
            None
        } else {
            (self.pending.len() == 1).then_some(self.batch)
        };
        Next { send, start_timer }
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
        self.bytes = 0;
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
    use crate::api::{EdgeEvent, EdgeEventKind};
    use crate::geo::LatLng;
    use crate::quote::QuoteClaims;

    fn quote_event(claims: &QuoteClaims, pickup: LatLng, asker: String) -> EdgeEvent {
        EdgeEvent::quote(claims, pickup, asker)
    }

    fn effect(e: &EdgeEvent) -> Effect {
        super::effect(&e.reported())
    }

    /// Limits that never bind on bytes.
    const THREE: BatchLimits = BatchLimits {
        events: 3,
        bytes: usize::MAX,
    };

    fn sent<T>(send: Vec<Vec<T>>, timer: Option<u64>) -> Next<T> {
        Next {
            send,
            start_timer: timer,
        }
    }

    #[test]
    fn a_batch_goes_when_full_or_when_its_own_timer_fires() {
        let mut b = Batcher::default();
        assert_eq!(b.push(1, 1, THREE), sent(vec![], Some(0)));
        assert_eq!(b.push(2, 1, THREE), sent(vec![], None));
        assert_eq!(b.push(3, 1, THREE), sent(vec![vec![1, 2, 3]], None));
        // The next batch has its own timer.
        assert_eq!(b.push(4, 1, THREE), sent(vec![], Some(1)));
        // The first batch's timer fires late: it has gone, and the second
        // batch keeps gathering for its own timer.
        assert!(b.timer_fired(0).is_empty());
        assert_eq!(b.push(5, 1, THREE), sent(vec![], None));
        assert_eq!(b.timer_fired(1), vec![4, 5]);
        // A timer fires once per batch; the next event starts a new one.
        assert!(b.timer_fired(1).is_empty());
        assert_eq!(b.push(6, 1, THREE), sent(vec![], Some(2)));
        assert_eq!(b.timer_fired(2), vec![6]);
    }

    #[test]
    fn a_batch_goes_before_its_json_would_pass_the_byte_limit() {
        // `[aaaa,bbbb]` is 11 bytes.
        let limits = BatchLimits {
            events: 100,
            bytes: 11,
        };
        let mut b = Batcher::default();
        assert_eq!(b.push('a', 4, limits), sent(vec![], Some(0)));
        // Exactly full: it goes with this event.
        assert_eq!(b.push('b', 4, limits), sent(vec![vec!['a', 'b']], None));
        assert_eq!(b.push('c', 4, limits), sent(vec![], Some(1)));
        // `[cccc,ddddd]` would be 12: `c` goes, `d` starts the next batch
        // (with its own timer).
        assert_eq!(b.push('d', 5, limits), sent(vec![vec!['c']], Some(2)));
        // An event too large for any batch: the gathering one goes, then
        // the event alone.
        assert_eq!(
            b.push('e', 20, limits),
            sent(vec![vec!['d'], vec!['e']], None)
        );
        assert_eq!(b.push('f', 9, limits), sent(vec![vec!['f']], None));
        assert!(b.timer_fired(3).is_empty());
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
            terms: None,
        }
    }

    fn pickup() -> LatLng {
        LatLng::new(37.77, -122.42).expect("point")
    }

    #[test]
    fn an_event_leaves_out_its_absent_fields_and_reads_back_the_same() {
        for asker in [rider_key("rider-7"), "c0123456789abcdef".to_owned()] {
            let e = quote_event(&claims("q_1"), pickup(), asker);
            let json = serde_json::to_string(&e).expect("encode");
            assert!(!json.contains("null"), "{json}");
            let back: EdgeEvent = serde_json::from_str(&json).expect("decode");
            assert_eq!(back, e);
        }
    }

    #[test]
    fn a_quote_is_demand_at_its_pickup_once_per_asker() {
        let e = quote_event(&claims("q_1"), pickup(), rider_key("rider-7"));
        assert_eq!(e.kind, EdgeEventKind::Quote);
        assert_eq!((e.id.as_str(), e.quote_id.as_deref()), ("q_1", Some("q_1")));
        assert_eq!((e.latitude, e.longitude), (37.77, -122.42));
        assert_eq!((e.region.as_str(), e.vehicle_type.as_str()), ("sf", "xl"));
        assert_eq!((e.timestamp, e.multiplier), (5_000, Some(1.7)));
        // The rider travels as its key, never as the id itself.
        assert_eq!(e.rider, Some(rider_key("rider-7")));
        let again = quote_event(&claims("q_2"), pickup(), rider_key("rider-7"));
        assert_eq!(effect(&e), effect(&again));
        // A client: one key per address and day, whatever the quote; the
        // address is not in it, and another signing key gives another key.
        let keys = Keyring::parse("k1:client-key-test-secret-01").expect("keys");
        let day = crate::time::Timestamp(86_400_000 * 20_000 + 5);
        let k = client_key(&keys, "203.0.113.7", day);
        assert!(k.starts_with('c') && !k.contains("203"), "{k}");
        let (a, b) = (
            quote_event(&claims("q_1"), pickup(), k.clone()),
            quote_event(
                &claims("q_2"),
                pickup(),
                client_key(&keys, "203.0.113.7", day),
            ),
        );
        assert_eq!(effect(&a), effect(&b));
        assert_ne!(k, client_key(&keys, "203.0.113.8", day));
        let tomorrow = crate::time::Timestamp(day.0 + 86_400_000);
        assert_ne!(k, client_key(&keys, "203.0.113.7", tomorrow));
        let other = Keyring::parse("k1:another-signing-secret-02").expect("keys");
        assert_ne!(k, client_key(&other, "203.0.113.7", day));
    }

    #[test]
    fn an_outcomes_figures_are_checked_once() {
        assert_eq!(
            outcome_figures(1.5, Some(1_250), Some("USD")),
            Ok(Some("USD".into()))
        );
        assert_eq!(outcome_figures(1.0, None, None), Ok(None));
        let code = |m, f, c| outcome_figures(m, f, c).map_err(|r| r.code);
        assert_eq!(code(0.9, None, None), Err("invalid_multiplier"));
        assert_eq!(code(f64::NAN, None, None), Err("invalid_multiplier"));
        assert_eq!(code(1.0, Some(5), None), Err("invalid_fare"));
        assert_eq!(code(1.0, Some(u64::MAX), Some("USD")), Err("invalid_fare"));
        assert_eq!(code(1.0, Some(5), Some("XXXX")), Err("invalid_currency"));
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
