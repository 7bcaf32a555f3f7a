//! Retention: rows older than the retention period are deleted in small
//! batches, each its own short transaction, so a tick waiting for the store
//! waits for at most one batch.

use rusqlite::params;

use super::{Store, StoreError};

/// The tables pruned by age (`at_ms`, indexed in both dialects): the
/// history, the outcomes and the experiments' arm events (an experiment's
/// results therefore cover at most the retention period). `daily_max` is
/// pruned by day, kept for the retention plus the lawful cap's lookback
/// ([`DAILY_MAX_EXTRA_DAYS`]). Kept whatever their age, each for a reason:
/// `zones` (one row per priced cell: bounded by the registered regions'
/// cells), `experiment_ends` (one row per ended experiment, which must
/// never run again), `experiment_values` (one row per experiment value an
/// admin wrote; a value still in force must stay), the last grids, the
/// market state, the forecasts' history and `meta` (one row per region or
/// key).
pub const PRUNED_TABLES: [&str; 4] = ["snapshots", "price_changes", "ride_outcomes", "arm_events"];

/// Days of daily maxima kept beyond the retention period: the lawful
/// emergency cap looks back 60 whole days (`shared::emergency::lookback`).
pub const DAILY_MAX_EXTRA_DAYS: u64 = 61;

/// The first UTC day of daily maxima kept when history before
/// `older_than_ms` is pruned.
pub fn daily_max_cutoff_day(older_than_ms: u64) -> u64 {
    older_than_ms.saturating_sub(DAILY_MAX_EXTRA_DAYS * super::analytics::DAY_MS)
        / super::analytics::DAY_MS
}

impl Store {
    /// Deletes snapshots, change-log rows and ride outcomes with `at_ms`
    /// strictly before `older_than_ms`, batch after batch until none is
    /// left. Returns rows deleted. The origin's retention task calls
    /// [`Store::prune_batch`] itself so ticks can run between batches.
    pub fn prune(&mut self, older_than_ms: u64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        loop {
            let n = self.prune_batch(older_than_ms, 10_000)?;
            deleted += n;
            if n == 0 {
                return Ok(deleted);
            }
        }
    }

    /// Deletes at most `limit` rows of each pruned table with `at_ms`
    /// strictly before `older_than_ms`, in one short transaction; the oldest
    /// go first (the `at_ms` indexes). Returns rows deleted: 0 means nothing
    /// older is left.
    pub fn prune_batch(&mut self, older_than_ms: u64, limit: u32) -> Result<usize, StoreError> {
        // A cutoff beyond i64::MAX means "everything": every stored time is
        // at most i64::MAX.
        let cutoff = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut deleted = 0;
        for table in PRUNED_TABLES {
            deleted += tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE rowid IN
                         (SELECT rowid FROM {table} WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)"
                ),
                params![cutoff, limit],
            )?;
        }
        let day = i64::try_from(daily_max_cutoff_day(older_than_ms)).unwrap_or(i64::MAX);
        deleted += tx.execute(
            "DELETE FROM daily_max WHERE rowid IN
                 (SELECT rowid FROM daily_max WHERE day < ?1 LIMIT ?2)",
            params![day, limit],
        )?;
        tx.commit()?;
        Ok(deleted)
    }
}
