//! The experiment machinery: riders get the arm the core assigns and the
//! price of that arm; an A/A experiment is the standalone run itself; each
//! design's estimate is what its units say.

use std::collections::BTreeMap;

use shared::policies::{ControllerParams, PolicySpec};
use shared::surge::{Multiplier, SurgeConfig};
use sim::experiments::{self, Design, InvalidDesign};
use sim::{PolicyKind, Scenario, Simulation};

const SWITCHBACK: Design = Design::Switchback { window_minutes: 5 };

fn short() -> Scenario {
    Scenario::short(11, 60.0)
}

fn spec(kind: PolicyKind) -> PolicySpec {
    kind.spec().0
}

/// Runs `design` step by step, so the requests can be read at the end.
fn stepped(design: Design, control: PolicyKind, treatment: PolicyKind) -> Simulation {
    let s = short();
    let e = experiments::experiment(design, spec(control), spec(treatment), &s).expect("valid");
    let mut sim = Simulation::with_experiment(s, e, SurgeConfig::default()).expect("pricers");
    while !sim.done() {
        sim.step();
    }
    sim
}

#[test]
fn an_a_a_experiment_is_the_standalone_run_and_its_interval_contains_zero() {
    let s = short();
    let alone = Simulation::new(s.clone(), PolicyKind::Default).run(|_| {});
    let default = spec(PolicyKind::Default);
    for design in [Design::User, SWITCHBACK] {
        let (estimate, outcome, exposures) =
            experiments::run_design(&s, design, default, default, |_| {}).expect("runs");
        // Two identical pricers over one market quote what one would: the
        // same riders, prices and trips as the policy alone.
        assert_eq!(outcome, alone, "{design:?}");
        assert_eq!(exposures.len() as u32, alone.riders);
        let (c, t) = estimate.units;
        assert!(c > 1 && t > 1, "{design:?}: both arms have units");
        let (lo, hi) = estimate.ci().expect("an interval");
        assert!(lo <= 0.0 && 0.0 <= hi, "{design:?}: {estimate:?}");
        // The same seed assigns the same riders to the same arms.
        let (again, _, exposures_again) =
            experiments::run_design(&s, design, default, default, |_| {}).expect("runs");
        assert_eq!(again, estimate);
        assert_eq!(exposures_again, exposures);
    }
}

#[test]
fn a_switchback_window_is_one_arm_and_both_arms_occur() {
    let sim = stepped(SWITCHBACK, PolicyKind::Default, PolicyKind::Forecast);
    let e = sim.experiment().expect("an experiment");
    let planned = experiments::window_arms(e, sim.scenario().duration_s);
    assert_eq!(planned.len(), 12, "an hour of 5-minute windows");
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for x in sim.exposures() {
        let arm = x.arm.expect("every rider is in the experiment");
        assert_eq!(x.window, (x.at / 300.0) as u64, "the window of the moment");
        let first = *seen.entry(x.window).or_insert(arm);
        assert_eq!(first, arm, "window {} has one arm", x.window);
        assert_eq!(planned[x.window as usize], Some(arm));
    }
    assert_eq!(seen.len(), 12, "riders in every window");
    assert!(seen.values().any(|a| *a == 0) && seen.values().any(|a| *a == 1));
}

#[test]
fn a_user_split_puts_half_the_riders_in_each_arm_at_every_moment() {
    let sim = stepped(Design::User, PolicyKind::Default, PolicyKind::Forecast);
    let riders = sim.exposures();
    assert!(riders.len() > 300, "{} riders", riders.len());
    let treated = riders.iter().filter(|x| x.arm == Some(1)).count();
    let share = treated as f64 / riders.len() as f64;
    assert!((0.42..=0.58).contains(&share), "treated share {share:.2}");
    for window in 0..6 {
        let arms: Vec<usize> = riders
            .iter()
            .filter(|x| (x.at / 600.0) as u64 == window)
            .filter_map(|x| x.arm)
            .collect();
        assert!(
            arms.contains(&0) && arms.contains(&1),
            "both arms in the 10 minutes from minute {}",
            window * 10
        );
    }
}

#[test]
fn a_rider_is_quoted_the_price_of_their_own_arm() {
    for design in [Design::User, SWITCHBACK] {
        // Control without surge, treatment the default curve: a control
        // rider can only see 1.0.
        let sim = stepped(design, PolicyKind::None, PolicyKind::Default);
        let mut surged = 0;
        for x in sim.exposures() {
            match x.arm {
                Some(0) => assert_eq!(x.multiplier, Multiplier::ONE, "{design:?}: {x:?}"),
                Some(_) => surged += usize::from(x.multiplier > Multiplier::ONE),
                None => panic!("a rider outside the experiment: {x:?}"),
            }
            if let Some(r) = x.request {
                let request = &sim.requests[r];
                assert_eq!(request.multiplier, x.multiplier, "accepted what was quoted");
                assert_eq!(request.at, x.at);
            }
        }
        assert!(
            surged > 0,
            "{design:?}: the treatment surged during the spike"
        );
    }
}

#[test]
fn the_estimates_add_up_to_the_run_and_the_truth_to_the_standalone_runs() {
    let s = short();
    let (control, treatment) = (spec(PolicyKind::Default), spec(PolicyKind::Forecast));
    let (c, t) = experiments::truth(&s, control, treatment);
    assert_eq!(
        c,
        Simulation::new(s.clone(), PolicyKind::Default).run(|_| {})
    );
    assert_eq!(
        t,
        Simulation::new(s.clone(), PolicyKind::Forecast).run(|_| {})
    );
    let run = experiments::run_seed(
        &s,
        &[Design::User, SWITCHBACK],
        control,
        treatment,
        |_, _| {},
    )
    .expect("runs");
    assert_eq!(run.truth(), f64::from(t.completed) - f64::from(c.completed));
    assert_eq!(run.estimates.len(), 2);
    assert_eq!(run.aa.len(), 2);
    for design in [Design::User, SWITCHBACK] {
        let (estimate, outcome, exposures) =
            experiments::run_design(&s, design, control, treatment, |_| {}).expect("runs");
        assert!((estimate.value - (estimate.arms.1 - estimate.arms.0)).abs() < 1e-9);
        let trips = exposures.iter().filter(|x| x.completed).count();
        assert_eq!(trips as u32, outcome.completed, "{design:?}");
        assert_eq!(
            estimate.units.0 + estimate.units.1,
            match design {
                Design::User => exposures.len(),
                Design::Switchback { .. } => 12,
            }
        );
        // By hand: the user split scales the difference of completion
        // shares to every rider.
        if design == Design::User {
            let arm = |a: usize| {
                let xs: Vec<&sim::Exposure> =
                    exposures.iter().filter(|x| x.arm == Some(a)).collect();
                xs.iter().filter(|x| x.completed).count() as f64 / xs.len() as f64
            };
            let by_hand = exposures.len() as f64 * (arm(1) - arm(0));
            assert!((estimate.value - by_hand).abs() < 1e-9);
        }
    }
}

#[test]
fn a_policy_an_arm_cannot_carry_is_refused() {
    let odd = PolicySpec::Controller(ControllerParams {
        min_ended: 3,
        ..ControllerParams::default()
    });
    let refused = experiments::experiment(Design::User, spec(PolicyKind::Default), odd, &short());
    assert_eq!(refused, Err(InvalidDesign::NotAnArm("controller")));
}
