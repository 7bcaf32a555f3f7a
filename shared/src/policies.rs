//! The pricing policies a region can run, and the one way to name them.
//!
//! * [`NoSurge`] and [`DefaultCurve`] (in [`crate::surge`]): no surge, and
//!   the original design's curve on demand / supply.
//! * [`ForecastAware`]: the default curve on a ratio that leans toward the
//!   forecast's ratio at its horizon, so a price moves before the
//!   imbalance forms (and eases before it clears).
//! * [`Controller`]: the forecast-aware ratio divided by a threshold that a
//!   feedback loop moves in bounded steps, to hold the region's
//!   unfulfilled share and p90 pickup wait at their targets.
//!
//! Every policy only proposes a raw multiplier: the engine's smoothing, the
//! step limit and the caps apply to all of them alike.
//!
//! A region picks its policy by configuration ([`PolicySpec`]); the
//! origin and the simulator build it with [`PolicySpec::build`], so the
//! policy an operator configures is the policy the simulator measured.

use crate::surge::{DefaultCurve, Feedback, NoSurge, Policy, PolicyInput};

/// A cell with demand and no available driver prices as if half a driver
/// were there: scarce, but not the zone maximum on one rider's request.
/// (The default curve keeps the original design's rule, zero supply → the
/// maximum.)
pub const SUPPLY_FLOOR: f64 = 0.5;

fn ratio(demand: f64, supply: f64) -> f64 {
    if demand <= 0.0 {
        0.0
    } else {
        demand / supply.max(SUPPLY_FLOOR)
    }
}

/// The default curve on a ratio blended between now and the forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastAware {
    /// How far the ratio leans toward the forecast's, in [0, 1]: 0 prices
    /// the present alone, 1 the forecast alone.
    pub lead: f64,
}

impl Default for ForecastAware {
    /// Lead 0.75: on the simulator's frontier (`docs/simulation/frontier.md`)
    /// within 6 trips of lead 1.0's 1,362, the most, with a concert p90 wait
    /// 1.7 minutes shorter.
    fn default() -> Self {
        Self { lead: 0.75 }
    }
}

impl ForecastAware {
    /// The demand / supply ratio this policy prices: today's, moved `lead`
    /// of the way toward the forecast's when the cell has one.
    pub fn ratio(&self, cell: &PolicyInput) -> f64 {
        let now = ratio(f64::from(cell.demand), f64::from(cell.supply));
        match cell.ahead {
            Some(a) if a.demand.is_finite() && a.supply.is_finite() => {
                let ahead = ratio(a.demand.max(0.0), a.supply.max(0.0));
                now + self.lead.clamp(0.0, 1.0) * (ahead - now)
            }
            _ => now,
        }
    }
}

impl Policy for ForecastAware {
    fn name(&self) -> &str {
        "forecast"
    }

    fn raw(&self, cell: &PolicyInput) -> f64 {
        DefaultCurve::of_ratio(self.ratio(cell)).min(cell.max.as_f64())
    }
}

/// Targets and limits of a [`Controller`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerParams {
    /// The unfulfilled share of ended requests to hold, in (0, 1).
    pub target_unfulfilled: f64,
    /// The p90 pickup wait to hold, seconds.
    pub target_p90_wait_s: f64,
    /// The largest relative move of the threshold per feedback (every
    /// `Feedback::EVERY`), in (0, 0.5].
    pub step: f64,
    /// The threshold's range: the demand / supply ratio at which surge
    /// starts. Low means more surge.
    pub min_threshold: f64,
    /// See `min_threshold`.
    pub max_threshold: f64,
    /// Ended requests needed before a tick's feedback moves the threshold.
    pub min_ended: u32,
    /// How far the ratio leans toward the forecast (as [`ForecastAware`]).
    pub lead: f64,
}

impl Default for ControllerParams {
    fn default() -> Self {
        Self {
            target_unfulfilled: 0.10,
            target_p90_wait_s: 360.0,
            step: 0.05,
            min_threshold: 0.5,
            max_threshold: 4.0,
            min_ended: 10,
            lead: 0.5,
        }
    }
}

/// Controller parameters out of range.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidPolicy {
    /// `target_unfulfilled` not in (0, 1).
    #[error("target_unfulfilled {0} is not in (0, 1)")]
    TargetUnfulfilled(f64),
    /// `target_p90_wait_s` not positive.
    #[error("target p90 wait {0} s is not positive")]
    TargetWait(f64),
    /// `step` not in (0, 0.5].
    #[error("step {0} is not in (0, 0.5]")]
    Step(f64),
    /// The threshold range is empty or not positive.
    #[error("threshold range [{0}, {1}] is not a positive range")]
    Threshold(f64, f64),
    /// `lead` not in [0, 1].
    #[error("lead {0} is not in [0, 1]")]
    Lead(f64),
}

fn check_lead(lead: f64) -> Result<f64, InvalidPolicy> {
    if (0.0..=1.0).contains(&lead) {
        Ok(lead)
    } else {
        Err(InvalidPolicy::Lead(lead))
    }
}

impl ControllerParams {
    /// Checks the ranges documented on each field.
    pub fn validate(self) -> Result<Self, InvalidPolicy> {
        if !(self.target_unfulfilled > 0.0 && self.target_unfulfilled < 1.0) {
            return Err(InvalidPolicy::TargetUnfulfilled(self.target_unfulfilled));
        }
        if !(self.target_p90_wait_s > 0.0 && self.target_p90_wait_s.is_finite()) {
            return Err(InvalidPolicy::TargetWait(self.target_p90_wait_s));
        }
        if !(self.step > 0.0 && self.step <= 0.5) {
            return Err(InvalidPolicy::Step(self.step));
        }
        if !(self.min_threshold > 0.0
            && self.min_threshold <= self.max_threshold
            && self.max_threshold.is_finite())
        {
            return Err(InvalidPolicy::Threshold(
                self.min_threshold,
                self.max_threshold,
            ));
        }
        check_lead(self.lead)?;
        Ok(self)
    }
}

/// Hold the region's unfulfilled share and p90 pickup wait at targets.
///
/// Prices the [`ForecastAware`] ratio divided by a threshold: surge starts
/// where demand exceeds `threshold` times supply. Each feedback with
/// enough ended requests, the threshold moves one bounded step: down (more surge)
/// when either measure is above its target, up (less surge) when both are
/// below 80 % of theirs, else it holds. It starts at 1.0, the default
/// curve's knee, and stays in its configured range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Controller {
    params: ControllerParams,
    threshold: f64,
}

/// Both measures below this share of their targets: the controller relaxes.
const RELAX_BELOW: f64 = 0.8;

impl Controller {
    /// A controller at threshold 1.0 (clamped into the range).
    pub fn new(params: ControllerParams) -> Result<Self, InvalidPolicy> {
        let params = params.validate()?;
        Ok(Self {
            threshold: 1.0_f64.clamp(params.min_threshold, params.max_threshold),
            params,
        })
    }

    /// The demand / supply ratio at which surge starts now.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Its parameters.
    pub fn params(&self) -> ControllerParams {
        self.params
    }

    /// Continues from a threshold (after a restart), clamped into range.
    pub fn set_threshold(&mut self, threshold: f64) {
        if threshold.is_finite() {
            self.threshold = threshold.clamp(self.params.min_threshold, self.params.max_threshold);
        }
    }

    /// How far the worse of the two measures is from its target: above 1.0
    /// is over target. `None` with too few ended requests.
    pub fn pressure(&self, f: &Feedback) -> Option<f64> {
        if f.ended < self.params.min_ended.max(1) {
            return None;
        }
        let unfulfilled = f64::from(f.unfulfilled.min(f.ended)) / f64::from(f.ended);
        let u = unfulfilled / self.params.target_unfulfilled;
        let w = f
            .p90_wait_s
            .filter(|w| w.is_finite())
            .map_or(0.0, |w| w.max(0.0) / self.params.target_p90_wait_s);
        Some(u.max(w))
    }
}

impl Policy for Controller {
    fn name(&self) -> &str {
        "controller"
    }

    fn raw(&self, cell: &PolicyInput) -> f64 {
        let r = ForecastAware {
            lead: self.params.lead,
        }
        .ratio(cell);
        DefaultCurve::of_ratio(r / self.threshold).min(cell.max.as_f64())
    }

    fn persisted(&self) -> Option<f64> {
        Some(self.threshold)
    }

    fn resume(&mut self, state: f64) {
        self.set_threshold(state);
    }

    fn observe(&mut self, feedback: &Feedback) {
        let Some(p) = self.pressure(feedback) else {
            return;
        };
        let step = self.params.step;
        let next = if p > 1.0 {
            self.threshold * (1.0 - step)
        } else if p < RELAX_BELOW {
            self.threshold * (1.0 + step)
        } else {
            self.threshold
        };
        self.set_threshold(next);
    }
}

/// The policy names a region can be configured with.
pub const POLICY_NAMES: [&str; 4] = ["none", "default", "forecast", "controller"];

/// A region's configured policy (the default curve unless configured).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum PolicySpec {
    /// No surge.
    None,
    /// The default curve.
    #[default]
    Default,
    /// Forecast-aware.
    Forecast(ForecastAware),
    /// The controller.
    Controller(ControllerParams),
}

/// A policy name that is not one of [`POLICY_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy {0:?}; expected none, default, forecast or controller")]
pub struct UnknownPolicy(pub String);

impl PolicySpec {
    /// The policy of a name with its default parameters (the one parser of
    /// policy names).
    pub fn parse(name: &str) -> Result<Self, UnknownPolicy> {
        match name {
            "none" => Ok(PolicySpec::None),
            "default" => Ok(PolicySpec::Default),
            "forecast" => Ok(PolicySpec::Forecast(ForecastAware::default())),
            "controller" => Ok(PolicySpec::Controller(ControllerParams::default())),
            other => Err(UnknownPolicy(other.chars().take(20).collect())),
        }
    }

    /// The name, as parsed.
    pub fn name(&self) -> &'static str {
        match self {
            PolicySpec::None => "none",
            PolicySpec::Default => "default",
            PolicySpec::Forecast(_) => "forecast",
            PolicySpec::Controller(_) => "controller",
        }
    }

    /// The policy, parameters validated.
    pub fn build(self) -> Result<AnyPolicy, InvalidPolicy> {
        Ok(match self {
            PolicySpec::None => AnyPolicy::None(NoSurge),
            PolicySpec::Default => AnyPolicy::Default(DefaultCurve),
            PolicySpec::Forecast(f) => AnyPolicy::Forecast(ForecastAware {
                lead: check_lead(f.lead)?,
            }),
            PolicySpec::Controller(c) => AnyPolicy::Controller(Controller::new(c)?),
        })
    }
}

/// A policy's parameters as an operator writes them (the origin's
/// `[regions.policy]`, an experiment's arm): any left out take the
/// policy's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyParams {
    /// Forecast-aware and controller: how far the ratio leans toward the
    /// forecast, 0..=1.
    pub lead: Option<f64>,
    /// Controller: the unfulfilled share to hold.
    pub target_unfulfilled: Option<f64>,
    /// Controller: the p90 pickup wait to hold, minutes.
    pub target_p90_wait_minutes: Option<f64>,
    /// Controller: the largest relative step of the threshold.
    pub step: Option<f64>,
    /// Controller: the threshold's lowest value.
    pub min_threshold: Option<f64>,
    /// Controller: the threshold's highest value.
    pub max_threshold: Option<f64>,
}

/// Why a named policy with parameters was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidPolicyConfig {
    /// Not a policy name.
    #[error(transparent)]
    Unknown(#[from] UnknownPolicy),
    /// A parameter the policy does not take (refused, not ignored).
    #[error("{param} is not a parameter of the {policy} policy")]
    NotTaken {
        /// The parameter.
        param: &'static str,
        /// The policy.
        policy: &'static str,
    },
    /// A parameter out of range.
    #[error(transparent)]
    Invalid(#[from] InvalidPolicy),
}

impl PolicySpec {
    /// The policy `name` with `params` over its defaults, validated.
    pub fn configure(name: &str, params: &PolicyParams) -> Result<Self, InvalidPolicyConfig> {
        let spec = PolicySpec::parse(name)?;
        let given = [
            ("lead", params.lead.is_some()),
            ("target_unfulfilled", params.target_unfulfilled.is_some()),
            (
                "target_p90_wait_minutes",
                params.target_p90_wait_minutes.is_some(),
            ),
            ("step", params.step.is_some()),
            ("min_threshold", params.min_threshold.is_some()),
            ("max_threshold", params.max_threshold.is_some()),
        ];
        let takes: &[&str] = match spec {
            PolicySpec::None | PolicySpec::Default => &[],
            PolicySpec::Forecast(_) => &["lead"],
            PolicySpec::Controller(_) => &[
                "lead",
                "target_unfulfilled",
                "target_p90_wait_minutes",
                "step",
                "min_threshold",
                "max_threshold",
            ],
        };
        if let Some((param, _)) = given.iter().find(|(p, set)| *set && !takes.contains(p)) {
            return Err(InvalidPolicyConfig::NotTaken {
                param,
                policy: spec.name(),
            });
        }
        let spec = match spec {
            PolicySpec::Forecast(f) => PolicySpec::Forecast(ForecastAware {
                lead: params.lead.unwrap_or(f.lead),
            }),
            PolicySpec::Controller(c) => PolicySpec::Controller(ControllerParams {
                lead: params.lead.unwrap_or(c.lead),
                target_unfulfilled: params.target_unfulfilled.unwrap_or(c.target_unfulfilled),
                target_p90_wait_s: params
                    .target_p90_wait_minutes
                    .map_or(c.target_p90_wait_s, |m| m * 60.0),
                step: params.step.unwrap_or(c.step),
                min_threshold: params.min_threshold.unwrap_or(c.min_threshold),
                max_threshold: params.max_threshold.unwrap_or(c.max_threshold),
                ..c
            }),
            other => other,
        };
        spec.build()?;
        Ok(spec)
    }
}

/// Any configured policy, as one type (a region's pricer holds one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyPolicy {
    /// No surge.
    None(NoSurge),
    /// The default curve.
    Default(DefaultCurve),
    /// Forecast-aware.
    Forecast(ForecastAware),
    /// The controller.
    Controller(Controller),
}

impl AnyPolicy {
    /// The controller's threshold, for metrics (`None` for other policies).
    pub fn threshold(&self) -> Option<f64> {
        match self {
            AnyPolicy::Controller(c) => Some(c.threshold()),
            _ => None,
        }
    }

    /// Continues a controller from a threshold; other policies ignore it.
    pub fn set_threshold(&mut self, threshold: f64) {
        if let AnyPolicy::Controller(c) = self {
            c.set_threshold(threshold);
        }
    }
}

impl Policy for AnyPolicy {
    fn name(&self) -> &str {
        match self {
            AnyPolicy::None(p) => p.name(),
            AnyPolicy::Default(p) => p.name(),
            AnyPolicy::Forecast(p) => p.name(),
            AnyPolicy::Controller(p) => p.name(),
        }
    }

    fn raw(&self, cell: &PolicyInput) -> f64 {
        match self {
            AnyPolicy::None(p) => p.raw(cell),
            AnyPolicy::Default(p) => p.raw(cell),
            AnyPolicy::Forecast(p) => p.raw(cell),
            AnyPolicy::Controller(p) => p.raw(cell),
        }
    }

    fn observe(&mut self, feedback: &Feedback) {
        if let AnyPolicy::Controller(c) = self {
            c.observe(feedback);
        }
    }

    fn persisted(&self) -> Option<f64> {
        match self {
            AnyPolicy::Controller(c) => c.persisted(),
            _ => None,
        }
    }

    fn resume(&mut self, state: f64) {
        if let AnyPolicy::Controller(c) = self {
            c.resume(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surge::{Ahead, Multiplier};

    fn m(t: u16) -> Multiplier {
        Multiplier::from_tenths(t).expect("tenths")
    }

    fn cell(supply: u32, demand: u32, ahead: Option<(f64, f64)>) -> PolicyInput {
        PolicyInput {
            supply,
            demand,
            ahead: ahead.map(|(demand, supply)| Ahead { demand, supply }),
            max: m(50),
        }
    }

    fn feedback(ended: u32, unfulfilled: u32, p90_min: f64) -> Feedback {
        Feedback {
            ended,
            unfulfilled,
            p90_wait_s: Some(p90_min * 60.0),
        }
    }

    #[test]
    fn the_forecast_moves_the_price_before_the_imbalance_forms() {
        let p = ForecastAware::default();
        // Balanced now, three times the drivers' demand expected.
        let now_only = p.raw(&cell(10, 10, None));
        let ahead = p.raw(&cell(10, 10, Some((30.0, 10.0))));
        assert_eq!(now_only, 1.0);
        assert!(ahead > 1.3, "{ahead}");
        // And eases a crowd that is expected to clear.
        let crowd = p.raw(&cell(10, 30, None));
        let clearing = p.raw(&cell(10, 30, Some((5.0, 10.0))));
        assert!(clearing < crowd, "{clearing} vs {crowd}");
        // Lead 0 ignores the forecast.
        let blind = ForecastAware { lead: 0.0 };
        assert_eq!(blind.raw(&cell(10, 10, Some((30.0, 10.0)))), 1.0);
    }

    #[test]
    fn no_driver_is_scarce_but_not_the_maximum() {
        let p = ForecastAware { lead: 0.0 };
        let one_rider = p.raw(&cell(0, 1, None));
        assert!((one_rider - 1.5).abs() < 1e-9, "{one_rider}");
        assert_eq!(p.raw(&cell(0, 0, None)), 1.0);
        assert!(p.raw(&cell(0, 2, None)) <= m(50).as_f64());
    }

    #[test]
    fn the_controller_steps_toward_its_targets_within_bounds() {
        let mut c = Controller::new(ControllerParams::default()).expect("valid");
        assert_eq!(c.threshold(), 1.0);
        // Too few ended requests: no move.
        c.observe(&feedback(3, 3, 20.0));
        assert_eq!(c.threshold(), 1.0);
        // Over target: one bounded step down (more surge).
        c.observe(&feedback(100, 30, 4.0));
        assert!((c.threshold() - 0.95).abs() < 1e-12, "{}", c.threshold());
        // A long p90 wait alone also tightens.
        c.observe(&feedback(100, 0, 9.0));
        assert!(c.threshold() < 0.95);
        // Within the band: holds.
        let held = c.threshold();
        c.observe(&feedback(100, 9, 3.0));
        assert_eq!(c.threshold(), held);
        // Well under both: relaxes, and never past the range.
        for _ in 0..200 {
            c.observe(&feedback(100, 1, 1.0));
        }
        assert_eq!(c.threshold(), 4.0);
        for _ in 0..200 {
            c.observe(&feedback(100, 90, 30.0));
        }
        assert_eq!(c.threshold(), 0.5);
    }

    #[test]
    fn a_lower_threshold_surges_more() {
        let mut c = Controller::new(ControllerParams {
            lead: 0.0,
            ..ControllerParams::default()
        })
        .expect("valid");
        let x = cell(10, 15, None);
        let before = c.raw(&x);
        c.observe(&feedback(100, 50, 10.0));
        assert!(c.raw(&x) > before);
    }

    #[test]
    fn parameters_go_over_the_defaults_and_foreign_ones_are_refused() {
        let p = PolicyParams {
            lead: Some(0.25),
            target_p90_wait_minutes: Some(8.0),
            ..PolicyParams::default()
        };
        match PolicySpec::configure("controller", &p) {
            Ok(PolicySpec::Controller(c)) => {
                assert_eq!(c.lead, 0.25);
                assert_eq!(c.target_p90_wait_s, 480.0);
                assert_eq!(c.step, ControllerParams::default().step);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            PolicySpec::configure("forecast", &p),
            Err(InvalidPolicyConfig::NotTaken {
                param: "target_p90_wait_minutes",
                policy: "forecast"
            })
        );
        assert!(matches!(
            PolicySpec::configure(
                "default",
                &PolicyParams {
                    lead: Some(0.5),
                    ..PolicyParams::default()
                }
            ),
            Err(InvalidPolicyConfig::NotTaken { param: "lead", .. })
        ));
        assert!(matches!(
            PolicySpec::configure(
                "controller",
                &PolicyParams {
                    step: Some(0.9),
                    ..PolicyParams::default()
                }
            ),
            Err(InvalidPolicyConfig::Invalid(InvalidPolicy::Step(_)))
        ));
        assert!(matches!(
            PolicySpec::configure("x", &PolicyParams::default()),
            Err(InvalidPolicyConfig::Unknown(_))
        ));
    }

    #[test]
    fn names_parse_and_bad_parameters_are_refused() {
        for name in POLICY_NAMES {
            assert_eq!(PolicySpec::parse(name).expect("known").name(), name);
            assert!(PolicySpec::parse(name).expect("known").build().is_ok());
        }
        assert!(PolicySpec::parse("surge-everything").is_err());
        let bad = ControllerParams {
            step: 0.9,
            ..ControllerParams::default()
        };
        assert_eq!(
            PolicySpec::Controller(bad).build(),
            Err(InvalidPolicy::Step(0.9))
        );
        assert_eq!(
            PolicySpec::Forecast(ForecastAware { lead: 2.0 }).build(),
            Err(InvalidPolicy::Lead(2.0))
        );
    }
}
