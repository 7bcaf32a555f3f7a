//! Pricing experiments: a region's policies compared in arms, each rider's
//! arm decided at the edge from the definition alone.
//!
//! An admin writes a definition ([`ExperimentDef`], parsed from JSON by the
//! shell); [`Experiment::new`] validates every field, and a definition that
//! fails is refused with its reason (the shell logs it and prices as if
//! there were none: pricing never stops for a typo). Two experiments of one
//! region whose times overlap are both refused ([`refuse_overlaps`]).
//!
//! Assignment ([`Experiment::assign`]) needs no shared state, so every edge
//! puts a rider in the same arm:
//!
//! * **switchback**: the whole region alternates; the arm of a time window
//!   is a hash of (salt, region, window index). Riders in one window all
//!   compete for the same drivers under one policy, so the window is the
//!   unit of analysis.
//! * **user**: the arm of a rider is a hash of (salt, user id). Riders
//!   without an id are outside the experiment.
//!
//! The hash is SHA-256; its first 8 bytes, modulo 10,000, fall into the
//! arms' cumulative shares (in whole percent, summing to 100).

pub mod results;

use sha2::{Digest, Sha256};

use crate::grid::{ArmGrid, SurgeGrid};
use crate::policies::{InvalidPolicyConfig, PolicyParams, PolicySpec};
use crate::quote::Ident;
use crate::time::{Millis, Timestamp};

/// Arms an experiment may have.
pub const ARMS: std::ops::RangeInclusive<usize> = 2..=8;

/// A switchback window's length, minutes.
pub const WINDOW_MINUTES: std::ops::RangeInclusive<u32> = 1..=1_440;

/// An arm as written.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmDef {
    /// Its name (an identifier).
    pub name: String,
    /// Its policy's name.
    pub policy: String,
    /// Its policy's parameters.
    pub params: PolicyParams,
    /// Its share of units, whole percent.
    pub share_percent: u32,
}

/// An experiment as written (by an admin, as JSON in KV).
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentDef {
    /// Its id.
    pub id: String,
    /// The region it runs in.
    pub region: String,
    /// The arms; the first is the control.
    pub arms: Vec<ArmDef>,
    /// `switchback` or `user`.
    pub split: String,
    /// Switchback: the window, minutes.
    pub window_minutes: Option<u32>,
    /// The hash's salt (1–64 characters).
    pub salt: String,
    /// Start, ms since the epoch.
    pub start_ms: u64,
    /// End (exclusive), ms since the epoch.
    pub end_ms: u64,
    /// Guardrail: end the experiment when an arm's completion rate falls
    /// this many percentage points below the control's.
    pub max_completion_drop_points: Option<f64>,
}

/// An arm.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// Its name.
    pub name: Ident,
    /// Its policy.
    pub policy: PolicySpec,
    /// Its share, whole percent.
    pub share_percent: u32,
    /// Its policy's version, computed once ([`Arm::version`]).
    version: Ident,
}

impl Arm {
    /// The version of the arm's policy: its name and the first 8 hex digits
    /// of a SHA-256 of the policy with its parameters, e.g.
    /// `forecast-1a2b3c4d`. The origin stamps it on the arm's grid and the
    /// edge into each quote it prices from it, so a result can be traced to
    /// the exact parameters that priced it; a changed parameter is a new
    /// version.
    pub fn version(&self) -> Ident {
        self.version.clone()
    }

    /// The version of `policy` (computed once, when the arm is built: the
    /// edge asks for it on every quote in an experiment).
    fn version_of(policy: &PolicySpec, name: &Ident) -> Ident {
        let digest = Sha256::digest(format!("{policy:?}").as_bytes());
        let mut v = String::with_capacity(24);
        v.push_str(policy.name());
        v.push('-');
        for b in &digest[..4] {
            v.push_str(&format!("{b:02x}"));
        }
        // A policy name and hex digits: always an identifier.
        Ident::new(&v).unwrap_or_else(|_| name.clone())
    }
}

/// What a quote priced in an experiment carries, signed
/// ([`crate::quote::QuoteClaims::arm`]) and copied into its booking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArmStamp {
    /// The experiment.
    pub experiment: Ident,
    /// The arm.
    pub arm: Ident,
    /// The arm's policy version ([`Arm::version`]).
    pub policy: Ident,
    /// The quote's unit of analysis ([`Assignment::unit`]).
    pub unit: u64,
}

/// Where an experiment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Before its start.
    Scheduled,
    /// Between its start and its end.
    Running,
    /// Past its end.
    Finished,
    /// Ended early by its guardrail.
    Ended,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Ended => "ended",
        }
    }
}

/// How units are split between arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The region alternates in windows of this length.
    Switchback {
        /// The window's length.
        window: Millis,
    },
    /// Each rider keeps one arm.
    User,
}

/// A validated experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    id: Ident,
    region: Ident,
    arms: Vec<Arm>,
    split: Split,
    salt: String,
    start: Timestamp,
    end: Timestamp,
    max_completion_drop_points: Option<f64>,
}

/// Why a definition was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidExperiment {
    /// A field's value is not acceptable.
    #[error("{field}: {reason}")]
    Field {
        /// The field (`arms[1].share_percent`, ...).
        field: String,
        /// Why.
        reason: String,
    },
    /// An arm's policy.
    #[error("arms[{arm}].policy: {error}")]
    Policy {
        /// The arm's index.
        arm: usize,
        /// Why.
        error: InvalidPolicyConfig,
    },
    /// Overlaps another experiment of the region in time.
    #[error("overlaps experiment {other} in region {region}")]
    Overlap {
        /// The other experiment.
        other: String,
        /// The region.
        region: String,
    },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> InvalidExperiment {
    InvalidExperiment::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The arm an assignment chose, and the unit it chose it for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assignment<'a> {
    /// The arm.
    pub arm: &'a Arm,
    /// Switchback: the window's index since the start; user split: 0.
    pub window: u64,
    /// The unit of analysis the quote belongs to: a switchback's window
    /// index, a user split's rider (a 63-bit hash of the user id, so the
    /// id itself never travels). Signed into the quote with its arm, so
    /// every later event of the quote counts in the unit it was priced in.
    pub unit: u64,
}

impl Experiment {
    /// Validates a definition.
    pub fn new(def: &ExperimentDef) -> Result<Self, InvalidExperiment> {
        let id = Ident::new(&def.id).map_err(|e| field("id", e.to_string()))?;
        let region = Ident::new(&def.region).map_err(|e| field("region", e.to_string()))?;
        if !ARMS.contains(&def.arms.len()) {
            return Err(field(
                "arms",
                format!(
                    "{} arms; an experiment has {} to {}",
                    def.arms.len(),
                    ARMS.start(),
                    ARMS.end()
                ),
            ));
        }
        let mut arms: Vec<Arm> = Vec::with_capacity(def.arms.len());
        for (i, a) in def.arms.iter().enumerate() {
            let name =
                Ident::new(&a.name).map_err(|e| field(format!("arms[{i}].name"), e.to_string()))?;
            if arms.iter().any(|b| b.name == name) {
                return Err(field(
                    format!("arms[{i}].name"),
                    "a second arm of that name",
                ));
            }
            if !(1..=99).contains(&a.share_percent) {
                return Err(field(format!("arms[{i}].share_percent"), "must be 1 to 99"));
            }
            let policy = PolicySpec::configure(&a.policy, &a.params)
                .map_err(|error| InvalidExperiment::Policy { arm: i, error })?;
            arms.push(Arm {
                version: Arm::version_of(&policy, &name),
                name,
                policy,
                share_percent: a.share_percent,
            });
        }
        let total: u32 = arms.iter().map(|a| a.share_percent).sum();
        if total != 100 {
            return Err(field("arms", format!("shares sum to {total}, not 100")));
        }
        let split = match (def.split.as_str(), def.window_minutes) {
            ("switchback", Some(m)) if WINDOW_MINUTES.contains(&m) => Split::Switchback {
                window: Millis::from_secs(u64::from(m) * 60),
            },
            ("switchback", Some(_)) => {
                return Err(field("window_minutes", "must be 1 to 1440"));
            }
            ("switchback", None) => {
                return Err(field("window_minutes", "a switchback needs a window"));
            }
            ("user", None) => Split::User,
            ("user", Some(_)) => {
                return Err(field("window_minutes", "a user split has no window"));
            }
            (other, _) => {
                return Err(field(
                    "split",
                    format!(
                        "unknown split {:?}; expected switchback or user",
                        other.chars().take(20).collect::<String>()
                    ),
                ));
            }
        };
        if !(1..=64).contains(&def.salt.len()) {
            return Err(field("salt", "must be 1 to 64 bytes"));
        }
        if def.start_ms >= def.end_ms {
            return Err(field("end", "must be after start"));
        }
        if let Some(p) = def.max_completion_drop_points {
            if !(p > 0.0 && p <= 100.0) {
                return Err(field(
                    "guardrails.max_completion_drop_points",
                    "must be in (0, 100]",
                ));
            }
        }
        Ok(Self {
            id,
            region,
            arms,
            split,
            salt: def.salt.clone(),
            start: Timestamp(def.start_ms),
            end: Timestamp(def.end_ms),
            max_completion_drop_points: def.max_completion_drop_points,
        })
    }

    /// Its id.
    pub fn id(&self) -> &Ident {
        &self.id
    }

    /// Its region.
    pub fn region(&self) -> &Ident {
        &self.region
    }

    /// Its arms, the control first.
    pub fn arms(&self) -> &[Arm] {
        &self.arms
    }

    /// The split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// The guardrail, percentage points of completion below the control.
    pub fn max_completion_drop_points(&self) -> Option<f64> {
        self.max_completion_drop_points
    }

    /// When it starts.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// When it ends (exclusive).
    pub fn end(&self) -> Timestamp {
        self.end
    }

    /// The arm of a name.
    pub fn arm(&self, name: &Ident) -> Option<&Arm> {
        self.arms.iter().find(|a| &a.name == name)
    }

    /// The switchback window an instant falls in (its index since the
    /// start); 0 in a user split or before the start.
    pub fn window_of(&self, at: Timestamp) -> u64 {
        match self.split {
            Split::Switchback { window } => at.0.saturating_sub(self.start.0) / window.0.max(1),
            Split::User => 0,
        }
    }

    /// Where it stands at `now`: `ended` when a guardrail ended it early.
    pub fn status(&self, now: Timestamp, ended: bool) -> Status {
        match () {
            _ if ended => Status::Ended,
            _ if now < self.start => Status::Scheduled,
            _ if now >= self.end => Status::Finished,
            _ => Status::Running,
        }
    }

    /// Whether it runs at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }

    /// The arm of a quote at `now` for `user` (when known). `None`: the
    /// quote is outside the experiment (before or after it, or an
    /// anonymous rider in a user split) and priced as if there were none.
    pub fn assign(&self, now: Timestamp, user: Option<&str>) -> Option<Assignment<'_>> {
        if !self.is_live(now) {
            return None;
        }
        let (window, unit, point) = match self.split {
            Split::Switchback { .. } => {
                let index = self.window_of(now);
                let point = self.point(&[self.region.as_str().as_bytes(), &index.to_be_bytes()]);
                (index, index, point)
            }
            Split::User => {
                let user = user?;
                (0, rider_unit(user), self.point(&[user.as_bytes()]))
            }
        };
        let mut upto = 0;
        for arm in &self.arms {
            upto += arm.share_percent * 100;
            if point < upto {
                return Some(Assignment { arm, window, unit });
            }
        }
        // Shares sum to 100 %: unreachable, but the control is the safe arm.
        self.arms
            .first()
            .map(|arm| Assignment { arm, window, unit })
    }

    /// A point in 0..10,000 from the salt and `parts`.
    fn point(&self, parts: &[&[u8]]) -> u32 {
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        for p in parts {
            h.update([0u8]);
            h.update(p);
        }
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        (u64::from_be_bytes(first) % 10_000) as u32
    }

    /// Whether two experiments share a region and a moment.
    pub fn overlaps(&self, other: &Experiment) -> bool {
        self.region == other.region && self.start < other.end && other.start < self.end
    }
}

/// The arm grid a quote at `now` for `user` is priced from: its live
/// experiment's assignment, if the grid carries that arm computed by the
/// same policy version the definition names. Otherwise `None`, and the
/// quote is priced and counted as outside the experiment: an arm whose grid
/// has not reached the edge yet (the experiment just started, or a
/// guardrail ended it at the origin) or was computed from other parameters
/// (the definition just changed) never prices a quote in its name.
pub fn arm_grid<'g>(
    experiments: &[Experiment],
    grid: &'g SurgeGrid,
    now: Timestamp,
    user: Option<&str>,
) -> Option<ArmChoice<'g>> {
    pick_arm(experiments, grid, now, user).ok()
}

/// Why a quote is priced outside any arm ([`pick_arm`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside {
    /// No live experiment puts it in an arm (none running, or an
    /// anonymous rider in a user split).
    Unassigned,
    /// The grid does not carry the assigned arm (not pushed yet, or the
    /// origin ended the experiment).
    NotInGrid,
    /// The grid's arm was computed by another version of the arm's policy
    /// than the definition names: the origin and this reader disagree on
    /// the definition (just changed) or on how versions are computed
    /// (different builds). Worth a log line.
    OtherVersion {
        /// The experiment.
        experiment: Ident,
        /// The arm.
        arm: Ident,
        /// The version in the grid.
        grid: Ident,
        /// The version the definition gives.
        definition: Ident,
    },
}

/// [`arm_grid`], saying why a quote stays outside the experiment.
pub fn pick_arm<'g>(
    experiments: &[Experiment],
    grid: &'g SurgeGrid,
    now: Timestamp,
    user: Option<&str>,
) -> Result<ArmChoice<'g>, Outside> {
    let (e, a) = experiments
        .iter()
        .find_map(|e| e.assign(now, user).map(|a| (e, a)))
        .ok_or(Outside::Unassigned)?;
    let g = grid.arm(e.id(), &a.arm.name).ok_or(Outside::NotInGrid)?;
    if g.policy != a.arm.version {
        return Err(Outside::OtherVersion {
            experiment: e.id().clone(),
            arm: a.arm.name.clone(),
            grid: g.policy.clone(),
            definition: a.arm.version(),
        });
    }
    Ok(ArmChoice {
        grid: g,
        unit: a.unit,
    })
}

/// The arm a quote is priced in: its grid and the unit of analysis the
/// quote counts in ([`Assignment::unit`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmChoice<'g> {
    /// The arm's multipliers.
    pub grid: &'g ArmGrid,
    /// The quote's unit.
    pub unit: u64,
}

/// A user split's unit of a rider: a 63-bit hash of the user id (it fits a
/// signed 64-bit column).
pub fn rider_unit(user: &str) -> u64 {
    crate::market::DriverId::from_external(user).0 & (i64::MAX as u64)
}

/// An experiment id names one experiment: of `experiments` (a region's),
/// those whose id appears twice among them or is `taken` (by another
/// region's) are refused with the reason; the rest are kept.
pub fn refuse_reused_ids(
    experiments: Vec<Experiment>,
    taken: impl Fn(&Ident) -> bool,
) -> (Vec<Experiment>, Vec<String>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for e in &experiments {
        let twice = experiments.iter().filter(|o| o.id == e.id).count() > 1;
        if twice {
            refused.push(format!(
                "{}: the id names two experiments of the region",
                e.id
            ));
        } else if taken(&e.id) {
            refused.push(format!(
                "{}: the id names another region's experiment",
                e.id
            ));
        } else {
            kept.push(e.clone());
        }
    }
    (kept, refused)
}

/// Keeps the experiments that overlap no other of their region; each one
/// that does is refused with the other's id (both of a pair are refused:
/// which one the admin meant is not for the edge to guess).
pub fn refuse_overlaps(
    experiments: Vec<Experiment>,
) -> (Vec<Experiment>, Vec<(Ident, InvalidExperiment)>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for (i, e) in experiments.iter().enumerate() {
        let clash = experiments
            .iter()
            .enumerate()
            .find(|(j, o)| *j != i && e.overlaps(o));
        match clash {
            Some((_, o)) => refused.push((
                e.id.clone(),
                InvalidExperiment::Overlap {
                    other: o.id.as_str().to_owned(),
                    region: e.region.as_str().to_owned(),
                },
            )),
            None => kept.push(e.clone()),
        }
    }
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn def() -> ExperimentDef {
        ExperimentDef {
            id: "fa-vs-default".into(),
            region: "sf".into(),
            arms: vec![
                ArmDef {
                    name: "control".into(),
                    policy: "default".into(),
                    params: PolicyParams::default(),
                    share_percent: 50,
                },
                ArmDef {
                    name: "forecast".into(),
                    policy: "forecast".into(),
                    params: PolicyParams {
                        lead: Some(0.75),
                        ..PolicyParams::default()
                    },
                    share_percent: 50,
                },
            ],
            split: "switchback".into(),
            window_minutes: Some(30),
            salt: "s1".into(),
            start_ms: T0,
            end_ms: T0 + 14 * 86_400_000,
            max_completion_drop_points: Some(5.0),
        }
    }

    #[test]
    fn a_policy_version_names_the_policy_and_changes_with_its_parameters() {
        let e = Experiment::new(&def()).expect("valid");
        let v = e.arms()[1].version();
        assert!(v.as_str().starts_with("forecast-"), "{v}");
        assert_eq!(v.as_str().len(), "forecast-".len() + 8);
        assert_eq!(
            v,
            Experiment::new(&def()).expect("valid").arms()[1].version()
        );
        let mut d = def();
        d.arms[1].params.lead = Some(0.5);
        let other = Experiment::new(&d).expect("valid");
        assert_ne!(other.arms()[1].version(), v);
        assert!(e.arms()[0].version().as_str().starts_with("default-"));
    }

    #[test]
    fn a_quote_is_priced_in_its_arm_only_from_the_arm_the_definition_names() {
        use crate::geo::{Cell, LatLng, DEFAULT_LEVEL};
        let e = Experiment::new(&def()).expect("valid");
        let now = Timestamp(T0 + 1);
        let assigned = e.assign(now, None).expect("an arm").arm;
        let cell = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), DEFAULT_LEVEL);
        let grid_with = |version: Ident| {
            SurgeGrid::new(e.region().clone(), DEFAULT_LEVEL, 1, now, vec![])
                .expect("grid")
                .with_arms(vec![ArmGrid::new(
                    e.id().clone(),
                    assigned.name.clone(),
                    version,
                    vec![(cell, crate::surge::Multiplier::ONE)],
                )])
                .expect("arms")
        };
        let good = grid_with(assigned.version());
        let picked = pick_arm(std::slice::from_ref(&e), &good, now, None).expect("priced");
        assert_eq!(picked.unit, 0);
        assert_eq!(picked.grid.arm, assigned.name);
        let stale = grid_with(Ident::new("forecast-00000000").expect("id"));
        assert!(matches!(
            pick_arm(std::slice::from_ref(&e), &stale, now, None),
            Err(Outside::OtherVersion { .. })
        ));
        let none = SurgeGrid::new(e.region().clone(), DEFAULT_LEVEL, 1, now, vec![]).expect("grid");
        assert_eq!(
            pick_arm(std::slice::from_ref(&e), &none, now, None).map(|_| ()),
            Err(Outside::NotInGrid)
        );
        assert_eq!(
            pick_arm(std::slice::from_ref(&e), &good, Timestamp(T0 - 1), None).map(|_| ()),
            Err(Outside::Unassigned)
        );
    }

    #[test]
    fn status_follows_the_clock_and_an_early_end() {
        let e = Experiment::new(&def()).expect("valid");
        assert_eq!(e.status(Timestamp(T0 - 1), false), Status::Scheduled);
        assert_eq!(e.status(Timestamp(T0), false), Status::Running);
        assert_eq!(e.status(e.end(), false), Status::Finished);
        assert_eq!(e.status(Timestamp(T0), true), Status::Ended);
        assert_eq!(Status::Ended.as_str(), "ended");
    }

    #[test]
    fn windows_count_from_the_start() {
        let e = Experiment::new(&def()).expect("valid");
        let min = 60_000;
        assert_eq!(e.window_of(Timestamp(T0)), 0);
        assert_eq!(e.window_of(Timestamp(T0 + 30 * min - 1)), 0);
        assert_eq!(e.window_of(Timestamp(T0 + 30 * min)), 1);
        assert_eq!(e.window_of(Timestamp(T0 - 1)), 0);
        let at = Timestamp(T0 + 95 * min);
        assert_eq!(e.assign(at, None).map(|a| a.window), Some(3));
    }

    fn refused(d: &ExperimentDef) -> String {
        Experiment::new(d).expect_err("refused").to_string()
    }

    #[test]
    fn every_bad_field_is_refused_with_its_name() {
        assert!(Experiment::new(&def()).is_ok());
        let mut d = def();
        d.arms[1].share_percent = 40;
        assert!(refused(&d).contains("sum to 90"), "{}", refused(&d));
        let mut d = def();
        d.arms[1].name = "control".into();
        assert!(refused(&d).starts_with("arms[1].name"));
        let mut d = def();
        d.arms[1].policy = "surge-everything".into();
        assert!(refused(&d).starts_with("arms[1].policy"));
        let mut d = def();
        d.arms[0].params.step = Some(0.1);
        assert!(refused(&d).contains("step"), "{}", refused(&d));
        let mut d = def();
        d.arms.truncate(1);
        assert!(refused(&d).starts_with("arms:"));
        let mut d = def();
        d.window_minutes = None;
        assert!(refused(&d).starts_with("window_minutes"));
        let mut d = def();
        d.split = "user".into();
        assert!(refused(&d).starts_with("window_minutes"));
        let mut d = def();
        d.split = "city".into();
        assert!(refused(&d).starts_with("split"));
        let mut d = def();
        d.salt = String::new();
        assert!(refused(&d).starts_with("salt"));
        let mut d = def();
        d.end_ms = d.start_ms;
        assert!(refused(&d).starts_with("end:"));
        let mut d = def();
        d.max_completion_drop_points = Some(0.0);
        assert!(refused(&d).starts_with("guardrails.max_completion_drop_points"));
        let mut d = def();
        d.id = "no spaces".into();
        assert!(refused(&d).starts_with("id"));
    }

    #[test]
    fn a_switchback_window_is_one_arm_for_everyone_and_windows_follow_the_shares() {
        // A month: a thousand half-hour windows.
        let mut month = def();
        month.end_ms = T0 + 30 * 86_400_000;
        let e = Experiment::new(&month).expect("valid");
        let window = 30 * 60_000;
        let a = e.assign(Timestamp(T0 + 5), Some("alice")).expect("live");
        let b = e
            .assign(Timestamp(T0 + window - 1), Some("bob"))
            .expect("live");
        assert_eq!((a.arm, a.window), (b.arm, b.window));
        assert_eq!(e.assign(Timestamp(T0 + 5), None).expect("live").arm, a.arm);
        let treated = (0..1_000u64)
            .filter(|w| {
                e.assign(Timestamp(T0 + w * window), None)
                    .expect("live")
                    .arm
                    .name
                    .as_str()
                    == "forecast"
            })
            .count();
        assert!((450..=550).contains(&treated), "{treated} of 1000 windows");
        assert!(e.assign(Timestamp(T0 - 1), None).is_none(), "before");
        assert!(
            e.assign(Timestamp(T0 + 30 * 86_400_000), None).is_none(),
            "after"
        );
        // Another salt, another sequence.
        let mut d = month.clone();
        d.salt = "s2".into();
        let other = Experiment::new(&d).expect("valid");
        let differs = (0..100u64).any(|w| {
            let t = Timestamp(T0 + w * window);
            other.assign(t, None).map(|a| a.arm) != e.assign(t, None).map(|a| a.arm)
        });
        assert!(differs);
    }

    #[test]
    fn a_user_keeps_one_arm_and_users_follow_the_shares() {
        let mut d = def();
        d.split = "user".into();
        d.window_minutes = None;
        d.arms[0].share_percent = 80;
        d.arms[1].share_percent = 20;
        let e = Experiment::new(&d).expect("valid");
        let day = 86_400_000;
        for u in ["alice", "bob", "carol"] {
            let first = e.assign(Timestamp(T0), Some(u)).expect("live").arm;
            for k in 1..10 {
                assert_eq!(
                    e.assign(Timestamp(T0 + k * day), Some(u))
                        .expect("live")
                        .arm,
                    first
                );
            }
        }
        let treated = (0..10_000)
            .filter(|i| {
                e.assign(Timestamp(T0), Some(&format!("user-{i}")))
                    .expect("live")
                    .arm
                    .name
                    .as_str()
                    == "forecast"
            })
            .count();
        assert!((1_850..=2_150).contains(&treated), "{treated} of 10000");
        assert!(
            e.assign(Timestamp(T0), None).is_none(),
            "anonymous riders are outside"
        );
    }

    #[test]
    fn overlapping_experiments_of_a_region_are_both_refused() {
        let a = Experiment::new(&def()).expect("valid");
        let mut d = def();
        d.id = "second".into();
        d.start_ms = T0 + 86_400_000;
        let b = Experiment::new(&d).expect("valid");
        let mut d = def();
        d.id = "elsewhere".into();
        d.region = "nyc".into();
        let c = Experiment::new(&d).expect("valid");
        let mut d = def();
        d.id = "later".into();
        d.start_ms = T0 + 14 * 86_400_000;
        d.end_ms = T0 + 15 * 86_400_000;
        let later = Experiment::new(&d).expect("valid");
        let (kept, refused) = refuse_overlaps(vec![a, b, c, later]);
        let kept: Vec<&str> = kept.iter().map(|e| e.id().as_str()).collect();
        assert_eq!(kept, vec!["elsewhere", "later"]);
        let refused: Vec<String> = refused.iter().map(|(_, e)| e.to_string()).collect();
        assert_eq!(
            refused,
            vec![
                "overlaps experiment second in region sf",
                "overlaps experiment fa-vs-default in region sf"
            ]
        );
    }
}
