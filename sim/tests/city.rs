//! The multi-day city: the forecasts learn its season and beat the
//! seasonal-naive baseline on held-out days (the shape, not the numbers; the numbers are
//! in docs/simulation/city.md).

use sim::backtest::{evaluate, replay, Density};
use sim::Scenario;

#[test]
fn forecasts_beat_seasonal_naive_on_the_held_out_days() {
    // Eight days of the city's riders at five times the fleet's scale, so
    // that downtown cells are busy; the last two (the rain, the concert)
    // are held out.
    let days = 8;
    let log = replay(&Scenario::city(11, days), 5.0, |_| {});
    let rows = evaluate(
        &log,
        u64::from(days - 2) * shared::forecast::BUCKETS_PER_DAY,
        &[],
    );
    let at_15 = |d: Density| {
        rows.iter()
            .find(|r| r.density == d && r.horizon_min == 15)
            .unwrap_or_else(|| panic!("no {d:?} row: {rows:?}"))
    };
    for d in [Density::Busy, Density::Medium] {
        let r = at_15(d);
        assert!(r.targets > 100, "{r:?}");
        // (Against the last value it is level on eight days and ahead on
        // fourteen: docs/simulation/city.md.)
        let [hw, naive, _last] = r.wape;
        assert!(
            hw < naive,
            "{d:?}: Holt-Winters {hw:.3} vs seasonal naive {naive:.3}"
        );
    }
}
