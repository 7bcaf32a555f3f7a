//! Settings: `[vars]` from wrangler.toml, secrets, and the admin's KV keys.
//!
//! Admin keys live in the `CONFIG` KV namespace and are set with
//! `wrangler kv key put` (their schemas: README, and
//! [`shared::api::admin`], whose strict parsers are the only ones):
//!
//! * `regions`: the region registry ([`crate::regions`]);
//! * `tariff:<region>:<class>`: a tariff in the region's currency, with its
//!   booking terms;
//! * `caps:<region>`, `emergency_cap`, `emergency:<region>`: the safety
//!   settings. They fail closed: a value that does not parse, or a read
//!   that fails, keeps the isolate's last good value; with none, prices
//!   are 1.0 with a degraded source ([`effective_caps`]). Each case is
//!   logged once per isolate and key as a JSON line
//!   (`"event":"config_degraded"`) and listed by `GET /health`.
//! * `experiment:<region>`: the region's pricing experiments
//!   ([`shared::api::parse_experiments`]); what is invalid is ignored with
//!   a logged reason.
//!
//! KV reads are cached in the isolate for `CONFIG_CACHE_MS` (var; default [`CONFIG_CACHE_MS`]): an admin
//! change takes effect within that (plus KV's own propagation, up to 60 s).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use shared::booking::Terms;
use shared::experiment::Experiment;
use shared::fare::{Tariff, VehicleClass};
use shared::grid::Staleness;
use shared::quote::{Ident, Keyring};
use shared::recent::Recent;
use shared::regions::Region;
use shared::surge::{Caps, Multiplier};
use shared::time::Millis;
use worker::Env;

use crate::error::ApiError;

/// Most admin keys an isolate caches (every region's few keys, with room).
pub const KV_CACHE_CAPACITY: usize = 8_192;

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
    /// Most live subscribers one zone takes (`MAX_ZONE_SUBSCRIBERS`); the
    /// next is closed at once with code 1013 and a JSON reason.
    pub max_zone_subscribers: usize,
    /// Post events (with `ORIGIN_TOKEN`) to a plain `http://` origin that
    /// is not loopback (`ALLOW_INSECURE_HTTP` = `true`): off by default.
    pub allow_insecure_http: bool,
    /// Ledger objects new quotes are spread over (`LEDGERS`, 1 to
    /// [`shared::booking::MAX_LEDGERS`]; default 16). Raising it moves no
    /// booking: an id names the count it was made for.
    pub ledgers: u32,
    /// How long a booking is kept after its last transition
    /// (`BOOKING_RETENTION_SECONDS`; default 400 days).
    pub booking_retention: Millis,
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

fn secs(env: &Env, name: &str, default: Millis) -> Millis {
    var(env, name)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, Millis::from_secs)
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
                // The core's defaults (`Staleness::default`), unless set.
                fresh_for: secs(env, "GRID_FRESH_SECONDS", Staleness::default().fresh_for),
                decay_over: secs(env, "GRID_DECAY_SECONDS", Staleness::default().decay_over),
            },
            quote_ttl: secs(env, "QUOTE_TTL_SECONDS", Millis::from_secs(120)),
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
            allow_insecure_http: var(env, "ALLOW_INSECURE_HTTP")
                .is_some_and(|v| v.trim() == "true"),
            ledgers: var(env, "LEDGERS")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| (1..=shared::booking::MAX_LEDGERS).contains(n))
                .unwrap_or(shared::booking::LEGACY_LEDGERS),
            booking_retention: var(env, "BOOKING_RETENTION_SECONDS")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
                .map_or(
                    shared::booking::DEFAULT_BOOKING_RETENTION,
                    Millis::from_secs,
                ),
            max_zone_subscribers: var(env, "MAX_ZONE_SUBSCRIBERS")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(crate::zone::DEFAULT_MAX_SUBSCRIBERS),
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

/// What a read of an admin key gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The key holds this text.
    Set(String),
    /// The key is not set.
    Absent,
    /// KV did not answer.
    Failed,
}

thread_local! {
    /// key → (read at, what it gave). Per isolate; lost on eviction. Keys
    /// are derived from registered regions (at most `MAX_REGIONS`), and
    /// bounded besides ([`KV_CACHE_CAPACITY`], least recently used out).
    static KV_CACHE: RefCell<Recent<String, (u64, Read)>> =
        RefCell::new(Recent::new(KV_CACHE_CAPACITY));
    /// key → the last text of it that parsed, for safety settings: what
    /// stays in force while the key holds a bad value or cannot be read.
    static LAST_GOOD: RefCell<Recent<String, String>> =
        RefCell::new(Recent::new(KV_CACHE_CAPACITY));
    /// key → why its value is not in force now (shown by `/health`).
    static DEGRADED: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
}

/// An admin key's value, through the isolate cache (`CONFIG_CACHE_MS`).
pub async fn read(env: &Env, key: &str, now: u64, ttl: Millis) -> Read {
    let hit = KV_CACHE.with(|c| {
        c.borrow_mut()
            .get(&key.to_owned())
            .filter(|(at, _)| now.saturating_sub(*at) < ttl.0)
            .map(|(_, v)| v.clone())
    });
    if let Some(v) = hit {
        return v;
    }
    let value = read_uncached(env, key).await;
    KV_CACHE.with(|c| c.borrow_mut().insert(key.to_owned(), (now, value.clone())));
    value
}

/// An admin key's value from KV itself (for values the caller caches in
/// its own parsed form, like the registry).
pub async fn read_uncached(env: &Env, key: &str) -> Read {
    match env.kv("CONFIG") {
        Ok(kv) => match kv.get(key).text().await {
            Ok(Some(text)) => Read::Set(text),
            Ok(None) => Read::Absent,
            Err(_) => Read::Failed,
        },
        Err(_) => Read::Failed,
    }
}

/// Notes that `key`'s value is not in force, logging the reason the first
/// time this isolate sees it (one line per key and reason, not one per
/// request).
pub fn degrade(key: &str, reason: &str) {
    let new = DEGRADED.with(|d| {
        let mut d = d.borrow_mut();
        let changed = d.get(key).map(String::as_str) != Some(reason);
        if changed {
            d.insert(key.to_owned(), reason.to_owned());
        }
        changed
    });
    if new {
        worker::console_error!(
            "{}",
            serde_json::json!({"event": "config_degraded", "key": key, "reason": reason})
        );
    }
}

/// Notes that `key`'s value is in force again.
pub fn restore(key: &str) {
    let was = DEGRADED.with(|d| d.borrow_mut().remove(key));
    if was.is_some() {
        worker::console_log!(
            "{}",
            serde_json::json!({"event": "config_restored", "key": key})
        );
    }
}

/// The settings this isolate cannot use now, with why.
pub fn degraded() -> BTreeMap<String, String> {
    DEGRADED.with(|d| d.borrow().clone())
}

/// A safety setting, read strictly. `Ok(None)`: the key is not set;
/// `Ok(Some)`: its value, or the last good one while the key holds a bad
/// value or cannot be read (the setting is then reported degraded);
/// `Err(reason)`: it is bad or unreadable and this isolate knows no good
/// value. A bad value never reads as "not set": that would lift a cap.
pub async fn safety<T>(
    env: &Env,
    key: &str,
    now: u64,
    ttl: Millis,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let why = match read(env, key, now, ttl).await {
        Read::Absent => {
            // "Not set" is the setting now: a bad value after it has no
            // good one to fall back on.
            LAST_GOOD.with(|g| g.borrow_mut().remove(&key.to_owned()));
            restore(key);
            return Ok(None);
        }
        Read::Set(text) => match parse(&text) {
            Ok(v) => {
                LAST_GOOD.with(|g| g.borrow_mut().insert(key.to_owned(), text));
                restore(key);
                return Ok(Some(v));
            }
            Err(why) => format!("invalid value: {why}"),
        },
        Read::Failed => "KV read failed".to_owned(),
    };
    degrade(key, &why);
    let last = LAST_GOOD.with(|g| g.borrow_mut().get(&key.to_owned()).cloned());
    match last.map(|t| parse(&t)) {
        Some(Ok(v)) => Ok(Some(v)),
        _ => Err(why),
    }
}

/// The booking terms of a class in a region, with the tariff priced on:
/// `tariff:<tariff region>:<class>`, in the region's currency. The
/// built-in tariff prices only where the key is absent and the region
/// charges in its currency; a tariff that is invalid, unreadable or in
/// another currency keeps the last good one, else the request is
/// `503 config_unavailable`. Money never changes currency.
pub async fn terms(
    env: &Env,
    s: &Settings,
    region: &Region,
    class: VehicleClass,
    now: u64,
) -> Result<Terms, ApiError> {
    let key = [
        "tariff:",
        region.tariff_region().as_str(),
        ":",
        class.as_str(),
    ]
    .concat();
    let currency = region.currency();
    let parse = |text: &str| {
        shared::api::admin::parse_terms(text).and_then(|t| {
            if t.tariff.currency == currency {
                Ok(t)
            } else {
                Err(format!(
                    "the tariff is in {}; region {} charges in {currency}",
                    t.tariff.currency,
                    region.id()
                ))
            }
        })
    };
    match safety(env, &key, now, s.config_cache, parse).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Tariff::built_in(currency, class)
            .map(Terms::with_defaults)
            .ok_or_else(|| {
                ApiError::config_unavailable(&format!(
                    "no tariff for {} in region {}: set {key} (in {currency})",
                    class.as_str(),
                    region.id()
                ))
            }),
        Err(why) => Err(ApiError::config_unavailable(&format!("{key}: {why}"))),
    }
}

/// The dispatch system's token (`DISPATCH_TOKEN` secret), if set.
pub fn dispatch_token(env: &Env) -> Option<String> {
    env.secret("DISPATCH_TOKEN")
        .map(|s| s.to_string())
        .ok()
        .filter(|t| !t.is_empty())
}

/// The caps a region prices within now, fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsInForce {
    /// The region's caps narrowed by the emergency cap.
    pub caps: Caps,
    /// Whether an emergency is declared (`emergency:<region>`).
    pub emergency: bool,
    /// A setting among them is unknown: price at 1.0 (the desk's rule).
    pub degraded: bool,
}

/// The caps in force for a region, emergency cap applied, and whether an
/// emergency is declared for it (`emergency:<region>`: the desk then
/// narrows the caps to the grid's lawful cap). Each key is read strictly
/// ([`safety`]): a bad or unreadable value keeps the last good one; with
/// none, the region prices at 1.0 with a degraded source.
pub async fn effective_caps(env: &Env, s: &Settings, region: &Ident, now: u64) -> CapsInForce {
    use shared::api::admin::{parse_caps, parse_emergency_cap, parse_emergency_flag};
    // Every key at once: a cold isolate waits for one KV round trip.
    let caps_key = ["caps:", region.as_str()].concat();
    let flag_key = ["emergency:", region.as_str()].concat();
    let ttl = s.config_cache;
    let (caps, cap, declared) = futures_util::future::join3(
        safety(env, &caps_key, now, ttl, parse_caps),
        safety(
            env,
            shared::api::admin::EMERGENCY_CAP_KEY,
            now,
            ttl,
            parse_emergency_cap,
        ),
        safety(env, &flag_key, now, ttl, parse_emergency_flag),
    )
    .await;
    match (caps, cap, declared) {
        (Ok(caps), Ok(cap), Ok(declared)) => CapsInForce {
            caps: caps.unwrap_or(Caps::DEFAULT).effective(cap),
            emergency: declared.unwrap_or(false),
            degraded: false,
        },
        _ => CapsInForce {
            caps: Caps::new(Multiplier::ONE, Multiplier::ONE).unwrap_or(Caps::DEFAULT),
            emergency: false,
            degraded: true,
        },
    }
}

/// A region's experiments text and what it parsed to.
type ParsedExperiments = (String, Rc<Vec<Experiment>>);

thread_local! {
    /// The last parse of each region's `experiment:<region>` text: parsed
    /// (and a refusal logged) once per text an isolate sees. One entry per
    /// registered region (resolved before this is read).
    static EXPERIMENTS: RefCell<HashMap<Ident, ParsedExperiments>> =
        RefCell::new(HashMap::new());
}

/// The key of a region's experiments.
pub fn experiment_key(region: &Ident) -> String {
    ["experiment:", region.as_str()].concat()
}

/// The raw value of a region's experiments key, if set.
pub async fn experiments_text(env: &Env, s: &Settings, region: &Ident, now: u64) -> Option<String> {
    match read(env, &experiment_key(region), now, s.config_cache).await {
        Read::Set(text) => Some(text),
        Read::Absent | Read::Failed => None,
    }
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
