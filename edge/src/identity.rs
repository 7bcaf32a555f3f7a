//! Who is asking: a rider's bearer token, verified by the core's rule
//! ([`shared::identity`]) against the admin's `identity` key (issuer,
//! audience, the provider's JWKS) and the `RIDER_TOKEN_SECRET` secret
//! (HS256).
//!
//! * No `identity` key: riders are anonymous and an `Authorization` header
//!   is not read (today's behaviour; the README says what that allows).
//! * A token that fails: `401 invalid_token`, with the reason.
//! * The key is set but invalid or unreadable, with no good value known to
//!   this isolate: a request with a token is `503 config_unavailable`
//!   (never "anonymous": that would let a refused token through as a
//!   client). Requests without a token are served as anonymous.
//!
//! A verification is cached in the isolate ([`Recent`], at most
//! [`SEEN_CAPACITY`] tokens) until the token expires, and dropped when the
//! settings change: riders reuse a token for many requests, and a cached
//! check costs a hash lookup instead of a signature.

use std::cell::RefCell;
use std::rc::Rc;

use shared::api::admin::{parse_identity, IDENTITY_KEY};
use shared::identity::{bearer, TokenRefusal, VerifiedRider, Verifier};
use shared::recent::Recent;
use shared::time::Timestamp;
use worker::Env;

use crate::config::{self, Settings};
use crate::error::ApiError;
use crate::http::Incoming;

/// Most verified tokens one isolate remembers.
pub const SEEN_CAPACITY: usize = 4_096;

thread_local! {
    /// The settings' text and the verifier built from it.
    static VERIFIER: RefCell<Option<(String, Rc<Verifier>)>> = const { RefCell::new(None) };
    /// token → its rider, for the current verifier.
    static SEEN: RefCell<Recent<String, VerifiedRider>> = RefCell::new(Recent::new(SEEN_CAPACITY));
}

/// 401 for a token that failed.
fn refused(r: &TokenRefusal) -> ApiError {
    ApiError::new(
        401,
        "invalid_token",
        format!("rider token refused ({}): {r}", r.code()),
    )
}

/// The verifier of the settings `text` (built once per text; a new text
/// forgets the tokens verified under the old one).
fn verifier_of(env: &Env, text: &str) -> Result<Rc<Verifier>, String> {
    if let Some(v) = VERIFIER.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(t, _)| t == text)
            .map(|(_, v)| Rc::clone(v))
    }) {
        return Ok(v);
    }
    let config = parse_identity(text)?;
    let secret = env.secret("RIDER_TOKEN_SECRET").ok().map(|s| s.to_string());
    let v = Rc::new(Verifier::new(config, secret.as_deref().map(str::as_bytes))?);
    if !v.accepts_any() {
        return Err("no JWKS key and no RIDER_TOKEN_SECRET: no token could verify".into());
    }
    VERIFIER.with(|c| *c.borrow_mut() = Some((text.to_owned(), Rc::clone(&v))));
    SEEN.with(|s| s.borrow_mut().clear());
    Ok(v)
}

/// The identity settings' verifier: `None` when riders are anonymous.
async fn verifier(
    env: &Env,
    settings: &Settings,
    now: u64,
) -> Result<Option<Rc<Verifier>>, ApiError> {
    let parse = |text: &str| verifier_of(env, text);
    config::safety(env, IDENTITY_KEY, now, settings.config_cache, parse)
        .await
        .map_err(|why| {
            ApiError::config_unavailable(&format!("rider identity cannot be verified ({why})"))
        })
}

/// The request's bearer token with the verifier to check it: `None` for
/// an anonymous rider (no token, or no identity configured).
async fn presented(
    env: &Env,
    req: &Incoming,
    settings: &Settings,
    now: u64,
) -> Result<Option<(String, Rc<Verifier>)>, ApiError> {
    let header = req.headers().get("authorization").ok().flatten();
    let Some(token) = bearer(header.as_deref()).map_err(|r| refused(&r))? else {
        return Ok(None);
    };
    let token = token.to_owned();
    Ok(verifier(env, settings, now).await?.map(|v| (token, v)))
}

/// The request's token verified without the isolate's cache (what a
/// rider's first request with a new token costs; bench builds time it).
#[cfg(feature = "probes")]
pub async fn verify_uncached(
    env: &Env,
    req: &Incoming,
    settings: &Settings,
    now: u64,
) -> Result<Option<String>, ApiError> {
    let Some((token, v)) = presented(env, req, settings, now).await? else {
        return Ok(None);
    };
    v.verify(&token, Timestamp(now))
        .map(|r| Some(r.id))
        .map_err(|r| refused(&r))
}

/// The verified rider of a request: `None` for an anonymous one (no token,
/// or no identity configured), or the refusal.
pub async fn rider(
    env: &Env,
    req: &Incoming,
    settings: &Settings,
    now: u64,
) -> Result<Option<String>, ApiError> {
    let Some((token, verifier)) = presented(env, req, settings, now).await? else {
        return Ok(None);
    };
    let now = Timestamp(now);
    let cached = SEEN.with(|s| {
        s.borrow_mut()
            .get(&token)
            .filter(|r| now < r.until)
            .map(|r| r.id.clone())
    });
    if let Some(id) = cached {
        return Ok(Some(id));
    }
    let rider = verifier.verify(&token, now).map_err(|r| refused(&r))?;
    let id = rider.id.clone();
    SEEN.with(|s| s.borrow_mut().insert(token, rider));
    Ok(Some(id))
}
