//! The loop back to the origin: edge events through a Cloudflare Queue.
//!
//! A queue message holds one event (a JSON object) or several (a JSON
//! array of them).
//!
//! Producers: every estimate adds a `quote` event to its isolate's batch,
//! sent after the response (`waitUntil`) as **one message**, a JSON array,
//! once it is full ([`MESSAGE`]: 64 KB, 250–280 quote events) or its
//! first event is [`LINGER`] old ([`shared::events::Batcher`]: an older
//! batch's timer does not send a newer batch half full): a price check
//! never waits for the queue, and the queue stores, delivers and bills one
//! message per ~250 quotes (Queues bill an operation per 64 KB written,
//! read or deleted, so a full 64 KB message costs what one of 100 events
//! did). One call per quote halved the estimate's throughput in
//! workerd; one message per quote in a batched call still made the queue
//! and its consumer handle each quote.
//! An isolate evicted while a batch lingers loses at most that second of
//! price checks: demand signals, not money. The ledger object sends booking
//! events from its outbox ([`crate::ledger`]), one message each, never
//! lost.
//!
//! The consumer ([`consume`]) posts its messages' events to the origin's
//! `POST /v1/edge-events` with the producer token (`ORIGIN_TOKEN` secret),
//! at most [`MAX_EDGE_EVENTS`] per post ([`shared::events::posts`]; a
//! message is never split). The messages of a post the origin does not take
//! (down, 5xx, a refused token) are retried after `EVENTS_RETRY_SECONDS`;
//! once the origin is unreachable, the batch's remaining posts are retried
//! without being tried. Events the origin refuses as invalid are logged at
//! error level and not retried. Messages are read one by one (text, or an
//! object sent by hand): one that is not an event or an array of them is
//! logged and retried without being posted, an empty array acknowledged.
//! After the consumer's `max_retries` (wrangler.toml) a message goes to the
//! dead-letter queue `equilibrium-events-dlq`.
//! Delivery is at least once; the origin counts each event id once. With
//! `ORIGIN_URL` unset, messages are acknowledged and dropped with a log
//! line (a worker deployed without an origin).

use serde_json::value::RawValue;
use shared::api::{EdgeEvent, EdgeEventsReport, MAX_EDGE_EVENTS};
use shared::events::{BatchLimits, Batcher, Next};
use std::cell::RefCell;

use wasm_bindgen::JsValue;
use worker::{
    event, Context, Env, Fetch, Headers, MessageBatch, MessageBuilder, MessageExt, Method,
    QueueContentType, RawMessage, Request, RequestInit, Response,
};

use crate::config::Settings;

/// A queue message of quote events: at most 64 KB of JSON (the queue bills
/// by 64 KB; a message may hold 128 KB): 250–280 quote events of 230–257
/// bytes (fewer with experiment arms), and never more events than one
/// post to the origin takes.
pub const MESSAGE: BatchLimits = BatchLimits {
    events: MAX_EDGE_EVENTS,
    bytes: 64_000,
};

/// How long an isolate's first pending event waits for company.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(1_000);

thread_local! {
    /// This isolate's gathering batch of quote events (JSON).
    static PENDING: RefCell<Batcher<String>> = RefCell::new(Batcher::default());
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
            .send(
                MessageBuilder::new(json_array(batch.iter().map(String::as_str)))
                    .content_type(QueueContentType::Text)
                    .build(),
            )
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("no EVENTS queue binding: {e}")),
    };
    if let Err(e) = sent {
        worker::console_warn!("events: {n} quote events not queued: {e}");
    }
}

/// Adds an event's JSON to `batcher`, which closes at `limits`; says what
/// is to be done with the batch ([`send_within`] does it). An event that
/// does not encode is not added.
pub fn add(batcher: &mut Batcher<String>, event: &EdgeEvent, limits: BatchLimits) -> Next<String> {
    match serde_json::to_string(event) {
        Ok(body) => {
            let size = body.len();
            batcher.push(body, size, limits)
        }
        Err(_) => Next {
            send: Vec::new(),
            start_timer: None,
        },
    }
}

/// Adds an event to the isolate's batch; the batch goes to the queue after
/// the response (`waitUntil`), when full ([`MESSAGE`]) or after [`LINGER`].
/// A missing binding or a failed send is logged: a price check is demand,
/// not money.
pub fn send_later(env: &Env, ctx: &Context, event: &EdgeEvent) {
    send_within(env, ctx, event, MESSAGE);
}

/// [`send_later`] with messages closing at `limits` (bench builds compare
/// message sizes with it).
pub fn send_within(env: &Env, ctx: &Context, event: &EdgeEvent, limits: BatchLimits) {
    let next = PENDING.with(|p| add(&mut p.borrow_mut(), event, limits));
    for batch in next.send {
        ctx.wait_until(send_batch(env.clone(), batch));
    }
    if let Some(batch) = next.start_timer {
        let env = env.clone();
        ctx.wait_until(async move {
            worker::Delay::from(LINGER).await;
            let events = PENDING.with(|p| p.borrow_mut().timer_fired(batch));
            send_batch(env, events).await;
        });
    }
}

/// Why a batch was not delivered.
fn post_failed(what: String) -> worker::Error {
    worker::Error::RustError(what)
}

async fn post_batch(settings: &Settings, token: &str, body: String) -> worker::Result<Response> {
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
    Fetch::Request(req).send().await
}

/// A message's body as text: a string as sent by this worker's producers,
/// or the JSON of an object (a message sent by hand with the JSON content
/// type, e.g. replayed from the dead-letter queue).
fn text_of(body: &JsValue) -> Option<String> {
    body.as_string()
        .or_else(|| js_sys::JSON::stringify(body).ok()?.as_string())
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

/// What became of a post.
enum Delivery {
    /// The origin took it (2xx); this many events it refused as invalid.
    Taken { rejected: usize },
    /// The origin answered with another status: retry the post's messages.
    Refused(u16),
    /// The origin could not be reached: retry this post and the batch's rest.
    Unreachable(String),
}

async fn deliver(settings: &Settings, token: &str, body: String) -> Delivery {
    let mut resp = match post_batch(settings, token, body).await {
        Ok(r) => r,
        Err(e) => return Delivery::Unreachable(e.to_string()),
    };
    let status = resp.status_code();
    if !(200..300).contains(&status) {
        return Delivery::Refused(status);
    }
    let report: Option<EdgeEventsReport> = resp.json().await.ok();
    Delivery::Taken {
        rejected: report.map_or(0, |r| r.rejected),
    }
}

/// The queue consumer: the messages' events go to the origin in posts of at
/// most [`MAX_EDGE_EVENTS`]; each post's messages are acknowledged when
/// the origin takes it and retried otherwise. Messages are read one by one,
/// so one odd message never holds back the others.
#[event(queue)]
pub async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let settings = Settings::cached(&env).map_err(|e| post_failed(e.message))?;
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    if settings.origin_url.is_empty() {
        worker::console_warn!(
            "events: ORIGIN_URL is not set; {} messages acknowledged and dropped",
            messages.len()
        );
        batch.ack_all();
        return Ok(());
    }
    let retry = worker::QueueRetryOptionsBuilder::new()
        .with_delay_seconds(settings.events_retry_seconds)
        .build();
    if let Some(host) = shared::api::admin::insecure_host(&settings.origin_url) {
        if !settings.allow_insecure_http {
            // The token would cross the network in clear: nothing is sent;
            // the events wait (retried, then dead-lettered) for a fix.
            worker::console_error!(
                "events: ORIGIN_URL is plain http to {host}, which would send ORIGIN_TOKEN in clear; not sent (use https://, or set ALLOW_INSECURE_HTTP=true); {} messages retry",
                messages.len()
            );
            for m in &messages {
                m.retry_with_options(&retry);
            }
            return Ok(());
        }
    }
    let token = env
        .secret("ORIGIN_TOKEN")
        .map(|s| s.to_string())
        .unwrap_or_default();
    let texts: Vec<Option<String>> = messages.iter().map(|m| text_of(&m.body())).collect();
    let mut readable: Vec<(&RawMessage, Vec<&RawValue>)> = Vec::with_capacity(messages.len());
    for (m, text) in messages.iter().zip(&texts) {
        match text.as_deref().and_then(events_of) {
            Some(events) if events.is_empty() => m.ack(),
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
    let mut unreachable: Option<String> = None;
    for post in shared::events::posts(&counts, MAX_EDGE_EVENTS) {
        let group = &readable[post];
        let events: usize = group.iter().map(|(_, e)| e.len()).sum();
        // Once the origin is unreachable the rest of the batch waits too,
        // rather than each post waiting for its own failure.
        let outcome = match &unreachable {
            Some(e) => Delivery::Unreachable(e.clone()),
            None => {
                let body = json_array(group.iter().flat_map(|(_, e)| e.iter().map(|r| r.get())));
                deliver(&settings, &token, body).await
            }
        };
        let retry_in = settings.events_retry_seconds;
        match outcome {
            Delivery::Taken { rejected } => {
                if rejected > 0 {
                    worker::console_error!(
                        "events: the origin refused {rejected} of {events} events as invalid (not retried; its answer lists the first few)"
                    );
                }
                group.iter().for_each(|(m, _)| m.ack());
                continue;
            }
            Delivery::Refused(status) => worker::console_warn!(
                "events: the origin answered {status} to {events} events; retrying in {retry_in} s"
            ),
            Delivery::Unreachable(e) => {
                worker::console_warn!(
                    "events: the origin is unreachable ({e}); {events} events retry in {retry_in} s"
                );
                unreachable = Some(e);
            }
        }
        group.iter().for_each(|(m, _)| m.retry_with_options(&retry));
    }
    Ok(())
}
