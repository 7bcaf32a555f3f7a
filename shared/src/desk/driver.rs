//! The driver view: where a driver nearby earns most, at the prices riders
//! there are charged.

use crate::api::{DriverHeatmapResponse, DriverZone, Location};
use crate::fare::{minor_to_decimal, RouteModel, Tariff};
use crate::geo::LatLng;
use crate::quote::Ident;
use crate::surge::Multiplier;

use super::{zone_name, Desk};

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

impl Desk<'_> {
    /// The best cells within the radius, best earnings first (nearer first
    /// among equals), each at its effective multiplier.
    pub fn driver_zones(&self, ask: DriverAsk<'_>) -> DriverHeatmapResponse {
        let radius = ask.radius_m.min(MAX_RADIUS_M);
        let mut zones: Vec<(i64, DriverZone)> = self
            .cells()
            .iter()
            .filter_map(|c| {
                let d = ask.here.distance_m(c.cell.center());
                (d <= radius).then_some((c, d))
            })
            .map(|(c, d)| {
                // Busy cells keep a driver on trips more of the hour.
                let util = f64::from(c.demand) / f64::from(c.supply + c.demand).max(1.0);
                let earn = hourly_earnings(
                    ask.tariff,
                    ask.route.speed_kmh,
                    util.clamp(0.3, 0.9),
                    c.multiplier,
                );
                let zone = DriverZone {
                    zone_id: c.cell.token(),
                    zone_name: zone_name(ask.region, c.cell),
                    center: Location::from(c.cell.center()),
                    distance_meters: d.round() as u32,
                    surge_multiplier: c.multiplier,
                    estimated_earnings_per_hour: minor_to_decimal(earn),
                    demand_trend: c.trend,
                };
                (earn, zone)
            })
            .collect();
        zones.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(a.1.distance_meters.cmp(&b.1.distance_meters))
        });
        zones.truncate(MAX_RECOMMENDED);
        DriverHeatmapResponse {
            recommended_zones: zones.into_iter().map(|(_, z)| z).collect(),
            current_location: Location::from(ask.here),
            currency: ask.tariff.currency.to_string(),
        }
    }
}
