//! Experiments' guardrails, checked as the region ticks: every
//! [`EVERY_MS`] the results of each running experiment with a guardrail
//! are looked up in the background (a tick never waits for the store) and
//! judged by the core ([`shared::experiment::results::guardrail_breach`]).
//! A breach ends the experiment for good in its region: its arms stop at
//! the next tick, the grid pushed then has none, so every quote is priced
//! by the region's own policy again. Logged as an error, counted in
//! `equilibrium_experiments_ended_total`.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use shared::experiment::results::{guardrail_breach, results};
use shared::experiment::Experiment;
use shared::time::Timestamp;

use crate::state::{lock, AppState};

/// How often a running experiment's guardrail is judged, ms.
pub const EVERY_MS: u64 = shared::surge::Feedback::EVERY.0;

/// When each region's last guardrail lookup started, ms.
#[derive(Debug, Default)]
pub struct Guardrails(Mutex<HashMap<String, u64>>);

impl Guardrails {
    fn claim(&self, region: &str, now: Timestamp) -> bool {
        let mut at = lock(&self.0);
        let due = at
            .get(region)
            .is_none_or(|s| now.0.saturating_sub(*s) >= EVERY_MS || now.0 < *s);
        if due {
            at.insert(region.to_owned(), now.0);
        }
        due
    }
}

/// Starts the guardrail lookups due at `now` for `running` experiments
/// (region id, experiment).
pub fn refresh(state: &Arc<AppState>, running: Vec<(String, Experiment)>, now: Timestamp) {
    let due: HashMap<String, Experiment> = running
        .into_iter()
        .filter(|(_, e)| e.max_completion_drop_points().is_some())
        .filter(|(r, _)| state.guardrails.claim(r, now))
        .collect();
    if due.is_empty() {
        return;
    }
    let regions: Vec<String> = due.keys().cloned().collect();
    let lookup = crate::lookup::Lookup {
        what: "experiment guardrails",
        after_failure: "experiments go on; judged again at the next lookup",
        failures: |m| &m.guardrail_failures,
    };
    let experiments = due.clone();
    crate::lookup::per_region(
        state,
        regions,
        lookup,
        move |store, region| match experiments.get(region) {
            Some(e) => {
                store.arm_tallies(region, e.id().as_str(), crate::http::MAX_EXPERIMENT_EVENTS)
            }
            None => Ok(Vec::new()),
        },
        move |state, rows| {
            for (region, tallies) in rows {
                let Some(e) = due.get(&region) else { continue };
                let Some(why) = guardrail_breach(e, &results(e, &tallies)) else {
                    continue;
                };
                if lock(&state.agg).end_experiment(&region, e.id(), &why) {
                    state.metrics.experiments_ended.fetch_add(1, Relaxed);
                    tracing::error!(region = %region, experiment = %e.id(), reason = %why,
                        "experiment ended by its guardrail: the region's own policy prices every quote again");
                    remember_end(state, region, e.id().to_string(), why, now);
                }
            }
        },
    );
}

/// Stores an experiment's end so it stays ended across a restart or a
/// take-over. A failed write is logged and counted: the end holds in this
/// process, and after a restart the guardrail, judging the same stored
/// events, ends it again within [`EVERY_MS`].
fn remember_end(state: &AppState, region: String, id: String, why: String, now: Timestamp) {
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = lock(&store).record_experiment_end(&region, &id, &why, now.0) {
            metrics.guardrail_failures.fetch_add(1, Relaxed);
            tracing::warn!(region = %region, experiment = %id, error = %e,
                "experiment end not stored; it holds until this process stops");
        }
    });
}

/// Keeps every value of a region's experiments key the edge reported, in
/// the background: an experiment's results stay readable after its
/// definition leaves KV. A failed write is logged and counted (the value
/// is written again when the edge reports a change).
pub fn keep_values(state: &Arc<AppState>, learned: &[(String, Option<String>)], now: Timestamp) {
    let values: Vec<(String, String)> = learned
        .iter()
        .filter_map(|(r, t)| t.clone().map(|t| (r.clone(), t)))
        .collect();
    if values.is_empty() {
        return;
    }
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = lock(&store);
        for (region, value) in values {
            if let Err(e) = store.record_experiment_value(&region, &value, now.0) {
                metrics.guardrail_failures.fetch_add(1, Relaxed);
                tracing::warn!(region = %region, error = %e, "experiment definition not kept");
            }
        }
    });
}
