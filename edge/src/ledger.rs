//! The booking ledger Durable Object: one booking per quote, its
//! transitions, idempotent retries, and the events that tell the origin.
//!
//! Ledgers are sharded ([`shard_name`]) by the random part that a quote id
//! and its booking id share, so a booking lives in the object that
//! confirmed its quote. An id names the number of objects it was made for
//! ([`shared::booking::ledger_of`]): raising `LEDGERS` spreads new quotes
//! over more objects and moves no booking. Every call runs its reads and writes with no await
//! in between: the object's storage makes that one atomic transaction, and
//! no other call can interleave. So of two concurrent confirms of a quote
//! exactly one books it, of a cancel racing a start exactly one wins, and a
//! request repeated with its `Idempotency-Key` finds the first one's answer
//! (even while the first is still sending its event).
//!
//! The rules are the core's ([`shared::booking`]): this object stores.
//!
//! Events (confirmed, started, completed, cancelled, failed) are written to
//! an outbox table in the same transaction as the transition, then sent to
//! the `EVENTS` queue; what the queue does not take is retried by the
//! object's alarm. A transition acknowledged to a client therefore always
//! reaches the queue.

use serde::{Deserialize, Serialize};
use shared::api::{BookingResponse, BookingStep, EdgeEvent, EdgeEventKind, ExperimentArmWire};
use shared::booking::{
    ledger_of, replay, retention_cutoff, sweep_period, Action, ArmRecord, BookingRecord,
    BookingStatus, Party, Replay, Transition, IDEMPOTENCY_TTL,
};
use shared::fare::Trip;
use shared::geo::Cell;
use shared::time::Timestamp;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result, State,
};

use crate::error::ApiError;
use crate::http::{error_response, json};

/// Most idempotency keys remembered per booking (or per quote's confirm):
/// a booking's transitions and their retries need a handful; beyond this
/// the oldest answers are forgotten.
pub const MAX_KEYS_PER_SCOPE: i64 = 32;

/// How long after a failed queue send the outbox is retried.
const OUTBOX_RETRY_MS: i64 = 30_000;

/// Most outbox events sent per attempt.
const OUTBOX_BATCH: usize = 100;

/// The ledger object that owns a quote id or a booking id.
pub fn shard_name(id: &str) -> String {
    format!("ledger-{}", ledger_of(id))
}

/// A booking as the ledger stores it: the core's record
/// ([`shared::booking::BookingRecord`], which also applies transitions).
pub type Booking = BookingRecord;

/// The public view of a booking.
pub fn response(b: &Booking) -> BookingResponse {
    let cur = b.currency();
    let trip = Trip {
        distance_m: b.distance_m,
        duration_s: b.duration_s,
    };
    let minor_to_decimal = |minor| cur.to_decimal(minor);
    BookingResponse {
        booking_id: b.booking_id.clone(),
        quote_id: b.quote_id.clone(),
        status: b.status,
        region: b.region.clone(),
        vehicle_type: b.class,
        quoted_fare: minor_to_decimal(b.quoted_fare),
        final_fare: minor_to_decimal(b.final_fare),
        currency: b.currency.clone(),
        surge_multiplier: b.multiplier(),
        surge_source: b.source,
        cancellation_fee: b.cancellation_fee.map(minor_to_decimal),
        fare_adjustment: b.fare_adjustment.clone(),
        estimated_distance_km: trip.km(),
        estimated_duration_minutes: trip.minutes(),
        history: b
            .history
            .iter()
            .map(|s| BookingStep {
                status: s.status,
                at: Timestamp(s.at).to_rfc3339(),
                actor: s.actor,
                reason: s.reason.clone(),
            })
            .collect(),
        experiment: b.experiment.as_ref().map(arm_wire),
    }
}

/// The event of the status a booking just entered, at `at`.
pub fn event(b: &Booking, at: u64) -> EdgeEvent {
    let kind = match b.status {
        BookingStatus::Confirmed => EdgeEventKind::BookingConfirmed,
        BookingStatus::InProgress => EdgeEventKind::BookingStarted,
        BookingStatus::Completed => EdgeEventKind::BookingCompleted,
        BookingStatus::Cancelled => EdgeEventKind::BookingCancelled,
        BookingStatus::Failed => EdgeEventKind::BookingFailed,
    };
    let pickup = Cell::from_token(&b.cell).map(Cell::center).ok();
    let fare = match b.status {
        BookingStatus::Completed => Some(b.final_fare),
        BookingStatus::Cancelled => b.cancellation_fee,
        _ => None,
    };
    EdgeEvent {
        id: [b.booking_id.as_str(), ":", b.status.as_str()].concat(),
        kind,
        region: b.region.clone(),
        latitude: pickup.map_or(0.0, |p| p.lat()),
        longitude: pickup.map_or(0.0, |p| p.lng()),
        vehicle_type: b.class.as_str().to_owned(),
        timestamp: at,
        rider: None,
        booking_id: Some(b.booking_id.clone()),
        quote_id: Some(b.quote_id.clone()),
        multiplier: Some(b.multiplier().as_f64()),
        fare_minor: fare.and_then(|f| u64::try_from(f).ok()),
        currency: fare.map(|_| b.currency.clone()),
        wait_ms: b.started_at.map(|s| s.saturating_sub(b.confirmed_at)),
        experiment: b.experiment.as_ref().map(arm_wire),
    }
}

fn arm_wire(a: &ArmRecord) -> ExperimentArmWire {
    ExperimentArmWire {
        id: a.id.clone(),
        arm: a.arm.clone(),
        policy: a.policy.clone(),
        unit: a.unit,
    }
}

/// An idempotency key and the request's fingerprint
/// ([`shared::booking::fingerprint`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keyed {
    /// The client's key.
    pub key: String,
    /// What the request asked.
    pub fingerprint: String,
}

/// Confirm a quote: the booking to create and the answer to give.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmCall {
    /// The booking, status confirmed.
    pub booking: Booking,
    /// The 200 body (with the signed booking token).
    pub response: serde_json::Value,
    /// The request's key, if any.
    pub idempotency: Option<Keyed>,
    /// Ms since the epoch.
    pub now: u64,
}

/// A transition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActCall {
    /// Which booking.
    pub booking_id: String,
    /// What.
    pub action: Action,
    /// By whom.
    pub party: Party,
    /// Cancel and fail: why.
    pub reason: Option<String>,
    /// Complete: the trip as driven.
    pub driven: Option<(u32, u32)>,
    /// The request's key, if any.
    pub idempotency: Option<Keyed>,
    /// Ms since the epoch.
    pub now: u64,
}

/// A read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCall {
    /// Which booking.
    pub booking_id: String,
}

/// What the ledger answers: the client's status and body, verbatim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// HTTP status for the client.
    pub status: u16,
    /// JSON body for the client.
    pub body: String,
}

impl Answer {
    fn ok<T: Serialize>(value: &T) -> Result<Self> {
        Ok(Self {
            status: 200,
            body: serde_json::to_string(value)?,
        })
    }

    fn error(e: &ApiError) -> Result<Self> {
        Ok(Self {
            status: e.status,
            body: serde_json::to_string(&e.body())?,
        })
    }
}

#[durable_object]
#[derive(Debug)]
pub struct Ledger {
    state: State,
    env: Env,
    /// When this instance last swept out expired bookings.
    swept_at: std::cell::Cell<u64>,
}

#[derive(Deserialize)]
struct Row {
    version: i64,
    record: String,
}

#[derive(Deserialize)]
struct StoredAnswer {
    fingerprint: String,
    status: i64,
    body: String,
    expires_at: i64,
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

#[derive(Deserialize)]
struct OutboxRow {
    id: String,
    body: String,
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn booking_not_found(id: &str) -> ApiError {
    ApiError::new(404, "booking_not_found", format!("no booking {id}"))
}

impl Ledger {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    /// What is stored under a key, as the core's decision (keys are kept
    /// for `IDEMPOTENCY_TTL`, at most [`MAX_KEYS_PER_SCOPE`] per booking).
    fn keyed(&self, scope: &str, k: &Keyed, now: u64) -> Result<Option<Answer>> {
        let rows: Vec<StoredAnswer> = self
            .sql()
            .exec(
                "SELECT fingerprint, status, body, expires_at FROM idempotency WHERE scope = ? AND key = ?",
                vec![scope.into(), k.key.as_str().into()],
            )?
            .to_array()?;
        let stored = rows.first();
        let decision = replay(
            stored.map(|s| {
                (
                    s.fingerprint.as_str(),
                    Timestamp(s.expires_at.max(0) as u64),
                )
            }),
            &k.fingerprint,
            Timestamp(now),
        );
        match (decision, stored) {
            (Replay::Same, Some(s)) => Ok(Some(Answer {
                status: u16::try_from(s.status).unwrap_or(500),
                body: s.body.clone(),
            })),
            (Replay::Reused, _) => Answer::error(&ApiError::new(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request; use a new key",
            ))
            .map(Some),
            _ => Ok(None),
        }
    }

    fn remember(&self, scope: &str, k: &Keyed, a: &Answer, now: u64) -> Result<()> {
        let sql = self.sql();
        sql.exec(
            "DELETE FROM idempotency WHERE expires_at <= ?",
            vec![(now as i64).into()],
        )?;
        sql.exec(
            "INSERT OR REPLACE INTO idempotency (scope, key, fingerprint, status, body, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                scope.into(),
                k.key.as_str().into(),
                k.fingerprint.as_str().into(),
                i64::from(a.status).into(),
                a.body.as_str().into(),
                ((now + IDEMPOTENCY_TTL.0) as i64).into(),
            ],
        )?;
        // At most MAX_KEYS_PER_SCOPE answers per booking (or quote): a loop
        // of fresh keys keeps the newest, not a row per request for 24 h.
        sql.exec(
            "DELETE FROM idempotency WHERE scope = ? AND rowid NOT IN \
             (SELECT rowid FROM idempotency WHERE scope = ? ORDER BY expires_at DESC, rowid DESC LIMIT ?)",
            vec![scope.into(), scope.into(), MAX_KEYS_PER_SCOPE.into()],
        )?;
        Ok(())
    }

    fn enqueue(&self, event: &EdgeEvent) -> Result<()> {
        self.sql().exec(
            "INSERT OR IGNORE INTO outbox (id, body, created_at, booking_id) VALUES (?, ?, ?, ?)",
            vec![
                event.id.as_str().into(),
                serde_json::to_string(event)?.into(),
                (event.timestamp as i64).into(),
                event.booking_id.as_deref().unwrap_or("").into(),
            ],
        )?;
        Ok(())
    }

    /// Runs `op` under an optional idempotency key (all synchronous).
    fn with_key(
        &self,
        scope: &str,
        key: Option<&Keyed>,
        now: u64,
        op: impl FnOnce() -> Result<Answer>,
    ) -> Result<Answer> {
        if let Some(k) = key {
            if let Some(a) = self.keyed(scope, k, now)? {
                return Ok(a);
            }
        }
        let answer = op()?;
        if let Some(k) = key {
            if answer.status < 500 && answer.status != 404 {
                self.remember(scope, k, &answer, now)?;
            }
        }
        Ok(answer)
    }

    fn confirm(&self, c: &ConfirmCall) -> Result<Answer> {
        let b = &c.booking;
        let scope = ["quote:", b.quote_id.as_str()].concat();
        self.with_key(&scope, c.idempotency.as_ref(), c.now, || {
            let written = self
                .sql()
                .exec(
                    "INSERT INTO bookings (booking_id, quote_id, status, version, record, touched_at) \
                     VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT DO NOTHING",
                    vec![
                        b.booking_id.as_str().into(),
                        b.quote_id.as_str().into(),
                        b.status.as_str().into(),
                        serde_json::to_string(b)?.into(),
                        (c.now as i64).into(),
                    ],
                )?
                .rows_written();
            if written == 0 {
                return Answer::error(&ApiError::new(
                    409,
                    "quote_already_confirmed",
                    format!(
                        "quote {} is already booked as {}; retry with the same Idempotency-Key to get the original answer",
                        b.quote_id, b.booking_id
                    ),
                ));
            }
            self.enqueue(&event(b, c.now))?;
            Ok(Answer {
                status: 200,
                body: serde_json::to_string(&c.response)?,
            })
        })
    }

    fn load(&self, booking_id: &str) -> Result<Option<(i64, Booking)>> {
        let rows: Vec<Row> = self
            .sql()
            .exec(
                "SELECT version, record FROM bookings WHERE booking_id = ?",
                vec![booking_id.into()],
            )?
            .to_array()?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(r) => Ok(Some((r.version, serde_json::from_str(&r.record)?))),
        }
    }

    fn act(&self, c: &ActCall) -> Result<Answer> {
        let scope = ["booking:", c.booking_id.as_str()].concat();
        self.with_key(&scope, c.idempotency.as_ref(), c.now, || {
            let Some((version, mut b)) = self.load(&c.booking_id)? else {
                return Answer::error(&booking_not_found(&c.booking_id));
            };
            let transition = Transition {
                action: c.action,
                party: c.party,
                at: Timestamp(c.now),
                reason: c.reason.clone(),
                driven: c.driven.map(|(distance_m, duration_s)| Trip {
                    distance_m,
                    duration_s,
                }),
            };
            let next = match b.apply(&transition) {
                Ok(next) => next,
                Err(e) => {
                    let status = if e.code() == "forbidden" { 403 } else { 409 };
                    return Answer::error(&ApiError::new(status, e.code(), e.to_string()));
                }
            };
            // Compare-and-set on the version read above.
            let written = self
                .sql()
                .exec(
                    "UPDATE bookings SET status = ?, version = version + 1, record = ?, \
                     touched_at = ? WHERE booking_id = ? AND version = ?",
                    vec![
                        next.as_str().into(),
                        serde_json::to_string(&b)?.into(),
                        (c.now as i64).into(),
                        c.booking_id.as_str().into(),
                        version.into(),
                    ],
                )?
                .rows_written();
            // rows_written counts index entries too (touched_at's): any
            // write means the version matched.
            if written == 0 {
                return Answer::error(&ApiError::new(
                    409,
                    "concurrent_update",
                    "the booking changed while this request ran; read it and retry",
                ));
            }
            self.enqueue(&event(&b, c.now))?;
            Answer::ok(&response(&b))
        })
    }

    fn get(&self, c: &GetCall) -> Result<Answer> {
        match self.load(&c.booking_id)? {
            None => Answer::error(&booking_not_found(&c.booking_id)),
            Some((_, b)) => Answer::ok(&response(&b)),
        }
    }

    fn count(&self, query: &str) -> Result<i64> {
        let rows: Vec<Count> = self.sql().exec(query, None)?.to_array()?;
        Ok(rows.first().map_or(0, |c| c.n))
    }

    /// Sends the outbox to the queue, a batch at a time; what is sent is
    /// deleted. `Err` when the queue did not take a batch (the rows stay).
    async fn flush(&self) -> Result<()> {
        loop {
            let rows: Vec<OutboxRow> = self
                .sql()
                .exec(
                    "SELECT id, body FROM outbox ORDER BY created_at, id LIMIT ?",
                    vec![(OUTBOX_BATCH as i64).into()],
                )?
                .to_array()?;
            if rows.is_empty() {
                return Ok(());
            }
            let sent = match self.env.queue("EVENTS") {
                Ok(q) => q
                    .send_batch(rows.iter().map(|r| r.body.clone()).collect::<Vec<_>>())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                worker::console_warn!(
                    "ledger: {} events not queued ({e}); retrying in {} s",
                    rows.len(),
                    OUTBOX_RETRY_MS / 1_000
                );
                return Err(worker::Error::RustError(e));
            }
            for r in &rows {
                self.sql().exec(
                    "DELETE FROM outbox WHERE id = ?",
                    vec![r.id.as_str().into()],
                )?;
            }
            if rows.len() < OUTBOX_BATCH {
                return Ok(());
            }
        }
    }

    /// Deletes the bookings whose last transition is older than the
    /// retention and none of whose events is still in the outbox; at most
    /// once per sweep period per instance.
    fn sweep(&self, now: u64) -> Result<()> {
        let retention = crate::config::Settings::cached(&self.env)
            .map(|s| s.booking_retention)
            .unwrap_or(shared::booking::DEFAULT_BOOKING_RETENTION);
        if now.saturating_sub(self.swept_at.get()) < sweep_period(retention).0 {
            return Ok(());
        }
        self.swept_at.set(now);
        let sql = self.sql();
        // Rows from before the column existed count from now.
        sql.exec(
            "UPDATE bookings SET touched_at = ? WHERE touched_at IS NULL",
            vec![(now as i64).into()],
        )?;
        let cutoff = retention_cutoff(Timestamp(now), retention).0 as i64;
        let deleted = sql
            .exec(
                "DELETE FROM bookings WHERE touched_at <= ? AND NOT EXISTS \
                 (SELECT 1 FROM outbox WHERE outbox.booking_id = bookings.booking_id)",
                vec![cutoff.into()],
            )?
            .rows_written();
        let held: Vec<Count> = sql
            .exec(
                "SELECT COUNT(*) AS n FROM bookings WHERE touched_at <= ?",
                vec![cutoff.into()],
            )?
            .to_array()?;
        let held = held.first().map_or(0, |c| c.n);
        if deleted > 0 {
            worker::console_log!(
                "{}",
                serde_json::json!({"event": "ledger_swept", "deleted": deleted})
            );
        }
        if held > 0 {
            // Past their retention but an event of theirs is unsent: the
            // queue has been refusing for that long.
            worker::console_warn!(
                "{}",
                serde_json::json!({"event": "ledger_held", "held_for_outbox": held})
            );
        }
        Ok(())
    }

    /// The next alarm: soon while the outbox holds anything, at the next
    /// sweep while bookings remain, none when the object is empty.
    async fn schedule(&self, outbox_failed: bool) -> Result<()> {
        let storage = self.state.storage();
        if outbox_failed || self.count("SELECT COUNT(*) AS n FROM outbox")? > 0 {
            storage.set_alarm(OUTBOX_RETRY_MS).await?;
        } else if self.count("SELECT COUNT(*) AS n FROM bookings")? > 0 {
            let retention = crate::config::Settings::cached(&self.env)
                .map(|s| s.booking_retention)
                .unwrap_or(shared::booking::DEFAULT_BOOKING_RETENTION);
            storage.set_alarm(sweep_period(retention).0 as i64).await?;
        } else {
            storage.delete_alarm().await?;
        }
        Ok(())
    }

    /// After a call's transaction: the alarm first (so an outbox the
    /// object dies holding is still sent), then the send, the sweep and
    /// the next alarm.
    async fn settle(&self, now: u64) -> Result<()> {
        if self.count("SELECT COUNT(*) AS n FROM outbox")? > 0 {
            self.state.storage().set_alarm(OUTBOX_RETRY_MS).await?;
        }
        let failed = self.flush().await.is_err();
        self.sweep(now)?;
        self.schedule(failed).await
    }
}

impl DurableObject for Ledger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS bookings (booking_id TEXT PRIMARY KEY, \
             quote_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, version INTEGER NOT NULL, \
             record TEXT NOT NULL, touched_at INTEGER)",
            // Objects made before bookings had a lifetime (fails harmlessly
            // where the column exists).
            "ALTER TABLE bookings ADD COLUMN touched_at INTEGER",
            "CREATE INDEX IF NOT EXISTS bookings_by_touch ON bookings (touched_at)",
            "CREATE TABLE IF NOT EXISTS idempotency (scope TEXT NOT NULL, key TEXT NOT NULL, \
             fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, \
             expires_at INTEGER NOT NULL, PRIMARY KEY (scope, key))",
            "CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at)",
            "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, body TEXT NOT NULL, \
             created_at INTEGER NOT NULL, booking_id TEXT)",
            "ALTER TABLE outbox ADD COLUMN booking_id TEXT",
        ] {
            let _ = sql.exec(ddl, None);
        }
        Self {
            state,
            env,
            swept_at: std::cell::Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let bytes = req.bytes().await?;
        let parsed = |bytes: &[u8]| -> std::result::Result<serde_json::Value, ApiError> {
            serde_json::from_slice(bytes).map_err(|e| crate::error::from_json_error(&e))
        };
        let answer = match (req.method(), req.path().as_str()) {
            (Method::Post, "/confirm") => match parsed(&bytes).and_then(|v| {
                serde_json::from_value::<ConfirmCall>(v)
                    .map_err(|e| crate::error::from_json_error(&e))
            }) {
                Ok(c) => self.confirm(&c)?,
                Err(e) => return error_response(&e),
            },
            (Method::Post, "/act") => match parsed(&bytes).and_then(|v| {
                serde_json::from_value::<ActCall>(v).map_err(|e| crate::error::from_json_error(&e))
            }) {
                Ok(c) => self.act(&c)?,
                Err(e) => return error_response(&e),
            },
            (Method::Post, "/get") => match parsed(&bytes).and_then(|v| {
                serde_json::from_value::<GetCall>(v).map_err(|e| crate::error::from_json_error(&e))
            }) {
                Ok(c) => self.get(&c)?,
                Err(e) => return error_response(&e),
            },
            _ => return error_response(&ApiError::not_found(&req.path())),
        };
        // The transition is stored; now hand its event to the queue.
        if let Err(e) = self.settle(now_ms()).await {
            worker::console_warn!("ledger: after the call: {e}");
        }
        json(&answer, 200)
    }

    async fn alarm(&self) -> Result<Response> {
        self.settle(now_ms()).await?;
        Response::ok("outbox flushed, bookings swept")
    }
}
