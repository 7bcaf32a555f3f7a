//! `POST /v1/clock`: the simulator sets a demo origin's clock
//! ([`crate::simclock`]); the ticks due on the way run before the answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use shared::api::{ClockRequest, ClockResponse, ErrorBody};
use shared::time::Timestamp;

use super::ingest::read_body;
use super::{bad, Problem};
use crate::simclock::SimulatedClock;
use crate::state::AppState;

/// `POST /v1/clock`.
#[utoipa::path(
    post,
    path = "/v1/clock",
    tag = "ingest",
    request_body(content = ClockRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The clock moved; the ticks due on the way ran", body = ClockResponse),
        (status = 400, description = "Not a clock request", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 409, description = "clock_not_simulated (the origin runs on the wall clock) or clock_backwards", body = ErrorBody),
    ),
    security(("producer" = [])),
)]
pub async fn set(
    State(s): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<ClockResponse>, Problem> {
    let bytes = read_body(&s, body).await?;
    let r: ClockRequest =
        serde_json::from_slice(&bytes).map_err(|e| bad("invalid_body", e.to_string()))?;
    if s.simulated.is_none() {
        return Err(Problem(
            StatusCode::CONFLICT,
            "clock_not_simulated",
            "this origin runs on the wall clock; start it with EQ_SIMULATED_CLOCK=true for a demo"
                .into(),
        ));
    }
    let ticks = SimulatedClock::advance(&s, Timestamp(r.now))
        .await
        .map_err(|e| Problem(StatusCode::CONFLICT, "clock_backwards", e.to_string()))?;
    Ok(Json(ClockResponse {
        now: s.clock.now().0,
        ticks,
    }))
}
