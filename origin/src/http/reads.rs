//! Reader endpoints: a region's current grid and the analytics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use shared::api::{
    ErrorBody, ForecastsResponse, GridPush, HistoryPoint, HistoryResponse, LeastEfficientResponse,
    ZoneEfficiencyWire,
};
use shared::fare::VehicleClass;
use shared::geo::Cell;

use super::ingest::with_store;
use super::{bad, Path, Problem, Query};
use crate::state::AppState;

/// `GET /v1/grids/{region}`: the newest grid, as pushed to the edge. In
/// cluster mode any member answers, from the grid the region's owner
/// stored with its last tick (`eq_grids`).
#[utoipa::path(
    get,
    path = "/v1/grids/{region}",
    tag = "reads",
    params(("region" = String, Path, description = "Region id")),
    responses(
        (status = 200, description = "The newest grid", body = GridPush),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A producer token", body = ErrorBody),
        (status = 404, description = "No grid for that region (yet)", body = ErrorBody),
        (status = 503, description = "Cluster mode: the grid store is unavailable; retry", body = ErrorBody),
    ),
    security(("reader" = [])),
)]
pub async fn grid(
    State(s): State<Arc<AppState>>,
    Path(region): Path<String>,
) -> Result<Response, Problem> {
    let g = match &s.cluster {
        None => s.grid(&region),
        Some(c) if s.regions.iter().any(|r| r.id.as_str() == region) => {
            let stored = c.grids.get(&region).await.map_err(|e| {
                tracing::warn!(error = %e, "cannot read the stored grid");
                Problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the cluster's grid store is unavailable; retry".into(),
                )
            })?;
            stored
                .as_deref()
                .and_then(crate::cluster::decode_stored)
                .map(|(json, _)| json.to_owned())
        }
        Some(_) => None,
    };
    let g = g.ok_or_else(|| {
        Problem(
            StatusCode::NOT_FOUND,
            "no_grid",
            format!(
                "no grid for region {:?} yet",
                region.chars().take(64).collect::<String>()
            ),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], g).into_response())
}

/// `GET /v1/forecasts/{region}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// One vehicle class (`economy`, `standard`, `premium`, `xl`); absent:
    /// all classes summed, as pricing reads them.
    vehicle_class: Option<String>,
    /// Most cells returned, busiest first (1-10000, default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// `GET /v1/forecasts/{region}`: where demand is heading. Each cell's
/// demand and supply forecasts for the 5-minute buckets 5, 10 and 15
/// minutes ahead, with 95 % intervals, for one vehicle class or all,
/// busiest first. In cluster mode only the region's owner holds its
/// forecasts; another member answers 421 `not_owner`.
#[utoipa::path(
    get,
    path = "/v1/forecasts/{region}",
    tag = "reads",
    params(("region" = String, Path, description = "Region id"), ForecastQuery),
    responses(
        (status = 200, description = "The region's forecasts", body = ForecastsResponse),
        (status = 400, description = "An unknown vehicle class or a limit out of range", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A producer token", body = ErrorBody),
        (status = 404, description = "No such region", body = ErrorBody),
        (status = 421, description = "Cluster mode: this member does not price the region now; ask its owner", body = ErrorBody),
    ),
    security(("reader" = [])),
)]
pub async fn forecasts(
    State(s): State<Arc<AppState>>,
    Path(region): Path<String>,
    Query(q): Query<ForecastQuery>,
) -> Result<Json<ForecastsResponse>, Problem> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(bad("invalid_parameter", "limit must be 1-10000"));
    }
    let class = q
        .vehicle_class
        .as_deref()
        .map(VehicleClass::parse)
        .transpose()
        .map_err(|e| bad("unknown_vehicle_class", e.to_string()))?;
    let Some(idx) = s.regions.iter().position(|r| r.id.as_str() == region) else {
        return Err(Problem(
            StatusCode::NOT_FOUND,
            "unknown_region",
            format!(
                "no region {:?}",
                region.chars().take(64).collect::<String>()
            ),
        ));
    };
    if s.cluster
        .as_ref()
        .is_some_and(|c| !c.tickable().contains(&idx))
    {
        return Err(Problem(
            StatusCode::MISDIRECTED_REQUEST,
            "not_owner",
            format!("this member does not price region {region} now; ask its owner (/health lists what each member owns)"),
        ));
    }
    let outlook = crate::state::lock(&s.agg).forecast_outlook(idx, class, limit as usize);
    let r = &s.regions[idx];
    Ok(Json(ForecastsResponse::new(
        &r.id,
        r.geo(),
        class,
        r.calendar,
        &outlook,
    )))
}

/// `GET /v1/analytics/least-efficient` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EfficiencyQuery {
    /// Look back this many days (1-366, default 30).
    #[param(minimum = 1, maximum = 366)]
    days: Option<u32>,
    /// Highest rank returned (1-100, default 5); ties can return more rows.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// `GET /v1/analytics/least-efficient`: zones that surge most and complete
/// fewest rides, every region.
#[utoipa::path(
    get,
    path = "/v1/analytics/least-efficient",
    tag = "reads",
    params(EfficiencyQuery),
    responses(
        (status = 200, description = "The ranked zones", body = LeastEfficientResponse),
        (status = 400, description = "A parameter out of range", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A producer token", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("reader" = [])),
)]
pub async fn least_efficient(
    State(s): State<Arc<AppState>>,
    Query(q): Query<EfficiencyQuery>,
) -> Result<Json<LeastEfficientResponse>, Problem> {
    let days = q.days.unwrap_or(30);
    let limit = q.limit.unwrap_or(5);
    if !(1..=366).contains(&days) || !(1..=100).contains(&limit) {
        return Err(bad(
            "invalid_parameter",
            "days must be 1-366 and limit 1-100",
        ));
    }
    let now = s.clock.now().0;
    let zones = with_store(&s, move |st| st.least_efficient_zones(now, days, limit)).await?;
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let zones = zones
        .into_iter()
        .map(|z| ZoneEfficiencyWire {
            region: z.region,
            zone_id: z.cell,
            zone_name: z.zone_name,
            average_multiplier: round2(z.average_multiplier),
            completion_rate: z.completion_rate,
            rides: z.rides,
            surge_events: z.surge_events,
            decrease_events: z.decrease_events,
            inefficiency_score: round2(z.inefficiency_score),
            inefficiency_rank: z.rank,
        })
        .collect();
    Ok(Json(LeastEfficientResponse { days, zones }))
}

/// `GET /v1/analytics/history` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Region id.
    region: String,
    /// S2 cell token of the zone.
    #[param(pattern = "^[0-9a-fA-F]{1,16}$")]
    cell: String,
    /// Look back this many hours (1-8784, default 24).
    #[param(minimum = 1, maximum = 8784)]
    hours: Option<u32>,
    /// Most rows returned (1-10000, default 500).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// `GET /v1/analytics/history`: a zone's snapshots, newest first.
#[utoipa::path(
    get,
    path = "/v1/analytics/history",
    tag = "reads",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The zone's snapshots", body = HistoryResponse),
        (status = 400, description = "A missing or invalid parameter", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A producer token", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("reader" = [])),
)]
pub async fn history(
    State(s): State<Arc<AppState>>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryResponse>, Problem> {
    let cell = Cell::from_token(&q.cell).map_err(|e| bad("invalid_cell", e.to_string()))?;
    let hours = q.hours.unwrap_or(24);
    let limit = q.limit.unwrap_or(500);
    if !(1..=24 * 366).contains(&hours) || !(1..=10_000).contains(&limit) {
        return Err(bad(
            "invalid_parameter",
            "hours must be 1-8784 and limit 1-10000",
        ));
    }
    let since = s.clock.now().0.saturating_sub(u64::from(hours) * 3_600_000);
    let (region, token) = (q.region.clone(), cell.token());
    let rows = with_store(&s, move |st| st.zone_history(&region, &token, since, limit)).await?;
    let history = rows
        .into_iter()
        .map(|r| HistoryPoint {
            at: r.at_ms,
            class: r.class,
            supply: r.supply,
            demand: r.demand,
            multiplier: r.multiplier,
        })
        .collect();
    Ok(Json(HistoryResponse {
        region: q.region,
        zone_id: cell.token(),
        history,
    }))
}
