//! The store's schema, its version, and the migrations from older files.
//!
//! A fresh file gets [`SCHEMA`] and `schema_version` = [`SCHEMA_VERSION`].
//! An older file is migrated forward in the same transaction that opens it,
//! one version step at a time, so a crash mid-migration leaves the old
//! version intact. A newer file is refused: this build would misread it.

use rusqlite::{params, OptionalExtension, Transaction};

use super::StoreError;

/// The schema version this build reads and writes, kept in `meta`.
pub const SCHEMA_VERSION: i64 = 6;

/// The schema at [`SCHEMA_VERSION`] (with [`MARKET_STATE`]); every
/// statement is idempotent.
pub(super) const SCHEMA: &str = "
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
    quote_id    TEXT,
    fare_minor  INTEGER CHECK (fare_minor >= 0),
    currency    TEXT
);
CREATE INDEX IF NOT EXISTS ride_outcomes_by_zone_time ON ride_outcomes (region, cell, at_ms);
CREATE INDEX IF NOT EXISTS ride_outcomes_by_time ON ride_outcomes (at_ms);
";

/// The durable windows (schema 2): each region's market state as of its
/// last stored grid. Part of a fresh schema and of the 1 → 2 migration.
const MARKET_STATE: &str = "
CREATE TABLE IF NOT EXISTS market_state (
    region      TEXT    PRIMARY KEY,
    generation  INTEGER NOT NULL CHECK (generation >= 0),
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    state       BLOB    NOT NULL
);
";

/// Version 1 → 2: money in integer minor units (`fare` REAL becomes
/// `fare_minor` INTEGER plus `currency`); then [`MARKET_STATE`]. Version 1 stored decimal fares of two-decimal
/// currencies (the only kind the edge's tariffs have), so `fare × 100`
/// rounded is exact; the currency of those rows is unknown (NULL).
const V1_TO_V2: &str = "
ALTER TABLE ride_outcomes ADD COLUMN fare_minor INTEGER CHECK (fare_minor >= 0);
ALTER TABLE ride_outcomes ADD COLUMN currency TEXT;
UPDATE ride_outcomes SET fare_minor = MAX(0, CAST(ROUND(fare * 100) AS INTEGER))
    WHERE fare IS NOT NULL;
ALTER TABLE ride_outcomes DROP COLUMN fare;
";

/// Version 2 → 3: the pickup wait of a ride (ms from confirmation to
/// pickup), known for bookings that reach the origin from the edge.
const V2_TO_V3: &str = "
ALTER TABLE ride_outcomes ADD COLUMN wait_ms INTEGER CHECK (wait_ms >= 0);
";

/// Version 3 → 4: each region's highest published multiplier per day (UTC),
/// kept for the lawful emergency cap (never pruned: a row per region per
/// day), filled from the snapshots already stored.
const V3_TO_V4: &str = "
CREATE TABLE IF NOT EXISTS daily_max (
    region          TEXT    NOT NULL,
    day             INTEGER NOT NULL CHECK (day >= 0),
    max_multiplier  REAL    NOT NULL,
    PRIMARY KEY (region, day)
);
INSERT OR IGNORE INTO daily_max (region, day, max_multiplier)
    SELECT region, at_ms / 86400000, MAX(multiplier) FROM snapshots
    GROUP BY region, at_ms / 86400000;
";

/// Version 4 → 5: each region's forecast history (`shared::forecast`),
/// written once per 5-minute bucket; the open buckets travel in
/// `market_state` with every tick.
const V4_TO_V5: &str = "
CREATE TABLE IF NOT EXISTS forecast_history (
    region      TEXT    PRIMARY KEY,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    history     BLOB    NOT NULL
);
";

/// Creates the schema in a fresh file or migrates an older one, inside the
/// caller's transaction.
const V5_TO_V6: &str = "
CREATE TABLE IF NOT EXISTS arm_events (
    event_id    TEXT    PRIMARY KEY,
    experiment  TEXT    NOT NULL,
    region      TEXT    NOT NULL,
    arm         TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    multiplier  REAL    NOT NULL,
    fare_minor  INTEGER CHECK (fare_minor >= 0),
    wait_ms     INTEGER CHECK (wait_ms >= 0),
    unit        INTEGER NOT NULL CHECK (unit >= 0)
);
CREATE INDEX IF NOT EXISTS arm_events_by_experiment ON arm_events (region, experiment, at_ms);
CREATE INDEX IF NOT EXISTS arm_events_by_time ON arm_events (at_ms);
CREATE TABLE IF NOT EXISTS experiment_values (
    region      TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    PRIMARY KEY (region, value)
);
CREATE TABLE IF NOT EXISTS experiment_ends (
    region      TEXT    NOT NULL,
    experiment  TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    PRIMARY KEY (region, experiment)
);
";

pub(super) fn create_or_migrate(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);")?;
    let found: Option<rusqlite::types::Value> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let mut version = match found {
        None => {
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(MARKET_STATE)?;
            tx.execute_batch(V2_TO_V3)?;
            tx.execute_batch(V3_TO_V4)?;
            tx.execute_batch(V4_TO_V5)?;
            tx.execute_batch(V5_TO_V6)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION],
            )?;
            return Ok(());
        }
        Some(rusqlite::types::Value::Integer(v)) if (1..=SCHEMA_VERSION).contains(&v) => v,
        Some(other) => {
            return Err(StoreError::UnsupportedSchema {
                found: format!("{other:?}"),
            })
        }
    };
    if version == 1 {
        tx.execute_batch(V1_TO_V2)?;
        tx.execute_batch(MARKET_STATE)?;
        version = 2;
        tracing::info!("store migrated from schema version 1 to 2");
    }
    if version == 2 {
        tx.execute_batch(V2_TO_V3)?;
        version = 3;
        tracing::info!("store migrated from schema version 2 to 3");
    }
    if version == 3 {
        tx.execute_batch(V3_TO_V4)?;
        version = 4;
        tracing::info!("store migrated from schema version 3 to 4");
    }
    if version == 4 {
        tx.execute_batch(V4_TO_V5)?;
        version = 5;
        tracing::info!("store migrated from schema version 4 to 5");
    }
    if version == 5 {
        tx.execute_batch(V5_TO_V6)?;
        version = 6;
        tracing::info!("store migrated from schema version 5 to 6");
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        params![version],
    )?;
    Ok(())
}
