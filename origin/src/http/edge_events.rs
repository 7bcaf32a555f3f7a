//! `POST /v1/edge-events`: what happened at the edge, from the edge's
//! queue consumer — price checks (demand) and bookings (demand and ride
//! outcomes). The meaning of each event is the core's
//! ([`shared::events::effect`]); this handler validates, routes and stores.
//!
//! Delivery is at least once, so every effect is idempotent: demand is
//! keyed ([`shared::market::DemandSeen::once`]: once per key and cell in
//! the demand window), outcomes are keyed by the booking id. A batch is
//! answered 200 once everything valid in it is applied (or known); invalid
//! events are reported and not retried. A 503 (store or stream down) makes
//! the consumer retry the whole batch later.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use shared::api::{EdgeEvent, EdgeEventsReport, ErrorBody, RecordError};
use shared::events::{arm_event, effect, Effect};
use shared::fare::VehicleClass;
use shared::market::DemandSeen;
use shared::time::Timestamp;

use super::ingest::{json_array_only, read_body, with_store};
use super::{bad, Problem};
use crate::ingest::{locate, MAX_REPORTED_ERRORS};
use crate::state::{lock, AppState};
use crate::store::{ArmRecord, RideOutcome};

/// Most events in one batch (the queue consumer groups its messages so it
/// never sends more).
pub const MAX_EVENTS: usize = shared::api::MAX_EDGE_EVENTS;

/// One event, validated, with what it does.
enum Valid {
    Demand(usize, DemandSeen),
    Outcome(RideOutcome),
    Nothing,
}

fn validate(s: &AppState, e: EdgeEvent, now: Timestamp) -> Result<Valid, (&'static str, String)> {
    shared::market::external_id("id", &e.id).map_err(|m| ("invalid_id", m))?;
    crate::ingest::timestamp(e.timestamp, now).map_err(|r| (r.code, r.message))?;
    let class = VehicleClass::parse(&e.vehicle_type)
        .map_err(|err| ("unknown_vehicle_class", err.to_string()))?;
    let (idx, cell) =
        locate(e.latitude, e.longitude, &s.regions).map_err(|r| (r.code, r.message))?;
    let region = &s.regions[idx];
    if region.id.as_str() != e.region {
        return Err((
            "region_mismatch",
            format!("the pickup is in region {}, not {:?}", region.id, e.region),
        ));
    }
    match effect(&e.reported()) {
        Effect::Demand { kind, key } => Ok(Valid::Demand(
            idx,
            DemandSeen {
                cell,
                class,
                kind,
                at: Timestamp(e.timestamp),
                once: Some(key),
            },
        )),
        Effect::Outcome { completed } => {
            let multiplier = e.multiplier.unwrap_or(1.0);
            let currency =
                shared::events::outcome_figures(multiplier, e.fare_minor, e.currency.as_deref())
                    .map_err(|r| (r.code, r.message))?;
            let ride_id = e.booking_id.clone().unwrap_or_else(|| e.id.clone());
            shared::market::external_id("booking_id", &ride_id).map_err(|m| ("invalid_id", m))?;
            Ok(Valid::Outcome(RideOutcome {
                ride_id,
                region: e.region,
                cell: cell.token(),
                at_ms: e.timestamp,
                completed,
                multiplier,
                fare_minor: e.fare_minor,
                currency,
                quote_id: e.quote_id,
                wait_ms: e.wait_ms,
            }))
        }
        Effect::Nothing => Ok(Valid::Nothing),
    }
}

/// `POST /v1/edge-events`.
#[utoipa::path(
    post,
    path = "/v1/edge-events",
    tag = "ingest",
    request_body(content = Vec<EdgeEvent>, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied (redeliveries counted as duplicates; invalid events reported, not retried)", body = EdgeEventsReport),
        (status = 400, description = "Not a JSON array of events, or more than 1,000", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 503, description = "The store or the event stream is unavailable; retry the batch", body = ErrorBody),
    ),
    security(("producer" = [])),
)]
pub async fn edge_events(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EdgeEventsReport>, Problem> {
    json_array_only(&headers, "edge events")?;
    let bytes = read_body(&s, body).await?;
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|e| bad("invalid_batch", e.to_string()))?;
    if items.len() > MAX_EVENTS {
        return Err(bad(
            "invalid_batch",
            format!("at most {MAX_EVENTS} events per batch"),
        ));
    }
    let now = s.clock.now();
    let mut report = EdgeEventsReport::default();
    let mut demand = Vec::new();
    let mut outcomes = Vec::new();
    let mut arms = Vec::new();
    for (i, raw) in items.into_iter().enumerate() {
        let parsed = serde_json::from_value::<EdgeEvent>(raw)
            .map_err(|e| ("invalid_record", e.to_string()))
            .and_then(|e| {
                // A quote priced in an experiment's arm is also kept for
                // the experiment's results.
                let arm = arm_event(&e.reported()).map(|(stamp, event)| ArmRecord {
                    event_id: e.id.clone(),
                    experiment: stamp.experiment.to_string(),
                    region: e.region.clone(),
                    policy: stamp.policy.to_string(),
                    event,
                });
                validate(&s, e, now).map(|v| (v, arm))
            });
        if let Ok((_, Some(arm))) = &parsed {
            arms.push(arm.clone());
        }
        match parsed.map(|(v, _)| v) {
            Ok(Valid::Demand(idx, d)) => demand.push((idx, d)),
            Ok(Valid::Outcome(o)) => outcomes.push(o),
            Ok(Valid::Nothing) => report.applied += 1,
            Err((code, message)) => {
                report.rejected += 1;
                if report.errors.len() < MAX_REPORTED_ERRORS {
                    report.errors.push(RecordError {
                        line: i + 1,
                        code: code.to_owned(),
                        message,
                    });
                }
            }
        }
    }
    if !arms.is_empty() {
        // Stored first: a failure answers 503 and the whole batch comes
        // again (every write below is idempotent).
        with_store(&s, move |st| st.record_arm_events(&arms)).await?;
    }
    if !outcomes.is_empty() {
        let n = outcomes.len();
        let inserted = with_store(&s, move |st| st.record_outcomes(&outcomes)).await?;
        s.metrics
            .outcomes_stored
            .fetch_add(inserted as u64, Relaxed);
        report.applied += inserted;
        report.duplicates += n - inserted;
    }
    if !demand.is_empty() {
        match &s.cluster {
            None => {
                let counted = lock(&s.agg).demand(&demand);
                report.applied += counted;
                report.duplicates += demand.len() - counted;
            }
            Some(cluster) => {
                // The owner counts each key once; a batch posted again
                // whole within the stream's window is not even stored twice.
                let request =
                    crate::cluster::publish::request_id(Some("edge-events"), "edge_events", &bytes);
                crate::cluster::publish::publish(cluster, &s.regions, &[], &demand, &request)
                    .await
                    .map_err(|e| {
                        s.metrics.publish_failures.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, "edge events not acknowledged by the stream");
                        Problem(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "stream_unavailable",
                            "the event stream did not acknowledge the events; retry the batch"
                                .into(),
                        )
                    })?;
                report.applied += demand.len();
            }
        }
        s.metrics
            .demand_accepted
            .fetch_add(demand.len() as u64, Relaxed);
    }
    s.metrics
        .edge_events_applied
        .fetch_add(report.applied as u64, Relaxed);
    s.metrics
        .edge_events_duplicates
        .fetch_add(report.duplicates as u64, Relaxed);
    s.metrics
        .edge_events_rejected
        .fetch_add(report.rejected as u64, Relaxed);
    Ok(Json(report))
}
