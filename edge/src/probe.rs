//! Bench builds only (feature `probes`, `scripts/probe-edge.sh`): times the
//! estimate's steps one at a time inside workerd, where HTTP-level rounds
//! cannot resolve them.
//!
//! `POST /__probe/{step}?n=N[&cold=1]` with an estimate's body prepares a
//! quote the way [`crate::pricing::estimate`] does, then repeats one step
//! `N` times and answers `{"cold", "n", "step"}`. The script reads workerd's CPU
//! time around a call of `N` and a call of 1: the difference over `N − 1`
//! is one step's cost with the isolate and the CPU's caches warm. With
//! `cold=1` every repetition first writes one byte per cache line of
//! [`EVICT_BYTES`] (evicting the caches), and the step `nothing` is that
//! alone: the difference is the step's cost from cold caches. A real
//! request's cost lies between the two, nearer cold the more the runtime
//! does between two requests. The steps are the handler's own functions
//! (the limiter through [`crate::limits::check_ip`], the call the estimate
//! makes while its body arrives), so what is timed is what runs.
//!
//! `POST /__upto/{stage}` is the estimate cut short, one per request, for
//! load: it runs the estimate's steps in [`STAGES`] order up to `stage` and
//! answers the body baseline's answer ([`crate::body_answer`]), except
//! `answer`, which is the whole estimate. Loaded one after another
//! (`scripts/probe-edge-load.sh`), the CPU per request of consecutive
//! stages is each step's cost *under load*, which the warm and cold
//! repetitions above only bound.
//!
//! Never in the shipped worker: without the feature the routes do not
//! exist (`tests/tests/edge.rs` checks for the 404).

use js_sys::futures::JsFuture;
use worker::{Context, Env, Response};

use crate::config::Settings;
use crate::error::ApiError;
use crate::http::{self, Incoming, MAX_BODY_BYTES};
use crate::pricing;

/// Most repetitions one call runs.
const MAX_N: u32 = 1_000_000;
/// What a cold repetition writes first: more than this host's caches.
pub const EVICT_BYTES: usize = 16 << 20;

/// The steps: `nothing` (a cold run's zero), then the estimate's in the
/// order it runs them; `await` and `baseline-answer` are what the body
/// baseline (`POST /health`) pays instead; `report100` is the report with
/// messages of 100 events ([`BATCH_OF_100`]).
pub const STEPS: [&str; 13] = [
    "nothing",
    "limit",
    "await",
    "parse",
    "identity",
    "identity_uncached",
    "region",
    "inputs",
    "price",
    "report100",
    "report",
    "answer",
    "baseline-answer",
];

/// The estimate's stages, each the one before plus a step: `body` reads
/// and checks the body as the baseline does (no limiter), `limit` adds the
/// address limiter (waited with the body, as the estimate does), `parse`
/// the parse and the user limiter (skipped without a user id), then the
/// estimate's own steps. `event`, `report100` and `report` are alternatives
/// after `price`: `event` encodes the quote event and adds it to a batcher
/// of its own, never sent; `report100` is the report with messages of 100
/// events ([`BATCH_OF_100`], the limit before messages of 64 KB); `report`
/// is the estimate's. So `report` less `event` is the sending, the queue's
/// delivery and its consumer, and `report` less `report100` what the larger
/// messages change.
pub const STAGES: [&str; 9] = [
    "body",
    "limit",
    "parse",
    "inputs",
    "price",
    "event",
    "report100",
    "report",
    "answer",
];

thread_local! {
    /// The `event` stage's batches, never sent.
    static EVENT_STAGE: std::cell::RefCell<shared::events::Batcher<String>> =
        std::cell::RefCell::new(shared::events::Batcher::default());
}

/// Messages of 100 quote events, whatever their size.
pub const BATCH_OF_100: shared::events::BatchLimits = shared::events::BatchLimits {
    events: 100,
    bytes: usize::MAX,
};

/// `POST /__upto/{stage}`: [`crate::pricing::estimate`]'s steps, in its
/// order, up to `stage`.
pub async fn upto(
    req: Incoming,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    stage: &str,
    now: u64,
) -> Result<Response, ApiError> {
    let Some(last) = STAGES.iter().position(|s| *s == stage) else {
        return Err(ApiError::not_found(&http::path(&req)));
    };
    let through = |s: &str| {
        STAGES
            .iter()
            .position(|x| *x == s)
            .is_some_and(|i| i <= last)
    };
    let body = if through("limit") {
        crate::limits::check_ip_reading_json_body(env, &req, MAX_BODY_BYTES).await?
    } else {
        http::read_json_body(&req, MAX_BODY_BYTES).await?
    };
    if !through("parse") {
        return crate::body_answer(body.len());
    }
    let ask = pricing::parse_estimate(&body)?;
    let rider = crate::identity::rider(env, &req, settings, now).await?;
    let asker = pricing::asker_key(env, &req, rider.as_deref(), now)?;
    let registry = crate::regions::registry(env, settings, now).await?;
    let region = pricing::locate(&registry, &ask)?;
    crate::limits::check_user(env, rider.as_deref()).await?;
    if !through("inputs") {
        return crate::body_answer(body.len());
    }
    let inputs =
        pricing::read_quote_inputs(env, ctx, settings, &registry, region, ask.class, now).await?;
    if !through("price") {
        return crate::body_answer(body.len());
    }
    let (quote, token) = pricing::price(
        env,
        settings,
        &inputs,
        &ask,
        rider.as_deref(),
        region.id(),
        now,
    )?;
    let event = || shared::api::EdgeEvent::quote(&quote.claims, ask.pickup, asker.clone());
    match stage {
        "price" => return crate::body_answer(body.len()),
        "event" => {
            // A batcher of its own, so no batch it drops is left without a
            // timer in the isolate's real one.
            EVENT_STAGE.with(|b| {
                drop(crate::events::add(
                    &mut b.borrow_mut(),
                    &event(),
                    crate::events::MESSAGE,
                ))
            });
            return crate::body_answer(body.len());
        }
        "report100" => {
            crate::events::send_within(env, ctx, &event(), BATCH_OF_100);
            return crate::body_answer(body.len());
        }
        _ => {}
    }
    pricing::report(env, ctx, &quote, &ask, asker);
    if !through("answer") {
        return crate::body_answer(body.len());
    }
    pricing::answer(&quote, token)
}

/// `POST /__probe/{step}?n=N[&cold=1]`.
pub async fn run(
    req: Incoming,
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    step: &str,
    now: u64,
) -> Result<Response, ApiError> {
    if !STEPS.contains(&step) {
        return Err(ApiError::not_found(&http::path(&req)));
    }
    let n = http::url(&req)?
        .query_pairs()
        .find(|(k, _)| k == "n")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .filter(|n| (1..=MAX_N).contains(n))
        .ok_or_else(|| ApiError::bad_request("invalid_n", format!("n is 1 to {MAX_N}")))?;
    let cold = http::url(&req)?
        .query_pairs()
        .any(|(k, v)| k == "cold" && v == "1");
    let mut evict = vec![0u8; if cold { EVICT_BYTES } else { 0 }];
    let body = http::read_json_body(&req, MAX_BODY_BYTES).await?;
    let ask = pricing::parse_estimate(&body)?;
    let registry = crate::regions::registry(env, settings, now).await?;
    let region = pricing::locate(&registry, &ask)?;
    let inputs =
        pricing::read_quote_inputs(env, ctx, settings, &registry, region, ask.class, now).await?;
    let rider = crate::identity::rider(env, &req, settings, now).await?;
    let (quote, token) = pricing::price(
        env,
        settings,
        &inputs,
        &ask,
        rider.as_deref(),
        region.id(),
        now,
    )?;
    let key = ["ip:", &http::client_ip(&req)].concat();
    let asker = pricing::asker_key(env, &req, rider.as_deref(), now)?;
    for _ in 0..n {
        touch_every_line(&mut evict);
        match step {
            "nothing" => {}
            "limit" => crate::limits::check_ip(env, key.clone()).await?,
            "await" => {
                let ready = js_sys::Promise::resolve(&wasm_bindgen::JsValue::NULL);
                JsFuture::from(ready)
                    .await
                    .map_err(|_| ApiError::unavailable("a resolved promise"))?;
            }
            "parse" => drop(pricing::parse_estimate(&body)?),
            // The registry (cached in the isolate) and the pickup's region.
            "region" => {
                let registry = crate::regions::registry(env, settings, now).await?;
                drop(pricing::locate(&registry, &ask)?.id().clone())
            }
            "inputs" => drop(
                pricing::read_quote_inputs(env, ctx, settings, &registry, region, ask.class, now)
                    .await,
            ),
            "price" => drop(pricing::price(
                env,
                settings,
                &inputs,
                &ask,
                rider.as_deref(),
                region.id(),
                now,
            )?),
            // The rider's token verified (cached in the isolate after the
            // first; `cold=1` does not clear that cache).
            "identity" => drop(crate::identity::rider(env, &req, settings, now).await?),
            // The token verified from scratch: what a rider's first
            // request with a new token costs.
            "identity_uncached" => {
                drop(crate::identity::verify_uncached(env, &req, settings, now).await?)
            }
            "report" => pricing::report(env, ctx, &quote, &ask, asker.clone()),
            // The report with messages of 100 events (before 64 KB ones).
            "report100" => crate::events::send_within(
                env,
                ctx,
                &shared::api::EdgeEvent::quote(&quote.claims, ask.pickup, asker.clone()),
                BATCH_OF_100,
            ),
            // Made into the runtime's response, as the fetch handler's
            // return does.
            "answer" => drop(web_response(pricing::answer(&quote, token.clone())?)),
            _ => drop(web_response(crate::body_answer(body.len())?)),
        }
    }
    http::json(
        &serde_json::json!({"step": step, "n": n, "cold": cold}),
        200,
    )
    .map_err(|_| ApiError::unavailable("response encoding"))
}

fn web_response(r: Response) -> worker::worker_sys::web_sys::Response {
    r.into()
}

/// Writes one byte per 64-byte cache line of `bytes` (none when empty).
fn touch_every_line(bytes: &mut [u8]) {
    for b in bytes.iter_mut().step_by(64) {
        *b = b.wrapping_add(1);
    }
    std::hint::black_box(bytes);
}
