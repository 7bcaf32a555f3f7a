//! Bookings: what happens after a quote is confirmed.
//!
//! The rules of a booking's life live here, once, with no I/O and `now`
//! passed in; the edge's ledger object stores bookings and calls these:
//!
//! * the state machine ([`BookingStatus::after`]): `confirmed →
//!   in_progress → completed`, `confirmed → cancelled | failed`,
//!   `in_progress → cancelled` (by dispatch only), nothing else;
//! * who may do what ([`Party`]): the rider reads and cancels a booking
//!   not yet started; dispatch (the operator's system, which also acts for
//!   drivers) reads and does every transition;
//! * the money: the cancellation fee ([`Terms::cancellation_fee`]) and the
//!   final fare ([`Terms::settle`]: the quoted price unless the trip
//!   differs from the estimate by more than the tolerance);
//! * identifiers: one booking per quote ([`booking_id_for`]);
//! * the booking token, a signed capability for one booking
//!   ([`BookingClaims`]);
//! * idempotent retries ([`replay`]);
//! * the booking's record and each transition's effect on it — status,
//!   money, history ([`BookingRecord::apply`], in `record.rs`).

use std::fmt;

mod record;
pub use record::{ArmRecord, BookingRecord, StepRecord, TermsRecord, Transition};

use sha2::{Digest, Sha256};

use crate::fare::{price, Trip};
pub use crate::fare::{
    Terms, DEFAULT_CANCELLATION_FEE, DEFAULT_CANCELLATION_GRACE, DEFAULT_REPRICE_TOLERANCE_PERCENT,
};
use crate::quote::{Ident, Keyring, QuoteError};
use crate::surge::Multiplier;
use crate::time::{Millis, Timestamp};

/// Where a booking is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookingStatus {
    /// Confirmed from a quote; waiting for a driver.
    Confirmed,
    /// The rider is in the car.
    InProgress,
    /// The trip ended; the final fare is known.
    Completed,
    /// Cancelled before completion.
    Cancelled,
    /// No driver could be found.
    Failed,
}

/// What a party asks of a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The driver picked the rider up.
    Start,
    /// The trip ended.
    Complete,
    /// The booking is called off.
    Cancel,
    /// No driver was found.
    Fail,
}

/// Who is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The rider, holding the booking token.
    Rider,
    /// The operator's dispatch system (acting for itself or for a driver),
    /// holding `DISPATCH_TOKEN`.
    Dispatch,
}

/// A closed-set name that is not one of the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {found:?}")]
pub struct UnknownName {
    /// Which set.
    pub what: &'static str,
    /// The text found (truncated).
    pub found: String,
}

macro_rules! names {
    ($t:ty, $what:literal, $($v:ident => $n:literal),+) => {
        impl $t {
            /// Every value.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $n),+ }
            }

            /// Parses the wire name.
            pub fn parse(s: &str) -> Result<Self, UnknownName> {
                Self::ALL.iter().copied().find(|x| x.as_str() == s).ok_or_else(|| UnknownName {
                    what: $what,
                    found: s.chars().take(32).collect(),
                })
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(BookingStatus, "booking status",
    Confirmed => "confirmed", InProgress => "in_progress", Completed => "completed",
    Cancelled => "cancelled", Failed => "failed");
names!(Action, "action", Start => "start", Complete => "complete", Cancel => "cancel", Fail => "fail");
names!(Party, "party", Rider => "rider", Dispatch => "dispatch");

/// Why a transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// This party may not do this (here): HTTP 403.
    #[error("the {party} may not {action} a booking that is {status}")]
    Forbidden {
        /// Who asked.
        party: Party,
        /// What.
        action: Action,
        /// The booking's status.
        status: BookingStatus,
    },
    /// No such transition from the current status: HTTP 409.
    #[error("cannot {action} a booking that is {status}")]
    Invalid {
        /// What.
        action: Action,
        /// The booking's status.
        status: BookingStatus,
    },
}

impl TransitionError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden { .. } => "forbidden",
            Self::Invalid { .. } => "invalid_transition",
        }
    }
}

impl Party {
    /// Whether this party may act at all (riders only cancel; anyone who
    /// may see a booking may read it).
    pub fn may(self, action: Action) -> bool {
        match self {
            Party::Dispatch => true,
            Party::Rider => action == Action::Cancel,
        }
    }
}

impl BookingStatus {
    /// The status after `action` by `party`, or why not. The party is
    /// checked first: a rider starting a trip is refused as the wrong
    /// party whatever the status.
    pub fn after(self, action: Action, party: Party) -> Result<BookingStatus, TransitionError> {
        use BookingStatus::*;
        if !party.may(action) {
            return Err(TransitionError::Forbidden {
                party,
                action,
                status: self,
            });
        }
        match (self, action) {
            (Confirmed, Action::Start) => Ok(InProgress),
            (InProgress, Action::Complete) => Ok(Completed),
            (Confirmed, Action::Cancel) => Ok(Cancelled),
            (Confirmed, Action::Fail) => Ok(Failed),
            // A trip under way is stopped by the driver or dispatch only.
            (InProgress, Action::Cancel) if party == Party::Rider => {
                Err(TransitionError::Forbidden {
                    party,
                    action,
                    status: self,
                })
            }
            (InProgress, Action::Cancel) => Ok(Cancelled),
            (status, action) => Err(TransitionError::Invalid { action, status }),
        }
    }

    /// Whether no transition leaves this status.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BookingStatus::Completed | BookingStatus::Cancelled | BookingStatus::Failed
        )
    }
}

impl Terms {
    /// The fee for a cancellation at `now` by `party` of a booking
    /// confirmed at `confirmed_at`: free within the grace period, the fixed
    /// fee after; never charged when dispatch (or the driver) cancels.
    pub fn cancellation_fee(&self, party: Party, confirmed_at: Timestamp, now: Timestamp) -> i64 {
        match party {
            Party::Dispatch => 0,
            Party::Rider if now.since(confirmed_at) < self.cancellation_grace => 0,
            Party::Rider => self.cancellation_fee,
        }
    }

    /// The final fare of a completed trip: the quoted price (an upfront
    /// fare) unless the actual distance or duration differs from the
    /// estimate by more than the tolerance; then the tariff's price of the
    /// actual trip at the quoted multiplier, with the reason.
    pub fn settle(&self, booked: &Booked, actual: Trip) -> Settlement {
        let off = |what: &'static str, estimated: u32, actual: u32| {
            let est = u64::from(estimated.max(1));
            let diff = u64::from(estimated.abs_diff(actual));
            // diff / est > tolerance / 100, in integers.
            (diff * 100 > est * u64::from(self.reprice_tolerance_percent)).then(|| {
                let pct = (diff * 100 + est / 2) / est;
                let sign = if actual >= estimated { "+" } else { "-" };
                format!("{what} differed from the estimate by {sign}{pct}%")
            })
        };
        let reasons: Vec<String> = [
            off("distance", booked.estimate.distance_m, actual.distance_m),
            off("duration", booked.estimate.duration_s, actual.duration_s),
        ]
        .into_iter()
        .flatten()
        .collect();
        if reasons.is_empty() {
            return Settlement {
                final_fare: booked.quoted_fare,
                repriced: None,
            };
        }
        let fare = price(&self.tariff, actual, booked.multiplier);
        Settlement {
            final_fare: fare.total,
            repriced: Some(format!(
                "{} (tolerance {}%): repriced from the tariff at the quoted {} multiplier",
                reasons.join(" and "),
                self.reprice_tolerance_percent,
                booked.multiplier
            )),
        }
    }
}

/// What was agreed at confirmation, for settling the fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booked {
    /// The quoted total (minor units).
    pub quoted_fare: i64,
    /// The quoted multiplier.
    pub multiplier: Multiplier,
    /// The trip the quote estimated.
    pub estimate: Trip,
}

/// The fare a completed trip is charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// Minor units.
    pub final_fare: i64,
    /// Why the fare is not the quoted one (`None`: it is).
    pub repriced: Option<String>,
}

/// The booking made from a quote: `b_` and the quote id's random part.
/// One quote, one booking id, so a booking id names its ledger shard as
/// the quote id does ([`shard_key`]).
pub fn booking_id_for(quote_id: &Ident) -> Option<Ident> {
    let suffix = quote_id
        .as_str()
        .strip_prefix("q_")
        .unwrap_or(quote_id.as_str());
    Ident::new(&["b_", suffix].concat()).ok()
}

/// The part of a quote or booking id that picks its ledger shard: the same
/// for a quote and its booking.
pub fn shard_key(id: &str) -> &str {
    id.strip_prefix("q_")
        .or_else(|| id.strip_prefix("b_"))
        .unwrap_or(id)
}

/// Ledger objects before ids named their count: an id without one (no
/// `-` in its random part) lives among this many.
pub const LEGACY_LEDGERS: u32 = 16;
/// Most ledger objects an id may name.
pub const MAX_LEDGERS: u32 = 4_096;

/// A quote id's random part for a deployment of `ledgers` ledger objects:
/// the count, in hex, then `-`, then the random hex (`40-3fa9…`). The
/// count travels with the id (and its booking's), so raising it sends new
/// quotes over more objects and never moves a booking made before.
pub fn ledger_suffix(ledgers: u32, random_hex: &str) -> String {
    format!("{:x}-{random_hex}", ledgers.clamp(1, MAX_LEDGERS))
}

/// The ledger object (index, from 0) a quote or booking id lives in: the
/// hash of its random part modulo the count its id names ([`LEGACY_LEDGERS`]
/// for ids that name none). Objects are named by index alone, so the
/// first sixteen are shared by legacy ids and ids of any count.
pub fn ledger_of(id: &str) -> u32 {
    let key = shard_key(id);
    let (count, random) = match key.split_once('-') {
        Some((hex, rest)) => (
            u32::from_str_radix(hex, 16)
                .ok()
                .filter(|n| (1..=MAX_LEDGERS).contains(n))
                .unwrap_or(LEGACY_LEDGERS),
            rest,
        ),
        None => (LEGACY_LEDGERS, key),
    };
    let h = crate::market::DriverId::from_external(random).0;
    (h % u64::from(count)) as u32
}

/// How long a booking is kept after its last transition unless configured:
/// long enough for a dispute or a chargeback (card networks allow up to
/// about 540 days in rare cases; most close within 120).
pub const DEFAULT_BOOKING_RETENTION: Millis = Millis::from_secs(400 * 86_400);

/// A booking whose last transition is at or before this moment may be
/// deleted, once none of its events is still waiting to be sent (the
/// ledger checks that in the same statement).
pub fn retention_cutoff(now: Timestamp, retention: Millis) -> Timestamp {
    Timestamp(now.0.saturating_sub(retention.0))
}

/// How often a ledger sweeps out expired bookings: a quarter of the
/// retention, between a second and a day.
pub fn sweep_period(retention: Millis) -> Millis {
    Millis((retention.0 / 4).clamp(1_000, 86_400_000))
}

/// The booking token's format tag.
const BOOKING_FORMAT: &str = "eqb1";

/// How long a booking token is valid: long enough to look a booking up in
/// a dispute.
pub const BOOKING_TOKEN_VALIDITY: Millis = Millis::from_secs(90 * 86_400);

/// What a booking token grants: its holder (the rider) may read and
/// cancel this booking until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingClaims {
    /// The booking.
    pub booking_id: Ident,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

impl BookingClaims {
    /// The token for these claims, signed with the keyring's active key
    /// (the quote signing keys: any edge verifies it).
    pub fn sign(&self, keys: &Keyring) -> String {
        let mut ints = itoa::Buffer::new();
        let mut line = String::with_capacity(96);
        for (i, part) in [
            BOOKING_FORMAT,
            keys.active_key_id().as_str(),
            self.booking_id.as_str(),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                line.push('|');
            }
            line.push_str(part);
        }
        line.push('|');
        line.push_str(ints.format(self.issued_at.0));
        line.push('|');
        line.push_str(ints.format(self.expires_at.0));
        keys.seal(&line)
    }

    /// Verifies a booking token's signature and expiry.
    pub fn verify(keys: &Keyring, token: &str, now: Timestamp) -> Result<Self, QuoteError> {
        let (_, rest) = keys.open(token, &[BOOKING_FORMAT])?;
        let mut f = rest.split('|');
        let parse = |f: &mut std::str::Split<'_, char>| -> Option<Self> {
            let claims = Self {
                booking_id: Ident::new(f.next()?).ok()?,
                issued_at: Timestamp(f.next()?.parse().ok()?),
                expires_at: Timestamp(f.next()?.parse().ok()?),
            };
            f.next().is_none().then_some(claims)
        };
        let claims = parse(&mut f).ok_or(QuoteError::Malformed)?;
        if now >= claims.expires_at {
            return Err(QuoteError::Expired(claims.expires_at));
        }
        Ok(claims)
    }
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Millis = Millis::from_secs(86_400);

/// The fingerprint of a request under an idempotency key: what it asks
/// (`operation`, e.g. `confirm` or `cancel`), of what (`target`), by whom,
/// with which body. Hex SHA-256.
pub fn fingerprint(operation: &str, target: &str, party: Party, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [
        operation.as_bytes(),
        target.as_bytes(),
        party.as_str().as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What to do with a request carrying an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Never seen (or expired): do it, and remember the answer.
    Fresh,
    /// Seen with the same request: answer what was answered then.
    Same,
    /// Seen with a different request: refuse (422 `idempotency_key_reused`).
    Reused,
}

/// Decides a keyed request from what is stored under its key: the stored
/// fingerprint and when it expires.
pub fn replay(stored: Option<(&str, Timestamp)>, fingerprint: &str, now: Timestamp) -> Replay {
    match stored {
        Some((_, expires)) if now >= expires => Replay::Fresh,
        Some((fp, _)) if fp == fingerprint => Replay::Same,
        Some(_) => Replay::Reused,
        None => Replay::Fresh,
    }
}

/// Checks an `Idempotency-Key` value: 1 to 255 visible ASCII characters
/// (the one rule: the edge's bookings and the origin's ingest).
pub fn valid_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fare::{Tariff, VehicleClass};

    fn terms() -> Terms {
        Terms::with_defaults(Tariff::default_for(VehicleClass::Standard))
    }

    #[test]
    fn the_state_machine_has_exactly_the_documented_transitions() {
        use BookingStatus::*;
        let legal = [
            (Confirmed, Action::Start, Party::Dispatch, InProgress),
            (InProgress, Action::Complete, Party::Dispatch, Completed),
            (Confirmed, Action::Cancel, Party::Rider, Cancelled),
            (Confirmed, Action::Cancel, Party::Dispatch, Cancelled),
            (Confirmed, Action::Fail, Party::Dispatch, Failed),
            (InProgress, Action::Cancel, Party::Dispatch, Cancelled),
        ];
        for &s in BookingStatus::ALL {
            for &a in Action::ALL {
                for &p in Party::ALL {
                    let want = legal
                        .iter()
                        .find(|(from, act, by, _)| (*from, *act, *by) == (s, a, p))
                        .map(|l| l.3);
                    let got = s.after(a, p);
                    match want {
                        Some(to) => assert_eq!(got, Ok(to), "{s} {a} {p}"),
                        None => assert!(got.is_err(), "{s} {a} {p}: {got:?}"),
                    }
                }
            }
        }
        assert_eq!(
            Confirmed
                .after(Action::Start, Party::Rider)
                .map_err(|e| e.code()),
            Err("forbidden")
        );
        assert_eq!(
            InProgress
                .after(Action::Cancel, Party::Rider)
                .map_err(|e| e.code()),
            Err("forbidden")
        );
        assert_eq!(
            Completed
                .after(Action::Cancel, Party::Dispatch)
                .map_err(|e| e.code()),
            Err("invalid_transition")
        );
        assert!(Completed.is_final() && Cancelled.is_final() && Failed.is_final());
        assert!(!Confirmed.is_final() && !InProgress.is_final());
    }

    #[test]
    fn names_round_trip() {
        for &s in BookingStatus::ALL {
            assert_eq!(BookingStatus::parse(s.as_str()), Ok(s));
        }
        for &a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Ok(a));
        }
        assert!(Party::parse("driver").is_err());
    }

    #[test]
    fn the_fee_is_free_within_grace_and_never_for_dispatch() {
        let t = terms();
        let at = Timestamp(1_000_000);
        let grace = t.cancellation_grace;
        assert_eq!(t.cancellation_fee(Party::Rider, at, at), 0);
        assert_eq!(
            t.cancellation_fee(Party::Rider, at, Timestamp(at.0 + grace.0 - 1)),
            0
        );
        assert_eq!(
            t.cancellation_fee(Party::Rider, at, Timestamp(at.0 + grace.0)),
            DEFAULT_CANCELLATION_FEE
        );
        assert_eq!(
            t.cancellation_fee(Party::Dispatch, at, Timestamp(at.0 + 10 * grace.0)),
            0
        );
    }

    #[test]
    fn the_quoted_fare_holds_within_the_tolerance() {
        let t = terms();
        let estimate = Trip {
            distance_m: 4_000,
            duration_s: 600,
        };
        let m = Multiplier::from_tenths(15).expect("m");
        let booked = Booked {
            quoted_fare: price(&t.tariff, estimate, m).total,
            multiplier: m,
            estimate,
        };
        // +25% exactly is within; the quoted price stands.
        let within = t.settle(
            &booked,
            Trip {
                distance_m: 5_000,
                duration_s: 750,
            },
        );
        assert_eq!(within.final_fare, booked.quoted_fare);
        assert_eq!(within.repriced, None);
        // +50% distance: the tariff's price of the real trip at 1.5x.
        let long = Trip {
            distance_m: 6_000,
            duration_s: 700,
        };
        let over = t.settle(&booked, long);
        assert_eq!(over.final_fare, price(&t.tariff, long, m).total);
        assert!(over.final_fare > booked.quoted_fare);
        let why = over.repriced.expect("a reason");
        assert!(
            why.contains("distance differed from the estimate by +50%"),
            "{why}"
        );
        assert!(!why.contains("duration"), "{why}");
        // Much shorter: cheaper.
        let short = t.settle(
            &booked,
            Trip {
                distance_m: 1_000,
                duration_s: 200,
            },
        );
        assert!(short.final_fare < booked.quoted_fare);
        assert!(short.repriced.expect("why").contains("-75%"));
    }

    #[test]
    fn a_booking_id_shares_its_quotes_shard() {
        let q = Ident::new("q_00ff00ff00ff00ff00ff00ff00ff00ff").expect("q");
        let b = booking_id_for(&q).expect("b");
        assert_eq!(b.as_str(), "b_00ff00ff00ff00ff00ff00ff00ff00ff");
        assert_eq!(shard_key(q.as_str()), shard_key(b.as_str()));
    }

    #[test]
    fn an_id_names_its_ledger_and_growing_moves_no_booking() {
        // A legacy id: among sixteen, as before ids named a count.
        let legacy = "q_00ff00ff00ff00ff00ff00ff00ff00ff";
        let h = crate::market::DriverId::from_external("00ff00ff00ff00ff00ff00ff00ff00ff").0;
        assert_eq!(u64::from(ledger_of(legacy)), h % 16);
        assert_eq!(
            ledger_of(legacy),
            ledger_of("b_00ff00ff00ff00ff00ff00ff00ff00ff")
        );
        // Ids made for 64 ledgers spread over 64; the ones made for 16
        // before stay in their object whatever the count is now.
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2_000u32 {
            let random = format!("{:032x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15);
            let q64 = ["q_", &ledger_suffix(64, &random)].concat();
            let q16 = ["q_", &ledger_suffix(16, &random)].concat();
            assert!(ledger_of(&q64) < 64);
            assert!(ledger_of(&q16) < 16);
            assert_eq!(ledger_of(&q16), ledger_of(&q16.replacen("q_", "b_", 1)));
            seen.insert(ledger_of(&q64));
        }
        assert_eq!(seen.len(), 64);
        // A count out of range reads as legacy, never a division by zero.
        assert!(ledger_of("q_0-abc") < LEGACY_LEDGERS);
        assert!(ledger_of("q_zz-abc") < LEGACY_LEDGERS);
        assert_eq!(ledger_suffix(0, "ab"), "1-ab");
    }

    #[test]
    fn retention_is_counted_from_the_last_transition() {
        let r = Millis::from_secs(400 * 86_400);
        assert_eq!(retention_cutoff(Timestamp(r.0 + 5), r), Timestamp(5));
        assert_eq!(retention_cutoff(Timestamp(5), r), Timestamp(0));
        assert_eq!(sweep_period(r), Millis(86_400_000));
        assert_eq!(sweep_period(Millis(2_000)), Millis(1_000));
    }

    #[test]
    fn booking_tokens_verify_and_are_not_quote_tokens() {
        let keys = Keyring::parse("k1:a-secret-of-at-least-16-bytes").expect("keys");
        let claims = BookingClaims {
            booking_id: Ident::new("b_1234").expect("b"),
            issued_at: Timestamp(1_000),
            expires_at: Timestamp(2_000),
        };
        let token = claims.sign(&keys);
        assert_eq!(
            BookingClaims::verify(&keys, &token, Timestamp(1_500)),
            Ok(claims.clone())
        );
        assert_eq!(
            BookingClaims::verify(&keys, &token, Timestamp(2_000)),
            Err(QuoteError::Expired(Timestamp(2_000)))
        );
        // Not a quote, and a quote is not a booking token.
        assert_eq!(
            keys.verify(&token, Timestamp(1_500)),
            Err(QuoteError::Malformed)
        );
        let other = Keyring::parse("k1:another-secret-of-16-bytes").expect("keys");
        assert_eq!(
            BookingClaims::verify(&other, &token, Timestamp(1_500)),
            Err(QuoteError::BadSignature)
        );
        let mut tampered = token.clone();
        tampered.replace_range(0..1, if token.starts_with('Z') { "Y" } else { "Z" });
        assert!(BookingClaims::verify(&keys, &tampered, Timestamp(1_500)).is_err());
    }

    #[test]
    fn replays_follow_the_fingerprint_until_expiry() {
        let a = fingerprint("cancel", "b_1", Party::Rider, br#"{"reason":"x"}"#);
        let b = fingerprint("cancel", "b_1", Party::Rider, br#"{"reason":"y"}"#);
        let c = fingerprint("cancel", "b_1", Party::Dispatch, br#"{"reason":"x"}"#);
        assert_ne!(a, b);
        assert_ne!(a, c);
        let exp = Timestamp(10);
        assert_eq!(replay(None, &a, Timestamp(1)), Replay::Fresh);
        assert_eq!(replay(Some((&a, exp)), &a, Timestamp(1)), Replay::Same);
        assert_eq!(replay(Some((&a, exp)), &b, Timestamp(1)), Replay::Reused);
        assert_eq!(replay(Some((&a, exp)), &b, Timestamp(10)), Replay::Fresh);
        assert!(valid_idempotency_key("k-1") && !valid_idempotency_key("a b"));
        assert!(!valid_idempotency_key("") && !valid_idempotency_key(&"a".repeat(256)));
    }
}
