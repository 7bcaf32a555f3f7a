//! The origin's embedded store: one SQLite file, no server.
//!
//! The origin is a single process that recomputes every region's surge grid
//! once per tick. What it must remember across a restart is small (the last
//! grid and the pricing state per region, so the edge never sees a
//! generation go backwards and the windows resume where they were), and
//! what it keeps for analysis (snapshots, price changes, ride outcomes) is
//! append-only and pruned by age. An embedded database fits that: nothing to
//! deploy, and a restart reads the file it left.
//!
//! * [`schema`]: the tables, the version, migrations from older files.
//! * `ticks`: what a tick writes and what a restart reads back (zones,
//!   snapshots, change log, last grids, market state).
//! * `analytics`: ride outcomes and the report queries.
//! * `retention`: deleting rows older than the retention, in batches.
//!
//! # Schema (version 6)
//!
//! | table           | key                  | what it holds                                        |
//! |-----------------|----------------------|------------------------------------------------------|
//! | `meta`          | `key`                | `schema_version` = 6, `last_tick_at` (ms)            |
//! | `zones`         | `(region, cell)`     | zones priced so far: name, multiplier bounds, active |
//! | `snapshots`     | `id`                 | per tick, cell and vehicle class: supply, demand, multiplier |
//! | `price_changes` | `id`                 | the change log: old → new multiplier, reason, supply, demand |
//! | `last_grids`    | `region`             | the newest grid JSON per region and its generation   |
//! | `market_state`  | `region`             | the region's market windows and engine state after its last tick |
//! | `ride_outcomes` | `ride_id`            | completed or abandoned rides: fare in minor units, currency |
//! | `daily_max`     | `(region, day)`      | the highest multiplier of each UTC day (lawful caps)  |
//! | `forecast_history` | `region`          | the forecasts' history, once per 5-minute bucket      |
//! | `arm_events`    | `event_id`           | quotes priced in experiment arms and their bookings' transitions |
//! | `experiment_values` | `(region, value)` | every `experiment:<region>` value the edge reported, for results after it is gone |
//! | `experiment_ends` | `(region, experiment)` | experiments ended early by their guardrail, and why |
//!
//! Times are `INTEGER` milliseconds since the Unix epoch and generations are
//! `INTEGER`; both are `u64` in Rust, so a value above `i64::MAX` is refused
//! on the way in and a negative one is reported as corrupt on the way out
//! ([`StoreError::InvalidData`]). Money is `INTEGER` minor units. Multipliers
//! are `REAL` and must be finite.
//!
//! Indexes serve the read paths: snapshots by `(region, cell, at_ms)` for a
//! zone's history, the change log by `(region, at_ms)`, outcomes by
//! `(region, cell, at_ms)`, and each of the three by `at_ms` alone, because
//! [`Store::prune_batch`] and [`Store::least_efficient_zones`] select a time
//! range across every zone.
//!
//! # Durability
//!
//! The file runs in WAL mode with `synchronous=NORMAL`, and everything one
//! tick writes for all its regions ([`Store::record_tick`]) is one
//! transaction. In WAL mode a committed transaction survives the process
//! dying (`kill -9`, a panic), so a crash loses the events accepted since the
//! last committed tick, never part of a tick. A power loss or OS crash may
//! additionally roll back the last few commits (that is what `NORMAL` trades
//! for not syncing on every commit), but the file stays consistent.
//! `busy_timeout` is 5 s so a second reader, such as an operator's `sqlite3`
//! shell, makes a writer wait rather than fail.
//!
//! `last_grids` keeps the project's rule that an older or equal generation
//! never replaces a newer one: a tick whose generation is not newer than the
//! stored grid still records its snapshots and changes, but the grid and
//! the market state are kept.

mod analytics;
mod experiments;
pub mod pg;
mod retention;
pub mod schema;
mod ticks;

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, TransactionBehavior};
use shared::experiment::results::{ArmEvent, ArmEventKind, Tally};

pub use schema::SCHEMA_VERSION;

/// How long a writer waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed the operation (I/O, locking, constraint).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL (cluster mode) refused or failed the operation, or is
    /// unreachable.
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
    /// A value cannot be stored (a `u64` above `i64::MAX`, a non-finite
    /// multiplier) or a stored value is corrupt (negative time, text where
    /// a number belongs).
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// The file was written by a build with a different schema; opening it
    /// would misread it.
    #[error("schema version {found} is not supported (expected {SCHEMA_VERSION})")]
    UnsupportedSchema {
        /// The version found in `meta`.
        found: String,
    },
}

/// The history an origin writes and its analytics read: the embedded
/// SQLite [`Store`], or in cluster mode PostgreSQL ([`pg::PgStore`]),
/// shared by every member. Called from blocking threads.
pub trait History: Send + std::fmt::Debug {
    /// Stores one tick of every region ticked (see [`Store::record_ticks`]).
    fn record_ticks(&mut self, zones: &[Zone], ticks: &[TickRecord]) -> Result<(), StoreError>;
    /// Stores ride outcomes; returns rows inserted (repeats are ignored).
    fn record_outcomes(&mut self, o: &[RideOutcome]) -> Result<usize, StoreError>;
    /// The least-efficient-zones report.
    fn least_efficient_zones(
        &mut self,
        now_ms: u64,
        days: u32,
        limit: u32,
    ) -> Result<Vec<ZoneEfficiency>, StoreError>;
    /// A zone's snapshots since `since_ms`, newest first.
    fn zone_history(
        &mut self,
        region: &str,
        cell: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<HistoryRow>, StoreError>;
    /// Deletes at most `limit` old rows per pruned table.
    fn prune_batch(&mut self, older_than_ms: u64, limit: u32) -> Result<usize, StoreError>;
    /// The region's highest published multiplier of each day (UTC) with
    /// ticks in `[from_ms, to_ms)`, for its lawful emergency cap.
    fn daily_maxima(
        &mut self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<f64>, StoreError>;
    /// The region's last stored forecast history (`shared::forecast`), for
    /// a cluster member taking the region over.
    fn forecast_history(&mut self, region: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The region's rides that ended in `[from_ms, to_ms)`, newest first,
    /// at most `limit`: (completed, wait in ms when known). A controller's
    /// feedback.
    fn recent_outcomes(
        &mut self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(bool, Option<u64>)>, StoreError>;
    /// Stores events of quotes priced in experiment arms; returns rows
    /// inserted (a repeated event id is ignored).
    fn record_arm_events(&mut self, rows: &[ArmRecord]) -> Result<usize, StoreError>;
    /// A region's experiment's bookings that ended in `[from_ms, to_ms)`,
    /// newest first, at most `limit`: (arm, completed, wait in ms).
    fn recent_arm_outcomes(
        &mut self,
        region: &str,
        experiment: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(String, bool, Option<u64>)>, StoreError>;
    /// A region's experiment's events summed per arm, unit and kind, at
    /// most `limit` rows.
    fn arm_tallies(
        &mut self,
        region: &str,
        experiment: &str,
        limit: u32,
    ) -> Result<Vec<Tally>, StoreError>;
    /// Records that a region's experiment ended early (a repeat is ignored).
    fn record_experiment_end(
        &mut self,
        region: &str,
        experiment: &str,
        reason: &str,
        at_ms: u64,
    ) -> Result<(), StoreError>;
    /// A region's experiments that ended early: (id, why).
    fn experiment_ends(&mut self, region: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Keeps a value of a region's `experiment:<region>` key (once).
    fn record_experiment_value(
        &mut self,
        region: &str,
        value: &str,
        at_ms: u64,
    ) -> Result<(), StoreError>;
    /// Every value kept: (region, value), oldest first.
    fn experiment_values(&mut self) -> Result<Vec<(String, String)>, StoreError>;
}

impl History for Store {
    fn record_ticks(&mut self, zones: &[Zone], ticks: &[TickRecord]) -> Result<(), StoreError> {
        Store::record_ticks(self, zones, ticks)
    }

    fn record_arm_events(&mut self, rows: &[ArmRecord]) -> Result<usize, StoreError> {
        Store::record_arm_events(self, rows)
    }

    fn arm_tallies(
        &mut self,
        region: &str,
        experiment: &str,
        limit: u32,
    ) -> Result<Vec<Tally>, StoreError> {
        Store::arm_tallies(self, region, experiment, limit)
    }

    fn recent_arm_outcomes(
        &mut self,
        region: &str,
        experiment: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(String, bool, Option<u64>)>, StoreError> {
        Store::recent_arm_outcomes(self, region, experiment, from_ms, to_ms, limit)
    }

    fn record_experiment_end(
        &mut self,
        region: &str,
        experiment: &str,
        reason: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        Store::record_experiment_end(self, region, experiment, reason, at_ms)
    }

    fn experiment_ends(&mut self, region: &str) -> Result<Vec<(String, String)>, StoreError> {
        Store::experiment_ends(self, region)
    }

    fn record_experiment_value(
        &mut self,
        region: &str,
        value: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        Store::record_experiment_value(self, region, value, at_ms)
    }

    fn experiment_values(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        Store::experiment_values(self)
    }

    fn record_outcomes(&mut self, o: &[RideOutcome]) -> Result<usize, StoreError> {
        Store::record_outcomes(self, o)
    }

    fn least_efficient_zones(
        &mut self,
        now_ms: u64,
        days: u32,
        limit: u32,
    ) -> Result<Vec<ZoneEfficiency>, StoreError> {
        Store::least_efficient_zones(self, now_ms, days, limit)
    }

    fn zone_history(
        &mut self,
        region: &str,
        cell: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        Store::zone_history(self, region, cell, since_ms, limit)
    }

    fn prune_batch(&mut self, older_than_ms: u64, limit: u32) -> Result<usize, StoreError> {
        Store::prune_batch(self, older_than_ms, limit)
    }

    fn daily_maxima(
        &mut self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<f64>, StoreError> {
        Store::daily_maxima(self, region, from_ms, to_ms)
    }

    fn recent_outcomes(
        &mut self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(bool, Option<u64>)>, StoreError> {
        Store::recent_outcomes(self, region, from_ms, to_ms, limit)
    }

    fn forecast_history(&mut self, region: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Store::forecast_histories(self)?
            .into_iter()
            .find(|(r, _)| r == region)
            .map(|(_, h)| h))
    }
}

/// The origin's durable state: one SQLite connection, used from one thread.
///
/// Write methods take `&mut self` because each runs a transaction on the
/// connection; the origin owns one `Store` and serialises its ticks.
#[derive(Debug)]
pub struct Store {
    /// The single connection; SQLite serialises writers anyway.
    conn: Connection,
}

/// A surge zone: one S2 cell of a region with the multiplier bounds it was
/// priced under, recorded the first time a tick prices it; reports name
/// zones from here and skip inactive ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// The region the zone belongs to (the grid's region id).
    pub region: String,
    /// The zone's S2 cell token.
    pub cell: String,
    /// A name for people (reports, the map).
    pub name: String,
    /// The lowest multiplier the zone may publish.
    pub min_multiplier: f64,
    /// The highest multiplier the zone may publish.
    pub max_multiplier: f64,
    /// Inactive zones are kept for history but not priced or reported.
    pub active: bool,
}

/// One cell and vehicle class as seen in one tick, kept for history and the
/// efficiency report.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    /// The S2 cell token.
    pub cell: String,
    /// The vehicle class.
    pub class: String,
    /// Available drivers.
    pub supply: u32,
    /// Demand units.
    pub demand: u32,
    /// The multiplier published for it.
    pub multiplier: f64,
}

/// One multiplier change decided in a tick, kept so a price can be explained
/// after the fact.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceChange {
    /// The S2 cell token.
    pub cell: String,
    /// The multiplier before the tick.
    pub old_multiplier: f64,
    /// The multiplier after the tick.
    pub new_multiplier: f64,
    /// Why it moved (e.g. "demand", "cap", "decay").
    pub reason: String,
    /// Supply at the time.
    pub supply: u32,
    /// Demand at the time.
    pub demand: u32,
}

/// Everything one region's tick writes, stored in one transaction so a crash
/// never leaves half a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct TickRecord {
    /// The region ticked.
    pub region: String,
    /// When the tick ran.
    pub at_ms: u64,
    /// The grid's generation (must fit in `i64`).
    pub generation: u64,
    /// The grid as pushed to the edge, so a restart can push it again.
    pub grid_json: String,
    /// Per cell and class observations.
    pub snapshots: Vec<SnapshotRow>,
    /// Multiplier changes of this tick.
    pub changes: Vec<PriceChange>,
    /// The region's pricing state after the tick (market windows, engine
    /// smoothing; `shared::state`), so a restart resumes exactly here.
    pub state: Vec<u8>,
    /// The forecasts' history (`shared::forecast`), at the first tick of
    /// each 5-minute bucket; `None` between.
    pub forecast_history: Option<Vec<u8>>,
    /// The grid's highest published multiplier (1.0 without cells): the
    /// day's maximum is kept per region for its lawful emergency cap.
    pub max_multiplier: f64,
}

/// The pricing state a region's last tick left, read at start.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredState {
    /// The region.
    pub region: String,
    /// The generation of the grid that tick published.
    pub generation: u64,
    /// The tick's time.
    pub at_ms: u64,
    /// The encoded state (`shared::state`).
    pub state: Vec<u8>,
}

/// The newest grid of a region, read at start so the origin resumes its
/// generation sequence and can re-push what the edge last had.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGrid {
    /// The region.
    pub region: String,
    /// The grid's generation.
    pub generation: u64,
    /// The tick that produced it.
    pub at_ms: u64,
    /// The grid JSON as it was pushed.
    pub grid_json: String,
}

/// An event of a quote priced in an experiment's arm, as stored
/// (`arm_events`; from the edge's events: [`shared::events::arm_event`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ArmRecord {
    /// The edge event's id (a repeat is ignored).
    pub event_id: String,
    /// The experiment.
    pub experiment: String,
    /// The region.
    pub region: String,
    /// The arm's policy version.
    pub policy: String,
    /// The arm and what happened.
    pub event: ArmEvent,
}

/// An arm record's values, checked for the store: (record, at, fare, wait,
/// unit).
type CheckedArm<'a> = (&'a ArmRecord, i64, Option<i64>, Option<i64>, i64);

impl ArmRecord {
    /// Checks every record's numbers fit the store.
    pub(crate) fn checked(rows: &[ArmRecord]) -> Result<Vec<CheckedArm<'_>>, StoreError> {
        rows.iter()
            .map(|r| {
                finite("arm event multiplier", r.event.multiplier)?;
                Ok((
                    r,
                    to_i64("arm event at_ms", r.event.at.0)?,
                    r.event
                        .fare_minor
                        .map(|f| to_i64("arm event fare_minor", f))
                        .transpose()?,
                    r.event
                        .wait_ms
                        .map(|w| to_i64("arm event wait_ms", w))
                        .transpose()?,
                    to_i64("arm event unit", r.event.unit)?,
                ))
            })
            .collect()
    }

    /// A tally from its stored columns: counts and sums are
    /// `[count, Σ fare, Σ wait ms, waits]`.
    pub(crate) fn tally_from(
        arm: String,
        unit: i64,
        kind: String,
        [count, fare, wait, waits]: [i64; 4],
        multiplier_sum: f64,
    ) -> Result<Tally, StoreError> {
        let n = |what: &str, v: i64| from_i64(what, v);
        Ok(Tally {
            arm: shared::quote::Ident::new(&arm)
                .map_err(|e| StoreError::InvalidData(format!("arm event arm: {e}")))?,
            unit: n("arm event unit", unit)?,
            kind: ArmEventKind::parse(&kind)
                .ok_or_else(|| StoreError::InvalidData(format!("arm event kind {kind:?}")))?,
            count: n("arm event count", count)?,
            multiplier_sum: finite("arm event multiplier", multiplier_sum)?,
            fare_sum: n("arm event fare_minor", fare)?,
            wait_ms_sum: n("arm event wait_ms", wait)?,
            waits: n("arm event waits", waits)?,
        })
    }
}

/// What became of a ride, posted to `/v1/outcomes` by whoever dispatches
/// rides (today the simulator's live mode); the basis of completion rates.
#[derive(Debug, Clone, PartialEq)]
pub struct RideOutcome {
    /// Unique ride id; a second report of the same ride is ignored.
    pub ride_id: String,
    /// The region of the pickup.
    pub region: String,
    /// The pickup's S2 cell token.
    pub cell: String,
    /// When the ride ended (or was abandoned).
    pub at_ms: u64,
    /// Whether the ride completed.
    pub completed: bool,
    /// The multiplier it was priced at.
    pub multiplier: f64,
    /// The fare charged, in minor units of `currency`, when there was one.
    pub fare_minor: Option<u64>,
    /// ISO 4217 code of the fare (`None` for rows migrated from schema 1).
    pub currency: Option<String>,
    /// The quote it was confirmed from, when known.
    pub quote_id: Option<String>,
    /// Ms from confirmation to pickup, when known.
    pub wait_ms: Option<u64>,
}

/// One row of the least-efficient-zones report: zones that surge a lot and
/// still lose rides.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneEfficiency {
    /// The region.
    pub region: String,
    /// The S2 cell token.
    pub cell: String,
    /// The zone's name, or "region cell" when the zone is not configured.
    pub zone_name: String,
    /// Mean snapshot multiplier over the window (unrounded).
    pub average_multiplier: f64,
    /// Completed rides in percent (0..100, rounded to 2 decimals; 0 with no
    /// rides, as in the original query).
    pub completion_rate: f64,
    /// Ride outcomes in the window.
    pub rides: u64,
    /// Change-log rows where the multiplier went up.
    pub surge_events: u64,
    /// Change-log rows where the multiplier went down.
    pub decrease_events: u64,
    /// `average_multiplier × 0.7 + (100 − completion_rate) × 0.3` (unrounded).
    pub inefficiency_score: f64,
    /// SQL `RANK()` by score, highest first: ties share a rank and the next
    /// rank skips.
    pub rank: u32,
}

/// One snapshot of a zone, for its history view.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// When the tick ran.
    pub at_ms: u64,
    /// The vehicle class.
    pub class: String,
    /// Available drivers.
    pub supply: u32,
    /// Demand units.
    pub demand: u32,
    /// The multiplier published.
    pub multiplier: f64,
}

/// One change-log row, for explaining a region's recent prices.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceChangeRow {
    /// When the tick ran.
    pub at_ms: u64,
    /// The S2 cell token.
    pub cell: String,
    /// The multiplier before.
    pub old_multiplier: f64,
    /// The multiplier after.
    pub new_multiplier: f64,
    /// Why it moved.
    pub reason: String,
    /// Supply at the time.
    pub supply: u32,
    /// Demand at the time.
    pub demand: u32,
}

impl Store {
    /// Opens (or creates) the store file at `path`. The parent directory must
    /// exist. Creates the schema when missing, migrates an older one, and
    /// sets WAL, `synchronous=NORMAL` and a 5 s busy timeout.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(journal_mode = %mode, path = %path.display(), "store is not in WAL mode");
        }
        Self::init(conn)
    }

    /// Opens a fresh store that lives in memory, for tests and dry runs.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    /// Applies the connection settings and creates, checks or migrates the
    /// schema in one transaction.
    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        schema::create_or_migrate(&tx)?;
        tx.commit()?;
        Ok(Store { conn })
    }
}

/// Reads a `zones` row selected as region, cell, name, min, max, active.
pub(crate) fn zone_from_row(r: &Row<'_>) -> Result<Zone, StoreError> {
    Ok(Zone {
        region: r.get(0)?,
        cell: r.get(1)?,
        name: r.get(2)?,
        min_multiplier: r.get(3)?,
        max_multiplier: r.get(4)?,
        active: get_u64(r, 5, "zone active")? != 0,
    })
}

/// A `u64` as SQLite's `INTEGER`, refused above `i64::MAX`.
pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| {
        StoreError::InvalidData(format!(
            "{what} {v} does not fit in a signed 64-bit integer"
        ))
    })
}

/// A stored `INTEGER` as `u64`; a negative value means the file is corrupt.
pub(crate) fn from_i64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::InvalidData(format!("stored {what} is negative: {v}")))
}

/// A multiplier or fare that SQLite can store faithfully (NaN would become
/// NULL, infinities cannot be compared meaningfully).
pub(crate) fn finite(what: &str, v: f64) -> Result<f64, StoreError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(StoreError::InvalidData(format!(
            "{what} is not finite: {v}"
        )))
    }
}

/// Column `idx` as a non-negative integer; anything else is corrupt data.
pub(crate) fn get_u64(r: &Row<'_>, idx: usize, what: &str) -> Result<u64, StoreError> {
    match r.get_ref(idx)? {
        ValueRef::Integer(v) => from_i64(what, v),
        other => Err(StoreError::InvalidData(format!(
            "stored {what} is not an integer: {:?}",
            other.data_type()
        ))),
    }
}

/// Column `idx` as a `u32`; out of range is corrupt data.
pub(crate) fn get_u32(r: &Row<'_>, idx: usize, what: &str) -> Result<u32, StoreError> {
    let v = get_u64(r, idx, what)?;
    u32::try_from(v).map_err(|_| StoreError::InvalidData(format!("stored {what} {v} exceeds u32")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    fn pragma_i64(s: &Store, name: &str) -> i64 {
        s.conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
    }

    #[test]
    fn file_store_uses_wal_normal_sync_and_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("o.db")).unwrap();
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(pragma_i64(&s, "synchronous"), 1, "1 is NORMAL");
        assert_eq!(pragma_i64(&s, "busy_timeout"), 5000);
        let v: i64 = s
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn query_plans_use_the_indexes() {
        let s = Store::open_in_memory().unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = s
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = stmt
                .query_map(params![0, 1, 5], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect::<Vec<_>>();
            rows.join("\n")
        };
        let p = plan(
            "SELECT at_ms, class, supply, demand, multiplier FROM snapshots \
             WHERE region = ?1 AND cell = ?2 AND at_ms >= ?3 ORDER BY at_ms DESC LIMIT 5",
        );
        assert!(p.contains("snapshots_by_zone_time"), "{p}");
        let p = plan(
            "SELECT * FROM price_changes WHERE region = ?1 AND at_ms >= ?2 \
             ORDER BY at_ms DESC LIMIT ?3",
        );
        assert!(p.contains("price_changes_by_region_time"), "{p}");
        for table in ["snapshots", "price_changes", "ride_outcomes"] {
            let p = plan(&format!(
                "SELECT count(*) FROM {table} WHERE at_ms < ?1 AND ?2 AND ?3"
            ));
            assert!(p.contains(&format!("{table}_by_time")), "{p}");
        }
        let p = plan(analytics::LEAST_EFFICIENT_SQL);
        assert!(p.contains("snapshots_by_time"), "{p}");
        assert!(p.contains("ride_outcomes_by_time"), "{p}");
    }

    #[test]
    fn generation_above_i64_max_is_refused_and_nothing_is_written() {
        let mut s = Store::open_in_memory().unwrap();
        let t = TickRecord {
            region: "r".into(),
            at_ms: 1,
            generation: u64::MAX,
            grid_json: "{}".into(),
            snapshots: vec![SnapshotRow {
                cell: "c".into(),
                class: "economy".into(),
                supply: 1,
                demand: 1,
                multiplier: 1.0,
            }],
            changes: vec![],
            state: vec![1],
            forecast_history: None,
            max_multiplier: 1.0,
        };
        assert!(matches!(s.record_tick(&t), Err(StoreError::InvalidData(_))));
        assert!(s.last_grids().unwrap().is_empty());
        assert!(s.zone_history("r", "c", 0, 10).unwrap().is_empty());
        assert_eq!(s.last_tick_at().unwrap(), None);
    }

    #[test]
    fn non_finite_multiplier_is_refused() {
        let mut s = Store::open_in_memory().unwrap();
        let o = RideOutcome {
            ride_id: "x".into(),
            region: "r".into(),
            cell: "c".into(),
            at_ms: 1,
            completed: true,
            multiplier: f64::NAN,
            fare_minor: None,
            currency: None,
            quote_id: None,
            wait_ms: None,
        };
        assert!(matches!(
            s.record_outcomes(&[o]),
            Err(StoreError::InvalidData(_))
        ));
    }

    #[test]
    fn corrupt_stored_values_are_reported_as_invalid_data() {
        let s = Store::open_in_memory().unwrap();
        s.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('last_tick_at', 'yesterday')",
                [],
            )
            .unwrap();
        assert!(matches!(s.last_tick_at(), Err(StoreError::InvalidData(_))));
        // The CHECK constraints keep negatives out; bypass them to simulate a
        // file damaged outside this code.
        s.conn
            .execute_batch("PRAGMA ignore_check_constraints = ON")
            .unwrap();
        s.conn
            .execute(
                "INSERT INTO last_grids (region, generation, at_ms, grid_json) VALUES ('r', -1, 0, '{}')",
                [],
            )
            .unwrap();
        assert!(matches!(s.last_grids(), Err(StoreError::InvalidData(_))));
    }

    #[test]
    fn a_newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        {
            let s = Store::open(&path).unwrap();
            s.conn
                .execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                    [super::schema::SCHEMA_VERSION + 1],
                )
                .unwrap();
        }
        let newer = (super::schema::SCHEMA_VERSION + 1).to_string();
        match Store::open(&path) {
            Err(StoreError::UnsupportedSchema { found }) => {
                assert!(found.contains(&newer), "{found}")
            }
            other => panic!("expected UnsupportedSchema, got {other:?}"),
        }
    }
}
