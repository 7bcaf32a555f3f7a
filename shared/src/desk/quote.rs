//! A quote: the desk's price at a pickup, as a fare and the claims to sign
//! (the answer sent is `api::EstimateResponse::new`).

use crate::fare::{price, FareBreakdown, Terms, Trip, VehicleClass};
use crate::geo::LatLng;
use crate::quote::{Ident, QuoteClaims};
use crate::time::Millis;

use super::{Desk, Effective};

/// What a rider asked for, parsed, with what the shell gathered for it.
#[derive(Debug, Clone)]
pub struct QuoteAsk<'a> {
    /// The region priced.
    pub region: &'a Ident,
    /// The vehicle class.
    pub class: VehicleClass,
    /// The pickup.
    pub pickup: LatLng,
    /// The trip's estimate.
    pub trip: Trip,
    /// The region's tariff for the class, with its booking terms: the
    /// quote carries them ([`QuoteClaims::terms`]).
    pub terms: &'a Terms,
    /// A fresh quote id (the shell draws it from its random source).
    pub quote_id: Ident,
    /// How long the quote may be confirmed.
    pub valid_for: Millis,
}

/// A priced quote, before signing.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedQuote {
    /// What the token will promise.
    pub claims: QuoteClaims,
    /// The itemised fare.
    pub fare: FareBreakdown,
    /// The effective price at the pickup.
    pub effective: Effective,
    /// The name of the pickup's zone ([`super::zone_name`]).
    pub zone_name: String,
}

impl Desk<'_> {
    /// Prices a quote at the pickup's effective multiplier.
    pub fn quote(&self, ask: QuoteAsk<'_>) -> PricedQuote {
        let effective = self.at(ask.pickup);
        let fare = price(&ask.terms.tariff, ask.trip, effective.multiplier);
        let issued = self.now();
        let claims = QuoteClaims {
            quote_id: ask.quote_id,
            region: ask.region.clone(),
            cell: effective.cell,
            class: ask.class,
            surge: effective.multiplier,
            base_fare: fare.subtotal + fare.booking_fee,
            final_fare: fare.total,
            currency: fare.currency,
            distance_m: ask.trip.distance_m,
            duration_s: ask.trip.duration_s,
            grid_generation: effective.generation,
            issued_at: issued,
            expires_at: issued + ask.valid_for,
            source: Some(effective.source),
            arm: self.arm().map(|a| crate::experiment::ArmStamp {
                experiment: a.grid.experiment.clone(),
                arm: a.grid.arm.clone(),
                policy: a.grid.policy.clone(),
                unit: a.unit,
            }),
            terms: Some(*ask.terms),
        };
        PricedQuote {
            zone_name: self.zone_name(ask.region, effective.cell),
            claims,
            fare,
            effective,
        }
    }
}
