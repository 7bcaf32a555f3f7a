//! Backtests of the demand forecasts on the simulator's city.
//!
//! While a simulation runs, [`ForecastLog`] records each cell's demand per
//! 5-minute bucket (the units the pricer's forecasts saw) and, at the
//! first repricing of every bucket, the pricer's forecast of each cell 5,
//! 10 and 15 minutes ahead: made before the bucket it predicts is seen.
//! [`evaluate`] scores them on held-out days against the same model with
//! one daily profile for every day (no weekend profile), two baselines —
//! the seasonal naive (the same bucket yesterday) and the last value (the
//! last completed bucket) — and the noise floor: a forecaster that knows
//! the scenario's true rate, whose error is the counts' own randomness.
//! By WAPE and MAPE per horizon and by cell density.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use shared::fare::VehicleClass;
use shared::forecast::{bucket_of, CellForecasts, Params, BUCKETS_PER_DAY, HORIZONS};
use shared::geo::{Cell, LatLng, Level};
use shared::market::{DemandKind, DemandSeen};
use shared::policies::PolicySpec;
use shared::surge::SurgeConfig;
use shared::time::Timestamp;

use crate::{Rng, Scenario};

#[derive(Debug, Clone, PartialEq)]
struct Prediction {
    cell: Cell,
    /// The bucket the prediction was made at (its first repricing).
    made: u64,
    /// The bucket predicted.
    target: u64,
    horizon: u32,
    expected: f64,
    /// The daily-profile model's, when it ran alongside.
    daily: Option<f64>,
}

/// Demand and forecasts per cell and bucket, recorded during a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForecastLog {
    actual: HashMap<(Cell, u64), f64>,
    predictions: Vec<Prediction>,
    bucket: Option<u64>,
    /// The scenario's expected demand units per bucket over the whole
    /// city, outside its spikes (a replay knows the true rate).
    expected: HashMap<u64, f64>,
    /// Buckets with spike riders, whose true rate per cell is not known.
    spiky: HashSet<u64>,
}

impl ForecastLog {
    /// Demand units counted in `cell` at `at`.
    pub(crate) fn demand(&mut self, cell: Cell, at: Timestamp, units: u32) {
        *self.actual.entry((cell, bucket_of(at))).or_default() += f64::from(units);
    }

    /// A repricing at `now`: at the first of a bucket, every cell's
    /// forecasts for the horizons (and the daily-profile model's, when one
    /// runs alongside).
    pub(crate) fn tick(
        &mut self,
        now: Timestamp,
        forecasts: &CellForecasts,
        daily: Option<&CellForecasts>,
    ) {
        let bucket = bucket_of(now);
        if self.bucket == Some(bucket) {
            return;
        }
        self.bucket = Some(bucket);
        for cell in forecasts.cells() {
            for h in HORIZONS {
                if let Some(f) = forecasts.demand_forecast(cell, h) {
                    self.predictions.push(Prediction {
                        cell,
                        made: bucket,
                        target: bucket + u64::from(h) - 1,
                        horizon: h,
                        expected: f64::from(f.expected),
                        daily: daily
                            .and_then(|d| d.demand_forecast(cell, h))
                            .map(|f| f64::from(f.expected)),
                    });
                }
            }
        }
    }

    /// Demand units the scenario expects over the city at `at` (its true
    /// rate times the tick), or a spike there.
    fn expect(&mut self, at: Timestamp, units: f64, spike: bool) {
        let bucket = bucket_of(at);
        *self.expected.entry(bucket).or_default() += units;
        if spike {
            self.spiky.insert(bucket);
        }
    }

    fn actual(&self, cell: Cell, bucket: u64) -> f64 {
        self.actual.get(&(cell, bucket)).copied().unwrap_or(0.0)
    }
}

/// How busy a cell was over the learning days: mean demand units per
/// 5-minute bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Density {
    /// 10 or more units a bucket
    /// ([`shared::forecast::BUSY_UNITS_PER_BUCKET`], the origin's live
    /// score's busy cells too).
    Busy,
    /// 2 to 10.
    Medium,
    /// Under 2.
    Quiet,
}

impl Density {
    fn of(mean: f64) -> Self {
        if mean >= f64::from(shared::forecast::BUSY_UNITS_PER_BUCKET) {
            Density::Busy
        } else if mean >= 2.0 {
            Density::Medium
        } else {
            Density::Quiet
        }
    }

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Density::Busy => "busy (≥ 10 a bucket)",
            Density::Medium => "medium (2–10)",
            Density::Quiet => "quiet (< 2)",
        }
    }
}

/// Which held-out days [`evaluate`] scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Days {
    /// All of them.
    All,
    /// Saturdays and Sundays only (the city's calendar, UTC).
    Weekends,
}

/// Scores of one density and horizon: `[forecast, the daily-profile
/// model, seasonal naive, last value]`, and the noise floor.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The cells' density.
    pub density: Density,
    /// Minutes ahead.
    pub horizon_min: u32,
    /// Cells of that density.
    pub cells: usize,
    /// Predictions scored.
    pub targets: usize,
    /// Weighted absolute percentage error: Σ|error| / Σ actual (NaN for
    /// the daily-profile model when it did not run).
    pub wape: [f64; 4],
    /// Mean absolute percentage error over targets with demand.
    pub mape: [f64; 4],
    /// The WAPE of the true rate (each cell's share of the city's demand
    /// over the learning days times the scenario's expected demand), when
    /// every target scored is outside the spikes.
    pub floor: Option<f64>,
}

/// Scores the predictions whose target lies at or after `holdout_from`
/// (a bucket index), on `days`, and outside every `[start, end)` of `skip`
/// (bucket indexes: events left out to see the ordinary days), each cell's
/// density taken from the buckets before `holdout_from`.
pub fn evaluate(log: &ForecastLog, holdout_from: u64, skip: &[(u64, u64)], days: Days) -> Vec<Row> {
    // Density and share of the city's expected demand from the learning
    // period.
    let mut learn: HashMap<Cell, (f64, u64, f64)> = HashMap::new();
    for ((cell, bucket), units) in &log.actual {
        if *bucket < holdout_from {
            let e = learn.entry(*cell).or_insert((0.0, u64::MAX, 0.0));
            e.0 += units;
            e.1 = e.1.min(*bucket);
            if !log.spiky.contains(bucket) {
                e.2 += units;
            }
        }
    }
    let first = learn.values().map(|e| e.1).min().unwrap_or(0);
    let span = holdout_from.saturating_sub(first).max(1) as f64;
    let density: HashMap<Cell, Density> = learn
        .iter()
        .map(|(c, e)| (*c, Density::of(e.0 / span)))
        .collect();
    let expected_learning: f64 = log
        .expected
        .iter()
        .filter(|(b, _)| **b < holdout_from && !log.spiky.contains(b))
        .map(|(_, u)| u)
        .sum();
    let share = |cell: Cell| learn.get(&cell).map_or(0.0, |e| e.2) / expected_learning;
    let calendar = shared::forecast::Calendar::UTC;
    #[derive(Default)]
    struct Acc {
        abs: [f64; 4],
        actual: f64,
        ape: [f64; 4],
        ape_n: usize,
        n: usize,
        floor: f64,
        spiky: bool,
    }
    let mut acc: BTreeMap<(Density, u32), Acc> = BTreeMap::new();
    for p in &log.predictions {
        let weekend = calendar.is_weekend(Timestamp(p.target * shared::forecast::BUCKET.0));
        if p.target < holdout_from
            || p.made < BUCKETS_PER_DAY
            || (days == Days::Weekends && !weekend)
            || skip.iter().any(|(a, b)| (*a..*b).contains(&p.target))
        {
            continue;
        }
        let Some(d) = density.get(&p.cell) else {
            continue;
        };
        let actual = log.actual(p.cell, p.target);
        let guesses = [
            p.expected,
            p.daily.unwrap_or(f64::NAN),
            log.actual(p.cell, p.target - BUCKETS_PER_DAY),
            log.actual(p.cell, p.made.saturating_sub(1)),
        ];
        let a = acc.entry((*d, p.horizon)).or_default();
        a.n += 1;
        a.actual += actual;
        for (i, g) in guesses.iter().enumerate() {
            a.abs[i] += (g - actual).abs();
            if actual > 0.0 {
                a.ape[i] += (g - actual).abs() / actual;
            }
        }
        a.ape_n += usize::from(actual > 0.0);
        let truth = share(p.cell) * log.expected.get(&p.target).copied().unwrap_or(0.0);
        a.floor += (truth - actual).abs();
        a.spiky |= log.spiky.contains(&p.target);
    }
    acc.into_iter()
        .map(|((d, h), a)| {
            let total = a.actual.max(f64::MIN_POSITIVE);
            Row {
                density: d,
                horizon_min: h * 5,
                cells: density.values().filter(|x| **x == d).count(),
                targets: a.n,
                wape: a.abs.map(|x| x / total),
                mape: a.ape.map(|x| x / (a.ape_n.max(1)) as f64),
                floor: (!a.spiky).then_some(a.floor / total),
            }
        })
        .collect()
}

/// The Markdown table of [`evaluate`]'s rows.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| cells | horizon | cells (n) | forecasts scored | WAPE Holt-Winters | WAPE daily profile only | WAPE seasonal naive | WAPE last value | WAPE noise floor | MAPE Holt-Winters | MAPE seasonal naive | MAPE last value |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let pct = |x: f64| {
        if x.is_finite() {
            format!("{:.1} %", 100.0 * x)
        } else {
            "–".to_string()
        }
    };
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} min | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.density.name(),
            r.horizon_min,
            r.cells,
            r.targets,
            pct(r.wape[0]),
            pct(r.wape[1]),
            pct(r.wape[2]),
            pct(r.wape[3]),
            r.floor.map_or("– (spikes)".to_string(), pct),
            pct(r.mape[0]),
            pct(r.mape[2]),
            pct(r.mape[3]),
        );
    }
    s
}

/// Replays only the riders of `scenario` (demand scaled by `scale`) into
/// the pricer the simulator runs, no drivers, and logs its demand and
/// forecasts, those of the daily-profile model fed the same demand, and
/// the scenario's expected demand: a backtest at any demand level, in
/// seconds a day. `progress` gets the share done.
pub fn replay(scenario: &Scenario, scale: f64, mut progress: impl FnMut(f64)) -> ForecastLog {
    let mut rng = Rng::new(scenario.seed);
    let level = Level::new(scenario.level).unwrap_or_default();
    let mut log = ForecastLog::default();
    let Some(mut pricer) = crate::pricer(PolicySpec::Default, SurgeConfig::default(), level) else {
        return log;
    };
    let weight = pricer.weight(DemandKind::Quote);
    let mut daily = CellForecasts::new(Params {
        weekends: false,
        ..*pricer.forecasts().params()
    });
    let no_supply = HashMap::new();
    let (mut t, mut next_tick, mut next_report) = (0.0, 0.0, 0.0);
    while t < scenario.duration_s {
        let now = Timestamp((t * 1_000.0) as u64);
        if t >= next_tick {
            daily.tick(now, &no_supply);
            if pricer.tick(now).is_ok() {
                log.tick(now, pricer.forecasts(), Some(&daily));
            }
            next_tick += scenario.reprice_s;
        }
        if t >= next_report {
            progress(t / scenario.duration_s);
            next_report += 3_600.0;
        }
        for (lat, lng) in scenario.riders_at(&mut rng, t, scenario.tick_s, scale) {
            let Ok(ll) = LatLng::new(lat, lng) else {
                continue;
            };
            let cell = Cell::at(ll, level);
            let counted = pricer.demand_seen(DemandSeen {
                cell,
                class: VehicleClass::Standard,
                kind: DemandKind::Quote,
                at: now,
                once: None,
            });
            if counted {
                log.demand(cell, now, weight);
                daily.demand(cell, VehicleClass::Standard, now, weight);
            }
        }
        let (rate, spike) = scenario.expected_riders(t, scenario.tick_s, scale);
        log.expect(now, rate * f64::from(weight), spike);
        t += scenario.tick_s;
    }
    progress(1.0);
    log
}
