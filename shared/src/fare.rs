//! Tariffs, trip estimates and fares, with a breakdown of every component.
//!
//! Money is integer minor units (cents) throughout, so a fare computed by the
//! edge (wasm32) is bit-for-bit the fare computed natively. Rounding is half
//! away from zero at each component, and the breakdown's items always add up
//! to the total.

use std::fmt;

use crate::geo::LatLng;
use crate::surge::Multiplier;

/// The classes of vehicle a rider can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VehicleClass {
    /// Cheapest, shared or small cars.
    Economy,
    /// The default class.
    Standard,
    /// Higher-end cars.
    Premium,
    /// Six seats or more.
    Xl,
}

/// A vehicle class name the platform does not offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown vehicle class {0:?}; expected one of economy, standard, premium, xl")]
pub struct UnknownVehicleClass(pub String);

impl VehicleClass {
    /// Every class, in display order.
    pub const ALL: [VehicleClass; 4] = [Self::Economy, Self::Standard, Self::Premium, Self::Xl];

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, UnknownVehicleClass> {
        match s {
            "economy" => Ok(Self::Economy),
            "standard" => Ok(Self::Standard),
            "premium" => Ok(Self::Premium),
            "xl" => Ok(Self::Xl),
            other => Err(UnknownVehicleClass(other.chars().take(32).collect())),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Economy => "economy",
            Self::Standard => "standard",
            Self::Premium => "premium",
            Self::Xl => "xl",
        }
    }
}

impl fmt::Display for VehicleClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 4217 currency code: three uppercase ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

/// Not a three-letter uppercase code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a three-letter currency code")]
pub struct InvalidCurrency(pub String);

impl Currency {
    /// US dollars.
    pub const USD: Currency = Currency(*b"USD");

    /// Parses `"USD"`, `"EUR"`, ...
    pub fn new(code: &str) -> Result<Self, InvalidCurrency> {
        let b = code.as_bytes();
        match b {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(InvalidCurrency(code.chars().take(8).collect())),
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Constructed from ASCII uppercase only.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a vehicle class costs in a region. All amounts in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    /// Currency of every amount.
    pub currency: Currency,
    /// Flat amount at the start of every trip.
    pub base: i64,
    /// Per kilometre of estimated distance.
    pub per_km: i64,
    /// Per minute of estimated duration.
    pub per_minute: i64,
    /// Flat fee, not multiplied by surge.
    pub booking_fee: i64,
    /// The total is never below this.
    pub minimum_fare: i64,
}

/// A tariff with a negative amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tariff amount {field} must be between 0 and 1,000,000 minor units")]
pub struct InvalidTariff {
    /// Which amount.
    pub field: &'static str,
}

impl Tariff {
    /// Validates amounts (0 ≤ amount ≤ 1,000,000 minor units).
    pub fn validate(self) -> Result<Self, InvalidTariff> {
        for (field, v) in [
            ("base", self.base),
            ("per_km", self.per_km),
            ("per_minute", self.per_minute),
            ("booking_fee", self.booking_fee),
            ("minimum_fare", self.minimum_fare),
        ] {
            if !(0..=1_000_000).contains(&v) {
                return Err(InvalidTariff { field });
            }
        }
        Ok(self)
    }

    /// The built-in tariff of a class (USD), used until an admin sets one.
    pub fn default_for(class: VehicleClass) -> Self {
        let (base, per_km, per_minute, booking_fee, minimum_fare) = match class {
            VehicleClass::Economy => (200, 90, 20, 150, 600),
            VehicleClass::Standard => (250, 120, 30, 200, 800),
            VehicleClass::Premium => (500, 200, 50, 250, 1_500),
            VehicleClass::Xl => (400, 170, 40, 250, 1_200),
        };
        Self {
            currency: Currency::USD,
            base,
            per_km,
            per_minute,
            booking_fee,
            minimum_fare,
        }
    }
}

/// How straight-line distance becomes a road trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteModel {
    /// Road distance over great-circle distance (cities: about 1.3).
    pub detour_factor: f64,
    /// Average door-to-door speed in km/h.
    pub speed_kmh: f64,
    /// Fixed minutes for pickup manoeuvres and drop-off.
    pub overhead_s: u32,
}

impl Default for RouteModel {
    fn default() -> Self {
        Self {
            detour_factor: 1.3,
            speed_kmh: 24.0,
            overhead_s: 60,
        }
    }
}

/// An estimated trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trip {
    /// Road distance in metres.
    pub distance_m: u32,
    /// Duration in seconds.
    pub duration_s: u32,
}

/// The longest trip the platform prices, in metres (a sanity bound).
pub const MAX_TRIP_M: u32 = 500_000;

/// A trip longer than [`MAX_TRIP_M`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("trip of {distance_m} m is longer than the {MAX_TRIP_M} m the platform prices")]
pub struct TripTooLong {
    /// The estimated road distance.
    pub distance_m: u64,
}

impl RouteModel {
    /// Estimates a trip from pickup to drop-off. Whole metres and seconds,
    /// computed with `libm` so every platform gets the same numbers.
    pub fn estimate(&self, pickup: LatLng, dropoff: LatLng) -> Result<Trip, TripTooLong> {
        let straight = pickup.distance_m(dropoff);
        let road = libm::round(straight * self.detour_factor);
        if road > f64::from(MAX_TRIP_M) {
            return Err(TripTooLong {
                distance_m: road as u64,
            });
        }
        let distance_m = road as u32;
        let secs = libm::round(road / (self.speed_kmh / 3.6));
        Ok(Trip {
            distance_m,
            duration_s: secs as u32 + self.overhead_s,
        })
    }
}

/// Every component of a fare, in minor units of `currency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FareBreakdown {
    /// Currency of every amount.
    pub currency: Currency,
    /// The tariff's flat base.
    pub base: i64,
    /// Distance component.
    pub distance: i64,
    /// Time component.
    pub time: i64,
    /// base + distance + time: the fare before surge and fees.
    pub subtotal: i64,
    /// Multiplier applied to the subtotal.
    pub surge_multiplier: Multiplier,
    /// subtotal × (multiplier − 1), rounded.
    pub surge_amount: i64,
    /// The flat booking fee (never surged).
    pub booking_fee: i64,
    /// Added when the sum falls below the minimum fare.
    pub minimum_fare_adjustment: i64,
    /// What the rider pays.
    pub total: i64,
}

/// `a * b / d`, rounded half away from zero, for non-negative inputs.
fn mul_div_round(a: i64, b: i64, d: i64) -> i64 {
    let num = i128::from(a) * i128::from(b);
    let d = i128::from(d);
    ((num + d / 2) / d) as i64
}

/// Prices a trip. Pure integer arithmetic after the trip estimate.
pub fn price(tariff: &Tariff, trip: Trip, surge: Multiplier) -> FareBreakdown {
    let distance = mul_div_round(tariff.per_km, i64::from(trip.distance_m), 1_000);
    let time = mul_div_round(tariff.per_minute, i64::from(trip.duration_s), 60);
    let subtotal = tariff.base + distance + time;
    let surge_amount = mul_div_round(subtotal, i64::from(surge.tenths()) - 10, 10);
    let before_minimum = subtotal + surge_amount + tariff.booking_fee;
    let minimum_fare_adjustment = (tariff.minimum_fare - before_minimum).max(0);
    FareBreakdown {
        currency: tariff.currency,
        base: tariff.base,
        distance,
        time,
        subtotal,
        surge_multiplier: surge,
        surge_amount,
        booking_fee: tariff.booking_fee,
        minimum_fare_adjustment,
        total: before_minimum + minimum_fare_adjustment,
    }
}

/// Minor units to a decimal amount for JSON (2 decimals).
pub fn minor_to_decimal(minor: i64) -> f64 {
    minor as f64 / 100.0
}

/// A decimal amount from JSON (2 decimals) back to minor units, the
/// inverse of [`minor_to_decimal`]; `None` for a negative, non-finite or
/// absurdly large amount.
pub fn decimal_to_minor(amount: f64) -> Option<u64> {
    let minor = (amount * 100.0).round();
    (minor.is_finite() && (0.0..=9.0e15).contains(&minor)).then_some(minor as u64)
}

/// Appends minor units as a decimal with 2 places (`1234` → `12.34`,
/// `-5` → `-0.05`): the text `format!("{:.2}", minor_to_decimal(m))` gives,
/// from integers alone (float formatting is the slow part of a quote in wasm).
pub fn push_decimal(out: &mut String, minor: i64) {
    if minor < 0 {
        out.push('-');
    }
    let abs = minor.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(abs / 100));
    out.push('.');
    let cents = (abs % 100) as u8;
    out.push(char::from(b'0' + cents / 10));
    out.push(char::from(b'0' + cents % 10));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_amounts_round_trip_through_minor_units() {
        for minor in [0i64, 1, 5, 99, 100, 1_234, 987_654_321] {
            assert_eq!(
                decimal_to_minor(minor_to_decimal(minor)),
                Some(minor as u64)
            );
        }
        assert_eq!(decimal_to_minor(12.345_000_1), Some(1_235));
        assert_eq!(decimal_to_minor(-0.01), None);
        assert_eq!(decimal_to_minor(f64::NAN), None);
    }

    fn ll(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).expect("coordinate")
    }

    fn m(t: u16) -> Multiplier {
        Multiplier::from_tenths(t).expect("tenths")
    }

    #[test]
    fn breakdown_adds_up() {
        let t = Tariff::default_for(VehicleClass::Standard);
        let trip = Trip {
            distance_m: 2_100,
            duration_s: 720,
        };
        let f = price(&t, trip, m(13));
        assert_eq!(f.distance, 252); // 1.20 × 2.1 km
        assert_eq!(f.time, 360); // 0.30 × 12 min
        assert_eq!(f.subtotal, 250 + 252 + 360);
        assert_eq!(f.surge_amount, 259); // 862 × 0.3 = 258.6
        assert_eq!(f.total, 862 + 259 + 200);
        assert_eq!(f.minimum_fare_adjustment, 0);
    }

    #[test]
    fn minimum_fare_applies() {
        let t = Tariff::default_for(VehicleClass::Premium);
        let f = price(
            &t,
            Trip {
                distance_m: 100,
                duration_s: 60,
            },
            Multiplier::ONE,
        );
        assert_eq!(f.total, t.minimum_fare);
        assert_eq!(
            f.subtotal + f.surge_amount + f.booking_fee + f.minimum_fare_adjustment,
            f.total
        );
    }

    #[test]
    fn trip_estimate_is_plausible_and_bounded() {
        let r = RouteModel::default();
        let trip = r
            .estimate(ll(37.7749, -122.4194), ll(37.7849, -122.4094))
            .expect("trip");
        // 1.41 km straight → ~1.84 km road, ~4.6 min + 1 min overhead.
        assert!((1_800..1_900).contains(&trip.distance_m), "{trip:?}");
        assert!((300..400).contains(&trip.duration_s), "{trip:?}");
        assert!(r.estimate(ll(0.0, 0.0), ll(40.0, 40.0)).is_err());
    }

    #[test]
    fn parsing_and_validation() {
        assert_eq!(VehicleClass::parse("xl"), Ok(VehicleClass::Xl));
        assert!(VehicleClass::parse("spaceship").is_err());
        assert!(Currency::new("usd").is_err());
        assert!(Currency::new("EURO").is_err());
        assert_eq!(Currency::new("EUR").expect("eur").as_str(), "EUR");
        let bad = Tariff {
            per_km: -1,
            ..Tariff::default_for(VehicleClass::Economy)
        };
        assert_eq!(bad.validate(), Err(InvalidTariff { field: "per_km" }));
    }
}
