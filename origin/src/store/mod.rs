//! The origin's embedded store: one SQLite file, no server.
//!
//! The origin is a single process that recomputes every region's surge grid
//! once per tick. What it must remember across a restart is small (the zone
//! table and the last grid it pushed per region, so the edge never sees a
//! generation go backwards), and what it keeps for analysis (snapshots,
//! price changes, ride outcomes) is append-only. An embedded database fits
//! that: nothing to deploy, and a restart reads the file it left.
//!
//! # Schema (version 1)
//!
//! | table           | key                  | what it holds                                        |
//! |-----------------|----------------------|------------------------------------------------------|
//! | `meta`          | `key`                | `schema_version` = 1, `last_tick_at` (ms)            |
//! | `zones`         | `(region, cell)`     | the configured zones: name, multiplier bounds, active |
//! | `snapshots`     | `id`                 | per tick, cell and vehicle class: supply, demand, multiplier |
//! | `price_changes` | `id`                 | the change log: old → new multiplier, reason, supply, demand |
//! | `last_grids`    | `region`             | the newest grid JSON per region and its generation   |
//! | `ride_outcomes` | `ride_id`            | completed or abandoned rides, for completion rates   |
//!
//! Times are `INTEGER` milliseconds since the Unix epoch and generations are
//! `INTEGER`; both are `u64` in Rust, so a value above `i64::MAX` is refused
//! on the way in and a negative one is reported as corrupt on the way out
//! ([`StoreError::InvalidData`]). Multipliers are `REAL` and must be finite.
//!
//! Indexes serve the read paths: snapshots by `(region, cell, at_ms)` for a
//! zone's history, the change log by `(region, at_ms)`, outcomes by
//! `(region, cell, at_ms)`, and each of the three by `at_ms` alone, because
//! [`Store::prune`] and [`Store::least_efficient_zones`] select a time range
//! across every zone.
//!
//! # Durability
//!
//! The file runs in WAL mode with `synchronous=NORMAL`, and everything one
//! tick writes ([`Store::record_tick`]) is one transaction. In WAL mode a
//! committed transaction survives the process dying (`kill -9`, a panic), so
//! a crash loses at most the tick in flight, never part of one. A power loss
//! or OS crash may additionally roll back the last few commits (that is what
//! `NORMAL` trades for not syncing on every commit), but the file stays
//! consistent. `busy_timeout` is 5 s so a second reader, such as an operator's
//! `sqlite3` shell, makes a writer wait rather than fail.
//!
//! `last_grids` keeps the project's rule that an older or equal generation
//! never replaces a newer one: a tick whose generation is not newer than the
//! stored grid still records its snapshots and changes, but the grid is kept.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

/// The schema version this build reads and writes, kept in `meta`.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a writer waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Milliseconds in a day, for the analysis window.
const DAY_MS: u64 = 86_400_000;

/// The whole schema; every statement is idempotent so `open` can run it on
/// an existing file of the same version.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS zones (
    region          TEXT    NOT NULL,
    cell            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    min_multiplier  REAL    NOT NULL,
    max_multiplier  REAL    NOT NULL,
    active          INTEGER NOT NULL CHECK (active IN (0, 1)),
    PRIMARY KEY (region, cell)
);

CREATE TABLE IF NOT EXISTS snapshots (
    id          INTEGER PRIMARY KEY,
    region      TEXT    NOT NULL,
    cell        TEXT    NOT NULL,
    class       TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    supply      INTEGER NOT NULL CHECK (supply >= 0),
    demand      INTEGER NOT NULL CHECK (demand >= 0),
    multiplier  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_zone_time ON snapshots (region, cell, at_ms);
CREATE INDEX IF NOT EXISTS snapshots_by_time ON snapshots (at_ms);

CREATE TABLE IF NOT EXISTS price_changes (
    id              INTEGER PRIMARY KEY,
    region          TEXT    NOT NULL,
    cell            TEXT    NOT NULL,
    at_ms           INTEGER NOT NULL CHECK (at_ms >= 0),
    old_multiplier  REAL    NOT NULL,
    new_multiplier  REAL    NOT NULL,
    reason          TEXT    NOT NULL,
    supply          INTEGER NOT NULL CHECK (supply >= 0),
    demand          INTEGER NOT NULL CHECK (demand >= 0)
);
CREATE INDEX IF NOT EXISTS price_changes_by_region_time ON price_changes (region, at_ms);
CREATE INDEX IF NOT EXISTS price_changes_by_time ON price_changes (at_ms);

CREATE TABLE IF NOT EXISTS last_grids (
    region      TEXT    PRIMARY KEY,
    generation  INTEGER NOT NULL CHECK (generation >= 0),
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    grid_json   TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS ride_outcomes (
    ride_id     TEXT    PRIMARY KEY,
    region      TEXT    NOT NULL,
    cell        TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    completed   INTEGER NOT NULL CHECK (completed IN (0, 1)),
    multiplier  REAL    NOT NULL,
    fare        REAL,
    quote_id    TEXT
);
CREATE INDEX IF NOT EXISTS ride_outcomes_by_zone_time ON ride_outcomes (region, cell, at_ms);
CREATE INDEX IF NOT EXISTS ride_outcomes_by_time ON ride_outcomes (at_ms);
";

/// The original design's \"five least efficient surge zones\" query, ported to
/// SQLite. `?1`/`?2` bound the window (inclusive), `?3` is the highest rank
/// returned. Unlike the original, each source is aggregated in its own CTE
/// before joining, so snapshots are not multiplied by change-log rows.
const LEAST_EFFICIENT_SQL: &str = "
WITH zone_performance AS (
    -- Every zone with snapshots in the window; zones switched off are skipped,
    -- zones missing from the table are named after their region and cell.
    SELECT s.region,
           s.cell,
           COALESCE(z.name, s.region || ' ' || s.cell) AS zone_name,
           AVG(s.multiplier) AS avg_multiplier
    FROM snapshots s
    LEFT JOIN zones z ON z.region = s.region AND z.cell = s.cell
    WHERE s.at_ms >= ?1 AND s.at_ms <= ?2
      AND (z.active IS NULL OR z.active = 1)
    GROUP BY s.region, s.cell
),
pricing_events AS (
    SELECT region,
           cell,
           SUM(CASE WHEN new_multiplier > old_multiplier THEN 1 ELSE 0 END) AS surge_events,
           SUM(CASE WHEN new_multiplier < old_multiplier THEN 1 ELSE 0 END) AS decrease_events
    FROM price_changes
    WHERE at_ms >= ?1 AND at_ms <= ?2
    GROUP BY region, cell
),
ride_completion AS (
    SELECT region,
           cell,
           COUNT(*) AS rides,
           ROUND(SUM(CASE WHEN completed = 1 THEN 1 ELSE 0 END) * 100.0 / COUNT(*), 2)
               AS completion_rate
    FROM ride_outcomes
    WHERE at_ms >= ?1 AND at_ms <= ?2
    GROUP BY region, cell
),
efficiency_ranking AS (
    -- High multiplier and low completion = inefficient.
    SELECT zp.region,
           zp.cell,
           zp.zone_name,
           zp.avg_multiplier,
           COALESCE(rc.completion_rate, 0) AS completion_rate,
           COALESCE(rc.rides, 0) AS rides,
           COALESCE(pe.surge_events, 0) AS surge_events,
           COALESCE(pe.decrease_events, 0) AS decrease_events,
           (zp.avg_multiplier * 0.7) + ((100 - COALESCE(rc.completion_rate, 0)) * 0.3)
               AS inefficiency_score
    FROM zone_performance zp
    LEFT JOIN ride_completion rc ON rc.region = zp.region AND rc.cell = zp.cell
    LEFT JOIN pricing_events pe ON pe.region = zp.region AND pe.cell = zp.cell
    WHERE zp.avg_multiplier > 1.2
),
ranked_zones AS (
    SELECT *, RANK() OVER (ORDER BY inefficiency_score DESC) AS inefficiency_rank
    FROM efficiency_ranking
)
SELECT region, cell, zone_name, avg_multiplier, completion_rate, rides,
       surge_events, decrease_events, inefficiency_score, inefficiency_rank
FROM ranked_zones
WHERE inefficiency_rank <= ?3
ORDER BY inefficiency_rank, region, cell
";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed the operation (I/O, locking, constraint).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

/// The origin's durable state: one SQLite connection, used from one thread.
///
/// Write methods take `&mut self` because each runs a transaction on the
/// connection; the origin owns one `Store` and serialises its ticks.
#[derive(Debug)]
pub struct Store {
    /// The single connection; SQLite serialises writers anyway.
    conn: Connection,
}

/// A configured surge zone: one S2 cell of a region with its multiplier
/// bounds, as loaded into the engine at start.
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

/// What became of a ride, reported back by the ledger; the basis of
/// completion rates.
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
    /// The fare charged, when there was one.
    pub fare: Option<f64>,
    /// The quote it was confirmed from, when known.
    pub quote_id: Option<String>,
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
    /// exist. Creates the schema when missing and sets WAL,
    /// `synchronous=NORMAL` and a 5 s busy timeout.
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

    /// Applies the connection settings and creates or checks the schema.
    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);",
        )?;
        let found: Option<rusqlite::types::Value> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match found {
            None => {
                tx.execute_batch(SCHEMA)?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION],
                )?;
            }
            Some(rusqlite::types::Value::Integer(SCHEMA_VERSION)) => {}
            Some(other) => {
                return Err(StoreError::UnsupportedSchema {
                    found: format!("{other:?}"),
                })
            }
        }
        tx.commit()?;
        Ok(Store { conn })
    }

    /// Inserts a zone or replaces the one with the same region and cell, so
    /// configuration can be re-applied at every start.
    pub fn upsert_zone(&mut self, z: &Zone) -> Result<(), StoreError> {
        let min = finite("zone min_multiplier", z.min_multiplier)?;
        let max = finite("zone max_multiplier", z.max_multiplier)?;
        if min > max {
            return Err(StoreError::InvalidData(format!(
                "zone {} {}: min_multiplier {min} is above max_multiplier {max}",
                z.region, z.cell
            )));
        }
        self.conn.execute(
            "INSERT INTO zones (region, cell, name, min_multiplier, max_multiplier, active)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (region, cell) DO UPDATE SET
                 name = excluded.name,
                 min_multiplier = excluded.min_multiplier,
                 max_multiplier = excluded.max_multiplier,
                 active = excluded.active",
            params![z.region, z.cell, z.name, min, max, z.active],
        )?;
        Ok(())
    }

    /// The zones of one region, sorted by cell, to load its engine.
    pub fn zones(&self, region: &str) -> Result<Vec<Zone>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT region, cell, name, min_multiplier, max_multiplier, active
             FROM zones WHERE region = ?1 ORDER BY cell",
        )?;
        let mut rows = stmt.query(params![region])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(zone_from_row(r)?);
        }
        Ok(out)
    }

    /// Every zone, sorted by region then cell, to load all engines at start.
    pub fn all_zones(&self) -> Result<Vec<Zone>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT region, cell, name, min_multiplier, max_multiplier, active
             FROM zones ORDER BY region, cell",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(zone_from_row(r)?);
        }
        Ok(out)
    }

    /// Stores one region's tick in one transaction: its snapshots, its change
    /// log, its grid (unless a newer generation is already stored) and
    /// `last_tick_at`. Either all of it is stored or none.
    pub fn record_tick(&mut self, t: &TickRecord) -> Result<(), StoreError> {
        let at_ms = to_i64("tick at_ms", t.at_ms)?;
        let generation = to_i64("tick generation", t.generation)?;
        for s in &t.snapshots {
            finite("snapshot multiplier", s.multiplier)?;
        }
        for c in &t.changes {
            finite("change old_multiplier", c.old_multiplier)?;
            finite("change new_multiplier", c.new_multiplier)?;
        }

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO snapshots (region, cell, class, at_ms, supply, demand, multiplier)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for s in &t.snapshots {
                insert.execute(params![
                    t.region,
                    s.cell,
                    s.class,
                    at_ms,
                    s.supply,
                    s.demand,
                    s.multiplier
                ])?;
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO price_changes
                     (region, cell, at_ms, old_multiplier, new_multiplier, reason, supply, demand)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for c in &t.changes {
                insert.execute(params![
                    t.region,
                    c.cell,
                    at_ms,
                    c.old_multiplier,
                    c.new_multiplier,
                    c.reason,
                    c.supply,
                    c.demand
                ])?;
            }
            let replaced = tx.execute(
                "INSERT INTO last_grids (region, generation, at_ms, grid_json)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (region) DO UPDATE SET
                     generation = excluded.generation,
                     at_ms = excluded.at_ms,
                     grid_json = excluded.grid_json
                 WHERE excluded.generation > last_grids.generation",
                params![t.region, generation, at_ms, t.grid_json],
            )?;
            if replaced == 0 {
                tracing::warn!(
                    region = %t.region,
                    generation = t.generation,
                    "tick generation is not newer than the stored grid; grid kept"
                );
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_tick_at', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![at_ms],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The newest stored grid of every region, sorted by region, so a
    /// restarted origin continues each generation sequence.
    pub fn last_grids(&self) -> Result<Vec<StoredGrid>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT region, generation, at_ms, grid_json FROM last_grids ORDER BY region",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(StoredGrid {
                region: r.get(0)?,
                generation: get_u64(r, 1, "grid generation")?,
                at_ms: get_u64(r, 2, "grid at_ms")?,
                grid_json: r.get(3)?,
            });
        }
        Ok(out)
    }

    /// When the last tick was recorded, `None` on a fresh store; tells a
    /// restarted origin how long it was away.
    pub fn last_tick_at(&self) -> Result<Option<u64>, StoreError> {
        let value: Option<rusqlite::types::Value> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'last_tick_at'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match value {
            None => Ok(None),
            Some(rusqlite::types::Value::Integer(v)) => Ok(Some(from_i64("last_tick_at", v)?)),
            Some(other) => Err(StoreError::InvalidData(format!(
                "meta last_tick_at is not an integer: {other:?}"
            ))),
        }
    }

    /// Stores ride outcomes in one transaction. A ride already stored is
    /// ignored (reports are retried), so the count returned is the rows
    /// actually inserted.
    pub fn record_outcomes(&mut self, o: &[RideOutcome]) -> Result<usize, StoreError> {
        let mut checked = Vec::with_capacity(o.len());
        for r in o {
            let at_ms = to_i64("outcome at_ms", r.at_ms)?;
            finite("outcome multiplier", r.multiplier)?;
            if let Some(fare) = r.fare {
                finite("outcome fare", fare)?;
            }
            checked.push((r, at_ms));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO ride_outcomes
                     (ride_id, region, cell, at_ms, completed, multiplier, fare, quote_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (r, at_ms) in checked {
                inserted += insert.execute(params![
                    r.ride_id,
                    r.region,
                    r.cell,
                    at_ms,
                    r.completed,
                    r.multiplier,
                    r.fare,
                    r.quote_id
                ])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    /// The zones that surge most and complete fewest rides over the `days`
    /// before `now_ms` (inclusive at both ends): the original design's
    /// "five least efficient surge zones" report. Returns every zone whose
    /// `RANK()` is at most `limit` (ties can make that more than `limit`
    /// rows), ordered by rank, region, cell.
    pub fn least_efficient_zones(
        &self,
        now_ms: u64,
        days: u32,
        limit: u32,
    ) -> Result<Vec<ZoneEfficiency>, StoreError> {
        let until = to_i64("now_ms", now_ms)?;
        let since = to_i64(
            "window start",
            now_ms.saturating_sub(u64::from(days) * DAY_MS),
        )?;
        let mut stmt = self.conn.prepare_cached(LEAST_EFFICIENT_SQL)?;
        let mut rows = stmt.query(params![since, until, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(ZoneEfficiency {
                region: r.get(0)?,
                cell: r.get(1)?,
                zone_name: r.get(2)?,
                average_multiplier: r.get(3)?,
                completion_rate: r.get(4)?,
                rides: get_u64(r, 5, "rides")?,
                surge_events: get_u64(r, 6, "surge_events")?,
                decrease_events: get_u64(r, 7, "decrease_events")?,
                inefficiency_score: r.get(8)?,
                rank: get_u32(r, 9, "rank")?,
            });
        }
        Ok(out)
    }

    /// A zone's snapshots since `since_ms` (inclusive), newest first, at most
    /// `limit` rows; rows of one tick are ordered by class.
    pub fn zone_history(
        &self,
        region: &str,
        cell: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let since = to_i64("since_ms", since_ms)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, class, supply, demand, multiplier FROM snapshots
             WHERE region = ?1 AND cell = ?2 AND at_ms >= ?3
             ORDER BY at_ms DESC, class, id DESC
             LIMIT ?4",
        )?;
        let mut rows = stmt.query(params![region, cell, since, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(HistoryRow {
                at_ms: get_u64(r, 0, "snapshot at_ms")?,
                class: r.get(1)?,
                supply: get_u32(r, 2, "snapshot supply")?,
                demand: get_u32(r, 3, "snapshot demand")?,
                multiplier: r.get(4)?,
            });
        }
        Ok(out)
    }

    /// A region's multiplier changes since `since_ms` (inclusive), newest
    /// first, at most `limit` rows; changes of one tick are ordered by cell.
    pub fn price_changes(
        &self,
        region: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<PriceChangeRow>, StoreError> {
        let since = to_i64("since_ms", since_ms)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, cell, old_multiplier, new_multiplier, reason, supply, demand
             FROM price_changes
             WHERE region = ?1 AND at_ms >= ?2
             ORDER BY at_ms DESC, cell, id DESC
             LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![region, since, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(PriceChangeRow {
                at_ms: get_u64(r, 0, "change at_ms")?,
                cell: r.get(1)?,
                old_multiplier: r.get(2)?,
                new_multiplier: r.get(3)?,
                reason: r.get(4)?,
                supply: get_u32(r, 5, "change supply")?,
                demand: get_u32(r, 6, "change demand")?,
            });
        }
        Ok(out)
    }

    /// Deletes snapshots, change-log rows and ride outcomes with `at_ms`
    /// strictly before `older_than_ms`, in one transaction, so the file stays
    /// bounded. Zones, last grids and meta are kept. Returns rows deleted.
    pub fn prune(&mut self, older_than_ms: u64) -> Result<usize, StoreError> {
        // A cutoff beyond i64::MAX means "everything": every stored time is
        // at most i64::MAX.
        let cutoff = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = 0;
        for table in ["snapshots", "price_changes", "ride_outcomes"] {
            deleted += tx.execute(
                &format!("DELETE FROM {table} WHERE at_ms < ?1"),
                params![cutoff],
            )?;
        }
        tx.commit()?;
        Ok(deleted)
    }
}

/// Reads a `zones` row selected as region, cell, name, min, max, active.
fn zone_from_row(r: &Row<'_>) -> Result<Zone, StoreError> {
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
fn to_i64(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| {
        StoreError::InvalidData(format!(
            "{what} {v} does not fit in a signed 64-bit integer"
        ))
    })
}

/// A stored `INTEGER` as `u64`; a negative value means the file is corrupt.
fn from_i64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::InvalidData(format!("stored {what} is negative: {v}")))
}

/// A multiplier or fare that SQLite can store faithfully (NaN would become
/// NULL, infinities cannot be compared meaningfully).
fn finite(what: &str, v: f64) -> Result<f64, StoreError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(StoreError::InvalidData(format!(
            "{what} is not finite: {v}"
        )))
    }
}

/// Column `idx` as a non-negative integer; anything else is corrupt data.
fn get_u64(r: &Row<'_>, idx: usize, what: &str) -> Result<u64, StoreError> {
    match r.get_ref(idx)? {
        ValueRef::Integer(v) => from_i64(what, v),
        other => Err(StoreError::InvalidData(format!(
            "stored {what} is not an integer: {:?}",
            other.data_type()
        ))),
    }
}

/// Column `idx` as a `u32`; out of range is corrupt data.
fn get_u32(r: &Row<'_>, idx: usize, what: &str) -> Result<u32, StoreError> {
    let v = get_u64(r, idx, what)?;
    u32::try_from(v).map_err(|_| StoreError::InvalidData(format!("stored {what} {v} exceeds u32")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(v, 1);
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
        let p = plan(LEAST_EFFICIENT_SQL);
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
            fare: None,
            quote_id: None,
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
                .execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'", [])
                .unwrap();
        }
        match Store::open(&path) {
            Err(StoreError::UnsupportedSchema { found }) => assert!(found.contains('2'), "{found}"),
            other => panic!("expected UnsupportedSchema, got {other:?}"),
        }
    }
}
