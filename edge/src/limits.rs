//! Rate limiting per client IP and per user, with the Workers rate-limit
//! bindings `IP_LIMITER` and `USER_LIMITER` (limits in wrangler.toml).
//! The user key is a hash of the user id: raw rider ids are never kept.
//! A missing binding or a limiter failure lets the request through: the
//! limiter protects pricing, it must not take it down.

use js_sys::futures::JsFuture;
use shared::market::DriverId;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, Request};

use crate::error::ApiError;
use crate::http::client_ip;

/// The window of the limits in wrangler.toml, for `Retry-After`.
const PERIOD_SECS: u32 = 10;

async fn allowed(env: &Env, binding: &str, key: String) -> bool {
    match env.rate_limiter(binding) {
        Ok(limiter) => limiter.limit(key).await.map(|o| o.success).unwrap_or(true),
        Err(_) => true,
    }
}

/// Refuses the request with 429 if its IP or user is over the limit.
pub async fn check(env: &Env, req: &Request, user_id: Option<&str>) -> Result<(), ApiError> {
    check_ip(env, ip_key(req)).await?;
    check_user(env, user_id).await
}

/// The IP limiter's key for a request.
fn ip_key(req: &Request) -> String {
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
/// it together with its body.
fn ip_limit_promise(env: &Env, key: &str) -> Option<js_sys::Promise> {
    let binding = js_sys::Reflect::get(env, &JsValue::from_str("IP_LIMITER")).ok()?;
    if binding.is_undefined() {
        return None;
    }
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &JsValue::from_str("key"), &JsValue::from_str(key)).ok()?;
    binding.unchecked_into::<Limiter>().limit(&options).ok()
}

/// Whether a settled limiter promise lets the request through: only an
/// answer of `success: false` refuses it (a failure lets it through).
fn lets_through(settled: &JsValue) -> bool {
    js_sys::Reflect::get(settled, &JsValue::from_str("value"))
        .and_then(|outcome| js_sys::Reflect::get(&outcome, &JsValue::from_str("success")))
        .map_or(true, |s| s.as_bool() != Some(false))
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// A rate-limit binding.
    type Limiter;
    #[wasm_bindgen(method, catch)]
    fn limit(this: &Limiter, options: &js_sys::Object) -> Result<js_sys::Promise, JsValue>;
}

/// The estimate's start: the address limit and the JSON body (checked as
/// [`crate::http::read_json_body`] does) in one wait — one promise of both,
/// one wake-up. 429 when over the limit, else the body's error if any.
pub async fn check_ip_reading_json_body(
    env: &Env,
    req: &Request,
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
    let settled = JsFuture::from(js_sys::Promise::all_settled(&all))
        .await
        .unwrap_or(JsValue::UNDEFINED);
    let outcome = |i| js_sys::Reflect::get_u32(&settled, i).unwrap_or(JsValue::UNDEFINED);
    if limiter.is_some() && !lets_through(&outcome(0)) {
        return Err(ApiError::rate_limited("client address", PERIOD_SECS));
    }
    body.map(drop)?;
    let body_at = u32::from(limiter.is_some());
    let buffer = js_sys::Reflect::get(&outcome(body_at), &JsValue::from_str("value"))
        .unwrap_or(JsValue::UNDEFINED);
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
