//! Short-term forecasts of a cell's demand and supply: additive
//! Holt-Winters over fixed 5-minute buckets with a weekly season kept as
//! two daily profiles, one for weekdays and one for weekends.
//!
//! A [`Series`] takes observations as they come (demand units summed per
//! bucket; supply sampled and averaged per bucket) and, each time a bucket
//! completes, updates a level, a damped trend and one of
//! [`SEASON_SLOTS`] quarter-hour seasonal offsets of the profile of the
//! bucket's day type (Saturday and Sunday in the region's
//! [`Calendar`]; Monday to Friday). It forecasts 1 to 3 buckets ahead (5,
//! 10, 15 minutes) with a prediction interval from the running variance of
//! its one-step errors.
//!
//! Compact: a series is 2 + 2 × 96 numbers and a few counters (about 1 KB),
//! whatever its history. Deterministic: `f32` arithmetic in a fixed order,
//! `now` passed in. No I/O.
//!
//! Why these choices: urban demand repeats daily (two rush hours,
//! evenings) and weekly (no morning rush at weekends, longer nights). A
//! full week of quarter-hour slots (672) would triple the state and learn
//! each slot from one day a week; two day types learn the weekdays' profile
//! five times a week and the weekend's twice, which forecast the
//! simulator's city better than a week of slots did, and better than a
//! daily profile plus an hourly weekly correction (docs/simulation/city.md
//! has the comparison with the daily-only profile, [`Params::weekends`]).
//! Quarter-hour slots keep the state small while 5-minute buckets keep the
//! forecast responsive; the trend is damped so a burst does not extrapolate
//! into a runaway. Until a slot has been seen a few times its offset is the
//! running mean of what it has seen (a profile needs a day of its type to
//! exist, so the first weekend starts from its level); after that the
//! usual smoothing applies.

mod persist;

use std::collections::HashMap;

pub use persist::{HISTORY_MAGIC, HISTORY_VERSION};

use crate::fare::VehicleClass;
use crate::geo::Cell;
use crate::grid::CellForecast;
use crate::time::{Millis, Timestamp};

/// Width of a forecast bucket.
pub const BUCKET: Millis = Millis::from_secs(300);

/// Seasonal slots per day (quarter hours).
pub const SEASON_SLOTS: usize = 96;

/// Day types with a profile of their own: weekdays, weekends.
pub const DAY_TYPES: usize = 2;

/// Seasonal slots of a series: a day of slots per day type.
const PROFILE_SLOTS: usize = SEASON_SLOTS * DAY_TYPES;

/// Forecast buckets per seasonal slot.
const BUCKETS_PER_SLOT: u64 = 3;

/// Buckets per day.
pub const BUCKETS_PER_DAY: u64 = SEASON_SLOTS as u64 * BUCKETS_PER_SLOT;

/// The horizons forecast, in buckets: 5, 10 and 15 minutes.
pub const HORIZONS: [u32; 3] = [1, 2, 3];

/// A horizon of `h` buckets in minutes (how the API and metrics name it).
pub fn horizon_minutes(h: u32) -> u32 {
    h * (BUCKET.0 / 60_000) as u32
}

/// Demand units a bucket from which a series counts as busy (the
/// forecast target's cells, and the backtest's densest class).
pub const BUSY_UNITS_PER_BUCKET: f32 = 10.0;

/// How much of its weight the live accuracy score keeps per bucket: it
/// covers about the last hour (12 buckets).
const SCORE_DECAY: f32 = 11.0 / 12.0;

/// A gap longer than this (no observation at all) restarts the series: a
/// day of missing data says nothing about today.
const MAX_GAP_BUCKETS: u64 = BUCKETS_PER_DAY;

/// When a region's days begin, and which are weekends: its local
/// standard time as an offset from UTC. Daylight saving is not followed:
/// in summer a day type changes an hour off local midnight, which the
/// night's low demand hardly notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calendar {
    offset_buckets: i64,
}

/// A UTC offset that is no offset a clock uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("utc_offset_minutes must be a multiple of 15 from -720 to 840, not {0}")]
pub struct InvalidCalendar(pub i64);

impl Calendar {
    /// UTC: days begin at 00:00 UTC.
    pub const UTC: Calendar = Calendar { offset_buckets: 0 };

    /// A region whose local standard time is `minutes` ahead of UTC (−480
    /// for San Francisco, 60 for Paris, 330 for Mumbai).
    pub fn from_utc_offset_minutes(minutes: i64) -> Result<Self, InvalidCalendar> {
        if !(-720..=840).contains(&minutes) || minutes % 15 != 0 {
            return Err(InvalidCalendar(minutes));
        }
        Ok(Self {
            offset_buckets: minutes * 60 / (BUCKET.0 as i64 / 1_000),
        })
    }

    /// The offset from UTC, minutes.
    pub fn utc_offset_minutes(self) -> i64 {
        self.offset_buckets * (BUCKET.0 as i64 / 1_000) / 60
    }

    /// The bucket in local time.
    fn local(self, bucket: u64) -> u64 {
        bucket.saturating_add_signed(self.offset_buckets)
    }

    /// Whether the local day of `bucket` is a Saturday or a Sunday.
    fn weekend_bucket(self, bucket: u64) -> bool {
        // 1970-01-01 was a Thursday: day 0 is weekday 3 (Monday = 0).
        (self.local(bucket) / BUCKETS_PER_DAY + 3) % 7 >= 5
    }

    /// Whether `at` falls on a local Saturday or Sunday (5-minute
    /// resolution: the rule the forecasts use).
    pub fn is_weekend(self, at: Timestamp) -> bool {
        self.weekend_bucket(bucket_of(at))
    }
}

/// Smoothing parameters and the calendar.
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
    /// Whether weekends have a profile of their own (false: one daily
    /// profile for every day, the model before the weekly season; kept so
    /// backtests can compare the two).
    pub weekends: bool,
    /// The region's days.
    pub calendar: Calendar,
}

impl Default for Params {
    fn default() -> Self {
        // Chosen on the backtest's synthetic city (shared/tests/
        // forecast_backtest.rs), before the weekend profile: alpha 0.05
        // forecast that calm city best (WAPE 15.6 % at 15 minutes) but
        // follows a real shift (rain, an event) too slowly; 0.1 cost a
        // point there (16.6 %). With the weekend profile 0.1 gives 17.4 %:
        // that city has no weekends, and the profile learns from two days
        // a week.
        Self {
            alpha: 0.1,
            beta: 0.01,
            gamma: 0.2,
            phi: 0.9,
            weekends: true,
            calendar: Calendar::UTC,
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
    /// The weekday profile's slots, then the weekend's.
    season: Box<[f32; PROFILE_SLOTS]>,
    /// Updates each slot has had (saturating): a slot seen fewer than
    /// `1 / gamma` times averages instead of smoothing.
    slot_seen: Box<[u8; PROFILE_SLOTS]>,
    /// Running variance of one-step errors.
    var: f32,
    /// Completed buckets seen.
    completed: u32,
    /// The open bucket (index since the epoch) and its running total and
    /// count of observations.
    open: Option<(u64, f32, u32)>,
    /// The last completed bucket's value (carried into gaps for `Mean`).
    last: f32,
    /// The forecasts made for the coming buckets, scored as they complete
    /// (not persisted: a restarted series scores afresh).
    score: Score,
}

/// A series' live accuracy: the forecasts it made for the next three
/// buckets, and the decayed errors of those already completed.
#[derive(Debug, Clone, PartialEq)]
struct Score {
    /// `ahead[i][h - 1]`: the forecast `h` buckets ahead for the `i + 1`th
    /// bucket after the last completed one (NaN: none made).
    ahead: [[f32; 3]; 3],
    /// Decayed Σ |forecast − actual| per horizon.
    abs: [f32; 3],
    /// Decayed Σ actual per horizon, over the buckets scored.
    actual: [f32; 3],
    /// Decayed count of buckets scored at the longest horizon.
    buckets: f32,
}

impl Score {
    fn new() -> Self {
        Self {
            ahead: [[f32::NAN; 3]; 3],
            abs: [0.0; 3],
            actual: [0.0; 3],
            buckets: 0.0,
        }
    }

    /// Scores the forecasts made for a bucket that completed with `y`, and
    /// moves on to the next.
    fn complete(&mut self, y: f32) {
        let made = self.ahead[0];
        for (h, f) in made.iter().enumerate() {
            if f.is_finite() {
                self.abs[h] = SCORE_DECAY * self.abs[h] + (f - y).abs();
                self.actual[h] = SCORE_DECAY * self.actual[h] + y;
            }
        }
        if made[2].is_finite() {
            self.buckets = SCORE_DECAY * self.buckets + 1.0;
        }
        self.ahead = [self.ahead[1], self.ahead[2], [f32::NAN; 3]];
    }
}

/// The seasonal slot of `bucket`: its quarter hour of the local day, in
/// the weekend profile on a weekend.
fn slot_of(bucket: u64, p: &Params) -> usize {
    let local = p.calendar.local(bucket);
    let slot = ((local % BUCKETS_PER_DAY) / BUCKETS_PER_SLOT) as usize;
    if p.weekends && p.calendar.weekend_bucket(bucket) {
        SEASON_SLOTS + slot
    } else {
        slot
    }
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
            season: Box::new([0.0; PROFILE_SLOTS]),
            slot_seen: Box::new([0; PROFILE_SLOTS]),
            var: 0.0,
            completed: 0,
            open: None,
            last: 0.0,
            score: Score::new(),
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
        self.score.complete(y);
        let s = slot_of(bucket, p);
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
        for h in 1..=3 {
            self.score.ahead[h - 1][h - 1] = self.expected_after(bucket, h as u32, p);
        }
    }

    /// The expected value `h` buckets after `last`, the last completed
    /// bucket.
    fn expected_after(&self, last: u64, h: u32, p: &Params) -> f32 {
        let damped: f32 = (1..=h).map(|i| p.phi.powi(i as i32)).sum();
        (self.level + damped * self.trend + self.season[slot_of(last + u64::from(h), p)]).max(0.0)
    }

    /// The live accuracy of its forecasts over about the last hour:
    /// (Σ |error|, Σ actual) per horizon, and the mean actual per bucket.
    fn accuracy(&self) -> ([f32; 3], [f32; 3], f32) {
        let mean = if self.score.buckets > 0.0 {
            self.score.actual[2] / self.score.buckets
        } else {
            0.0
        };
        (self.score.abs, self.score.actual, mean)
    }

    /// The forecast `h` buckets after the last completed one (1: the open
    /// bucket). `None` before any bucket completed.
    pub fn forecast(&self, h: u32, p: &Params) -> Option<Forecast> {
        if self.completed == 0 {
            return None;
        }
        let last = self.open.map(|(b, _, _)| b.saturating_sub(1))?;
        let expected = self.expected_after(last, h, p);
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

/// A region's forecasts: a demand and a supply series per cell and
/// vehicle class, fed by the pricer. Surge prices a cell for all classes
/// at once (`crate::pricer`), so what the grid carries and the policies
/// read is the cell's sum over its classes; each class's own forecast is
/// there for whoever asks ([`Self::class_demand_forecast`]).
#[derive(Debug, Default)]
pub struct CellForecasts {
    params: Params,
    cells: HashMap<SeriesKey, (Series, Series)>,
}

/// What a region's series are kept by.
pub(crate) type SeriesKey = (Cell, VehicleClass);

/// [`CellForecasts::accuracy`]: WAPE per horizon (5, 10, 15 minutes;
/// `None` before anything was scored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    /// Over every cell and class.
    pub all: [Option<f64>; 3],
    /// Over the busy series.
    pub busy: [Option<f64>; 3],
    /// Series counted as busy.
    pub busy_series: usize,
}

impl CellForecasts {
    /// No series yet, forecasting with `params`.
    pub fn new(params: Params) -> Self {
        Self {
            params,
            cells: HashMap::new(),
        }
    }

    /// The parameters forecasts use.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Demand units for `class` arriving in `cell` at `at`.
    pub fn demand(&mut self, cell: Cell, class: VehicleClass, at: Timestamp, units: u32) {
        let p = self.params;
        self.entry(cell, class).0.observe(at, units as f32, &p);
    }

    fn entry(&mut self, cell: Cell, class: VehicleClass) -> &mut (Series, Series) {
        self.cells
            .entry((cell, class))
            .or_insert_with(|| (Series::new(Kind::Sum), Series::new(Kind::Mean)))
    }

    /// A tick at `now`: the available drivers per cell and class (those
    /// not listed have none), every series advanced to `now`'s bucket, and
    /// the series idle for more than a day dropped.
    pub fn tick(&mut self, now: Timestamp, supply: &HashMap<(Cell, VehicleClass), u32>) {
        let p = self.params;
        for ((cell, class), n) in supply {
            self.entry(*cell, *class).1.observe(now, *n as f32, &p);
        }
        let bucket = bucket_of(now);
        self.cells.retain(|key, (d, s)| {
            if !supply.contains_key(key) {
                s.observe(now, 0.0, &p);
            }
            d.advance_to(bucket, &p);
            !(d.is_idle() && s.is_idle())
        });
    }

    /// The cell's expected demand and supply [`GRID_HORIZON`] buckets
    /// ahead, summed over its classes with history.
    ///
    /// Demand and supply are summed apart: a class with drivers and no
    /// riders yet adds its supply (and no demand), as the pooled series did.
    pub fn expected(&self, cell: Cell) -> Option<CellForecast> {
        // One lookup per class: the pricer asks for every cell each tick.
        let p = &self.params;
        let (mut demand, mut supply) = (None::<f32>, None::<f32>);
        for (d, s) in VehicleClass::ALL
            .iter()
            .filter_map(|c| self.cells.get(&(cell, *c)))
        {
            if let Some(f) = d.forecast(GRID_HORIZON, p) {
                *demand.get_or_insert(0.0) += f.expected;
            }
            if let Some(f) = s.forecast(GRID_HORIZON, p) {
                *supply.get_or_insert(0.0) += f.expected;
            }
        }
        Some(CellForecast {
            demand: demand?,
            supply: supply?,
        })
    }

    /// The cell's demand forecast `h` buckets ahead (1: the open bucket)
    /// over all its classes: the expected values summed, the interval's
    /// half-widths combined as independent errors.
    pub fn demand_forecast(&self, cell: Cell, h: u32) -> Option<Forecast> {
        sum_of(
            VehicleClass::ALL
                .iter()
                .filter_map(|c| self.class_demand_forecast(cell, *c, h)),
            h,
        )
    }

    /// The cell's supply forecast `h` buckets ahead over all its classes,
    /// summed as [`Self::demand_forecast`] sums demand.
    pub fn supply_forecast(&self, cell: Cell, h: u32) -> Option<Forecast> {
        sum_of(
            VehicleClass::ALL
                .iter()
                .filter_map(|c| self.class_supply_forecast(cell, *c, h)),
            h,
        )
    }

    /// Where demand is heading: every cell's demand and supply forecasts
    /// at each of [`HORIZONS`], for one class or (`None`) summed over the
    /// classes, busiest first by expected demand at the longest horizon
    /// (ties by cell), at most `limit` cells.
    pub fn outlook(&self, class: Option<VehicleClass>, limit: usize) -> Vec<CellOutlook> {
        let mut out: Vec<CellOutlook> = self
            .cells()
            .filter(|c| class.is_none_or(|k| self.cells.contains_key(&(*c, k))))
            .map(|cell| CellOutlook {
                cell,
                horizons: HORIZONS.map(|h| match class {
                    Some(k) => (
                        self.class_demand_forecast(cell, k, h),
                        self.class_supply_forecast(cell, k, h),
                    ),
                    None => (self.demand_forecast(cell, h), self.supply_forecast(cell, h)),
                }),
            })
            .collect();
        let key = |o: &CellOutlook| {
            o.horizons[HORIZONS.len() - 1]
                .0
                .map_or(-1.0, |f| f.expected)
        };
        out.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.cell.cmp(&b.cell)));
        out.truncate(limit);
        out
    }

    /// One class's demand forecast in the cell `h` buckets ahead.
    pub fn class_demand_forecast(
        &self,
        cell: Cell,
        class: VehicleClass,
        h: u32,
    ) -> Option<Forecast> {
        self.cells.get(&(cell, class))?.0.forecast(h, &self.params)
    }

    /// One class's supply forecast in the cell `h` buckets ahead.
    pub fn class_supply_forecast(
        &self,
        cell: Cell,
        class: VehicleClass,
        h: u32,
    ) -> Option<Forecast> {
        self.cells.get(&(cell, class))?.1.forecast(h, &self.params)
    }

    /// The live accuracy of the demand forecasts over about the last hour,
    /// each forecast scored when the bucket it predicted completes: WAPE
    /// per horizon over every series, and over the busy ones (a mean of at
    /// least [`BUSY_UNITS_PER_BUCKET`]). Not persisted: it starts afresh
    /// after a restart or a take-over.
    pub fn accuracy(&self) -> Accuracy {
        let mut all = ([0.0f64; 3], [0.0f64; 3]);
        let mut busy = ([0.0f64; 3], [0.0f64; 3]);
        let mut busy_series = 0;
        for (d, _) in self.cells.values() {
            let (abs, actual, mean) = d.accuracy();
            let is_busy = mean >= BUSY_UNITS_PER_BUCKET;
            busy_series += usize::from(is_busy);
            for h in 0..3 {
                all.0[h] += f64::from(abs[h]);
                all.1[h] += f64::from(actual[h]);
                if is_busy {
                    busy.0[h] += f64::from(abs[h]);
                    busy.1[h] += f64::from(actual[h]);
                }
            }
        }
        let wape = |(abs, actual): ([f64; 3], [f64; 3])| {
            std::array::from_fn(|h| (actual[h] > 0.0).then(|| abs[h] / actual[h]))
        };
        Accuracy {
            all: wape(all),
            busy: wape(busy),
            busy_series,
        }
    }

    /// The cells with forecast state, each once, ascending.
    pub fn cells(&self) -> impl Iterator<Item = Cell> + '_ {
        let cells: std::collections::BTreeSet<Cell> = self.cells.keys().map(|(c, _)| *c).collect();
        cells.into_iter()
    }

    /// Series pairs (cell and class) with forecast state.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether no cell has forecast state.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// A cell's forecasts at each of [`HORIZONS`]: (demand, supply), `None`
/// where a series has no history yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellOutlook {
    /// The cell.
    pub cell: Cell,
    /// Per horizon, (demand, supply).
    pub horizons: [(Option<Forecast>, Option<Forecast>); 3],
}

/// Forecasts of parts summed: expected values added, the intervals'
/// half-widths combined as independent errors. `None` when there are none.
fn sum_of(parts: impl Iterator<Item = Forecast>, h: u32) -> Option<Forecast> {
    // One pass, no allocation: the pricer sums every cell on every tick.
    let (expected, squares, n) = parts.fold((0.0f32, 0.0f32, 0u32), |(e, sq, n), f| {
        // The upper half-width: the lower bound is clamped at 0.
        let half = f.high - f.expected;
        (e + f.expected, sq + half * half, n + 1)
    });
    if n == 0 {
        return None;
    }
    let spread = squares.sqrt();
    Some(Forecast {
        expected,
        low: (expected - spread).max(0.0),
        high: expected + spread,
        horizon: h,
    })
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
        let y = |b: u64| if slot_of(b, &p) == 72 { 30.0 } else { 2.0 };
        for b in 0..3 * BUCKETS_PER_DAY {
            s.observe(at(b), y(b), &p);
        }
        // The open bucket is the start of day 4; look ahead to 18:00.
        let evening = s.season[72];
        assert!(evening > 20.0, "{evening}");
        let f = s.forecast(1, &p).expect("f");
        assert!((f.expected - 2.0).abs() < 2.0, "{f:?}");
    }

    /// Three weeks of a cell busy at 08:00 on weekdays only, in the local
    /// time of `calendar`.
    fn weekday_mornings(p: &Params) -> Series {
        let mut s = Series::new(Kind::Sum);
        let offset = p.calendar.utc_offset_minutes() * 60 * 1_000;
        for b in 0..21 * BUCKETS_PER_DAY {
            let utc = Timestamp(b * BUCKET.0 + 1);
            let local = utc.0 as i64 + offset;
            let hour = (local.rem_euclid(86_400_000)) / 3_600_000;
            let weekday = (local.div_euclid(86_400_000) + 3).rem_euclid(7) < 5;
            let y = if weekday && hour == 8 { 30.0 } else { 2.0 };
            s.observe(utc, y, p);
        }
        s
    }

    #[test]
    fn live_accuracy_scores_each_forecast_when_its_bucket_completes() {
        use crate::geo::{LatLng, DEFAULT_LEVEL};
        let cell = |lat: f64| Cell::at(LatLng::new(lat, -122.42).expect("ll"), DEFAULT_LEVEL);
        let (steady, jumpy) = (cell(37.77), cell(37.70));
        let mut f = CellForecasts::default();
        assert_eq!(f.accuracy().all, [None; 3], "nothing scored yet");
        let none = HashMap::new();
        for b in 0..200u64 {
            // A busy cell at a steady 20, a quiet one alternating 0 and 4.
            f.demand(steady, VehicleClass::Standard, at(b), 20);
            f.demand(
                jumpy,
                VehicleClass::Standard,
                at(b),
                if b % 2 == 0 { 4 } else { 0 },
            );
            f.tick(at(b), &none);
        }
        let a = f.accuracy();
        assert_eq!(a.busy_series, 1);
        let busy = a.busy[2].expect("busy scored");
        assert!(busy < 0.01, "a steady cell is forecast exactly: {busy}");
        let all = a.all[2].expect("all scored");
        // The quiet cell's alternation is missed by about 2 a bucket: 2 of
        // the 22 units a bucket, all cells together.
        assert!(all > 0.05 && all < 0.15, "{all}");
        for h in 0..3 {
            assert!(a.all[h].is_some() && a.busy[h].is_some(), "{a:?}");
        }
    }

    #[test]
    fn a_forecast_is_scored_against_the_bucket_it_was_made_for() {
        let mut score = Score::new();
        // Forecasts for the next three buckets, made at horizons 1–3.
        score.ahead = [
            [1.0, 2.0, 3.0],
            [f32::NAN, 5.0, 6.0],
            [f32::NAN, f32::NAN, 9.0],
        ];
        score.complete(10.0);
        assert_eq!(score.abs, [9.0, 8.0, 7.0]);
        assert_eq!(score.actual, [10.0; 3]);
        assert_eq!(score.buckets, 1.0);
        // The next bucket's forecasts move to the front.
        assert!(score.ahead[0][0].is_nan());
        assert_eq!((score.ahead[0][1], score.ahead[0][2]), (5.0, 6.0));
        score.complete(4.0);
        let d = SCORE_DECAY;
        assert_eq!(score.abs[0], 9.0, "no 5-minute forecast was made for it");
        assert_eq!(score.abs[1], 8.0 * d + 1.0);
        assert_eq!(score.abs[2], 7.0 * d + 2.0);
        // A series files each forecast under the bucket it predicts: the
        // 10-minute forecast made now is scored two completions later.
        let p = Params::default();
        let mut s = Series::new(Kind::Sum);
        for b in 0..20 {
            s.observe(at(b), (b % 7) as f32, &p);
        }
        s.advance_to(20, &p);
        let ten = s.score.ahead[1][1];
        assert_eq!(ten, s.expected_after(19, 2, &p));
        s.observe(at(20), 3.0, &p);
        s.advance_to(21, &p);
        assert_eq!(
            s.score.ahead[0][1], ten,
            "one bucket on, it is the next to complete"
        );
        let before = s.score.abs[1];
        s.observe(at(21), 5.0, &p);
        s.advance_to(22, &p);
        assert_eq!(s.score.abs[1], SCORE_DECAY * before + (ten - 5.0).abs());
    }

    #[test]
    fn classes_are_forecast_apart_and_a_cell_is_their_sum() {
        use crate::geo::{LatLng, DEFAULT_LEVEL};
        let cell = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), DEFAULT_LEVEL);
        let mut f = CellForecasts::default();
        // Premium drivers wait there too, with no premium riders yet.
        let supply: HashMap<(Cell, VehicleClass), u32> = [
            ((cell, VehicleClass::Standard), 2),
            ((cell, VehicleClass::Xl), 6),
            ((cell, VehicleClass::Premium), 3),
        ]
        .into_iter()
        .collect();
        for b in 0..200 {
            let now = at(b);
            f.demand(cell, VehicleClass::Standard, now, 8);
            f.demand(cell, VehicleClass::Xl, now, 1);
            f.tick(now, &supply);
        }
        let standard = f
            .class_demand_forecast(cell, VehicleClass::Standard, 3)
            .expect("standard");
        let xl = f
            .class_demand_forecast(cell, VehicleClass::Xl, 3)
            .expect("xl");
        assert!((standard.expected - 8.0).abs() < 0.1, "{standard:?}");
        assert!((xl.expected - 1.0).abs() < 0.1, "{xl:?}");
        let xl_supply = f
            .class_supply_forecast(cell, VehicleClass::Xl, 3)
            .expect("xl supply");
        assert!((xl_supply.expected - 6.0).abs() < 0.1, "{xl_supply:?}");
        assert_eq!(
            f.class_demand_forecast(cell, VehicleClass::Premium, 3),
            None
        );
        let both = f.demand_forecast(cell, 3).expect("cell");
        assert!((both.expected - 9.0).abs() < 0.2, "{both:?}");
        let grid = f.expected(cell).expect("grid forecast");
        assert!((grid.demand - 9.0).abs() < 0.2, "{grid:?}");
        assert!(
            (grid.supply - 11.0).abs() < 0.2,
            "every class's drivers, premium's too: {grid:?}"
        );
        assert_eq!(f.cells().collect::<Vec<_>>(), vec![cell]);
        assert_eq!(f.len(), 3);
        // The outlook: one class's or the sum, by horizon.
        let xl_outlook = f.outlook(Some(VehicleClass::Xl), 10);
        assert_eq!(xl_outlook.len(), 1);
        let (d, s) = xl_outlook[0].horizons[2];
        assert_eq!((d, s), (Some(xl), Some(xl_supply)));
        let all = f.outlook(None, 10);
        assert_eq!(all[0].horizons[2].0, Some(both));
        let premium = f.outlook(Some(VehicleClass::Premium), 10);
        assert_eq!(premium[0].horizons[2].0, None, "no premium riders");
        assert!(premium[0].horizons[2]
            .1
            .is_some_and(|s| (s.expected - 3.0).abs() < 0.1));
        assert!(f.outlook(Some(VehicleClass::Economy), 10).is_empty());
    }

    #[test]
    fn the_outlook_ranks_cells_by_demand_ahead() {
        use crate::geo::{LatLng, DEFAULT_LEVEL};
        let cell = |i: u32| {
            Cell::at(
                LatLng::new(37.70 + f64::from(i) * 0.01, -122.42).expect("ll"),
                DEFAULT_LEVEL,
            )
        };
        let mut f = CellForecasts::default();
        let none = HashMap::new();
        for b in 0..50 {
            for i in 0..5u32 {
                f.demand(cell(i), VehicleClass::Standard, at(b), 1 + 3 * i);
            }
            f.tick(at(b), &none);
        }
        let top = f.outlook(None, 3);
        assert_eq!(
            top.iter().map(|o| o.cell).collect::<Vec<_>>(),
            vec![cell(4), cell(3), cell(2)]
        );
        assert!(top
            .iter()
            .all(|o| o.horizons.iter().all(|(d, s)| d.is_some() && s.is_some())));
    }

    #[test]
    fn weekends_have_their_own_profile() {
        let p = Params::default();
        let s = weekday_mornings(&p);
        // Day 21 is a Thursday: its 08:00 slot is busy, the weekend's not.
        let thursday_8 = slot_of(21 * BUCKETS_PER_DAY + 8 * 12, &p);
        let saturday_8 = slot_of(23 * BUCKETS_PER_DAY + 8 * 12, &p);
        assert!(s.season[thursday_8] > 20.0, "{}", s.season[thursday_8]);
        assert!(s.season[saturday_8].abs() < 2.0, "{}", s.season[saturday_8]);
        // With one profile for all days, 08:00 is a blur of both.
        let daily = Params {
            weekends: false,
            ..p
        };
        let blur = weekday_mornings(&daily).season[slot_of(23 * BUCKETS_PER_DAY + 8 * 12, &daily)];
        assert!(blur > 5.0 && blur < 28.0, "{blur}");
    }

    #[test]
    fn the_calendar_moves_the_weekend_to_local_days() {
        let utc = Calendar::UTC;
        let sf = Calendar::from_utc_offset_minutes(-480).expect("offset");
        // Saturday 1970-01-03 03:00 UTC is still Friday evening in San
        // Francisco.
        let at = Timestamp((2 * 86_400 + 3 * 3_600) * 1_000);
        assert!(utc.is_weekend(at));
        assert!(!sf.is_weekend(at));
        assert!(sf.is_weekend(Timestamp(at.0 + 8 * 3_600_000)));
        assert_eq!(sf.utc_offset_minutes(), -480);
        for bad in [-735, 845, 7, 10_000] {
            assert_eq!(
                Calendar::from_utc_offset_minutes(bad),
                Err(InvalidCalendar(bad))
            );
        }
        // Friday 20:00 in San Francisco is Saturday 04:00 UTC: a weekday
        // slot there, a weekend one in UTC.
        let friday_evening_sf = 2 * BUCKETS_PER_DAY + 4 * 12;
        let in_sf = Params {
            calendar: sf,
            ..Params::default()
        };
        assert_eq!(slot_of(friday_evening_sf, &in_sf), 80);
        assert_eq!(
            slot_of(friday_evening_sf, &Params::default()),
            SEASON_SLOTS + 16
        );
        // A Paris cell learns its Monday mornings in Paris time.
        let p = Params {
            calendar: Calendar::from_utc_offset_minutes(60).expect("offset"),
            ..Params::default()
        };
        let s = weekday_mornings(&p);
        let monday_8_paris = 25 * BUCKETS_PER_DAY + 7 * 12; // 07:00 UTC
        assert!(s.season[slot_of(monday_8_paris, &p)] > 20.0);
    }
}
