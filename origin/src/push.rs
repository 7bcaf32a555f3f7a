//! Pushing grids to the edge: newest grid per region wins, retries with
//! exponential backoff, never blocks a tick.
//!
//! Ticks [`Pusher::offer`] grids; a single task delivers them. While the
//! edge is unreachable only the newest grid of each region is kept, so the
//! backlog is bounded by the number of regions, and the edge receives the
//! newest grid when it returns.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// First wait after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
struct Pending {
    generation: u64,
    body: String,
}

/// The push queue: at most one grid per region.
#[derive(Debug)]
pub struct Pusher {
    pending: Mutex<BTreeMap<String, Pending>>,
    wake: Notify,
    edge_url: String,
    token: String,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// What one delivery attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx, or 409 (the edge already has this or a newer generation).
    Done,
    /// Refused for good (4xx other than 409): retrying cannot help.
    Refused(u16),
    /// Network error or 5xx: retry later.
    Retry,
}

impl Pusher {
    /// A pusher to `edge_url` (empty: pushing disabled).
    pub fn new(edge_url: &str, token: &str, metrics: Arc<Metrics>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            pending: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            edge_url: edge_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client,
            metrics,
        }
    }

    /// Whether an edge is configured.
    pub fn enabled(&self) -> bool {
        !self.edge_url.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts/removes), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a region's grid; replaces an older queued one.
    pub fn offer(&self, region: &str, generation: u64, body: String) {
        if !self.enabled() {
            return;
        }
        let mut p = self.lock();
        let newer = p.get(region).is_none_or(|cur| generation > cur.generation);
        if newer {
            p.insert(region.to_owned(), Pending { generation, body });
        }
        self.metrics.pushes_pending.store(p.len() as u64, Relaxed);
        drop(p);
        self.wake.notify_one();
    }

    /// Regions waiting to be delivered.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    async fn deliver(&self, region: &str, body: &str) -> Outcome {
        let url = format!("{}/admin/v1/grids/{region}", self.edge_url);
        let start = Instant::now();
        let res = self
            .client
            .put(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 409 => {
                self.metrics.pushes_ok.fetch_add(1, Relaxed);
                self.metrics
                    .push_micros_sum
                    .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
                Outcome::Done
            }
            Ok(r) if r.status().is_client_error() => Outcome::Refused(r.status().as_u16()),
            Ok(r) => {
                tracing::warn!(
                    region,
                    status = r.status().as_u16(),
                    "edge refused push; will retry"
                );
                Outcome::Retry
            }
            Err(e) => {
                tracing::warn!(region, error = %e, "edge unreachable; will retry");
                Outcome::Retry
            }
        }
    }

    /// Delivers everything pending once. Returns true if all succeeded.
    pub async fn flush(&self) -> bool {
        let batch: Vec<(String, Pending)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut all_ok = true;
        for (region, p) in batch {
            let outcome = self.deliver(&region, &p.body).await;
            match outcome {
                Outcome::Done | Outcome::Refused(_) => {
                    if let Outcome::Refused(status) = outcome {
                        tracing::error!(
                            region,
                            status,
                            generation = p.generation,
                            "edge refused grid; dropped"
                        );
                    }
                    let mut q = self.lock();
                    // Remove only if no newer grid arrived meanwhile.
                    if q.get(&region)
                        .is_some_and(|cur| cur.generation == p.generation)
                    {
                        q.remove(&region);
                    }
                    self.metrics.pushes_pending.store(q.len() as u64, Relaxed);
                }
                Outcome::Retry => {
                    self.metrics.pushes_failed.fetch_add(1, Relaxed);
                    all_ok = false;
                }
            }
        }
        all_ok
    }

    /// Runs until `stop` resolves: waits for grids, delivers, backs off
    /// exponentially (200 ms doubling to 10 s) while the edge fails.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        if !self.enabled() {
            stop.await;
            return;
        }
        tokio::pin!(stop);
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.pending() == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = &mut stop => return,
                }
            }
            if self.flush().await {
                backoff = FIRST_BACKOFF;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
