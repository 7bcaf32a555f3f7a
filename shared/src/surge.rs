//! The surge policy: from supply and demand counts to a multiplier.
//!
//! A tick of [`SurgeEngine::update`] does, per cell:
//!
//! 1. **raw**: the [`Policy`] maps (supply, demand) to a multiplier. The
//!    default curve is the original design's; zero supply with demand is the
//!    zone's maximum.
//! 2. **spatial smoothing**: blend with the mean raw value of the active
//!    neighbour cells, so a price does not jump at a cell edge.
//! 3. **time smoothing**: an exponential moving average over ticks.
//! 4. **publish**: round to 0.1, move at most `max_step` from the previous
//!    published value, then clamp into the zone's caps and the emergency cap.
//!
//! Architecture invariant: a published [`Multiplier`] is always within
//! `[min(zone min, effective max), effective max]` where effective max is
//! `min(zone max, emergency cap)`; with caps unchanged between ticks, it
//! never moves more than `max_step`.

use std::collections::HashMap;
use std::fmt;

use crate::geo::Cell;
use crate::state::{Reader, StateError, Writer};

/// A surge multiplier in tenths: 1.0, 1.1, ... Never below 1.0, never NaN.
///
/// Multipliers are published rounded to 0.1 (what a rider sees), so the
/// type stores tenths and every published value is exact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Multiplier(u16);

/// A multiplier that is not a finite number in [1.0, 100.0].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("multiplier {0} is not a number in [1.0, 100.0]")]
pub struct InvalidMultiplier(pub f64);

impl Multiplier {
    /// No surge.
    pub const ONE: Multiplier = Multiplier(10);
    /// The largest multiplier the system can represent (a sanity bound).
    pub const CEILING: Multiplier = Multiplier(1_000);

    /// From tenths: `13` is 1.3x.
    pub fn from_tenths(tenths: u16) -> Result<Self, InvalidMultiplier> {
        if (Self::ONE.0..=Self::CEILING.0).contains(&tenths) {
            Ok(Self(tenths))
        } else {
            Err(InvalidMultiplier(f64::from(tenths) / 10.0))
        }
    }

    /// From a float, rounded to the nearest tenth.
    pub fn from_f64(x: f64) -> Result<Self, InvalidMultiplier> {
        if !x.is_finite() {
            return Err(InvalidMultiplier(x));
        }
        let t = (x * 10.0).round();
        if !(f64::from(Self::ONE.0)..=f64::from(Self::CEILING.0)).contains(&t) {
            return Err(InvalidMultiplier(x));
        }
        Ok(Self(t as u16))
    }

    /// Tenths: 13 for 1.3x.
    pub fn tenths(self) -> u16 {
        self.0
    }

    /// The multiplier as a float (exact to one decimal when printed).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 10.0
    }

    fn clamp_tenths(t: f64) -> Self {
        let t = t
            .round()
            .clamp(f64::from(Self::ONE.0), f64::from(Self::CEILING.0));
        Self(t as u16)
    }
}

impl Default for Multiplier {
    fn default() -> Self {
        Self::ONE
    }
}

impl fmt::Debug for Multiplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x", self.as_f64())
    }
}

impl fmt::Display for Multiplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

// The multiplier is part of the wire format (grid, quotes): a JSON number.
impl serde::Serialize for Multiplier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> serde::Deserialize<'de> for Multiplier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        Multiplier::from_f64(x).map_err(serde::de::Error::custom)
    }
}

/// A zone's multiplier bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    min: Multiplier,
    max: Multiplier,
}

/// Caps whose minimum exceeds their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("zone minimum {min} exceeds zone maximum {max}")]
pub struct InvalidCaps {
    /// The requested minimum.
    pub min: Multiplier,
    /// The requested maximum.
    pub max: Multiplier,
}

impl Caps {
    /// The default zone caps: 1.0x to 5.0x (the original design's maximum).
    pub const DEFAULT: Caps = Caps {
        min: Multiplier::ONE,
        max: Multiplier(50),
    };

    /// Validated caps.
    pub fn new(min: Multiplier, max: Multiplier) -> Result<Self, InvalidCaps> {
        if min > max {
            return Err(InvalidCaps { min, max });
        }
        Ok(Self { min, max })
    }

    /// Zone minimum.
    pub fn min(&self) -> Multiplier {
        self.min
    }

    /// Zone maximum.
    pub fn max(&self) -> Multiplier {
        self.max
    }

    /// The bounds actually in force once an emergency cap applies. The
    /// emergency cap wins over a zone minimum: in an emergency no price is
    /// held above the cap.
    pub fn effective(&self, emergency: Option<Multiplier>) -> Caps {
        let max = match emergency {
            Some(e) => self.max.min(e),
            None => self.max,
        };
        Caps {
            min: self.min.min(max),
            max,
        }
    }

    /// `m` moved into these bounds.
    pub fn clamp(&self, m: Multiplier) -> Multiplier {
        m.clamp(self.min, self.max)
    }
}

impl Default for Caps {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the forecast expects of a cell at its horizon, in the market's
/// units: demand units in one demand window, and available drivers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ahead {
    /// Expected demand units in a demand window.
    pub demand: f64,
    /// Expected available drivers.
    pub supply: f64,
}

/// What a policy sees of one cell at a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyInput {
    /// Distinct available drivers now.
    pub supply: u32,
    /// Demand units in the window now.
    pub demand: u32,
    /// The forecast at its horizon, once the cell has history.
    pub ahead: Option<Ahead>,
    /// The zone's effective maximum, for curves that saturate.
    pub max: Multiplier,
}

/// What became of a region's recent ride requests: the feedback a
/// controller steers by. Gathered by the shell (the origin from its stored
/// outcomes, the simulator from its riders) over a recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Feedback {
    /// Requests that ended in the window: completed or not.
    pub ended: u32,
    /// Of those, the ones that found no driver (cancelled, failed).
    pub unfulfilled: u32,
    /// The 90th percentile of pickup waits of the completed ones, seconds.
    pub p90_wait_s: Option<f64>,
}

impl Feedback {
    /// How far back a controller looks: requests that ended in the last ten
    /// minutes (long enough to hold a few dozen in a quiet region, short
    /// enough to see a crowd form).
    pub const WINDOW: crate::time::Millis = crate::time::Millis::from_secs(600);

    /// How often a controller is shown feedback: each showing moves its
    /// threshold one bounded step at most, so this sets how fast it can
    /// move (the origin looks outcomes up this often; the simulator
    /// reprices this often).
    pub const EVERY: crate::time::Millis = crate::time::Millis::from_secs(30);

    /// Gathers ended requests: `(completed, pickup wait in seconds)`. A
    /// completed request without a known wait counts toward the share, not
    /// the percentile.
    pub fn gather(ended: impl IntoIterator<Item = (bool, Option<f64>)>) -> Self {
        let mut f = Feedback::default();
        let mut waits = Vec::new();
        for (completed, wait) in ended {
            f.ended = f.ended.saturating_add(1);
            if completed {
                waits.extend(wait.filter(|w| w.is_finite() && *w >= 0.0));
            } else {
                f.unfulfilled = f.unfulfilled.saturating_add(1);
            }
        }
        if !waits.is_empty() {
            waits.sort_by(f64::total_cmp);
            // Nearest rank.
            let rank = ((waits.len() as f64) * 0.9).ceil() as usize;
            f.p90_wait_s = waits.get(rank.saturating_sub(1)).copied();
        }
        f
    }
}

/// A pricing policy: a cell's supply, demand and forecast to a raw
/// multiplier.
///
/// `raw` must be pure and return a finite number ≥ 1.0; the engine smooths,
/// applies the step limit and clamps into the caps afterwards, whatever the
/// policy. A policy with state (a controller) updates it in `observe`,
/// before the cells of a tick are priced, on the ticks the shell has fresh
/// feedback for (every [`Feedback::EVERY`]).
pub trait Policy {
    /// A short name for reports ("default", "none", ...).
    fn name(&self) -> &str;

    /// The raw multiplier for a cell.
    fn raw(&self, cell: &PolicyInput) -> f64;

    /// The region's recent outcomes, when fresh. Curves ignore them.
    fn observe(&mut self, _feedback: &Feedback) {}

    /// The policy's own state, persisted with the engine's (a controller's
    /// threshold); `None` for curves, which have none.
    fn persisted(&self) -> Option<f64> {
        None
    }

    /// Continues from [`Self::persisted`] state.
    fn resume(&mut self, _state: f64) {}
}

/// No surge at all: always 1.0. The baseline for policy comparisons.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NoSurge;

impl Policy for NoSurge {
    fn name(&self) -> &str {
        "none"
    }

    fn raw(&self, _cell: &PolicyInput) -> f64 {
        1.0
    }
}

/// The original design's curve on r = demand / supply:
/// r ≤ 1 → 1.0; r ≤ 2 → 1 + (r − 1)·0.5; above → 1.5 + min((r − 2)·0.3, 3.5).
/// Zero supply with demand → the zone's maximum; no demand → 1.0; never
/// above the zone's maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DefaultCurve;

impl DefaultCurve {
    /// The curve itself, on a demand/supply ratio.
    pub fn of_ratio(r: f64) -> f64 {
        if r <= 1.0 {
            1.0
        } else if r <= 2.0 {
            1.0 + (r - 1.0) * 0.5
        } else {
            1.5 + ((r - 2.0) * 0.3).min(3.5)
        }
    }
}

impl Policy for DefaultCurve {
    fn name(&self) -> &str {
        "default"
    }

    fn raw(&self, cell: &PolicyInput) -> f64 {
        let max = cell.max;
        match (cell.supply, cell.demand) {
            (_, 0) => 1.0,
            (0, _) => max.as_f64(),
            // Saturate at the zone maximum, so that zero supply (the
            // maximum) is never below one driver's value: the curve stays
            // monotone in supply whatever the caps (found by proptest).
            (s, d) => Self::of_ratio(f64::from(d) / f64::from(s)).min(max.as_f64()),
        }
    }
}

/// A gentler curve: linear in the ratio above 1 with a configurable slope.
/// Useful to compare against the default in the simulator.
#[derive(Debug, Clone, Copy)]
pub struct LinearCurve {
    /// Multiplier added per unit of demand/supply ratio above 1.
    pub slope: f64,
}

impl Policy for LinearCurve {
    fn name(&self) -> &str {
        "linear"
    }

    fn raw(&self, cell: &PolicyInput) -> f64 {
        let max = cell.max;
        match (cell.supply, cell.demand) {
            (_, 0) => 1.0,
            (0, _) => max.as_f64(),
            (s, d) => {
                let r = f64::from(d) / f64::from(s);
                let slope = if self.slope.is_finite() {
                    self.slope.max(0.0)
                } else {
                    0.0
                };
                (1.0 + (r - 1.0).max(0.0) * slope).min(max.as_f64())
            }
        }
    }
}

/// Engine settings shared by every cell of a region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurgeConfig {
    /// Weight in [0, 1] given to the mean of active neighbours' raw values.
    /// 0 disables spatial smoothing.
    pub neighbour_weight: f64,
    /// EMA weight in (0, 1] of the newest tick; 1 disables time smoothing.
    pub ema_alpha: f64,
    /// Largest change of a published multiplier between two ticks.
    pub max_step_tenths: u16,
    /// A global cap over every zone's maximum, set in emergencies.
    pub emergency_cap: Option<Multiplier>,
}

impl Default for SurgeConfig {
    fn default() -> Self {
        Self {
            neighbour_weight: 0.25,
            ema_alpha: 0.5,
            max_step_tenths: 5,
            emergency_cap: None,
        }
    }
}

/// Why an engine configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidSurgeConfig {
    /// `neighbour_weight` is not in [0, 1].
    #[error("neighbour_weight {0} is not in [0, 1]")]
    NeighbourWeight(f64),
    /// `ema_alpha` is not in (0, 1].
    #[error("ema_alpha {0} is not in (0, 1]")]
    EmaAlpha(f64),
    /// `max_step_tenths` is zero: prices could never move.
    #[error("max_step must be at least 0.1")]
    MaxStep,
}

impl SurgeConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(self) -> Result<Self, InvalidSurgeConfig> {
        if !(0.0..=1.0).contains(&self.neighbour_weight) {
            return Err(InvalidSurgeConfig::NeighbourWeight(self.neighbour_weight));
        }
        if !(self.ema_alpha > 0.0 && self.ema_alpha <= 1.0) {
            return Err(InvalidSurgeConfig::EmaAlpha(self.ema_alpha));
        }
        if self.max_step_tenths == 0 {
            return Err(InvalidSurgeConfig::MaxStep);
        }
        Ok(self)
    }
}

/// Which way a cell's price is heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trend {
    /// Smoothed multiplier rising.
    Increasing,
    /// Within a small band of the previous tick.
    Stable,
    /// Smoothed multiplier falling.
    Decreasing,
}

/// A trend name that is not one of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trend {0:?}; expected increasing, stable or decreasing")]
pub struct UnknownTrend(pub String);

impl Trend {
    /// Parses the wire name (the one parser of trends).
    pub fn parse(s: &str) -> Result<Self, UnknownTrend> {
        match s {
            "increasing" => Ok(Trend::Increasing),
            "stable" => Ok(Trend::Stable),
            "decreasing" => Ok(Trend::Decreasing),
            other => Err(UnknownTrend(other.chars().take(20).collect())),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Increasing => "increasing",
            Trend::Stable => "stable",
            Trend::Decreasing => "decreasing",
        }
    }
}

/// One cell's market counts for a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellInput {
    /// The cell.
    pub cell: Cell,
    /// Distinct available drivers.
    pub supply: u32,
    /// Demand units in the window.
    pub demand: u32,
    /// The zone caps in force for this cell.
    pub caps: Caps,
    /// The forecast at its horizon, when the cell has history.
    pub ahead: Option<Ahead>,
}

/// One cell's result of a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellSurge {
    /// The cell.
    pub cell: Cell,
    /// The published multiplier.
    pub multiplier: Multiplier,
    /// The previous published multiplier (1.0 or the zone minimum if new).
    pub previous: Multiplier,
    /// The policy's raw value before smoothing and caps, for the change log.
    pub raw: f64,
    /// Supply used.
    pub supply: u32,
    /// Demand used.
    pub demand: u32,
    /// Direction of the smoothed value.
    pub trend: Trend,
}

#[derive(Debug, Clone, Copy)]
struct CellState {
    ema: f64,
    published: Multiplier,
    caps: Caps,
}

/// Turns per-cell market counts into published multipliers, tick by tick.
/// Holds per-cell smoothing state; pure and deterministic.
#[derive(Debug)]
pub struct SurgeEngine<P> {
    policy: P,
    config: SurgeConfig,
    cells: HashMap<Cell, CellState>,
    /// Neighbour lists are pure functions of the cell; computing them is
    /// the most expensive part of a tick, so they are remembered.
    neighbours: HashMap<Cell, Box<[Cell]>>,
}

/// A change in the smoothed value smaller than this counts as stable.
const TREND_BAND: f64 = 0.05;

impl<P: Policy> SurgeEngine<P> {
    /// An engine with no history.
    pub fn new(policy: P, config: SurgeConfig) -> Result<Self, InvalidSurgeConfig> {
        Ok(Self {
            policy,
            config: config.validate()?,
            cells: HashMap::new(),
            neighbours: HashMap::new(),
        })
    }

    /// The policy in use.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The policy, to continue its state after a restart.
    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// The configuration in use.
    pub fn config(&self) -> SurgeConfig {
        self.config
    }

    /// Replaces the configuration (e.g. a new emergency cap) from the next
    /// tick on. Caps win over the step limit when they tighten.
    pub fn set_config(&mut self, config: SurgeConfig) -> Result<(), InvalidSurgeConfig> {
        self.config = config.validate()?;
        Ok(())
    }

    /// The last published multiplier of a cell, if it is tracked.
    pub fn published(&self, cell: Cell) -> Option<Multiplier> {
        self.cells.get(&cell).map(|s| s.published)
    }

    /// Restores a cell's published value (after a restart), so the step
    /// limit continues from it instead of from 1.0.
    pub fn restore(&mut self, cell: Cell, published: Multiplier, caps: Caps) {
        self.cells.insert(
            cell,
            CellState {
                ema: published.as_f64(),
                published,
                caps,
            },
        );
    }

    /// Number of cells with state (active or decaying).
    pub fn tracked_cells(&self) -> usize {
        self.cells.len()
    }

    /// One tick. `inputs` are the cells with market activity; tracked cells
    /// missing from it are treated as having none, so they decay to 1.0 and
    /// are then forgotten. Returns every cell with a result, sorted by cell.
    pub fn update(&mut self, inputs: &[CellInput]) -> Vec<CellSurge> {
        self.update_with(inputs, None)
    }

    /// [`Self::update`] after showing the policy the region's recent
    /// outcomes (`None`: none gathered this tick).
    pub fn update_with(
        &mut self,
        inputs: &[CellInput],
        feedback: Option<&Feedback>,
    ) -> Vec<CellSurge> {
        if let Some(f) = feedback {
            self.policy.observe(f);
        }
        let emergency = self.config.emergency_cap;
        let mut active: HashMap<Cell, (CellInput, f64)> = HashMap::with_capacity(inputs.len());
        for input in inputs {
            let caps = input.caps.effective(emergency);
            let raw = self.policy.raw(&PolicyInput {
                supply: input.supply,
                demand: input.demand,
                ahead: input.ahead,
                max: caps.max(),
            });
            let raw = if raw.is_finite() { raw } else { 1.0 };
            let raw = raw.clamp(1.0, caps.max().as_f64());
            active.insert(input.cell, (*input, raw));
        }
        // Tracked cells with no activity this tick: input (0, 0), raw 1.0.
        for (cell, state) in &self.cells {
            active.entry(*cell).or_insert((
                CellInput {
                    cell: *cell,
                    supply: 0,
                    demand: 0,
                    caps: state.caps,
                    ahead: None,
                },
                1.0,
            ));
        }

        let mut out = Vec::with_capacity(active.len());
        let w = self.config.neighbour_weight;
        let alpha = self.config.ema_alpha;
        let step = f64::from(self.config.max_step_tenths);
        for (cell, (input, raw)) in &active {
            let smoothed = if w > 0.0 {
                let ns = self
                    .neighbours
                    .entry(*cell)
                    .or_insert_with(|| cell.neighbours().into_boxed_slice());
                let (sum, n) = ns
                    .iter()
                    .filter_map(|n| active.get(n).map(|(_, r)| *r))
                    .fold((0.0, 0u32), |(s, k), r| (s + r, k + 1));
                if n == 0 {
                    *raw
                } else {
                    (1.0 - w) * raw + w * (sum / f64::from(n))
                }
            } else {
                *raw
            };
            let caps = input.caps.effective(emergency);
            let prev = self.cells.get(cell).copied().unwrap_or(CellState {
                ema: 1.0,
                published: caps.clamp(Multiplier::ONE),
                caps: input.caps,
            });
            let ema = alpha * smoothed + (1.0 - alpha) * prev.ema;
            let prev_t = f64::from(prev.published.tenths());
            let target = (ema * 10.0).round().clamp(prev_t - step, prev_t + step);
            let published = caps.clamp(Multiplier::clamp_tenths(target));
            let trend = if ema - prev.ema > TREND_BAND {
                Trend::Increasing
            } else if prev.ema - ema > TREND_BAND {
                Trend::Decreasing
            } else {
                Trend::Stable
            };
            out.push(CellSurge {
                cell: *cell,
                multiplier: published,
                previous: prev.published,
                raw: *raw,
                supply: input.supply,
                demand: input.demand,
                trend,
            });
            self.cells.insert(
                *cell,
                CellState {
                    ema,
                    published,
                    caps: input.caps,
                },
            );
        }
        // Forget cells that have settled back to no surge with no activity.
        self.cells.retain(|cell, s| {
            let idle = active
                .get(cell)
                .is_none_or(|(i, _)| i.supply == 0 && i.demand == 0);
            !(idle && s.published == Multiplier::ONE && s.ema < 1.0 + TREND_BAND)
        });
        self.neighbours.retain(|cell, _| active.contains_key(cell));
        out.sort_unstable_by_key(|c| c.cell);
        out
    }
}

/// An engine's per-cell state as decoded from a snapshot (`crate::state`).
#[derive(Debug)]
pub(crate) struct EngineData(HashMap<Cell, CellState>);

impl<P: Policy> SurgeEngine<P> {
    /// Appends every tracked cell's smoothing state, sorted by cell.
    pub(crate) fn write_state(&self, w: &mut Writer) {
        let mut cells: Vec<_> = self.cells.iter().collect();
        cells.sort_unstable_by_key(|(c, _)| **c);
        w.varint(cells.len() as u64);
        for (cell, s) in cells {
            w.fixed64(cell.id());
            w.fixed64(s.ema.to_bits());
            w.varint(u64::from(s.published.tenths()));
            w.varint(u64::from(s.caps.min().tenths()));
            w.varint(u64::from(s.caps.max().tenths()));
        }
    }

    /// Reads what [`SurgeEngine::write_state`] wrote, validating every value.
    pub(crate) fn read_state(r: &mut Reader<'_>) -> Result<EngineData, StateError> {
        let n = r.count(19)?;
        let mut cells = HashMap::with_capacity(n);
        let mut last = None;
        for _ in 0..n {
            let cell =
                Cell::from_id(r.fixed64()?).map_err(|_| StateError::Invalid("invalid cell id"))?;
            if last.is_some_and(|l| l >= cell) {
                return Err(StateError::Invalid("engine cells not in ascending order"));
            }
            last = Some(cell);
            let ema = f64::from_bits(r.fixed64()?);
            if !(ema.is_finite() && ema >= 0.0) {
                return Err(StateError::Invalid(
                    "EMA is not a finite non-negative number",
                ));
            }
            let m = |t: u16| {
                Multiplier::from_tenths(t).map_err(|_| StateError::Invalid("multiplier below 1.0"))
            };
            let published = m(r.u16()?)?;
            let caps = Caps::new(m(r.u16()?)?, m(r.u16()?)?)
                .map_err(|_| StateError::Invalid("caps minimum above maximum"))?;
            cells.insert(
                cell,
                CellState {
                    ema,
                    published,
                    caps,
                },
            );
        }
        Ok(EngineData(cells))
    }

    /// Replaces the per-cell state with decoded state; the policy and the
    /// configuration stay.
    pub(crate) fn replace_state(&mut self, data: EngineData) {
        self.cells = data.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{LatLng, DEFAULT_LEVEL};

    fn m(t: u16) -> Multiplier {
        Multiplier::from_tenths(t).expect("valid tenths")
    }

    fn cell(lat: f64, lng: f64) -> Cell {
        Cell::at(LatLng::new(lat, lng).expect("coordinate"), DEFAULT_LEVEL)
    }

    fn input(cell: Cell, supply: u32, demand: u32) -> CellInput {
        CellInput {
            cell,
            supply,
            demand,
            caps: Caps::DEFAULT,
            ahead: None,
        }
    }

    fn at(supply: u32, demand: u32, max: Multiplier) -> PolicyInput {
        PolicyInput {
            supply,
            demand,
            ahead: None,
            max,
        }
    }

    #[test]
    fn feedback_counts_the_unfulfilled_and_the_p90_wait() {
        let mut ended: Vec<(bool, Option<f64>)> = (1..=10)
            .map(|i| (true, Some(f64::from(i) * 60.0)))
            .collect();
        ended.push((false, None));
        ended.push((true, None));
        let f = Feedback::gather(ended);
        assert_eq!(f.ended, 12);
        assert_eq!(f.unfulfilled, 1);
        assert_eq!(f.p90_wait_s, Some(540.0));
        assert_eq!(Feedback::gather([]).p90_wait_s, None);
    }

    #[test]
    fn default_curve_matches_the_design() {
        let c = DefaultCurve;
        let max = m(50);
        assert_eq!(c.raw(&at(10, 5, max)), 1.0);
        assert_eq!(c.raw(&at(10, 10, max)), 1.0);
        assert!((c.raw(&at(10, 15, max)) - 1.25).abs() < 1e-12);
        assert!((c.raw(&at(10, 20, max)) - 1.5).abs() < 1e-12);
        assert!((c.raw(&at(10, 30, max)) - 1.8).abs() < 1e-12);
        // Saturates at 1.5 + 3.5 = 5.0.
        assert!((c.raw(&at(1, 1_000, max)) - 5.0).abs() < 1e-12);
        assert_eq!(c.raw(&at(0, 3, max)), 5.0);
        assert_eq!(c.raw(&at(0, 0, max)), 1.0);
        assert_eq!(c.raw(&at(0, 3, m(30))), 3.0);
    }

    #[test]
    fn multiplier_parsing() {
        assert_eq!(Multiplier::from_f64(1.26), Ok(m(13)));
        assert!(Multiplier::from_f64(0.9).is_err());
        assert!(Multiplier::from_f64(f64::NAN).is_err());
        assert!(Multiplier::from_tenths(9).is_err());
        assert_eq!(m(13).to_string(), "1.3");
        assert_eq!(serde_json::to_string(&m(13)).expect("json"), "1.3");
        assert!(serde_json::from_str::<Multiplier>("0.5").is_err());
    }

    #[test]
    fn caps_emergency_wins_over_minimum() {
        let caps = Caps::new(m(15), m(40)).expect("caps");
        let e = caps.effective(Some(m(12)));
        assert_eq!((e.min(), e.max()), (m(12), m(12)));
        assert!(Caps::new(m(20), m(15)).is_err());
    }

    #[test]
    fn engine_smooths_in_time_and_limits_steps() {
        let cfg = SurgeConfig {
            neighbour_weight: 0.0,
            ema_alpha: 0.5,
            max_step_tenths: 3,
            emergency_cap: None,
        };
        let mut e = SurgeEngine::new(DefaultCurve, cfg).expect("engine");
        let c = cell(37.77, -122.42);
        // Zero supply, demand: raw 5.0, but it climbs 0.3 per tick.
        let mut last = Multiplier::ONE;
        for _ in 0..20 {
            let r = e.update(&[input(c, 0, 10)]);
            assert_eq!(r.len(), 1);
            let now = r[0].multiplier;
            assert!(now.tenths() - last.tenths() <= 3);
            last = now;
        }
        assert_eq!(last, m(50));
        // Demand disappears: it decays back to 1.0 and is then forgotten.
        for _ in 0..40 {
            e.update(&[]);
        }
        assert_eq!(e.tracked_cells(), 0);
    }

    #[test]
    fn neighbours_pull_a_cell_toward_them() {
        let cfg = SurgeConfig {
            neighbour_weight: 0.5,
            ema_alpha: 1.0,
            max_step_tenths: 100,
            emergency_cap: None,
        };
        let mut e = SurgeEngine::new(DefaultCurve, cfg).expect("engine");
        let hot = cell(40.7128, -74.0060);
        let calm = hot.neighbours()[0];
        let r = e.update(&[input(hot, 1, 3), input(calm, 10, 1)]);
        let get = |c: Cell| r.iter().find(|x| x.cell == c).expect("cell").multiplier;
        // hot: raw 1.5 + 0.3 = 1.8, neighbour mean 1.0 → 1.4.
        assert_eq!(get(hot), m(14));
        // calm: raw 1.0, neighbour 1.8 → 1.4.
        assert_eq!(get(calm), m(14));
    }

    #[test]
    fn trend_follows_the_smoothed_value() {
        let mut e = SurgeEngine::new(DefaultCurve, SurgeConfig::default()).expect("engine");
        let c = cell(35.68, 139.69);
        assert_eq!(e.update(&[input(c, 1, 5)])[0].trend, Trend::Increasing);
        for _ in 0..30 {
            e.update(&[input(c, 1, 5)]);
        }
        assert_eq!(e.update(&[input(c, 1, 5)])[0].trend, Trend::Stable);
        assert_eq!(e.update(&[input(c, 5, 1)])[0].trend, Trend::Decreasing);
    }

    #[test]
    fn invalid_config_is_refused() {
        let bad = SurgeConfig {
            ema_alpha: 0.0,
            ..SurgeConfig::default()
        };
        assert!(SurgeEngine::new(NoSurge, bad).is_err());
    }
}
