//! A booking's record and every transition's effect on it: status, money
//! (the fee, the settled fare, a failed booking's zero) and history. Pure,
//! `now` passed in; the edge's ledger object stores the record as JSON (so
//! its serde shape is a storage format: fields are only ever added, with
//! defaults) and sends the event of each status entered.

use serde::{Deserialize, Serialize};

use super::{Action, Booked, BookingStatus, Party, Terms, TransitionError};
use crate::desk::Source;
use crate::fare::{Currency, Tariff, Trip, VehicleClass};
use crate::quote::QuoteClaims;
use crate::surge::Multiplier;
use crate::time::{Millis, Timestamp};

/// The terms fixed at confirmation, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsRecord {
    base: i64,
    per_km: i64,
    per_minute: i64,
    booking_fee: i64,
    minimum_fare: i64,
    cancellation_fee: i64,
    cancellation_grace_ms: u64,
    reprice_tolerance_percent: u32,
}

impl TermsRecord {
    /// The record of terms.
    pub fn of(t: &Terms) -> Self {
        Self {
            base: t.tariff.base,
            per_km: t.tariff.per_km,
            per_minute: t.tariff.per_minute,
            booking_fee: t.tariff.booking_fee,
            minimum_fare: t.tariff.minimum_fare,
            cancellation_fee: t.cancellation_fee,
            cancellation_grace_ms: t.cancellation_grace.0,
            reprice_tolerance_percent: t.reprice_tolerance_percent,
        }
    }

    /// The terms, in `currency`.
    pub fn terms(&self, currency: Currency) -> Terms {
        Terms {
            tariff: Tariff {
                currency,
                base: self.base,
                per_km: self.per_km,
                per_minute: self.per_minute,
                booking_fee: self.booking_fee,
                minimum_fare: self.minimum_fare,
            },
            cancellation_fee: self.cancellation_fee,
            cancellation_grace: Millis(self.cancellation_grace_ms),
            reprice_tolerance_percent: self.reprice_tolerance_percent,
        }
    }
}

/// One stored transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The status entered.
    pub status: BookingStatus,
    /// When (ms since the epoch).
    pub at: u64,
    /// Who.
    pub actor: Party,
    /// Why (cancel and fail).
    pub reason: Option<String>,
}

/// The experiment arm a booking's quote was priced in, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmRecord {
    /// The experiment's id.
    pub id: String,
    /// The arm's name.
    pub arm: String,
    /// The version of the arm's policy.
    pub policy: String,
    /// The unit of analysis.
    #[serde(default)]
    pub unit: u64,
}

/// A transition asked of a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// What.
    pub action: Action,
    /// By whom.
    pub party: Party,
    /// When.
    pub at: Timestamp,
    /// Cancel and fail: why.
    pub reason: Option<String>,
    /// Complete: the trip as driven (the estimate's when absent).
    pub driven: Option<Trip>,
}

/// A booking as the ledger stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRecord {
    /// The booking.
    pub booking_id: String,
    /// Its quote.
    pub quote_id: String,
    /// Region.
    pub region: String,
    /// Pickup cell token.
    pub cell: String,
    /// Class.
    pub class: VehicleClass,
    /// Status.
    pub status: BookingStatus,
    /// Quoted total, minor units.
    pub quoted_fare: i64,
    /// What the rider pays now, minor units.
    pub final_fare: i64,
    /// ISO 4217.
    pub currency: String,
    /// Quoted multiplier, tenths.
    pub surge_tenths: u16,
    /// Where it came from.
    pub source: Option<Source>,
    /// Estimated distance.
    pub distance_m: u32,
    /// Estimated duration.
    pub duration_s: u32,
    /// Terms at confirmation.
    pub terms: TermsRecord,
    /// Ms since the epoch.
    pub confirmed_at: u64,
    /// Ms since the epoch, once started.
    pub started_at: Option<u64>,
    /// The fee, if cancelled.
    pub cancellation_fee: Option<i64>,
    /// Why the final fare is not the quoted one.
    pub fare_adjustment: Option<String>,
    /// Every status entered, in order.
    pub history: Vec<StepRecord>,
    /// The experiment arm its quote was priced in (absent in records
    /// written before experiments).
    #[serde(default)]
    pub experiment: Option<ArmRecord>,
}

impl BookingRecord {
    /// A booking confirmed from a quote at `now`, on `terms`.
    pub fn confirmed(
        booking_id: String,
        claims: &QuoteClaims,
        terms: &Terms,
        now: Timestamp,
    ) -> Self {
        Self {
            booking_id,
            quote_id: claims.quote_id.to_string(),
            region: claims.region.to_string(),
            cell: claims.cell.token(),
            class: claims.class,
            status: BookingStatus::Confirmed,
            quoted_fare: claims.final_fare,
            final_fare: claims.final_fare,
            currency: claims.currency.to_string(),
            surge_tenths: claims.surge.tenths(),
            source: claims.source,
            distance_m: claims.distance_m,
            duration_s: claims.duration_s,
            terms: TermsRecord::of(terms),
            confirmed_at: now.0,
            started_at: None,
            cancellation_fee: None,
            fare_adjustment: None,
            history: vec![StepRecord {
                status: BookingStatus::Confirmed,
                at: now.0,
                actor: Party::Rider,
                reason: None,
            }],
            experiment: claims.arm.as_ref().map(|a| ArmRecord {
                id: a.experiment.to_string(),
                arm: a.arm.to_string(),
                policy: a.policy.to_string(),
                unit: a.unit,
            }),
        }
    }

    /// The quoted multiplier.
    pub fn multiplier(&self) -> Multiplier {
        Multiplier::from_tenths(self.surge_tenths).unwrap_or(Multiplier::ONE)
    }

    /// The currency (a stored record is from a validated quote; an
    /// unreadable one reads as USD's places rather than failing).
    pub fn currency(&self) -> Currency {
        Currency::new(&self.currency).unwrap_or(Currency::USD)
    }

    /// Applies `t`: the status it enters, with its money — a completed
    /// trip settles the fare ([`Terms::settle`]), a cancellation charges
    /// the fee ([`Terms::cancellation_fee`]) and nothing else, a failure
    /// charges nothing — and a step in the history. Refused (the record
    /// untouched) when the state machine or the party does not allow it.
    pub fn apply(&mut self, t: &Transition) -> Result<BookingStatus, TransitionError> {
        let next = self.status.after(t.action, t.party)?;
        let terms = self.terms.terms(self.currency());
        match next {
            BookingStatus::InProgress => self.started_at = Some(t.at.0),
            BookingStatus::Completed => {
                let booked = Booked {
                    quoted_fare: self.quoted_fare,
                    multiplier: self.multiplier(),
                    estimate: Trip {
                        distance_m: self.distance_m,
                        duration_s: self.duration_s,
                    },
                };
                let s = terms.settle(&booked, t.driven.unwrap_or(booked.estimate));
                self.final_fare = s.final_fare;
                self.fare_adjustment = s.repriced;
            }
            BookingStatus::Cancelled => {
                let fee = terms.cancellation_fee(t.party, Timestamp(self.confirmed_at), t.at);
                self.cancellation_fee = Some(fee);
                self.final_fare = fee;
            }
            BookingStatus::Failed => self.final_fare = 0,
            BookingStatus::Confirmed => {}
        }
        self.status = next;
        self.history.push(StepRecord {
            status: next,
            at: t.at.0,
            actor: t.party,
            reason: t.reason.clone(),
        });
        Ok(next)
    }

    /// How long the rider waited for the pickup, once started.
    pub fn wait(&self) -> Option<Millis> {
        self.started_at
            .map(|s| Millis(s.saturating_sub(self.confirmed_at)))
    }
}
