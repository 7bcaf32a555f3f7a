//! The feedback a region's controller steers by (`shared::policies::Controller`):
//! the unfulfilled share and p90 pickup wait of the rides that ended in the
//! last [`Feedback::WINDOW`], read from the stored ride outcomes (reported
//! by the edge's bookings or posted to `/v1/outcomes`).
//!
//! Like the lawful caps, the lookup runs in the background and a tick never
//! waits for the store. It runs every [`EVERY_MS`] for each region whose
//! policy is the controller, and each result is handed to one tick only,
//! so the controller moves at most one bounded step per lookup, whatever
//! the tick interval (the simulator reprices as often). A failed lookup is
//! logged and counted; the controller then holds its threshold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shared::surge::Feedback;
use shared::time::Timestamp;

use crate::state::{lock, AppState};

/// How often a region's feedback is looked up, ms
/// (`shared::surge::Feedback::EVERY`).
pub const EVERY_MS: u64 = Feedback::EVERY.0;

/// At most this many of the window's rides are read per lookup.
const LIMIT: u32 = 50_000;

#[derive(Debug, Default)]
struct Entry {
    /// A result not yet handed to a tick, and when its lookup started.
    fresh: Option<(Feedback, u64)>,
    /// When the last lookup started, ms.
    started_at: Option<u64>,
}

/// Per region: the latest feedback not yet used, and when it was looked up.
#[derive(Debug, Default)]
pub struct Feedbacks(Mutex<HashMap<String, Entry>>);

impl Feedbacks {
    /// Every fresh result, each handed out once.
    pub fn take(&self) -> HashMap<String, Feedback> {
        lock(&self.0)
            .iter_mut()
            .filter_map(|(r, e)| e.fresh.take().map(|(f, _)| (r.clone(), f)))
            .collect()
    }

    fn claim(&self, regions: &[String], now: Timestamp) -> Vec<String> {
        let mut known = lock(&self.0);
        regions
            .iter()
            .filter(|r| {
                let e = known.entry((*r).clone()).or_default();
                let due = e
                    .started_at
                    .is_none_or(|s| now.0.saturating_sub(s) >= EVERY_MS || now.0 < s);
                if due {
                    e.started_at = Some(now.0);
                }
                due
            })
            .cloned()
            .collect()
    }

    /// A lookup started at `started` returned `f`; a slower, older lookup
    /// never replaces a newer one's result.
    fn set(&self, region: &str, f: Feedback, started: u64) {
        let mut known = lock(&self.0);
        let e = known.entry(region.to_owned()).or_default();
        if e.fresh.is_none_or(|(_, s)| s <= started) {
            e.fresh = Some((f, started));
        }
    }
}

/// Starts the lookups due at `now` for `regions` (those with a controller)
/// in the background.
pub fn refresh(state: &Arc<AppState>, regions: &[String], now: Timestamp) {
    let due = state.feedback.claim(regions, now);
    if due.is_empty() {
        return;
    }
    let from = now.0.saturating_sub(Feedback::WINDOW.0);
    // Rides reported up to now, inclusive.
    let to = now.0.saturating_add(1);
    let lookup = crate::lookup::Lookup {
        what: "controller feedback",
        after_failure: "thresholds hold",
        failures: |m| &m.feedback_failures,
    };
    crate::lookup::per_region(
        state,
        due,
        lookup,
        move |store, region| store.recent_outcomes(region, from, to, LIMIT),
        move |state, rows| {
            for (region, ended) in rows {
                let f = Feedback::gather(
                    ended
                        .into_iter()
                        .map(|(done, wait)| (done, wait.map(|w| w as f64 / 1_000.0))),
                );
                tracing::debug!(region = %region, ended = f.ended, unfulfilled = f.unfulfilled, p90_wait_s = ?f.p90_wait_s, "controller feedback");
                state.feedback.set(&region, f, now.0);
            }
        },
    );
}

/// The key of an experiment arm's feedback in [`Feedbacks`]: region and
/// arm (`/` is in no identifier, so it cannot be a region's key).
pub fn arm_key(region: &str, arm: &str) -> String {
    [region, "/", arm].concat()
}

/// Starts the lookups due at `now` of the running experiments' controller
/// arms, `(region, experiment, arms)`: each arm's policy steers by the
/// outcomes of the bookings priced in that arm, read from the stored arm
/// events, never by the region's.
pub fn refresh_arms(
    state: &Arc<AppState>,
    steered: Vec<(String, String, Vec<String>)>,
    now: Timestamp,
) {
    // One lookup per region and experiment, claimed under that pair.
    let claims: Vec<String> = steered
        .iter()
        .map(|(r, e, _)| [r.as_str(), "/", e.as_str(), "/"].concat())
        .collect();
    let due = state.feedback.claim(&claims, now);
    let due: Vec<(String, String, Vec<String>)> = steered
        .into_iter()
        .filter(|(r, e, _)| due.contains(&[r.as_str(), "/", e.as_str(), "/"].concat()))
        .collect();
    if due.is_empty() {
        return;
    }
    let from = now.0.saturating_sub(Feedback::WINDOW.0);
    let to = now.0.saturating_add(1);
    let lookup = crate::lookup::Lookup {
        what: "experiment arms' feedback",
        after_failure: "the arms' thresholds hold",
        failures: |m| &m.feedback_failures,
    };
    let experiments: HashMap<String, (String, Vec<String>)> =
        due.into_iter().map(|(r, e, arms)| (r, (e, arms))).collect();
    let regions: Vec<String> = experiments.keys().cloned().collect();
    let arms_of = experiments.clone();
    crate::lookup::per_region(
        state,
        regions,
        lookup,
        move |store, region| match experiments.get(region) {
            Some((e, _)) => store.recent_arm_outcomes(region, e, from, to, LIMIT),
            None => Ok(Vec::new()),
        },
        move |state, rows| {
            for (region, ended) in rows {
                let Some((_, arms)) = arms_of.get(&region) else {
                    continue;
                };
                for arm in arms {
                    let f = Feedback::gather(
                        ended
                            .iter()
                            .filter(|(a, _, _)| a == arm)
                            .map(|(_, done, wait)| (*done, wait.map(|w| w as f64 / 1_000.0))),
                    );
                    state.feedback.set(&arm_key(&region, arm), f, now.0);
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_due_every_interval_and_results_are_used_once() {
        let f = Feedbacks::default();
        let regions = vec!["sf".to_owned()];
        assert_eq!(f.claim(&regions, Timestamp(1_000)), regions);
        assert!(f
            .claim(&regions, Timestamp(1_000 + EVERY_MS - 1))
            .is_empty());
        assert_eq!(f.claim(&regions, Timestamp(1_000 + EVERY_MS)), regions);
        let with = |ended| Feedback {
            ended,
            ..Feedback::default()
        };
        f.set("sf", with(3), 2_000);
        // A slower lookup that started earlier does not replace it.
        f.set("sf", with(9), 1_000);
        assert_eq!(f.take().get("sf").map(|x| x.ended), Some(3));
        assert!(f.take().is_empty(), "handed out once");
    }
}
