//! The aggregator: per region, a [`Market`] and a [`SurgeEngine`]; events
//! in, one surge grid per region per tick out. Pure and clock-free: `now`
//! is an argument, so tests drive it with a manual clock.

use std::collections::BTreeMap;

use shared::api::GridPush;
use shared::grid::{GridCell, SurgeGrid};
use shared::market::{DemandSeen, DriverSeen, Market, MarketConfig};
use shared::surge::{CellInput, DefaultCurve, Multiplier, SurgeConfig, SurgeEngine};
use shared::time::{Millis, Timestamp};

use crate::config::Region;
use crate::store::{PriceChange, SnapshotRow};

/// One region's result of a tick.
#[derive(Debug, Clone)]
pub struct RegionTick {
    /// Index into the configured regions.
    pub region: usize,
    /// The new grid.
    pub grid: SurgeGrid,
    /// Whether any multiplier (or the set of cells) changed since the last
    /// grid; unchanged grids are only re-pushed as heartbeats.
    pub changed: bool,
    /// Per cell and class counts, for the store.
    pub snapshots: Vec<SnapshotRow>,
    /// Multipliers that moved, with the reason, for the change log.
    pub changes: Vec<PriceChange>,
}

#[derive(Debug)]
struct RegionState {
    region: Region,
    market: Market,
    engine: SurgeEngine<DefaultCurve>,
    generation: u64,
    last: BTreeMap<shared::geo::Cell, Multiplier>,
}

/// Every region's market and engine.
#[derive(Debug)]
pub struct Aggregator {
    regions: Vec<RegionState>,
}

/// Settings for building an aggregator.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Market windows.
    pub market: MarketConfig,
    /// Surge engine.
    pub surge: SurgeConfig,
}

/// Why the aggregator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// Bad market windows.
    #[error(transparent)]
    Market(#[from] shared::market::InvalidMarketConfig),
    /// Bad engine settings.
    #[error(transparent)]
    Surge(#[from] shared::surge::InvalidSurgeConfig),
}

fn reason(old: Multiplier, new: Multiplier, supply: u32, demand: u32) -> String {
    let dir = if new > old { "up" } else { "down" };
    match (supply, demand) {
        (0, 0) => format!("{dir}: no activity, decaying"),
        (0, d) => format!("{dir}: no available drivers for demand {d}"),
        (s, d) => format!(
            "{dir}: demand/supply {d}/{s} = {:.2}",
            f64::from(d) / f64::from(s)
        ),
    }
}

impl Aggregator {
    /// An aggregator with empty markets.
    pub fn new(regions: Vec<Region>, settings: Settings) -> Result<Self, AggregatorError> {
        let mut out = Vec::with_capacity(regions.len());
        for region in regions {
            out.push(RegionState {
                region,
                market: Market::new(settings.market)?,
                engine: SurgeEngine::new(DefaultCurve, settings.surge)?,
                generation: 0,
                last: BTreeMap::new(),
            });
        }
        Ok(Self { regions: out })
    }

    /// The configured regions.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().map(|r| &r.region)
    }

    /// Applies driver reports (region index from ingest).
    pub fn drivers(&mut self, events: &[(usize, DriverSeen)]) {
        for (idx, e) in events {
            if let Some(r) = self.regions.get_mut(*idx) {
                r.market.driver_seen(*e);
            }
        }
    }

    /// Applies demand events (region index from ingest).
    pub fn demand(&mut self, events: &[(usize, DemandSeen)]) {
        for (idx, e) in events {
            if let Some(r) = self.regions.get_mut(*idx) {
                r.market.demand_seen(*e);
            }
        }
    }

    /// Restores a region's last grid after a restart: its generation, and
    /// each cell's published multiplier so the step limit continues from it.
    pub fn restore(&mut self, grid: &SurgeGrid) -> bool {
        let Some(r) = self
            .regions
            .iter_mut()
            .find(|r| &r.region.id == grid.region())
        else {
            return false;
        };
        r.generation = r.generation.max(grid.generation());
        for c in grid.cells() {
            r.engine.restore(c.cell, c.multiplier, r.region.caps);
            r.last.insert(c.cell, c.multiplier);
        }
        true
    }

    /// A region's market windows and engine smoothing, encoded
    /// (`shared::state`), to persist with its tick.
    pub fn encode_state(&self, region: usize) -> Vec<u8> {
        self.regions
            .get(region)
            .map(|r| shared::state::encode(&r.market, &r.engine))
            .unwrap_or_default()
    }

    /// Restores a region's windows and smoothing from [`Self::encode_state`]
    /// bytes. Call after [`Self::restore`] (which sets the generation and the
    /// last published cells from the grid): the decoded engine state then
    /// replaces the approximation the grid alone gives. `Ok(false)`: no such
    /// region.
    pub fn restore_state(
        &mut self,
        region: &str,
        bytes: &[u8],
    ) -> Result<bool, shared::state::StateError> {
        let Some(r) = self
            .regions
            .iter_mut()
            .find(|r| r.region.id.as_str() == region)
        else {
            return Ok(false);
        };
        shared::state::decode_into(bytes, &mut r.market, &mut r.engine)?;
        Ok(true)
    }

    /// The generation a region last produced (0: none).
    pub fn generation(&self, region: usize) -> u64 {
        self.regions.get(region).map_or(0, |r| r.generation)
    }

    /// One tick at `now`: snapshot every market, run every engine, build
    /// every region's grid. Generations are `max(previous + 1, now in ms)`,
    /// so they keep increasing across restarts even without the store.
    pub fn tick(&mut self, now: Timestamp) -> Vec<RegionTick> {
        let mut out = Vec::with_capacity(self.regions.len());
        for (idx, r) in self.regions.iter_mut().enumerate() {
            let counts = r.market.snapshot(now);
            let mut per_cell: BTreeMap<shared::geo::Cell, (u32, u32)> = BTreeMap::new();
            for ((cell, _class), c) in &counts {
                let e = per_cell.entry(*cell).or_default();
                e.0 = e.0.saturating_add(c.supply);
                e.1 = e.1.saturating_add(c.demand);
            }
            let inputs: Vec<CellInput> = per_cell
                .iter()
                .map(|(cell, (supply, demand))| CellInput {
                    cell: *cell,
                    supply: *supply,
                    demand: *demand,
                    caps: r.region.caps,
                })
                .collect();
            let results = r.engine.update(&inputs);
            let mut changes = Vec::new();
            let mut cells = Vec::with_capacity(results.len());
            let mut next = BTreeMap::new();
            for s in &results {
                let before = r.last.get(&s.cell).copied().unwrap_or(Multiplier::ONE);
                if before != s.multiplier {
                    changes.push(PriceChange {
                        cell: s.cell.token(),
                        old_multiplier: before.as_f64(),
                        new_multiplier: s.multiplier.as_f64(),
                        reason: reason(before, s.multiplier, s.supply, s.demand),
                        supply: s.supply,
                        demand: s.demand,
                    });
                }
                next.insert(s.cell, s.multiplier);
                cells.push(GridCell {
                    cell: s.cell,
                    multiplier: s.multiplier,
                    supply: s.supply,
                    demand: s.demand,
                    trend: s.trend,
                });
            }
            let changed = next != r.last;
            r.last = next;
            let snapshots = counts
                .iter()
                .map(|((cell, class), c)| SnapshotRow {
                    cell: cell.token(),
                    class: class.as_str().to_owned(),
                    supply: c.supply,
                    demand: c.demand,
                    multiplier: r
                        .last
                        .get(cell)
                        .copied()
                        .unwrap_or(Multiplier::ONE)
                        .as_f64(),
                })
                .collect();
            r.generation = (r.generation + 1).max(now.0);
            let grid = SurgeGrid::new(
                r.region.id.clone(),
                r.region.level,
                r.generation,
                now,
                cells,
            );
            // Cells come from the region's own market at its level, unique by
            // construction; a failure here would be a bug, reported as such.
            match grid {
                Ok(grid) => out.push(RegionTick {
                    region: idx,
                    grid,
                    changed,
                    snapshots,
                    changes,
                }),
                Err(e) => {
                    tracing::error!(region = %r.region.id, error = %e, "grid construction failed")
                }
            }
        }
        out
    }
}

/// The wire JSON of a grid.
pub fn grid_json(grid: &SurgeGrid) -> String {
    serde_json::to_string(&GridPush::from(grid)).unwrap_or_default()
}

/// The supply TTL and demand window from seconds.
pub fn market_config(supply_ttl_s: u64, demand_window_s: u64) -> MarketConfig {
    let window = Millis::from_secs(demand_window_s.max(1));
    MarketConfig {
        supply_ttl: Millis::from_secs(supply_ttl_s.max(1)),
        demand_window: window,
        bucket: Millis((window.0 / 60).clamp(1, 5_000)),
        ..MarketConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use shared::fare::VehicleClass;
    use shared::geo::{Cell, LatLng};
    use shared::market::{DemandKind, DriverId};

    fn agg() -> Aggregator {
        let settings = Settings {
            market: market_config(60, 60),
            surge: SurgeConfig {
                neighbour_weight: 0.0,
                ema_alpha: 1.0,
                max_step_tenths: 100,
                emergency_cap: None,
            },
        };
        Aggregator::new(Config::default().regions().expect("regions"), settings).expect("agg")
    }

    fn cell() -> Cell {
        Cell::at(
            LatLng::new(37.77, -122.42).expect("ll"),
            shared::geo::DEFAULT_LEVEL,
        )
    }

    #[test]
    fn events_become_a_grid_with_a_manual_clock() {
        let mut a = agg();
        let t0 = 1_800_000_000_000;
        a.drivers(&[(
            0,
            DriverSeen {
                driver: DriverId(1),
                cell: cell(),
                class: VehicleClass::Standard,
                available: true,
                at: Timestamp(t0),
            },
        )]);
        let demand: Vec<_> = (0..3)
            .map(|i| {
                (
                    0,
                    DemandSeen {
                        cell: cell(),
                        class: VehicleClass::Standard,
                        kind: DemandKind::Quote,
                        at: Timestamp(t0 + i),
                    },
                )
            })
            .collect();
        a.demand(&demand);
        let ticks = a.tick(Timestamp(t0 + 1_000));
        assert_eq!(ticks.len(), 1);
        let t = &ticks[0];
        assert!(t.changed);
        let c = t.grid.lookup(cell()).expect("cell in grid");
        // demand 3 / supply 1 → 1.5 + 0.3 = 1.8
        assert_eq!(c.multiplier.tenths(), 18);
        assert_eq!(t.changes.len(), 1);
        assert!(
            t.changes[0].reason.contains("3/1"),
            "{}",
            t.changes[0].reason
        );
        assert_eq!(t.grid.generation(), t0 + 1_000);
        // Same inputs a second later: unchanged, generation still rises.
        let again = a.tick(Timestamp(t0 + 2_000));
        assert!(!again[0].changed);
        assert!(again[0].grid.generation() > t.grid.generation());
        // After the supply TTL and the demand window, the cell decays away.
        let later = a.tick(Timestamp(t0 + 200_000));
        assert!(later[0].changed);
        assert!(later[0]
            .grid
            .lookup(cell())
            .is_none_or(|c| c.multiplier == Multiplier::ONE));
    }

    #[test]
    fn restore_continues_generations_and_multipliers() {
        let mut a = agg();
        let t0 = 1_800_000_000_000;
        a.demand(&[(
            0,
            DemandSeen {
                cell: cell(),
                class: VehicleClass::Standard,
                kind: DemandKind::RideRequest,
                at: Timestamp(t0),
            },
        )]);
        let first = a.tick(Timestamp(t0 + 1)).remove(0).grid;
        let mut b = agg();
        assert!(b.restore(&first));
        assert_eq!(b.generation(0), first.generation());
        // A clock behind the stored generation still moves forward.
        let next = b.tick(Timestamp(t0 - 10_000)).remove(0).grid;
        assert_eq!(next.generation(), first.generation() + 1);
    }
}
