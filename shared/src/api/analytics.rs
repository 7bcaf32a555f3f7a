//! The origin's read side: zone efficiency, history, forecasts.

use super::*;

/// One zone of the least-efficient-zones report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneEfficiencyWire {
    /// Region.
    pub region: String,
    /// S2 cell token.
    pub zone_id: String,
    /// The zone's name.
    pub zone_name: String,
    /// Mean multiplier over the window, 2 decimals.
    pub average_multiplier: f64,
    /// Completed rides in percent (0 with no rides).
    pub completion_rate: f64,
    /// Ride outcomes in the window.
    pub rides: u64,
    /// Price rises in the window.
    pub surge_events: u64,
    /// Price falls in the window.
    pub decrease_events: u64,
    /// `average_multiplier × 0.7 + (100 − completion_rate) × 0.3`, 2 decimals.
    pub inefficiency_score: f64,
    /// Rank by score, highest first; ties share a rank.
    pub inefficiency_rank: u32,
}

/// `GET /v1/analytics/least-efficient` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeastEfficientResponse {
    /// The window, days.
    pub days: u32,
    /// The zones, by rank.
    pub zones: Vec<ZoneEfficiencyWire>,
}

/// One snapshot of a zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPoint {
    /// When the tick ran, ms since the epoch.
    pub at: u64,
    /// Vehicle class.
    pub class: String,
    /// Available drivers.
    pub supply: u32,
    /// Demand units.
    pub demand: u32,
    /// The multiplier published.
    pub multiplier: f64,
}

/// `GET /v1/analytics/history` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryResponse {
    /// Region.
    pub region: String,
    /// S2 cell token.
    pub zone_id: String,
    /// Snapshots, newest first.
    pub history: Vec<HistoryPoint>,
}

/// A forecast value with its 95 % prediction interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastValueWire {
    /// Expected units in the 5-minute bucket.
    pub expected: f64,
    /// Lower bound (≥ 0).
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl From<crate::forecast::Forecast> for ForecastValueWire {
    fn from(f: crate::forecast::Forecast) -> Self {
        let round2 = |x: f32| (f64::from(x) * 100.0).round() / 100.0;
        Self {
            expected: round2(f.expected),
            low: round2(f.low),
            high: round2(f.high),
        }
    }
}

/// A cell's forecast for the 5-minute bucket that ends within `minutes`
/// (5: the bucket in progress, 10: the next, 15: the one after).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastHorizonWire {
    /// 5, 10 or 15.
    pub minutes: u32,
    /// Demand units expected (absent: no history yet).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub demand: Option<ForecastValueWire>,
    /// Available drivers expected (absent: no history yet).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub supply: Option<ForecastValueWire>,
}

/// One cell of `GET /v1/forecasts/{region}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CellForecastWire {
    /// S2 cell token.
    pub zone_id: String,
    /// `"<region> <token>"`.
    pub zone_name: String,
    /// Per horizon.
    pub horizons: Vec<ForecastHorizonWire>,
}

/// `GET /v1/forecasts/{region}` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastsResponse {
    /// Region.
    pub region: String,
    /// The class forecast, or absent: all classes summed (what pricing
    /// reads).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vehicle_class: Option<String>,
    /// The region's local standard time, minutes ahead of UTC (where its
    /// weekday and weekend profiles begin).
    pub utc_offset_minutes: i64,
    /// Cells, busiest first by demand expected 15 minutes ahead.
    pub cells: Vec<CellForecastWire>,
}

impl ForecastsResponse {
    /// The response for `region`'s outlook ([`crate::forecast::CellForecasts::outlook`]),
    /// cells named by the region's named zones where `geo` has them.
    pub fn new(
        region: &Ident,
        geo: Option<&crate::regions::Region>,
        class: Option<VehicleClass>,
        calendar: crate::forecast::Calendar,
        outlook: &[crate::forecast::CellOutlook],
    ) -> Self {
        Self {
            region: region.as_str().to_owned(),
            vehicle_class: class.map(|c| c.as_str().to_owned()),
            utc_offset_minutes: calendar.utc_offset_minutes(),
            cells: outlook
                .iter()
                .map(|o| CellForecastWire {
                    zone_id: o.cell.token(),
                    zone_name: crate::desk::zone_name(
                        region,
                        geo.and_then(|g| g.zone_of_cell(o.cell)),
                        o.cell,
                    ),
                    horizons: crate::forecast::HORIZONS
                        .iter()
                        .zip(o.horizons)
                        .map(|(h, (d, s))| ForecastHorizonWire {
                            minutes: crate::forecast::horizon_minutes(*h),
                            demand: d.map(Into::into),
                            supply: s.map(Into::into),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
