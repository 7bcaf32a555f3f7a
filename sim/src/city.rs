//! A multi-day city: demand with a daily season (two rush hours and an
//! evening on weekdays, a late start and a long night at weekends), a
//! downtown where riders cluster, a demand level that varies
//! from day to day, a rainy evening and, on the last evening, the concert.
//! What the forecasts learn from and are backtested on
//! ([`crate::backtest`]), and where the policies meet a season.

use shared::forecast::Calendar;
use shared::time::Timestamp;

use crate::{Rng, Scenario, Spike};

/// A rainy spell: more riders, slower traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rain {
    /// Start, seconds into the scenario.
    pub start_s: f64,
    /// Length, seconds.
    pub duration_s: f64,
    /// Demand multiplier while it rains.
    pub demand: f64,
    /// Speed multiplier while it rains.
    pub speed: f64,
}

/// What makes a scenario a city of many days rather than one evening.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    /// Where riders cluster.
    pub downtown: (f64, f64),
    /// The cluster's spread (one standard deviation), metres.
    pub downtown_radius_m: f64,
    /// Share of riders who start downtown; the rest anywhere.
    pub downtown_share: f64,
    /// Each day's demand level (a day-to-day noise around 1.0).
    pub day_levels: Vec<f64>,
    /// Rainy spells.
    pub rain: Vec<Rain>,
}

/// Demand over a weekday relative to the base rate, by hour: a quiet
/// night, the morning rush at 08:30, the evening rush at 18:00 and a late
/// evening.
pub fn daily_shape(hour: f64) -> f64 {
    let bump = |at: f64, width: f64| (-((hour - at) / width).powi(2)).exp();
    0.25 + 1.2 * bump(8.5, 1.5) + 1.4 * bump(18.0, 2.0) + 0.5 * bump(22.0, 1.5)
}

/// Demand over a Saturday or Sunday relative to the base rate, by hour: no
/// morning rush, a broad afternoon and a long night out.
pub fn weekend_shape(hour: f64) -> f64 {
    let bump = |at: f64, width: f64| (-((hour - at) / width).powi(2)).exp();
    0.3 + 0.3 * bump(1.0, 1.5) + 0.7 * bump(14.0, 3.0) + 1.1 * bump(22.5, 2.0)
}

/// Whether `t` seconds into a scenario falls on a weekend. The
/// simulator's clock starts at the Unix epoch, a Thursday, and its city
/// keeps UTC: the calendar the forecasts use ([`Calendar::UTC`]), so the
/// city's weekends are the forecasts' weekends.
pub fn is_weekend(t: f64) -> bool {
    Calendar::UTC.is_weekend(Timestamp((t.max(0.0) * 1_000.0) as u64))
}

impl City {
    fn rain_at(&self, t: f64) -> Option<&Rain> {
        self.rain
            .iter()
            .find(|r| (r.start_s..r.start_s + r.duration_s).contains(&t))
    }

    /// Demand relative to the base rate at `t` seconds (t = 0 is midnight).
    pub fn demand_factor(&self, t: f64) -> f64 {
        let day = (t / 86_400.0).floor().max(0.0) as usize;
        let hour = (t % 86_400.0) / 3_600.0;
        let level = self.day_levels.get(day).copied().unwrap_or(1.0);
        let rain = self.rain_at(t).map_or(1.0, |r| r.demand);
        let shape = if is_weekend(t) {
            weekend_shape(hour)
        } else {
            daily_shape(hour)
        };
        shape * level * rain
    }

    /// Speed relative to the dry-road speed at `t`.
    pub fn speed_factor(&self, t: f64) -> f64 {
        self.rain_at(t).map_or(1.0, |r| r.speed)
    }

    /// A point of the downtown cluster.
    pub(crate) fn downtown_point(&self, rng: &mut Rng) -> (f64, f64) {
        // Box-Muller, one standard deviation = the radius.
        let (u, v) = (rng.unit().max(1e-12), rng.unit());
        let r = (-2.0 * u.ln()).sqrt() * self.downtown_radius_m / 111_000.0;
        let a = std::f64::consts::TAU * v;
        (
            self.downtown.0 + r * a.sin(),
            self.downtown.1 + r * a.cos() / self.downtown.0.to_radians().cos(),
        )
    }
}

impl Scenario {
    /// `days` days of the city from midnight on a Thursday (day 0; days 2
    /// and 3 are a weekend): the concert's
    /// fleet, a base of 10 riders a minute shaped by [`daily_shape`] on
    /// weekdays (about 25 a minute at the evening rush) and by
    /// [`weekend_shape`] on Saturdays and Sundays, 60 % of them downtown, each day's level within
    /// ±10 %, rain from 17:00 to 22:00 on the day before the last (40 %
    /// more riders, traffic at 75 % speed), and the concert letting out at
    /// 21:00 on the last day.
    pub fn city(seed: u64, days: u32) -> Self {
        let days = days.max(1);
        let mut s = Scenario::concert(seed);
        let day_s = 86_400.0;
        s.duration_s = f64::from(days) * day_s;
        s.riders_per_min = 10.0;
        s.drivers_online = 300;
        s.drivers_offline = 200;
        let last = f64::from(days - 1) * day_s;
        if let Some(spike) = s.spikes.first_mut() {
            spike.start_s = last + 21.0 * 3_600.0;
        }
        let mut rng = Rng::new(seed ^ 0x00c1_7e5e_ed00);
        let day_levels = (0..days).map(|_| 0.9 + 0.2 * rng.unit()).collect();
        let rain = if days >= 2 {
            vec![Rain {
                start_s: f64::from(days - 2) * day_s + 17.0 * 3_600.0,
                duration_s: 5.0 * 3_600.0,
                demand: 1.4,
                speed: 0.75,
            }]
        } else {
            Vec::new()
        };
        s.city = Some(City {
            downtown: (37.7880, -122.4075),
            downtown_radius_m: 1_500.0,
            downtown_share: 0.6,
            day_levels,
            rain,
        });
        s
    }

    /// The first spike, if any.
    pub fn concert_spike(&self) -> Option<Spike> {
        self.spikes.first().copied()
    }

    /// The rain's and the spikes' spans, in seconds, each with the hour
    /// after it (the crowd going home, the roads drying).
    pub fn events_s(&self) -> Vec<(f64, f64)> {
        let rain = self
            .city
            .iter()
            .flat_map(|c| c.rain.iter().map(|r| (r.start_s, r.start_s + r.duration_s)));
        let spikes = self
            .spikes
            .iter()
            .map(|s| (s.start_s, s.start_s + s.duration_s));
        rain.chain(spikes).map(|(a, b)| (a, b + 3_600.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_has_two_rush_hours_and_a_quiet_night() {
        assert!(daily_shape(3.0) < 0.3);
        assert!(daily_shape(8.5) > 1.3);
        assert!(daily_shape(18.0) > 1.5);
        assert!(daily_shape(13.0) < daily_shape(8.5));
    }

    #[test]
    fn weekends_have_no_morning_rush_and_a_long_night() {
        assert!(weekend_shape(8.5) < 0.5 * daily_shape(8.5));
        assert!(weekend_shape(23.0) > 1.5 * daily_shape(23.0));
        let day = |d: f64| d * 86_400.0 + 60.0;
        assert!(!is_weekend(day(0.0)) && !is_weekend(day(1.0)));
        assert!(is_weekend(day(2.0)) && is_weekend(day(3.0)) && !is_weekend(day(4.0)));
        assert!(is_weekend(day(9.0)));
        let c = Scenario::city(7, 7).city.expect("a city");
        let (friday, saturday) = (86_400.0, 2.0 * 86_400.0);
        let morning = 8.5 * 3_600.0;
        assert!(c.demand_factor(saturday + morning) < 0.5 * c.demand_factor(friday + morning));
    }

    #[test]
    fn rain_and_the_concert_fall_on_the_last_two_evenings() {
        let s = Scenario::city(7, 5);
        let c = s.city.as_ref().expect("a city");
        let rainy = 3.0 * 86_400.0 + 19.0 * 3_600.0;
        assert!(c.demand_factor(rainy) > 1.3 * c.demand_factor(rainy - 86_400.0) * 0.85);
        assert_eq!(c.speed_factor(rainy), 0.75);
        assert_eq!(c.speed_factor(rainy + 86_400.0), 1.0);
        let spike = s.concert_spike().expect("the concert");
        assert_eq!(spike.start_s, 4.0 * 86_400.0 + 21.0 * 3_600.0);
    }
}
