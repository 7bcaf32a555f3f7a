//! `POST /v1/edge-events`: what the edge's queue tells the origin.

use super::*;

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
