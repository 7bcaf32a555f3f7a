//! Settings: `[vars]` from wrangler.toml, secrets, and the admin's KV keys.
//!
//! Admin keys live in the `CONFIG` KV namespace and are set with
//! `wrangler kv key put` (see README):
//!
//! * `tariff:<region>:<class>`: `{"currency":"USD","base":250,"per_km":120,
//!   "per_minute":30,"booking_fee":200,"minimum_fare":800}` (minor units),
//!   optionally with the booking terms `"cancellation_fee":500,
//!   "cancellation_grace_seconds":120,"reprice_tolerance_percent":25`
//!   (defaults: [`shared::booking`])
//! * `caps:<region>`: `{"min":1.0,"max":4.0}`: bounds on every multiplier
//!   the edge prices with in that region
//! * `emergency_cap`: `"1.5"`: a global ceiling over every region
//! * `emergency:<region>`: `true` declares an emergency in the region: its
//!   multipliers are capped at its lawful cap, which the origin computes
//!   from its history and ships with the grid ([`shared::emergency`])
//! * `experiment:<region>`: the region's pricing experiment, or an array of
//!   them one after another ([`shared::api::ExperimentWire`]); the edge
//!   assigns each quote's arm from it and hands it to the origin with every
//!   grid push. Invalid or overlapping definitions are ignored with a
//!   logged reason ([`shared::api::parse_experiments`])
//!
//! KV reads are cached in the isolate for `CONFIG_CACHE_MS` (var; default [`CONFIG_CACHE_MS`]): an admin
//! change takes effect within that (plus KV's own propagation, up to 60 s).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;
use shared::booking::{
    Terms, DEFAULT_CANCELLATION_FEE, DEFAULT_CANCELLATION_GRACE, DEFAULT_REPRICE_TOLERANCE_PERCENT,
};
use shared::experiment::Experiment;
use shared::fare::{Currency, Tariff, VehicleClass};
use shared::grid::Staleness;
use shared::quote::{Ident, Keyring};
use shared::surge::{Caps, Multiplier};
use shared::time::Millis;
use worker::Env;

use crate::error::ApiError;

/// How long a KV config value is reused within an isolate, unless the
/// `CONFIG_CACHE_MS` var says otherwise.
pub const CONFIG_CACHE_MS: u64 = 10_000;

/// Settings from `[vars]`, with defaults when a var is absent.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Region priced when a request names none.
    pub default_region: Ident,
    /// Grid age handling.
    pub staleness: Staleness,
    /// How long a quote may be confirmed.
    pub quote_ttl: Millis,
    /// How long an isolate reuses a grid before re-reading the location's
    /// copy.
    pub grid_cache: Millis,
    /// How old the location's copy may get before it is refreshed from the
    /// zone object in the background.
    pub grid_refresh: Millis,
    /// Origins allowed by CORS (comma-separated, `*` for any).
    pub cors_origins: String,
    /// How long an isolate reuses admin KV values.
    pub config_cache: Millis,
    /// Where the queue consumer posts edge events (`ORIGIN_URL`; empty:
    /// events are acknowledged and dropped, with a log line).
    pub origin_url: String,
    /// Delay before a batch the origin did not take is retried
    /// (`EVENTS_RETRY_SECONDS`).
    pub events_retry_seconds: u32,
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

fn secs(env: &Env, name: &str, default: u64) -> Millis {
    let n = var(env, name)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(default);
    Millis::from_secs(n)
}

fn millis(env: &Env, name: &str, default: u64) -> Millis {
    Millis(
        var(env, name)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default),
    )
}

impl Settings {
    /// Reads the vars; invalid values fall back to defaults.
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        let region = var(env, "DEFAULT_REGION").unwrap_or_else(|| "sf".to_owned());
        let default_region = Ident::new(&region)
            .map_err(|_| ApiError::unavailable("configuration (DEFAULT_REGION is invalid)"))?;
        Ok(Self {
            default_region,
            staleness: Staleness {
                fresh_for: secs(env, "GRID_FRESH_SECONDS", 30),
                decay_over: secs(env, "GRID_DECAY_SECONDS", 300),
            },
            quote_ttl: secs(env, "QUOTE_TTL_SECONDS", 120),
            grid_cache: millis(env, "GRID_CACHE_MS", 2_000),
            grid_refresh: millis(env, "GRID_REFRESH_MS", 2_000),
            cors_origins: var(env, "CORS_ORIGINS")
                .unwrap_or_else(|| "http://127.0.0.1:8788".into()),
            config_cache: millis(env, "CONFIG_CACHE_MS", CONFIG_CACHE_MS),
            origin_url: var(env, "ORIGIN_URL")
                .unwrap_or_default()
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            events_retry_seconds: var(env, "EVENTS_RETRY_SECONDS")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(30)
                .min(43_200),
        })
    }
}

thread_local! {
    /// Vars and secrets are fixed for an isolate's lifetime (changing one
    /// deploys a new version, hence new isolates), so they are read once.
    static SETTINGS: RefCell<Option<Rc<Settings>>> = const { RefCell::new(None) };
    static KEYRING: RefCell<Option<Rc<Keyring>>> = const { RefCell::new(None) };
}

impl Settings {
    /// The isolate's settings, read from the environment on first use.
    pub fn cached(env: &Env) -> Result<Rc<Settings>, ApiError> {
        if let Some(s) = SETTINGS.with(|c| c.borrow().clone()) {
            return Ok(s);
        }
        let s = Rc::new(Settings::from_env(env)?);
        SETTINGS.with(|c| *c.borrow_mut() = Some(Rc::clone(&s)));
        Ok(s)
    }
}

/// The quote signing keys from the `QUOTE_SIGNING_KEYS` secret
/// (`id:secret,id:secret`, first one signs), parsed once per isolate.
pub fn keyring(env: &Env) -> Result<Rc<Keyring>, ApiError> {
    if let Some(k) = KEYRING.with(|c| c.borrow().clone()) {
        return Ok(k);
    }
    let spec = env
        .secret("QUOTE_SIGNING_KEYS")
        .map(|s| s.to_string())
        .map_err(|_| ApiError::unavailable("quote signing (QUOTE_SIGNING_KEYS is not set)"))?;
    let k = Keyring::parse(&spec)
        .map_err(|_| ApiError::unavailable("quote signing (QUOTE_SIGNING_KEYS is invalid)"))?;
    let k = Rc::new(k);
    KEYRING.with(|c| *c.borrow_mut() = Some(Rc::clone(&k)));
    Ok(k)
}

thread_local! {
    /// key → (read at, value). Per isolate; lost on eviction, which is fine.
    static KV_CACHE: RefCell<HashMap<String, (u64, Option<String>)>> = RefCell::new(HashMap::new());
}

/// A CONFIG KV value, through the isolate cache. A KV failure reads as
/// "absent" so defaults apply: pricing never fails on config.
async fn config_value(env: &Env, key: &str, now: u64, ttl: Millis) -> Option<String> {
    let hit = KV_CACHE.with(|c| {
        c.borrow()
            .get(key)
            .filter(|(at, _)| now.saturating_sub(*at) < ttl.0)
            .map(|(_, v)| v.clone())
    });
    if let Some(v) = hit {
        return v;
    }
    let value = match env.kv("CONFIG") {
        Ok(kv) => kv.get(key).text().await.ok().flatten(),
        Err(_) => None,
    };
    KV_CACHE.with(|c| c.borrow_mut().insert(key.to_owned(), (now, value.clone())));
    value
}

#[derive(Deserialize)]
struct TariffWire {
    currency: String,
    base: i64,
    per_km: i64,
    per_minute: i64,
    booking_fee: i64,
    minimum_fare: i64,
    cancellation_fee: Option<i64>,
    cancellation_grace_seconds: Option<u64>,
    reprice_tolerance_percent: Option<u32>,
}

/// Parses a tariff value; `None` when invalid (then the default applies).
pub fn parse_tariff(text: &str) -> Option<Tariff> {
    parse_terms(text).map(|t| t.tariff)
}

/// Parses a tariff value with its booking terms (defaults for the ones it
/// does not set); `None` when invalid.
pub fn parse_terms(text: &str) -> Option<Terms> {
    let w: TariffWire = serde_json::from_str(text).ok()?;
    let tariff = Tariff {
        currency: Currency::new(&w.currency).ok()?,
        base: w.base,
        per_km: w.per_km,
        per_minute: w.per_minute,
        booking_fee: w.booking_fee,
        minimum_fare: w.minimum_fare,
    }
    .validate()
    .ok()?;
    let fee = w.cancellation_fee.unwrap_or(DEFAULT_CANCELLATION_FEE);
    let tolerance = w
        .reprice_tolerance_percent
        .unwrap_or(DEFAULT_REPRICE_TOLERANCE_PERCENT);
    let grace = w
        .cancellation_grace_seconds
        .map_or(DEFAULT_CANCELLATION_GRACE, Millis::from_secs);
    let sane =
        (0..=1_000_000).contains(&fee) && tolerance <= 1_000 && grace <= Millis::from_secs(86_400);
    sane.then_some(Terms {
        tariff,
        cancellation_fee: fee,
        cancellation_grace: grace,
        reprice_tolerance_percent: tolerance,
    })
}

#[derive(Deserialize)]
struct CapsWire {
    min: f64,
    max: f64,
}

/// Parses region caps; `None` when invalid.
pub fn parse_caps(text: &str) -> Option<Caps> {
    let w: CapsWire = serde_json::from_str(text).ok()?;
    Caps::new(
        Multiplier::from_f64(w.min).ok()?,
        Multiplier::from_f64(w.max).ok()?,
    )
    .ok()
}

/// Parses the emergency cap (`"1.5"` or `1.5`); `None` when absent/invalid.
pub fn parse_emergency(text: &str) -> Option<Multiplier> {
    let t = text.trim().trim_matches('"');
    Multiplier::from_f64(t.parse().ok()?).ok()
}

/// The tariff of a class in a region (admin's or the built-in default).
pub async fn tariff(
    env: &Env,
    s: &Settings,
    region: &Ident,
    class: VehicleClass,
    now: u64,
) -> Tariff {
    let key = ["tariff:", region.as_str(), ":", class.as_str()].concat();
    config_value(env, &key, now, s.config_cache)
        .await
        .and_then(|t| parse_tariff(&t))
        .unwrap_or_else(|| Tariff::default_for(class))
}

/// The booking terms of a class in a region: the tariff key's, or the
/// built-in tariff with the default terms.
pub async fn terms(
    env: &Env,
    s: &Settings,
    region: &Ident,
    class: VehicleClass,
    now: u64,
) -> Terms {
    let key = ["tariff:", region.as_str(), ":", class.as_str()].concat();
    config_value(env, &key, now, s.config_cache)
        .await
        .and_then(|t| parse_terms(&t))
        .unwrap_or_else(|| Terms::with_defaults(Tariff::default_for(class)))
}

/// The dispatch system's token (`DISPATCH_TOKEN` secret), if set.
pub fn dispatch_token(env: &Env) -> Option<String> {
    env.secret("DISPATCH_TOKEN")
        .map(|s| s.to_string())
        .ok()
        .filter(|t| !t.is_empty())
}

/// Parses an on/off flag (`true`, `1`, `yes`, `on`, quoted or not);
/// anything else is off.
pub fn parse_flag(text: &str) -> bool {
    matches!(
        text.trim().trim_matches('"').to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

/// The caps in force for a region, emergency cap applied, and whether an
/// emergency is declared for it (`emergency:<region>`: the desk then
/// narrows the caps to the grid's lawful cap).
pub async fn effective_caps(env: &Env, s: &Settings, region: &Ident, now: u64) -> (Caps, bool) {
    // Every key at once: a cold isolate waits for one KV round trip.
    let caps_key = ["caps:", region.as_str()].concat();
    let flag_key = ["emergency:", region.as_str()].concat();
    let (caps, cap, declared) = futures_util::future::join3(
        config_value(env, &caps_key, now, s.config_cache),
        config_value(env, "emergency_cap", now, s.config_cache),
        config_value(env, &flag_key, now, s.config_cache),
    )
    .await;
    let caps = caps
        .and_then(|t| parse_caps(&t))
        .unwrap_or(Caps::DEFAULT)
        .effective(cap.and_then(|t| parse_emergency(&t)));
    (caps, declared.is_some_and(|t| parse_flag(&t)))
}

/// A region's experiments text and what it parsed to.
type ParsedExperiments = (String, Rc<Vec<Experiment>>);

thread_local! {
    /// The last parse of each region's `experiment:<region>` text: parsed
    /// (and a refusal logged) once per text an isolate sees.
    static EXPERIMENTS: RefCell<HashMap<Ident, ParsedExperiments>> =
        RefCell::new(HashMap::new());
}

/// The key of a region's experiments.
pub fn experiment_key(region: &Ident) -> String {
    ["experiment:", region.as_str()].concat()
}

/// The raw value of a region's experiments key, if set.
pub async fn experiments_text(env: &Env, s: &Settings, region: &Ident, now: u64) -> Option<String> {
    config_value(env, &experiment_key(region), now, s.config_cache).await
}

/// The raw value of a region's experiments key read from KV itself (not
/// the isolate cache): `Some(value)` when read (`None` inside: absent),
/// `None` when KV failed.
pub async fn experiments_read(env: &Env, region: &Ident) -> Option<Option<String>> {
    let kv = env.kv("CONFIG").ok()?;
    kv.get(&experiment_key(region)).text().await.ok()
}

/// A region's valid experiments (none when the key is absent or nothing in
/// it is valid). What is refused is logged, with its reason, the first time
/// an isolate reads that text: pricing never stops for a typo.
pub async fn experiments(env: &Env, s: &Settings, region: &Ident, now: u64) -> Rc<Vec<Experiment>> {
    let Some(text) = experiments_text(env, s, region, now).await else {
        return Rc::new(Vec::new());
    };
    let known = EXPERIMENTS.with(|c| {
        c.borrow()
            .get(region)
            .filter(|(t, _)| *t == text)
            .map(|(_, e)| Rc::clone(e))
    });
    if let Some(e) = known {
        return e;
    }
    let (valid, refused) = shared::api::parse_experiments(region, &text);
    for why in &refused {
        worker::console_warn!("{}: experiment ignored: {why}", experiment_key(region));
    }
    let valid = Rc::new(valid);
    EXPERIMENTS.with(|c| {
        c.borrow_mut()
            .insert(region.clone(), (text, Rc::clone(&valid)))
    });
    valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_values_parse_or_fall_back() {
        let t = parse_tariff(
            r#"{"currency":"EUR","base":300,"per_km":100,"per_minute":25,"booking_fee":150,"minimum_fare":700}"#,
        )
        .expect("tariff");
        assert_eq!(t.currency.as_str(), "EUR");
        assert!(parse_tariff(r#"{"currency":"eur","base":1}"#).is_none());
        assert!(parse_tariff(
            r#"{"currency":"EUR","base":-3,"per_km":1,"per_minute":1,"booking_fee":1,"minimum_fare":1}"#
        )
        .is_none());
        let c = parse_caps(r#"{"min":1.2,"max":3.0}"#).expect("caps");
        assert_eq!((c.min().tenths(), c.max().tenths()), (12, 30));
        assert!(parse_caps(r#"{"min":3.0,"max":1.2}"#).is_none());
        assert_eq!(parse_emergency("\"1.5\"").map(|m| m.tenths()), Some(15));
        assert_eq!(parse_emergency("2").map(|m| m.tenths()), Some(20));
        assert!(parse_emergency("0.5").is_none());
        assert!(parse_flag("true") && parse_flag("\"1\"") && parse_flag(" Yes "));
        assert!(!parse_flag("false") && !parse_flag("") && !parse_flag("2"));
        let terms = parse_terms(
            r#"{"currency":"USD","base":1,"per_km":1,"per_minute":1,"booking_fee":1,"minimum_fare":1,"cancellation_fee":300,"cancellation_grace_seconds":0}"#,
        )
        .expect("terms");
        assert_eq!(terms.cancellation_fee, 300);
        assert_eq!(terms.cancellation_grace, Millis(0));
        assert_eq!(
            terms.reprice_tolerance_percent,
            DEFAULT_REPRICE_TOLERANCE_PERCENT
        );
        assert!(parse_terms(
            r#"{"currency":"USD","base":1,"per_km":1,"per_minute":1,"booking_fee":1,"minimum_fare":1,"cancellation_fee":-1}"#
        )
        .is_none());
    }
}
