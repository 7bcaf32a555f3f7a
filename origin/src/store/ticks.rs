//! Tick persistence: what one tick writes (zones seen for the first time,
//! snapshots, the change log, the last grid, the market state) in one
//! transaction, and what a restart reads back.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    finite, from_i64, get_u64, to_i64, zone_from_row, Store, StoreError, StoredGrid, StoredState,
    TickRecord, Zone,
};

impl Store {
    /// Inserts a zone or replaces the one with the same region and cell, so
    /// configuration can be re-applied at every start.
    pub fn upsert_zone(&mut self, z: &Zone) -> Result<(), StoreError> {
        check_zone(z)?;
        write_zone(&self.conn, z)
    }

    /// The zones of one region, sorted by cell.
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

    /// Every zone, sorted by region then cell; a restart reads them so it
    /// writes only zones it has not seen.
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

    /// Stores one region's tick; see [`Store::record_ticks`].
    pub fn record_tick(&mut self, t: &TickRecord) -> Result<(), StoreError> {
        self.record_ticks(&[], std::slice::from_ref(t))
    }

    /// Stores one tick of every region in one transaction: the zones priced
    /// for the first time, each region's snapshots and change log, its grid
    /// and market state (unless a newer generation is already stored), and
    /// `last_tick_at`. Either all of it is stored or none.
    pub fn record_ticks(&mut self, zones: &[Zone], ticks: &[TickRecord]) -> Result<(), StoreError> {
        for z in zones {
            check_zone(z)?;
        }
        for t in ticks {
            check_tick(t)?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for z in zones {
            write_zone(&tx, z)?;
        }
        for t in ticks {
            write_tick(&tx, t)?;
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

    /// Each region's last forecast history, sorted by region: (region,
    /// bytes).
    pub fn forecast_histories(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT region, history FROM forecast_history ORDER BY region")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    /// The pricing state every region's last tick left, sorted by region,
    /// so a restarted origin resumes its windows where they were.
    pub fn market_states(&self) -> Result<Vec<StoredState>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT region, generation, at_ms, state FROM market_state ORDER BY region",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(StoredState {
                region: r.get(0)?,
                generation: get_u64(r, 1, "state generation")?,
                at_ms: get_u64(r, 2, "state at_ms")?,
                state: r.get(3)?,
            });
        }
        Ok(out)
    }
}

/// Refuses a zone whose bounds cannot be stored or make no sense.
fn check_zone(z: &Zone) -> Result<(), StoreError> {
    let min = finite("zone min_multiplier", z.min_multiplier)?;
    let max = finite("zone max_multiplier", z.max_multiplier)?;
    if min > max {
        return Err(StoreError::InvalidData(format!(
            "zone {} {}: min_multiplier {min} is above max_multiplier {max}",
            z.region, z.cell
        )));
    }
    Ok(())
}

/// Inserts or replaces a zone (checked by [`check_zone`]).
fn write_zone(conn: &Connection, z: &Zone) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO zones (region, cell, name, min_multiplier, max_multiplier, active)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (region, cell) DO UPDATE SET
             name = excluded.name,
             min_multiplier = excluded.min_multiplier,
             max_multiplier = excluded.max_multiplier,
             active = excluded.active",
        params![
            z.region,
            z.cell,
            z.name,
            z.min_multiplier,
            z.max_multiplier,
            z.active
        ],
    )?;
    Ok(())
}

/// Refuses a tick with values SQLite cannot hold faithfully, before any
/// write.
fn check_tick(t: &TickRecord) -> Result<(), StoreError> {
    to_i64("tick at_ms", t.at_ms)?;
    to_i64("tick generation", t.generation)?;
    finite("tick max_multiplier", t.max_multiplier)?;
    for s in &t.snapshots {
        finite("snapshot multiplier", s.multiplier)?;
    }
    for c in &t.changes {
        finite("change old_multiplier", c.old_multiplier)?;
        finite("change new_multiplier", c.new_multiplier)?;
    }
    Ok(())
}

/// Writes one region's tick (checked by [`check_tick`]) inside the caller's
/// transaction.
fn write_tick(conn: &Connection, t: &TickRecord) -> Result<(), StoreError> {
    let at_ms = to_i64("tick at_ms", t.at_ms)?;
    let generation = to_i64("tick generation", t.generation)?;
    let mut insert = conn.prepare_cached(
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
    conn.prepare_cached(
        "INSERT INTO daily_max (region, day, max_multiplier) VALUES (?1, ?2, ?3)
         ON CONFLICT (region, day) DO UPDATE SET
             max_multiplier = MAX(max_multiplier, excluded.max_multiplier)",
    )?
    .execute(params![
        t.region,
        to_i64(
            "tick day",
            shared::emergency::day_of(shared::time::Timestamp(t.at_ms))
        )?,
        t.max_multiplier
    ])?;
    let mut insert = conn.prepare_cached(
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
    let replaced = conn.execute(
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
            "tick generation is not newer than the stored grid; grid and state kept"
        );
    } else {
        if !t.state.is_empty() {
            conn.execute(
                "INSERT INTO market_state (region, generation, at_ms, state)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (region) DO UPDATE SET
                     generation = excluded.generation,
                     at_ms = excluded.at_ms,
                     state = excluded.state",
                params![t.region, generation, at_ms, t.state],
            )?;
        }
        if let Some(h) = &t.forecast_history {
            conn.execute(
                "INSERT INTO forecast_history (region, at_ms, history)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (region) DO UPDATE SET
                     at_ms = excluded.at_ms,
                     history = excluded.history",
                params![t.region, at_ms, h],
            )?;
        }
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('last_tick_at', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![at_ms],
    )?;
    Ok(())
}
