//! The read path of surge grids: isolate cache → KV → zone object → none.
//!
//! Quotes must not funnel through one Durable Object (about 1,000 requests/s
//! each), so a grid is read from the isolate's memory while it is younger
//! than `GRID_CACHE_MS`, then re-read from KV (the fast, replicated copy the
//! admin push writes), and only when KV has nothing from the region's zone
//! object. "Nothing anywhere" is cached too, so a region without a grid does
//! not send every quote to the object.
//!
//! Architecture invariant: within an isolate a region's grid generation
//! never goes backwards (a late KV replica cannot undo a newer grid).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use shared::api::GridPush;
use shared::grid::SurgeGrid;
use shared::quote::Ident;
use shared::time::Millis;
use worker::{Env, Method, Request, RequestInit};

/// Where a grid read was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// This isolate's memory.
    Isolate,
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
    grid: Option<Rc<SurgeGrid>>,
    checked_at: u64,
}

thread_local! {
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
            grid: None,
            checked_at: now,
        });
        entry.checked_at = now;
        if let Some(new) = grid {
            let held = entry.grid.as_ref().map(|g| g.generation());
            if shared::grid::supersedes(new.generation(), held) {
                entry.grid = Some(Rc::new(new));
            }
        }
        entry.grid.clone()
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

async fn from_zone(env: &Env, region: &Ident) -> Option<SurgeGrid> {
    let stub = zone_stub(env, region).ok()?;
    let req = zone_request("/grid", Method::Get, None).ok()?;
    let mut resp = stub.fetch_with_request(req).await.ok()?;
    if resp.status_code() != 200 {
        return None;
    }
    parse(&resp.text().await.ok()?)
}

/// The region's grid through the cache chain. Never fails: a broken KV or
/// object reads as "no newer grid".
pub async fn read(env: &Env, region: &Ident, now: u64, cache: Millis) -> GridRead {
    let cached = GRIDS.with(|g| {
        g.borrow()
            .get(region)
            .filter(|e| now.saturating_sub(e.checked_at) < cache.0)
            .map(|e| e.grid.clone())
    });
    if let Some(grid) = cached {
        return GridRead {
            grid,
            via: Via::Isolate,
        };
    }
    let kv_text = match env.kv("GRIDS") {
        Ok(kv) => kv.get(&kv_key(region)).text().await.ok().flatten(),
        Err(_) => None,
    };
    let (fetched, via) = match kv_text.as_deref().and_then(parse) {
        Some(g) => (Some(g), Via::Kv),
        None => (from_zone(env, region).await, Via::Zone),
    };
    GridRead {
        grid: remember(region, fetched, now),
        via,
    }
}
