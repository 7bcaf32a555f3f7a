//! An experiment's results per arm, with confidence intervals that respect
//! its design, and its guardrail.
//!
//! The origin stores what happened to every quote priced in an arm (the
//! price check, then its booking's transitions: [`ArmEvent`]) and asks
//! [`results`] for the table; no I/O here.
//!
//! # Intervals
//!
//! Every interval is a 95 % normal interval (±1.96 standard errors).
//!
//! * **Switchback**: the unit is the window. Riders within a window share
//!   drivers and one policy, so their outcomes are not independent.
//! * **User split**: the unit is the rider (a hash of the user id): a
//!   rider's repeated price checks and bookings are not independent. The
//!   interval still ignores interference — riders of both arms compete for
//!   the same drivers — which is exactly the bias a switchback avoids
//!   (`docs/simulation/experiments.md` measures it).
//!
//! Every event counts in the unit its quote was priced in (signed into the
//! quote with its arm and copied into its booking), so a booking completed
//! in the next window still counts in its quote's. Each metric is a ratio
//! of per-unit sums (conversion = Σ confirmed / Σ quotes over the arm's
//! units) with the cluster-robust variance of a ratio estimator:
//! `var(R) = Σ (y_u − R·x_u)² / (n (n−1) x̄²)` over the arm's `n` units.
//! Fewer than two units give no interval.
//!
//! A difference from the control ([`Compared`]) has the interval of two
//! independent estimates: `±1.96 √(se_arm² + se_control²)`.

use std::collections::BTreeMap;

use crate::quote::Ident;
use crate::time::Timestamp;

use super::Experiment;

/// z for a two-sided 95 % interval (the one value; the simulator's
/// judgements of designs use it too).
pub const Z95: f64 = 1.96;

/// Bookings that must have ended in every arm before the guardrail judges.
pub const GUARDRAIL_MIN_ENDED: u64 = 30;

/// What happened to a quote priced in an arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArmEventKind {
    /// A price check.
    Quote,
    /// Its booking was confirmed.
    Confirmed,
    /// The trip started.
    Started,
    /// The trip completed.
    Completed,
    /// The booking was cancelled.
    Cancelled,
    /// No driver was found.
    Failed,
}

impl ArmEventKind {
    /// Every kind.
    pub const ALL: [ArmEventKind; 6] = [
        Self::Quote,
        Self::Confirmed,
        Self::Started,
        Self::Completed,
        Self::Cancelled,
        Self::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quote => "quote",
            Self::Confirmed => "confirmed",
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a booking ends with it.
    pub fn ends(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }
}

/// One stored event of an arm.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmEvent {
    /// The arm.
    pub arm: Ident,
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: ArmEventKind,
    /// The multiplier quoted.
    pub multiplier: f64,
    /// Completed: the fare paid, minor units.
    pub fare_minor: Option<u64>,
    /// Started or completed: ms from confirmation to pickup.
    pub wait_ms: Option<u64>,
    /// The unit of analysis its quote was priced in
    /// ([`super::Assignment::unit`]).
    pub unit: u64,
}

/// A point estimate with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its standard error, when the units allow one.
    pub se: Option<f64>,
    /// Units it rests on (windows in a switchback; riders in a
    /// user split).
    pub units: u64,
}

impl Estimate {
    /// The interval's low end.
    pub fn low(&self) -> Option<f64> {
        self.se.map(|se| self.value - Z95 * se)
    }

    /// The interval's high end.
    pub fn high(&self) -> Option<f64> {
        self.se.map(|se| self.value + Z95 * se)
    }
}

/// An arm's estimate against the control's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compared {
    /// Arm minus control.
    pub difference: f64,
    /// Its standard error, when both have one.
    pub se: Option<f64>,
}

impl Compared {
    /// Of an arm's estimate and the control's.
    pub fn of(arm: &Estimate, control: &Estimate) -> Self {
        Self {
            difference: arm.value - control.value,
            se: arm.se.zip(control.se).map(|(a, c)| (a * a + c * c).sqrt()),
        }
    }

    /// The interval's low end.
    pub fn low(&self) -> Option<f64> {
        self.se.map(|se| self.difference - Z95 * se)
    }

    /// The interval's high end.
    pub fn high(&self) -> Option<f64> {
        self.se.map(|se| self.difference + Z95 * se)
    }
}

/// One arm's results.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmResult {
    /// The arm.
    pub arm: Ident,
    /// Price checks.
    pub quotes: u64,
    /// Bookings confirmed.
    pub confirmed: u64,
    /// Trips completed.
    pub completed: u64,
    /// Bookings cancelled.
    pub cancelled: u64,
    /// Bookings failed (no driver).
    pub failed: u64,
    /// Revenue of completed trips, minor units.
    pub revenue_minor: u64,
    /// Confirmed per quote.
    pub conversion: Option<Estimate>,
    /// Completed per ended booking.
    pub completion: Option<Estimate>,
    /// Fare per completed trip, minor units.
    pub fare: Option<Estimate>,
    /// Revenue per quote, minor units: what a price check brings in.
    pub revenue_per_quote: Option<Estimate>,
    /// Minutes from confirmation to pickup.
    pub wait_minutes: Option<Estimate>,
    /// Mean multiplier quoted.
    pub multiplier: Option<Estimate>,
}

/// Per-unit sums of one metric: unit → (denominator, numerator).
pub type Units = BTreeMap<u64, (f64, f64)>;

/// The ratio Σy / Σx over units with its cluster-robust standard error
/// (the estimator of every metric here, and of an arm's volatility in
/// [`crate::arms`]).
pub fn ratio(units: &Units) -> Option<Estimate> {
    let n = units.len();
    let (sx, sy) = units
        .values()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    if sx <= 0.0 {
        return None;
    }
    let r = sy / sx;
    let se = (n >= 2).then(|| {
        let xbar = sx / n as f64;
        let ss: f64 = units.values().map(|(x, y)| (y - r * x).powi(2)).sum();
        (ss / (n as f64 * (n as f64 - 1.0) * xbar * xbar)).sqrt()
    });
    Some(Estimate {
        value: r,
        se,
        units: n as u64,
    })
}

/// Adds `(x, y)` to a unit.
pub fn add(units: &mut Units, unit: u64, x: f64, y: f64) {
    let e = units.entry(unit).or_insert((0.0, 0.0));
    e.0 += x;
    e.1 += y;
}

/// An arm's events of one kind in one unit, summed: what the store reads
/// for an experiment's results (one row per arm, unit and kind, however
/// many events).
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// The arm.
    pub arm: Ident,
    /// The unit ([`super::Assignment::unit`]).
    pub unit: u64,
    /// What happened.
    pub kind: ArmEventKind,
    /// How many times.
    pub count: u64,
    /// Σ multiplier quoted.
    pub multiplier_sum: f64,
    /// Σ fare paid, minor units.
    pub fare_sum: u64,
    /// Σ wait, ms, over the events that report one.
    pub wait_ms_sum: u64,
    /// Events that report a wait.
    pub waits: u64,
}

/// Sums events into tallies (what the store's `GROUP BY` does).
pub fn tally(events: &[ArmEvent]) -> Vec<Tally> {
    let mut by: BTreeMap<(Ident, u64, ArmEventKind), Tally> = BTreeMap::new();
    for e in events {
        let t = by
            .entry((e.arm.clone(), e.unit, e.kind))
            .or_insert_with(|| Tally {
                arm: e.arm.clone(),
                unit: e.unit,
                kind: e.kind,
                count: 0,
                multiplier_sum: 0.0,
                fare_sum: 0,
                wait_ms_sum: 0,
                waits: 0,
            });
        t.count += 1;
        t.multiplier_sum += e.multiplier;
        t.fare_sum = t.fare_sum.saturating_add(e.fare_minor.unwrap_or(0));
        if let Some(w) = e.wait_ms {
            t.wait_ms_sum = t.wait_ms_sum.saturating_add(w);
            t.waits += 1;
        }
    }
    by.into_values().collect()
}

/// The results of every arm (the control first) from its tallies. Tallies
/// of arms the experiment does not have are ignored.
pub fn results(experiment: &Experiment, tallies: &[Tally]) -> Vec<ArmResult> {
    experiment
        .arms()
        .iter()
        .map(|arm| {
            let mut r = ArmResult {
                arm: arm.name.clone(),
                quotes: 0,
                confirmed: 0,
                completed: 0,
                cancelled: 0,
                failed: 0,
                revenue_minor: 0,
                conversion: None,
                completion: None,
                fare: None,
                revenue_per_quote: None,
                wait_minutes: None,
                multiplier: None,
            };
            // Metric → units: every event counts in the unit its quote
            // was priced in (signed into the quote with its arm): a
            // switchback's window, a user split's rider.
            let (mut conv, mut comp, mut fare, mut wait, mut mult, mut rpq) = (
                Units::new(),
                Units::new(),
                Units::new(),
                Units::new(),
                Units::new(),
                Units::new(),
            );
            for t in tallies.iter().filter(|t| t.arm == arm.name) {
                let (unit, n) = (t.unit, t.count as f64);
                match t.kind {
                    ArmEventKind::Quote => {
                        r.quotes += t.count;
                        add(&mut mult, unit, n, t.multiplier_sum);
                        add(&mut conv, unit, n, 0.0);
                        add(&mut rpq, unit, n, 0.0);
                    }
                    ArmEventKind::Confirmed => {
                        r.confirmed += t.count;
                        add(&mut conv, unit, 0.0, n);
                    }
                    ArmEventKind::Started => {
                        // A trip's wait is reported when it starts (and
                        // again at completion): counted once, here.
                        if t.waits > 0 {
                            add(
                                &mut wait,
                                unit,
                                t.waits as f64,
                                t.wait_ms_sum as f64 / 60_000.0,
                            );
                        }
                    }
                    ArmEventKind::Completed => {
                        r.completed += t.count;
                        r.revenue_minor = r.revenue_minor.saturating_add(t.fare_sum);
                        add(&mut fare, unit, n, t.fare_sum as f64);
                        add(&mut comp, unit, n, n);
                        add(&mut rpq, unit, 0.0, t.fare_sum as f64);
                    }
                    ArmEventKind::Cancelled | ArmEventKind::Failed => {
                        if t.kind == ArmEventKind::Cancelled {
                            r.cancelled += t.count;
                        } else {
                            r.failed += t.count;
                        }
                        add(&mut comp, unit, n, 0.0);
                    }
                }
            }
            r.conversion = ratio(&conv);
            r.completion = ratio(&comp);
            r.fare = ratio(&fare);
            r.revenue_per_quote = ratio(&rpq);
            r.wait_minutes = ratio(&wait);
            r.multiplier = ratio(&mult);
            r
        })
        .collect()
}

/// Whether an arm breached the experiment's guardrail: its completion rate
/// more than the allowed points below the control's, once every arm has at
/// least [`GUARDRAIL_MIN_ENDED`] ended bookings. Returns the reason.
pub fn guardrail_breach(experiment: &Experiment, results: &[ArmResult]) -> Option<String> {
    let limit = experiment.max_completion_drop_points()?;
    let control = results.first()?;
    let ended = |r: &ArmResult| r.completed + r.cancelled + r.failed;
    if results.iter().any(|r| ended(r) < GUARDRAIL_MIN_ENDED) {
        return None;
    }
    let base = control.completion?.value * 100.0;
    results.iter().skip(1).find_map(|r| {
        let rate = r.completion?.value * 100.0;
        (base - rate > limit).then(|| {
            format!(
                "arm {}: completion {rate:.1} % is {:.1} points below the control's {base:.1} % (limit {limit})",
                r.arm,
                base - rate
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{ArmDef, ExperimentDef};
    use crate::policies::PolicyParams;

    const T0: u64 = 1_800_000_000_000;
    const MIN: u64 = 60_000;

    fn experiment(split: &str, guardrail: Option<f64>) -> Experiment {
        let arm = |name: &str, policy: &str| ArmDef {
            name: name.into(),
            policy: policy.into(),
            params: PolicyParams::default(),
            share_percent: 50,
        };
        Experiment::new(&ExperimentDef {
            id: "e".into(),
            region: "sf".into(),
            arms: vec![arm("control", "default"), arm("flat", "none")],
            split: split.into(),
            window_minutes: (split == "switchback").then_some(10),
            salt: "s".into(),
            start_ms: T0,
            end_ms: T0 + 86_400_000,
            max_completion_drop_points: guardrail,
        })
        .expect("valid")
    }

    fn event(arm: &str, at: u64, kind: ArmEventKind, unit: u64) -> ArmEvent {
        ArmEvent {
            arm: Ident::new(arm).expect("id"),
            at: Timestamp(at),
            kind,
            multiplier: 1.5,
            fare_minor: (kind == ArmEventKind::Completed).then_some(1_000),
            wait_ms: (kind == ArmEventKind::Started).then_some(240_000),
            unit,
        }
    }

    /// `quotes` quotes, `booked` of them confirmed and `done` of those
    /// completed (the rest cancelled), from `at`; the `i`th quote and its
    /// booking count in `unit(i)`. The outcomes come 20 minutes later (in
    /// another window): they still count in their quote's unit.
    fn window(
        out: &mut Vec<ArmEvent>,
        arm: &str,
        at: u64,
        (quotes, booked, done): (u32, u32, u32),
        unit: impl Fn(u32) -> u64,
    ) {
        for i in 0..quotes {
            out.push(event(arm, at + u64::from(i), ArmEventKind::Quote, unit(i)));
        }
        for i in 0..booked {
            let t = at + 1_000 + u64::from(i);
            out.push(event(arm, t, ArmEventKind::Confirmed, unit(i)));
            let later = t + 20 * MIN;
            if i < done {
                out.push(event(arm, later, ArmEventKind::Started, unit(i)));
                out.push(event(arm, later + 1, ArmEventKind::Completed, unit(i)));
            } else {
                out.push(event(arm, later, ArmEventKind::Cancelled, unit(i)));
            }
        }
    }

    #[test]
    fn a_switchback_counts_windows_as_its_units() {
        let e = experiment("switchback", None);
        let mut events = Vec::new();
        // Control in windows 0, 2, 4; flat in 1, 3, 5, with different
        // conversion per window.
        for w in 0..6u64 {
            let arm = if w % 2 == 0 { "control" } else { "flat" };
            let booked = 2 + w as u32;
            window(
                &mut events,
                arm,
                T0 + w * 10 * MIN,
                (10, booked, booked - 1),
                |_| w,
            );
        }
        let r = results(&e, &tally(&events));
        let c = &r[0];
        assert_eq!(
            (c.quotes, c.confirmed, c.completed, c.cancelled),
            (30, 12, 9, 3)
        );
        let conv = c.conversion.expect("conversion");
        assert_eq!(conv.units, 3);
        assert!((conv.value - 0.4).abs() < 1e-12);
        // Windows at 0.2, 0.4, 0.6: the ratio's cluster-robust SE.
        let se = conv.se.expect("three windows give an interval");
        let expected = ((0.2f64 - 0.4).powi(2) * 100.0 * 2.0 / (3.0 * 2.0 * 100.0)).sqrt();
        assert!((se - expected).abs() < 1e-12, "{se} vs {expected}");
        assert_eq!(c.revenue_minor, 9_000);
        assert_eq!(c.fare.map(|f| f.value), Some(1_000.0));
        assert_eq!(c.revenue_per_quote.map(|f| f.value), Some(300.0));
        assert_eq!(c.wait_minutes.map(|w| w.value), Some(4.0));
        assert_eq!(c.multiplier.map(|m| m.value), Some(1.5));
        let d = Compared::of(&r[1].conversion.expect("flat"), &conv);
        assert!(d.difference > 0.0 && d.low().is_some());
    }

    #[test]
    fn a_user_split_counts_quotes_and_bookings() {
        let e = experiment("user", None);
        let mut events = Vec::new();
        // Each quote a rider of its own.
        window(&mut events, "control", T0, (100, 40, 30), u64::from);
        window(&mut events, "flat", T0, (100, 50, 45), |i| {
            1_000 + u64::from(i)
        });
        let r = results(&e, &tally(&events));
        let c = r[0].conversion.expect("conversion");
        assert_eq!(c.units, 100);
        assert!((c.value - 0.4).abs() < 1e-12);
        // Binomial: √(p(1−p)/(n−1)).
        let se = c.se.expect("se");
        assert!((se - (0.4f64 * 0.6 / 99.0).sqrt()).abs() < 1e-12, "{se}");
        assert_eq!(r[1].completion.map(|x| x.units), Some(50));
        let rpq = r[0].revenue_per_quote.expect("revenue per quote");
        assert_eq!((rpq.value, rpq.units), (300.0, 100));
        assert!(rpq.se.is_some_and(|se| se > 0.0));
    }

    #[test]
    fn the_guardrail_waits_for_enough_bookings_then_names_the_arm() {
        let e = experiment("user", Some(10.0));
        let mut events = Vec::new();
        window(&mut events, "control", T0, (40, 20, 18), u64::from);
        window(&mut events, "flat", T0, (40, 20, 10), |i| {
            1_000 + u64::from(i)
        });
        // 90 % against 50 %, but only 20 ended bookings per arm.
        assert_eq!(guardrail_breach(&e, &results(&e, &tally(&events))), None);
        window(&mut events, "control", T0 + MIN, (40, 20, 18), |i| {
            100 + u64::from(i)
        });
        window(&mut events, "flat", T0 + MIN, (40, 20, 10), |i| {
            2_000 + u64::from(i)
        });
        let why = guardrail_breach(&e, &results(&e, &tally(&events))).expect("breached");
        assert!(why.starts_with("arm flat: completion 50.0 %"), "{why}");
        // Within the limit: no breach.
        let lenient = experiment("user", Some(45.0));
        assert_eq!(
            guardrail_breach(&lenient, &results(&lenient, &tally(&events))),
            None
        );
        // No guardrail: never.
        let none = experiment("user", None);
        assert_eq!(
            guardrail_breach(&none, &results(&none, &tally(&events))),
            None
        );
    }
}
