//! Wire types of every endpoint, shared by edge, origin, simulator and tests.
//!
//! Field names follow the original design (`pickup_location.latitude`,
//! `quote_id`, `surge_multiplier`, `final_fare`, `quote_valid_until`, ...):
//! apps already speak that shape. New fields are added; none are renamed.
//! Unknown request fields are ignored so older servers accept newer apps.
//!
//! Every error response has the body [`ErrorBody`]: a stable
//! machine-readable `code` and a human `message`.

use serde::{Deserialize, Serialize};

use crate::booking::{Action, BookingStatus, Party};
use crate::desk::{DemandLevel, Source};
use crate::fare::{FareBreakdown, VehicleClass};
use crate::geo::{Cell, InvalidLatLng, LatLng, Level};
use crate::grid::{CellForecast, GridCell, InvalidGrid, SurgeGrid, GRID_FORMAT, GRID_FORMATS_READ};
use crate::quote::{Ident, InvalidIdent};
use crate::surge::{Multiplier, Trend};
use crate::time::Timestamp;

pub mod admin;
pub mod stream;

/// Closed sets travel as their names: serialised with the type's
/// `as_str`, read back with its `parse` (the one parser of each set).
macro_rules! wire_name {
    ($($t:ty),+) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
                <$t>::parse(&name).map_err(serde::de::Error::custom)
            }
        }
    )+};
}

wire_name!(
    Trend,
    VehicleClass,
    Source,
    DemandLevel,
    BookingStatus,
    Party,
    Action
);

/// A point as apps send it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

impl Location {
    /// Validates into a core coordinate.
    pub fn to_latlng(self) -> Result<LatLng, InvalidLatLng> {
        LatLng::new(self.latitude, self.longitude)
    }
}

impl From<LatLng> for Location {
    fn from(p: LatLng) -> Self {
        Self {
            latitude: p.lat(),
            longitude: p.lng(),
        }
    }
}

/// `POST /api/v1/pricing/estimate` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateRequest {
    /// Where the ride starts.
    pub pickup_location: Location,
    /// Where it ends.
    pub dropoff_location: Location,
    /// `economy`, `standard`, `premium` or `xl`; default `standard`.
    #[serde(default)]
    pub vehicle_type: Option<String>,
    /// Accepted for old clients and ignored (at most [`MAX_USER_ID`]
    /// bytes): who a rider is comes from a verified bearer token
    /// ([`crate::identity`]), never from what the body says.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Region to price in; default is the edge's configured region.
    #[serde(default)]
    pub region: Option<String>,
}

/// Longest accepted `user_id`, bytes.
pub const MAX_USER_ID: usize = 256;

/// An estimate request that passed validation: every field typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEstimate {
    /// Where the ride starts.
    pub pickup: LatLng,
    /// Where it ends.
    pub dropoff: LatLng,
    /// The class priced (`standard` when absent).
    pub class: VehicleClass,
    /// The region asked for (`None`: the edge's default).
    pub region: Option<Ident>,
    /// The trip's estimate.
    pub trip: crate::fare::Trip,
}

/// Why a request was refused: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable, snake_case (e.g. `invalid_coordinates`).
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

impl EstimateRequest {
    /// Validates every field, in the order a client would fix them: the
    /// two points, the class, the region, the rider id, the trip. The one
    /// place estimate requests are validated (the worker and the fuzz
    /// target call it).
    pub fn validate(&self, route: &crate::fare::RouteModel) -> Result<ValidEstimate, Refusal> {
        let refuse = |code, message: String| Refusal { code, message };
        let pickup = self
            .pickup_location
            .to_latlng()
            .map_err(|e| refuse("invalid_coordinates", format!("pickup_location: {e}")))?;
        let dropoff = self
            .dropoff_location
            .to_latlng()
            .map_err(|e| refuse("invalid_coordinates", format!("dropoff_location: {e}")))?;
        let class = match self.vehicle_type.as_deref() {
            None => VehicleClass::Standard,
            Some(c) => VehicleClass::parse(c)
                .map_err(|e| refuse("unknown_vehicle_class", e.to_string()))?,
        };
        let region = self
            .region
            .as_deref()
            .map(Ident::new)
            .transpose()
            .map_err(|e| refuse("invalid_region", e.to_string()))?;
        // Checked so an old client learns of a broken id; used for nothing.
        user_id(self.user_id.as_deref())?;
        let trip = route
            .estimate(pickup, dropoff)
            .map_err(|e| refuse("trip_too_long", e.to_string()))?;
        Ok(ValidEstimate {
            pickup,
            dropoff,
            class,
            region,
            trip,
        })
    }
}

/// The one rule for a rider's `user_id` wherever a request may carry one:
/// at most [`MAX_USER_ID`] bytes; an empty one is anonymous (it would
/// otherwise put every client that sends it in one experiment arm).
pub fn user_id(given: Option<&str>) -> Result<Option<&str>, Refusal> {
    match given {
        Some(u) if u.len() > MAX_USER_ID => Err(Refusal {
            code: "invalid_user_id",
            message: format!("user_id is longer than {MAX_USER_ID} bytes"),
        }),
        Some("") | None => Ok(None),
        Some(u) => Ok(Some(u)),
    }
}

/// Where a zone is and how busy it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneInfo {
    /// The pricing cell's token.
    pub zone_id: String,
    /// Human name (region and cell).
    pub zone_name: String,
    /// `low`, `medium`, `high` or `very_high`, from the multiplier
    /// charged.
    pub current_demand_level: DemandLevel,
    /// The region.
    pub region: String,
}

/// Every component of a fare, as decimal amounts of `currency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FareBreakdownWire {
    /// Flat base.
    pub base: f64,
    /// Distance component.
    pub distance: f64,
    /// Time component.
    pub time: f64,
    /// base + distance + time.
    pub subtotal: f64,
    /// Multiplier applied to the subtotal.
    pub surge_multiplier: Multiplier,
    /// Amount added by surge.
    pub surge_amount: f64,
    /// Flat booking fee (not surged).
    pub booking_fee: f64,
    /// Added to reach the minimum fare.
    pub minimum_fare_adjustment: f64,
    /// The final fare.
    pub total: f64,
    /// One line per component, in order, for display.
    pub explanation: Vec<String>,
}

impl From<&FareBreakdown> for FareBreakdownWire {
    fn from(f: &FareBreakdown) -> Self {
        let cur = f.currency.as_str();
        let d = |minor| f.currency.to_decimal(minor);
        // "<label><amount> <currency>", built without float formatting.
        let line = |label: &str, minor: i64| {
            let mut s = String::with_capacity(label.len() + 16);
            s.push_str(label);
            f.currency.push_decimal(&mut s, minor);
            s.push(' ');
            s.push_str(cur);
            s
        };
        let mut explanation = Vec::with_capacity(6);
        explanation.push(line("base ", f.base));
        explanation.push(line("distance ", f.distance));
        explanation.push(line("time ", f.time));
        if f.surge_amount > 0 {
            let mut label = format!("surge x{} on ", f.surge_multiplier);
            f.currency.push_decimal(&mut label, f.subtotal);
            label.push_str(": +");
            explanation.push(line(&label, f.surge_amount));
        }
        explanation.push(line("booking fee ", f.booking_fee));
        if f.minimum_fare_adjustment > 0 {
            explanation.push(line(
                "raised to the minimum fare: +",
                f.minimum_fare_adjustment,
            ));
        }
        Self {
            base: d(f.base),
            distance: d(f.distance),
            time: d(f.time),
            subtotal: d(f.subtotal),
            surge_multiplier: f.surge_multiplier,
            surge_amount: d(f.surge_amount),
            booking_fee: d(f.booking_fee),
            minimum_fare_adjustment: d(f.minimum_fare_adjustment),
            total: d(f.total),
            explanation,
        }
    }
}

/// Where the multiplier of a quote came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeSource {
    /// `fresh` (KV or zone object, young), `cached` (isolate cache, young),
    /// `stale` (old grid, decaying toward 1.0) or `default` (no grid: 1.0).
    pub source: Source,
    /// Age of the grid in seconds, when there is one.
    pub age_seconds: Option<f64>,
    /// Generation of the grid used, 0 when none.
    pub grid_generation: u64,
    /// The grid's multiplier before any decay.
    pub published_multiplier: Multiplier,
}

/// `POST /api/v1/pricing/estimate` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateResponse {
    /// Id to confirm with.
    pub quote_id: String,
    /// The signed quote; send it back to confirm.
    pub quote_token: String,
    /// Fare before surge, including the booking fee.
    pub base_fare: f64,
    /// The multiplier applied.
    pub surge_multiplier: Multiplier,
    /// What the rider pays if they confirm in time.
    pub final_fare: f64,
    /// ISO 4217 code.
    pub currency: String,
    /// RFC 3339 expiry.
    pub quote_valid_until: String,
    /// Minutes.
    pub estimated_duration: f64,
    /// Kilometres.
    pub estimated_distance: f64,
    /// The vehicle class priced.
    pub vehicle_type: VehicleClass,
    /// The zone of the pickup.
    pub zone_info: ZoneInfo,
    /// Itemised fare.
    pub fare_breakdown: FareBreakdownWire,
    /// Provenance of the multiplier.
    pub surge_source: SurgeSource,
    /// True when pricing used stale or default data.
    pub degraded: bool,
    /// The experiment arm that priced the quote, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArmWire>,
}

/// The experiment arm a quote was priced in (signed into its token and
/// copied into its booking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExperimentArmWire {
    /// The experiment's id.
    pub id: String,
    /// The arm's name.
    pub arm: String,
    /// The version of the arm's policy that priced it.
    pub policy: String,
    /// The unit of analysis the quote counts in: a switchback's window
    /// index, a user split's rider (a hash of the user id).
    #[serde(default)]
    pub unit: u64,
}

impl From<&crate::experiment::ArmStamp> for ExperimentArmWire {
    fn from(a: &crate::experiment::ArmStamp) -> Self {
        Self {
            id: a.experiment.to_string(),
            arm: a.arm.to_string(),
            policy: a.policy.to_string(),
            unit: a.unit,
        }
    }
}

impl ExperimentArmWire {
    /// The stamp, if every part is an identifier.
    pub fn stamp(&self) -> Result<crate::experiment::ArmStamp, InvalidIdent> {
        Ok(crate::experiment::ArmStamp {
            experiment: Ident::new(&self.id)?,
            arm: Ident::new(&self.arm)?,
            policy: Ident::new(&self.policy)?,
            unit: self.unit,
        })
    }
}

/// `POST /api/v1/quotes/{id}/confirm` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmRequest {
    /// The `quote_token` of the estimate.
    pub quote_token: String,
}

/// `POST /api/v1/quotes/{id}/confirm` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmResponse {
    /// The quote confirmed.
    pub quote_id: String,
    /// Always `confirmed`.
    pub status: String,
    /// The price honoured (the quoted one, whatever surge is now).
    pub final_fare: f64,
    /// ISO 4217 code.
    pub currency: String,
    /// The multiplier honoured.
    pub surge_multiplier: Multiplier,
    /// RFC 3339 time of confirmation.
    pub confirmed_at: String,
    /// The booking made from the quote (one per quote).
    pub booking_id: String,
    /// A signed capability for this booking: send it as
    /// `Authorization: Bearer …` to read or cancel the booking at any edge.
    pub booking_token: String,
}

/// `POST /api/v1/bookings/{id}/cancel` and `…/fail` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonRequest {
    /// Why (free text, up to 500 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/bookings/{id}/start` request: an empty object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {}

/// `POST /api/v1/bookings/{id}/complete` request: the trip as driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteRequest {
    /// Road distance driven, km.
    pub distance_km: f64,
    /// Time from pickup to drop-off, minutes.
    pub duration_minutes: f64,
}

/// One step of a booking's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingStep {
    /// The status entered.
    pub status: BookingStatus,
    /// RFC 3339.
    pub at: String,
    /// Who: `rider` or `dispatch`.
    pub actor: Party,
    /// The reason given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/bookings/{id}` (and every transition's) response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingResponse {
    /// The booking.
    pub booking_id: String,
    /// The quote it was confirmed from.
    pub quote_id: String,
    /// Where it is in its life.
    pub status: BookingStatus,
    /// Region of the pickup.
    pub region: String,
    /// Class booked.
    pub vehicle_type: VehicleClass,
    /// The quoted (upfront) price.
    pub quoted_fare: f64,
    /// What the rider pays: the quoted price until completion, then the
    /// settled fare; the cancellation fee (or 0) when cancelled; 0 when
    /// failed.
    pub final_fare: f64,
    /// ISO 4217.
    pub currency: String,
    /// The multiplier at quote time.
    pub surge_multiplier: Multiplier,
    /// Where that multiplier came from (`null` for quotes signed before
    /// sources were recorded).
    pub surge_source: Option<Source>,
    /// Charged for the cancellation, if cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_fee: Option<f64>,
    /// Why the final fare differs from the quoted one, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fare_adjustment: Option<String>,
    /// The trip as estimated at quote time, km.
    pub estimated_distance_km: f64,
    /// The trip as estimated at quote time, minutes.
    pub estimated_duration_minutes: f64,
    /// Every transition, oldest first.
    pub history: Vec<BookingStep>,
    /// The experiment arm its quote was priced in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArmWire>,
}

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

/// One cell of a pushed grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GridCellWire {
    /// Cell token.
    pub cell: String,
    /// Published multiplier.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, minimum = 1.0))]
    pub multiplier: Multiplier,
    /// Available drivers.
    pub supply: u32,
    /// Demand units.
    pub demand: u32,
    /// `increasing`, `stable` or `decreasing`.
    pub trend: String,
    /// Format 2: demand units expected in a 5-minute bucket 15 minutes
    /// ahead (with `expected_supply`; absent before the cell has history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_demand: Option<f32>,
    /// Format 2: available drivers expected 15 minutes ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_supply: Option<f32>,
}

/// `PUT /admin/v1/grids/{region}` body: the grid wire format, version
/// [`GRID_FORMAT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GridPush {
    /// Wire format version.
    pub format: u32,
    /// Region id.
    pub region: String,
    /// S2 level of every cell.
    pub level: u8,
    /// Monotonic generation (≥ 1).
    pub generation: u64,
    /// Milliseconds since the epoch when the origin computed it.
    pub computed_at: u64,
    /// The cells.
    pub cells: Vec<GridCellWire>,
    /// The region's lawful emergency cap (the fourth-highest daily maximum
    /// multiplier of the 60 days before today), applied while an emergency
    /// is declared; absent with less history. Optional within format 1:
    /// an older reader ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, minimum = 1.0))]
    pub lawful_cap: Option<Multiplier>,
    /// The arms of the region's running experiment, each priced by its own
    /// policy from the same market (format 3; absent outside an
    /// experiment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arms: Vec<ArmGridWire>,
}

/// One arm's multipliers in a grid push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArmGridWire {
    /// The experiment's id.
    pub experiment: String,
    /// The arm's name.
    pub arm: String,
    /// The version of the arm's policy.
    pub policy: String,
    /// Multiplier by cell token; a cell of the grid without one is 1.0.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, f64>))]
    pub multipliers: std::collections::BTreeMap<String, Multiplier>,
}

/// Why a pushed grid was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidGridPush {
    /// Bad region id.
    #[error("region: {0}")]
    Region(#[from] InvalidIdent),
    /// Bad level.
    #[error("level {0} is outside 0..=30")]
    Level(u8),
    /// Bad cell token.
    #[error("cell {index}: {token:?} is not a valid S2 cell token")]
    Cell {
        /// Position in `cells`.
        index: usize,
        /// The token.
        token: String,
    },
    /// Bad trend.
    #[error("cell {index}: trend {trend:?} is not increasing, stable or decreasing")]
    Trend {
        /// Position in `cells`.
        index: usize,
        /// The value.
        trend: String,
    },
    /// An arm grid is invalid.
    #[error("arms[{index}]: {reason}")]
    Arm {
        /// Position in `arms`.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The grid as a whole is invalid.
    #[error(transparent)]
    Grid(#[from] InvalidGrid),
}

fn arm_grid(index: usize, w: ArmGridWire) -> Result<crate::grid::ArmGrid, InvalidGridPush> {
    let bad = |reason: String| InvalidGridPush::Arm { index, reason };
    let ident = |what: &str, v: &str| Ident::new(v).map_err(|e| bad(format!("{what}: {e}")));
    if w.multipliers.len() > crate::grid::MAX_GRID_CELLS {
        return Err(bad(format!("{} cells", w.multipliers.len())));
    }
    let mut cells = Vec::with_capacity(w.multipliers.len());
    for (token, m) in w.multipliers {
        let cell = Cell::from_token(&token).map_err(|_| {
            bad(format!(
                "{:?} is not a valid S2 cell token",
                token.chars().take(20).collect::<String>()
            ))
        })?;
        cells.push((cell, m));
    }
    Ok(crate::grid::ArmGrid::new(
        ident("experiment", &w.experiment)?,
        ident("arm", &w.arm)?,
        ident("policy", &w.policy)?,
        cells,
    ))
}

impl TryFrom<GridPush> for SurgeGrid {
    type Error = InvalidGridPush;

    fn try_from(p: GridPush) -> Result<Self, Self::Error> {
        if !GRID_FORMATS_READ.contains(&p.format) {
            return Err(InvalidGrid::Format(p.format).into());
        }
        let region = Ident::new(&p.region)?;
        let level = Level::new(p.level).map_err(|_| InvalidGridPush::Level(p.level))?;
        if p.arms.len() > *crate::experiment::ARMS.end() {
            return Err(InvalidGridPush::Arm {
                index: p.arms.len() - 1,
                reason: format!("at most {} arms", crate::experiment::ARMS.end()),
            });
        }
        let arms = p
            .arms
            .into_iter()
            .enumerate()
            .map(|(i, a)| arm_grid(i, a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cells = Vec::with_capacity(p.cells.len());
        for (index, c) in p.cells.into_iter().enumerate() {
            let cell = Cell::from_token(&c.cell).map_err(|_| InvalidGridPush::Cell {
                index,
                token: c.cell.chars().take(20).collect(),
            })?;
            let trend = Trend::parse(&c.trend).map_err(|_| InvalidGridPush::Trend {
                index,
                trend: c.trend.chars().take(20).collect(),
            })?;
            let forecast = match (c.expected_demand, c.expected_supply) {
                (Some(d), Some(s)) if d.is_finite() && s.is_finite() && d >= 0.0 && s >= 0.0 => {
                    Some(CellForecast {
                        demand: d,
                        supply: s,
                    })
                }
                _ => None,
            };
            cells.push(GridCell {
                cell,
                multiplier: c.multiplier,
                supply: c.supply,
                demand: c.demand,
                trend,
                forecast,
            });
        }
        Ok(
            SurgeGrid::new(region, level, p.generation, Timestamp(p.computed_at), cells)?
                .with_lawful_cap(p.lawful_cap)
                .with_arms(arms)?,
        )
    }
}

impl From<&SurgeGrid> for GridPush {
    fn from(g: &SurgeGrid) -> Self {
        Self {
            // Format 3 only when there are arms: an edge that reads
            // formats 1-2 keeps taking every grid outside an experiment.
            format: if g.arms().is_empty() { 2 } else { GRID_FORMAT },
            region: g.region().as_str().to_owned(),
            level: g.level().get(),
            generation: g.generation(),
            computed_at: g.computed_at().0,
            cells: g
                .cells()
                .iter()
                .map(|c| GridCellWire {
                    cell: c.cell.token(),
                    multiplier: c.multiplier,
                    supply: c.supply,
                    demand: c.demand,
                    trend: c.trend.as_str().to_owned(),
                    expected_demand: c.forecast.map(|f| f.demand),
                    expected_supply: c.forecast.map(|f| f.supply),
                })
                .collect(),
            lawful_cap: g.lawful_cap(),
            arms: g
                .arms()
                .iter()
                .map(|a| ArmGridWire {
                    experiment: a.experiment.to_string(),
                    arm: a.arm.to_string(),
                    policy: a.policy.to_string(),
                    multipliers: a
                        .multipliers()
                        .iter()
                        .map(|(c, m)| (c.token(), *m))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Response of a grid push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridPushResponse {
    /// `applied` or `stale`.
    pub status: String,
    /// Generation now held by the edge.
    pub generation: u64,
    /// Generation it replaced, if applied over one.
    pub previous: Option<u64>,
    /// The region's experiments as the edge holds them: the value of
    /// `experiment:<region>` in its CONFIG namespace, verbatim (the origin
    /// parses it with [`parse_experiments`], as the edge does). Absent when
    /// the region has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiments: Option<String>,
    /// Whether the edge read that key for this answer: false when it could
    /// not (KV failing), and then `experiments` says nothing.
    #[serde(default)]
    pub experiments_read: bool,
}

/// A driver position report, as the origin ingests it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DriverLocationEvent {
    /// The driver's external id.
    pub driver_id: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Whether they can take a ride now.
    #[serde(alias = "is_available")]
    pub available: bool,
    /// Vehicle class name.
    #[serde(default = "default_class")]
    pub vehicle_type: String,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
}

/// A demand signal, as the origin ingests it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DemandEvent {
    /// `ride_request`, `quote` or `app_open`.
    pub kind: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Vehicle class name.
    #[serde(default = "default_class")]
    pub vehicle_type: String,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
}

fn default_class() -> String {
    VehicleClass::Standard.as_str().to_owned()
}

/// A ride's outcome, reported to the origin (by the simulator, or the
/// dispatch system) for the efficiency analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RideOutcomeEvent {
    /// Unique ride id; a repeated id is ignored.
    pub ride_id: String,
    /// Region.
    pub region: String,
    /// Pickup latitude.
    pub latitude: f64,
    /// Pickup longitude.
    pub longitude: f64,
    /// Whether the ride was completed (false: unfulfilled or cancelled).
    pub completed: bool,
    /// Multiplier the rider was quoted.
    pub multiplier: f64,
    /// Fare paid, in integer minor units of `currency` (cents for USD).
    #[serde(default)]
    pub fare_minor: Option<u64>,
    /// ISO 4217 code of `fare_minor` (required with it).
    #[serde(default)]
    pub currency: Option<String>,
    /// The confirmed quote, if any.
    #[serde(default)]
    pub quote_id: Option<String>,
    /// Ms from confirmation to pickup, if known.
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
}

/// What an edge event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EdgeEventKind {
    /// A rider asked for a price (a quote was issued).
    Quote,
    /// A quote was confirmed: a booking exists.
    BookingConfirmed,
    /// The trip started.
    BookingStarted,
    /// The trip ended; `fare_minor` is the final fare.
    BookingCompleted,
    /// The booking was cancelled; `fare_minor` is the fee, if any.
    BookingCancelled,
    /// No driver was found.
    BookingFailed,
}

/// Most events in one `POST /v1/edge-events`: the origin refuses more, the
/// edge's queue consumer never sends more ([`crate::events::posts`]).
pub const MAX_EDGE_EVENTS: usize = 1_000;

/// Something that happened at the edge, sent to the origin through the
/// edge's queue (`POST /v1/edge-events`). Delivered at least once: the
/// origin counts each `id` once. Absent optional fields are left out of
/// the JSON, not sent as `null` (both read as absent): a quote event is
/// ~230 bytes instead of ~310, and a queue message holds that many more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EdgeEvent {
    /// Unique per event (1-128 characters): the quote id for a quote,
    /// `<booking_id>:<status>` for a booking's transition.
    pub id: String,
    /// What happened.
    pub kind: EdgeEventKind,
    /// Region.
    pub region: String,
    /// Pickup latitude.
    pub latitude: f64,
    /// Pickup longitude.
    pub longitude: f64,
    /// Vehicle class name.
    pub vehicle_type: String,
    /// When, ms since the epoch.
    pub timestamp: u64,
    /// Quotes: the opaque key of who asked (`events::client_key`, or
    /// `events::rider_key` for a verified rider; absent from older edges),
    /// so repeated price checks count once per asker and cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rider: Option<String>,
    /// Bookings: the booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<String>,
    /// The quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
    /// The multiplier quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Completed: the final fare; cancelled: the fee (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fare_minor: Option<u64>,
    /// ISO 4217 code of `fare_minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Started, completed, cancelled after start: ms from confirmation to
    /// pickup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// The experiment arm the quote was priced in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArmWire>,
}

/// `POST /v1/clock` request (an origin in demo mode: the simulator sets the
/// origin's clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    /// The simulated time, ms since the epoch; never earlier than the
    /// clock's.
    pub now: u64,
}

/// `POST /v1/clock` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockResponse {
    /// The clock now.
    pub now: u64,
    /// Ticks run on the way (one per `tick_seconds` of simulated time).
    pub ticks: u32,
}

/// `POST /v1/edge-events` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeEventsReport {
    /// Events applied now.
    pub applied: usize,
    /// Events already applied before (redeliveries), ignored.
    pub duplicates: usize,
    /// Events refused (invalid); see `errors`. Not retried.
    pub rejected: usize,
    /// The first few refusals.
    pub errors: Vec<RecordError>,
}

/// One refused record of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordError {
    /// 1-based line (NDJSON) or array index + 1 (JSON).
    pub line: usize,
    /// Machine-readable reason.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// What happened to an ingest batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestReport {
    /// Records taken.
    pub accepted: usize,
    /// Records refused.
    pub rejected: usize,
    /// The first few refusals.
    pub errors: Vec<RecordError>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, snake_case (e.g. `invalid_coordinates`).
    pub code: String,
    /// For humans; may change.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}

/// A refused ingest batch (400): the report when every record was refused,
/// the error shape when the body is not a batch at all. Documentation of
/// the 400 response; the origin sends one or the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum IngestRefusal {
    /// Every record was refused; see `errors`.
    Report(IngestReport),
    /// The body is not a batch (not a JSON array).
    Error(ErrorBody),
}

/// `POST /v1/outcomes` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutcomesResponse {
    /// Outcomes stored; a ride already stored is not counted again.
    pub inserted: usize,
}

/// What the origin restored at its start (`GET /health`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoredWire {
    /// Regions whose last grid was restored.
    pub grids: usize,
    /// Regions whose market windows were restored as of the last tick.
    pub windows: usize,
    /// Regions whose forecast history was restored (as of its last
    /// 5-minute bucket; the open buckets come with the windows).
    #[serde(default)]
    pub forecasts: usize,
    /// The last persisted tick, ms since the epoch (none on a fresh store).
    pub last_tick_at: Option<u64>,
    /// Seconds between that tick and the start: events accepted then were
    /// lost.
    pub lost_seconds: f64,
}

/// `GET /health` of the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OriginHealth {
    /// Always `ok` when the origin answers.
    pub status: String,
    /// The regions priced.
    pub regions: Vec<String>,
    /// What the start restored.
    pub restored: RestoredWire,
    /// Regions with a grid waiting to be pushed to the edge.
    pub pending_pushes: usize,
    /// Cluster mode only: this member and what it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
}

/// A cluster member's view (`GET /health` in cluster mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterHealth {
    /// This member's name.
    pub node: String,
    /// The live members, as last read.
    pub members: Vec<String>,
    /// The regions this member owns.
    pub owned: Vec<OwnedRegionWire>,
}

/// A region a cluster member owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OwnedRegionWire {
    /// The region.
    pub region: String,
    /// Whether its replay has caught up (it is ticked only then).
    pub ready: bool,
    /// Events applied to its market since this member acquired it.
    pub applied: u64,
    /// Its messages in the stream not yet applied.
    pub pending: u64,
}

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
    /// "<region> <token>".
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

/// A policy's parameters in an experiment's arm (`shared::policies::PolicyParams`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyParamsWire {
    /// Forecast-aware and controller: lean toward the forecast, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<f64>,
    /// Controller: the unfulfilled share to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_unfulfilled: Option<f64>,
    /// Controller: the p90 pickup wait to hold, minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_p90_wait_minutes: Option<f64>,
    /// Controller: the largest relative step of its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// Controller: the threshold's lowest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_threshold: Option<f64>,
    /// Controller: the threshold's highest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_threshold: Option<f64>,
}

/// An experiment's arm as an admin writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArmWire {
    /// The arm's name.
    pub name: String,
    /// Its policy: `none`, `default`, `forecast` or `controller`.
    pub policy: String,
    /// The policy's parameters (defaults for any left out).
    #[serde(default)]
    pub params: PolicyParamsWire,
    /// Its share of units, whole percent (the arms' shares sum to 100).
    pub share_percent: u32,
}

/// An experiment's guardrails.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsWire {
    /// End the experiment when an arm's completion rate falls this many
    /// percentage points below the control's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_drop_points: Option<f64>,
}

/// An experiment as an admin writes it, the value of `experiment:<region>`
/// in the edge's CONFIG namespace (`wrangler kv key put`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentWire {
    /// Its id.
    pub id: String,
    /// The region it runs in.
    pub region: String,
    /// The arms, the control first.
    pub arms: Vec<ArmWire>,
    /// `switchback` (the region alternates in windows) or `user`.
    pub split: String,
    /// Switchback: the window, minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_minutes: Option<u32>,
    /// The assignment hash's salt.
    pub salt: String,
    /// Start, ms since the epoch.
    pub start: u64,
    /// End (exclusive), ms since the epoch.
    pub end: u64,
    /// Guardrails.
    #[serde(default)]
    pub guardrails: GuardrailsWire,
}

impl From<&ExperimentWire> for crate::experiment::ExperimentDef {
    fn from(w: &ExperimentWire) -> Self {
        Self {
            id: w.id.clone(),
            region: w.region.clone(),
            arms: w
                .arms
                .iter()
                .map(|a| crate::experiment::ArmDef {
                    name: a.name.clone(),
                    policy: a.policy.clone(),
                    params: crate::policies::PolicyParams {
                        lead: a.params.lead,
                        target_unfulfilled: a.params.target_unfulfilled,
                        target_p90_wait_minutes: a.params.target_p90_wait_minutes,
                        step: a.params.step,
                        min_threshold: a.params.min_threshold,
                        max_threshold: a.params.max_threshold,
                    },
                    share_percent: a.share_percent,
                })
                .collect(),
            split: w.split.clone(),
            window_minutes: w.window_minutes,
            salt: w.salt.clone(),
            start_ms: w.start,
            end_ms: w.end,
            max_completion_drop_points: w.guardrails.max_completion_drop_points,
        }
    }
}

/// An estimate with its 95 % interval (absent with too few units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EstimateWire {
    /// The estimate.
    pub value: f64,
    /// The interval's low end.
    pub low: Option<f64>,
    /// The interval's high end.
    pub high: Option<f64>,
    /// Units it rests on: windows in a switchback, quotes or bookings in a
    /// user split.
    pub units: u64,
}

impl From<&crate::experiment::results::Estimate> for EstimateWire {
    fn from(e: &crate::experiment::results::Estimate) -> Self {
        Self {
            value: e.value,
            low: e.low(),
            high: e.high(),
            units: e.units,
        }
    }
}

/// An arm minus the control, with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DifferenceWire {
    /// Arm minus control.
    pub difference: f64,
    /// The interval's low end.
    pub low: Option<f64>,
    /// The interval's high end.
    pub high: Option<f64>,
}

impl From<&crate::experiment::results::Compared> for DifferenceWire {
    fn from(c: &crate::experiment::results::Compared) -> Self {
        Self {
            difference: c.difference,
            low: c.low(),
            high: c.high(),
        }
    }
}

/// One arm's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArmResultWire {
    /// The arm.
    pub arm: String,
    /// Its policy's version.
    pub policy: String,
    /// Price checks.
    pub quotes: u64,
    /// Bookings confirmed.
    pub confirmed: u64,
    /// Trips completed.
    pub completed: u64,
    /// Bookings cancelled.
    pub cancelled: u64,
    /// Bookings failed (no driver found).
    pub failed: u64,
    /// Fares of completed trips, minor units.
    pub revenue_minor: u64,
    /// Confirmed per quote.
    pub conversion: Option<EstimateWire>,
    /// Completed per ended booking.
    pub completion: Option<EstimateWire>,
    /// Fare per completed trip, minor units.
    pub fare_minor: Option<EstimateWire>,
    /// Revenue per quote, minor units.
    pub revenue_per_quote_minor: Option<EstimateWire>,
    /// Minutes from confirmation to pickup.
    pub wait_minutes: Option<EstimateWire>,
    /// Mean multiplier quoted.
    pub multiplier: Option<EstimateWire>,
    /// Mean absolute change of a cell's multiplier per tick in the arm's
    /// grid while riders saw it, since this origin started pricing the arm
    /// (absent when it is not the region's owner or the arm is not
    /// running); the unit is a switchback's window, a user split's minute.
    pub volatility: Option<EstimateWire>,
    /// Conversion minus the control's (absent for the control).
    pub conversion_vs_control: Option<DifferenceWire>,
    /// Completion minus the control's (absent for the control).
    pub completion_vs_control: Option<DifferenceWire>,
    /// Revenue per quote minus the control's (absent for the control).
    pub revenue_per_quote_vs_control: Option<DifferenceWire>,
}

/// `GET /v1/analytics/experiments/{id}` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentResultsResponse {
    /// The experiment.
    pub id: String,
    /// Its region.
    pub region: String,
    /// `switchback` or `user`.
    pub split: String,
    /// `scheduled`, `running`, `finished`, or `ended` (by its guardrail).
    pub status: String,
    /// Why it ended early, if it did.
    pub ended_reason: Option<String>,
    /// How the intervals were computed.
    pub intervals: String,
    /// The arms, the control first.
    pub arms: Vec<ArmResultWire>,
}

/// An experiment from its JSON, validated; the error says what is wrong
/// (for the log line of a refused definition).
pub fn parse_experiment(json: &str) -> Result<crate::experiment::Experiment, String> {
    let wire: ExperimentWire =
        serde_json::from_str(json).map_err(|e| format!("not an experiment: {e}"))?;
    crate::experiment::Experiment::new(&(&wire).into()).map_err(|e| e.to_string())
}

/// Most experiments one region's value may hold.
pub const MAX_EXPERIMENTS: usize = 32;

/// A region's experiments from the value of `experiment:<region>`: one
/// experiment or an array of them (one after another in time). Each
/// definition that is invalid, names another region or overlaps another in
/// time is refused with its reason, and the rest are kept: pricing never
/// stops for a typo, and a region runs at most one experiment at a time.
/// The edge and the origin both read the value through this.
pub fn parse_experiments(
    region: &Ident,
    json: &str,
) -> (Vec<crate::experiment::Experiment>, Vec<String>) {
    let values: Vec<serde_json::Value> = match serde_json::from_str(json) {
        Ok(serde_json::Value::Array(items)) if items.len() > MAX_EXPERIMENTS => {
            return (
                Vec::new(),
                vec![format!(
                    "{} experiments; a region's value holds at most {MAX_EXPERIMENTS}",
                    items.len()
                )],
            )
        }
        Ok(serde_json::Value::Array(items)) => items,
        Ok(one @ serde_json::Value::Object(_)) => vec![one],
        Ok(_) => return (Vec::new(), vec!["not an experiment or an array".into()]),
        Err(e) => return (Vec::new(), vec![format!("not JSON: {e}")]),
    };
    let mut valid = Vec::new();
    let mut refused = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let parsed = serde_json::from_value::<ExperimentWire>(v)
            .map_err(|e| format!("not an experiment: {e}"))
            .and_then(|w| {
                crate::experiment::Experiment::new(&(&w).into()).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(e) if e.region() != region => refused.push(format!(
                "[{i}] {}: is for region {}, not {region}",
                e.id(),
                e.region()
            )),
            Ok(e) => valid.push(e),
            Err(why) => refused.push(format!("[{i}] {why}")),
        }
    }
    let (kept, overlapping) = crate::experiment::refuse_overlaps(valid);
    refused.extend(
        overlapping
            .into_iter()
            .map(|(id, why)| format!("{id}: {why}")),
    );
    let (kept, reused) = crate::experiment::refuse_reused_ids(kept, |_| false);
    refused.extend(reused);
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fare_explanation_lists_every_component() {
        let f = FareBreakdown {
            currency: crate::fare::Currency::new("USD").expect("currency"),
            base: 250,
            distance: 1_205,
            time: 90,
            subtotal: 1_545,
            surge_multiplier: Multiplier::from_tenths(18).expect("m"),
            surge_amount: 1_236,
            booking_fee: 200,
            minimum_fare_adjustment: 5,
            total: 2_986,
        };
        let w = FareBreakdownWire::from(&f);
        assert_eq!(
            w.explanation,
            [
                "base 2.50 USD",
                "distance 12.05 USD",
                "time 0.90 USD",
                "surge x1.8 on 15.45: +12.36 USD",
                "booking fee 2.00 USD",
                "raised to the minimum fare: +0.05 USD",
            ]
        );
        let no_surge = FareBreakdown {
            surge_amount: 0,
            minimum_fare_adjustment: 0,
            ..f
        };
        assert_eq!(FareBreakdownWire::from(&no_surge).explanation.len(), 4);
    }

    #[test]
    fn estimate_request_accepts_the_design_shape() {
        let body = r#"{
            "pickup_location": {"latitude": 37.7749, "longitude": -122.4194},
            "dropoff_location": {"latitude": 37.7849, "longitude": -122.4094},
            "vehicle_type": "standard",
            "user_id": "user_123",
            "something_new": true
        }"#;
        let r: EstimateRequest = serde_json::from_str(body).expect("parse");
        assert_eq!(r.vehicle_type.as_deref(), Some("standard"));
        assert!(r.pickup_location.to_latlng().is_ok());
    }

    #[test]
    fn grid_push_round_trips_and_validates() {
        let cell = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), Level::default());
        let push = GridPush {
            format: GRID_FORMAT,
            region: "sf".into(),
            level: 13,
            generation: 9,
            computed_at: 1_000,
            cells: vec![GridCellWire {
                cell: cell.token(),
                multiplier: Multiplier::from_tenths(17).expect("m"),
                supply: 3,
                demand: 9,
                trend: "increasing".into(),
                expected_demand: None,
                expected_supply: None,
            }],
            lawful_cap: None,
            arms: vec![ArmGridWire {
                experiment: "e1".into(),
                arm: "treatment".into(),
                policy: "forecast-0123abcd".into(),
                multipliers: [(cell.token(), Multiplier::from_tenths(12).expect("m"))].into(),
            }],
        };
        let grid = SurgeGrid::try_from(push.clone()).expect("valid");
        assert_eq!(GridPush::from(&grid), push);
        // Outside an experiment a grid is written as format 2, which an
        // edge that predates arms still reads.
        let plain = SurgeGrid::try_from(GridPush {
            arms: vec![],
            ..push.clone()
        })
        .expect("valid");
        assert_eq!(GridPush::from(&plain).format, 2);
        assert_eq!(user_id(Some("")), Ok(None));
        assert_eq!(user_id(Some("u1")), Ok(Some("u1")));
        assert!(user_id(Some(&"x".repeat(MAX_USER_ID + 1))).is_err());
        let id = |s: &str| Ident::new(s).expect("id");
        let arm = grid.arm(&id("e1"), &id("treatment")).expect("the arm");
        assert_eq!(arm.lookup(cell).map(|m| m.tenths()), Some(12));
        assert!(grid.arm(&id("e1"), &id("control")).is_none());
        let mut bad_arm = push.clone();
        bad_arm.arms[0].multipliers = [("zz".to_owned(), Multiplier::ONE)].into();
        assert!(matches!(
            SurgeGrid::try_from(bad_arm),
            Err(InvalidGridPush::Arm { index: 0, .. })
        ));
        let mut too_many = push.clone();
        too_many.arms = vec![push.arms[0].clone(); 9];
        assert!(SurgeGrid::try_from(too_many).is_err());

        let mut bad = push.clone();
        bad.cells[0].cell = "nonsense".into();
        assert!(matches!(
            SurgeGrid::try_from(bad),
            Err(InvalidGridPush::Cell { index: 0, .. })
        ));
        let mut bad = push.clone();
        bad.format = 99;
        assert!(matches!(
            SurgeGrid::try_from(bad),
            Err(InvalidGridPush::Grid(InvalidGrid::Format(99)))
        ));
        let json = serde_json::to_string(&push).expect("json");
        assert!(json.contains("\"multiplier\":1.7"), "{json}");
        let below_one = json.replace("1.7", "0.7");
        assert!(serde_json::from_str::<GridPush>(&below_one).is_err());
    }

    #[test]
    fn demand_levels_are_monotone() {
        let ms: Vec<Multiplier> = (10..=60)
            .map(|t| Multiplier::from_tenths(t).expect("m"))
            .collect();
        for w in ms.windows(2) {
            assert!(DemandLevel::of(w[0]) <= DemandLevel::of(w[1]));
        }
    }

    /// Every closed set reads back what it writes, through its one parser,
    /// and refuses other names with the set's own message.
    #[test]
    fn closed_sets_travel_as_their_names() {
        fn round_trip<T>(all: &[T])
        where
            T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        {
            for x in all {
                let json = serde_json::to_string(x).expect("json");
                assert_eq!(&serde_json::from_str::<T>(&json).expect("parse"), x);
            }
            let err = serde_json::from_str::<T>("\"Nonsense\"").expect_err("refused");
            assert!(err.to_string().contains("Nonsense"), "{err}");
        }
        round_trip(&[Trend::Increasing, Trend::Stable, Trend::Decreasing]);
        round_trip(&VehicleClass::ALL);
        round_trip(&Source::ALL);
        round_trip(&DemandLevel::ALL);
        assert_eq!(
            serde_json::to_string(&DemandLevel::VeryHigh).expect("json"),
            "\"very_high\""
        );
    }

    #[test]
    fn an_experiment_parses_from_its_json_and_a_typo_is_named() {
        let json = r#"{"id": "fa-1", "region": "sf", "split": "switchback", "window_minutes": 30,
            "salt": "2026-11", "start": 1800000000000, "end": 1801000000000,
            "arms": [{"name": "control", "policy": "default", "share_percent": 50},
                     {"name": "forecast", "policy": "forecast", "params": {"lead": 0.75},
                      "share_percent": 50}],
            "guardrails": {"max_completion_drop_points": 5}}"#;
        let e = parse_experiment(json).expect("valid");
        assert_eq!(e.arms().len(), 2);
        assert_eq!(e.max_completion_drop_points(), Some(5.0));
        let typo = json.replace("\"lead\"", "\"laed\"");
        assert!(parse_experiment(&typo)
            .expect_err("unknown field")
            .contains("laed"));
        let bad = json.replace("\"share_percent\": 50}]", "\"share_percent\": 60}]");
        assert_eq!(
            parse_experiment(&bad).expect_err("shares"),
            "arms: shares sum to 110, not 100"
        );

        // A region's value: one experiment or several after one another.
        let sf = Ident::new("sf").expect("id");
        let (one, refused) = parse_experiments(&sf, json);
        assert_eq!((one.len(), refused.len()), (1, 0));
        let later = json.replace("fa-1", "fa-2").replace(
            r#""start": 1800000000000, "end": 1801000000000"#,
            r#""start": 1801000000000, "end": 1802000000000"#,
        );
        assert_ne!(later.replace("fa-2", "fa-1"), json);
        let (two, refused) = parse_experiments(&sf, &format!("[{json}, {later}]"));
        assert_eq!((two.len(), refused.len()), (2, 0), "{refused:?}");
        // Overlapping ones are both refused; the typo is refused alone.
        let overlapping = json.replace("fa-1", "fa-3");
        let (kept, refused) =
            parse_experiments(&sf, &format!("[{json}, {overlapping}, {later}, {typo}]"));
        assert_eq!(kept.len(), 1, "{refused:?}");
        assert_eq!(kept[0].id().as_str(), "fa-2");
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused.iter().any(|r| r.contains("laed")), "{refused:?}");
        assert!(
            refused.iter().any(|r| r.contains("overlaps")),
            "{refused:?}"
        );
        // One id for two experiments of the region: both refused.
        let again = later.replace("fa-2", "fa-1");
        let (kept, refused) = parse_experiments(&sf, &format!("[{json}, {again}]"));
        assert!(kept.is_empty(), "{refused:?}");
        assert!(
            refused.iter().all(|r| r.contains("names two")),
            "{refused:?}"
        );
        // Another region's definition under this key is refused.
        let (none, refused) = parse_experiments(&Ident::new("nyc").expect("id"), json);
        assert!(none.is_empty());
        assert!(refused[0].contains("region sf, not nyc"), "{refused:?}");
        assert!(!parse_experiments(&sf, "42").1.is_empty());
        assert!(!parse_experiments(&sf, "{").1.is_empty());
    }
}
