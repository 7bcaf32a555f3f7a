//! `GET /v1/analytics/experiments/{id}`: an experiment's results per arm,
//! from the events of the quotes priced in its arms (reported by the edge,
//! stored in `arm_events`) and the core's statistics
//! ([`shared::experiment::results`]).
//!
//! The origin knows an experiment from the definitions the edge returns
//! with its pushes, and keeps every value it saw in its store
//! (`experiment_values`), so the results stay readable after the
//! definition leaves KV, after a restart, and (PostgreSQL being shared) at
//! any cluster member.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use shared::api::{ArmResultWire, ErrorBody, ExperimentResultsResponse};
use shared::experiment::results::{results, Compared};
use shared::experiment::Split;

use super::ingest::with_store;
use super::{Path, Problem};
use crate::aggregate::KnownExperiment;
use crate::state::{lock, AppState};

/// Most (arm, unit, kind) rows read for one report.
pub const MAX_EVENTS: u32 = 1_000_000;

/// `GET /v1/analytics/experiments/{id}`.
#[utoipa::path(
    get,
    path = "/v1/analytics/experiments/{id}",
    tag = "reads",
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 200, description = "Results per arm, the control first", body = ExperimentResultsResponse),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A producer token", body = ErrorBody),
        (status = 404, description = "No experiment of that id is known to this origin", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("reader" = [])),
)]
pub async fn results_of(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ExperimentResultsResponse>, Problem> {
    let now = s.clock.now();
    let live = lock(&s.agg).experiment(&id, now);
    let known = match live {
        Some(k) => Some(k),
        // No longer in KV (deleted, replaced) or not learned since a
        // restart: the definitions the store kept.
        None => {
            let key = id.clone();
            with_store(&s, move |st| stored(st, &key, now)).await?
        }
    };
    let known = known.ok_or_else(|| {
        Problem(
            StatusCode::NOT_FOUND,
            "experiment_not_found",
            format!(
                "no experiment {:?} is known to this origin (it learns them from the edge's experiment:<region> keys with its pushes)",
                id.chars().take(64).collect::<String>()
            ),
        )
    })?;
    let (region, key) = (known.experiment.region().to_string(), id.clone());
    let tallies = with_store(&s, move |st| st.arm_tallies(&region, &key, MAX_EVENTS)).await?;
    let e = &known.experiment;
    let table = results(e, &tallies);
    let control = table.first().cloned();
    let arms = table
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let vs = |pick: fn(&shared::experiment::results::ArmResult) -> Option<_>| {
                let c = control.as_ref().filter(|_| i > 0)?;
                Some((&Compared::of(&pick(r)?, &pick(c)?)).into())
            };
            ArmResultWire {
                arm: r.arm.to_string(),
                policy: e
                    .arm(&r.arm)
                    .map(|a| a.version().to_string())
                    .unwrap_or_default(),
                quotes: r.quotes,
                confirmed: r.confirmed,
                completed: r.completed,
                cancelled: r.cancelled,
                failed: r.failed,
                revenue_minor: r.revenue_minor,
                conversion: r.conversion.as_ref().map(Into::into),
                completion: r.completion.as_ref().map(Into::into),
                fare_minor: r.fare.as_ref().map(Into::into),
                revenue_per_quote_minor: r.revenue_per_quote.as_ref().map(Into::into),
                wait_minutes: r.wait_minutes.as_ref().map(Into::into),
                multiplier: r.multiplier.as_ref().map(Into::into),
                volatility: known
                    .volatility
                    .iter()
                    .find(|(a, _)| *a == r.arm)
                    .and_then(|(_, v)| v.as_ref().map(Into::into)),
                conversion_vs_control: vs(|x| x.conversion),
                completion_vs_control: vs(|x| x.completion),
                revenue_per_quote_vs_control: vs(|x| x.revenue_per_quote),
            }
        })
        .collect();
    let (split, intervals) = match e.split() {
        Split::Switchback { window } => (
            "switchback",
            format!(
                "95 % normal intervals; the unit is the {}-minute window (cluster-robust ratio variance)",
                window.0 / 60_000
            ),
        ),
        Split::User => (
            "user",
            "95 % normal intervals; the unit is the quote or the booking, taken as independent (ignores interference between arms)".to_owned(),
        ),
    };
    Ok(Json(ExperimentResultsResponse {
        id: e.id().to_string(),
        region: e.region().to_string(),
        split: split.to_owned(),
        status: known.status.to_owned(),
        ended_reason: known.ended,
        intervals,
        arms,
    }))
}

/// An experiment from the definitions the store kept, with its status.
fn stored(
    st: &mut dyn crate::store::History,
    id: &str,
    now: shared::time::Timestamp,
) -> Result<Option<KnownExperiment>, crate::store::StoreError> {
    // Newest value first: a definition changed later wins.
    for (region, value) in st.experiment_values()?.into_iter().rev() {
        let Ok(region_id) = shared::quote::Ident::new(&region) else {
            continue;
        };
        let (valid, _) = shared::api::parse_experiments(&region_id, &value);
        if let Some(e) = valid.into_iter().find(|e| e.id().as_str() == id) {
            let ended = st
                .experiment_ends(&region)?
                .into_iter()
                .find(|(x, _)| x == id)
                .map(|(_, why)| why);
            return Ok(Some(KnownExperiment {
                status: e.status(now, ended.is_some()).as_str(),
                experiment: e,
                ended,
                volatility: Vec::new(),
            }));
        }
    }
    Ok(None)
}
