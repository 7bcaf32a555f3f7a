//! `GET /api/v1/pricing/heatmap` (riders, the map) and
//! `GET /api/v1/driver/heatmap` (where should a driver go).

use std::collections::BTreeMap;

use shared::api::{
    demand_level, hourly_earnings, surge_color, DriverHeatmapResponse, DriverZone, HeatmapResponse,
    HeatmapZone, Location,
};
use shared::desk::{zone_name, Desk};
use shared::fare::{minor_to_decimal, RouteModel};
use shared::geo::{BoundingBox, Cell, LatLng, Level, DEFAULT_LEVEL};
use shared::grid::GridCell;
use worker::{Context, Env, Request, Response};

use crate::config::{self, Settings};
use crate::error::ApiError;
use crate::http::json;
use crate::pricing::{class_of, read_desk_inputs, region_of};

/// Most zones in one heatmap answer.
pub const MAX_ZONES: usize = 5_000;
/// Largest driver search radius, metres.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Most cells recommended to a driver.
pub const MAX_RECOMMENDED: usize = 10;

/// The request's query parameters (the last of a repeated name wins).
fn query(req: &Request) -> Result<BTreeMap<String, String>, ApiError> {
    let url = req
        .url()
        .map_err(|_| ApiError::bad_request("invalid_url", "bad URL"))?;
    Ok(url
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

/// The cell level drawn at a map zoom: finer as the map zooms in, never
/// finer than the grid.
pub fn level_for_zoom(zoom: u8, grid_level: Level) -> Level {
    let want = (zoom + 1).clamp(1, 30);
    Level::new(want.min(grid_level.get())).unwrap_or(grid_level)
}

/// Aggregates grid cells into coarser cells: highest multiplier, summed
/// supply and demand (what a zoomed-out map should show).
fn aggregate(cells: &[&GridCell], level: Level) -> Vec<GridCell> {
    let mut out: BTreeMap<Cell, GridCell> = BTreeMap::new();
    for c in cells {
        let parent = c.cell.parent(level);
        out.entry(parent)
            .and_modify(|a| {
                a.multiplier = a.multiplier.max(c.multiplier);
                a.supply = a.supply.saturating_add(c.supply);
                a.demand = a.demand.saturating_add(c.demand);
            })
            .or_insert(GridCell {
                cell: parent,
                ..**c
            });
    }
    out.into_values().collect()
}

/// `GET /api/v1/pricing/heatmap?bounds=s,w,n,e&zoom=z[&region=r]`.
pub async fn rider(
    req: &Request,
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
    let region = region_of(q.get("region").map(String::as_str), settings)?;
    crate::limits::check(env, req, None).await?;
    let (read, inputs) = read_desk_inputs(env, ctx, settings, &region, now).await;
    let Some(grid) = read.grid else {
        let empty = HeatmapResponse {
            zones: vec![],
            last_updated: None,
            total_zones: 0,
            region: region.to_string(),
            generation: 0,
            level: DEFAULT_LEVEL.get(),
            stale: true,
        };
        return json(&empty, 200).map_err(|_| ApiError::unavailable("response encoding"));
    };
    // The effective multipliers (caps and staleness applied): what a quote
    // in each cell would charge.
    let desk = Desk::new(Some(&grid), inputs);
    let stale = desk.stale();
    let priced = desk.cells();
    let inside: Vec<&GridCell> = priced
        .iter()
        .filter(|c| bounds.contains(c.cell.center()))
        .collect();
    let level = level_for_zoom(zoom, grid.level());
    let cells = if level < grid.level() {
        aggregate(&inside, level)
    } else {
        inside.into_iter().copied().collect()
    };
    if cells.len() > MAX_ZONES {
        return Err(ApiError::bad_request(
            "too_many_zones",
            format!(
                "{} zones in these bounds; zoom in or narrow the bounds (limit {MAX_ZONES})",
                cells.len()
            ),
        ));
    }
    let zones: Vec<HeatmapZone> = cells
        .iter()
        .map(|c| HeatmapZone {
            zone_id: c.cell.token(),
            zone_name: zone_name(&region, c.cell),
            center: Location::from(c.cell.center()),
            surge_multiplier: c.multiplier,
            demand_level: demand_level(c.multiplier).to_owned(),
            supply_count: c.supply,
            demand_count: c.demand,
            color: surge_color(c.multiplier).to_owned(),
            trend: c.trend.as_str().to_owned(),
        })
        .collect();
    let resp = HeatmapResponse {
        total_zones: zones.len(),
        zones,
        last_updated: Some(grid.computed_at().to_rfc3339()),
        region: region.to_string(),
        generation: grid.generation(),
        level: level.get(),
        stale,
    };
    json(&resp, 200).map_err(|_| ApiError::unavailable("response encoding"))
}

/// `GET /api/v1/driver/heatmap?lat=&lng=&radius=[&vehicle_type=&region=]`.
pub async fn driver(
    req: &Request,
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
    let region = region_of(q.get("region").map(String::as_str), settings)?;
    crate::limits::check(env, req, None).await?;
    let ((read, inputs), tariff) = futures_util::future::join(
        read_desk_inputs(env, ctx, settings, &region, now),
        config::tariff(env, settings, &region, class, now),
    )
    .await;
    let speed = RouteModel::default().speed_kmh;
    // Earnings at the effective multiplier: what riders there are charged.
    let priced = Desk::new(read.grid.as_deref(), inputs).cells();
    let mut zones: Vec<(i64, DriverZone)> = priced
        .iter()
        .filter_map(|c| {
            let d = here.distance_m(c.cell.center());
            (d <= radius).then_some((c, d))
        })
        .map(|(c, d)| {
            // Busy cells keep a driver on trips more of the hour.
            let util = f64::from(c.demand) / f64::from(c.supply + c.demand).max(1.0);
            let earn = hourly_earnings(&tariff, speed, util.clamp(0.3, 0.9), c.multiplier);
            (
                earn,
                DriverZone {
                    zone_id: c.cell.token(),
                    zone_name: zone_name(&region, c.cell),
                    center: Location::from(c.cell.center()),
                    distance_meters: d.round() as u32,
                    surge_multiplier: c.multiplier,
                    estimated_earnings_per_hour: minor_to_decimal(earn),
                    demand_trend: c.trend.as_str().to_owned(),
                },
            )
        })
        .collect();
    // Best earnings first; nearer first among equals.
    zones.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.distance_meters.cmp(&b.1.distance_meters))
    });
    zones.truncate(MAX_RECOMMENDED);
    let resp = DriverHeatmapResponse {
        recommended_zones: zones.into_iter().map(|(_, z)| z).collect(),
        current_location: Location::from(here),
        currency: tariff.currency.to_string(),
    };
    json(&resp, 200).map_err(|_| ApiError::unavailable("response encoding"))
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

    #[test]
    fn zoom_levels() {
        assert_eq!(level_for_zoom(15, DEFAULT_LEVEL), DEFAULT_LEVEL);
        assert_eq!(level_for_zoom(9, DEFAULT_LEVEL).get(), 10);
        assert_eq!(level_for_zoom(0, DEFAULT_LEVEL).get(), 1);
    }
}
