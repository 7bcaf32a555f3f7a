//! The read path of surge grids: isolate cache → location cache → KV →
//! zone object → none.
//!
//! Quotes must not funnel through one Durable Object (about 1,000 requests/s
//! each), and must not wait on a cross-region read. A grid is read from the
//! isolate's memory while it is younger than `GRID_CACHE_MS`; then from the
//! location's cache (the Workers Cache API, shared by the isolates of one
//! location); only a location with nothing cached reads KV, and only when
//! KV has nothing the region's zone object. "Nothing anywhere" is cached
//! too, so a region without a grid does not send every quote to the object.
//!
//! Freshness: KV takes up to 60 s to reach other locations, longer than a
//! grid stays fresh. So the location's copy is refreshed from the zone
//! object (the authority, updated at every push) in the background
//! (`waitUntil`) whenever it is older than `GRID_REFRESH_MS`: at most one
//! refresh per isolate and region per period, and no quote waits for it.
//! A location sees a new generation within about `GRID_CACHE_MS` +
//! `GRID_REFRESH_MS` + one object round trip of the push. Staleness is
//! judged from the grid's `computed_at` at the origin, never from when a
//! location fetched it.
//!
//! Architecture invariant: within an isolate a region's grid generation
//! never goes backwards (a late KV replica cannot undo a newer grid).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use shared::api::GridPush;
use shared::grid::{GridSlot, SurgeGrid};
use shared::quote::Ident;
use shared::time::Millis;
use worker::{Cache, Context, Env, Method, Request, RequestInit, Response};

/// Where a grid read was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// This isolate's memory.
    Isolate,
    /// This location's cache (the Cache API).
    Location,
    /// Just read from KV.
    Kv,
    /// Just read from the zone Durable Object.
    Zone,
}

/// The grid of a region as this request sees it.
#[derive(Debug, Clone)]
pub struct GridRead {
    /// The newest grid known, if any.
    pub grid: Option<Rc<SurgeGrid>>,
    /// Where it came from.
    pub via: Via,
}

#[derive(Debug)]
struct Entry {
    /// The newest grid this isolate has seen (the core's newest-wins slot).
    slot: GridSlot<Rc<SurgeGrid>>,
    checked_at: u64,
    /// When this isolate last started a background refresh of the region.
    refresh_started: Option<u64>,
}

thread_local! {
    /// One entry per region read. Bounded by the registry (at most
    /// `shared::regions::MAX_REGIONS`): a request's region is resolved
    /// from the registry before any grid is read, so no name a client
    /// makes up gets an entry. Not evicted, which would let a late KV
    /// replica take a region's generation backwards.
    static GRIDS: RefCell<HashMap<Ident, Entry>> = RefCell::new(HashMap::new());
}

/// KV key of a region's grid.
pub fn kv_key(region: &Ident) -> String {
    format!("grid:{region}")
}

fn parse(text: &str) -> Option<SurgeGrid> {
    let push: GridPush = serde_json::from_str(text).ok()?;
    SurgeGrid::try_from(push).ok()
}

/// Puts a grid into this isolate's cache if it is newer than the cached one.
pub fn remember(region: &Ident, grid: Option<SurgeGrid>, now: u64) -> Option<Rc<SurgeGrid>> {
    GRIDS.with(|g| {
        let mut map = g.borrow_mut();
        let entry = map.entry(region.clone()).or_insert(Entry {
            slot: GridSlot::new(),
            checked_at: now,
            refresh_started: None,
        });
        entry.checked_at = now;
        if let Some(new) = grid {
            entry.slot.offer(Rc::new(new));
        }
        entry.slot.get().cloned()
    })
}

/// A stub request to a region's zone object.
pub fn zone_request(path: &str, method: Method, body: Option<String>) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(b) = body {
        init.with_body(Some(b.into()));
    }
    Request::new_with_init(&format!("https://zone{path}"), &init)
}

/// The stub of a region's zone object.
pub fn zone_stub(env: &Env, region: &Ident) -> worker::Result<worker::Stub> {
    let ns = env.durable_object("ZONE")?;
    ns.id_from_name(region.as_str())?.get_stub()
}

/// The zone object's grid JSON, if it holds one.
async fn zone_text(env: &Env, region: &Ident) -> Option<String> {
    let stub = zone_stub(env, region).ok()?;
    let req = zone_request("/grid", Method::Get, None).ok()?;
    let mut resp = stub.fetch_with_request(req).await.ok()?;
    if resp.status_code() != 200 {
        return None;
    }
    resp.text().await.ok()
}

/// The location cache's key of a region's grid (never fetched: the Cache
/// API only needs a URL as a key).
fn location_key(region: &Ident) -> String {
    ["https://grids.equilibrium.invalid/", region.as_str()].concat()
}

/// Header holding when the location fetched its copy (ms since the epoch).
const FETCHED_AT: &str = "x-equilibrium-fetched-at";

/// The location's cache, if this runtime has one.
fn location_cache() -> Option<Cache> {
    let global = js_sys::global();
    let has = js_sys::Reflect::get(&global, &wasm_bindgen::JsValue::from_str("caches"))
        .is_ok_and(|c| !c.is_undefined());
    has.then(Cache::default)
}

/// The location's copy of a region's grid and when it was fetched.
async fn from_location(region: &Ident) -> Option<(SurgeGrid, u64)> {
    let mut resp = location_cache()?
        .get(location_key(region), false)
        .await
        .ok()??;
    let fetched_at = resp
        .headers()
        .get(FETCHED_AT)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((parse(&resp.text().await.ok()?)?, fetched_at))
}

/// Stores a grid's JSON as this location's copy, fetched at `now`.
pub async fn store_at_location(region: &Ident, text: String, now: u64) {
    let Some(cache) = location_cache() else {
        return;
    };
    let Ok(mut resp) = Response::ok(text) else {
        return;
    };
    let headers = resp.headers_mut();
    let _ = headers.set("content-type", "application/json");
    // Kept at most ten minutes; refreshed long before while quotes arrive.
    let _ = headers.set("cache-control", "max-age=600");
    let _ = headers.set(FETCHED_AT, &now.to_string());
    let _ = cache.put(location_key(region), resp).await;
}

/// Refreshes the location's copy (and this isolate's) from the zone object.
async fn refresh(env: Env, region: Ident, now: u64) {
    let Some(text) = zone_text(&env, &region).await else {
        return;
    };
    let Some(grid) = parse(&text) else {
        return;
    };
    store_at_location(&region, text, now).await;
    remember(&region, Some(grid), now);
}

/// Whether this isolate should start a refresh of `region` now (at most one
/// per `period`), marking it started.
fn claim_refresh(region: &Ident, now: u64, period: Millis) -> bool {
    GRIDS.with(|g| {
        let mut map = g.borrow_mut();
        let Some(entry) = map.get_mut(region) else {
            return false;
        };
        let due = entry
            .refresh_started
            .is_none_or(|at| now.saturating_sub(at) >= period.0);
        if due {
            entry.refresh_started = Some(now);
        }
        due
    })
}

/// The region's grid through the cache chain; schedules a background
/// refresh of the location's copy when it is missing or older than
/// `refresh_period`. Never fails: a broken cache, KV or object reads as "no
/// newer grid".
pub async fn read(
    env: &Env,
    ctx: &Context,
    region: &Ident,
    now: u64,
    cache: Millis,
    refresh_period: Millis,
) -> GridRead {
    let cached = GRIDS.with(|g| {
        g.borrow()
            .get(region)
            .filter(|e| now.saturating_sub(e.checked_at) < cache.0)
            .map(|e| e.slot.get().cloned())
    });
    if let Some(grid) = cached {
        return GridRead {
            grid,
            via: Via::Isolate,
        };
    }
    let (fetched, via, fetched_at) = match from_location(region).await {
        Some((g, at)) => (Some(g), Via::Location, Some(at)),
        None => {
            let kv_text = match env.kv("GRIDS") {
                Ok(kv) => kv.get(&kv_key(region)).text().await.ok().flatten(),
                Err(_) => None,
            };
            match kv_text.as_deref().and_then(parse) {
                Some(g) => (Some(g), Via::Kv, None),
                None => (
                    zone_text(env, region).await.as_deref().and_then(parse),
                    Via::Zone,
                    None,
                ),
            }
        }
    };
    let grid = remember(region, fetched, now);
    let old = fetched_at.is_none_or(|at| now.saturating_sub(at) >= refresh_period.0);
    if old && claim_refresh(region, now, refresh_period) {
        ctx.wait_until(refresh(env.clone(), region.clone(), now));
    }
    GridRead { grid, via }
}
