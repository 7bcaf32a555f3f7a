//! The quote ledger Durable Object: confirmed quotes, exactly once.
//!
//! Ledgers are sharded by quote id ([`shard_name`]) so confirms spread over
//! many objects. Within one object, `INSERT ... ON CONFLICT DO NOTHING` runs
//! synchronously (no await), so of two concurrent confirms of the same quote
//! exactly one writes the row; the other sees it and is refused.

use serde::{Deserialize, Serialize};
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result, State,
};

use crate::error::ApiError;
use crate::http::{error_response, json};

/// Number of ledger objects.
pub const SHARDS: u64 = 16;

/// The ledger object that owns a quote id.
pub fn shard_name(quote_id: &str) -> String {
    let h = shared::market::DriverId::from_external(quote_id).0;
    format!("ledger-{}", h % SHARDS)
}

/// What the worker asks a ledger to record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmRecord {
    /// Quote id.
    pub quote_id: String,
    /// Region.
    pub region: String,
    /// Price honoured, minor units.
    pub final_fare: i64,
    /// ISO 4217.
    pub currency: String,
    /// Multiplier honoured, tenths.
    pub surge_tenths: i64,
    /// Milliseconds since the epoch.
    pub confirmed_at: i64,
}

/// The ledger's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmOutcome {
    /// True if this call recorded the confirmation.
    pub recorded: bool,
    /// When the quote was (first) confirmed.
    pub confirmed_at: i64,
}

#[durable_object]
#[derive(Debug)]
pub struct Ledger {
    state: State,
}

#[derive(Deserialize)]
struct At {
    confirmed_at: i64,
}

impl Ledger {
    fn confirm(&self, r: &ConfirmRecord) -> Result<ConfirmOutcome> {
        let sql = self.state.storage().sql();
        let written = sql
            .exec(
                "INSERT INTO confirmed (quote_id, region, final_fare, currency, surge_tenths, confirmed_at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(quote_id) DO NOTHING",
                vec![
                    r.quote_id.as_str().into(),
                    r.region.as_str().into(),
                    r.final_fare.into(),
                    r.currency.as_str().into(),
                    r.surge_tenths.into(),
                    r.confirmed_at.into(),
                ],
            )?
            .rows_written();
        if written > 0 {
            return Ok(ConfirmOutcome {
                recorded: true,
                confirmed_at: r.confirmed_at,
            });
        }
        let rows: Vec<At> = sql
            .exec(
                "SELECT confirmed_at FROM confirmed WHERE quote_id = ?",
                vec![r.quote_id.as_str().into()],
            )?
            .to_array()?;
        Ok(ConfirmOutcome {
            recorded: false,
            confirmed_at: rows.first().map_or(0, |a| a.confirmed_at),
        })
    }
}

impl DurableObject for Ledger {
    fn new(state: State, _env: Env) -> Self {
        let _ = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS confirmed (quote_id TEXT PRIMARY KEY, region TEXT NOT NULL, \
             final_fare INTEGER NOT NULL, currency TEXT NOT NULL, surge_tenths INTEGER NOT NULL, \
             confirmed_at INTEGER NOT NULL)",
            None,
        );
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/confirm") => {
                let record: ConfirmRecord = match serde_json::from_slice(&req.bytes().await?) {
                    Ok(r) => r,
                    Err(e) => return error_response(&crate::error::from_json_error(&e)),
                };
                json(&self.confirm(&record)?, 200)
            }
            _ => error_response(&ApiError::not_found(&req.path())),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        Response::ok("no alarms are scheduled")
    }
}
