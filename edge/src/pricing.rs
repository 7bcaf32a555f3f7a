//! `POST /api/v1/pricing/estimate` (confirming a quote: [`crate::bookings`]).

use shared::api::{EstimateRequest, ValidEstimate};
use std::rc::Rc;

use shared::booking::Terms;
use shared::desk::{Desk, DeskInputs, PricedQuote, QuoteAsk};
use shared::experiment::Experiment;
use shared::fare::{RouteModel, VehicleClass};
use shared::quote::Ident;
use shared::regions::{Region, Registry};
use shared::time::Timestamp;
use worker::{Context, Env, Response};

use crate::config::{self, Settings};
use crate::error::{from_json_error, ApiError};
use crate::grids::{self, Via};
use crate::http::{json, Incoming, MAX_BODY_BYTES};

thread_local! {
    /// Bytes from the platform CSPRNG, drawn 4 KiB at a time: one call into
    /// JS per 256 quote ids instead of one per quote.
    static RANDOM_POOL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn random_bytes(n: u32) -> Result<Vec<u8>, ApiError> {
    use wasm_bindgen::{JsCast, JsValue};
    let fail = |_| ApiError::unavailable("random number generator");
    let crypto =
        js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).map_err(fail)?;
    let get: js_sys::Function =
        js_sys::Reflect::get(&crypto, &JsValue::from_str("getRandomValues"))
            .map_err(fail)?
            .dyn_into()
            .map_err(fail)?;
    let buf = js_sys::Uint8Array::new_with_length(n);
    get.call1(&crypto, &buf).map_err(fail)?;
    Ok(buf.to_vec())
}

/// A new quote id: `q_`, the ledger count it is made for (hex) and `-`
/// ([`shared::booking::ledger_suffix`]), and 16 random bytes from the
/// platform CSPRNG, as hex.
fn new_quote_id(ledgers: u32) -> Result<Ident, ApiError> {
    const ID_BYTES: usize = 16;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pool = RANDOM_POOL.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pool.len() < ID_BYTES {
        pool = random_bytes(4_096)?;
    }
    let mut random = String::with_capacity(2 * ID_BYTES);
    for b in pool.drain(pool.len() - ID_BYTES..) {
        random.push(char::from(HEX[usize::from(b >> 4)]));
        random.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    RANDOM_POOL.with(|p| *p.borrow_mut() = pool);
    let id = ["q_", &shared::booking::ledger_suffix(ledgers, &random)].concat();
    Ident::new(&id).map_err(|_| ApiError::unavailable("quote id generation"))
}

/// The registered region a request without a point names, or the
/// default one (`DEFAULT_REGION`): `404 unknown_region` for a name nobody
/// registered (and nothing is created for it).
pub fn named_region<'r>(
    registry: &'r Registry,
    requested: Option<&str>,
    settings: &Settings,
) -> Result<&'r Region, ApiError> {
    let name = requested.unwrap_or(settings.default_region.as_str());
    registry.named(name).map_err(|m| ApiError::misplaced(&m))
}

/// Parses a vehicle class, the default (`standard`) when absent.
pub fn class_of(requested: Option<&str>) -> Result<VehicleClass, ApiError> {
    VehicleClass::parse_or_default(requested)
        .map_err(|e| ApiError::bad_request("unknown_vehicle_class", e.to_string()))
}

/// Everything a price at the edge is made of, read concurrently: the
/// region's grid, the caps in force (as the desk's inputs at `now`) and the
/// region's experiments.
#[derive(Debug)]
pub struct DeskRead {
    /// The grid and where it came from.
    pub read: grids::GridRead,
    /// Caps, staleness, now.
    pub inputs: DeskInputs,
    /// The region's valid experiments.
    pub experiments: Rc<Vec<Experiment>>,
    /// The registry the region is in (its named zones).
    pub registry: Rc<Registry>,
    /// The region priced.
    pub region: Ident,
}

impl DeskRead {
    /// The desk of `user` (when known) at `now`: priced from the arm of
    /// their experiment when the grid carries it ([`shared::experiment::arm_grid`]),
    /// from the region's grid otherwise. Every view of a price goes
    /// through this, so a map shows what a quote there charges.
    pub fn desk(&self, now: u64, user: Option<&str>) -> Desk<'_> {
        let grid = self.read.grid.as_deref();
        let arm = grid.and_then(|g| {
            match shared::experiment::pick_arm(&self.experiments, g, Timestamp(now), user) {
                Ok(arm) => Some(arm),
                Err(why) => {
                    warn_other_version(&why);
                    None
                }
            }
        });
        Desk::new(grid, self.inputs)
            .with_arm(arm)
            .with_region(self.registry.get(self.region.as_str()))
    }
}

thread_local! {
    /// (experiment, arm, grid's version) pairs already logged here (the
    /// last 1,024).
    static WARNED: std::cell::RefCell<shared::recent::Recent<String, ()>> =
        std::cell::RefCell::new(shared::recent::Recent::new(1_024));
}

/// Logs, once per isolate and pair of versions, that an arm's grid was
/// computed by another version of its policy than the definition names:
/// its quotes are priced outside the experiment until they agree.
fn warn_other_version(why: &shared::experiment::Outside) {
    let shared::experiment::Outside::OtherVersion {
        experiment,
        arm,
        grid,
        definition,
    } = why
    else {
        return;
    };
    let key = [experiment.as_str(), arm.as_str(), grid.as_str()].join("|");
    let new = WARNED.with(|w| {
        let mut w = w.borrow_mut();
        let seen = w.get(&key).is_some();
        if !seen {
            w.insert(key, ());
        }
        !seen
    });
    if new {
        worker::console_warn!(
            "experiment {experiment} arm {arm}: the grid's policy version {grid} is not the definition's {definition}; its quotes are priced outside the experiment"
        );
    }
}

/// Reads a region's [`DeskRead`] at `now`: the one read path of every
/// price the edge shows.
pub async fn read_desk_inputs(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    registry: &Rc<Registry>,
    region: &Ident,
    now: u64,
) -> DeskRead {
    let (read, caps, experiments) = futures_util::future::join3(
        grids::read(
            env,
            ctx,
            region,
            now,
            settings.grid_cache,
            settings.grid_refresh,
        ),
        config::effective_caps(env, settings, region, now),
        config::experiments(env, settings, region, now),
    )
    .await;
    let inputs = DeskInputs {
        caps: caps.caps,
        staleness: settings.staleness,
        now: Timestamp(now),
        from_cache: matches!(read.via, Via::Isolate | Via::Location),
        emergency: caps.emergency,
        degraded: caps.degraded,
    };
    DeskRead {
        read,
        inputs,
        experiments,
        registry: Rc::clone(registry),
        region: region.clone(),
    }
}

/// `POST /api/v1/pricing/estimate`: the address limit and the body, the
/// request ([`parse_estimate`]), the rider ([`crate::identity::rider`]),
/// the region ([`locate`]), the verified rider's limit, the inputs
/// ([`read_quote_inputs`]), the signed price ([`price`]), the event
/// ([`report`]), the answer ([`answer`]). The steps are public so
/// `probe` (feature `probes`) can time each inside workerd.
pub async fn estimate(
    req: Incoming,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    now: u64,
) -> Result<Response, ApiError> {
    // The address limit is checked while the body arrives: one wait, not two.
    let body = crate::limits::check_ip_reading_json_body(env, &req, MAX_BODY_BYTES).await?;
    let ask = parse_estimate(&body)?;
    let rider = crate::identity::rider(env, &req, settings, now).await?;
    let asker = asker_key(env, &req, rider.as_deref(), now)?;
    let registry = crate::regions::registry(env, settings, now).await?;
    let region = locate(&registry, &ask)?;
    crate::limits::check_user(env, rider.as_deref()).await?;
    let inputs = read_quote_inputs(env, ctx, settings, &registry, region, ask.class, now).await?;
    let (quote, token) = price(
        env,
        settings,
        &inputs,
        &ask,
        rider.as_deref(),
        region.id(),
        now,
    )?;
    report(env, ctx, &quote, &ask, asker);
    answer(&quote, token)
}

/// Whom a price check counts for as demand ([`shared::events::asker`]):
/// the verified rider, else the client by its address's keyed digest. A
/// `user_id` in the body is not verified, so it keys nothing: a client
/// varying it buys no extra demand.
pub fn asker_key(
    env: &Env,
    req: &Incoming,
    rider: Option<&str>,
    now: u64,
) -> Result<String, ApiError> {
    let keys = config::keyring(env)?;
    Ok(shared::events::asker(
        rider,
        &keys,
        &crate::http::client_ip(req),
        Timestamp(now),
    ))
}

/// An estimate's body, parsed and validated: 400 with the field's code.
pub fn parse_estimate(body: &[u8]) -> Result<ValidEstimate, ApiError> {
    let r: EstimateRequest = serde_json::from_slice(body).map_err(|e| from_json_error(&e))?;
    r.validate(&RouteModel::default())
        .map_err(|e| ApiError::bad_request(e.code, e.message))
}

/// The region an estimate is priced in: the pickup's, which a `region`
/// in the request must name ([`Registry::resolve`]; 404 for a name nobody
/// registered, 422 for another region's or a pickup outside them all).
pub fn locate<'r>(registry: &'r Registry, ask: &ValidEstimate) -> Result<&'r Region, ApiError> {
    registry
        .resolve(ask.pickup, ask.region.as_ref().map(Ident::as_str))
        .map_err(|m| ApiError::misplaced(&m))
}

/// What a quote is priced from: the desk's inputs and the class's tariff
/// with its booking terms.
#[derive(Debug)]
pub struct QuoteInputs {
    /// Grid, caps, staleness, experiments.
    pub desk: DeskRead,
    /// The region's tariff for the class and its booking terms.
    pub terms: Terms,
}

/// Reads a quote's inputs concurrently (the isolate's caches first).
pub async fn read_quote_inputs(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    registry: &Rc<Registry>,
    region: &Region,
    class: VehicleClass,
    now: u64,
) -> Result<QuoteInputs, ApiError> {
    let (desk, terms) = futures_util::future::join(
        read_desk_inputs(env, ctx, settings, registry, region.id(), now),
        config::terms(env, settings, region, class, now),
    )
    .await;
    Ok(QuoteInputs {
        desk,
        terms: terms?,
    })
}

/// The desk's price for `ask` at `now` for the verified `rider` (`None`:
/// anonymous, outside every user split), with a fresh id, and its signed
/// token.
pub fn price(
    env: &Env,
    settings: &Settings,
    inputs: &QuoteInputs,
    ask: &ValidEstimate,
    rider: Option<&str>,
    region: &Ident,
    now: u64,
) -> Result<(PricedQuote, String), ApiError> {
    let quote = inputs.desk.desk(now, rider).quote(QuoteAsk {
        region,
        class: ask.class,
        pickup: ask.pickup,
        trip: ask.trip,
        terms: &inputs.terms,
        quote_id: new_quote_id(settings.ledgers)?,
        valid_for: settings.quote_ttl,
    });
    let token = config::keyring(env)?.sign(&quote.claims);
    Ok((quote, token))
}

/// A price check is demand: the origin hears of it through the queue
/// (batched, after the response), keyed by its asker ([`asker_key`]).
pub fn report(env: &Env, ctx: &Context, quote: &PricedQuote, ask: &ValidEstimate, asker: String) {
    crate::events::send_later(
        env,
        ctx,
        &shared::api::EdgeEvent::quote(&quote.claims, ask.pickup, asker),
    );
}

/// The estimate's 200 answer, carrying the signed token.
pub fn answer(quote: &PricedQuote, token: String) -> Result<Response, ApiError> {
    json(&shared::api::EstimateResponse::new(quote, token), 200)
        .map_err(|_| ApiError::unavailable("response encoding"))
}
