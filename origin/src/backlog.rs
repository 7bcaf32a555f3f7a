//! Cluster mode's history writes: each tick's records wait in a bounded
//! in-memory backlog and one task writes them in order. An outage of the
//! history database never blocks a tick: the backlog grows while it is
//! down (up to `cluster.history_backlog_ticks`; beyond it the oldest tick
//! is dropped, logged and counted) and is written out when it returns.
//!
//! A single node writes each tick inline instead (one SQLite transaction,
//! see `crate::tick`).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::state::{lock, AppState};
use crate::store::{TickRecord, Zone};

/// One tick's history.
#[derive(Debug)]
pub struct Pending {
    /// Zones priced for the first time.
    pub zones: Vec<Zone>,
    /// Every ticked region's records.
    pub ticks: Vec<TickRecord>,
}

/// The backlog.
#[derive(Debug)]
pub struct Backlog {
    queue: Mutex<VecDeque<Pending>>,
    bound: usize,
    wake: tokio::sync::Notify,
}

impl Backlog {
    /// An empty backlog holding at most `bound` ticks.
    pub fn new(bound: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            bound: bound.max(1),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Queues a tick's history; drops the oldest when full.
    pub fn push(&self, p: Pending, metrics: &Metrics) {
        let len = {
            let mut q = lock(&self.queue);
            if q.len() >= self.bound {
                if let Some(old) = q.pop_front() {
                    metrics.history_dropped.fetch_add(1, Relaxed);
                    let at = old.ticks.first().map_or(0, |t| t.at_ms);
                    tracing::error!(
                        at_ms = at,
                        "history backlog full: the oldest tick's history was dropped"
                    );
                }
            }
            q.push_back(p);
            q.len()
        };
        metrics.history_backlog.store(len as u64, Relaxed);
        self.wake.notify_one();
    }

    /// Ticks waiting.
    pub fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes the oldest waiting tick; `Ok(false)` when none waits. The tick
/// leaves the backlog only once written.
async fn write_one(state: &Arc<AppState>) -> Result<bool, String> {
    let Some((zones, ticks)) = lock(&state.backlog.queue)
        .front()
        .map(|p| (p.zones.clone(), p.ticks.clone()))
    else {
        return Ok(false);
    };
    let store = state.store.clone();
    let written = tokio::task::spawn_blocking(move || lock(&store).record_ticks(&zones, &ticks))
        .await
        .map_err(|e| e.to_string())?;
    written.map_err(|e| e.to_string())?;
    let len = {
        let mut q = lock(&state.backlog.queue);
        q.pop_front();
        q.len()
    };
    state.metrics.history_backlog.store(len as u64, Relaxed);
    Ok(true)
}

/// Drains the backlog until `stop` resolves, retrying a failed write with
/// backoff (1 s doubling to 10 s); on stop, tries to write what is left for
/// up to two seconds.
pub async fn run(state: Arc<AppState>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        match write_one(&state).await {
            Ok(true) => {
                if failing {
                    tracing::info!(
                        waiting = state.backlog.len(),
                        "history database back; catching up"
                    );
                    failing = false;
                }
                backoff = Duration::from_secs(1);
                continue;
            }
            Ok(false) => {
                tokio::select! {
                    _ = state.backlog.wake.notified() => continue,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = &mut stop => break,
                }
            }
            Err(e) => {
                state.metrics.history_failures.fetch_add(1, Relaxed);
                if !failing {
                    tracing::warn!(error = %e, "history not written; ticks wait in the backlog");
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let flush = async { while let Ok(true) = write_one(&state).await {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
}
