//! Pricing experiments as admins write them (`experiment:<region>`), and
//! their results.

use super::*;

/// A policy's parameters in an experiment's arm (`shared::policies::PolicyParams`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyParamsWire {
    /// Forecast-aware and controller: lean toward the forecast, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<f64>,
    /// Controller: the unfulfilled share to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_unfulfilled: Option<f64>,
    /// Controller: the p90 pickup wait to hold, minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_p90_wait_minutes: Option<f64>,
    /// Controller: the largest relative step of its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// Controller: the threshold's lowest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_threshold: Option<f64>,
    /// Controller: the threshold's highest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_threshold: Option<f64>,
}

/// An experiment's arm as an admin writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArmWire {
    /// The arm's name.
    pub name: String,
    /// Its policy: `none`, `default`, `forecast` or `controller`.
    pub policy: String,
    /// The policy's parameters (defaults for any left out).
    #[serde(default)]
    pub params: PolicyParamsWire,
    /// Its share of units, whole percent (the arms' shares sum to 100).
    pub share_percent: u32,
}

/// An experiment's guardrails.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsWire {
    /// End the experiment when an arm's completion rate falls this many
    /// percentage points below the control's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_drop_points: Option<f64>,
}

/// An experiment as an admin writes it, the value of `experiment:<region>`
/// in the edge's CONFIG namespace (`wrangler kv key put`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentWire {
    /// Its id.
    pub id: String,
    /// The region it runs in.
    pub region: String,
    /// The arms, the control first.
    pub arms: Vec<ArmWire>,
    /// `switchback` (the region alternates in windows) or `user`.
    pub split: String,
    /// Switchback: the window, minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_minutes: Option<u32>,
    /// The assignment hash's salt.
    pub salt: String,
    /// Start, ms since the epoch.
    pub start: u64,
    /// End (exclusive), ms since the epoch.
    pub end: u64,
    /// Guardrails.
    #[serde(default)]
    pub guardrails: GuardrailsWire,
}

impl From<&ExperimentWire> for crate::experiment::ExperimentDef {
    fn from(w: &ExperimentWire) -> Self {
        Self {
            id: w.id.clone(),
            region: w.region.clone(),
            arms: w
                .arms
                .iter()
                .map(|a| crate::experiment::ArmDef {
                    name: a.name.clone(),
                    policy: a.policy.clone(),
                    params: crate::policies::PolicyParams {
                        lead: a.params.lead,
                        target_unfulfilled: a.params.target_unfulfilled,
                        target_p90_wait_minutes: a.params.target_p90_wait_minutes,
                        step: a.params.step,
                        min_threshold: a.params.min_threshold,
                        max_threshold: a.params.max_threshold,
                    },
                    share_percent: a.share_percent,
                })
                .collect(),
            split: w.split.clone(),
            window_minutes: w.window_minutes,
            salt: w.salt.clone(),
            start_ms: w.start,
            end_ms: w.end,
            max_completion_drop_points: w.guardrails.max_completion_drop_points,
        }
    }
}

/// An estimate with its 95 % interval (absent with too few units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EstimateWire {
    /// The estimate.
    pub value: f64,
    /// The interval's low end.
    pub low: Option<f64>,
    /// The interval's high end.
    pub high: Option<f64>,
    /// Units it rests on: windows in a switchback, quotes or bookings in a
    /// user split.
    pub units: u64,
}

impl From<&crate::experiment::results::Estimate> for EstimateWire {
    fn from(e: &crate::experiment::results::Estimate) -> Self {
        Self {
            value: e.value,
            low: e.low(),
            high: e.high(),
            units: e.units,
        }
    }
}

/// An arm minus the control, with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DifferenceWire {
    /// Arm minus control.
    pub difference: f64,
    /// The interval's low end.
    pub low: Option<f64>,
    /// The interval's high end.
    pub high: Option<f64>,
}

impl From<&crate::experiment::results::Compared> for DifferenceWire {
    fn from(c: &crate::experiment::results::Compared) -> Self {
        Self {
            difference: c.difference,
            low: c.low(),
            high: c.high(),
        }
    }
}

/// One arm's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArmResultWire {
    /// The arm.
    pub arm: String,
    /// Its policy's version.
    pub policy: String,
    /// Price checks.
    pub quotes: u64,
    /// Bookings confirmed.
    pub confirmed: u64,
    /// Trips completed.
    pub completed: u64,
    /// Bookings cancelled.
    pub cancelled: u64,
    /// Bookings failed (no driver found).
    pub failed: u64,
    /// Fares of completed trips, minor units.
    pub revenue_minor: u64,
    /// Confirmed per quote.
    pub conversion: Option<EstimateWire>,
    /// Completed per ended booking.
    pub completion: Option<EstimateWire>,
    /// Fare per completed trip, minor units.
    pub fare_minor: Option<EstimateWire>,
    /// Revenue per quote, minor units.
    pub revenue_per_quote_minor: Option<EstimateWire>,
    /// Minutes from confirmation to pickup.
    pub wait_minutes: Option<EstimateWire>,
    /// Mean multiplier quoted.
    pub multiplier: Option<EstimateWire>,
    /// Mean absolute change of a cell's multiplier per tick in the arm's
    /// grid while riders saw it, since this origin started pricing the arm
    /// (absent when it is not the region's owner or the arm is not
    /// running); the unit is a switchback's window, a user split's minute.
    pub volatility: Option<EstimateWire>,
    /// Conversion minus the control's (absent for the control).
    pub conversion_vs_control: Option<DifferenceWire>,
    /// Completion minus the control's (absent for the control).
    pub completion_vs_control: Option<DifferenceWire>,
    /// Revenue per quote minus the control's (absent for the control).
    pub revenue_per_quote_vs_control: Option<DifferenceWire>,
}

/// `GET /v1/analytics/experiments/{id}` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentResultsResponse {
    /// The experiment.
    pub id: String,
    /// Its region.
    pub region: String,
    /// `switchback` or `user`.
    pub split: String,
    /// `scheduled`, `running`, `finished`, or `ended` (by its guardrail).
    pub status: String,
    /// Why it ended early, if it did.
    pub ended_reason: Option<String>,
    /// How the intervals were computed.
    pub intervals: String,
    /// The arms, the control first.
    pub arms: Vec<ArmResultWire>,
}

/// An experiment from its JSON, validated; the error says what is wrong
/// (for the log line of a refused definition).
pub fn parse_experiment(json: &str) -> Result<crate::experiment::Experiment, String> {
    let wire: ExperimentWire =
        serde_json::from_str(json).map_err(|e| format!("not an experiment: {e}"))?;
    crate::experiment::Experiment::new(&(&wire).into()).map_err(|e| e.to_string())
}

/// Most experiments one region's value may hold.
pub const MAX_EXPERIMENTS: usize = 32;

/// A region's experiments from the value of `experiment:<region>`: one
/// experiment or an array of them (one after another in time). Each
/// definition that is invalid, names another region or overlaps another in
/// time is refused with its reason, and the rest are kept: pricing never
/// stops for a typo, and a region runs at most one experiment at a time.
/// The edge and the origin both read the value through this.
pub fn parse_experiments(
    region: &Ident,
    json: &str,
) -> (Vec<crate::experiment::Experiment>, Vec<String>) {
    let values: Vec<serde_json::Value> = match serde_json::from_str(json) {
        Ok(serde_json::Value::Array(items)) if items.len() > MAX_EXPERIMENTS => {
            return (
                Vec::new(),
                vec![format!(
                    "{} experiments; a region's value holds at most {MAX_EXPERIMENTS}",
                    items.len()
                )],
            )
        }
        Ok(serde_json::Value::Array(items)) => items,
        Ok(one @ serde_json::Value::Object(_)) => vec![one],
        Ok(_) => return (Vec::new(), vec!["not an experiment or an array".into()]),
        Err(e) => return (Vec::new(), vec![format!("not JSON: {e}")]),
    };
    let mut valid = Vec::new();
    let mut refused = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let parsed = serde_json::from_value::<ExperimentWire>(v)
            .map_err(|e| format!("not an experiment: {e}"))
            .and_then(|w| {
                crate::experiment::Experiment::new(&(&w).into()).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(e) if e.region() != region => refused.push(format!(
                "[{i}] {}: is for region {}, not {region}",
                e.id(),
                e.region()
            )),
            Ok(e) => valid.push(e),
            Err(why) => refused.push(format!("[{i}] {why}")),
        }
    }
    let (kept, overlapping) = crate::experiment::refuse_overlaps(valid);
    refused.extend(
        overlapping
            .into_iter()
            .map(|(id, why)| format!("{id}: {why}")),
    );
    let (kept, reused) = crate::experiment::refuse_reused_ids(kept, |_| false);
    refused.extend(reused);
    (kept, refused)
}
