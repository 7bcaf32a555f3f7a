//! The origin's ingest (`/v1/ingest/locations`, `/v1/ingest/demand`,
//! `/v1/outcomes`): records and per-record reports.

use super::*;

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
    VehicleClass::DEFAULT.as_str().to_owned()
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
