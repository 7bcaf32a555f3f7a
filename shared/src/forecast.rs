//! Short-term forecasts of a cell's demand and supply: additive
//! Holt-Winters over fixed 5-minute buckets with a daily season.
//!
//! A [`Series`] takes observations as they come (demand units summed per
//! bucket; supply sampled and averaged per bucket) and, each time a bucket
//! completes, updates a level, a damped trend and one of
//! [`SEASON_SLOTS`] quarter-hour seasonal offsets. It forecasts 1 to 3
//! buckets ahead (5, 10, 15 minutes) with a prediction interval from the
//! running variance of its one-step errors.
//!
//! Compact: a series is 2 + 96 numbers and a few counters (about 420
//! bytes), whatever its history. Deterministic: `f32` arithmetic in a fixed
//! order, `now` passed in. No I/O.
//!
//! Why these choices: the season is a day because urban demand repeats
//! daily (two rush hours, evenings); quarter-hour slots keep the state small
//! while 5-minute buckets keep the forecast responsive; the trend is damped
//! so a burst does not extrapolate into a runaway. During the first day each
//! slot's offset is the running mean of what it has seen (a season needs a
//! day to exist); after that the usual smoothing applies.

mod persist;

use std::collections::HashMap;

pub use persist::{HISTORY_MAGIC, HISTORY_VERSION};

use crate::geo::Cell;
use crate::grid::CellForecast;
use crate::time::{Millis, Timestamp};

/// Width of a forecast bucket.
pub const BUCKET: Millis = Millis::from_secs(300);

/// Seasonal slots per day (quarter hours).
pub const SEASON_SLOTS: usize = 96;

/// Forecast buckets per seasonal slot.
const BUCKETS_PER_SLOT: u64 = 3;

/// Buckets per day.
pub const BUCKETS_PER_DAY: u64 = SEASON_SLOTS as u64 * BUCKETS_PER_SLOT;

/// The horizons forecast, in buckets: 5, 10 and 15 minutes.
pub const HORIZONS: [u32; 3] = [1, 2, 3];

/// A gap longer than this (no observation at all) restarts the series: a
/// day of missing data says nothing about today.
const MAX_GAP_BUCKETS: u64 = BUCKETS_PER_DAY;

/// Smoothing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Level smoothing.
    pub alpha: f32,
    /// Trend smoothing.
    pub beta: f32,
    /// Seasonal smoothing.
    pub gamma: f32,
    /// Trend damping per bucket ahead.
    pub phi: f32,
}

impl Default for Params {
    fn default() -> Self {
        // Chosen on the backtest's synthetic city (shared/tests/
        // forecast_backtest.rs): alpha 0.05 forecasts that calm city best
        // (WAPE 15.6 % at 15 minutes) but follows a real shift (rain, an
        // event) too slowly; 0.1 costs a point there (16.6 %).
        Self {
            alpha: 0.1,
            beta: 0.01,
            gamma: 0.2,
            phi: 0.9,
        }
    }
}

/// How a bucket's observations combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Summed (demand units arriving).
    Sum,
    /// Averaged (available drivers sampled each tick).
    Mean,
}

/// A forecast: the expected value and a 95 % prediction interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Expected value in the bucket `horizon` buckets after the last
    /// completed one.
    pub expected: f32,
    /// Lower bound (≥ 0).
    pub low: f32,
    /// Upper bound.
    pub high: f32,
    /// Buckets ahead.
    pub horizon: u32,
}

/// One cell's forecast state for one quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    kind: Kind,
    level: f32,
    trend: f32,
    season: Box<[f32; SEASON_SLOTS]>,
    /// Updates each slot has had (saturating): a slot seen fewer than
    /// `1 / gamma` times averages instead of smoothing.
    slot_seen: Box<[u8; SEASON_SLOTS]>,
    /// Running variance of one-step errors.
    var: f32,
    /// Completed buckets seen.
    completed: u32,
    /// The open bucket (index since the epoch) and its running total and
    /// count of observations.
    open: Option<(u64, f32, u32)>,
    /// The last completed bucket's value (carried into gaps for `Mean`).
    last: f32,
}

fn slot_of(bucket: u64) -> usize {
    ((bucket % BUCKETS_PER_DAY) / BUCKETS_PER_SLOT) as usize
}

/// The bucket (index since the epoch) of an instant.
pub fn bucket_of(at: Timestamp) -> u64 {
    at.0 / BUCKET.0
}

impl Series {
    /// An empty series.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            level: 0.0,
            trend: 0.0,
            season: Box::new([0.0; SEASON_SLOTS]),
            slot_seen: Box::new([0; SEASON_SLOTS]),
            var: 0.0,
            completed: 0,
            open: None,
            last: 0.0,
        }
    }

    /// Completed buckets seen.
    pub fn completed(&self) -> u32 {
        self.completed
    }

    /// Whether the series holds nothing (new, or restarted after a gap).
    pub fn is_idle(&self) -> bool {
        self.completed == 0 && self.open.is_none()
    }

    /// Records `value` at `at`: completes the buckets before `at`'s (empty
    /// ones count as zero demand, or as the last supply), then adds to
    /// `at`'s. An observation older than the open bucket is dropped (the
    /// past is fixed once forecast from).
    pub fn observe(&mut self, at: Timestamp, value: f32, p: &Params) {
        let bucket = bucket_of(at);
        self.advance_to(bucket, p);
        match &mut self.open {
            Some((b, total, n)) if *b == bucket => {
                *total += value;
                *n += 1;
            }
            Some(_) => {}
            None => self.open = Some((bucket, value, 1)),
        }
    }

    /// Completes every bucket before `bucket` (call at each tick so empty
    /// buckets count).
    pub fn advance_to(&mut self, bucket: u64, p: &Params) {
        let Some((open, total, n)) = self.open else {
            return;
        };
        if bucket <= open {
            return;
        }
        let value = match self.kind {
            Kind::Sum => total,
            Kind::Mean => total / n.max(1) as f32,
        };
        self.complete(open, value, p);
        let gap = bucket - open - 1;
        if gap > MAX_GAP_BUCKETS {
            *self = Self::new(self.kind);
            return;
        } else {
            let fill = match self.kind {
                Kind::Sum => 0.0,
                Kind::Mean => self.last,
            };
            for b in open + 1..bucket {
                self.complete(b, fill, p);
            }
        }
        self.open = Some((bucket, 0.0, 0));
    }

    fn complete(&mut self, bucket: u64, y: f32, p: &Params) {
        let s = slot_of(bucket);
        if self.completed == 0 {
            self.level = y;
            self.trend = 0.0;
        } else {
            let predicted = self.level + p.phi * self.trend + self.season[s];
            let err = y - predicted;
            self.var = if self.completed == 1 {
                err * err
            } else {
                0.95 * self.var + 0.05 * err * err
            };
            let prev = self.level;
            self.level =
                p.alpha * (y - self.season[s]) + (1.0 - p.alpha) * (prev + p.phi * self.trend);
            self.trend = p.beta * (self.level - prev) + (1.0 - p.beta) * p.phi * self.trend;
        }
        // A slot seen fewer than 1/gamma times takes the mean of what it has
        // seen; then it smooths with gamma.
        let seen = f32::from(self.slot_seen[s]);
        let weight = p.gamma.max(1.0 / (seen + 1.0));
        self.season[s] = weight * (y - self.level) + (1.0 - weight) * self.season[s];
        self.slot_seen[s] = self.slot_seen[s].saturating_add(1);
        self.completed = self.completed.saturating_add(1);
        self.last = y;
    }

    /// The forecast `h` buckets after the last completed one (1: the open
    /// bucket). `None` before any bucket completed.
    pub fn forecast(&self, h: u32, p: &Params) -> Option<Forecast> {
        if self.completed == 0 {
            return None;
        }
        let last = self.open.map(|(b, _, _)| b.saturating_sub(1))?;
        let damped: f32 = (1..=h).map(|i| p.phi.powi(i as i32)).sum();
        let expected =
            (self.level + damped * self.trend + self.season[slot_of(last + u64::from(h))]).max(0.0);
        // The error variance grows with the horizon as the level's does.
        let spread = 1.96 * (self.var * (1.0 + (h as f32 - 1.0) * p.alpha * p.alpha)).sqrt();
        Some(Forecast {
            expected,
            low: (expected - spread).max(0.0),
            high: expected + spread,
            horizon: h,
        })
    }
}

/// The horizon a grid carries, in buckets: 15 minutes.
pub const GRID_HORIZON: u32 = 3;

/// A region's forecasts: a demand and a supply series per cell (vehicle
/// classes pooled, as surge is), fed by the pricer.
#[derive(Debug, Default)]
pub struct CellForecasts {
    params: Params,
    cells: HashMap<Cell, (Series, Series)>,
}

impl CellForecasts {
    /// Demand units arriving in `cell` at `at`.
    pub fn demand(&mut self, cell: Cell, at: Timestamp, units: u32) {
        let p = self.params;
        self.entry(cell).0.observe(at, units as f32, &p);
    }

    fn entry(&mut self, cell: Cell) -> &mut (Series, Series) {
        self.cells
            .entry(cell)
            .or_insert_with(|| (Series::new(Kind::Sum), Series::new(Kind::Mean)))
    }

    /// A tick at `now`: each cell's available drivers (cells not listed
    /// have none), every series advanced to `now`'s bucket, and the series
    /// idle for more than a day dropped.
    pub fn tick(&mut self, now: Timestamp, supply: &HashMap<Cell, u32>) {
        let p = self.params;
        for (cell, n) in supply {
            self.entry(*cell).1.observe(now, *n as f32, &p);
        }
        let bucket = bucket_of(now);
        self.cells.retain(|cell, (d, s)| {
            if !supply.contains_key(cell) {
                s.observe(now, 0.0, &p);
            }
            d.advance_to(bucket, &p);
            !(d.is_idle() && s.is_idle())
        });
    }

    /// The cell's expected demand and supply [`GRID_HORIZON`] buckets
    /// ahead, once its series have history.
    pub fn expected(&self, cell: Cell) -> Option<CellForecast> {
        let (d, s) = self.cells.get(&cell)?;
        let p = &self.params;
        Some(CellForecast {
            demand: d.forecast(GRID_HORIZON, p)?.expected,
            supply: s.forecast(GRID_HORIZON, p)?.expected,
        })
    }

    /// The cell's demand forecast `h` buckets ahead (1: the open bucket),
    /// with its interval, once the series has history.
    pub fn demand_forecast(&self, cell: Cell, h: u32) -> Option<Forecast> {
        self.cells.get(&cell)?.0.forecast(h, &self.params)
    }

    /// The cells with forecast state, in no particular order.
    pub fn cells(&self) -> impl Iterator<Item = Cell> + '_ {
        self.cells.keys().copied()
    }

    /// Cells with forecast state.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether no cell has forecast state.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(bucket: u64) -> Timestamp {
        Timestamp(bucket * BUCKET.0 + 1)
    }

    #[test]
    fn a_flat_series_forecasts_its_level() {
        let p = Params::default();
        let mut s = Series::new(Kind::Sum);
        for b in 0..500 {
            s.observe(at(b), 4.0, &p);
        }
        let f = s.forecast(3, &p).expect("forecast");
        assert!((f.expected - 4.0).abs() < 0.05, "{f:?}");
        assert!(f.low <= f.expected && f.expected <= f.high);
        assert!(f.high - f.low < 0.5, "no noise, a narrow interval: {f:?}");
    }

    #[test]
    fn empty_buckets_count_as_zero_demand_and_last_supply() {
        let p = Params::default();
        let mut d = Series::new(Kind::Sum);
        let mut s = Series::new(Kind::Mean);
        d.observe(at(0), 10.0, &p);
        s.observe(at(0), 6.0, &p);
        s.observe(at(0), 8.0, &p);
        // Nothing for five buckets, then a tick.
        d.advance_to(6, &p);
        s.advance_to(6, &p);
        assert_eq!(d.completed(), 6);
        assert_eq!(s.last, 7.0, "supply carries its mean into the gap");
        assert!(d.forecast(1, &p).expect("f").expected < 10.0);
        // A gap of more than a day restarts.
        d.advance_to(6 + 2 * BUCKETS_PER_DAY, &p);
        assert_eq!(d.completed(), 0);
        assert_eq!(d.forecast(1, &p), None);
    }

    #[test]
    fn the_daily_season_is_learnt() {
        let p = Params::default();
        let mut s = Series::new(Kind::Sum);
        // Quiet nights, a busy evening slot: 3 days.
        let y = |b: u64| if slot_of(b) == 72 { 30.0 } else { 2.0 };
        for b in 0..3 * BUCKETS_PER_DAY {
            s.observe(at(b), y(b), &p);
        }
        // The open bucket is the start of day 4; look ahead to 18:00.
        let evening = s.season[72];
        assert!(evening > 20.0, "{evening}");
        let f = s.forecast(1, &p).expect("f");
        assert!((f.expected - 2.0).abs() < 2.0, "{f:?}");
    }
}
