//! Operations endpoints: health, metrics, the OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use shared::api::{ClusterHealth, ErrorBody, OriginHealth, OwnedRegionWire, RestoredWire};

use crate::state::{lock, AppState};

/// `GET /health`: always open; what the start restored, what waits to be
/// pushed, and in cluster mode the members and the regions this one owns.
#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    responses((status = 200, description = "The origin is up", body = OriginHealth)),
)]
pub async fn health(State(s): State<Arc<AppState>>) -> Json<OriginHealth> {
    Json(OriginHealth {
        status: "ok".into(),
        regions: s.regions.iter().map(|r| r.id.as_str().to_owned()).collect(),
        restored: RestoredWire {
            grids: s.restored.grids,
            windows: s.restored.windows,
            forecasts: s.restored.forecasts,
            last_tick_at: s.restored.last_tick_at,
            lost_seconds: s.restored.lost_seconds,
        },
        pending_pushes: s.pusher.pending(),
        cluster: s.cluster.as_ref().map(|c| {
            let mut owned: Vec<OwnedRegionWire> = lock(&c.owned)
                .iter()
                .map(|(idx, o)| OwnedRegionWire {
                    region: s.regions[*idx].id.as_str().to_owned(),
                    ready: o.stats.ready.load(Acquire),
                    applied: o.stats.applied.load(Relaxed),
                    pending: o.stats.pending.load(Relaxed),
                })
                .collect();
            owned.sort_by(|a, b| a.region.cmp(&b.region));
            ClusterHealth {
                node: c.node.clone(),
                members: lock(&c.live).clone(),
                owned,
            }
        }),
    })
}

/// `GET /metrics`: Prometheus text; open unless `auth.metrics_open` is
/// false, then a reader token is needed.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "No or unknown token (when metrics are not open)", body = ErrorBody),
        (status = 403, description = "A producer token (when metrics are not open)", body = ErrorBody),
    ),
)]
pub async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let mut body = s.metrics.render();
    body.push_str(&controller_thresholds(&s));
    body.push_str(&forecast_accuracy(&s));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The threshold of every controlled region this node prices (the
/// demand / supply ratio at which its surge starts now): all of them on a
/// single node, the ones it owns in a cluster.
fn controller_thresholds(s: &AppState) -> String {
    let priced = s.cluster.as_ref().map(|c| c.tickable());
    let agg = crate::state::lock(&s.agg);
    let rows: Vec<String> = agg
        .regions()
        .enumerate()
        .filter(|(i, _)| priced.as_ref().is_none_or(|p| p.contains(i)))
        .filter_map(|(i, r)| {
            agg.threshold(i).map(|t| {
                format!(
                    "equilibrium_controller_threshold{{region=\"{}\"}} {t:.4}\n",
                    r.id
                )
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "# HELP equilibrium_controller_threshold The demand/supply ratio at which a controlled region's surge starts (lower: more surge).\n# TYPE equilibrium_controller_threshold gauge\n{}",
        rows.concat()
    )
}

/// The live WAPE of every priced region's demand forecasts, per horizon,
/// over all its cells and over its busy ones (seed 002's alert: above 0.2
/// at 15 minutes on busy cells), and how many series are busy.
fn forecast_accuracy(s: &AppState) -> String {
    let priced = s.cluster.as_ref().map(|c| c.tickable());
    let agg = crate::state::lock(&s.agg);
    let mut wape = String::new();
    let mut busy = String::new();
    for (i, r) in agg.regions().enumerate() {
        if priced.as_ref().is_some_and(|p| !p.contains(&i)) {
            continue;
        }
        let Some(a) = agg.forecast_accuracy(i) else {
            continue;
        };
        for (cells, by_horizon) in [("all", a.all), ("busy", a.busy)] {
            for (h, w) in by_horizon.iter().enumerate() {
                if let Some(w) = w {
                    wape.push_str(&format!(
                        "equilibrium_forecast_wape{{region=\"{}\",cells=\"{cells}\",horizon_minutes=\"{}\"}} {w:.4}\n",
                        r.id,
                        shared::forecast::horizon_minutes(shared::forecast::HORIZONS[h])
                    ));
                }
            }
        }
        busy.push_str(&format!(
            "equilibrium_forecast_busy_series{{region=\"{}\"}} {}\n",
            r.id, a.busy_series
        ));
    }
    let mut out = String::new();
    if !wape.is_empty() {
        out.push_str("# HELP equilibrium_forecast_wape Demand forecast error over about the last hour: sum of absolute errors over sum of actual demand, each forecast scored when its bucket completes. Alert above 0.2 at 15 minutes on busy cells.\n# TYPE equilibrium_forecast_wape gauge\n");
        out.push_str(&wape);
    }
    if !busy.is_empty() {
        out.push_str(&format!("# HELP equilibrium_forecast_busy_series Cell and vehicle-class series averaging at least {} demand units per 5-minute bucket over about the last hour.\n# TYPE equilibrium_forecast_busy_series gauge\n", shared::forecast::BUSY_UNITS_PER_BUCKET));
        out.push_str(&busy);
    }
    out
}

/// `GET /openapi.json`: this API's OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
)]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
        .into_response()
}
