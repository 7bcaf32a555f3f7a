//! `PUT /admin/v1/grids/{region}`: the origin pushes a region's surge grid.
//!
//! Authorised by `Authorization: Bearer <ADMIN_TOKEN>` (a `wrangler secret`),
//! compared in constant time. The region's zone object decides newest-wins
//! and tells subscribers; then the grid is written to KV for the quote path.
//! Refusals are logged with the client address, never with the token.

use shared::api::{GridPush, GridPushResponse};
use shared::grid::SurgeGrid;
use shared::quote::Ident;
use subtle::ConstantTimeEq;
use worker::{console_warn, Env, Method, Response};

use crate::error::{from_json_error, ApiError};
use crate::grids::{self, zone_request};
use crate::http::{client_ip, read_json_body, Incoming, MAX_GRID_BYTES};

/// Whether the request carries the admin token. Constant time in the
/// token's content (lengths may differ observably; the token is random).
pub fn authorised(header: Option<&str>, secret: &str) -> bool {
    let Some(given) = header.and_then(shared::identity::bearer_token) else {
        return false;
    };
    !secret.is_empty() && bool::from(given.as_bytes().ct_eq(secret.as_bytes()))
}

/// `PUT /admin/v1/grids/{region}`.
pub async fn push_grid(
    req: Incoming,
    env: &Env,
    settings: &crate::config::Settings,
    region: &str,
    now: u64,
) -> Result<Response, ApiError> {
    let secret = env
        .secret("ADMIN_TOKEN")
        .map(|s| s.to_string())
        .unwrap_or_default();
    let header = req.headers().get("authorization").ok().flatten();
    if !authorised(header.as_deref(), &secret) {
        let why = if header.is_none() {
            "no credentials"
        } else {
            "wrong credentials"
        };
        console_warn!("admin push refused ({why}) from {}", client_ip(&req));
        return Err(ApiError::new(
            401,
            "unauthorized",
            "a valid admin bearer token is required",
        ));
    }
    let region =
        Ident::new(region).map_err(|e| ApiError::bad_request("invalid_region", e.to_string()))?;
    // Only registered regions have grids and zone objects.
    crate::regions::registry(env, settings, now)
        .await?
        .named(region.as_str())
        .map_err(|m| ApiError::misplaced(&m))?;
    let body = read_json_body(&req, MAX_GRID_BYTES).await?;
    let push: GridPush = serde_json::from_slice(&body).map_err(|e| from_json_error(&e))?;
    if push.region != region.as_str() {
        return Err(ApiError::bad_request(
            "region_mismatch",
            "the grid's region differs from the path's",
        ));
    }
    let grid = SurgeGrid::try_from(push)
        .map_err(|e| ApiError::bad_request("invalid_grid", e.to_string()))?;
    let text = String::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "body is not UTF-8"))?;

    let stub =
        grids::zone_stub(env, &region).map_err(|_| ApiError::unavailable("the zone object"))?;
    let text_for_location = text.clone();
    let zreq = zone_request("/grid", Method::Put, Some(text.clone()))
        .map_err(|_| ApiError::unavailable("the zone object"))?;
    let mut resp = stub
        .fetch_with_request(zreq)
        .await
        .map_err(|_| ApiError::unavailable("the zone object"))?;
    let status = resp.status_code();
    let answer = resp
        .text()
        .await
        .map_err(|_| ApiError::unavailable("the zone object"))?;
    let mut answer = answer;
    if status == 200 {
        // The region's experiments go back with the answer: the origin
        // learns them from the admin's one place (KV), as the edge does.
        // A failed read says nothing (`experiments_read` false): the origin
        // keeps what it knew rather than stopping a running experiment.
        let read = crate::config::experiments_read(env, &region).await;
        if let (Some(text), Ok(mut r)) = (read, serde_json::from_str::<GridPushResponse>(&answer)) {
            r.experiments = text;
            r.experiments_read = true;
            if let Ok(with) = serde_json::to_string(&r) {
                answer = with;
            }
        }
        // KV is the fast read path; a failed write only delays it (the zone
        // object already holds the grid and the read path falls back to it).
        if let Ok(kv) = env.kv("GRIDS") {
            if let Ok(put) = kv.put(&grids::kv_key(&region), text) {
                let _ = put.execute().await;
            }
        }
        grids::store_at_location(&region, text_for_location, now).await;
        grids::remember(&region, Some(grid), now);
    }
    let mut out = Response::ok(answer)
        .map_err(|_| ApiError::unavailable("response encoding"))?
        .with_status(status);
    let _ = out.headers_mut().set("content-type", "application/json");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check() {
        assert!(authorised(Some("Bearer s3cret-token"), "s3cret-token"));
        assert!(!authorised(Some("Bearer s3cret-tokeN"), "s3cret-token"));
        assert!(!authorised(Some("s3cret-token"), "s3cret-token"));
        assert!(!authorised(None, "s3cret-token"));
        assert!(!authorised(Some("Bearer "), ""));
    }
}
