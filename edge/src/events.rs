//! The loop back to the origin: edge events through a Cloudflare Queue.
//!
//! A queue message holds one event (a JSON object) or several (a JSON
//! array of them).
//!
//! Producers: every estimate adds a `quote` event to its isolate's batch,
//! sent after the response (`waitUntil`) as **one message**, a JSON array,
//! once it holds [`BATCH`] events or its first event is [`LINGER`] old: a
//! price check never waits for the queue, and the queue stores, delivers
//! (and bills) one message per hundred quotes. One call per quote halved
//! the estimate's throughput in workerd; one message per quote in a
//! batched call still made the queue and its consumer handle each quote.
//! An isolate evicted while a batch lingers loses at most that second of
//! price checks: demand signals, not money. The ledger object sends booking
//! events from its outbox ([`crate::ledger`]), one message each, never
//! lost.
//!
//! The consumer ([`consume`]) posts its messages' events to the origin's
//! `POST /v1/edge-events` with the producer token (`ORIGIN_TOKEN` secret),
//! at most [`MAX_EDGE_EVENTS`] per post ([`shared::events::posts`]; a
//! message is never split). The messages of a post the origin does not take
//! (down, 5xx, a refused token) are retried after `EVENTS_RETRY_SECONDS`; a
//! message that is not an event or an array of them is retried without
//! being posted. After the consumer's `max_retries` (wrangler.toml) a
//! message goes to the dead-letter queue `equilibrium-events-dlq`.
//! Delivery is at least once; the origin counts each event id once. With
//! `ORIGIN_URL` unset, messages are acknowledged and dropped with a log
//! line (a worker deployed without an origin).

use serde_json::value::RawValue;
use shared::api::{EdgeEvent, EdgeEventKind, MAX_EDGE_EVENTS};
use shared::events::rider_key;
use shared::quote::QuoteClaims;
use std::cell::RefCell;

use worker::{
    event, Context, Env, Fetch, Headers, Message, MessageBatch, MessageExt, Method, Request,
    RequestInit,
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

/// Most quote events in one queue message (about 35 KB of JSON; a message
/// may hold 128 KB).
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

/// `[a,b,...]` of JSON texts.
fn json_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
    out
}

/// Sends a batch of quote events as one message.
async fn send_batch(env: Env, batch: Vec<String>) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    let sent = match env.queue("EVENTS") {
        Ok(queue) => queue
            .send(json_array(batch.iter().map(String::as_str)))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("no EVENTS queue binding: {e}")),
    };
    if let Err(e) = sent {
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
    let len = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.push(body);
        p.len()
    });
    if len >= BATCH {
        ctx.wait_until(send_batch(env.clone(), take_pending()));
    } else if len == 1 {
        // The first of a batch: flush whatever has gathered after LINGER.
        let env = env.clone();
        ctx.wait_until(async move {
            worker::Delay::from(LINGER).await;
            send_batch(env, take_pending()).await;
        });
    }
}

/// Why a batch was not delivered.
fn post_failed(what: String) -> worker::Error {
    worker::Error::RustError(what)
}

async fn post_batch(settings: &Settings, token: &str, body: String) -> worker::Result<u16> {
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

/// A message's events: one event (an object) or an array of them; `None`
/// for anything else.
fn events_of(body: &str) -> Option<Vec<&RawValue>> {
    match body.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str(body).ok(),
        Some(b'{') => serde_json::from_str(body).ok().map(|one| vec![one]),
        _ => None,
    }
}

/// The queue consumer: the messages' events go to the origin in posts of at
/// most [`MAX_EDGE_EVENTS`]; each post's messages are acknowledged on a
/// 2xx and retried otherwise.
#[event(queue)]
pub async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let settings = Settings::cached(&env).map_err(|e| post_failed(e.message))?;
    let messages = batch.messages()?;
    if settings.origin_url.is_empty() {
        worker::console_warn!(
            "events: ORIGIN_URL is not set; {} messages acknowledged and dropped",
            messages.len()
        );
        batch.ack_all();
        return Ok(());
    }
    let token = env
        .secret("ORIGIN_TOKEN")
        .map(|s| s.to_string())
        .unwrap_or_default();
    let retry = worker::QueueRetryOptionsBuilder::new()
        .with_delay_seconds(settings.events_retry_seconds)
        .build();
    let mut readable: Vec<(&Message<String>, Vec<&RawValue>)> = Vec::with_capacity(messages.len());
    for m in &messages {
        match events_of(m.body()) {
            Some(events) => readable.push((m, events)),
            None => {
                worker::console_error!(
                    "events: message {} is not an event or an array of events; retried, then dead-lettered",
                    m.id()
                );
                m.retry_with_options(&retry);
            }
        }
    }
    let counts: Vec<usize> = readable.iter().map(|(_, e)| e.len()).collect();
    for post in shared::events::posts(&counts, MAX_EDGE_EVENTS) {
        let group = &readable[post];
        let body = json_array(group.iter().flat_map(|(_, e)| e.iter().map(|r| r.get())));
        let events: usize = group.iter().map(|(_, e)| e.len()).sum();
        let outcome = post_batch(&settings, &token, body).await;
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                group.iter().for_each(|(m, _)| m.ack());
                continue;
            }
            Ok(status) => worker::console_warn!(
                "events: the origin answered {status} to {events} events; retrying in {} s",
                settings.events_retry_seconds
            ),
            Err(e) => worker::console_warn!(
                "events: the origin is unreachable ({e}); {events} events retry in {} s",
                settings.events_retry_seconds
            ),
        }
        group.iter().for_each(|(m, _)| m.retry_with_options(&retry));
    }
    Ok(())
}
