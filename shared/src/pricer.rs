//! A region's pricer: market → engine → grid, the one pipeline the origin
//! and the simulator both run.
//!
//! # Surge is per cell, not per cell and vehicle class
//!
//! The market counts supply and demand per (cell, class); the pricer pools
//! the classes of a cell into one [`CellInput`] and publishes one
//! multiplier per cell, which every class's fare is multiplied by. Why:
//!
//! * A class's own market in one cell is thin (a premium car or two, a few
//!   requests a minute), so a per-class ratio would jump with every car
//!   that comes and goes; pooled counts move smoothly.
//! * Classes draw on overlapping drivers and riders: a rider refused an
//!   economy car at 3× and offered a premium one at 1× is a price signal
//!   nobody meant.
//! * A rider's map and a driver's view show one price per place.
//!
//! The per-class counts stay in [`PricedTick::counts`] (the origin stores
//! them for analytics), so pricing a class apart later is a change here and
//! in the grid's wire format, nowhere else.

use std::collections::BTreeMap;

use crate::arms::{ArmEngines, ArmsChange};
use crate::fare::VehicleClass;
use crate::geo::{Cell, Level};
use crate::grid::{CellForecast, GridCell, InvalidGrid, SurgeGrid};
use crate::market::{Counts, DemandSeen, DriverSeen, InvalidMarketConfig, Market, MarketConfig};
use crate::quote::Ident;
use crate::state::StateError;
use crate::surge::{
    Ahead, Caps, CellInput, Feedback, InvalidSurgeConfig, Multiplier, Policy, SurgeConfig,
    SurgeEngine,
};
use crate::time::{Millis, Timestamp};

/// The generation of the next grid: one past the previous and at least
/// `now` in milliseconds, so generations rise across restarts and take-overs
/// even when nothing of the previous owner's count is known.
pub fn next_generation(previous: u64, now: Timestamp) -> u64 {
    previous.saturating_add(1).max(now.0)
}

/// Pools the vehicle classes of each cell into one engine input (see the
/// module documentation). The inputs carry no forecast; the pricer adds
/// its own.
pub fn cell_inputs(counts: &BTreeMap<(Cell, VehicleClass), Counts>, caps: Caps) -> Vec<CellInput> {
    let mut per_cell: BTreeMap<Cell, (u32, u32)> = BTreeMap::new();
    for ((cell, _class), c) in counts {
        let e = per_cell.entry(*cell).or_default();
        e.0 = e.0.saturating_add(c.supply);
        e.1 = e.1.saturating_add(c.demand);
    }
    per_cell
        .into_iter()
        .map(|(cell, (supply, demand))| CellInput {
            cell,
            supply,
            demand,
            caps,
            ahead: None,
        })
        .collect()
}

/// A grid forecast in the market's units: demand per bucket scaled to one
/// demand window, so a policy compares it with the window's count.
pub fn ahead_of(f: CellForecast, demand_window: Millis) -> Ahead {
    let windows = demand_window.0 as f64 / crate::forecast::BUCKET.0 as f64;
    Ahead {
        demand: f64::from(f.demand) * windows,
        supply: f64::from(f.supply),
    }
}

/// A multiplier that moved in a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellChange {
    /// The cell.
    pub cell: Cell,
    /// Published before the tick (1.0 for a new cell).
    pub before: Multiplier,
    /// Published now.
    pub after: Multiplier,
    /// Pooled supply used.
    pub supply: u32,
    /// Pooled demand used.
    pub demand: u32,
}

impl CellChange {
    /// Why it moved, for the change log.
    pub fn reason(&self) -> String {
        let dir = if self.after > self.before {
            "up"
        } else {
            "down"
        };
        match (self.supply, self.demand) {
            (0, 0) => format!("{dir}: no activity, decaying"),
            (0, d) => format!("{dir}: no available drivers for demand {d}"),
            (s, d) => format!(
                "{dir}: demand/supply {d}/{s} = {:.2}",
                f64::from(d) / f64::from(s)
            ),
        }
    }
}

/// One region's result of a tick.
#[derive(Debug, Clone)]
pub struct PricedTick {
    /// The new grid.
    pub grid: SurgeGrid,
    /// Whether any multiplier (or the set of cells, or an arm's multipliers)
    /// grid; unchanged grids need only be re-sent as heartbeats.
    pub changed: bool,
    /// The market's counts per cell and class at this tick.
    pub counts: BTreeMap<(Cell, VehicleClass), Counts>,
    /// Multipliers that moved.
    pub changes: Vec<CellChange>,
    /// Whether an experiment's arms started or stopped at this tick.
    pub arms: ArmsChange,
}

impl PricedTick {
    /// The multiplier published for a cell (1.0 if the grid has none).
    pub fn multiplier(&self, cell: Cell) -> Multiplier {
        self.grid
            .lookup(cell)
            .map_or(Multiplier::ONE, |c| c.multiplier)
    }
}

/// Why a pricer could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidPricer {
    /// Bad market windows.
    #[error(transparent)]
    Market(#[from] InvalidMarketConfig),
    /// Bad engine settings.
    #[error(transparent)]
    Surge(#[from] InvalidSurgeConfig),
}

/// One region's market, engine, generation and last published cells.
#[derive(Debug)]
pub struct RegionPricer<P> {
    region: Ident,
    level: Level,
    caps: Caps,
    market: Market,
    engine: SurgeEngine<P>,
    generation: u64,
    last: BTreeMap<Cell, Multiplier>,
    forecasts: crate::forecast::CellForecasts,
    /// The bucket whose forecast history was last handed out.
    history_bucket: Option<u64>,
    /// The running experiment's arms ([`crate::arms`]).
    arms: ArmEngines,
    /// The arm grids last published.
    last_arms: Vec<crate::grid::ArmGrid>,
}

impl<P: Policy> RegionPricer<P> {
    /// A pricer with empty windows. Cells are at `level`; `caps` are the
    /// region's zone caps.
    pub fn new(
        region: Ident,
        level: Level,
        caps: Caps,
        market: MarketConfig,
        policy: P,
        surge: SurgeConfig,
    ) -> Result<Self, InvalidPricer> {
        Ok(Self {
            region,
            level,
            caps,
            market: Market::new(market)?,
            engine: SurgeEngine::new(policy, surge)?,
            generation: 0,
            last: BTreeMap::new(),
            forecasts: crate::forecast::CellForecasts::default(),
            history_bucket: None,
            arms: ArmEngines::default(),
            last_arms: Vec::new(),
        })
    }

    /// The pricer with its forecasts on the region's `calendar` (which
    /// days are weekends, where they begin). Call before any event.
    pub fn with_calendar(mut self, calendar: crate::forecast::Calendar) -> Self {
        self.forecasts = crate::forecast::CellForecasts::new(crate::forecast::Params {
            calendar,
            ..*self.forecasts.params()
        });
        self
    }

    /// The region's experiments: their definitions, the running one and
    /// those ended by a guardrail.
    pub fn arms(&self) -> &ArmEngines {
        &self.arms
    }

    /// The experiments, to set their definitions or end one.
    pub fn arms_mut(&mut self) -> &mut ArmEngines {
        &mut self.arms
    }

    /// The region.
    pub fn region(&self) -> &Ident {
        &self.region
    }

    /// The cell level priced.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The generation last produced (0: none).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The multipliers last published, by cell.
    pub fn published(&self) -> &BTreeMap<Cell, Multiplier> {
        &self.last
    }

    /// A driver report.
    pub fn driver_seen(&mut self, e: DriverSeen) {
        self.market.driver_seen(e);
    }

    /// A demand event; false when a keyed one was already counted
    /// ([`DemandSeen::once`]).
    pub fn demand_seen(&mut self, e: DemandSeen) -> bool {
        let counted = self.market.demand_seen(e);
        let units = self.market.config().weight(e.kind);
        if counted && units > 0 {
            self.forecasts.demand(e.cell, e.class, e.at, units);
        }
        counted
    }

    /// Cells with forecast state.
    pub fn forecast_cells(&self) -> usize {
        self.forecasts.len()
    }

    /// The demand units an event of `kind` counts for in this market.
    pub fn weight(&self, kind: crate::market::DemandKind) -> u32 {
        self.market.config().weight(kind)
    }

    /// The region's forecasts.
    pub fn forecasts(&self) -> &crate::forecast::CellForecasts {
        &self.forecasts
    }

    /// The policy in use.
    pub fn policy(&self) -> &P {
        self.engine.policy()
    }

    /// The policy, to continue its state (a controller's threshold).
    pub fn policy_mut(&mut self) -> &mut P {
        self.engine.policy_mut()
    }

    /// One tick at `now`: count the market, run the engine, build the grid
    /// of generation [`next_generation`].
    pub fn tick(&mut self, now: Timestamp) -> Result<PricedTick, InvalidGrid> {
        self.tick_with(now, None)
    }

    /// [`Self::tick`], showing the policy the region's recent outcomes
    /// first (a controller steers by them; `None`: nothing gathered).
    pub fn tick_with(
        &mut self,
        now: Timestamp,
        feedback: Option<&Feedback>,
    ) -> Result<PricedTick, InvalidGrid> {
        let arms_change = self
            .arms
            .follow(now, self.engine.config(), self.caps, &self.last);
        let counts = self.market.snapshot(now);
        let supply: std::collections::HashMap<_, u32> =
            counts.iter().map(|(key, c)| (*key, c.supply)).collect();
        self.forecasts.tick(now, &supply);
        let window = self.market.config().demand_window;
        let mut inputs = cell_inputs(&counts, self.caps);
        for input in &mut inputs {
            input.ahead = self
                .forecasts
                .expected(input.cell)
                .map(|f| ahead_of(f, window));
        }
        let results = self.engine.update_with(&inputs, feedback);
        let arm_grids = self.arms.tick(&inputs, now);
        let mut changes = Vec::new();
        let mut cells = Vec::with_capacity(results.len());
        let mut next = BTreeMap::new();
        for s in &results {
            let before = self.last.get(&s.cell).copied().unwrap_or(Multiplier::ONE);
            if before != s.multiplier {
                changes.push(CellChange {
                    cell: s.cell,
                    before,
                    after: s.multiplier,
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
                forecast: self.forecasts.expected(s.cell),
            });
        }
        let generation = next_generation(self.generation, now);
        let grid = SurgeGrid::new(self.region.clone(), self.level, generation, now, cells)?
            .with_arms(arm_grids)?;
        self.generation = generation;
        let changed = next != self.last || grid.arms() != self.last_arms.as_slice();
        self.last = next;
        self.last_arms = grid.arms().to_vec();
        Ok(PricedTick {
            grid,
            changed,
            counts,
            changes,
            arms: arms_change,
        })
    }

    /// Continues from a grid this region published (after a restart or a
    /// take-over): its generation, and each cell's multiplier so the step
    /// limit continues from it. Grids of other regions are ignored
    /// (`false`).
    pub fn restore(&mut self, grid: &SurgeGrid) -> bool {
        if grid.region() != &self.region {
            return false;
        }
        self.generation = self.generation.max(grid.generation());
        for c in grid.cells() {
            self.engine.restore(c.cell, c.multiplier, self.caps);
            self.last.insert(c.cell, c.multiplier);
        }
        true
    }

    /// The forecasts' history ([`crate::forecast`]), when it changed since
    /// it was last handed out: at the first tick of each 5-minute bucket.
    /// The origin stores it with that tick; the open buckets travel in
    /// [`Self::encode_state`] every tick.
    pub fn forecast_history_due(&mut self, now: Timestamp) -> Option<Vec<u8>> {
        let bucket = crate::forecast::bucket_of(now);
        if self.history_bucket == Some(bucket) {
            return None;
        }
        self.history_bucket = Some(bucket);
        Some(self.forecasts.encode_history())
    }

    /// The history last handed out was not stored: the next
    /// [`Self::forecast_history_due`] hands it out again.
    pub fn forecast_history_unsent(&mut self) {
        self.history_bucket = None;
    }

    /// Restores a [`Self::forecast_history_due`] snapshot; call before
    /// [`Self::decode_state`], whose open buckets go over it.
    pub fn decode_forecast_history(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.forecasts.decode_history(bytes)
    }

    /// The market windows and engine smoothing, encoded
    /// ([`crate::state`]).
    pub fn encode_state(&self) -> Vec<u8> {
        crate::state::encode(&self.market, &self.engine, &self.forecasts)
    }

    /// The engine's smoothing alone, encoded: with the last grid, what a new
    /// owner continues from after rebuilding the market from events.
    pub fn encode_engine_state(&self) -> Vec<u8> {
        crate::state::encode_engine(&self.engine)
    }

    /// Restores what [`Self::encode_engine_state`] wrote (after
    /// [`Self::restore`] of the grid it was stored with).
    pub fn decode_engine_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        crate::state::decode_engine_into(bytes, &mut self.engine)
    }

    /// Restores what [`Self::encode_state`] wrote. Call after
    /// [`Self::restore`]: the decoded engine state replaces the
    /// approximation the grid alone gives.
    pub fn decode_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        crate::state::decode_into(
            bytes,
            &mut self.market,
            &mut self.engine,
            &mut self.forecasts,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{LatLng, DEFAULT_LEVEL};
    use crate::market::{DemandKind, DriverId};
    use crate::surge::DefaultCurve;

    fn pricer() -> RegionPricer<DefaultCurve> {
        RegionPricer::new(
            Ident::new("sf").expect("id"),
            DEFAULT_LEVEL,
            Caps::DEFAULT,
            MarketConfig::default(),
            DefaultCurve,
            SurgeConfig {
                neighbour_weight: 0.0,
                ema_alpha: 1.0,
                max_step_tenths: 100,
                emergency_cap: None,
            },
        )
        .expect("pricer")
    }

    fn cell() -> Cell {
        Cell::at(LatLng::new(37.77, -122.42).expect("ll"), DEFAULT_LEVEL)
    }

    fn controlled() -> RegionPricer<crate::policies::AnyPolicy> {
        let policy = crate::policies::PolicySpec::parse("controller")
            .expect("known")
            .build()
            .expect("valid");
        RegionPricer::new(
            Ident::new("sf").expect("id"),
            DEFAULT_LEVEL,
            Caps::DEFAULT,
            MarketConfig::default(),
            policy,
            SurgeConfig::default(),
        )
        .expect("pricer")
    }

    /// A restart (the full state) and a take-over (the engine's alone)
    /// continue the controller's threshold and the forecasts.
    #[test]
    fn the_controller_threshold_and_the_forecasts_survive_a_restart() {
        let t0 = 1_800_000_000_000;
        let mut a = controlled();
        let bad = Feedback {
            ended: 50,
            unfulfilled: 40,
            p90_wait_s: Some(900.0),
        };
        let mut history = None;
        for i in 0..400u64 {
            let now = Timestamp(t0 + i * 30_000);
            a.demand_seen(DemandSeen {
                cell: cell(),
                class: VehicleClass::Standard,
                kind: DemandKind::RideRequest,
                at: now,
                once: None,
            });
            a.tick_with(now, (i % 10 == 0).then_some(&bad))
                .expect("tick");
            if let Some(h) = a.forecast_history_due(now) {
                history = Some(h);
            }
        }
        let threshold = a.policy().threshold().expect("a controller");
        assert!(threshold < 1.0, "{threshold}");
        let mut b = controlled();
        b.decode_forecast_history(&history.expect("a history was handed out"))
            .expect("history");
        b.decode_state(&a.encode_state()).expect("state");
        assert_eq!(b.policy().threshold(), Some(threshold));
        assert!(a.forecasts.expected(cell()).is_some());
        assert_eq!(a.forecasts.expected(cell()), b.forecasts.expected(cell()));
        let mut c = controlled();
        c.decode_engine_state(&a.encode_engine_state())
            .expect("engine state");
        assert_eq!(c.policy().threshold(), Some(threshold));
        // The history is handed out once per bucket.
        // (t0 + 12,000 s starts a bucket.)
        let now = Timestamp(t0 + 400 * 30_000);
        assert!(a.forecast_history_due(now).is_some());
        assert!(a.forecast_history_due(Timestamp(now.0 + 1)).is_none());
    }

    /// An experiment's arms price the region's one market with their own
    /// policies, while it is live and until it is ended; the region's own
    /// grid is untouched by them.
    #[test]
    fn arms_price_the_same_market_while_their_experiment_is_live() {
        let t0 = 1_800_000_000_000;
        let json = format!(
            r#"{{"id":"e1","region":"sf","split":"switchback","window_minutes":10,"salt":"s",
               "start":{},"end":{},
               "arms":[{{"name":"control","policy":"default","share_percent":50}},
                       {{"name":"flat","policy":"none","share_percent":50}}]}}"#,
            t0 + 60_000,
            t0 + 600_000
        );
        let (defs, refused) = crate::api::parse_experiments(&Ident::new("sf").expect("id"), &json);
        assert!(refused.is_empty(), "{refused:?}");
        let mut p = pricer();
        p.arms_mut().set_definitions(defs);
        let tick = |p: &mut RegionPricer<DefaultCurve>, at: u64| {
            p.demand_seen(DemandSeen {
                cell: cell(),
                class: VehicleClass::Standard,
                kind: DemandKind::RideRequest,
                at: Timestamp(at),
                once: None,
            });
            p.tick(Timestamp(at)).expect("tick")
        };
        let before = tick(&mut p, t0);
        assert!(before.grid.arms().is_empty());
        assert_eq!(before.arms, ArmsChange::Unchanged);
        let start = tick(&mut p, t0 + 60_000);
        assert_eq!(
            start.arms,
            ArmsChange::Started(Ident::new("e1").expect("id"))
        );
        let id = |s: &str| Ident::new(s).expect("id");
        for at in (2..6).map(|i| t0 + i * 30_000) {
            let t = tick(&mut p, at);
            assert_eq!(t.grid.arms().len(), 2);
            let control = t.grid.arm(&id("e1"), &id("control")).expect("control");
            let flat = t.grid.arm(&id("e1"), &id("flat")).expect("flat");
            // No drivers: the default curve surges, the flat arm does not;
            // the control arm prices exactly as the region's own engine.
            assert!(t.multiplier(cell()) > Multiplier::ONE);
            assert_eq!(control.lookup(cell()), Some(t.multiplier(cell())));
            assert_eq!(flat.lookup(cell()), Some(Multiplier::ONE));
            assert!(flat.policy.as_str().starts_with("none-"));
        }
        // A guardrail ends it: no arms from the next tick on, for good.
        let vol = p.arms().volatility();
        assert_eq!(vol.len(), 2);
        // A switchback: each arm's volatility counts only the ticks it was
        // in force. The control arm, like the region's engine, sits at the
        // cap from the start (no drivers): it never moved. The flat arm
        // started from the region's published multiplier and fell to 1.0
        // at its first tick, then held.
        let exp = &p.arms().definitions()[0];
        let in_force = |at: u64, arm: &str| {
            exp.assign(Timestamp(at), None)
                .is_some_and(|a| a.arm.name.as_str() == arm)
        };
        let ticks: Vec<u64> = std::iter::once(t0 + 60_000)
            .chain((2..6).map(|i| t0 + i * 30_000))
            .collect();
        let flat_ticks = ticks.iter().filter(|t| in_force(**t, "flat")).count();
        let control_ticks = ticks.len() - flat_ticks;
        let start = before.multiplier(cell()).tenths().abs_diff(10);
        assert!(start > 0);
        match control_ticks {
            0 => assert!(vol[0].1.is_none()),
            _ => assert_eq!(vol[0].1.map(|v| v.value), Some(0.0), "{vol:?}"),
        }
        let flat_moved = if in_force(ticks[0], "flat") {
            f64::from(start) / 10.0
        } else {
            0.0
        };
        match flat_ticks {
            0 => assert!(vol[1].1.is_none()),
            n => {
                let v = vol[1].1.expect("flat volatility").value;
                assert!((v - flat_moved / n as f64).abs() < 1e-9, "{vol:?}");
            }
        }
        assert!(p.arms_mut().end(&id("e1"), "guardrail"));
        assert!(!p.arms_mut().end(&id("e1"), "again"));
        let t = tick(&mut p, t0 + 200_000);
        assert!(t.grid.arms().is_empty());
        assert_eq!(t.arms, ArmsChange::Unchanged);
        // Without the end, it would have stopped at its end time anyway.
        let mut q = pricer();
        q.arms_mut()
            .set_definitions(p.arms().definitions().to_vec());
        assert!(matches!(
            tick(&mut q, t0 + 60_000).arms,
            ArmsChange::Started(_)
        ));
        assert!(matches!(
            tick(&mut q, t0 + 600_000).arms,
            ArmsChange::Stopped(_)
        ));
        assert!(tick(&mut q, t0 + 630_000).grid.arms().is_empty());
    }

    /// A controller arm steers by its own arm's outcomes only: bad outcomes
    /// shown to one arm move its threshold, not the other's, nor the
    /// region's.
    #[test]
    fn each_controller_arm_steers_by_its_own_outcomes() {
        let t0 = 1_800_000_000_000;
        let json = format!(
            r#"{{"id":"c1","region":"sf","split":"switchback","window_minutes":10,"salt":"s",
               "start":{t0},"end":{},
               "arms":[{{"name":"a","policy":"controller","share_percent":50}},
                       {{"name":"b","policy":"controller","share_percent":50}}]}}"#,
            t0 + 3_600_000
        );
        let (defs, refused) = crate::api::parse_experiments(&Ident::new("sf").expect("id"), &json);
        assert!(refused.is_empty(), "{refused:?}");
        let mut p = controlled();
        p.arms_mut().set_definitions(defs);
        p.tick(Timestamp(t0)).expect("tick");
        let (_, steered) = p.arms().steered().expect("two controller arms");
        assert_eq!(steered.len(), 2);
        let start = p.arms().thresholds();
        let bad = Feedback {
            ended: 50,
            unfulfilled: 40,
            p90_wait_s: Some(900.0),
        };
        let a = Ident::new("a").expect("id");
        for i in 1..=5u64 {
            p.arms_mut().observe(&a, bad);
            p.tick(Timestamp(t0 + i * 30_000)).expect("tick");
        }
        let after = p.arms().thresholds();
        assert!(after[0].1 < start[0].1, "{start:?} → {after:?}");
        assert_eq!(after[1].1, start[1].1, "arm b saw nothing");
        assert_eq!(p.policy().threshold(), controlled().policy().threshold());
    }

    /// Two classes in one cell are priced as one market: 3 requests (one
    /// economy, two premium) over 1 standard driver is 1.8×, where either
    /// class alone would be priced apart.
    #[test]
    fn classes_of_a_cell_are_pooled_into_one_price() {
        let mut p = pricer();
        let t0 = 1_800_000_000_000;
        p.driver_seen(DriverSeen {
            driver: DriverId(1),
            cell: cell(),
            class: VehicleClass::Standard,
            available: true,
            at: Timestamp(t0),
        });
        for (i, class) in [
            VehicleClass::Economy,
            VehicleClass::Premium,
            VehicleClass::Premium,
        ]
        .into_iter()
        .enumerate()
        {
            p.demand_seen(DemandSeen {
                cell: cell(),
                class,
                kind: DemandKind::Quote,
                at: Timestamp(t0 + i as u64),
                once: None,
            });
        }
        let t = p.tick(Timestamp(t0 + 1_000)).expect("tick");
        let c = t.grid.lookup(cell()).expect("cell");
        assert_eq!((c.supply, c.demand), (1, 3));
        assert_eq!(c.multiplier.tenths(), 18);
        assert_eq!(t.counts.len(), 3, "counts stay per class: {:?}", t.counts);
        assert_eq!(t.changes.len(), 1);
        assert!(t.changes[0].reason().contains("3/1"));
        assert!(t.changed);
    }

    #[test]
    fn generations_rise_past_the_clock_and_past_a_restored_grid() {
        assert_eq!(next_generation(5, Timestamp(3)), 6);
        assert_eq!(next_generation(5, Timestamp(30)), 30);
        let mut p = pricer();
        let first = p.tick(Timestamp(1_000)).expect("tick").grid;
        assert_eq!(first.generation(), 1_000);
        let mut q = pricer();
        assert!(q.restore(&first));
        // A clock behind the restored generation still moves forward.
        let next = q.tick(Timestamp(10)).expect("tick").grid;
        assert_eq!(next.generation(), 1_001);
        let other = SurgeGrid::new(
            Ident::new("nyc").expect("id"),
            DEFAULT_LEVEL,
            9_999,
            Timestamp(1),
            vec![],
        )
        .expect("grid");
        assert!(!q.restore(&other));
        assert_eq!(q.generation(), 1_001);
    }

    /// A take-over: a new pricer that replays every event of the region
    /// (the old owner's and those after its last tick) and continues from
    /// the old owner's last grid and engine snapshot publishes exactly what
    /// the old owner would have.
    #[test]
    fn a_replayed_market_with_the_engine_snapshot_continues_exactly() {
        let smooth = SurgeConfig::default();
        let new = || {
            RegionPricer::new(
                Ident::new("sf").expect("id"),
                DEFAULT_LEVEL,
                Caps::DEFAULT,
                MarketConfig::default(),
                DefaultCurve,
                smooth,
            )
            .expect("pricer")
        };
        let cells: Vec<Cell> = (0..6)
            .map(|i| {
                Cell::at(
                    LatLng::new(37.70 + f64::from(i) * 0.01, -122.45).expect("ll"),
                    DEFAULT_LEVEL,
                )
            })
            .collect();
        let t0 = 1_800_000_000_000u64;
        // Events over 5 minutes, one batch per second: drivers come and go,
        // demand grows in some cells.
        let batch = |s: u64| -> (Vec<DriverSeen>, Vec<DemandSeen>) {
            let at = Timestamp(t0 + s * 1_000);
            let drivers = (0..4)
                .map(|d| DriverSeen {
                    driver: DriverId(d + 10 * (s % 3)),
                    cell: cells[((s + d) % 6) as usize],
                    class: VehicleClass::Standard,
                    available: !(s + d).is_multiple_of(4),
                    at,
                })
                .collect();
            let demand = (0..u64::from(s.is_multiple_of(4)))
                .map(|k| DemandSeen {
                    cell: cells[(k % 3) as usize],
                    class: VehicleClass::Standard,
                    kind: DemandKind::RideRequest,
                    at,
                    once: None,
                })
                .collect();
            (drivers, demand)
        };
        let mut log: Vec<(Vec<DriverSeen>, Vec<DemandSeen>)> = Vec::new();
        let mut old = new();
        let mut stored = None;
        // 300 s with a tick every 5 s, each stored (grid and engine), then
        // 3 s of events after the last tick before the old owner dies.
        for s in 0..303u64 {
            let b = batch(s);
            for d in &b.0 {
                old.driver_seen(*d);
            }
            for d in &b.1 {
                old.demand_seen(*d);
            }
            log.push(b);
            if s % 5 == 4 && s < 300 {
                let t = old.tick(Timestamp(t0 + s * 1_000 + 500)).expect("tick");
                stored = Some((t.grid, old.encode_engine_state()));
            }
        }
        // The old owner's next tick, had it lived: its grid and the
        // smoothing it leaves behind.
        let at = Timestamp(t0 + 303_500);
        let expected = (old.tick(at).expect("tick").grid, old.encode_engine_state());
        let cells = expected.0.cells();
        assert!(cells.iter().any(|c| c.multiplier > Multiplier::ONE));
        assert!(cells.iter().any(|c| c.multiplier < Caps::DEFAULT.max()));

        let (grid, engine) = stored.expect("stored");
        let take_over = |with_engine: bool| {
            let mut taker = new();
            assert!(taker.restore(&grid));
            if with_engine {
                taker.decode_engine_state(&engine).expect("engine");
            }
            for (drivers, demand) in &log {
                for d in drivers {
                    taker.driver_seen(*d);
                }
                for d in demand {
                    taker.demand_seen(*d);
                }
            }
            let grid = taker.tick(at).expect("tick").grid;
            (grid, taker.encode_engine_state())
        };
        // Forecasts are not part of either snapshot yet: a taker starts
        // them empty. Everything priced continues exactly.
        let priced = |g: &SurgeGrid| -> Vec<(Cell, Multiplier, u32, u32, crate::surge::Trend)> {
            g.cells()
                .iter()
                .map(|c| (c.cell, c.multiplier, c.supply, c.demand, c.trend))
                .collect()
        };
        let taken = take_over(true);
        assert_eq!(priced(&taken.0), priced(&expected.0));
        assert_eq!(taken.0.generation(), expected.0.generation());
        assert_eq!(taken.1, expected.1);
        // The engine snapshot matters: from the grid alone (each EMA reset
        // to its rounded published value) the smoothing continues
        // differently.
        assert_ne!(take_over(false).1, expected.1);
    }
}
