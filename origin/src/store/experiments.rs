//! Events of quotes priced in experiment arms (`arm_events`), the basis of
//! an experiment's results ([`shared::experiment::results`]).

use rusqlite::{params, TransactionBehavior};
use shared::experiment::results::Tally;

use super::{to_i64, ArmRecord, Store, StoreError};

impl Store {
    /// Stores arm events in one transaction; returns rows inserted (a
    /// repeated event id is ignored: the edge delivers at least once).
    pub fn record_arm_events(&mut self, rows: &[ArmRecord]) -> Result<usize, StoreError> {
        let checked = ArmRecord::checked(rows)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO arm_events
                     (event_id, experiment, region, arm, policy, kind, at_ms, multiplier,
                      fare_minor, wait_ms, unit)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (r, at, fare, wait, unit) in checked {
                inserted += insert.execute(params![
                    r.event_id,
                    r.experiment,
                    r.region,
                    r.event.arm.as_str(),
                    r.policy,
                    r.event.kind.as_str(),
                    at,
                    r.event.multiplier,
                    fare,
                    wait,
                    unit
                ])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    /// Records that a region's experiment ended early (its guardrail), so
    /// it stays ended across restarts; a second record of it is ignored.
    pub fn record_experiment_end(
        &mut self,
        region: &str,
        experiment: &str,
        reason: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO experiment_ends (experiment, region, reason, at_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                experiment,
                region,
                reason,
                to_i64("experiment end at_ms", at_ms)?
            ],
        )?;
        Ok(())
    }

    /// Keeps a value of a region's `experiment:<region>` key as the edge
    /// reported it, so an experiment's results outlive its definition in
    /// KV (a value seen before is kept once).
    pub fn record_experiment_value(
        &mut self,
        region: &str,
        value: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO experiment_values (region, value, at_ms) VALUES (?1, ?2, ?3)",
            params![region, value, to_i64("experiment value at_ms", at_ms)?],
        )?;
        Ok(())
    }

    /// Every value kept: (region, value), oldest first.
    pub fn experiment_values(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT region, value FROM experiment_values ORDER BY at_ms")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A region's experiments that ended early: (id, why).
    pub fn experiment_ends(&self, region: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT experiment, reason FROM experiment_ends WHERE region = ?1 ORDER BY experiment",
        )?;
        let rows = st.query_map(params![region], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A region's experiment's bookings that ended in `[from_ms, to_ms)`,
    /// newest first, at most `limit`: (arm, completed, wait in ms when
    /// known). A controller arm's feedback.
    pub fn recent_arm_outcomes(
        &mut self,
        region: &str,
        experiment: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<(String, bool, Option<u64>)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT arm, kind = 'completed', wait_ms FROM arm_events
             WHERE region = ?1 AND experiment = ?2 AND at_ms >= ?3 AND at_ms < ?4
               AND kind IN ('completed', 'cancelled', 'failed')
             ORDER BY at_ms DESC LIMIT ?5",
        )?;
        let rows = st.query_map(
            params![
                region,
                experiment,
                to_i64("from_ms", from_ms)?,
                to_i64("to_ms", to_ms)?,
                limit
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (arm, done, wait) = row?;
            out.push((arm, done, wait.and_then(|w| u64::try_from(w).ok())));
        }
        Ok(out)
    }

    /// A region's experiment's events summed per arm, unit and kind (one
    /// row each, however many events), at most `limit` rows.
    pub fn arm_tallies(
        &mut self,
        region: &str,
        experiment: &str,
        limit: u32,
    ) -> Result<Vec<Tally>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT arm, unit, kind, COUNT(*), SUM(multiplier), COALESCE(SUM(fare_minor), 0),
                    COALESCE(SUM(wait_ms), 0), COUNT(wait_ms)
             FROM arm_events WHERE region = ?1 AND experiment = ?2
             GROUP BY arm, unit, kind LIMIT ?3",
        )?;
        let rows = st.query_map(params![region, experiment, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                [r.get::<_, i64>(3)?, r.get(5)?, r.get(6)?, r.get(7)?],
                r.get::<_, f64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (arm, unit, kind, [count, fare, wait, waits], multiplier) = row?;
            out.push(ArmRecord::tally_from(
                arm,
                unit,
                kind,
                [count, fare, wait, waits],
                multiplier,
            )?);
        }
        Ok(out)
    }
}
