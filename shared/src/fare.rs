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

    /// The class of a request or record that names none.
    pub const DEFAULT: VehicleClass = Self::Standard;

    /// The class named, or [`Self::DEFAULT`] when none is: the one rule
    /// of every request and record that may leave it out.
    pub fn parse_or_default(s: Option<&str>) -> Result<Self, UnknownVehicleClass> {
        s.map_or(Ok(Self::DEFAULT), Self::parse)
    }

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

/// An ISO 4217 currency: its code and how many decimals its minor unit
/// has (JPY 0, USD 2, KWD 3). Only codes in the standard's active list
/// are accepted, so an amount in minor units always reads right.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Not a currency of ISO 4217's active list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 4217 currency code (three uppercase letters, e.g. USD, EUR, JPY)")]
pub struct InvalidCurrency(pub String);

/// ISO 4217's active codes with their minor-unit exponents, sorted by code
/// (funds and metals without a minor unit are left out: nobody pays a fare
/// in them).
const ISO_4217: &[(&[u8; 3], u8)] = &[
    (b"AED", 2),
    (b"AFN", 2),
    (b"ALL", 2),
    (b"AMD", 2),
    (b"ANG", 2),
    (b"AOA", 2),
    (b"ARS", 2),
    (b"AUD", 2),
    (b"AWG", 2),
    (b"AZN", 2),
    (b"BAM", 2),
    (b"BBD", 2),
    (b"BDT", 2),
    (b"BGN", 2),
    (b"BHD", 3),
    (b"BIF", 0),
    (b"BMD", 2),
    (b"BND", 2),
    (b"BOB", 2),
    (b"BOV", 2),
    (b"BRL", 2),
    (b"BSD", 2),
    (b"BTN", 2),
    (b"BWP", 2),
    (b"BYN", 2),
    (b"BZD", 2),
    (b"CAD", 2),
    (b"CDF", 2),
    (b"CHE", 2),
    (b"CHF", 2),
    (b"CHW", 2),
    (b"CLF", 4),
    (b"CLP", 0),
    (b"CNY", 2),
    (b"COP", 2),
    (b"COU", 2),
    (b"CRC", 2),
    (b"CUP", 2),
    (b"CVE", 2),
    (b"CZK", 2),
    (b"DJF", 0),
    (b"DKK", 2),
    (b"DOP", 2),
    (b"DZD", 2),
    (b"EGP", 2),
    (b"ERN", 2),
    (b"ETB", 2),
    (b"EUR", 2),
    (b"FJD", 2),
    (b"FKP", 2),
    (b"GBP", 2),
    (b"GEL", 2),
    (b"GHS", 2),
    (b"GIP", 2),
    (b"GMD", 2),
    (b"GNF", 0),
    (b"GTQ", 2),
    (b"GYD", 2),
    (b"HKD", 2),
    (b"HNL", 2),
    (b"HTG", 2),
    (b"HUF", 2),
    (b"IDR", 2),
    (b"ILS", 2),
    (b"INR", 2),
    (b"IQD", 3),
    (b"IRR", 2),
    (b"ISK", 0),
    (b"JMD", 2),
    (b"JOD", 3),
    (b"JPY", 0),
    (b"KES", 2),
    (b"KGS", 2),
    (b"KHR", 2),
    (b"KMF", 0),
    (b"KPW", 2),
    (b"KRW", 0),
    (b"KWD", 3),
    (b"KYD", 2),
    (b"KZT", 2),
    (b"LAK", 2),
    (b"LBP", 2),
    (b"LKR", 2),
    (b"LRD", 2),
    (b"LSL", 2),
    (b"LYD", 3),
    (b"MAD", 2),
    (b"MDL", 2),
    (b"MGA", 2),
    (b"MKD", 2),
    (b"MMK", 2),
    (b"MNT", 2),
    (b"MOP", 2),
    (b"MRU", 2),
    (b"MUR", 2),
    (b"MVR", 2),
    (b"MWK", 2),
    (b"MXN", 2),
    (b"MXV", 2),
    (b"MYR", 2),
    (b"MZN", 2),
    (b"NAD", 2),
    (b"NGN", 2),
    (b"NIO", 2),
    (b"NOK", 2),
    (b"NPR", 2),
    (b"NZD", 2),
    (b"OMR", 3),
    (b"PAB", 2),
    (b"PEN", 2),
    (b"PGK", 2),
    (b"PHP", 2),
    (b"PKR", 2),
    (b"PLN", 2),
    (b"PYG", 0),
    (b"QAR", 2),
    (b"RON", 2),
    (b"RSD", 2),
    (b"RUB", 2),
    (b"RWF", 0),
    (b"SAR", 2),
    (b"SBD", 2),
    (b"SCR", 2),
    (b"SDG", 2),
    (b"SEK", 2),
    (b"SGD", 2),
    (b"SHP", 2),
    (b"SLE", 2),
    (b"SOS", 2),
    (b"SRD", 2),
    (b"SSP", 2),
    (b"STN", 2),
    (b"SVC", 2),
    (b"SYP", 2),
    (b"SZL", 2),
    (b"THB", 2),
    (b"TJS", 2),
    (b"TMT", 2),
    (b"TND", 3),
    (b"TOP", 2),
    (b"TRY", 2),
    (b"TTD", 2),
    (b"TWD", 2),
    (b"TZS", 2),
    (b"UAH", 2),
    (b"UGX", 0),
    (b"USD", 2),
    (b"USN", 2),
    (b"UYI", 0),
    (b"UYU", 2),
    (b"UYW", 4),
    (b"UZS", 2),
    (b"VED", 2),
    (b"VES", 2),
    (b"VND", 0),
    (b"VUV", 0),
    (b"WST", 2),
    (b"XAF", 0),
    (b"XCD", 2),
    (b"XCG", 2),
    (b"XOF", 0),
    (b"XPF", 0),
    (b"YER", 2),
    (b"ZAR", 2),
    (b"ZMW", 2),
    (b"ZWG", 2),
];

impl Currency {
    /// US dollars.
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };

    /// Parses `"USD"`, `"EUR"`, `"JPY"`, ...: a code of ISO 4217's active
    /// list.
    pub fn new(code: &str) -> Result<Self, InvalidCurrency> {
        let refuse = || InvalidCurrency(code.chars().take(8).collect());
        let key: [u8; 3] = code.as_bytes().try_into().map_err(|_| refuse())?;
        let i = ISO_4217
            .binary_search_by(|(c, _)| c.cmp(&&key))
            .map_err(|_| refuse())?;
        Ok(Self {
            code: key,
            exponent: ISO_4217[i].1,
        })
    }

    /// Every supported currency.
    pub fn all() -> impl Iterator<Item = Currency> {
        ISO_4217.iter().map(|(code, exponent)| Currency {
            code: **code,
            exponent: *exponent,
        })
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Constructed from the table's ASCII codes only.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// How many decimals the minor unit has (JPY 0, USD 2, KWD 3).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    fn scale(&self) -> i64 {
        10_i64.pow(u32::from(self.exponent))
    }

    /// Minor units as a decimal amount, for JSON (`1234` cents → `12.34`
    /// dollars; `1234` yen → `1234`). The one conversion.
    pub fn to_decimal(&self, minor: i64) -> f64 {
        minor as f64 / self.scale() as f64
    }

    /// A decimal amount back to minor units, the inverse of
    /// [`Currency::to_decimal`]; `None` for a negative, non-finite or
    /// absurdly large amount.
    pub fn to_minor(&self, amount: f64) -> Option<u64> {
        let minor = (amount * self.scale() as f64).round();
        (minor.is_finite() && (0.0..=9.0e15).contains(&minor)).then_some(minor as u64)
    }

    /// Appends minor units as a decimal with the currency's places
    /// (`1234` → `12.34` in USD, `1234` in JPY, `1.234` in KWD; `-5` →
    /// `-0.05` in USD), from integers alone (float formatting is the slow
    /// part of a quote in wasm).
    pub fn push_decimal(&self, out: &mut String, minor: i64) {
        if minor < 0 {
            out.push('-');
        }
        let abs = minor.unsigned_abs();
        let scale = self.scale().unsigned_abs();
        out.push_str(itoa::Buffer::new().format(abs / scale));
        if self.exponent == 0 {
            return;
        }
        out.push('.');
        let mut frac = abs % scale;
        let mut digits = [b'0'; 4];
        for d in digits[..usize::from(self.exponent)].iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        for d in &digits[..usize::from(self.exponent)] {
            out.push(char::from(*d));
        }
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

    /// The built-in tariff of a class for a region that charges in
    /// `currency`, while the admin has set none: only in the built-in
    /// tariff's own currency (USD). Amounts mean nothing in another
    /// currency, so there is no default there.
    pub fn built_in(currency: Currency, class: VehicleClass) -> Option<Self> {
        let t = Self::default_for(class);
        (t.currency == currency).then_some(t)
    }
}

/// The terms a quote is priced and booked on: the tariff and the
/// operator's cancellation and repricing settings (all from the admin's
/// `tariff:<region>:<class>` key when the quote was priced). The quote's
/// token carries them, so the confirm, a cancellation fee and a repricing
/// use exactly these, whatever the key says later
/// ([`crate::quote::QuoteClaims::terms`]); the money rules on them are
/// the booking's ([`crate::booking`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// The tariff priced with.
    pub tariff: Tariff,
    /// Charged when the rider cancels after the grace period (minor units).
    pub cancellation_fee: i64,
    /// How long after confirmation a rider cancels for free.
    pub cancellation_grace: crate::time::Millis,
    /// How far (percent) the trip's distance or duration may differ from
    /// the estimate before the fare is recomputed.
    pub reprice_tolerance_percent: u32,
}

/// Defaults of the booking settings, used when the tariff key sets none.
pub const DEFAULT_CANCELLATION_FEE: i64 = 500;
/// Free cancellation for this long after confirming.
pub const DEFAULT_CANCELLATION_GRACE: crate::time::Millis = crate::time::Millis::from_secs(120);
/// The fare holds while the trip stays within this percentage of the estimate.
pub const DEFAULT_REPRICE_TOLERANCE_PERCENT: u32 = 25;

impl Terms {
    /// Terms with the default booking settings.
    pub fn with_defaults(tariff: Tariff) -> Self {
        Self {
            tariff,
            cancellation_fee: DEFAULT_CANCELLATION_FEE,
            cancellation_grace: DEFAULT_CANCELLATION_GRACE,
            reprice_tolerance_percent: DEFAULT_REPRICE_TOLERANCE_PERCENT,
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

impl Trip {
    /// The distance as riders read it: kilometres to 0.1 (every answer
    /// that shows a trip shows it so).
    pub fn km(self) -> f64 {
        (f64::from(self.distance_m) / 100.0).round() / 10.0
    }

    /// The duration as riders read it: minutes to 0.1.
    pub fn minutes(self) -> f64 {
        (f64::from(self.duration_s) / 6.0).round() / 10.0
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_amounts_round_trip_through_minor_units() {
        let usd = Currency::USD;
        for minor in [0i64, 1, 5, 99, 100, 1_234, 987_654_321] {
            assert_eq!(usd.to_minor(usd.to_decimal(minor)), Some(minor as u64));
        }
        assert_eq!(usd.to_minor(12.345_000_1), Some(1_235));
        assert_eq!(usd.to_minor(-0.01), None);
        assert_eq!(usd.to_minor(f64::NAN), None);
    }

    #[test]
    fn minor_units_follow_the_currency() {
        let c = |code| Currency::new(code).expect("known");
        assert_eq!(c("JPY").to_decimal(1_234), 1_234.0);
        assert_eq!(c("KWD").to_decimal(1_234), 1.234);
        assert_eq!(c("EUR").to_decimal(1_234), 12.34);
        let text = |cur: Currency, minor| {
            let mut s = String::new();
            cur.push_decimal(&mut s, minor);
            s
        };
        assert_eq!(text(c("JPY"), 1_234), "1234");
        assert_eq!(text(c("KWD"), 1_234), "1.234");
        assert_eq!(text(c("KWD"), 5), "0.005");
        assert_eq!(text(c("USD"), -5), "-0.05");
        assert_eq!(text(c("CLF"), 12_345), "1.2345");
        assert!(Currency::new("XYZ").is_err(), "not in ISO 4217");
        assert!(Currency::new("usd").is_err());
        assert!(ISO_4217.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
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
