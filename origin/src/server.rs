//! The HTTP server: ingest, analytics, metrics; and the tick loop.
//!
//! `app(state)` builds the router (tested without a network);
//! `serve(listener, state, shutdown)` runs it with the ticker and the
//! pusher, and on shutdown finishes a last tick and flushes the store.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shared::api::{ErrorBody, IngestReport, RideOutcomeEvent};
use shared::geo::{Cell, LatLng};
use shared::grid::SurgeGrid;
use shared::time::Timestamp;

use crate::aggregate::{grid_json, market_config, Aggregator, Settings};
use crate::config::{Config, Region};
use crate::ingest::{self, Format};
use crate::metrics::Metrics;
use crate::push::Pusher;
use crate::store::{RideOutcome, Store, TickRecord, Zone};

/// Where `now` comes from: the system clock in production, a manual one in
/// tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// Re-push an unchanged grid this often, so the edge never sees it as stale.
pub const HEARTBEAT_MS: u64 = 10_000;

/// What a restart restored.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Regions whose last grid was restored.
    pub grids: usize,
    /// Last persisted tick before the restart.
    pub last_tick_at: Option<u64>,
    /// Upper bound of the seconds of events lost (at most one tick).
    pub lost_seconds: f64,
}

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Validated regions (same order as the aggregator's).
    pub regions: Vec<Region>,
    /// Markets and engines. A std mutex: held for microseconds, never
    /// across an await; ingest applies whole batches under it, which is
    /// the backpressure (no queue can grow).
    pub agg: Mutex<Aggregator>,
    /// The SQLite store (used from blocking threads).
    pub store: Arc<Mutex<Store>>,
    /// The push queue.
    pub pusher: Arc<Pusher>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Last grid JSON per region, and when it was last offered to the pusher.
    last: Mutex<HashMap<String, (String, u64)>>,
    /// Cells already written to the zones table.
    known_zones: Mutex<HashSet<(String, String)>>,
    /// What the start restored.
    pub restored: Restored,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic in these short
    // critical sections (no multi-step invariants), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Bad market or engine settings.
    #[error(transparent)]
    Aggregator(#[from] crate::aggregate::AggregatorError),
}

impl AppState {
    /// Opens the store, builds the aggregator and restores the last grid
    /// of every region.
    pub fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StartError> {
        let regions = config.regions()?;
        let settings = Settings {
            market: market_config(config.supply_ttl_seconds, config.demand_window_seconds),
            ..Settings::default()
        };
        let mut agg = Aggregator::new(regions.clone(), settings)?;
        let metrics = Arc::new(Metrics::default());
        let pusher = Arc::new(Pusher::new(
            &config.edge_url,
            &config.edge_token,
            metrics.clone(),
        ));
        let mut last = HashMap::new();
        let mut restored = Restored {
            last_tick_at: store.last_tick_at()?,
            ..Restored::default()
        };
        for g in store.last_grids()? {
            let grid = serde_json::from_str::<shared::api::GridPush>(&g.grid_json)
                .ok()
                .and_then(|p| SurgeGrid::try_from(p).ok());
            match grid {
                Some(grid) if agg.restore(&grid) => {
                    restored.grids += 1;
                    pusher.offer(&g.region, g.generation, g.grid_json.clone());
                    last.insert(g.region.clone(), (g.grid_json, 0));
                }
                _ => {
                    tracing::warn!(region = %g.region, "stored grid not restored (unknown region or unreadable)")
                }
            }
        }
        if let Some(at) = restored.last_tick_at {
            let since = clock.now().0.saturating_sub(at) as f64 / 1_000.0;
            restored.lost_seconds = since.min(config.tick_seconds);
            metrics
                .restored_lost_seconds
                .store(restored.lost_seconds.ceil() as u64, Relaxed);
        }
        let known: HashSet<(String, String)> = store
            .all_zones()?
            .into_iter()
            .map(|z| (z.region, z.cell))
            .collect();
        Ok(Arc::new(Self {
            config,
            regions,
            agg: Mutex::new(agg),
            store: Arc::new(Mutex::new(store)),
            pusher,
            metrics,
            clock,
            last: Mutex::new(last),
            known_zones: Mutex::new(known),
            restored,
        }))
    }

    /// The latest grid JSON of a region.
    pub fn grid(&self, region: &str) -> Option<String> {
        lock(&self.last).get(region).map(|(g, _)| g.clone())
    }
}

/// One tick: recompute every region's grid, persist it (one transaction
/// per region), offer changed (or heartbeat-due) grids to the pusher.
/// Returns the number of regions ticked.
pub async fn tick_once(state: &Arc<AppState>) -> usize {
    let start = Instant::now();
    let now = state.clock.now();
    let ticks = lock(&state.agg).tick(now);
    let mut records = Vec::with_capacity(ticks.len());
    let mut new_zones = Vec::new();
    for t in &ticks {
        let region = t.grid.region().as_str().to_owned();
        let json = grid_json(&t.grid);
        {
            let mut last = lock(&state.last);
            let due = last
                .get(&region)
                .is_none_or(|(_, offered)| now.0.saturating_sub(*offered) >= HEARTBEAT_MS);
            let offered = if t.changed || due {
                state
                    .pusher
                    .offer(&region, t.grid.generation(), json.clone());
                now.0
            } else {
                last.get(&region).map_or(0, |(_, o)| *o)
            };
            last.insert(region.clone(), (json.clone(), offered));
        }
        {
            let mut known = lock(&state.known_zones);
            let caps = state.regions[t.region].caps;
            for c in t.grid.cells() {
                if known.insert((region.clone(), c.cell.token())) {
                    new_zones.push(Zone {
                        region: region.clone(),
                        cell: c.cell.token(),
                        name: format!("{region} {}", c.cell.token()),
                        min_multiplier: caps.min().as_f64(),
                        max_multiplier: caps.max().as_f64(),
                        active: true,
                    });
                }
            }
        }
        records.push(TickRecord {
            region,
            at_ms: now.0,
            generation: t.grid.generation(),
            grid_json: json,
            snapshots: t.snapshots.clone(),
            changes: t.changes.clone(),
        });
    }
    let store = state.store.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut s = lock(&store);
        for z in &new_zones {
            s.upsert_zone(z)?;
        }
        for r in &records {
            s.record_tick(r)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "tick not persisted"),
        Err(e) => tracing::error!(error = %e, "tick persistence task failed"),
    }
    state.metrics.tick(start.elapsed().as_micros() as u64);
    ticks.len()
}

/// An error response: status, code, message (JSON [`ErrorBody`]).
#[derive(Debug)]
pub struct Problem(StatusCode, &'static str, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody::new(self.1, self.2))).into_response()
    }
}

fn bad(code: &'static str, msg: impl Into<String>) -> Problem {
    Problem(StatusCode::BAD_REQUEST, code, msg.into())
}

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/ingest/locations", post(ingest_locations))
        .route("/v1/ingest/demand", post(ingest_demand))
        .route("/v1/ingest/ws", get(ingest_ws))
        .route("/v1/outcomes", post(outcomes))
        .route("/v1/grids/{region}", get(grid))
        .route("/v1/analytics/least-efficient", get(least_efficient))
        .route("/v1/analytics/history", get(history))
        .fallback(|| async {
            Problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            )
        })
        .with_state(state)
}

async fn health(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "regions": s.regions.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "restored": {
            "grids": s.restored.grids,
            "last_tick_at": s.restored.last_tick_at,
            "lost_seconds": s.restored.lost_seconds,
        },
        "pending_pushes": s.pusher.pending(),
    }))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

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

async fn read_body(s: &AppState, body: Body) -> Result<Bytes, Problem> {
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

/// Parses and applies one batch. The aggregator lock is taken once per
/// batch, after parsing.
pub fn apply_batch(
    s: &AppState,
    kind: Kind,
    body: &[u8],
    format: Format,
) -> Result<IngestReport, Problem> {
    let now = s.clock.now();
    let refused = |e: ingest::BatchError| {
        s.metrics.batches_refused.fetch_add(1, Relaxed);
        bad("invalid_batch", e.to_string())
    };
    let report = match kind {
        Kind::Locations => {
            let p = ingest::locations(body, format, &s.regions, now).map_err(refused)?;
            lock(&s.agg).drivers(&p.events);
            s.metrics
                .locations_accepted
                .fetch_add(p.report.accepted as u64, Relaxed);
            p.report
        }
        Kind::Demand => {
            let p = ingest::demands(body, format, &s.regions, now).map_err(refused)?;
            lock(&s.agg).demand(&p.events);
            s.metrics
                .demand_accepted
                .fetch_add(p.report.accepted as u64, Relaxed);
            p.report
        }
    };
    s.metrics
        .records_rejected
        .fetch_add(report.rejected as u64, Relaxed);
    Ok(report)
}

async fn ingest(
    s: Arc<AppState>,
    kind: Kind,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let format = format_of(&headers)?;
    let bytes = read_body(&s, body).await?;
    Ok(report_response(apply_batch(&s, kind, &bytes, format)?))
}

async fn ingest_locations(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    ingest(s, Kind::Locations, headers, body).await
}

async fn ingest_demand(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    ingest(s, Kind::Demand, headers, body).await
}

#[derive(Deserialize)]
struct WsQuery {
    kind: Kind,
}

/// `GET /v1/ingest/ws?kind=locations|demand`: each text message is an
/// NDJSON batch; each is answered with its report.
async fn ingest_ws(
    State(s): State<Arc<AppState>>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let limit = s.config.max_body_bytes;
    ws.max_message_size(limit)
        .on_upgrade(move |socket| ws_loop(s, q.kind, socket))
}

async fn ws_loop(s: Arc<AppState>, kind: Kind, mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        let data: Bytes = match msg {
            Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let reply = match apply_batch(&s, kind, &data, Format::Ndjson) {
            Ok(report) => serde_json::to_string(&report),
            Err(Problem(_, code, message)) => serde_json::to_string(&ErrorBody::new(code, message)),
        };
        let Ok(text) = reply else { break };
        if socket.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
}

async fn outcomes(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    if format_of(&headers)? != Format::JsonArray {
        return Err(bad("invalid_batch", "send outcomes as a JSON array"));
    }
    let bytes = read_body(&s, body).await?;
    let items: Vec<RideOutcomeEvent> =
        serde_json::from_slice(&bytes).map_err(|e| bad("invalid_batch", e.to_string()))?;
    let mut rows = Vec::with_capacity(items.len());
    for (i, o) in items.into_iter().enumerate() {
        let at = |m: String| bad("invalid_record", format!("outcome {}: {m}", i + 1));
        let region = s
            .regions
            .iter()
            .find(|r| r.id.as_str() == o.region)
            .ok_or_else(|| at(format!("unknown region {:?}", o.region)))?;
        let p = LatLng::new(o.latitude, o.longitude).map_err(|e| at(e.to_string()))?;
        if !(o.multiplier.is_finite() && o.multiplier >= 1.0) || o.ride_id.is_empty() {
            return Err(at("multiplier must be >= 1 and ride_id non-empty".into()));
        }
        rows.push(RideOutcome {
            ride_id: o.ride_id,
            region: o.region,
            cell: Cell::at(p, region.level).token(),
            at_ms: o.timestamp,
            completed: o.completed,
            multiplier: o.multiplier,
            fare: o.fare,
            quote_id: o.quote_id,
        });
    }
    let inserted = with_store(&s, move |st| st.record_outcomes(&rows)).await?;
    Ok(Json(json!({ "inserted": inserted })).into_response())
}

/// Runs a store query on a blocking thread; failures are 503s.
async fn with_store<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&mut Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Problem> {
    let store = s.store.clone();
    let unavailable = |m: String| Problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m);
    tokio::task::spawn_blocking(move || f(&mut lock(&store)))
        .await
        .map_err(|_| unavailable("store task failed".into()))?
        .map_err(|e| unavailable(e.to_string()))
}

async fn grid(
    State(s): State<Arc<AppState>>,
    Path(region): Path<String>,
) -> Result<Response, Problem> {
    let g = s.grid(&region).ok_or_else(|| {
        Problem(
            StatusCode::NOT_FOUND,
            "no_grid",
            format!("no grid for region {region:?} yet"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], g).into_response())
}

#[derive(Deserialize)]
struct EfficiencyQuery {
    days: Option<u32>,
    limit: Option<u32>,
}

async fn least_efficient(
    State(s): State<Arc<AppState>>,
    Query(q): Query<EfficiencyQuery>,
) -> Result<Response, Problem> {
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
    let zones: Vec<_> = zones
        .into_iter()
        .map(|z| {
            json!({
                "region": z.region, "zone_id": z.cell, "zone_name": z.zone_name,
                "average_multiplier": (z.average_multiplier * 100.0).round() / 100.0,
                "completion_rate": z.completion_rate, "rides": z.rides,
                "surge_events": z.surge_events, "decrease_events": z.decrease_events,
                "inefficiency_score": (z.inefficiency_score * 100.0).round() / 100.0,
                "inefficiency_rank": z.rank,
            })
        })
        .collect();
    Ok(Json(json!({ "days": days, "zones": zones })).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    region: String,
    cell: String,
    hours: Option<u32>,
    limit: Option<u32>,
}

async fn history(
    State(s): State<Arc<AppState>>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, Problem> {
    let cell = Cell::from_token(&q.cell).map_err(|e| bad("invalid_cell", e.to_string()))?;
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 366);
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    let since = s.clock.now().0.saturating_sub(u64::from(hours) * 3_600_000);
    let (region, token) = (q.region.clone(), cell.token());
    let rows = with_store(&s, move |st| st.zone_history(&region, &token, since, limit)).await?;
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| json!({"at": r.at_ms, "class": r.class, "supply": r.supply, "demand": r.demand, "multiplier": r.multiplier}))
        .collect();
    Ok(
        Json(json!({ "region": q.region, "zone_id": cell.token(), "history": rows }))
            .into_response(),
    )
}

/// Runs the server until `shutdown` resolves, with the ticker and the
/// pusher; then stops accepting, runs a last tick (persisted) and tries to
/// deliver pending grids for up to two seconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ticker = {
        let state = state.clone();
        let stop = wait_stop(stop_rx.clone());
        tokio::spawn(async move {
            let period = Duration::from_secs_f64(state.config.tick_seconds);
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = interval.tick() => { tick_once(&state).await; }
                    _ = &mut stop => break,
                }
            }
        })
    };
    let pusher = tokio::spawn(state.pusher.clone().run(wait_stop(stop_rx.clone())));
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(shutdown);
    let result = server.await;
    tracing::info!("shutting down: last tick, then flush");
    let _ = stop_tx.send(true);
    let _ = ticker.await;
    let _ = pusher.await;
    tick_once(&state).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), state.pusher.flush()).await;
    result
}
