//! Retention: every `prune_interval_seconds`, delete history older than
//! `retention_days`, one small batch per store transaction, releasing the
//! store between batches so a tick never waits for more than one batch.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::state::{lock, AppState};
use crate::store::StoreError;

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// What one retention run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows deleted.
    pub rows: usize,
    /// Store transactions used (the last one finds nothing left).
    pub batches: usize,
    /// The cutoff: rows strictly older were deleted.
    pub cutoff_ms: u64,
}

/// Deletes everything older than the retention at the clock's `now`,
/// batch by batch.
pub async fn prune_once(state: &Arc<AppState>) -> Result<Pruned, StoreError> {
    let now = state.clock.now().0;
    let cutoff_ms = now.saturating_sub(u64::from(state.config.retention_days) * DAY_MS);
    let batch = state.config.prune_batch_rows;
    let mut done = Pruned {
        cutoff_ms,
        ..Pruned::default()
    };
    loop {
        let store = state.store.clone();
        let n = tokio::task::spawn_blocking(move || lock(&store).prune_batch(cutoff_ms, batch))
            .await
            .map_err(|e| StoreError::InvalidData(format!("retention task failed: {e}")))??;
        done.batches += 1;
        done.rows += n;
        state.metrics.pruned_rows.fetch_add(n as u64, Relaxed);
        if n == 0 {
            return Ok(done);
        }
        // Let a waiting tick take the store before the next batch.
        tokio::task::yield_now().await;
    }
}

/// Runs retention every `prune_interval_seconds` until `stop` resolves;
/// the first run is one interval after the start.
pub async fn run(state: Arc<AppState>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let period = Duration::from_secs(state.config.prune_interval_seconds);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = &mut stop => return,
        }
        match prune_once(&state).await {
            Ok(p) if p.rows > 0 => tracing::info!(
                rows = p.rows,
                batches = p.batches,
                cutoff_ms = p.cutoff_ms,
                "retention: pruned history older than {} days",
                state.config.retention_days
            ),
            Ok(_) => {}
            Err(e) => {
                state.metrics.prune_failures.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "retention run failed; retried at the next interval");
            }
        }
    }
}
