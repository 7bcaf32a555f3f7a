//! The cluster's shared history in PostgreSQL: every member writes its
//! ticks and the ride outcomes it receives, and any member answers the
//! analytics for every region.
//!
//! The same tables and queries as the embedded SQLite store, in
//! PostgreSQL's dialect: `BIGINT` times and generations, `DOUBLE
//! PRECISION` multipliers, `BOOLEAN` flags, `BIGSERIAL` row ids (and
//! `ctid` for pruning). A tick's snapshots and changes go in as arrays
//! (`UNNEST`), one statement each. What a restart of a single node reads
//! back (the market state) is not kept here: in cluster mode a region's
//! owner continues from the cluster's own stored grid and stream.
//!
//! The connection is opened lazily and dropped on any error, so a
//! database that went away is reconnected to on the next call; every call
//! runs on a blocking thread (the `postgres` crate is tokio-postgres with
//! its own small runtime), like the SQLite store's.

use postgres::{Client, NoTls};

use shared::experiment::results::Tally;

use super::{
    finite, to_i64, ArmRecord, HistoryRow, RideOutcome, StoreError, TickRecord, Zone,
    ZoneEfficiency,
};

/// The schema; idempotent, created under an advisory lock so members
/// starting together do not race.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS zones (
    region          TEXT             NOT NULL,
    cell            TEXT             NOT NULL,
    name            TEXT             NOT NULL,
    min_multiplier  DOUBLE PRECISION NOT NULL,
    max_multiplier  DOUBLE PRECISION NOT NULL,
    active          BOOLEAN          NOT NULL,
    PRIMARY KEY (region, cell)
);
CREATE TABLE IF NOT EXISTS snapshots (
    id          BIGSERIAL PRIMARY KEY,
    region      TEXT             NOT NULL,
    cell        TEXT             NOT NULL,
    class       TEXT             NOT NULL,
    at_ms       BIGINT           NOT NULL CHECK (at_ms >= 0),
    supply      BIGINT           NOT NULL CHECK (supply >= 0),
    demand      BIGINT           NOT NULL CHECK (demand >= 0),
    multiplier  DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_zone_time ON snapshots (region, cell, at_ms);
CREATE INDEX IF NOT EXISTS snapshots_by_time ON snapshots (at_ms);
CREATE TABLE IF NOT EXISTS price_changes (
    id              BIGSERIAL PRIMARY KEY,
    region          TEXT             NOT NULL,
    cell            TEXT             NOT NULL,
    at_ms           BIGINT           NOT NULL CHECK (at_ms >= 0),
    old_multiplier  DOUBLE PRECISION NOT NULL,
    new_multiplier  DOUBLE PRECISION NOT NULL,
    reason          TEXT             NOT NULL,
    supply          BIGINT           NOT NULL CHECK (supply >= 0),
    demand          BIGINT           NOT NULL CHECK (demand >= 0)
);
CREATE INDEX IF NOT EXISTS price_changes_by_region_time ON price_changes (region, at_ms);
CREATE INDEX IF NOT EXISTS price_changes_by_time ON price_changes (at_ms);
CREATE TABLE IF NOT EXISTS forecast_history (
    region      TEXT   PRIMARY KEY,
    at_ms       BIGINT NOT NULL CHECK (at_ms >= 0),
    history     BYTEA  NOT NULL
);
CREATE TABLE IF NOT EXISTS daily_max (
    region          TEXT             NOT NULL,
    day             BIGINT           NOT NULL CHECK (day >= 0),
    max_multiplier  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (region, day)
);
CREATE TABLE IF NOT EXISTS last_grids (
    region      TEXT   PRIMARY KEY,
    generation  BIGINT NOT NULL CHECK (generation >= 0),
    at_ms       BIGINT NOT NULL CHECK (at_ms >= 0),
    grid_json   TEXT   NOT NULL
);
CREATE TABLE IF NOT EXISTS ride_outcomes (
    ride_id     TEXT             PRIMARY KEY,
    region      TEXT             NOT NULL,
    cell        TEXT             NOT NULL,
    at_ms       BIGINT           NOT NULL CHECK (at_ms >= 0),
    completed   BOOLEAN          NOT NULL,
    multiplier  DOUBLE PRECISION NOT NULL,
    quote_id    TEXT,
    fare_minor  BIGINT CHECK (fare_minor >= 0),
    currency    TEXT
);
ALTER TABLE ride_outcomes ADD COLUMN IF NOT EXISTS wait_ms BIGINT CHECK (wait_ms >= 0);
CREATE INDEX IF NOT EXISTS ride_outcomes_by_zone_time ON ride_outcomes (region, cell, at_ms);
CREATE INDEX IF NOT EXISTS ride_outcomes_by_time ON ride_outcomes (at_ms);
CREATE TABLE IF NOT EXISTS arm_events (
    event_id    TEXT             PRIMARY KEY,
    experiment  TEXT             NOT NULL,
    region      TEXT             NOT NULL,
    arm         TEXT             NOT NULL,
    policy      TEXT             NOT NULL,
    kind        TEXT             NOT NULL,
    at_ms       BIGINT           NOT NULL CHECK (at_ms >= 0),
    multiplier  DOUBLE PRECISION NOT NULL,
    fare_minor  BIGINT CHECK (fare_minor >= 0),
    wait_ms     BIGINT CHECK (wait_ms >= 0),
    unit        BIGINT NOT NULL CHECK (unit >= 0)
);
CREATE INDEX IF NOT EXISTS arm_events_by_experiment ON arm_events (region, experiment, at_ms);
CREATE INDEX IF NOT EXISTS arm_events_by_time ON arm_events (at_ms);
CREATE TABLE IF NOT EXISTS experiment_values (
    region      TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    at_ms       BIGINT NOT NULL CHECK (at_ms >= 0),
    PRIMARY KEY (region, value)
);
CREATE TABLE IF NOT EXISTS experiment_ends (
    region      TEXT   NOT NULL,
    experiment  TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    at_ms       BIGINT NOT NULL CHECK (at_ms >= 0),
    PRIMARY KEY (region, experiment)
);
";

/// The least-efficient-zones report ([`super::analytics`]'s query) in
/// PostgreSQL's dialect.
const LEAST_EFFICIENT_SQL: &str = "
WITH zone_performance AS (
    SELECT s.region, s.cell,
           COALESCE(z.name, s.region || ' ' || s.cell) AS zone_name,
           AVG(s.multiplier) AS avg_multiplier
    FROM snapshots s
    LEFT JOIN zones z ON z.region = s.region AND z.cell = s.cell
    WHERE s.at_ms >= $1 AND s.at_ms <= $2 AND (z.active IS NULL OR z.active)
    GROUP BY s.region, s.cell, z.name
),
pricing_events AS (
    SELECT region, cell,
           SUM(CASE WHEN new_multiplier > old_multiplier THEN 1 ELSE 0 END) AS surge_events,
           SUM(CASE WHEN new_multiplier < old_multiplier THEN 1 ELSE 0 END) AS decrease_events
    FROM price_changes
    WHERE at_ms >= $1 AND at_ms <= $2
    GROUP BY region, cell
),
ride_completion AS (
    SELECT region, cell, COUNT(*) AS rides,
           ROUND((SUM(CASE WHEN completed THEN 1 ELSE 0 END) * 100.0 / COUNT(*))::numeric, 2)
               ::double precision AS completion_rate
    FROM ride_outcomes
    WHERE at_ms >= $1 AND at_ms <= $2
    GROUP BY region, cell
),
efficiency_ranking AS (
    SELECT zp.region, zp.cell, zp.zone_name, zp.avg_multiplier,
           COALESCE(rc.completion_rate, 0) AS completion_rate,
           COALESCE(rc.rides, 0) AS rides,
           COALESCE(pe.surge_events, 0)::bigint AS surge_events,
           COALESCE(pe.decrease_events, 0)::bigint AS decrease_events,
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
WHERE inefficiency_rank <= $3
ORDER BY inefficiency_rank, region, cell
";

/// A PostgreSQL history (see the module documentation).
pub struct PgStore {
    url: String,
    client: Option<Client>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PgStore")
            .field("connected", &self.client.is_some())
            .finish()
    }
}

fn to_u64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::InvalidData(format!("{what} is negative: {v}")))
}

fn to_u32(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::InvalidData(format!("{what} out of range: {v}")))
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The blocking client's drop runs its own runtime, which panics on
        // a thread that drives async tasks (the server drops its state in
        // one): drop it on a thread of its own.
        if let Some(c) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(c));
        }
    }
}

impl PgStore {
    /// A store for `url` (`postgres://user@host:port/db`). Tries to
    /// connect and create the schema now, and returns the error with the
    /// store if it could not: a member starts without its database (ticks
    /// wait in the backlog) and connects when the database answers.
    pub fn open(url: &str) -> (Self, Option<StoreError>) {
        let mut s = Self {
            url: url.to_owned(),
            client: None,
        };
        let err = s.client().err();
        (s, err)
    }

    /// The connection, opened (with the schema ensured) if there is none.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_none() {
            let mut c = Client::connect(&self.url, NoTls)?;
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock(4242001)", &[])?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()?;
            self.client = Some(c);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::InvalidData("no connection".into()))
    }

    /// Runs `f` on the connection; any error drops the connection, so the
    /// next call reconnects.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self.client().and_then(f);
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

impl super::History for PgStore {
    fn record_ticks(&mut self, zones: &[Zone], ticks: &[TickRecord]) -> Result<(), StoreError> {
        for z in zones {
            finite("zone min_multiplier", z.min_multiplier)?;
            finite("zone max_multiplier", z.max_multiplier)?;
        }
        let mut rows = Vec::with_capacity(ticks.len());
        for t in ticks {
            let at = to_i64("tick at_ms", t.at_ms)?;
            let generation = to_i64("tick generation", t.generation)?;
            finite("tick max_multiplier", t.max_multiplier)?;
            for s in &t.snapshots {
                finite("snapshot multiplier", s.multiplier)?;
            }
            for c in &t.changes {
                finite("change old_multiplier", c.old_multiplier)?;
                finite("change new_multiplier", c.new_multiplier)?;
            }
            rows.push((t, at, generation));
        }
        self.with(|c| {
            let mut tx = c.transaction()?;
            for z in zones {
                tx.execute(
                    "INSERT INTO zones (region, cell, name, min_multiplier, max_multiplier, active)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (region, cell) DO UPDATE SET
                         name = excluded.name, min_multiplier = excluded.min_multiplier,
                         max_multiplier = excluded.max_multiplier, active = excluded.active",
                    &[&z.region, &z.cell, &z.name, &z.min_multiplier, &z.max_multiplier, &z.active],
                )?;
            }
            for (t, at, generation) in rows {
                let cells: Vec<&str> = t.snapshots.iter().map(|s| s.cell.as_str()).collect();
                let classes: Vec<&str> = t.snapshots.iter().map(|s| s.class.as_str()).collect();
                let supply: Vec<i64> = t.snapshots.iter().map(|s| i64::from(s.supply)).collect();
                let demand: Vec<i64> = t.snapshots.iter().map(|s| i64::from(s.demand)).collect();
                let mult: Vec<f64> = t.snapshots.iter().map(|s| s.multiplier).collect();
                tx.execute(
                    "INSERT INTO snapshots (region, cell, class, at_ms, supply, demand, multiplier)
                     SELECT $1, u.cell, u.class, $2, u.supply, u.demand, u.multiplier
                     FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::float8[])
                         AS u(cell, class, supply, demand, multiplier)",
                    &[&t.region, &at, &cells, &classes, &supply, &demand, &mult],
                )?;
                let cells: Vec<&str> = t.changes.iter().map(|c| c.cell.as_str()).collect();
                let old: Vec<f64> = t.changes.iter().map(|c| c.old_multiplier).collect();
                let new: Vec<f64> = t.changes.iter().map(|c| c.new_multiplier).collect();
                let reasons: Vec<&str> = t.changes.iter().map(|c| c.reason.as_str()).collect();
                let supply: Vec<i64> = t.changes.iter().map(|c| i64::from(c.supply)).collect();
                let demand: Vec<i64> = t.changes.iter().map(|c| i64::from(c.demand)).collect();
                tx.execute(
                    "INSERT INTO price_changes
                         (region, cell, at_ms, old_multiplier, new_multiplier, reason, supply, demand)
                     SELECT $1, u.cell, $2, u.old_m, u.new_m, u.reason, u.supply, u.demand
                     FROM UNNEST($3::text[], $4::float8[], $5::float8[], $6::text[],
                                 $7::bigint[], $8::bigint[])
                         AS u(cell, old_m, new_m, reason, supply, demand)",
                    &[&t.region, &at, &cells, &old, &new, &reasons, &supply, &demand],
                )?;
                let day = to_i64(
                    "tick day",
                    shared::emergency::day_of(shared::time::Timestamp(t.at_ms)),
                )?;
                tx.execute(
                    "INSERT INTO daily_max (region, day, max_multiplier) VALUES ($1, $2, $3)
                     ON CONFLICT (region, day) DO UPDATE SET
                         max_multiplier = GREATEST(daily_max.max_multiplier, excluded.max_multiplier)",
                    &[&t.region, &day, &t.max_multiplier],
                )?;
                tx.execute(
                    "INSERT INTO last_grids (region, generation, at_ms, grid_json)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (region) DO UPDATE SET generation = excluded.generation,
                         at_ms = excluded.at_ms, grid_json = excluded.grid_json
                     WHERE excluded.generation > last_grids.generation",
                    &[&t.region, &generation, &at, &t.grid_json],
                )?;
                if let Some(h) = &t.forecast_history {
                    tx.execute(
                        "INSERT INTO forecast_history (region, at_ms, history) VALUES ($1, $2, $3)
                         ON CONFLICT (region) DO UPDATE SET at_ms = excluded.at_ms,
                             history = excluded.history
                         WHERE excluded.at_ms >= forecast_history.at_ms",
                        &[&t.region, &at, h],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn record_outcomes(&mut self, o: &[RideOutcome]) -> Result<usize, StoreError> {
        let mut checked = Vec::with_capacity(o.len());
        for r in o {
            let at = to_i64("outcome at_ms", r.at_ms)?;
            finite("outcome multiplier", r.multiplier)?;
            let fare = r
                .fare_minor
                .map(|f| to_i64("outcome fare_minor", f))
                .transpose()?;
            let wait = r
                .wait_ms
                .map(|w| to_i64("outcome wait_ms", w))
                .transpose()?;
            checked.push((r, at, fare, wait));
        }
        self.with(|c| {
            let mut tx = c.transaction()?;
            let mut inserted = 0;
            for (r, at, fare, wait) in checked {
                inserted += tx.execute(
                    "INSERT INTO ride_outcomes (ride_id, region, cell, at_ms, completed, multiplier,
                                                fare_minor, currency, quote_id, wait_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (ride_id) DO NOTHING",
                    &[
                        &r.ride_id,
                        &r.region,
                        &r.cell,
                        &at,
                        &r.completed,
                        &r.multiplier,
                        &fare,
                        &r.currency,
                        &r.quote_id,
                        &wait,
                    ],
                )? as usize;
            }
            tx.commit()?;
            Ok(inserted)
        })
    }

    fn record_arm_events(&mut self, rows: &[ArmRecord]) -> Result<usize, StoreError> {
        let checked = ArmRecord::checked(rows)?;
        self.with(|c| {
            let mut tx = c.transaction()?;
            let mut inserted = 0;
            for (r, at, fare, wait, unit) in &checked {
                inserted += tx.execute(
                    "INSERT INTO arm_events (event_id, experiment, region, arm, policy, kind,
                                             at_ms, multiplier, fare_minor, wait_ms, unit)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (event_id) DO NOTHING",
                    &[
                        &r.event_id,
                        &r.experiment,
                        &r.region,
                        &r.event.arm.as_str(),
                        &r.policy,
                        &r.event.kind.as_str(),
                        at,
                        &r.event.multiplier,
                        fare,
                        wait,
                        unit,
                    ],
                )? as usize;
            }
            tx.commit()?;
            Ok(inserted)
        })
    }

    fn record_experiment_end(
        &mut self,
        region: &str,
        experiment: &str,
        reason: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let at = to_i64("experiment end at_ms", at_ms)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO experiment_ends (experiment, region, reason, at_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (region, experiment) DO NOTHING",
                &[&experiment, &region, &reason, &at],
            )?;
            Ok(())
        })
    }

    fn record_experiment_value(
        &mut self,
        region: &str,
        value: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let at = to_i64("experiment value at_ms", at_ms)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO experiment_values (region, value, at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (region, value) DO NOTHING",
                &[&region, &value, &at],
            )?;
            Ok(())
        })
    }

    fn experiment_values(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.with(|c| {
            Ok(c.query(
                "SELECT region, value FROM experiment_values ORDER BY at_ms",
                &[],
            )?)
        })?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn experiment_ends(&mut self, region: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.with(|c| {
            Ok(c.query(
                "SELECT experiment, reason FROM experiment_ends WHERE region = $1 ORDER BY experiment",
                &[&region],
            )?)
        })?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn recent_arm_outcomes(
        &mut self,
        region: &str,
        experiment: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(String, bool, Option<u64>)>, StoreError> {
        let (from, to) = (to_i64("from_ms", from_ms)?, to_i64("to_ms", to_ms)?);
        let rows = self.with(|c| {
            Ok(c.query(
                "SELECT arm, kind = 'completed', wait_ms FROM arm_events
                 WHERE region = $1 AND experiment = $2 AND at_ms >= $3 AND at_ms < $4
                   AND kind IN ('completed', 'cancelled', 'failed')
                 ORDER BY at_ms DESC LIMIT $5",
                &[&region, &experiment, &from, &to, &i64::from(limit)],
            )?)
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                let wait: Option<i64> = r.get(2);
                (r.get(0), r.get(1), wait.and_then(|w| u64::try_from(w).ok()))
            })
            .collect())
    }

    fn arm_tallies(
        &mut self,
        region: &str,
        experiment: &str,
        limit: u32,
    ) -> Result<Vec<Tally>, StoreError> {
        let rows = self.with(|c| {
            Ok(c.query(
                "SELECT arm, unit, kind, COUNT(*), SUM(multiplier),
                        COALESCE(SUM(fare_minor), 0)::BIGINT, COALESCE(SUM(wait_ms), 0)::BIGINT,
                        COUNT(wait_ms)
                 FROM arm_events WHERE region = $1 AND experiment = $2
                 GROUP BY arm, unit, kind LIMIT $3",
                &[&region, &experiment, &i64::from(limit)],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                ArmRecord::tally_from(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    [r.get(3), r.get(5), r.get(6), r.get(7)],
                    r.get(4),
                )
            })
            .collect()
    }

    fn least_efficient_zones(
        &mut self,
        now_ms: u64,
        days: u32,
        limit: u32,
    ) -> Result<Vec<ZoneEfficiency>, StoreError> {
        let until = to_i64("now_ms", now_ms)?;
        let since = to_i64(
            "window start",
            now_ms.saturating_sub(u64::from(days) * super::analytics::DAY_MS),
        )?;
        let limit = i64::from(limit);
        self.with(|c| {
            let mut out = Vec::new();
            for r in c.query(LEAST_EFFICIENT_SQL, &[&since, &until, &limit])? {
                out.push(ZoneEfficiency {
                    region: r.try_get(0)?,
                    cell: r.try_get(1)?,
                    zone_name: r.try_get(2)?,
                    average_multiplier: r.try_get(3)?,
                    completion_rate: r.try_get(4)?,
                    rides: to_u64("rides", r.try_get(5)?)?,
                    surge_events: to_u64("surge_events", r.try_get(6)?)?,
                    decrease_events: to_u64("decrease_events", r.try_get(7)?)?,
                    inefficiency_score: r.try_get(8)?,
                    rank: to_u32("rank", r.try_get(9)?)?,
                });
            }
            Ok(out)
        })
    }

    fn zone_history(
        &mut self,
        region: &str,
        cell: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let since = to_i64("since_ms", since_ms)?;
        let limit = i64::from(limit);
        self.with(|c| {
            let mut out = Vec::new();
            for r in c.query(
                "SELECT at_ms, class, supply, demand, multiplier FROM snapshots
                 WHERE region = $1 AND cell = $2 AND at_ms >= $3
                 ORDER BY at_ms DESC, class, id DESC LIMIT $4",
                &[&region, &cell, &since, &limit],
            )? {
                out.push(HistoryRow {
                    at_ms: to_u64("snapshot at_ms", r.try_get(0)?)?,
                    class: r.try_get(1)?,
                    supply: to_u32("snapshot supply", r.try_get(2)?)?,
                    demand: to_u32("snapshot demand", r.try_get(3)?)?,
                    multiplier: r.try_get(4)?,
                });
            }
            Ok(out)
        })
    }

    fn prune_batch(&mut self, older_than_ms: u64, limit: u32) -> Result<usize, StoreError> {
        let cutoff = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        self.with(|c| {
            let mut tx = c.transaction()?;
            let mut deleted = 0;
            for table in super::retention::PRUNED_TABLES {
                deleted += tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE ctid IN
                             (SELECT ctid FROM {table} WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)"
                    ),
                    &[&cutoff, &limit],
                )? as usize;
            }
            let day = i64::try_from(super::retention::daily_max_cutoff_day(older_than_ms))
                .unwrap_or(i64::MAX);
            deleted += tx.execute(
                "DELETE FROM daily_max WHERE ctid IN
                     (SELECT ctid FROM daily_max WHERE day < $1 LIMIT $2)",
                &[&day, &limit],
            )? as usize;
            tx.commit()?;
            Ok(deleted)
        })
    }

    fn forecast_history(&mut self, region: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT history FROM forecast_history WHERE region = $1",
                &[&region],
            )?;
            Ok(row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?)
        })
    }

    fn recent_outcomes(
        &mut self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(bool, Option<u64>)>, StoreError> {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let (from, to, limit) = (ms(from_ms), ms(to_ms), i64::from(limit));
        self.with(|c| {
            let rows = c.query(
                "SELECT completed, wait_ms FROM ride_outcomes
                 WHERE region = $1 AND at_ms >= $2 AND at_ms < $3
                 ORDER BY at_ms DESC LIMIT $4",
                &[&region, &from, &to, &limit],
            )?;
            rows.iter()
                .map(|r| {
                    let done: bool = r.try_get(0)?;
                    let wait: Option<i64> = r.try_get(1)?;
                    Ok((done, wait.and_then(|w| u64::try_from(w).ok())))
                })
                .collect()
        })
    }

    fn daily_maxima(
        &mut self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<f64>, StoreError> {
        let day = |ms: u64| {
            i64::try_from(shared::emergency::day_of(shared::time::Timestamp(ms)))
                .unwrap_or(i64::MAX)
        };
        let (from, to) = (day(from_ms), day(to_ms));
        self.with(|c| {
            let rows = c.query(
                "SELECT max_multiplier FROM daily_max WHERE region = $1 AND day >= $2 AND day < $3",
                &[&region, &from, &to],
            )?;
            rows.iter()
                .map(|r| r.try_get::<_, f64>(0).map_err(StoreError::from))
                .collect()
        })
    }
}
