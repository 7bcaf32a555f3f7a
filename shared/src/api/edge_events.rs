//! `POST /v1/edge-events`: what the edge's queue tells the origin.

use super::*;

/// What an edge event reports (the core's [`crate::events::EventKind`]).
pub use crate::events::EventKind as EdgeEventKind;

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

impl EdgeEvent {
    /// The event a quote sends the origin: demand at its pickup, keyed by
    /// its asker ([`crate::events::asker`]), with the multiplier and
    /// experiment arm it was priced at.
    pub fn quote(claims: &crate::quote::QuoteClaims, pickup: LatLng, asker: String) -> Self {
        Self {
            id: claims.quote_id.to_string(),
            kind: EdgeEventKind::Quote,
            region: claims.region.to_string(),
            latitude: pickup.lat(),
            longitude: pickup.lng(),
            vehicle_type: claims.class.as_str().to_owned(),
            timestamp: claims.issued_at.0,
            rider: Some(asker),
            booking_id: None,
            quote_id: Some(claims.quote_id.to_string()),
            multiplier: Some(claims.surge.as_f64()),
            fare_minor: None,
            currency: None,
            wait_ms: None,
            experiment: claims.arm.as_ref().map(Into::into),
        }
    }

    /// What the event reports, as the core reads it ([`crate::events::effect`]).
    /// An arm stamp that is not identifiers reads as none.
    pub fn reported(&self) -> crate::events::Reported<'_> {
        crate::events::Reported {
            kind: self.kind,
            id: &self.id,
            rider: self.rider.as_deref(),
            booking_id: self.booking_id.as_deref(),
            at: Timestamp(self.timestamp),
            multiplier: self.multiplier,
            fare_minor: self.fare_minor,
            wait_ms: self.wait_ms,
            arm: self.experiment.as_ref().and_then(|a| a.stamp().ok()),
        }
    }
}
