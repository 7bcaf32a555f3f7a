//! Membership and region leases: the loop every member runs, three rounds
//! per lease TTL.
//!
//! Each round, in this order:
//! 1. **Renew** every owned lease by compare-and-set on its revision. A
//!    renewal that fails loses the region at once (no more ticks; the feed
//!    stops). Ticks also stop by themselves once the last renewal is two
//!    thirds of a TTL old ([`super::Cluster::tickable`]).
//! 2. **Heartbeat**: put this member's key in `eq_members` (its max age is
//!    the lease TTL, so a dead member drops out within one TTL).
//! 3. **Hand back** owned regions whose rendezvous owner over the live
//!    members is now another member (one joined): stop, then delete the
//!    lease at our revision, so that member can create it.
//! 4. **Acquire** regions this member should own and does not: create the
//!    lease (fails while another member's lease lives); restore the
//!    region's last grid and engine smoothing from `eq_grids`; start the
//!    feed, which replays the region's events.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{Future, StreamExt};
use shared::grid::SurgeGrid;

use super::{decode_stored, feed, owners, Cluster, FeedStats, Owned};
use crate::state::{lock, AppState};

/// Runs rounds until `stop` resolves, then releases every lease (a
/// graceful stop hands the regions over at once instead of after a TTL).
pub async fn run(state: Arc<AppState>, stop: impl Future<Output = ()>) {
    let Some(cluster) = state.cluster.clone() else {
        return;
    };
    let period = cluster.lease_ttl / 3;
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                // A round that hangs (a NATS server gone mid-request) must
                // not stop the next ones: ticks stop by themselves once
                // renewals are late, and the next round starts over.
                if tokio::time::timeout(period * 2, round(&state, &cluster)).await.is_err() {
                    state.metrics.cluster_errors.fetch_add(1, Relaxed);
                    tracing::warn!("lease round timed out; starting the next");
                }
            }
            _ = &mut stop => break,
        }
    }
}

/// One round (see the module documentation).
pub async fn round(state: &Arc<AppState>, c: &Arc<Cluster>) {
    renew(state, c).await;
    let heartbeat = c
        .members
        .put(&c.node, state.clock.now().0.to_string().into())
        .await;
    if let Err(e) = heartbeat {
        state.metrics.cluster_errors.fetch_add(1, Relaxed);
        tracing::warn!(error = %e, "member heartbeat failed");
        return;
    }
    let mut live = match live_members(c).await {
        Ok(m) => m,
        Err(e) => {
            state.metrics.cluster_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "cannot list members");
            return;
        }
    };
    if !live.contains(&c.node) {
        live.push(c.node.clone());
    }
    live.sort();
    *lock(&c.live) = live.clone();
    for (idx, region) in state.regions.iter().enumerate() {
        let mine = owners::owner(&live, region.id.as_str()) == Some(c.node.as_str());
        let owned = lock(&c.owned).contains_key(&idx);
        if owned && !mine {
            release(state, c, idx).await;
        } else if !owned && mine {
            acquire(state, c, idx).await;
        }
    }
    state
        .metrics
        .regions_owned
        .store(lock(&c.owned).len() as u64, Relaxed);
}

async fn live_members(c: &Cluster) -> Result<Vec<String>, String> {
    let mut keys = c.members.keys().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(k) = keys.next().await {
        out.push(k.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

async fn renew(state: &Arc<AppState>, c: &Arc<Cluster>) {
    let held: Vec<(usize, u64)> = lock(&c.owned)
        .iter()
        .map(|(i, o)| (*i, o.revision))
        .collect();
    for (idx, revision) in held {
        let region = state.regions[idx].id.as_str();
        let sent = Instant::now();
        match c
            .leases
            .update(region, c.node.clone().into(), revision)
            .await
        {
            Ok(rev) => {
                if let Some(o) = lock(&c.owned).get_mut(&idx) {
                    o.revision = rev;
                    o.renewed_at = sent;
                }
            }
            Err(e) => {
                tracing::warn!(region, error = %e, "lease renewal failed; region dropped");
                drop_region(state, c, idx);
                state.metrics.leases_lost.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Stops ticking and feeding a region (without touching its lease).
fn drop_region(state: &AppState, c: &Cluster, idx: usize) {
    if let Some(o) = lock(&c.owned).remove(&idx) {
        o.feed.abort();
    }
    state
        .metrics
        .regions_owned
        .store(lock(&c.owned).len() as u64, Relaxed);
}

/// Hands a region back: stop, then delete the lease at our revision.
pub async fn release(state: &AppState, c: &Cluster, idx: usize) {
    let revision = lock(&c.owned).get(&idx).map(|o| o.revision);
    drop_region(state, c, idx);
    let region = state.regions[idx].id.as_str();
    if let Some(rev) = revision {
        match c.leases.delete_expect_revision(region, Some(rev)).await {
            Ok(()) => tracing::info!(region, "region handed back"),
            Err(e) => {
                tracing::warn!(region, error = %e, "lease not deleted; it lapses after its TTL")
            }
        }
    }
}

/// Releases every owned region (graceful stop).
pub async fn release_all(state: &AppState, c: &Cluster) {
    let owned: Vec<usize> = lock(&c.owned).keys().copied().collect();
    for idx in owned {
        release(state, c, idx).await;
    }
}

/// The region's experiments that ended early, from the shared history:
/// they stay ended under their new owner. Without them (a database
/// outage) the guardrail ends them again at its next lookup.
async fn restore_ended(state: &Arc<AppState>, idx: usize) {
    let region = state.regions[idx].id.as_str().to_owned();
    let store = state.store.clone();
    let name = region.clone();
    let found = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::task::spawn_blocking(move || lock(&store).experiment_ends(&name)),
    )
    .await;
    match found {
        Ok(Ok(Ok(ended))) => lock(&state.agg).restore_ended(&region, ended),
        Ok(Ok(Err(e))) => {
            tracing::warn!(region, error = %e, "ended experiments not read; the guardrail judges again")
        }
        _ => tracing::warn!(
            region,
            "ended experiments not read within 5 s; the guardrail judges again"
        ),
    }
}

/// The region's forecast history from the shared history (PostgreSQL),
/// before the stream's replay feeds the open bucket again. Without it (a
/// new region, a database outage) the forecasts start empty and relearn.
async fn restore_forecasts(state: &Arc<AppState>, idx: usize) {
    let region = state.regions[idx].id.as_str().to_owned();
    let store = state.store.clone();
    let name = region.clone();
    // Lease rounds wait for this: a slow database must not hold them up
    // until leases lapse.
    let found = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::task::spawn_blocking(move || lock(&store).forecast_history(&name)),
    )
    .await;
    let restored = match found {
        Ok(Ok(Ok(Some(bytes)))) => lock(&state.agg).restore_forecast_history(&region, &bytes),
        Ok(Ok(Ok(None))) => return,
        Ok(Ok(Err(e))) => {
            tracing::warn!(region, error = %e, "forecast history not read; forecasts start empty");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(region, error = %e, "forecast history task failed; forecasts start empty");
            return;
        }
        Err(_) => {
            tracing::warn!(
                region,
                "forecast history not read within 5 s; forecasts start empty"
            );
            return;
        }
    };
    match restored {
        Ok(false) => {}
        Ok(true) => {
            state.metrics.forecasts_restored.fetch_add(1, Relaxed);
            tracing::info!(region, "forecast history restored");
        }
        Err(e) => {
            tracing::warn!(region, error = %e, "stored forecast history unreadable; forecasts start empty")
        }
    }
}

async fn acquire(state: &Arc<AppState>, c: &Arc<Cluster>, idx: usize) {
    let region = state.regions[idx].id.as_str();
    let sent = Instant::now();
    let revision = match c.leases.create(region, c.node.clone().into()).await {
        Ok(rev) => rev,
        Err(_) => match c.leases.entry(region).await {
            // Our own lease from before a lost renewal answer: adopt it.
            Ok(Some(e))
                if e.value.as_ref() == c.node.as_bytes()
                    && e.operation == async_nats::jetstream::kv::Operation::Put =>
            {
                e.revision
            }
            // Another member's lease lives: wait for it to lapse or be
            // handed back.
            _ => return,
        },
    };
    // The lease is ours: the previous owner stopped ticking before it
    // could lapse, so the stored grid is its last.
    let stored = match c.grids.get(region).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(region, error = %e, "cannot read the stored grid; continuing without it");
            None
        }
    };
    {
        let mut agg = lock(&state.agg);
        agg.reset(idx);
        if let Some((json, engine)) = stored.as_deref().and_then(decode_stored) {
            let grid = serde_json::from_str::<shared::api::GridPush>(json)
                .ok()
                .and_then(|p| SurgeGrid::try_from(p).ok());
            match grid {
                Some(g) if agg.restore(&g) => {
                    if let Err(e) = agg.restore_engine(idx, engine) {
                        tracing::warn!(region, error = %e, "stored engine smoothing unreadable; continuing from the grid");
                    }
                    lock(&state.last).insert(region.to_owned(), (json.to_owned(), 0));
                }
                _ => tracing::warn!(region, "stored grid unreadable; starting fresh"),
            }
        }
    }
    restore_forecasts(state, idx).await;
    restore_ended(state, idx).await;
    let stats = Arc::new(FeedStats::default());
    let feed = tokio::spawn(feed::run(state.clone(), idx, stats.clone()));
    lock(&c.owned).insert(
        idx,
        Owned {
            revision,
            renewed_at: sent,
            stats,
            feed,
        },
    );
    state.metrics.leases_acquired.fetch_add(1, Relaxed);
    tracing::info!(region, node = %c.node, "region acquired");
}
