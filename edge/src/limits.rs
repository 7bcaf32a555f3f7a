//! Rate limiting per client IP, per user and per booking, with the Workers
//! rate-limit bindings `IP_LIMITER`, `USER_LIMITER` and `BOOKING_LIMITER`
//! (limits in wrangler.toml). Every public endpoint checks the address
//! (the estimate, the confirm, both heatmaps, booking reads and
//! transitions, the stream); a booking's transitions also count per
//! booking, so one booking's credentials cannot loop a cancel.
//! The user key is a hash of the user id: raw rider ids are never kept.
//! A missing binding or a limiter failure lets the request through: the
//! limiter protects pricing, it must not take it down.

use js_sys::futures::JsFuture;
use shared::market::DriverId;
use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

use crate::error::ApiError;
use crate::http::{client_ip, Incoming};

/// The window of the limits in wrangler.toml, for `Retry-After`.
const PERIOD_SECS: u32 = 10;

/// The worker's bindings, for their limiters.
fn bindings(env: &Env) -> &Bindings {
    env.unchecked_ref()
}

/// Whether `binding` lets `key` through now (no binding: yes).
async fn allowed(binding: JsValue, key: &str) -> bool {
    match limit_promise(binding, key) {
        Some(p) => JsFuture::from(p)
            .await
            .map_or(true, |answer| passes(&answer)),
        None => true,
    }
}

/// Refuses the request with 429 if its address or verified rider is over
/// the limit.
pub async fn check(env: &Env, req: &Incoming, user_id: Option<&str>) -> Result<(), ApiError> {
    check_ip(env, ip_key(req)).await?;
    check_user(env, user_id).await
}

/// The IP limiter's key for a request.
fn ip_key(req: &Incoming) -> String {
    ["ip:", &client_ip(req)].concat()
}

/// 429 if the client address is over its limit.
pub async fn check_ip(env: &Env, key: String) -> Result<(), ApiError> {
    if allowed(bindings(env).ip_limiter(), &key).await {
        Ok(())
    } else {
        Err(ApiError::rate_limited("client address", PERIOD_SECS))
    }
}

/// A limiter binding's promise for `key` (of `{success}`), called through
/// the binding directly; `None` without a binding. Typed accessors, not
/// `Reflect` with property names: no JS string is made per request for a
/// name.
fn limit_promise(binding: JsValue, key: &str) -> Option<js_sys::Promise> {
    if binding.is_undefined() || binding.is_null() {
        return None;
    }
    let options: LimitOptions = js_sys::Object::new().unchecked_into();
    options.set_key(key);
    binding.unchecked_into::<Limiter>().limit(&options).ok()
}

/// Whether a limiter's answer lets the request through: only
/// `success: false` refuses it (anything else is a failure, which lets it
/// through).
fn passes(answer: &JsValue) -> bool {
    !answer.is_object() || answer.unchecked_ref::<Outcome>().success().as_bool() != Some(false)
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// The worker's bindings (`env`).
    type Bindings;
    #[wasm_bindgen(method, getter = IP_LIMITER)]
    fn ip_limiter(this: &Bindings) -> JsValue;
    #[wasm_bindgen(method, getter = USER_LIMITER)]
    fn user_limiter(this: &Bindings) -> JsValue;
    #[wasm_bindgen(method, getter = BOOKING_LIMITER)]
    fn booking_limiter(this: &Bindings) -> JsValue;

    /// A rate-limit binding.
    type Limiter;
    #[wasm_bindgen(method, catch)]
    fn limit(this: &Limiter, options: &LimitOptions) -> Result<js_sys::Promise, JsValue>;

    /// The limiter's argument, `{key}`.
    type LimitOptions;
    #[wasm_bindgen(method, setter = key)]
    fn set_key(this: &LimitOptions, key: &str);

    /// The limiter's answer, `{success}`.
    type Outcome;
    #[wasm_bindgen(method, getter)]
    fn success(this: &Outcome) -> JsValue;

    /// One outcome of `Promise.allSettled`: `{status, value}` or
    /// `{status, reason}`.
    type Settled;
    #[wasm_bindgen(method, getter)]
    fn value(this: &Settled) -> JsValue;
}

/// The estimate's start: the address limit and the JSON body (checked as
/// [`crate::http::read_json_body`] does) in one wait — one promise of both,
/// one wake-up. 429 when over the limit, else the body's error if any.
pub async fn check_ip_reading_json_body(
    env: &Env,
    req: &Incoming,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let limiter = limit_promise(bindings(env).ip_limiter(), &ip_key(req));
    let body = crate::http::check_json_request(req, limit)
        .and_then(|()| crate::http::body_promise(req, limit));
    // allSettled never rejects: each outcome is {status, value | reason}.
    let all = js_sys::Array::new();
    if let Some(l) = &limiter {
        all.push(l);
    }
    if let Ok(b) = &body {
        all.push(b);
    }
    let settled: js_sys::Array = JsFuture::from(js_sys::Promise::all_settled(&all))
        .await
        .map_or_else(|_| js_sys::Array::new(), JsCast::unchecked_into);
    // Typed getters throw on a non-object: look only at objects.
    let outcome = |i| {
        let o = settled.get(i);
        o.is_object().then(|| o.unchecked_into::<Settled>())
    };
    if limiter.is_some() && !outcome(0).is_none_or(|o| passes(&o.value())) {
        return Err(ApiError::rate_limited("client address", PERIOD_SECS));
    }
    body.map(drop)?;
    let buffer = outcome(u32::from(limiter.is_some())).map_or(JsValue::UNDEFINED, |o| o.value());
    crate::http::body_bytes(&buffer, limit)
}

/// 429 if the booking's transitions are over their limit.
pub async fn check_booking(env: &Env, booking_id: &str) -> Result<(), ApiError> {
    let key = ["booking:", booking_id].concat();
    if allowed(bindings(env).booking_limiter(), &key).await {
        Ok(())
    } else {
        Err(ApiError::rate_limited("booking", PERIOD_SECS))
    }
}

/// 429 if the verified rider ([`crate::identity::rider`]; anonymous
/// riders have only their address's limit) is over its limit.
pub async fn check_user(env: &Env, user_id: Option<&str>) -> Result<(), ApiError> {
    let Some(user) = user_id else {
        return Ok(());
    };
    let key = format!("user:{:016x}", DriverId::from_external(user).0);
    if allowed(bindings(env).user_limiter(), &key).await {
        Ok(())
    } else {
        Err(ApiError::rate_limited("user", PERIOD_SECS))
    }
}
