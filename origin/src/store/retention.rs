//! Retention: rows older than the retention period are deleted in small
//! batches, each its own short transaction, so a tick waiting for the store
//! waits for at most one batch.

use rusqlite::params;

use super::{Store, StoreError};

/// The tables pruned by age; zones, last grids, market state and meta are
/// kept whatever their age.
pub const PRUNED_TABLES: [&str; 3] = ["snapshots", "price_changes", "ride_outcomes"];

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
        tx.commit()?;
        Ok(deleted)
    }
}
