//! The booking endpoints (`/api/v1/bookings/{id}[/start|complete|cancel|fail]`):
//! transition bodies and the booking as riders and dispatch read it.

use super::*;

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
