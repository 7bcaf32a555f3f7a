//! Operations: errors (the one error body), health, clock, restore.

use super::*;

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
