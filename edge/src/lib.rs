//! The Equilibrium edge worker: signed surge-priced quotes at every edge.
//!
//! # Layout
//!
//! * [`pricing`]: `POST /api/v1/pricing/estimate`.
//! * [`bookings`]: `POST /api/v1/quotes/{id}/confirm`, `GET /api/v1/bookings/{id}`,
//!   `POST /api/v1/bookings/{id}/{start|complete|cancel|fail}`.
//! * [`heatmap`]: `GET /api/v1/pricing/heatmap`, `GET /api/v1/driver/heatmap`.
//! * [`admin`]: `PUT /admin/v1/grids/{region}` (the origin's push).
//! * [`grids`]: the grid read path (isolate cache → KV → zone object).
//! * [`zone`]: the per-region Durable Object (authoritative grid, WebSocket
//!   subscribers with the hibernation API).
//! * [`ledger`]: the sharded Durable Object of bookings (transitions,
//!   idempotency, the events' outbox).
//! * [`events`]: the queue back to the origin (producer and consumer).
//! * [`config`], [`limits`], [`http`], [`error`]: settings, rate limits,
//!   HTTP helpers and the one error type.
//! * `probe` (feature `probes`, bench builds only): `POST /__probe/{step}`
//!   times the estimate's steps inside workerd, `POST /__upto/{stage}` is
//!   the estimate cut short after a step, for load.
//!
//! The pricing itself is `shared`: this crate parses, calls the core, and
//! writes. Every client error is a 4xx JSON body with a stable code.

pub mod admin;
pub mod bookings;
pub mod config;
pub mod error;
pub mod events;
pub mod grids;
pub mod heatmap;
pub mod http;
pub mod identity;
pub mod ledger;
pub mod limits;
pub mod pricing;
#[cfg(feature = "probes")]
pub mod probe;
pub mod regions;
pub mod zone;

use shared::booking::Action;
use worker::{event, Context, Date, Env, Method, Request, Response};

use crate::config::Settings;
use crate::error::ApiError;
use crate::http::{apply_cors, error_response, json, preflight, Incoming};

/// The OpenAPI 3 description of every public endpoint.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Once per isolate: panics are logged with their message and location
/// (a panic still resets the isolate; none is expected on any input).
#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Incoming, env: Env, ctx: Context) -> worker::Result<Response> {
    let origin = req.headers().get("origin").ok().flatten();
    let settings = match Settings::cached(&env) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    if req.method().eq_ignore_ascii_case("OPTIONS") {
        return preflight(origin.as_deref(), &settings.cors_origins);
    }
    let mut resp = match route(req, &env, &ctx, &settings).await {
        Ok(r) => r,
        Err(e) => error_response(&e)?,
    };
    // A WebSocket upgrade's headers are immutable; it needs no CORS anyway.
    if resp.status_code() != 101 {
        apply_cors(&mut resp, origin.as_deref(), &settings.cors_origins)?;
    }
    Ok(resp)
}

async fn route(
    req: Incoming,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
) -> Result<Response, ApiError> {
    let now = Date::now().as_millis();
    let path = http::path(&req);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // workers-rs maps methods it does not know (QUERY, ...) to GET; those
    // get a 405 rather than a GET's answer.
    let raw = req.method().to_ascii_uppercase();
    let known = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    let method = if known.contains(&raw.as_str()) {
        Method::from(raw)
    } else {
        Method::Trace
    };
    let enc = |_| ApiError::unavailable("response encoding");
    match (segments.as_slice(), method) {
        // Liveness, cheap: what this isolate knows, no I/O. `degraded`
        // lists the admin settings it cannot use now, and why.
        (["health"], Method::Get) => json(
            &serde_json::json!({"status": "ok", "region": settings.default_region.as_str(), "time": now,
                "degraded": config::degraded()}),
            200,
        )
        .map_err(enc),
        // The benchmark's baseline: the same body cost as an estimate (read
        // and checked the same way), none of its work.
        (["health"], Method::Post) => {
            let body = http::read_json_body(&req, http::MAX_BODY_BYTES).await?;
            body_answer(body.len())
        }
        (["openapi.json"], Method::Get) => {
            let mut r = Response::ok(OPENAPI).map_err(enc)?;
            r.headers_mut().set("content-type", "application/json").map_err(enc)?;
            Ok(r)
        }
        (["api", "v1", "pricing", "estimate"], Method::Post) => pricing::estimate(req, env, ctx, settings, now).await,
        (["api", "v1", "quotes", id, "confirm"], Method::Post) => {
            let id = (*id).to_owned();
            bookings::confirm(req, env, settings, &id, now).await
        }
        (["api", "v1", "bookings", id], Method::Get) => bookings::get(&req, env, id, now).await,
        (["api", "v1", "bookings", id, action], Method::Post) => match Action::parse(action) {
            Ok(action) => {
                let id = (*id).to_owned();
                bookings::act(req, env, &id, action, now).await
            }
            Err(_) => Err(ApiError::not_found(&path)),
        },
        (["api", "v1", "pricing", "heatmap"], Method::Get) => heatmap::rider(&req, env, ctx, settings, now).await,
        (["api", "v1", "driver", "heatmap"], Method::Get) => heatmap::driver(&req, env, ctx, settings, now).await,
        (["api", "v1", "pricing", "stream"], Method::Get) => stream(req, env, settings, now).await,
        #[cfg(feature = "probes")]
        (["__probe", step], Method::Post) => {
            let step = (*step).to_owned();
            probe::run(req, env, ctx, settings, &step, now).await
        }
        #[cfg(feature = "probes")]
        (["__upto", stage], Method::Post) => {
            let stage = (*stage).to_owned();
            probe::upto(req, env, ctx, settings, &stage, now).await
        }
        (["admin", "v1", "grids", region], Method::Put) => {
            let region = (*region).to_owned();
            admin::push_grid(req, env, settings, &region, now).await
        }
        (["health"], _) => Err(ApiError::method_not_allowed("GET, POST")),
        (["openapi.json"] | ["api", "v1", "pricing", "heatmap"] | ["api", "v1", "driver", "heatmap"]
        | ["api", "v1", "pricing", "stream"], _) => Err(ApiError::method_not_allowed("GET")),
        (["api", "v1", "pricing", "estimate"] | ["api", "v1", "quotes", _, "confirm"], _) => {
            Err(ApiError::method_not_allowed("POST"))
        }
        (["api", "v1", "bookings", _], _) => Err(ApiError::method_not_allowed("GET")),
        (["api", "v1", "bookings", _, action], _) if Action::parse(action).is_ok() => {
            Err(ApiError::method_not_allowed("POST"))
        }
        (["admin", "v1", "grids", _], _) => Err(ApiError::method_not_allowed("PUT")),
        _ => Err(ApiError::not_found(&path)),
    }
}

/// The body baseline's answer: how many bytes the body had.
pub fn body_answer(bytes: usize) -> Result<Response, ApiError> {
    json(&serde_json::json!({"status": "ok", "bytes": bytes}), 200)
        .map_err(|_| ApiError::unavailable("response encoding"))
}

/// `GET /api/v1/pricing/stream?region=r`: hands the WebSocket upgrade to the
/// region's zone object.
async fn stream(
    req: Incoming,
    env: &Env,
    settings: &Settings,
    now: u64,
) -> Result<Response, ApiError> {
    // Every connect counts against the address, upgraded or not.
    limits::check(env, &req, None).await?;
    let upgrade = req
        .headers()
        .get("upgrade")
        .ok()
        .flatten()
        .unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::new(
            426,
            "upgrade_required",
            "connect with a WebSocket",
        ));
    }
    let url = http::url(&req)?;
    let requested = url
        .query_pairs()
        .find(|(k, _)| k == "region")
        .map(|(_, v)| v.into_owned());
    // `changes=1`: the subscriber applies changes (shared::api::stream).
    let changes = url.query_pairs().any(|(k, v)| k == "changes" && v == "1");
    let registry = regions::registry(env, settings, now).await?;
    let region = pricing::named_region(&registry, requested.as_deref(), settings)?
        .id()
        .clone();
    let stub = crate::grids::zone_stub(env, &region)
        .map_err(|_| ApiError::unavailable("the zone object"))?;
    let headers = worker::Headers::new();
    let _ = headers.set("upgrade", "websocket");
    let mut init = worker::RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let zreq = Request::new_with_init(
        &[
            "https://zone/stream?region=",
            region.as_str(),
            if changes { "&changes=1" } else { "" },
        ]
        .concat(),
        &init,
    )
    .map_err(|_| ApiError::unavailable("the zone object"))?;
    stub.fetch_with_request(zreq)
        .await
        .map_err(|_| ApiError::unavailable("the zone object"))
}
