//! The HTTP API: one router, handlers by family, one error shape.
//!
//! * [`ingest`]: locations, demand (JSON array, NDJSON, WebSocket) and ride
//!   outcomes: producer tokens.
//! * [`edge_events`]: price checks and bookings from the edge's queue:
//!   producer tokens.
//! * [`clock`]: a demo origin's simulated clock: producer tokens.
//! * [`reads`]: grids and analytics: reader tokens.
//! * [`ops`]: `/health` (open), `/metrics` (open or reader, configured) and
//!   `/openapi.json` (open).
//! * [`openapi`]: the OpenAPI document, generated from the handlers'
//!   annotations and the wire types.
//!
//! Every rejection, including the ones the framework makes (a bad query
//! string, an unknown path, a wrong method, a missing WebSocket upgrade),
//! is the JSON [`ErrorBody`] with a machine-readable code.

pub mod clock;
pub mod edge_events;
mod experiments;

/// Most arm events read for one experiment's results.
pub use experiments::MAX_EVENTS as MAX_EXPERIMENT_EVENTS;
pub mod ingest;
pub mod openapi;
pub mod ops;
pub mod reads;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use shared::api::ErrorBody;

use crate::auth::{Refusal, Role, Scope};
use crate::state::AppState;

/// An error response: status, code, message (JSON [`ErrorBody`]).
#[derive(Debug)]
pub struct Problem(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(ErrorBody::new(self.1, self.2))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// A 400 with `code`.
pub fn bad(code: &'static str, msg: impl Into<String>) -> Problem {
    Problem(StatusCode::BAD_REQUEST, code, msg.into())
}

/// A query string parsed into `T`; a bad one is a 400
/// `invalid_parameter` naming the parameter, not axum's plain text.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| bad("invalid_parameter", e.body_text()))
    }
}

/// A path parameter; one that cannot be decoded (e.g. `%FF`, not UTF-8) is
/// a 400 `invalid_parameter`, not axum's plain text.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| bad("invalid_parameter", e.body_text()))
    }
}

/// Refuses a request without a token of `role`: 401 without a (known)
/// token, 403 with a token of the other role. Tokens are never logged.
async fn require(
    state: Arc<AppState>,
    role: Role,
    req: Request,
    next: Next,
) -> Result<Response, Problem> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match state.tokens.check(header, role) {
        Ok(()) => Ok(next.run(req).await),
        Err(refusal) => {
            let path = req.uri().path().to_owned();
            let (status, code, msg) = match refusal {
                Refusal::Missing => (
                    StatusCode::UNAUTHORIZED,
                    "missing_token",
                    "send Authorization: Bearer <token>",
                ),
                Refusal::Invalid => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the token is not (or no longer) valid",
                ),
                Refusal::WrongRole => (
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    match role {
                        Role::Producer(Scope::Market) => {
                            "this endpoint needs a producer token that may post locations and demand"
                        }
                        Role::Producer(Scope::Outcomes) => {
                            "this endpoint needs a producer token that may post ride outcomes"
                        }
                        Role::Producer(Scope::EdgeEvents) => {
                            "this endpoint needs a producer token that may post the edge's events"
                        }
                        Role::Reader => "this endpoint needs a reader token",
                    },
                ),
            };
            let counter = if status == StatusCode::FORBIDDEN {
                &state.metrics.auth_forbidden
            } else {
                &state.metrics.auth_unauthorized
            };
            counter.fetch_add(1, Relaxed);
            tracing::warn!(%path, reason = code, "request refused");
            Err(Problem(status, code, msg.into()))
        }
    }
}

fn guarded(
    router: Router<Arc<AppState>>,
    state: &Arc<AppState>,
    role: Role,
) -> Router<Arc<AppState>> {
    router.route_layer(middleware::from_fn_with_state(
        state.clone(),
        move |State(s): State<Arc<AppState>>, req: Request, next: Next| require(s, role, req, next),
    ))
}

/// The router: every endpoint, its guard, and JSON for every rejection.
pub fn app(state: Arc<AppState>) -> Router {
    let market = Router::new()
        .route("/v1/ingest/locations", post(ingest::locations))
        .route("/v1/ingest/demand", post(ingest::demand))
        .route("/v1/ingest/ws", get(ingest::ws))
        .route("/v1/clock", post(clock::set));
    let outcomes = Router::new().route("/v1/outcomes", post(ingest::outcomes));
    let edge_events = Router::new().route("/v1/edge-events", post(edge_events::edge_events));
    let reader = Router::new()
        .route("/v1/grids/{region}", get(reads::grid))
        .route("/v1/forecasts/{region}", get(reads::forecasts))
        .route("/v1/analytics/least-efficient", get(reads::least_efficient))
        .route("/v1/analytics/history", get(reads::history))
        .route(
            "/v1/analytics/experiments/{id}",
            get(experiments::results_of),
        );
    let metrics = Router::new().route("/metrics", get(ops::metrics));
    let metrics = if state.config.auth.metrics_open {
        metrics
    } else {
        guarded(metrics, &state, Role::Reader)
    };
    Router::new()
        .route("/health", get(ops::health))
        .route("/openapi.json", get(ops::openapi))
        .merge(metrics)
        .merge(guarded(market, &state, Role::Producer(Scope::Market)))
        .merge(guarded(outcomes, &state, Role::Producer(Scope::Outcomes)))
        .merge(guarded(
            edge_events,
            &state,
            Role::Producer(Scope::EdgeEvents),
        ))
        .merge(guarded(reader, &state, Role::Reader))
        .fallback(|| async {
            Problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            )
        })
        .method_not_allowed_fallback(|| async {
            Problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method".into(),
            )
        })
        .with_state(state)
}
