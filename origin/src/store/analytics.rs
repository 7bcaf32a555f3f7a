//! Ride outcomes and the report queries: the least efficient surge zones,
//! a zone's history, a region's recent price changes.

use rusqlite::{params, TransactionBehavior};

use super::{
    finite, get_u32, get_u64, to_i64, HistoryRow, PriceChangeRow, RideOutcome, Store, StoreError,
    ZoneEfficiency,
};

/// Milliseconds in a day, for the analysis window.
pub(super) const DAY_MS: u64 = 86_400_000;

/// The original design's \"five least efficient surge zones\" query, ported to
/// SQLite. `?1`/`?2` bound the window (inclusive), `?3` is the highest rank
/// returned. Unlike the original, each source is aggregated in its own CTE
/// before joining, so snapshots are not multiplied by change-log rows.
pub(super) const LEAST_EFFICIENT_SQL: &str = "
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

impl Store {
    /// Stores ride outcomes in one transaction. A ride already stored is
    /// ignored (reports are retried), so the count returned is the rows
    /// actually inserted.
    pub fn record_outcomes(&mut self, o: &[RideOutcome]) -> Result<usize, StoreError> {
        let mut checked = Vec::with_capacity(o.len());
        for r in o {
            let at_ms = to_i64("outcome at_ms", r.at_ms)?;
            finite("outcome multiplier", r.multiplier)?;
            let fare = r
                .fare_minor
                .map(|f| to_i64("outcome fare_minor", f))
                .transpose()?;
            let wait = r
                .wait_ms
                .map(|w| to_i64("outcome wait_ms", w))
                .transpose()?;
            checked.push((r, at_ms, fare, wait));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO ride_outcomes
                     (ride_id, region, cell, at_ms, completed, multiplier, fare_minor,
                      currency, quote_id, wait_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for (r, at_ms, fare, wait) in checked {
                inserted += insert.execute(params![
                    r.ride_id,
                    r.region,
                    r.cell,
                    at_ms,
                    r.completed,
                    r.multiplier,
                    fare,
                    r.currency,
                    r.quote_id,
                    wait
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

    /// The region's highest published multiplier of each day (UTC) with
    /// ticks in `[from_ms, to_ms)` (days are whole: the bounds are taken
    /// to their day).
    pub fn daily_maxima(
        &self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<f64>, StoreError> {
        let day = |ms: u64| {
            to_i64(
                "day",
                shared::emergency::day_of(shared::time::Timestamp(ms)),
            )
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT max_multiplier FROM daily_max WHERE region = ?1 AND day >= ?2 AND day < ?3",
        )?;
        let rows = stmt.query_map(params![region, day(from_ms)?, day(to_ms)?], |r| r.get(0))?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    /// The region's rides that ended in `[from_ms, to_ms)`, newest first,
    /// at most `limit`: (completed, wait in ms when known).
    pub fn recent_outcomes(
        &self,
        region: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(bool, Option<u64>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT completed, wait_ms FROM ride_outcomes
             WHERE region = ?1 AND at_ms >= ?2 AND at_ms < ?3
             ORDER BY at_ms DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                region,
                to_i64("from_ms", from_ms)?,
                to_i64("to_ms", to_ms)?,
                limit
            ],
            |r| Ok((r.get::<_, bool>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?;
        rows.map(|r| {
            r.map(|(done, wait)| (done, wait.and_then(|w| u64::try_from(w).ok())))
                .map_err(StoreError::from)
        })
        .collect()
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
}
