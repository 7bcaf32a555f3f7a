//! One tick: recompute every region's grid from its market, persist the
//! whole tick (zones, snapshots, changes, grids, market state) in one
//! transaction, and offer changed or heartbeat-due grids to the pusher.

use std::sync::Arc;
use std::time::Instant;

use crate::aggregate::grid_json;
use crate::state::{lock, AppState};
use crate::store::{TickRecord, Zone};

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
    let (ticks, encoded) = {
        let mut agg = lock(&state.agg);
        let ticks = agg.tick(now);
        let encoded: Vec<Vec<u8>> = ticks.iter().map(|t| agg.encode_state(t.region)).collect();
        (ticks, encoded)
    };
    let mut records = Vec::with_capacity(ticks.len());
    let mut new_zones = Vec::new();
    for (t, encoded) in ticks.iter().zip(encoded) {
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
            let caps = state.regions[t.region].caps;
            for c in t.grid.cells() {
                if known.insert((region.clone(), c.cell.token())) {
                    new_zones.push(Zone {
                        region: region.clone(),
                        cell: c.cell.token(),
                        name: shared::desk::zone_name(t.grid.region(), c.cell),
                        min_multiplier: caps.min().as_f64(),
                        max_multiplier: caps.max().as_f64(),
                        active: true,
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
        });
    }
    let zone_keys: Vec<(String, String)> = new_zones
        .iter()
        .map(|z| (z.region.clone(), z.cell.clone()))
        .collect();
    let store = state.store.clone();
    let state_bytes: usize = records.iter().map(|r| r.state.len()).sum();
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
    }
    state.metrics.tick(
        start.elapsed().as_micros() as u64,
        state_bytes as u64,
        failed,
    );
    ticks.len()
}
