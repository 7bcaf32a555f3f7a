//! Each region's lawful emergency cap ([`shared::emergency`]), computed
//! from the store's daily maxima once a day and shipped with every grid.
//!
//! The lookup runs in the background: a tick never waits for the store
//! (in cluster mode a PostgreSQL outage must not hold up pricing). Until
//! the day's value is known the previous day's is used; a region with
//! none yet ships none, and an emergency there prices at 1.0. A failed
//! lookup is logged, counted and retried after [`RETRY_MS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shared::emergency::{day_of, lawful_cap, lookback};
use shared::surge::Multiplier;
use shared::time::Timestamp;

use crate::state::{lock, AppState};

/// A failed lookup is retried after this long.
pub const RETRY_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// The day the cap was computed for.
    day: Option<u64>,
    /// The cap (of `day`, or the previous one while a lookup runs).
    cap: Option<Multiplier>,
    /// When a lookup was last started, ms.
    started_at: Option<u64>,
}

/// The caps known per region.
#[derive(Debug, Default)]
pub struct LawfulCaps(Mutex<HashMap<String, Entry>>);

impl LawfulCaps {
    /// The cap a grid of `region` ships now.
    pub fn get(&self, region: &str) -> Option<Multiplier> {
        lock(&self.0).get(region).and_then(|e| e.cap)
    }

    /// Marks the regions whose cap must be looked up at `now` (not yet
    /// known for today, and no lookup started within [`RETRY_MS`]) and
    /// returns them.
    fn claim(&self, regions: &[String], now: Timestamp) -> Vec<String> {
        let today = day_of(now);
        let mut known = lock(&self.0);
        regions
            .iter()
            .filter(|r| {
                let e = known.entry((*r).clone()).or_default();
                let due = e.day != Some(today)
                    && e.started_at
                        .is_none_or(|s| now.0.saturating_sub(s) >= RETRY_MS);
                if due {
                    e.started_at = Some(now.0);
                }
                due
            })
            .cloned()
            .collect()
    }

    fn set(&self, region: &str, day: u64, cap: Option<Multiplier>) {
        let mut known = lock(&self.0);
        let e = known.entry(region.to_owned()).or_default();
        e.day = Some(day);
        e.cap = cap;
    }
}

/// Starts the lookups due at `now` for `regions` in the background.
pub fn refresh(state: &Arc<AppState>, regions: &[String], now: Timestamp) {
    let due = state.lawful.claim(regions, now);
    if due.is_empty() {
        return;
    }
    let (from, to) = lookback(now);
    let lookup = crate::lookup::Lookup {
        what: "lawful caps",
        after_failure: "retrying in a minute",
        failures: |m| &m.lawful_cap_failures,
    };
    crate::lookup::per_region(
        state,
        due,
        lookup,
        move |store, region| store.daily_maxima(region, from.0, to.0),
        move |state, rows| {
            for (region, days) in rows {
                let maxima: Vec<Multiplier> = days
                    .iter()
                    .filter_map(|m| Multiplier::from_f64(*m).ok())
                    .collect();
                let cap = lawful_cap(&maxima);
                tracing::info!(region = %region, days = maxima.len(), cap = ?cap.map(|c| c.as_f64()), "lawful emergency cap");
                state.lawful.set(&region, day_of(now), cap);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_looked_up_once_a_day_and_retried_after_a_failure() {
        let caps = LawfulCaps::default();
        let regions = vec!["sf".to_owned()];
        let day = shared::emergency::DAY_MS;
        let t = Timestamp(10 * day + 1_000);
        assert_eq!(caps.claim(&regions, t), regions);
        // In flight: not claimed again until the retry interval.
        assert!(caps.claim(&regions, Timestamp(t.0 + 1_000)).is_empty());
        assert_eq!(caps.claim(&regions, Timestamp(t.0 + RETRY_MS)), regions);
        let m = Multiplier::from_tenths(25).expect("m");
        caps.set("sf", 10, Some(m));
        assert_eq!(caps.get("sf"), Some(m));
        assert!(caps
            .claim(&regions, Timestamp(t.0 + 2 * RETRY_MS))
            .is_empty());
        // The next day: looked up again, yesterday's cap kept meanwhile.
        assert_eq!(caps.claim(&regions, Timestamp(11 * day)), regions);
        assert_eq!(caps.get("sf"), Some(m));
    }
}
