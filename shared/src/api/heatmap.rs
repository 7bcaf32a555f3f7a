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
