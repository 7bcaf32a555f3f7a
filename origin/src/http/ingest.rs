//! Producer endpoints: driver locations and demand (JSON array, NDJSON,
//! WebSocket) and ride outcomes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use shared::api::{
    DemandEvent, DriverLocationEvent, ErrorBody, IngestRefusal, IngestReport, OutcomesResponse,
    RideOutcomeEvent,
};
use shared::geo::{Cell, LatLng};

use super::{bad, Problem, Query};
use crate::ingest::{self, Format};
use crate::state::{lock, AppState};
use crate::store::{History, RideOutcome};

fn format_of(headers: &HeaderMap) -> Result<Format, Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match ct.split(';').next().unwrap_or("").trim() {
        "application/json" => Ok(Format::JsonArray),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Format::Ndjson),
        _ => Err(Problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json (an array) or application/x-ndjson".into(),
        )),
    }
}

pub(crate) async fn read_body(s: &AppState, body: Body) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, s.config.max_body_bytes)
        .await
        .map_err(|_| {
            s.metrics.batches_refused.fetch_add(1, Relaxed);
            Problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "body larger than {} bytes; split the batch",
                    s.config.max_body_bytes
                ),
            )
        })
}

fn report_response(report: IngestReport) -> Response {
    let status = if report.accepted == 0 && report.rejected > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, Json(report)).into_response()
}

/// Which stream a batch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Driver locations.
    Locations,
    /// Demand events.
    Demand,
}

/// Parses one batch and applies it: to the local markets (one node; the
/// aggregator lock is taken once per batch, after parsing), or, in cluster
/// mode, by publishing it to the event stream and waiting for the
/// acknowledgements (503 `stream_unavailable` if they do not all come;
/// retry with the same `Idempotency-Key` and nothing counts twice).
pub async fn apply_batch(
    s: &AppState,
    kind: Kind,
    body: &[u8],
    format: Format,
    idempotency_key: Option<&str>,
) -> Result<IngestReport, Problem> {
    let now = s.clock.now();
    let refused = |e: ingest::BatchError| {
        s.metrics.batches_refused.fetch_add(1, Relaxed);
        bad("invalid_batch", e.to_string())
    };
    let (drivers, demand, report) = match kind {
        Kind::Locations => {
            let p = ingest::locations(body, format, &s.regions, now).map_err(refused)?;
            (p.events, Vec::new(), p.report)
        }
        Kind::Demand => {
            let p = ingest::demands(body, format, &s.regions, now).map_err(refused)?;
            (Vec::new(), p.events, p.report)
        }
    };
    match &s.cluster {
        None => {
            let mut agg = lock(&s.agg);
            agg.drivers(&drivers);
            agg.demand(&demand);
        }
        Some(cluster) => {
            let kind_name = match kind {
                Kind::Locations => "locations",
                Kind::Demand => "demand",
            };
            let request = crate::cluster::publish::request_id(idempotency_key, kind_name, body);
            let published =
                crate::cluster::publish::publish(cluster, &s.regions, &drivers, &demand, &request)
                    .await
                    .map_err(|e| {
                        s.metrics.publish_failures.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, "ingest not acknowledged by the stream");
                        Problem(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "stream_unavailable",
                            "the event stream did not acknowledge the batch; retry (with the same Idempotency-Key, nothing counts twice)".into(),
                        )
                    })?;
            s.metrics
                .publish_duplicates
                .fetch_add(published.duplicates as u64, Relaxed);
        }
    }
    s.metrics
        .locations_accepted
        .fetch_add(drivers.len() as u64, Relaxed);
    s.metrics
        .demand_accepted
        .fetch_add(demand.len() as u64, Relaxed);
    s.metrics
        .records_rejected
        .fetch_add(report.rejected as u64, Relaxed);
    Ok(report)
}

/// 415 unless the body is declared a JSON array (`application/json`).
pub(crate) fn json_array_only(headers: &HeaderMap, what: &str) -> Result<(), Problem> {
    if format_of(headers)? == Format::JsonArray {
        return Ok(());
    }
    Err(Problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("send {what} as a JSON array (application/json)"),
    ))
}

/// The `Idempotency-Key` header, by the core's rule
/// ([`shared::booking::valid_idempotency_key`], as the edge's bookings).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|k| shared::booking::valid_idempotency_key(k))
        .map(Some)
        .ok_or_else(|| {
            bad(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })
}

async fn ingest(
    s: Arc<AppState>,
    kind: Kind,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let format = format_of(&headers)?;
    let key = idempotency_key(&headers)?;
    let bytes = read_body(&s, body).await?;
    Ok(report_response(
        apply_batch(&s, kind, &bytes, format, key).await?,
    ))
}

/// `POST /v1/ingest/locations`.
#[utoipa::path(
    post,
    path = "/v1/ingest/locations",
    tag = "ingest",
    request_body(
        description = "A JSON array of reports, or NDJSON (one report per line, `application/x-ndjson`).",
        content(
            (Vec<DriverLocationEvent> = "application/json"),
            (String = "application/x-ndjson"),
        ),
    ),
    responses(
        (status = 200, description = "Accepted (possibly partly: see `rejected` and `errors`)", body = IngestReport),
        (status = 400, description = "Every record refused (the report), or not a JSON array (the error shape)", body = IngestRefusal),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 503, description = "Cluster mode: the event stream did not acknowledge the batch; retry with the same Idempotency-Key", body = ErrorBody),
    ),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Cluster mode: the same key with the same body, posted again to any origin within the idempotency window, counts once. 1 to 255 visible ASCII characters."),
    ),
    security(("producer" = [])),
)]
pub async fn locations(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    ingest(s, Kind::Locations, headers, body).await
}

/// `POST /v1/ingest/demand`.
#[utoipa::path(
    post,
    path = "/v1/ingest/demand",
    tag = "ingest",
    request_body(
        description = "A JSON array of demand events, or NDJSON (`application/x-ndjson`).",
        content(
            (Vec<DemandEvent> = "application/json"),
            (String = "application/x-ndjson"),
        ),
    ),
    responses(
        (status = 200, description = "Accepted (possibly partly)", body = IngestReport),
        (status = 400, description = "Every record refused (the report), or not a JSON array (the error shape)", body = IngestRefusal),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 503, description = "Cluster mode: the event stream did not acknowledge the batch; retry with the same Idempotency-Key", body = ErrorBody),
    ),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Cluster mode: the same key with the same body, posted again to any origin within the idempotency window, counts once. 1 to 255 visible ASCII characters."),
    ),
    security(("producer" = [])),
)]
pub async fn demand(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    ingest(s, Kind::Demand, headers, body).await
}

/// The WebSocket's query.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    kind: Kind,
}

/// `GET /v1/ingest/ws?kind=locations|demand`: each text message is an
/// NDJSON batch; each is answered with its report. (Not in the OpenAPI
/// document: not a request/response endpoint.)
pub async fn ws(
    State(s): State<Arc<AppState>>,
    Query(q): Query<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let ws = ws.map_err(|e| {
        Problem(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            format!("this endpoint speaks WebSocket only: {}", e.body_text()),
        )
    })?;
    let limit = s.config.max_body_bytes;
    Ok(ws
        .max_message_size(limit)
        .on_upgrade(move |socket| ws_loop(s, q.kind, socket)))
}

async fn ws_loop(s: Arc<AppState>, kind: Kind, mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        let data: Bytes = match msg {
            Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let reply = match apply_batch(&s, kind, &data, Format::Ndjson, None).await {
            Ok(report) => serde_json::to_string(&report),
            Err(Problem(_, code, message)) => serde_json::to_string(&ErrorBody::new(code, message)),
        };
        let Ok(text) = reply else { break };
        if socket.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
}

/// `POST /v1/outcomes`: what became of rides, for the efficiency report.
/// The whole batch is validated before anything is stored.
#[utoipa::path(
    post,
    path = "/v1/outcomes",
    tag = "ingest",
    request_body(content = Vec<RideOutcomeEvent>, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (repeated ride ids are not counted again)", body = OutcomesResponse),
        (status = 400, description = "Not a JSON array of outcomes, or an invalid outcome", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("producer" = [])),
)]
pub async fn outcomes(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<OutcomesResponse>, Problem> {
    json_array_only(&headers, "outcomes")?;
    let bytes = read_body(&s, body).await?;
    let items: Vec<RideOutcomeEvent> =
        serde_json::from_slice(&bytes).map_err(|e| bad("invalid_batch", e.to_string()))?;
    let mut rows = Vec::with_capacity(items.len());
    for (i, o) in items.into_iter().enumerate() {
        rows.push(
            outcome_row(&s, o)
                .map_err(|m| bad("invalid_record", format!("outcome {}: {m}", i + 1)))?,
        );
    }
    let inserted = with_store(&s, move |st| st.record_outcomes(&rows)).await?;
    s.metrics
        .outcomes_stored
        .fetch_add(inserted as u64, Relaxed);
    Ok(Json(OutcomesResponse { inserted }))
}

/// Validates one outcome into a store row.
fn outcome_row(s: &AppState, o: RideOutcomeEvent) -> Result<RideOutcome, String> {
    let region = s
        .regions
        .iter()
        .find(|r| r.id.as_str() == o.region)
        .ok_or_else(|| format!("unknown region {:?}", o.region))?;
    let p = LatLng::new(o.latitude, o.longitude).map_err(|e| e.to_string())?;
    let currency =
        shared::events::outcome_figures(o.multiplier, o.fare_minor, o.currency.as_deref())
            .map_err(|r| r.message)?;
    shared::market::external_id("ride_id", &o.ride_id)?;
    crate::ingest::timestamp(o.timestamp, s.clock.now()).map_err(|r| r.message)?;
    Ok(RideOutcome {
        ride_id: o.ride_id,
        region: o.region,
        cell: Cell::at(p, region.level).token(),
        at_ms: o.timestamp,
        completed: o.completed,
        multiplier: o.multiplier,
        fare_minor: o.fare_minor,
        currency,
        quote_id: o.quote_id,
        wait_ms: o.wait_ms,
    })
}

/// Runs a store operation on a blocking thread; failures are 503s.
pub(crate) async fn with_store<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&mut dyn History) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Problem> {
    let store = s.store.clone();
    let unavailable = |m: String| Problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m);
    tokio::task::spawn_blocking(move || f(lock(&store).as_mut()))
        .await
        .map_err(|_| unavailable("store task failed".into()))?
        .map_err(|e| {
            tracing::error!(error = %e, "store operation failed");
            unavailable("the store is unavailable; retry".into())
        })
}
