//! Bookings over HTTP: `POST /api/v1/quotes/{id}/confirm`,
//! `GET /api/v1/bookings/{id}`, and `POST /api/v1/bookings/{id}/{action}`
//! (`start`, `complete`, `cancel`, `fail`).
//!
//! This module parses, checks credentials and hands the call to the
//! booking's ledger object, whose answer (status and body) is returned as
//! is: the rules are the core's ([`shared::booking`]), the storage the
//! ledger's ([`crate::ledger`]).
//!
//! Credentials (`Authorization: Bearer …`): the rider's `booking_token`
//! (returned by confirm) reads and cancels that booking; `DISPATCH_TOKEN`
//! (a secret) reads and does every transition. None → 401
//! `missing_credentials`; a token that is neither → 401
//! `invalid_credentials`; the rider on another booking or on a dispatch
//! action → 403 `forbidden`.

use serde::Serialize;
use shared::api::{CompleteRequest, ConfirmRequest, ConfirmResponse, ReasonRequest};
use shared::booking::{
    booking_id_for, fingerprint, valid_idempotency_key, Action, BookingClaims, Party,
    BOOKING_TOKEN_VALIDITY,
};
use shared::fare::MAX_TRIP_M;
use shared::quote::{Ident, QuoteError};
use shared::time::Timestamp;
use subtle::ConstantTimeEq;
use worker::{Env, Method, Request, RequestInit, Response};

use crate::config::{self, Settings};
use crate::error::{from_json_error, ApiError};
use crate::http::{read_json_body, Incoming, MAX_BODY_BYTES};
use crate::ledger::{shard_name, ActCall, Answer, Booking, ConfirmCall, GetCall, Keyed};

/// Longest `reason` accepted.
pub const MAX_REASON_CHARS: usize = 500;

/// Longest trip duration accepted on completion (a day).
const MAX_DURATION_MINUTES: f64 = 24.0 * 60.0;

fn quote_error(e: QuoteError) -> ApiError {
    match e {
        QuoteError::Malformed => {
            ApiError::bad_request("invalid_quote", "quote_token is not a quote")
        }
        QuoteError::UnknownKey | QuoteError::BadSignature => {
            ApiError::new(403, "quote_forged", "quote_token signature does not verify")
        }
        QuoteError::Expired(at) => {
            ApiError::new(410, "quote_expired", format!("quote expired at {at}"))
        }
    }
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(req: &Incoming) -> Result<Option<String>, ApiError> {
    match req.headers().get("idempotency-key").ok().flatten() {
        None => Ok(None),
        Some(k) if valid_idempotency_key(&k) => Ok(Some(k)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// A rider holding the token of this booking.
    Rider(Ident),
    /// The dispatch system.
    Dispatch,
}

fn caller(req: &Incoming, env: &Env, now: u64) -> Result<Caller, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .ok()
        .flatten()
        .unwrap_or_default();
    let token = shared::identity::bearer_token(&header).ok_or_else(|| {
        ApiError::new(
            401,
            "missing_credentials",
            "send Authorization: Bearer <booking_token or dispatch token>",
        )
    })?;
    if let Some(dispatch) = config::dispatch_token(env) {
        if bool::from(dispatch.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(Caller::Dispatch);
        }
    }
    match BookingClaims::verify(&*config::keyring(env)?, token, Timestamp(now)) {
        Ok(claims) => Ok(Caller::Rider(claims.booking_id)),
        Err(QuoteError::Expired(at)) => Err(ApiError::new(
            401,
            "credentials_expired",
            format!("the booking token expired at {at}"),
        )),
        Err(_) => Err(ApiError::new(
            401,
            "invalid_credentials",
            "the token is neither a valid booking token nor the dispatch token",
        )),
    }
}

/// The party a caller acts as on `booking_id`: 403 for a rider's token of
/// another booking.
fn party_on(caller: &Caller, booking_id: &str) -> Result<Party, ApiError> {
    match caller {
        Caller::Dispatch => Ok(Party::Dispatch),
        Caller::Rider(id) if id.as_str() == booking_id => Ok(Party::Rider),
        Caller::Rider(_) => Err(ApiError::new(
            403,
            "forbidden",
            "this booking token is for another booking",
        )),
    }
}

async fn call<T: Serialize>(
    env: &Env,
    id: &str,
    path: &str,
    body: &T,
) -> Result<Response, ApiError> {
    let unavailable = |_| ApiError::unavailable("the booking ledger");
    let ns = env.durable_object("LEDGER").map_err(unavailable)?;
    let stub = ns
        .id_from_name(&shard_name(id))
        .and_then(|id| id.get_stub())
        .map_err(unavailable)?;
    let text =
        serde_json::to_string(body).map_err(|_| ApiError::unavailable("the booking ledger"))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(text.into()));
    let req =
        Request::new_with_init(&["https://ledger", path].concat(), &init).map_err(unavailable)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
    if resp.status_code() != 200 {
        return Err(ApiError::unavailable("the booking ledger"));
    }
    let answer: Answer = resp.json().await.map_err(unavailable)?;
    let mut out = Response::ok(answer.body)
        .map_err(unavailable)?
        .with_status(answer.status);
    let h = out.headers_mut();
    h.set("content-type", "application/json")
        .map_err(unavailable)?;
    h.set("cache-control", "no-store").map_err(unavailable)?;
    Ok(out)
}

/// `POST /api/v1/quotes/{id}/confirm`: books the quote (once), answering
/// with the booking id and the rider's booking token.
pub async fn confirm(
    req: Incoming,
    env: &Env,
    settings: &Settings,
    id: &str,
    now: u64,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&req)?;
    let body = read_json_body(&req, MAX_BODY_BYTES).await?;
    let r: ConfirmRequest = serde_json::from_slice(&body).map_err(|e| from_json_error(&e))?;
    crate::limits::check(env, &req, None).await?;
    let keys = config::keyring(env)?;
    let claims = keys
        .verify(&r.quote_token, Timestamp(now))
        .map_err(quote_error)?;
    if claims.quote_id.as_str() != id {
        return Err(ApiError::bad_request(
            "quote_id_mismatch",
            "the quote_token belongs to another quote id",
        ));
    }
    let booking_id = booking_id_for(&claims.quote_id)
        .ok_or_else(|| ApiError::bad_request("invalid_quote", "quote id too long for a booking"))?;
    // The terms the quote was priced on, which it carries (format eq4).
    // A token from before that format (a deploy's last two minutes) has
    // them read now, in its own currency or not at all.
    let terms = match claims.terms {
        Some(t) => t,
        None => {
            let registry = crate::regions::registry(env, settings, now).await?;
            let region = registry.get(claims.region.as_str()).ok_or_else(|| {
                ApiError::config_unavailable(&format!(
                    "region {} of this quote is not in the registry",
                    claims.region
                ))
            })?;
            let terms = config::terms(env, settings, region, claims.class, now).await?;
            if terms.tariff.currency != claims.currency {
                return Err(ApiError::config_unavailable(&format!(
                    "the quote is in {}, the region's tariff now in {}",
                    claims.currency, terms.tariff.currency
                )));
            }
            terms
        }
    };
    let token = BookingClaims {
        booking_id: booking_id.clone(),
        issued_at: Timestamp(now),
        expires_at: Timestamp(now) + BOOKING_TOKEN_VALIDITY,
    }
    .sign(&keys);
    let response = ConfirmResponse {
        quote_id: id.to_owned(),
        status: "confirmed".into(),
        final_fare: claims.currency.to_decimal(claims.final_fare),
        currency: claims.currency.to_string(),
        surge_multiplier: claims.surge,
        confirmed_at: Timestamp(now).to_rfc3339(),
        booking_id: booking_id.to_string(),
        booking_token: token,
    };
    let c = ConfirmCall {
        booking: Booking::confirmed(
            booking_id.to_string(),
            &claims,
            &terms,
            shared::time::Timestamp(now),
        ),
        response: serde_json::to_value(&response)
            .map_err(|_| ApiError::unavailable("response encoding"))?,
        idempotency: key.map(|key| Keyed {
            key,
            fingerprint: fingerprint("confirm", id, Party::Rider, &body),
        }),
        now,
    };
    call(env, id, "/confirm", &c).await
}

/// `GET /api/v1/bookings/{id}`.
pub async fn get(req: &Incoming, env: &Env, id: &str, now: u64) -> Result<Response, ApiError> {
    crate::limits::check(env, req, None).await?;
    let who = caller(req, env, now)?;
    party_on(&who, id)?;
    known_shape(id)?;
    call(
        env,
        id,
        "/get",
        &GetCall {
            booking_id: id.to_owned(),
        },
    )
    .await
}

/// 404 for an id no booking can have.
fn known_shape(id: &str) -> Result<(), ApiError> {
    match Ident::new(id) {
        Ok(_) if id.starts_with("b_") => Ok(()),
        _ => Err(ApiError::new(
            404,
            "booking_not_found",
            format!("no booking {}", id.chars().take(70).collect::<String>()),
        )),
    }
}

fn reason_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    let r: ReasonRequest = serde_json::from_slice(body).map_err(|e| from_json_error(&e))?;
    match r.reason {
        Some(t) if t.chars().count() > MAX_REASON_CHARS => Err(ApiError::bad_request(
            "invalid_field",
            format!("reason is longer than {MAX_REASON_CHARS} characters"),
        )),
        other => Ok(other),
    }
}

fn driven_of(body: &[u8]) -> Result<(u32, u32), ApiError> {
    let r: CompleteRequest = serde_json::from_slice(body).map_err(|e| from_json_error(&e))?;
    let max_km = f64::from(MAX_TRIP_M) / 1_000.0;
    if !(r.distance_km.is_finite() && (0.0..=max_km).contains(&r.distance_km)) {
        return Err(ApiError::bad_request(
            "invalid_trip",
            format!("distance_km must be between 0 and {max_km}"),
        ));
    }
    if !(r.duration_minutes.is_finite()
        && (0.0..=MAX_DURATION_MINUTES).contains(&r.duration_minutes))
    {
        return Err(ApiError::bad_request(
            "invalid_trip",
            format!("duration_minutes must be between 0 and {MAX_DURATION_MINUTES}"),
        ));
    }
    Ok((
        (r.distance_km * 1_000.0).round() as u32,
        (r.duration_minutes * 60.0).round() as u32,
    ))
}

/// `POST /api/v1/bookings/{id}/{action}`.
pub async fn act(
    req: Incoming,
    env: &Env,
    id: &str,
    action: Action,
    now: u64,
) -> Result<Response, ApiError> {
    crate::limits::check(env, &req, None).await?;
    let who = caller(&req, env, now)?;
    let party = party_on(&who, id)?;
    known_shape(id)?;
    if !party.may(action) {
        return Err(ApiError::new(
            403,
            "forbidden",
            format!("the {party} may not {action} a booking"),
        ));
    }
    // Only transitions that pass authentication count against a booking's
    // budget: nobody without its credentials can spend it.
    crate::limits::check_booking(env, id).await?;
    let key = idempotency_key(&req)?;
    let body = read_json_body(&req, MAX_BODY_BYTES).await?;
    let (reason, driven) = match action {
        Action::Cancel | Action::Fail => (reason_of(&body)?, None),
        Action::Complete => (None, Some(driven_of(&body)?)),
        Action::Start => {
            serde_json::from_slice::<shared::api::StartRequest>(&body)
                .map_err(|e| from_json_error(&e))?;
            (None, None)
        }
    };
    let c = ActCall {
        booking_id: id.to_owned(),
        action,
        party,
        reason,
        driven,
        idempotency: key.map(|key| Keyed {
            key,
            fingerprint: fingerprint(action.as_str(), id, party, &body),
        }),
        now,
    };
    call(env, id, "/act", &c).await
}
