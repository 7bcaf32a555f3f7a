//! The region registry at the edge ([`shared::regions`]): the admin's
//! `regions` key in `CONFIG`, or — while that key is absent — the registry
//! shipped with the worker (`config/regions.json`, the demo's city), so a
//! fresh checkout prices SF pickups in sf with nothing to set.
//!
//! Parsed, and its boundaries covered with cells, once per text an isolate
//! sees; re-read from KV at most every `CONFIG_CACHE_MS`. A value that does
//! not parse is refused where it is read: logged once
//! (`"event":"config_degraded"`, with the reason), listed by `/health`,
//! and the last good registry stays in force. An isolate that has never
//! had a good one answers what needs geography with
//! `503 config_unavailable` rather than guess. Check a value before
//! putting it: `origin check regions < regions.json`.
//!
//! Only registered regions have grids, Zone objects and streams: a name
//! nobody registered is `404 unknown_region` and creates nothing.

use std::cell::RefCell;
use std::rc::Rc;

use shared::api::admin::{parse_registry, REGISTRY_KEY};
use shared::regions::Registry;
use worker::Env;

use crate::config::{self, Read, Settings};
use crate::error::ApiError;

/// The registry shipped with the worker, in force while `regions` is not
/// set in KV.
pub const SHIPPED: &str = include_str!("../../config/regions.json");

#[derive(Debug)]
struct Current {
    /// The text it was parsed from.
    text: String,
    registry: Rc<Registry>,
    /// When KV was last asked.
    checked_at: u64,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// The registry in force in this isolate now.
pub async fn registry(env: &Env, s: &Settings, now: u64) -> Result<Rc<Registry>, ApiError> {
    let fresh = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|cur| now.saturating_sub(cur.checked_at) < s.config_cache.0)
            .map(|cur| Rc::clone(&cur.registry))
    });
    if let Some(r) = fresh {
        return Ok(r);
    }
    let read = config::read_uncached(env, REGISTRY_KEY).await;
    let text = match &read {
        Read::Set(text) => text.as_str(),
        Read::Absent => SHIPPED,
        Read::Failed => return keep_last(now, "KV read failed"),
    };
    let same = CURRENT.with(|c| {
        c.borrow_mut()
            .as_mut()
            .filter(|cur| cur.text == text)
            .map(|cur| {
                cur.checked_at = now;
                Rc::clone(&cur.registry)
            })
    });
    if let Some(r) = same {
        return Ok(r);
    }
    match parse_registry(text) {
        Ok(registry) => {
            let registry = Rc::new(registry);
            CURRENT.with(|c| {
                *c.borrow_mut() = Some(Current {
                    text: text.to_owned(),
                    registry: Rc::clone(&registry),
                    checked_at: now,
                })
            });
            config::restore(REGISTRY_KEY);
            Ok(registry)
        }
        Err(why) => keep_last(now, &format!("invalid value: {why}")),
    }
}

/// The last good registry while the key cannot be used, or 503.
fn keep_last(now: u64, why: &str) -> Result<Rc<Registry>, ApiError> {
    config::degrade(REGISTRY_KEY, why);
    CURRENT
        .with(|c| {
            c.borrow_mut().as_mut().map(|cur| {
                // Ask again after the cache period, not on every request.
                cur.checked_at = now;
                Rc::clone(&cur.registry)
            })
        })
        .ok_or_else(|| {
            ApiError::config_unavailable(&format!(
                "the region registry ({REGISTRY_KEY}) cannot be used: {why}"
            ))
        })
}
