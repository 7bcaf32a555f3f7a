//! The aggregator: one [`RegionPricer`] per configured region (the core's
//! market → engine → grid pipeline, the same the simulator runs); events
//! in, one surge grid per region per tick out, with the rows the store
//! keeps. Pure and clock-free: `now` is an argument, so tests drive it with
//! a manual clock.

use shared::api::GridPush;
use shared::grid::SurgeGrid;
use shared::market::{DemandSeen, DriverSeen, MarketConfig};
use std::collections::HashMap;

use shared::arms::ArmsChange;
use shared::policies::{AnyPolicy, InvalidPolicy, PolicySpec};
use shared::pricer::{InvalidPricer, RegionPricer};
use shared::surge::{Feedback, Policy, SurgeConfig};
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

/// An experiment as this origin knows it ([`Aggregator::experiment`]).
#[derive(Debug, Clone)]
pub struct KnownExperiment {
    /// The definition.
    pub experiment: shared::experiment::Experiment,
    /// `scheduled`, `running`, `finished` or `ended`.
    pub status: &'static str,
    /// Why it ended early, if it did.
    pub ended: Option<String>,
    /// Each running arm's volatility here (empty when not running here).
    pub volatility: Vec<(
        shared::quote::Ident,
        Option<shared::experiment::results::Estimate>,
    )>,
}

#[derive(Debug)]
struct RegionState {
    region: Region,
    pricer: RegionPricer<AnyPolicy>,
}

/// Every region's pricer.
#[derive(Debug)]
pub struct Aggregator {
    regions: Vec<RegionState>,
    settings: Settings,
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
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregatorError {
    /// Bad market windows or engine settings.
    #[error(transparent)]
    Pricer(#[from] InvalidPricer),
    /// Bad policy parameters.
    #[error(transparent)]
    Policy(#[from] InvalidPolicy),
}

impl Aggregator {
    /// An aggregator with empty markets.
    pub fn new(regions: Vec<Region>, settings: Settings) -> Result<Self, AggregatorError> {
        let mut out = Vec::with_capacity(regions.len());
        for region in regions {
            let pricer = pricer(&region, settings)?;
            out.push(RegionState { region, pricer });
        }
        Ok(Self {
            regions: out,
            settings,
        })
    }

    /// Empties a region's market and engine (a cluster member taking the
    /// region over rebuilds them from the stored grid and the stream).
    pub fn reset(&mut self, region: usize) {
        let settings = self.settings;
        if let Some(r) = self.regions.get_mut(region) {
            // The settings were valid when the aggregator was built.
            if let Ok(mut p) = pricer(&r.region, settings) {
                // The region's experiments are configuration, not market
                // state: they outlive the reset.
                let arms = r.pricer.arms();
                p.arms_mut().set_definitions(arms.definitions().to_vec());
                p.arms_mut().restore_ended(arms.ended().clone());
                r.pricer = p;
            }
        }
    }

    /// Applies one region's events (a cluster owner's feed).
    pub fn apply(&mut self, region: usize, drivers: &[DriverSeen], demand: &[DemandSeen]) {
        if let Some(r) = self.regions.get_mut(region) {
            for e in drivers {
                r.pricer.driver_seen(*e);
            }
            for e in demand {
                r.pricer.demand_seen(*e);
            }
        }
    }

    /// A region's engine smoothing alone, encoded (stored with each grid in
    /// cluster mode).
    pub fn encode_engine(&self, region: usize) -> Vec<u8> {
        self.regions
            .get(region)
            .map(|r| r.pricer.encode_engine_state())
            .unwrap_or_default()
    }

    /// Restores a region's engine smoothing from [`Self::encode_engine`]
    /// bytes (after [`Self::restore`] of the grid stored with them).
    pub fn restore_engine(
        &mut self,
        region: usize,
        bytes: &[u8],
    ) -> Result<(), shared::state::StateError> {
        match self.regions.get_mut(region) {
            Some(r) => r.pricer.decode_engine_state(bytes),
            None => Ok(()),
        }
    }

    /// The configured regions.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().map(|r| &r.region)
    }

    /// The regions (of `only`, or all) whose policy steers by feedback.
    pub fn controlled(&self, only: Option<&[usize]>) -> Vec<String> {
        self.regions
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                only.is_none_or(|o| o.contains(i))
                    && matches!(r.region.policy, PolicySpec::Controller(_))
            })
            .map(|(_, r)| r.region.id.as_str().to_owned())
            .collect()
    }

    /// A region's live forecast accuracy (`shared::forecast::CellForecasts::accuracy`).
    pub fn forecast_accuracy(&self, region: usize) -> Option<shared::forecast::Accuracy> {
        self.regions
            .get(region)
            .map(|r| r.pricer.forecasts().accuracy())
    }

    /// A region's forecast outlook
    /// (`shared::forecast::CellForecasts::outlook`; empty for an unknown
    /// region).
    pub fn forecast_outlook(
        &self,
        region: usize,
        class: Option<shared::fare::VehicleClass>,
        limit: usize,
    ) -> Vec<shared::forecast::CellOutlook> {
        self.regions
            .get(region)
            .map(|r| r.pricer.forecasts().outlook(class, limit))
            .unwrap_or_default()
    }

    /// A region's controller threshold (`None`: not a controller).
    pub fn threshold(&self, region: usize) -> Option<f64> {
        self.regions
            .get(region)
            .and_then(|r| r.pricer.policy().threshold())
    }

    /// Applies driver reports (region index from ingest).
    pub fn drivers(&mut self, events: &[(usize, DriverSeen)]) {
        for (idx, e) in events {
            if let Some(r) = self.regions.get_mut(*idx) {
                r.pricer.driver_seen(*e);
            }
        }
    }

    /// Applies demand events (region index from ingest); returns how many
    /// counted (a keyed event already counted in its window does not).
    pub fn demand(&mut self, events: &[(usize, DemandSeen)]) -> usize {
        let mut counted = 0;
        for (idx, e) in events {
            if let Some(r) = self.regions.get_mut(*idx) {
                counted += usize::from(r.pricer.demand_seen(*e));
            }
        }
        counted
    }

    /// Restores a region's last grid after a restart: its generation, and
    /// each cell's published multiplier so the step limit continues from it.
    pub fn restore(&mut self, grid: &SurgeGrid) -> bool {
        self.regions.iter_mut().any(|r| r.pricer.restore(grid))
    }

    /// A region's forecast history when due (the first tick of each
    /// 5-minute bucket; `shared::pricer::RegionPricer::forecast_history_due`).
    pub fn forecast_history_due(&mut self, region: usize, now: Timestamp) -> Option<Vec<u8>> {
        self.regions
            .get_mut(region)
            .and_then(|r| r.pricer.forecast_history_due(now))
    }

    /// The forecast history handed out for `region` was not stored: hand it
    /// out again at the next tick.
    pub fn forecast_history_unsent(&mut self, region: usize) {
        if let Some(r) = self.regions.get_mut(region) {
            r.pricer.forecast_history_unsent();
        }
    }

    /// Restores a region's forecast history (before [`Self::restore_state`],
    /// whose open buckets go over it). `Ok(false)`: no such region.
    pub fn restore_forecast_history(
        &mut self,
        region: &str,
        bytes: &[u8],
    ) -> Result<bool, shared::state::StateError> {
        self.decode_into(region, |p| p.decode_forecast_history(bytes))
    }

    /// Applies `decode` to the pricer of the region named `region`;
    /// `Ok(false)`: no such region.
    fn decode_into(
        &mut self,
        region: &str,
        decode: impl FnOnce(&mut RegionPricer<AnyPolicy>) -> Result<(), shared::state::StateError>,
    ) -> Result<bool, shared::state::StateError> {
        match self
            .regions
            .iter_mut()
            .find(|r| r.region.id.as_str() == region)
        {
            Some(r) => decode(&mut r.pricer).map(|()| true),
            None => Ok(false),
        }
    }

    /// A region's market windows and engine smoothing, encoded
    /// (`shared::state`), to persist with its tick.
    pub fn encode_state(&self, region: usize) -> Vec<u8> {
        self.regions
            .get(region)
            .map(|r| r.pricer.encode_state())
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
        self.decode_into(region, |p| p.decode_state(bytes))
    }

    /// The generation a region last produced (0: none).
    pub fn generation(&self, region: usize) -> u64 {
        self.regions
            .get(region)
            .map_or(0, |r| r.pricer.generation())
    }

    /// One tick at `now`: every region's pricer ticks
    /// (`shared::pricer::next_generation` keeps generations rising across
    /// restarts even without the store), and its counts and changes become
    /// store rows.
    pub fn tick(&mut self, now: Timestamp) -> Vec<RegionTick> {
        self.tick_only(now, None)
    }

    /// [`Self::tick`] of the listed regions only (`None`: all); a cluster
    /// member ticks the regions it owns.
    pub fn tick_only(&mut self, now: Timestamp, only: Option<&[usize]>) -> Vec<RegionTick> {
        self.tick_with(now, only, &HashMap::new())
    }

    /// Sets a region's experiments from the value of its
    /// `experiment:<region>` key as the edge reported it (`None`: the key
    /// is absent). What is refused is logged with its reason; the valid
    /// rest runs from the next tick. Returns whether the region is known.
    pub fn set_experiments(&mut self, region: &str, text: Option<&str>) -> bool {
        // Ids other regions' experiments hold: an id names one experiment.
        let taken: Vec<shared::quote::Ident> = self
            .regions
            .iter()
            .filter(|r| r.region.id.as_str() != region)
            .flat_map(|r| r.pricer.arms().definitions().iter().map(|e| e.id().clone()))
            .collect();
        let Some(r) = self
            .regions
            .iter_mut()
            .find(|r| r.region.id.as_str() == region)
        else {
            return false;
        };
        let (valid, mut refused) = match text {
            Some(t) => shared::api::parse_experiments(&r.region.id, t),
            None => (Vec::new(), Vec::new()),
        };
        let (valid, reused) = shared::experiment::refuse_reused_ids(valid, |id| taken.contains(id));
        refused.extend(reused);
        for why in &refused {
            tracing::warn!(region, reason = %why, "experiment ignored");
        }
        r.pricer.arms_mut().set_definitions(valid);
        true
    }

    /// An experiment this origin knows (from any region's definitions):
    /// its definition, its status at `now` (`scheduled`, `running`,
    /// `finished` or `ended`), why it ended early, and its arms'
    /// volatility while it runs here.
    pub fn experiment(&self, id: &str, now: Timestamp) -> Option<KnownExperiment> {
        self.regions.iter().find_map(|r| {
            let arms = r.pricer.arms();
            let e = arms.definitions().iter().find(|e| e.id().as_str() == id)?;
            let ended = arms.ended().get(e.id()).cloned();
            let status = e.status(now, ended.is_some()).as_str();
            let volatility = match arms.running() {
                Some(run) if run.id() == e.id() => arms.volatility(),
                _ => Vec::new(),
            };
            Some(KnownExperiment {
                experiment: e.clone(),
                status,
                ended,
                volatility,
            })
        })
    }

    /// Restores a region's experiments ended earlier (read from the
    /// store at start or at a take-over).
    pub fn restore_ended(&mut self, region: &str, ended: Vec<(String, String)>) {
        let Some(r) = self
            .regions
            .iter_mut()
            .find(|r| r.region.id.as_str() == region)
        else {
            return;
        };
        let ended = ended
            .into_iter()
            .filter_map(|(id, why)| shared::quote::Ident::new(&id).ok().map(|id| (id, why)));
        r.pricer.arms_mut().restore_ended(ended);
    }

    /// The running experiments' controller arms in the given regions (all
    /// when `None`): (region, experiment, arms), whose feedback is looked
    /// up per arm.
    pub fn steered_arms(&self, only: Option<&[usize]>) -> Vec<(String, String, Vec<String>)> {
        self.regions
            .iter()
            .enumerate()
            .filter(|(i, _)| only.is_none_or(|o| o.contains(i)))
            .filter_map(|(_, r)| {
                let (e, arms) = r.pricer.arms().steered()?;
                Some((
                    r.region.id.as_str().to_owned(),
                    e.id().as_str().to_owned(),
                    arms.iter().map(|a| a.as_str().to_owned()).collect(),
                ))
            })
            .collect()
    }

    /// The running experiment's arms' controller thresholds in a region
    /// (`None` for other policies).
    pub fn arm_thresholds(&self, region: &str) -> Vec<(String, Option<f64>)> {
        self.regions
            .iter()
            .find(|r| r.region.id.as_str() == region)
            .map(|r| {
                r.pricer
                    .arms()
                    .thresholds()
                    .into_iter()
                    .map(|(a, t)| (a.as_str().to_owned(), t))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Shows an experiment arm's policy its arm's recent outcomes (at the
    /// next tick).
    pub fn observe_arm(&mut self, region: &str, arm: &str, f: Feedback) {
        let (Some(r), Ok(arm)) = (
            self.regions
                .iter_mut()
                .find(|r| r.region.id.as_str() == region),
            shared::quote::Ident::new(arm),
        ) else {
            return;
        };
        r.pricer.arms_mut().observe(&arm, f);
    }

    /// Ends a region's experiment for good (a breached guardrail); its arms
    /// stop from the next tick. False when it was not running there or had
    /// already ended.
    pub fn end_experiment(
        &mut self,
        region: &str,
        id: &shared::quote::Ident,
        reason: &str,
    ) -> bool {
        self.regions
            .iter_mut()
            .find(|r| r.region.id.as_str() == region)
            .is_some_and(|r| r.pricer.arms_mut().end(id, reason))
    }

    /// The experiments running in the given regions (all when `None`),
    /// with their region ids: what the guardrail watches.
    pub fn running_experiments(
        &self,
        only: Option<&[usize]>,
    ) -> Vec<(String, shared::experiment::Experiment)> {
        self.regions
            .iter()
            .enumerate()
            .filter(|(i, _)| only.is_none_or(|o| o.contains(i)))
            .filter_map(|(_, r)| {
                r.pricer
                    .arms()
                    .running()
                    .map(|e| (r.region.id.as_str().to_owned(), e.clone()))
            })
            .collect()
    }

    /// [`Self::tick_only`], each region's policy first shown its feedback
    /// when `feedback` has some for it (by region id).
    pub fn tick_with(
        &mut self,
        now: Timestamp,
        only: Option<&[usize]>,
        feedback: &HashMap<String, Feedback>,
    ) -> Vec<RegionTick> {
        let mut out = Vec::with_capacity(self.regions.len());
        for (idx, r) in self.regions.iter_mut().enumerate() {
            if only.is_some_and(|o| !o.contains(&idx)) {
                continue;
            }
            let f = feedback.get(r.region.id.as_str());
            let before = r.pricer.policy().threshold();
            let t = match r.pricer.tick_with(now, f) {
                Ok(t) => t,
                // Cells come from the region's own market at its level,
                // unique by construction; a failure here would be a bug,
                // reported as such.
                Err(e) => {
                    tracing::error!(region = %r.region.id, error = %e, "grid construction failed");
                    continue;
                }
            };
            match &t.arms {
                ArmsChange::Unchanged => {}
                ArmsChange::Started(id) => {
                    tracing::info!(region = %r.region.id, experiment = %id, "experiment started: its arms are priced and pushed")
                }
                ArmsChange::Stopped(id) => {
                    tracing::info!(region = %r.region.id, experiment = %id, "experiment stopped: the region's own policy prices every quote")
                }
                ArmsChange::Refused(id, why) => {
                    tracing::warn!(region = %r.region.id, experiment = %id, reason = %why, "experiment not started")
                }
            }
            let after = r.pricer.policy().threshold();
            if before != after {
                tracing::info!(
                    region = %r.region.id,
                    policy = r.pricer.policy().name(),
                    threshold = ?after,
                    ended = f.map(|f| f.ended),
                    unfulfilled = f.map(|f| f.unfulfilled),
                    p90_wait_s = ?f.and_then(|f| f.p90_wait_s),
                    "controller moved its threshold"
                );
            }
            let snapshots = t
                .counts
                .iter()
                .map(|((cell, class), c)| SnapshotRow {
                    cell: cell.token(),
                    class: class.as_str().to_owned(),
                    supply: c.supply,
                    demand: c.demand,
                    multiplier: t.multiplier(*cell).as_f64(),
                })
                .collect();
            let changes = t
                .changes
                .iter()
                .map(|c| PriceChange {
                    cell: c.cell.token(),
                    old_multiplier: c.before.as_f64(),
                    new_multiplier: c.after.as_f64(),
                    reason: c.reason(),
                    supply: c.supply,
                    demand: c.demand,
                })
                .collect();
            out.push(RegionTick {
                region: idx,
                grid: t.grid,
                changed: t.changed,
                snapshots,
                changes,
            });
        }
        out
    }
}

fn pricer(region: &Region, settings: Settings) -> Result<RegionPricer<AnyPolicy>, AggregatorError> {
    Ok(RegionPricer::new(
        region.id.clone(),
        region.level,
        region.caps,
        settings.market,
        region.policy.build()?,
        settings.surge,
    )?
    .with_calendar(region.calendar))
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
    use shared::surge::Multiplier;

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
                        once: None,
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
                once: None,
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
