//! A quote: the desk's price at a pickup, as a fare, the claims to sign
//! and the answer to send.

use crate::api::{EstimateResponse, FareBreakdownWire, SurgeSource, ZoneInfo};
use crate::fare::{price, FareBreakdown, Terms, Trip, VehicleClass};
use crate::geo::LatLng;
use crate::quote::{Ident, QuoteClaims};
use crate::time::Millis;

use super::{DemandLevel, Desk, Effective};

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

impl PricedQuote {
    /// The estimate answer, carrying the signed `token`.
    pub fn response(&self, token: String) -> EstimateResponse {
        let (c, e) = (&self.claims, &self.effective);
        EstimateResponse {
            quote_id: c.quote_id.to_string(),
            quote_token: token,
            base_fare: c.currency.to_decimal(c.base_fare),
            surge_multiplier: e.multiplier,
            final_fare: c.currency.to_decimal(c.final_fare),
            currency: c.currency.to_string(),
            quote_valid_until: c.expires_at.to_rfc3339(),
            estimated_duration: (f64::from(c.duration_s) / 6.0).round() / 10.0,
            estimated_distance: (f64::from(c.distance_m) / 100.0).round() / 10.0,
            vehicle_type: c.class,
            zone_info: ZoneInfo {
                zone_name: self.zone_name.clone(),
                zone_id: e.cell.token(),
                current_demand_level: DemandLevel::of(e.multiplier),
                region: c.region.to_string(),
            },
            fare_breakdown: FareBreakdownWire::from(&self.fare),
            surge_source: SurgeSource {
                source: e.source,
                age_seconds: e.age.map(|a| a.0 as f64 / 1_000.0),
                grid_generation: e.generation,
                published_multiplier: e.published,
            },
            degraded: e.source.degraded(),
            experiment: c.arm.as_ref().map(Into::into),
        }
    }
}
