//! `GET /api/v1/pricing/heatmap` (riders, the map) and
//! `GET /api/v1/driver/heatmap` (where should a driver go).

use std::collections::BTreeMap;

use shared::desk::{DriverAsk, MAX_RADIUS_M};
use shared::fare::RouteModel;
use shared::geo::{BoundingBox, LatLng};
use worker::{Context, Env, Response};

use crate::config::{self, Settings};
use crate::error::ApiError;
use crate::http::{json, Incoming};
use crate::pricing::{class_of, named_region, read_desk_inputs};

/// The request's query parameters (the last of a repeated name wins).
fn query(req: &Incoming) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(crate::http::url(req)?
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn number(
    q: &BTreeMap<String, String>,
    key: &str,
    code: &'static str,
) -> Result<Option<f64>, ApiError> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(code, format!("{key} must be a number"))),
    }
}

/// Parses `bounds=south,west,north,east`.
pub fn parse_bounds(text: &str) -> Result<BoundingBox, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_bounds", m);
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("bounds must be four numbers: south,west,north,east".into()))?;
    let [s, w, n, e] = parts[..] else {
        return Err(bad(
            "bounds must be four numbers: south,west,north,east".into()
        ));
    };
    let sw = LatLng::new(s, w).map_err(|e| bad(e.to_string()))?;
    let ne = LatLng::new(n, e).map_err(|e| bad(e.to_string()))?;
    BoundingBox::new(sw, ne).map_err(|e| bad(e.to_string()))
}

/// `GET /api/v1/pricing/heatmap?bounds=s,w,n,e&zoom=z[&region=r]`.
///
/// A verified rider (bearer token, [`crate::identity`]) in a user-split
/// experiment sees what their quotes charge; anyone else the region's own
/// grid (a switchback's arm needs no rider).
pub async fn rider(
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    now: u64,
) -> Result<Response, ApiError> {
    let q = query(req)?;
    let bounds = parse_bounds(q.get("bounds").ok_or_else(|| {
        ApiError::bad_request(
            "missing_parameter",
            "bounds is required: south,west,north,east",
        )
    })?)?;
    let zoom = match number(&q, "zoom", "invalid_zoom")? {
        None => 13,
        Some(z) if (0.0..=22.0).contains(&z) => z as u8,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_zoom",
                "zoom must be between 0 and 22",
            ))
        }
    };
    crate::limits::check(env, req, None).await?;
    let rider = crate::identity::rider(env, req, settings, now).await?;
    let user = rider.as_deref();
    crate::limits::check_user(env, user).await?;
    // The region named (it must be registered), else the one at the
    // centre of the view, else the default one.
    let registry = crate::regions::registry(env, settings, now).await?;
    let centre = LatLng::new(
        (bounds.south_west().lat() + bounds.north_east().lat()) / 2.0,
        (bounds.south_west().lng() + bounds.north_east().lng()) / 2.0,
    )
    .ok();
    let region = match (q.get("region"), centre.and_then(|c| registry.locate(c))) {
        (None, Some(here)) => here,
        (named, _) => named_region(&registry, named.map(String::as_str), settings)?,
    };
    let region = region.id().clone();
    let read = read_desk_inputs(env, ctx, settings, &registry, &region, now).await;
    // Every cell at its effective multiplier: what a quote there charges
    // (to this user, in an experiment's arm).
    let map = read
        .desk(now, user)
        .rider_heatmap(&region, &bounds, zoom)
        .map_err(|e| ApiError::bad_request("too_many_zones", e.to_string()))?;
    json(&shared::api::HeatmapResponse::from(&map), 200)
        .map_err(|_| ApiError::unavailable("response encoding"))
}

/// `GET /api/v1/driver/heatmap?lat=&lng=&radius=[&vehicle_type=&region=]`,
/// seen by the request's verified rider as the pricing heatmap is.
pub async fn driver(
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    now: u64,
) -> Result<Response, ApiError> {
    let q = query(req)?;
    let lat = number(&q, "lat", "invalid_coordinates")?;
    let lng = number(&q, "lng", "invalid_coordinates")?;
    let (Some(lat), Some(lng)) = (lat, lng) else {
        return Err(ApiError::bad_request(
            "missing_parameter",
            "lat and lng are required",
        ));
    };
    let here = LatLng::new(lat, lng)
        .map_err(|e| ApiError::bad_request("invalid_coordinates", e.to_string()))?;
    let radius = match number(&q, "radius", "invalid_radius")? {
        None => 5_000.0,
        Some(r) if r > 0.0 && r <= MAX_RADIUS_M => r,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_radius",
                format!("radius must be in (0, {MAX_RADIUS_M}] metres"),
            ))
        }
    };
    let class = class_of(q.get("vehicle_type").map(String::as_str))?;
    crate::limits::check(env, req, None).await?;
    let rider = crate::identity::rider(env, req, settings, now).await?;
    let user = rider.as_deref();
    crate::limits::check_user(env, user).await?;
    // The driver's region is where the driver is.
    let registry = crate::regions::registry(env, settings, now).await?;
    let geo = registry
        .resolve(here, q.get("region").map(String::as_str))
        .map_err(|m| ApiError::misplaced(&m))?;
    let region = geo.id().clone();
    let (read, terms) = futures_util::future::join(
        read_desk_inputs(env, ctx, settings, &registry, &region, now),
        config::terms(env, settings, geo, class, now),
    )
    .await;
    let tariff = terms?.tariff;
    // Earnings at the effective multiplier: what riders there are charged.
    let view = read.desk(now, user).driver_zones(DriverAsk {
        region: &region,
        here,
        radius_m: radius,
        tariff: &tariff,
        route: &RouteModel::default(),
    });
    json(&shared::api::DriverHeatmapResponse::from(&view), 200)
        .map_err(|_| ApiError::unavailable("response encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_and_refuse() {
        assert!(parse_bounds("37.7,-122.5,37.8,-122.3").is_ok());
        for bad in [
            "",
            "1,2,3",
            "a,b,c,d",
            "37.8,-122.5,37.7,-122.3",
            "95,0,96,1",
            "NaN,0,1,1",
        ] {
            assert_eq!(
                parse_bounds(bad).map(|_| ()).unwrap_err().code,
                "invalid_bounds",
                "{bad:?}"
            );
        }
    }
}
