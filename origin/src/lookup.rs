//! Store lookups a tick must never wait for (the lawful caps, a
//! controller's feedback): one query per region on a blocking thread in the
//! background, the rows handed to a callback; a failure is counted and
//! logged, and whoever asked keeps what it had.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::state::{lock, AppState};
use crate::store::{History, StoreError};

/// What a lookup is, for its log lines and failure counter.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// What is looked up ("lawful caps").
    pub what: &'static str,
    /// What happens after a failure ("retrying in a minute").
    pub after_failure: &'static str,
    /// The counter of failed lookups.
    pub failures: fn(&Metrics) -> &AtomicU64,
}

/// Runs `query` for each of `regions` in the background and hands every
/// region's result to `done`, all or nothing.
pub fn per_region<T: Send + 'static>(
    state: &Arc<AppState>,
    regions: Vec<String>,
    lookup: Lookup,
    query: impl Fn(&mut dyn History, &str) -> Result<T, StoreError> + Send + 'static,
    done: impl FnOnce(&AppState, Vec<(String, T)>) + Send + 'static,
) {
    let state = state.clone();
    tokio::spawn(async move {
        let store = state.store.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut store = lock(&store);
            regions
                .into_iter()
                .map(|r| query(store.as_mut(), &r).map(|rows| (r, rows)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let error = match found {
            Ok(Ok(rows)) => return done(&state, rows),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("task failed: {e}"),
        };
        (lookup.failures)(&state.metrics).fetch_add(1, Relaxed);
        tracing::warn!(error = %error, "{} not read; {}", lookup.what, lookup.after_failure);
    });
}
