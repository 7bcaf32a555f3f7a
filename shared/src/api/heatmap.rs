//! `GET /api/v1/pricing/heatmap` and `GET /api/v1/driver/heatmap`.

use super::*;

/// One cell of the rider heatmap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeatmapZone {
    /// Cell token.
    pub zone_id: String,
    /// Human name.
    pub zone_name: String,
    /// Cell centre.
    pub center: Location,
    /// The effective multiplier: what a quote in the cell charges.
    pub surge_multiplier: Multiplier,
    /// `low` .. `very_high`.
    pub demand_level: DemandLevel,
    /// Available drivers.
    pub supply_count: u32,
    /// Demand units.
    pub demand_count: u32,
    /// Display colour, `#rrggbb`.
    pub color: String,
    /// `increasing`, `stable` or `decreasing`.
    pub trend: Trend,
}

/// `GET /api/v1/pricing/heatmap` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeatmapResponse {
    /// Cells with surge data inside the bounds.
    pub zones: Vec<HeatmapZone>,
    /// RFC 3339 time the grid was computed; null without a grid.
    pub last_updated: Option<String>,
    /// Number of zones returned.
    pub total_zones: usize,
    /// Region.
    pub region: String,
    /// Grid generation, 0 without a grid.
    pub generation: u64,
    /// S2 level of the cells.
    pub level: u8,
    /// True when the grid is older than the fresh limit.
    pub stale: bool,
}

/// One recommended cell for a driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverZone {
    /// Cell token.
    pub zone_id: String,
    /// Human name.
    pub zone_name: String,
    /// Cell centre.
    pub center: Location,
    /// Metres from the driver to the cell centre.
    pub distance_meters: u32,
    /// The effective multiplier: what a quote in the cell charges.
    pub surge_multiplier: Multiplier,
    /// Rough gross earnings per hour in this cell, decimal currency units
    /// (from the forecast demand and supply when the cell has one).
    pub estimated_earnings_per_hour: f64,
    /// `increasing`, `stable` or `decreasing`: the forecast's direction
    /// when the cell has one, else the multiplier's.
    pub demand_trend: Trend,
    /// Demand units expected in a 5-minute bucket
    /// `forecast_horizon_minutes` ahead, when the cell has a forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_demand: Option<f64>,
}

/// `GET /api/v1/driver/heatmap` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverHeatmapResponse {
    /// Best cells first.
    pub recommended_zones: Vec<DriverZone>,
    /// The driver's position as given.
    pub current_location: Location,
    /// ISO 4217 code of the earnings.
    pub currency: String,
    /// How far ahead the forecasts behind the recommendations look.
    pub forecast_horizon_minutes: u32,
}

/// The map colour of a multiplier: green at 1.0 through yellow and orange
/// to red at 3.0 and above.
pub fn surge_color(m: Multiplier) -> &'static str {
    match m.tenths() {
        ..=10 => "#2ecc71",
        11..=12 => "#a3d977",
        13..=14 => "#f1c40f",
        15..=17 => "#f39c12",
        18..=21 => "#e67e22",
        22..=29 => "#e74c3c",
        _ => "#c0392b",
    }
}

impl From<&crate::desk::RiderHeatmap> for HeatmapResponse {
    fn from(m: &crate::desk::RiderHeatmap) -> Self {
        let zones: Vec<HeatmapZone> = m
            .zones
            .iter()
            .map(|z| HeatmapZone {
                zone_id: z.cell.token(),
                zone_name: z.zone_name.clone(),
                center: Location::from(z.cell.center()),
                surge_multiplier: z.surge_multiplier,
                demand_level: DemandLevel::of(z.surge_multiplier),
                supply_count: z.supply,
                demand_count: z.demand,
                color: surge_color(z.surge_multiplier).to_owned(),
                trend: z.trend,
            })
            .collect();
        Self {
            total_zones: zones.len(),
            zones,
            last_updated: m.computed_at.map(Timestamp::to_rfc3339),
            region: m.region.to_string(),
            generation: m.generation,
            level: m.level.get(),
            stale: m.stale,
        }
    }
}

impl From<&crate::desk::DriverView> for DriverHeatmapResponse {
    fn from(v: &crate::desk::DriverView) -> Self {
        Self {
            recommended_zones: v
                .recommended_zones
                .iter()
                .map(|z| DriverZone {
                    zone_id: z.cell.token(),
                    zone_name: z.zone_name.clone(),
                    center: Location::from(z.cell.center()),
                    distance_meters: z.distance_meters,
                    surge_multiplier: z.surge_multiplier,
                    estimated_earnings_per_hour: v.currency.to_decimal(z.earnings_per_hour),
                    demand_trend: z.demand_trend,
                    expected_demand: z.expected_demand,
                })
                .collect(),
            current_location: Location::from(v.here),
            currency: v.currency.to_string(),
            forecast_horizon_minutes: v.forecast_horizon_minutes,
        }
    }
}
