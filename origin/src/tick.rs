//! One tick: recompute every region's grid from its market, persist the
//! whole tick (zones, snapshots, changes, grids, market state) in one
//! transaction, and offer changed or heartbeat-due grids to the pusher.
//!
//! In cluster mode a node ticks only the regions it owns and may tick
//! ([`crate::cluster::Cluster::tickable`]), and first stores each new grid
//! with its engine smoothing in the cluster (`eq_grids`), where a member
//! taking a region over continues from it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::aggregate::grid_json;
use crate::backlog::Pending;
use crate::cluster::{encode_stored, Cluster};
use crate::state::{lock, AppState};
use crate::store::{TickRecord, Zone};

/// Encoded state of one region.
type Bytes = Vec<u8>;

/// Re-push an unchanged grid this often, so the edge never sees it as stale.
pub const HEARTBEAT_MS: u64 = 10_000;

/// Runs one tick at the clock's `now`. Returns the number of regions
/// ticked. A store failure is logged and counted; the grids are still
/// pushed (pricing never waits for history).
pub async fn tick_once(state: &Arc<AppState>) -> usize {
    let start = Instant::now();
    let now = state.clock.now();
    // The state is encoded under the same lock as the tick, so it is
    // exactly the windows the tick's grid was computed from.
    let only = state.cluster.as_ref().map(|c| c.tickable());
    // Controllers steer by the last lookup of their regions' ride outcomes
    // (each result used by one tick), and the next lookup starts in the
    // background.
    let mut feedback = state.feedback.take();
    // Experiment arms' feedback goes to their own policies.
    let arm_feedback: Vec<(String, shared::surge::Feedback)> = {
        let keys: Vec<String> = feedback
            .keys()
            .filter(|k| k.contains('/'))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| feedback.remove(&k).map(|f| (k, f)))
            .collect()
    };
    // Experiments the edge reported with its last answers run from this
    // tick on.
    let learned = state.pusher.take_experiments();
    crate::guardrail::keep_values(state, &learned, now);
    let (mut ticks, encoded, engines, controlled, histories) = {
        let mut agg = lock(&state.agg);
        for (region, text) in &learned {
            agg.set_experiments(region, text.as_deref());
        }
        for (key, f) in arm_feedback {
            if let Some((region, arm)) = key.split_once('/') {
                agg.observe_arm(region, arm, f);
            }
        }
        let ticks = agg.tick_with(now, only.as_deref(), &feedback);
        let controlled = agg.controlled(only.as_deref());
        // The forecasts' history once per bucket: with the tick in SQLite,
        // or through the history backlog into PostgreSQL, where a member
        // taking a region over reads it.
        let histories: Vec<Option<Bytes>> = ticks
            .iter()
            .map(|t| agg.forecast_history_due(t.region, now))
            .collect();
        // A single node stores its whole pricing state with the tick; a
        // cluster member stores the engine's smoothing in the cluster (the
        // market is rebuilt from the stream).
        let (encoded, engines): (Vec<Bytes>, Vec<Bytes>) = match &state.cluster {
            None => (
                ticks.iter().map(|t| agg.encode_state(t.region)).collect(),
                Vec::new(),
            ),
            Some(_) => (
                vec![Vec::new(); ticks.len()],
                ticks.iter().map(|t| agg.encode_engine(t.region)).collect(),
            ),
        };
        (ticks, encoded, engines, controlled, histories)
    };
    crate::feedback::refresh(state, &controlled, now);
    let (running, steered) = {
        let agg = lock(&state.agg);
        (
            agg.running_experiments(only.as_deref()),
            agg.steered_arms(only.as_deref()),
        )
    };
    crate::feedback::refresh_arms(state, steered, now);
    crate::guardrail::refresh(state, running, now);
    // Each grid ships its region's lawful emergency cap (looked up in the
    // background, once a day; the tick never waits for it).
    let names: Vec<String> = ticks
        .iter()
        .map(|t| t.grid.region().as_str().to_owned())
        .collect();
    crate::lawful::refresh(state, &names, now);
    for t in &mut ticks {
        let cap = state.lawful.get(t.grid.region().as_str());
        t.grid.set_lawful_cap(cap);
    }
    if let Some(cluster) = &state.cluster {
        store_in_cluster(state, cluster, &ticks, &engines).await;
    }
    let mut records = Vec::with_capacity(ticks.len());
    let mut new_zones = Vec::new();
    for ((t, encoded), forecast_history) in ticks.iter().zip(encoded).zip(histories) {
        let region = t.grid.region().as_str().to_owned();
        let json = grid_json(&t.grid);
        {
            let mut last = lock(&state.last);
            let due = last
                .get(&region)
                .is_none_or(|(_, offered)| now.0.saturating_sub(*offered) >= HEARTBEAT_MS);
            let offered = if t.changed || due {
                state
                    .pusher
                    .offer(&region, t.grid.generation(), json.clone());
                now.0
            } else {
                last.get(&region).map_or(0, |(_, o)| *o)
            };
            last.insert(region.clone(), (json.clone(), offered));
        }
        {
            let mut known = lock(&state.known_zones);
            let configured = &state.regions[t.region];
            for c in t.grid.cells() {
                if known.insert((region.clone(), c.cell.token())) {
                    // A named zone of the registry: its name, its caps
                    // within the region's, and whether it is active (an
                    // inactive zone is left out of the efficiency report).
                    let named = configured.geo().and_then(|g| g.zone_of_cell(c.cell));
                    let caps = named.map_or(configured.caps, |z| z.narrow(configured.caps));
                    new_zones.push(Zone {
                        region: region.clone(),
                        cell: c.cell.token(),
                        name: configured.zone_name(c.cell),
                        min_multiplier: caps.min().as_f64(),
                        max_multiplier: caps.max().as_f64(),
                        active: named.is_none_or(|z| z.active()),
                    });
                }
            }
        }
        records.push(TickRecord {
            region,
            at_ms: now.0,
            generation: t.grid.generation(),
            grid_json: json,
            snapshots: t.snapshots.clone(),
            changes: t.changes.clone(),
            state: encoded,
            forecast_history,
            max_multiplier: t
                .grid
                .cells()
                .iter()
                .map(|c| c.multiplier)
                .max()
                .unwrap_or(shared::surge::Multiplier::ONE)
                .as_f64(),
        });
    }
    let zone_keys: Vec<(String, String)> = new_zones
        .iter()
        .map(|z| (z.region.clone(), z.cell.clone()))
        .collect();
    let state_bytes: usize = records.iter().map(|r| r.state.len()).sum();
    if state.cluster.is_some() {
        // Written by the backlog's task; a database outage never holds up
        // a tick.
        state.backlog.push(
            Pending {
                zones: new_zones,
                ticks: records,
            },
            &state.metrics,
        );
        state
            .metrics
            .tick(start.elapsed().as_micros() as u64, 0, false);
        return ticks.len();
    }
    let with_history: Vec<usize> = ticks
        .iter()
        .zip(&records)
        .filter(|(_, r)| r.forecast_history.is_some())
        .map(|(t, _)| t.region)
        .collect();
    let store = state.store.clone();
    let written =
        tokio::task::spawn_blocking(move || lock(&store).record_ticks(&new_zones, &records)).await;
    let failed = match written {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "tick not persisted");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "tick persistence task failed");
            true
        }
    };
    if failed {
        // Not written: write them with the next tick that persists.
        let mut known = lock(&state.known_zones);
        for k in &zone_keys {
            known.remove(k);
        }
        // And the forecasts' history with the next tick, not a bucket later.
        let mut agg = lock(&state.agg);
        for region in with_history {
            agg.forecast_history_unsent(region);
        }
    }
    state.metrics.tick(
        start.elapsed().as_micros() as u64,
        state_bytes as u64,
        failed,
    );
    ticks.len()
}

/// Stores each ticked region's grid and engine smoothing in `eq_grids`
/// (concurrently), and updates the stream-lag gauge. A failed write is
/// logged and counted; the grid is still pushed.
async fn store_in_cluster(
    state: &AppState,
    cluster: &Cluster,
    ticks: &[crate::aggregate::RegionTick],
    engines: &[Vec<u8>],
) {
    let writes = ticks.iter().zip(engines).map(|(t, engine)| {
        let value = encode_stored(&grid_json(&t.grid), engine);
        cluster.grids.put(t.grid.region().as_str(), value.into())
    });
    for (t, written) in ticks
        .iter()
        .zip(futures_util::future::join_all(writes).await)
    {
        if let Err(e) = written {
            state.metrics.cluster_errors.fetch_add(1, Relaxed);
            tracing::warn!(region = %t.grid.region(), error = %e, "grid not stored in the cluster");
        }
    }
    let lag: u64 = lock(&cluster.owned)
        .values()
        .map(|o| o.stats.pending.load(Relaxed))
        .sum();
    state.metrics.stream_lag.store(lag, Relaxed);
}
