//! The driver view: where a driver nearby earns most, at the prices riders
//! there are charged. Where a cell has a forecast, the view looks
//! [`crate::forecast::GRID_HORIZON`] buckets (15 minutes) ahead — a driver
//! set off now arrives when that demand does — and says so.

use crate::fare::{Currency, RouteModel, Tariff};
use crate::geo::{Cell, LatLng};
use crate::grid::GridCell;
use crate::quote::Ident;
use crate::surge::{Multiplier, Trend};

use super::Desk;

/// A cell recommended to a driver.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverCell {
    /// The cell.
    pub cell: Cell,
    /// Its name ([`super::zone_name`]).
    pub zone_name: String,
    /// How far, metres.
    pub distance_meters: u32,
    /// What riders there are charged.
    pub surge_multiplier: Multiplier,
    /// Rough gross earnings per hour there, minor units ([`hourly_earnings`]).
    pub earnings_per_hour: i64,
    /// Where demand is heading.
    pub demand_trend: Trend,
    /// The forecast's demand, where the cell has one.
    pub expected_demand: Option<f64>,
}

/// The driver view (the wire's is `api::DriverHeatmapResponse`).
#[derive(Debug, Clone, PartialEq)]
pub struct DriverView {
    /// Best earnings first.
    pub recommended_zones: Vec<DriverCell>,
    /// Where the driver is.
    pub here: LatLng,
    /// The earnings' currency.
    pub currency: Currency,
    /// How far ahead forecasts look, minutes.
    pub forecast_horizon_minutes: u32,
}

/// Largest search radius, metres.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Most cells recommended to a driver.
pub const MAX_RECOMMENDED: usize = 10;

/// A driver's question, parsed, with what the shell gathered for it.
#[derive(Debug, Clone, Copy)]
pub struct DriverAsk<'a> {
    /// The region.
    pub region: &'a Ident,
    /// Where the driver is.
    pub here: LatLng,
    /// How far they would drive, metres (at most [`MAX_RADIUS_M`]).
    pub radius_m: f64,
    /// The region's tariff for the driver's class.
    pub tariff: &'a Tariff,
    /// The speed earnings are estimated at.
    pub route: &'a RouteModel,
}

/// Rough gross earnings per hour (minor units) of a driver working a cell:
/// the tariff's per-km and per-minute income at the route model's speed,
/// times the share of the hour spent on trips, times the multiplier.
pub fn hourly_earnings(tariff: &Tariff, speed_kmh: f64, utilisation: f64, m: Multiplier) -> i64 {
    let per_hour = tariff.per_minute as f64 * 60.0 + tariff.per_km as f64 * speed_kmh;
    let base = per_hour * utilisation.clamp(0.0, 1.0);
    libm::round(base * m.as_f64()) as i64
}

/// The share of the hour a driver in the cell spends on trips, from its
/// demand against its supply: the forecast's when it has one.
fn utilisation(c: &GridCell) -> f64 {
    let (demand, supply) = match c.forecast {
        Some(f) => (f64::from(f.demand), f64::from(f.supply)),
        None => (f64::from(c.demand), f64::from(c.supply)),
    };
    (demand / (supply + demand).max(1.0)).clamp(0.3, 0.9)
}

/// Where demand is heading: the forecast against the demand counted now
/// (±15 %), or the multiplier's trend without a forecast.
fn demand_trend(c: &GridCell) -> Trend {
    match c.forecast {
        Some(f) if f64::from(f.demand) > 1.15 * f64::from(c.demand) + 0.5 => Trend::Increasing,
        Some(f) if f64::from(f.demand) + 0.5 < 0.85 * f64::from(c.demand) => Trend::Decreasing,
        Some(_) => Trend::Stable,
        None => c.trend,
    }
}

impl Desk<'_> {
    /// The best cells within the radius, best earnings first (nearer first
    /// among equals), each at its effective multiplier.
    pub fn driver_zones(&self, ask: DriverAsk<'_>) -> DriverView {
        let radius = ask.radius_m.min(MAX_RADIUS_M);
        let mut zones: Vec<(i64, DriverCell)> = self
            .cells()
            .iter()
            .filter_map(|c| {
                let d = ask.here.distance_m(c.cell.center());
                (d <= radius).then_some((c, d))
            })
            .map(|(c, d)| {
                // Busy cells keep a driver on trips more of the hour.
                let earn = hourly_earnings(
                    ask.tariff,
                    ask.route.speed_kmh,
                    utilisation(c),
                    c.multiplier,
                );
                let zone = DriverCell {
                    cell: c.cell,
                    zone_name: self.zone_name(ask.region, c.cell),
                    distance_meters: d.round() as u32,
                    surge_multiplier: c.multiplier,
                    earnings_per_hour: earn,
                    demand_trend: demand_trend(c),
                    expected_demand: c.forecast.map(|f| f64::from(f.demand)),
                };
                (earn, zone)
            })
            .collect();
        zones.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(a.1.distance_meters.cmp(&b.1.distance_meters))
        });
        zones.truncate(MAX_RECOMMENDED);
        DriverView {
            recommended_zones: zones.into_iter().map(|(_, z)| z).collect(),
            here: ask.here,
            currency: ask.tariff.currency,
            forecast_horizon_minutes: crate::forecast::horizon_minutes(
                crate::forecast::GRID_HORIZON,
            ),
        }
    }
}
