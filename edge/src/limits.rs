//! Rate limiting per client IP and per user, with the Workers rate-limit
//! bindings `IP_LIMITER` and `USER_LIMITER` (limits in wrangler.toml).
//! The user key is a hash of the user id: raw rider ids are never kept.
//! A missing binding or a limiter failure lets the request through: the
//! limiter protects pricing, it must not take it down.

use shared::market::DriverId;
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

/// The IP limiter's key for a request (taken before its body is read, so
/// the check can run while the body arrives).
pub fn ip_key(req: &Request) -> String {
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
