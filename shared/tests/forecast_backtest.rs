//! Backtest of the demand forecast on a synthetic multi-day city: two rush
//! hours a day, Poisson-like noise, a busy cell and a quiet one. A week to
//! learn, then a week of forecasts made before each bucket is seen,
//! against the seasonal-naive (same bucket yesterday) and last-value
//! baselines, by WAPE per horizon.

use shared::forecast::{Kind, Params, Series, BUCKET, BUCKETS_PER_DAY, HORIZONS};
use shared::time::Timestamp;

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Expected demand units per bucket at a time of day (hours): a base and
/// two rush hours (08:00 and 18:00).
fn mean(base: f64, rush: f64, hour: f64) -> f64 {
    let bump = |at: f64| (-((hour - at) / 1.5).powi(2)).exp();
    base + rush * (bump(8.0) + 1.3 * bump(18.0))
}

/// Fourteen days of a cell: Poisson-like counts around the daily curve.
fn city(seed: u64, base: f64, rush: f64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..14 * BUCKETS_PER_DAY)
        .map(|b| {
            let hour = (b % BUCKETS_PER_DAY) as f64 * 24.0 / BUCKETS_PER_DAY as f64;
            let m = mean(base, rush, hour);
            (m + m.sqrt() * rng.gaussian()).round().max(0.0) as f32
        })
        .collect()
}

/// WAPE per horizon of (Holt-Winters, seasonal naive, last value) over the
/// second week.
fn backtest(ys: &[f32]) -> Vec<(u32, f64, f64, f64)> {
    let p = Params::default();
    let mut s = Series::new(Kind::Sum);
    let start = 7 * BUCKETS_PER_DAY as usize;
    let mut sums = vec![(0.0f64, 0.0f64, 0.0f64, 0.0f64); HORIZONS.len()];
    for (b, y) in ys.iter().enumerate() {
        if b >= start {
            // Forecast from what is known: buckets before b.
            for (i, h) in HORIZONS.iter().enumerate() {
                let target = b + *h as usize - 1;
                let Some(actual) = ys.get(target) else {
                    continue;
                };
                let f = s.forecast(*h, &p).expect("forecast").expected;
                let naive = ys[target - BUCKETS_PER_DAY as usize];
                let last = ys[b - 1];
                let e = &mut sums[i];
                e.0 += f64::from((f - actual).abs());
                e.1 += f64::from((naive - actual).abs());
                e.2 += f64::from((last - actual).abs());
                e.3 += f64::from(*actual);
            }
        }
        s.observe(Timestamp(b as u64 * BUCKET.0 + 1), *y, &p);
    }
    HORIZONS
        .iter()
        .zip(sums)
        .map(|(h, (hw, naive, last, total))| (*h, hw / total, naive / total, last / total))
        .collect()
}

#[test]
fn forecasts_beat_both_baselines_and_meet_the_target_on_a_busy_cell() {
    let busy = backtest(&city(7, 20.0, 40.0));
    for (h, hw, naive, last) in &busy {
        eprintln!(
            "busy, {} min: WAPE Holt-Winters {:.1} %, seasonal naive {:.1} %, last value {:.1} %",
            h * 5,
            100.0 * hw,
            100.0 * naive,
            100.0 * last
        );
        assert!(hw < naive, "h={h}: {hw} vs seasonal naive {naive}");
        assert!(hw < last, "h={h}: {hw} vs last value {last}");
    }
    // The target: WAPE at most 20 % at 15 minutes on busy cells.
    let at_15 = busy.iter().find(|r| r.0 == 3).expect("15 min").1;
    assert!(at_15 <= 0.20, "WAPE at 15 min {:.1} %", 100.0 * at_15);
}

#[test]
fn a_quiet_cell_still_beats_seasonal_naive() {
    // Two units a bucket on average: mostly noise, which yesterday's
    // bucket carries twice and a smoothed level does not.
    for (h, hw, naive, _) in backtest(&city(11, 1.0, 2.0)) {
        eprintln!(
            "quiet, {} min: {:.1} % vs {:.1} %",
            h * 5,
            100.0 * hw,
            100.0 * naive
        );
        assert!(hw < naive, "h={h}: {hw} vs {naive}");
    }
}

#[test]
fn the_same_history_gives_the_same_forecasts() {
    let a = backtest(&city(3, 10.0, 20.0));
    let b = backtest(&city(3, 10.0, 20.0));
    assert_eq!(a, b);
}
