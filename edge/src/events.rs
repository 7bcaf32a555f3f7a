//! The loop back to the origin: edge events through a Cloudflare Queue.
//!
//! Producers: every estimate adds a `quote` event to its isolate's batch,
//! sent after the response (`waitUntil`) once it holds [`BATCH`] events or
//! its first event is [`LINGER`] old: a price check never waits for the
//! queue, and the queue sees one call per batch instead of one per quote
//! (a call per quote halved the estimate's throughput in workerd). An
//! isolate evicted while a batch lingers loses at most that second of price
//! checks: demand signals, not money. The ledger object sends booking
//! events from its outbox ([`crate::ledger`]), never lost.
//!
//! The consumer ([`consume`]) posts each batch to the origin's
//! `POST /v1/edge-events` with the producer token (`ORIGIN_TOKEN` secret).
//! A batch the origin does not take (down, 5xx, a refused token) is retried
//! after `EVENTS_RETRY_SECONDS`; after the consumer's `max_retries`
//! (wrangler.toml) it goes to the dead-letter queue
//! `equilibrium-events-dlq`. Delivery is at least once; the origin counts
//! each event id once. With `ORIGIN_URL` unset, batches are acknowledged
//! and dropped with a log line (a worker deployed without an origin).

use shared::api::{EdgeEvent, EdgeEventKind};
use shared::events::rider_key;
use shared::quote::QuoteClaims;
use std::cell::RefCell;

use worker::{
    event, Context, Env, Fetch, Headers, MessageBatch, Method, Queue, Request, RequestInit,
};

use crate::config::Settings;

/// The quote event of an estimate.
pub fn quote_event(
    claims: &QuoteClaims,
    pickup: shared::geo::LatLng,
    user_id: Option<&str>,
) -> EdgeEvent {
    EdgeEvent {
        id: claims.quote_id.to_string(),
        kind: EdgeEventKind::Quote,
        region: claims.region.to_string(),
        latitude: pickup.lat(),
        longitude: pickup.lng(),
        vehicle_type: claims.class.as_str().to_owned(),
        timestamp: claims.issued_at.0,
        rider: user_id.map(rider_key),
        booking_id: None,
        quote_id: Some(claims.quote_id.to_string()),
        multiplier: Some(claims.surge.as_f64()),
        fare_minor: None,
        currency: None,
        wait_ms: None,
        experiment: claims.arm.as_ref().map(Into::into),
    }
}

/// Most events per queue call (the queue's `sendBatch` limit is 100).
pub const BATCH: usize = 100;

/// How long an isolate's first pending event waits for company.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(1_000);

thread_local! {
    /// This isolate's pending quote events (JSON).
    static PENDING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn take_pending() -> Vec<String> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

async fn send_batch(queue: Queue, batch: Vec<String>) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    if let Err(e) = queue.send_batch(batch).await {
        worker::console_warn!("events: {n} quote events not queued: {e}");
    }
}

/// Adds an event to the isolate's batch; the batch goes to the queue after
/// the response (`waitUntil`), when full or after [`LINGER`]. A missing
/// binding or a failed send is logged: a price check is demand, not money.
pub fn send_later(env: &Env, ctx: &Context, event: &EdgeEvent) {
    let Ok(body) = serde_json::to_string(event) else {
        return;
    };
    let queue = match env.queue("EVENTS") {
        Ok(q) => q,
        Err(e) => {
            worker::console_warn!("events: no EVENTS queue binding: {e}");
            return;
        }
    };
    let len = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.push(body);
        p.len()
    });
    if len >= BATCH {
        ctx.wait_until(send_batch(queue, take_pending()));
    } else if len == 1 {
        // The first of a batch: flush whatever has gathered after LINGER.
        ctx.wait_until(async move {
            worker::Delay::from(LINGER).await;
            send_batch(queue, take_pending()).await;
        });
    }
}

/// Why a batch was not delivered.
fn post_failed(what: String) -> worker::Error {
    worker::Error::RustError(what)
}

async fn post_batch(settings: &Settings, token: &str, bodies: &[String]) -> worker::Result<u16> {
    let mut body = String::with_capacity(bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(b);
    }
    body.push(']');
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("authorization", &["Bearer ", token].concat())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let req = Request::new_with_init(
        &[settings.origin_url.as_str(), "/v1/edge-events"].concat(),
        &init,
    )?;
    let resp = Fetch::Request(req).send().await?;
    Ok(resp.status_code())
}

/// The queue consumer: one POST per batch; all acknowledged on a 2xx,
/// all retried otherwise.
#[event(queue)]
pub async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let settings = Settings::cached(&env).map_err(|e| post_failed(e.message))?;
    let messages = batch.messages()?;
    if settings.origin_url.is_empty() {
        worker::console_warn!(
            "events: ORIGIN_URL is not set; {} events acknowledged and dropped",
            messages.len()
        );
        batch.ack_all();
        return Ok(());
    }
    let token = env
        .secret("ORIGIN_TOKEN")
        .map(|s| s.to_string())
        .unwrap_or_default();
    let bodies: Vec<String> = messages.iter().map(|m| m.body().clone()).collect();
    let retry = worker::QueueRetryOptionsBuilder::new()
        .with_delay_seconds(settings.events_retry_seconds)
        .build();
    match post_batch(&settings, &token, &bodies).await {
        Ok(status) if (200..300).contains(&status) => batch.ack_all(),
        Ok(status) => {
            worker::console_warn!(
                "events: the origin answered {status} to {} events; retrying in {} s",
                bodies.len(),
                settings.events_retry_seconds
            );
            batch.retry_all_with_options(&retry);
        }
        Err(e) => {
            worker::console_warn!(
                "events: the origin is unreachable ({e}); {} events retry in {} s",
                bodies.len(),
                settings.events_retry_seconds
            );
            batch.retry_all_with_options(&retry);
        }
    }
    Ok(())
}
