//! The multi-day city: the forecasts learn its season, weekly too, and beat
//! the seasonal-naive baseline on held-out days (the shape, not the
//! numbers; the numbers are in docs/simulation/city.md).

use sim::backtest::{evaluate, replay, Days, Density, Row};
use sim::Scenario;

fn at_15(rows: &[Row], d: Density) -> &Row {
    rows.iter()
        .find(|r| r.density == d && r.horizon_min == 15)
        .unwrap_or_else(|| panic!("no {d:?} row: {rows:?}"))
}

#[test]
fn forecasts_beat_seasonal_naive_and_the_daily_profile_on_held_out_days() {
    // Fourteen days of the city's riders at five times the fleet's scale,
    // so that downtown cells are busy. Day 0 is a Thursday: the last five
    // held out are a weekend, a Monday, a Tuesday (the rain) and a
    // Wednesday (the concert), after one weekend to learn from.
    let days = 14;
    let log = replay(&Scenario::city(11, days), 5.0, |_| {});
    let holdout = u64::from(days - 5) * shared::forecast::BUCKETS_PER_DAY;
    let rows = evaluate(&log, holdout, &[], Days::All);
    for d in [Density::Busy, Density::Medium] {
        let r = at_15(&rows, d);
        assert!(r.targets > 100, "{r:?}");
        let [hw, _daily, naive, _last] = r.wape;
        assert!(
            hw < naive,
            "{d:?}: Holt-Winters {hw:.3} vs seasonal naive {naive:.3}"
        );
    }
    // On the weekend, a weekend profile learnt from one weekend forecasts
    // better than one profile for every day.
    let weekend = evaluate(&log, holdout, &[], Days::Weekends);
    let r = at_15(&weekend, Density::Busy);
    let [hw, daily, _, _] = r.wape;
    assert!(
        hw < daily,
        "weekend profile {hw:.3} vs daily only {daily:.3}"
    );
    // The noise floor is known outside the concert and beats everything.
    let floor = r.floor.expect("no spike at the weekend");
    assert!(floor < hw, "floor {floor:.3} vs {hw:.3}");
    assert!(
        at_15(&rows, Density::Busy).floor.is_none(),
        "the concert is scored"
    );
}
