//! Rate limiting per client IP and per user, with the Workers rate-limit
//! bindings `IP_LIMITER` and `USER_LIMITER` (limits in wrangler.toml).
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

async fn allowed(env: &Env, binding: &str, key: String) -> bool {
    match env.rate_limiter(binding) {
        Ok(limiter) => limiter.limit(key).await.map(|o| o.success).unwrap_or(true),
        Err(_) => true,
    }
}

/// Refuses the request with 429 if its IP or user is over the limit.
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
    if allowed(env, "IP_LIMITER", key).await {
        Ok(())
    } else {
        Err(ApiError::rate_limited("client address", PERIOD_SECS))
    }
}

/// The address limiter's promise for `key` (of `{success}`), called through
/// the binding directly; `None` without a binding. The estimate waits for
/// it together with its body. Typed accessors, not `Reflect` with property
/// names: no JS string is made per request for a name.
fn ip_limit_promise(env: &Env, key: &str) -> Option<js_sys::Promise> {
    let bindings: &Bindings = env.unchecked_ref();
    let binding = bindings.ip_limiter();
    if binding.is_undefined() || binding.is_null() {
        return None;
    }
    let options: LimitOptions = js_sys::Object::new().unchecked_into();
    options.set_key(key);
    binding.unchecked_into::<Limiter>().limit(&options).ok()
}

/// Whether a settled limiter promise lets the request through: only an
/// answer of `success: false` refuses it (a failure lets it through).
fn lets_through(settled: Option<&Settled>) -> bool {
    let Some(settled) = settled else {
        return true;
    };
    let outcome = settled.value();
    !outcome.is_object() || outcome.unchecked_into::<Outcome>().success().as_bool() != Some(false)
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// The worker's bindings (`env`).
    type Bindings;
    #[wasm_bindgen(method, getter = IP_LIMITER)]
    fn ip_limiter(this: &Bindings) -> JsValue;

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
    let limiter = ip_limit_promise(env, &ip_key(req));
    let body =
        crate::http::check_json_request(req, limit).and_then(|()| crate::http::body_promise(req));
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
    if limiter.is_some() && !lets_through(outcome(0).as_ref()) {
        return Err(ApiError::rate_limited("client address", PERIOD_SECS));
    }
    body.map(drop)?;
    let buffer = outcome(u32::from(limiter.is_some())).map_or(JsValue::UNDEFINED, |o| o.value());
    crate::http::body_bytes(&buffer, limit)
}

/// 429 if the user (when the request names one) is over its limit.
pub async fn check_user(env: &Env, user_id: Option<&str>) -> Result<(), ApiError> {
    let Some(user) = user_id else {
        return Ok(());
    };
    let key = format!("user:{:016x}", DriverId::from_external(user).0);
    if allowed(env, "USER_LIMITER", key).await {
        Ok(())
    } else {
        Err(ApiError::rate_limited("user", PERIOD_SECS))
    }
}
