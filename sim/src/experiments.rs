//! Does an experiment design measure the truth? Two policies run three
//! ways on the same scenario: each alone (the truth), as a user split and
//! as a switchback, the arms assigned by the core's
//! [`Experiment::assign`] as the edge assigns them; each design's estimate
//! of the difference in completed trips is set against the truth.
//!
//! **The estimand**: completed trips over the whole scenario if every rider
//! were priced by the treatment, minus if every rider were priced by the
//! control. One seed's truth is the difference of the two standalone runs
//! ([`truth`]); the estimand is its expectation over seeds, estimated by
//! their mean. (A seed's two standalone runs share the fleet's start and
//! the first riders, then their random draws part ways: a seed's truth is
//! one noisy draw, not the counterfactual of that seed's experiment run.)
//!
//! **User split** (50/50; units: riders). Each rider who opens the app is a
//! new user, `rider-n`, so nobody returns; both arms share every driver.
//! The estimate is N·(ȳ_T − ȳ_C): N the riders of the run, ȳ the share of
//! an arm's riders who completed a trip, i.e. trips_T / share_T −
//! trips_C / share_C with the realised shares. Its confidence interval
//! (Welch, normal approximation, 95 %) treats riders as independent units,
//! which is exactly what interference breaks.
//!
//! **Switchback** (50/50 per window; units: windows). The whole region is
//! priced by one arm for a window. The estimate is W·(Ȳ_T − Ȳ_C): W the
//! windows of the scenario, Ȳ the mean completed trips of the riders who
//! arrived in an arm's windows. Windows are assigned independently (a
//! hash per window), so given that both arms occur it is unbiased up to
//! carry-over (drivers placed by one window's prices serve the next).
//! Its interval is Welch's over windows, normal approximation, 95 %; with
//! few windows per arm the normal quantile makes it too narrow.
//!
//! Both arms' pricers see every driver and rider, so each keeps its own
//! engine state over the one market; a controller would be fed the whole
//! region's outcomes, not its arm's, so the comparison uses policies that
//! take no feedback (the default curve and forecast-aware).

use std::fmt::Write as _;

use shared::experiment::{ArmDef, Experiment, ExperimentDef, InvalidExperiment};
use shared::policies::{PolicyParams, PolicySpec};
use shared::surge::SurgeConfig;
use shared::time::Timestamp;

use crate::{Exposure, Outcome, PolicyKind, Scenario, Simulation, UnbuildableArm};

/// The two-sided normal quantile of a 95 % interval: the core's.
pub use shared::experiment::results::Z95;

/// How riders are split between the two arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// Each rider keeps one arm; half the riders in each.
    User,
    /// The region alternates in windows of this many minutes.
    Switchback {
        /// The window's length, minutes.
        window_minutes: u32,
    },
}

impl Design {
    /// How the tables name it.
    pub fn label(self) -> String {
        match self {
            Design::User => "user split".to_string(),
            Design::Switchback { window_minutes } => {
                format!("switchback, {window_minutes} min")
            }
        }
    }
}

/// Why a design could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidDesign {
    /// The core refused the experiment's definition.
    #[error(transparent)]
    Experiment(#[from] InvalidExperiment),
    /// A policy whose parameters an experiment's arm cannot carry (the
    /// arm would run another policy than the standalone run).
    #[error("the {0} policy's parameters cannot be written in an experiment's arm")]
    NotAnArm(&'static str),
    /// An arm's pricer could not be built.
    #[error(transparent)]
    Arm(#[from] UnbuildableArm),
}

/// A policy as an experiment's arm writes it.
fn arm(name: &str, spec: PolicySpec) -> ArmDef {
    let params = match spec {
        PolicySpec::None | PolicySpec::Default => PolicyParams::default(),
        PolicySpec::Forecast(f) => PolicyParams {
            lead: Some(f.lead),
            ..PolicyParams::default()
        },
        PolicySpec::Controller(c) => PolicyParams {
            lead: Some(c.lead),
            target_unfulfilled: Some(c.target_unfulfilled),
            target_p90_wait_minutes: Some(c.target_p90_wait_s / 60.0),
            step: Some(c.step),
            min_threshold: Some(c.min_threshold),
            max_threshold: Some(c.max_threshold),
        },
    };
    ArmDef {
        name: name.to_string(),
        policy: spec.name().to_string(),
        params,
        share_percent: 50,
    }
}

/// The experiment of `design` between `control` (arm 0) and `treatment`
/// (arm 1), half the units each, live over the whole of `scenario` in
/// simulated time, salted by the scenario's seed (each seed a new draw of
/// the assignment).
pub fn experiment(
    design: Design,
    control: PolicySpec,
    treatment: PolicySpec,
    scenario: &Scenario,
) -> Result<Experiment, InvalidDesign> {
    let (split, window_minutes) = match design {
        Design::User => ("user", None),
        Design::Switchback { window_minutes } => ("switchback", Some(window_minutes)),
    };
    let def = ExperimentDef {
        id: "sim-experiment".into(),
        region: "sim".into(),
        arms: vec![arm("control", control), arm("treatment", treatment)],
        split: split.into(),
        window_minutes,
        salt: format!("seed-{}", scenario.seed),
        start_ms: 0,
        end_ms: (scenario.duration_s.max(0.0) * 1_000.0).ceil() as u64 + 1,
        max_completion_drop_points: None,
    };
    let e = Experiment::new(&def)?;
    for (a, spec) in e.arms().iter().zip([control, treatment]) {
        if a.policy != spec {
            return Err(InvalidDesign::NotAnArm(spec.name()));
        }
    }
    Ok(e)
}

/// Each policy alone over the whole scenario (the region's engine
/// settings): (control, treatment). Their difference in completed trips is
/// the seed's truth.
pub fn truth(
    scenario: &Scenario,
    control: PolicySpec,
    treatment: PolicySpec,
) -> (Outcome, Outcome) {
    let alone = |spec: PolicySpec| {
        Simulation::with_spec(
            scenario.clone(),
            PolicyKind::of(&spec),
            spec,
            SurgeConfig::default(),
        )
        .run(|_| {})
    };
    (alone(control), alone(treatment))
}

/// One design's estimate of the treatment's effect on one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The design.
    pub design: Design,
    /// Completed trips over the scenario, treatment minus control, scaled
    /// to every rider (user split) or every window (switchback).
    pub value: f64,
    /// Its standard error (`None`: an arm has fewer than two units).
    pub se: Option<f64>,
    /// Units (riders or windows) in (control, treatment).
    pub units: (usize, usize),
    /// Each arm's completed trips scaled to every unit, (control,
    /// treatment): what the design says everyone-control and
    /// everyone-treatment would complete; `value` is their difference.
    pub arms: (f64, f64),
}

impl Estimate {
    /// The 95 % interval, normal approximation.
    pub fn ci(&self) -> Option<(f64, f64)> {
        self.se
            .map(|se| (self.value - Z95 * se, self.value + Z95 * se))
    }

    /// Whether the interval contains `x` (false without one).
    pub fn covers(&self, x: f64) -> bool {
        self.ci().is_some_and(|(lo, hi)| lo <= x && x <= hi)
    }
}

/// Mean and sample variance.
fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var)
}

/// The arms' means (control, treatment) and Welch's standard error of
/// their difference (`None` when an arm has fewer than two units).
fn welch(control: &[f64], treatment: &[f64]) -> ((f64, f64), Option<f64>) {
    let (mc, vc) = mean_var(control);
    let (mt, vt) = mean_var(treatment);
    let se = (control.len() > 1 && treatment.len() > 1)
        .then(|| (vc / control.len() as f64 + vt / treatment.len() as f64).sqrt());
    ((mc, mt), se)
}

/// The user split's estimate: riders as units, N·(ȳ_T − ȳ_C). Riders the
/// assignment left outside the experiment are not counted.
pub fn user_estimate(exposures: &[Exposure]) -> Estimate {
    let mut arms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for e in exposures {
        if let Some(a @ 0..=1) = e.arm {
            arms[a].push(if e.completed { 1.0 } else { 0.0 });
        }
    }
    let n = (arms[0].len() + arms[1].len()) as f64;
    let ((c, t), se) = welch(&arms[0], &arms[1]);
    Estimate {
        design: Design::User,
        value: n * (t - c),
        se: se.map(|s| n * s),
        units: (arms[0].len(), arms[1].len()),
        arms: (n * c, n * t),
    }
}

/// The arm of every window of a switchback over `duration_s`, from the
/// assignment at each window's start (`None`: not a switchback, or a
/// window outside it).
pub fn window_arms(experiment: &Experiment, duration_s: f64) -> Vec<Option<usize>> {
    let shared::experiment::Split::Switchback { window } = experiment.split() else {
        return Vec::new();
    };
    let window_ms = window.0.max(1);
    let windows = ((duration_s.max(0.0) * 1_000.0) / window_ms as f64).ceil() as u64;
    (0..windows)
        .map(|w| {
            let a = experiment.assign(Timestamp(w * window_ms), None)?;
            experiment.arms().iter().position(|x| x.name == a.arm.name)
        })
        .collect()
}

/// The switchback's estimate: windows as units, W·(Ȳ_T − Ȳ_C), Y a
/// window's completed trips (of the riders who arrived in it).
pub fn switchback_estimate(
    exposures: &[Exposure],
    experiment: &Experiment,
    duration_s: f64,
    window_minutes: u32,
) -> Estimate {
    let arms = window_arms(experiment, duration_s);
    let mut trips = vec![0.0; arms.len()];
    for e in exposures.iter().filter(|e| e.completed) {
        if let Some(t) = trips.get_mut(e.window as usize) {
            *t += 1.0;
        }
    }
    let mut by_arm: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for (arm, y) in arms.iter().zip(&trips) {
        if let Some(a @ 0..=1) = arm {
            by_arm[*a].push(*y);
        }
    }
    let w = arms.len() as f64;
    let ((c, t), se) = welch(&by_arm[0], &by_arm[1]);
    let both = !by_arm[0].is_empty() && !by_arm[1].is_empty();
    Estimate {
        design: Design::Switchback { window_minutes },
        value: if both { w * (t - c) } else { f64::NAN },
        se: se.map(|s| w * s),
        units: (by_arm[0].len(), by_arm[1].len()),
        arms: if both {
            (w * c, w * t)
        } else {
            (f64::NAN, f64::NAN)
        },
    }
}

/// Runs `design` on `scenario`: the estimate, the run's outcome and its
/// riders.
pub fn run_design(
    scenario: &Scenario,
    design: Design,
    control: PolicySpec,
    treatment: PolicySpec,
    progress: impl FnMut(f64),
) -> Result<(Estimate, Outcome, Vec<Exposure>), InvalidDesign> {
    let e = experiment(design, control, treatment, scenario)?;
    let sim = Simulation::with_experiment(scenario.clone(), e.clone(), SurgeConfig::default())?;
    let (outcome, exposures) = sim.run_experiment(progress);
    let estimate = match design {
        Design::User => user_estimate(&exposures),
        Design::Switchback { window_minutes } => {
            switchback_estimate(&exposures, &e, scenario.duration_s, window_minutes)
        }
    };
    Ok((estimate, outcome, exposures))
}

/// One seed: the standalone runs and every design's estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// Completed trips with the control alone.
    pub control_trips: u32,
    /// Completed trips with the treatment alone.
    pub treatment_trips: u32,
    /// Each design's estimate, in the order asked.
    pub estimates: Vec<Estimate>,
    /// Each design's estimate with the control in both arms (an A/A
    /// experiment, whose truth is 0).
    pub aa: Vec<Estimate>,
}

impl SeedRun {
    /// The seed's truth: treatment alone minus control alone.
    pub fn truth(&self) -> f64 {
        f64::from(self.treatment_trips) - f64::from(self.control_trips)
    }
}

/// Runs the truth and every design on `scenario`, and every design as an
/// A/A experiment (the control in both arms); `progress(what, fraction)`
/// during each run.
pub fn run_seed(
    scenario: &Scenario,
    designs: &[Design],
    control: PolicySpec,
    treatment: PolicySpec,
    mut progress: impl FnMut(&str, f64),
) -> Result<SeedRun, InvalidDesign> {
    progress("truth", 0.0);
    let (c, t) = truth(scenario, control, treatment);
    progress("truth", 1.0);
    let mut estimates = Vec::with_capacity(designs.len());
    let mut aa = Vec::with_capacity(designs.len());
    for d in designs {
        let label = d.label();
        let (estimate, _, _) =
            run_design(scenario, *d, control, treatment, |f| progress(&label, f))?;
        estimates.push(estimate);
        let label = format!("A/A, {label}");
        let (estimate, _, _) = run_design(scenario, *d, control, control, |f| progress(&label, f))?;
        aa.push(estimate);
    }
    Ok(SeedRun {
        seed: scenario.seed,
        control_trips: c.completed,
        treatment_trips: t.completed,
        estimates,
        aa,
    })
}

/// The truth over the seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    /// Mean of the seeds' truths: the estimand's estimate.
    pub mean: f64,
    /// Their standard deviation.
    pub sd: f64,
    /// The mean's standard error.
    pub se: f64,
    /// Mean completed trips with the control alone.
    pub control: f64,
    /// Mean completed trips with the treatment alone.
    pub treatment: f64,
}

/// One design over the seeds, against the mean truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The design.
    pub design: Design,
    /// Seeds with an estimate.
    pub seeds: usize,
    /// Mean estimate.
    pub mean: f64,
    /// Mean of (estimate − the seed's truth) = mean estimate − mean truth.
    pub bias: f64,
    /// The bias's standard error over the seeds.
    pub bias_se: f64,
    /// Root mean square of (estimate − mean truth).
    pub rmse: f64,
    /// Standard deviation of the estimates over the seeds.
    pub sd: f64,
    /// Mean of the intervals' half-widths (the design's own claim of its
    /// precision, to set against `sd`).
    pub half_width: f64,
    /// Seeds whose interval contains the mean truth.
    pub covered: usize,
    /// Seeds with an interval.
    pub with_ci: usize,
    /// Mean units per arm (control, treatment).
    pub units: (f64, f64),
    /// Mean of each arm's trips scaled to every unit, (control, treatment).
    pub arms: (f64, f64),
    /// Mean trips of each policy alone over the same seeds, (control,
    /// treatment): with `arms`, where the bias comes from.
    pub alone: (f64, f64),
}

/// The truth and each design's summary over `runs`.
pub fn summarize(runs: &[SeedRun]) -> (Truth, Vec<Summary>) {
    let truths: Vec<f64> = runs.iter().map(SeedRun::truth).collect();
    let (mean, var) = mean_var(&truths);
    let n = runs.len().max(1) as f64;
    let truth = Truth {
        mean,
        sd: var.sqrt(),
        se: (var / n).sqrt(),
        control: runs.iter().map(|r| f64::from(r.control_trips)).sum::<f64>() / n,
        treatment: runs
            .iter()
            .map(|r| f64::from(r.treatment_trips))
            .sum::<f64>()
            / n,
    };
    let designs: Vec<Design> = runs
        .first()
        .map(|r| r.estimates.iter().map(|e| e.design).collect())
        .unwrap_or_default();
    let summaries = designs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pairs: Vec<Paired> = runs
                .iter()
                .filter_map(|r| {
                    let alone = (f64::from(r.control_trips), f64::from(r.treatment_trips));
                    r.estimates.get(i).map(|e| (*e, alone))
                })
                .collect();
            summary(*d, &pairs, mean)
        })
        .collect();
    (truth, summaries)
}

/// Each design's A/A runs over `runs`, against their truth, 0.
pub fn summarize_aa(runs: &[SeedRun]) -> Vec<Summary> {
    let designs: Vec<Design> = runs
        .first()
        .map(|r| r.aa.iter().map(|e| e.design).collect())
        .unwrap_or_default();
    designs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pairs: Vec<Paired> = runs
                .iter()
                .filter_map(|r| {
                    let alone = f64::from(r.control_trips);
                    r.aa.get(i).map(|e| (*e, (alone, alone)))
                })
                .collect();
            summary(*d, &pairs, 0.0)
        })
        .collect()
}

/// An estimate and its seed's trips of (control, treatment) alone.
type Paired = (Estimate, (f64, f64));

/// One design over (estimate, that seed's trips of (control, treatment)
/// alone) pairs, against `estimand`; estimates without a value (one arm
/// only) are left out.
fn summary(design: Design, pairs: &[Paired], estimand: f64) -> Summary {
    let pairs: Vec<&Paired> = pairs.iter().filter(|(e, _)| e.value.is_finite()).collect();
    let values: Vec<f64> = pairs.iter().map(|(e, _)| e.value).collect();
    let errors: Vec<f64> = pairs.iter().map(|(e, (c, t))| e.value - (t - c)).collect();
    let mean_of = |f: &dyn Fn(&Paired) -> f64| {
        pairs.iter().map(|p| f(p)).sum::<f64>() / pairs.len().max(1) as f64
    };
    let (m, v) = mean_var(&values);
    let (bias, bias_var) = mean_var(&errors);
    let k = pairs.len().max(1) as f64;
    let cis: Vec<&Estimate> = pairs
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.se.is_some())
        .collect();
    Summary {
        design,
        seeds: pairs.len(),
        mean: m,
        bias,
        bias_se: (bias_var / k).sqrt(),
        rmse: (values.iter().map(|x| (x - estimand).powi(2)).sum::<f64>() / k).sqrt(),
        sd: v.sqrt(),
        half_width: cis.iter().filter_map(|e| e.se).sum::<f64>() * Z95 / cis.len().max(1) as f64,
        covered: cis.iter().filter(|e| e.covers(estimand)).count(),
        with_ci: cis.len(),
        units: (
            mean_of(&|(e, _)| e.units.0 as f64),
            mean_of(&|(e, _)| e.units.1 as f64),
        ),
        arms: (mean_of(&|(e, _)| e.arms.0), mean_of(&|(e, _)| e.arms.1)),
        alone: (mean_of(&|(_, a)| a.0), mean_of(&|(_, a)| a.1)),
    }
}

/// Where each design's bias comes from (Markdown): each arm's trips
/// scaled to every unit against the same policy alone, means over the
/// seeds with an estimate.
pub fn arms_table(summaries: &[Summary]) -> String {
    let mut s = String::from(
        "| design | everyone control: the control arm scaled up / the control alone | difference | everyone treatment: the treatment arm scaled up / the treatment alone | difference |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for x in summaries {
        let _ = writeln!(
            s,
            "| {} | {:.0} / {:.0} | {:+.0} | {:.0} / {:.0} | {:+.0} |",
            x.design.label(),
            x.arms.0,
            x.alone.0,
            x.arms.0 - x.alone.0,
            x.arms.1,
            x.alone.1,
            x.arms.1 - x.alone.1,
        );
    }
    s
}

/// The A/A table (Markdown): the same policy in both arms, truth 0.
pub fn aa_table(summaries: &[Summary]) -> String {
    let mut s = String::from(
        "| design | seeds with an estimate | mean estimate | spread of the estimates (SD) | the interval's claimed half-width | interval covers 0 |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for x in summaries {
        let _ = writeln!(
            s,
            "| {} | {} | {:+.0} | {:.0} | ± {:.0} | {} of {} |",
            x.design.label(),
            x.seeds,
            x.mean,
            x.sd,
            x.half_width,
            x.covered,
            x.with_ci,
        );
    }
    s
}

/// The summary table (Markdown).
pub fn table(truth: &Truth, summaries: &[Summary]) -> String {
    let mut s = String::from(
        "| design | units per arm (control / treatment) | mean estimate | bias (± its SE) | RMSE | spread of the estimates (SD) | the interval's claimed half-width | interval covers the truth |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let _ = writeln!(
        s,
        "| truth (each policy alone) | — | {:+.0} | — | — | {:.0} (one seed's truth) | — | — |",
        truth.mean, truth.sd
    );
    for x in summaries {
        let unit = match x.design {
            Design::User => "riders",
            Design::Switchback { .. } => "windows",
        };
        let _ = writeln!(
            s,
            "| {} | {:.1} / {:.1} {unit} | {:+.0} | {:+.0} (± {:.0}) | {:.0} | {:.0} | ± {:.0} | {} of {} |",
            x.design.label(),
            x.units.0,
            x.units.1,
            x.mean,
            x.bias,
            x.bias_se,
            x.rmse,
            x.sd,
            x.half_width,
            x.covered,
            x.with_ci,
        );
    }
    s
}

/// Every seed's truth and estimates with their intervals (Markdown).
pub fn seed_table(runs: &[SeedRun]) -> String {
    let Some(first) = runs.first() else {
        return String::new();
    };
    let mut s = String::from("| seed | control alone | treatment alone | truth |");
    let mut rule = String::from("| --- | --- | --- | --- |");
    for e in &first.estimates {
        let _ = write!(s, " {} |", e.design.label());
        rule.push_str(" --- |");
    }
    let _ = writeln!(s, "\n{rule}");
    for r in runs {
        let _ = write!(
            s,
            "| {} | {} | {} | {:+.0} |",
            r.seed,
            r.control_trips,
            r.treatment_trips,
            r.truth()
        );
        for e in &r.estimates {
            match e.ci() {
                Some((lo, hi)) if e.value.is_finite() => {
                    let _ = write!(s, " {:+.0} [{lo:+.0}, {hi:+.0}] |", e.value);
                }
                _ if e.value.is_finite() => {
                    let _ = write!(s, " {:+.0} (no interval) |", e.value);
                }
                _ => s.push_str(" one arm only |"),
            }
        }
        s.push('\n');
    }
    s
}

/// What the numbers say, sentence by sentence, from the numbers alone:
/// the truth, then each design's bias, error and intervals against it,
/// then the A/A runs (`hours`: the scenario's length).
pub fn findings(truth: &Truth, summaries: &[Summary], aa: &[Summary], hours: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- **The truth**: {:+.0} completed trips over the evening ({:.0} with the treatment alone against {:.0} with the control; {:+.0} an hour), ± {:.0} (the standard error of the mean over the seeds; one seed's truth varies by {:.0}).",
        truth.mean,
        truth.treatment,
        truth.control,
        truth.mean / hours.max(f64::MIN_POSITIVE),
        truth.se,
        truth.sd,
    );
    for x in summaries {
        if x.seeds == 0 {
            let _ = writeln!(
                s,
                "- **{}**: no seed put windows in both arms.",
                upper_first(&x.design.label())
            );
            continue;
        }
        let bias = if x.seeds < 2 {
            format!(
                "one seed with an estimate, {:+.0} from its truth: too few to tell bias",
                x.bias
            )
        } else if x.bias.abs() > 2.0 * x.bias_se {
            format!(
                "biased: {:+.0} trips on average ({:+.0} % of the truth, more than twice its standard error of {:.0})",
                x.bias,
                100.0 * x.bias / truth.mean.abs().max(1.0),
                x.bias_se
            )
        } else {
            format!(
                "no bias these seeds can tell from noise ({:+.0} ± {:.0} trips)",
                x.bias, x.bias_se
            )
        };
        let claim = if x.half_width >= 0.8 * Z95 * x.sd {
            "about as wide as the estimates' real spread or wider"
        } else {
            "narrower than the estimates' real spread"
        };
        let _ = writeln!(
            s,
            "- **{}**: {bias}; RMSE {:.0} trips ({:.1} times the truth's size); its intervals (± {:.0} on average) are {claim} (1.96 × SD = ± {:.0}) and contain the truth on {} of {} seeds ({:.0} %, nominal 95 %).",
            upper_first(&x.design.label()),
            x.rmse,
            x.rmse / truth.mean.abs().max(1.0),
            x.half_width,
            Z95 * x.sd,
            x.covered,
            x.with_ci,
            100.0 * x.covered as f64 / x.with_ci.max(1) as f64,
        );
    }
    let user = summaries
        .iter()
        .find(|x| x.design == Design::User && x.seeds > 0);
    let switchbacks: Vec<&Summary> = summaries
        .iter()
        .filter(|x| matches!(x.design, Design::Switchback { .. }) && x.seeds > 0)
        .collect();
    if let (Some(u), Some(first), Some(last)) = (user, switchbacks.first(), switchbacks.last()) {
        let (lo, hi) = switchbacks
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x.sd), b.max(x.sd)));
        if lo > u.sd {
            let _ = writeln!(
                s,
                "- The switchbacks are noisier: their estimates spread by {lo:.0} to {hi:.0} trips (SD over the seeds) against the user split's {:.0}. Their units are at most a few dozen windows of very unequal size (the concert's windows hold far more riders than the others), where the user split has over a thousand riders an arm.",
                u.sd
            );
        }
        let by_window: Vec<String> = switchbacks
            .iter()
            .map(|x| match x.design {
                Design::Switchback { window_minutes } => {
                    format!("{window_minutes} min {:+.0}", x.bias)
                }
                Design::User => format!("{:+.0}", x.bias),
            })
            .collect();
        let shrinking = switchbacks.windows(2).all(|p| p[1].bias < p[0].bias);
        let spreading = switchbacks.windows(2).all(|p| p[1].sd > p[0].sd);
        if switchbacks.len() > 1 && shrinking && spreading {
            let _ = writeln!(
                s,
                "- The switchback's bias shrinks as its windows grow ({}) while its spread grows: the trade a switchback makes. Carry-over would do this: drivers that one window's prices drew online or toward the venue serve the next window too, and the longer the window, the smaller the share of it so affected.",
                by_window.join(", ")
            );
        } else if switchbacks.len() > 1 {
            let _ = writeln!(
                s,
                "- The switchback's bias by window: {} (SD {:.0} to {:.0}).",
                by_window.join(", "),
                first.sd,
                last.sd
            );
        }
        if u.seeds > 1 && u.bias.abs() > 2.0 * u.bias_se {
            let _ = writeln!(
                s,
                "- The user split's estimates vary least and its RMSE ({:.0}) is {} the switchbacks', but it is biased, so its interval, sized for noise alone, contains the truth on {} of {} seeds.",
                u.rmse,
                if switchbacks.iter().all(|x| x.rmse >= u.rmse) {
                    "below all"
                } else {
                    "not below all"
                },
                u.covered,
                u.with_ci
            );
        }
    }
    let coverage: Vec<String> = aa
        .iter()
        .map(|x| {
            format!(
                "{} {} of {} (mean {:+.0})",
                x.design.label(),
                x.covered,
                x.with_ci,
                x.mean
            )
        })
        .collect();
    if !coverage.is_empty() {
        let _ = writeln!(
            s,
            "- **A/A** (the control in both arms, truth 0): the intervals contain 0 on {}.",
            coverage.join("; ")
        );
    }
    s
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The whole page (Markdown): how the comparison was made, the summary,
/// what the numbers say, the A/A runs and every seed's estimates;
/// `command` made it.
pub fn report(runs: &[SeedRun], scenario: &Scenario, command: &str) -> String {
    let (truth, summaries) = summarize(runs);
    let aa = summarize_aa(runs);
    let hours = scenario.duration_s / 3_600.0;
    let seeds = match (runs.first(), runs.last()) {
        (Some(a), Some(b)) => format!("seeds {}–{}", a.seed, b.seed),
        _ => "no seeds".to_string(),
    };
    let mut s = format!(
        "# Does an experiment measure the truth?\n\n\
         Made by `{command}` ({seeds}, each a new draw of the evening and of the \
         assignment): the concert evening ({hours:.0} hours, `sim::Scenario::concert`), \
         the control the default curve, the treatment forecast-aware (lead 0.75), the \
         outcome completed trips over the evening. Code: `sim/src/experiments.rs`; \
         chart: `experiments.svg`.\n\n\
         ## Three ways to run the same two policies\n\n\
         - **Truth**: each policy alone over the whole evening. The estimand is the \
         completed trips if every rider were priced by the treatment minus if every \
         rider were priced by the control. A seed's truth is the difference of its two \
         standalone runs, and the estimand is estimated by their mean over the seeds \
         (the two runs share the fleet's start, then their random draws part ways, so \
         a seed's truth is one noisy draw, not the counterfactual of that seed's \
         experiment).\n\
         - **User split, 50/50**: each rider who opens the app is a new user \
         (`rider-n`; nobody returns) whose arm is the core's \
         `Experiment::assign(now, Some(user))`, and who is quoted by that arm's \
         pricer. Both arms' riders are matched with the same drivers; drivers see the \
         two arms' multipliers averaged by share (the fare they can expect from the \
         next rider in a cell). Estimate: N·(ȳ_T − ȳ_C), N the riders of the run and ȳ \
         the share of an arm's riders who completed a trip, i.e. trips_T / share_T − \
         trips_C / share_C with the realised shares. Interval: Welch, normal \
         approximation, 95 %, riders as independent units, which ignores interference: \
         the point of the comparison.\n\
         - **Switchback, 50/50 per window**: the whole region's arm for a window is \
         `Experiment::assign(now, None)`; riders and drivers see that arm's prices. \
         Estimate: W·(Ȳ_T − Ȳ_C), W the windows of the evening and Ȳ the mean completed \
         trips of the riders who arrived in an arm's windows. Windows are assigned \
         independently (a hash per window), so given the number of windows in each arm \
         this is unbiased, but for carry-over: drivers drawn online or moved by one \
         window's prices serve the next. A seed whose windows all fell in one arm has \
         no estimate. Interval: Welch over windows, normal approximation, 95 % (with \
         three windows an arm the normal quantile is too small; Student's t would be \
         wider).\n\n\
         In both experiments each arm has its own pricer fed every driver report and \
         rider (the same market), so each keeps its own smoothing and forecasts; the \
         rider's arm picks which one quotes them, and the quoted multiplier is the one \
         they accept or decline. Neither policy takes feedback; a controller arm would \
         be fed the whole region's outcomes, not its arm's, and is not modelled here.\n\n\
         ## Over the seeds\n\n\
         Bias is the mean of (estimate − the seed's truth); RMSE and coverage are \
         against the mean truth.\n\n{}\n\
         ## What the numbers say\n\n{}\n\
         ## Where the bias comes from\n\n\
         An estimate is the treatment arm's trips scaled up to every unit minus the \
         control arm's. Without interference or carry-over each would match its \
         policy alone on average (means over the seeds with an estimate):\n\n{}\n\
         ## A/A: the default curve in both arms\n\n\
         The same designs with the control in both arms: the truth is 0, there is no \
         interference to find, so this checks the machinery and the intervals \
         themselves.\n\n{}\n\
         ## Every seed\n\n\
         Estimates with their 95 % intervals, completed trips over the evening.\n\n{}",
        table(&truth, &summaries),
        findings(&truth, &summaries, &aa, hours),
        arms_table(&summaries),
        aa_table(&aa),
        seed_table(runs),
    );
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// A chart, one panel per design: each seed's estimate with its interval
/// (blue when the interval contains the mean truth, red when not), each
/// seed's truth (grey ticks) and the mean truth (dashed line).
pub fn svg(runs: &[SeedRun]) -> String {
    let (truth, summaries) = summarize(runs);
    let (w, pad, panel_h, gap, top) = (760.0, 60.0, 150.0, 34.0, 56.0);
    let h = top + summaries.len() as f64 * (panel_h + gap) + 30.0;
    // The range of the points; intervals beyond it are cut at the edge.
    let mut lo = truth.mean.min(0.0);
    let mut hi = truth.mean.max(0.0);
    for r in runs {
        lo = lo.min(r.truth());
        hi = hi.max(r.truth());
        for e in r.estimates.iter().filter(|e| e.value.is_finite()) {
            lo = lo.min(e.value);
            hi = hi.max(e.value);
        }
    }
    let step = nice_step((hi - lo) / 4.0);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let slot = (w - 2.0 * pad) / runs.len().max(1) as f64;
    let sx = |i: usize| pad + (i as f64 + 0.5) * slot;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"20\" font-size=\"14\">Each experiment's estimate of the effect on completed trips, per seed, against the truth</text>\n\
         <text x=\"{pad}\" y=\"36\" fill=\"#555\">dots: estimates (blue: the 95 % interval, the bar, contains the truth; red: not; grey: no interval)</text>\n\
         <text x=\"{pad}\" y=\"50\" fill=\"#555\">grey ticks: each seed's truth; dashed line: the truth (mean of the seeds), {:+.0} trips</text>\n",
        truth.mean
    );
    for (k, x) in summaries.iter().enumerate() {
        let y0 = top + gap + k as f64 * (panel_h + gap);
        let sy = |y: f64| y0 + panel_h - (y - lo) / (hi - lo).max(1.0) * panel_h;
        let _ = writeln!(
            s,
            "<text x=\"{pad}\" y=\"{:.1}\" font-size=\"12\">{}: bias {:+.0}, RMSE {:.0}, interval contains the truth on {} of {} seeds</text>\n\
             <line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{pad}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
             <line x1=\"{pad}\" y1=\"{z:.1}\" x2=\"{r}\" y2=\"{z:.1}\" stroke=\"#bbb\"/>\n\
             <line x1=\"{pad}\" y1=\"{t:.1}\" x2=\"{r}\" y2=\"{t:.1}\" stroke=\"black\" stroke-dasharray=\"6 3\"/>",
            y0 - 8.0,
            x.design.label(),
            x.bias,
            x.rmse,
            x.covered,
            x.with_ci,
            y0,
            y0 + panel_h,
            r = w - pad,
            z = sy(0.0),
            t = sy(truth.mean),
        );
        let mut y = lo;
        while y <= hi + step / 2.0 {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.0}</text>",
                pad - 6.0,
                sy(y) + 4.0
            );
            y += step;
        }
        for (i, run) in runs.iter().enumerate() {
            let cx = sx(i);
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#999\" stroke-width=\"2\"/>",
                cx - slot * 0.4,
                cx + slot * 0.4,
                ty = sy(run.truth()),
            );
            let Some(e) = run.estimates.get(k).filter(|e| e.value.is_finite()) else {
                continue;
            };
            let color = if e.se.is_none() {
                "#888"
            } else if e.covers(truth.mean) {
                "#2471a3"
            } else {
                "#c0392b"
            };
            if let Some((a, b)) = e.ci() {
                let _ = writeln!(
                    s,
                    "<line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-opacity=\"0.35\"/>",
                    sy(a.max(lo)),
                    sy(b.min(hi))
                );
            }
            let _ = writeln!(
                s,
                "<circle cx=\"{cx:.1}\" cy=\"{:.1}\" r=\"2.5\" stroke=\"{color}\" fill=\"{}\"><title>seed {}, {}: {:+.0} (truth {:+.0})</title></circle>",
                sy(e.value),
                color,
                run.seed,
                e.design.label(),
                e.value,
                run.truth(),
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seeds {}, in order</text>",
        w / 2.0,
        h - 10.0,
        match (runs.first(), runs.last()) {
            (Some(a), Some(b)) => format!("{}–{}", a.seed, b.seed),
            _ => String::new(),
        }
    );
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `x`.
fn nice_step(x: f64) -> f64 {
    let x = x.max(1.0);
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= x)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_is_the_difference_of_means_with_its_standard_error() {
        let ((c, t), se) = welch(&[1.0, 2.0, 3.0], &[4.0, 6.0]);
        assert!((c - 2.0).abs() < 1e-12 && (t - 5.0).abs() < 1e-12);
        // var 1/3 + var 2/2 = 1/3 + 1.
        let se = se.expect("two units each");
        assert!((se - (1.0_f64 / 3.0 + 1.0).sqrt()).abs() < 1e-12);
        assert_eq!(welch(&[1.0], &[2.0, 3.0]).1, None);
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(37.0), 50.0);
        assert_eq!(nice_step(120.0), 200.0);
        assert_eq!(nice_step(0.2), 1.0);
    }
}
