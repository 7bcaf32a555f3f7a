//! A running experiment inside a region's pricer: one engine per arm over
//! the region's one market.
//!
//! Every tick the pricer counts its market once; the region's own engine
//! prices the grid every quote outside the experiment gets, and each arm's
//! engine prices the same inputs with the arm's policy into an
//! [`ArmGrid`]. The arms' grids travel in the same push as the region's
//! grid (same generation, same age), so an arm's quote is priced by the
//! same staleness and caps as any other.
//!
//! An arm's engine starts from the region's published multipliers (the step
//! limit continues from what riders see, not from 1.0). An experiment runs
//! while its definition is live ([`Experiment::is_live`]) and it has not
//! been ended here ([`ArmEngines::end`], a breached guardrail); an ended id
//! never runs again in this region, even if the definition stays in KV.
//!
//! Each arm's volatility (the mean absolute change of a cell's multiplier
//! per tick) is kept per unit of the design, in memory: it starts again
//! when the process does.
//!
//! Each arm's policy sees its own arm's outcomes ([`ArmEngines::observe`]:
//! the shell gathers the arm's ended bookings), never the region's: a
//! controller arm steers by what its own prices did.

use std::collections::BTreeMap;

use crate::experiment::results::{add, ratio, Estimate, Units};
use crate::experiment::{Experiment, Split};
use crate::geo::Cell;
use crate::grid::ArmGrid;
use crate::policies::AnyPolicy;
use crate::quote::Ident;
use crate::surge::{Caps, CellInput, Feedback, Multiplier, SurgeConfig, SurgeEngine};
use crate::time::Timestamp;

/// What [`ArmEngines::follow`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ArmsChange {
    /// Nothing: the same experiment (or none) goes on.
    Unchanged,
    /// An experiment's arms started.
    Started(Ident),
    /// An experiment's arms stopped (it ended, was removed or replaced).
    Stopped(Ident),
    /// An experiment could not start: an arm's policy was refused.
    Refused(Ident, String),
}

#[derive(Debug)]
struct ArmEngine {
    arm: Ident,
    version: Ident,
    engine: SurgeEngine<AnyPolicy>,
    /// The multipliers it last published, sorted by cell.
    last: Vec<(Cell, Multiplier)>,
    /// Per unit of the design (a switchback's window while the arm is in
    /// force, a user split's minute): (cell-ticks, Σ |change| of a cell's
    /// multiplier).
    moves: Units,
}

#[derive(Debug)]
struct Running {
    experiment: Experiment,
    arms: Vec<ArmEngine>,
}

/// The arms of the region's running experiment, if any.
#[derive(Debug, Default)]
pub struct ArmEngines {
    definitions: Vec<Experiment>,
    running: Option<Running>,
    ended: BTreeMap<Ident, String>,
    /// The last definition that could not start: not tried (nor reported)
    /// again until the definition changes.
    refused: Option<Experiment>,
    /// Each arm's feedback not yet shown to its policy.
    feedback: BTreeMap<Ident, Feedback>,
}

impl ArmEngines {
    /// The region's experiment definitions as last read (the value of
    /// `experiment:<region>`, parsed by [`crate::api::parse_experiments`]);
    /// the next [`Self::follow`] acts on them.
    pub fn set_definitions(&mut self, definitions: Vec<Experiment>) {
        self.definitions = definitions;
    }

    /// The definitions held.
    pub fn definitions(&self) -> &[Experiment] {
        &self.definitions
    }

    /// The experiment running, if any.
    pub fn running(&self) -> Option<&Experiment> {
        self.running.as_ref().map(|r| &r.experiment)
    }

    /// Experiments ended here (by a guardrail), with why: they never run
    /// again.
    pub fn ended(&self) -> &BTreeMap<Ident, String> {
        &self.ended
    }

    /// Ends an experiment for good in this region; stops it if it runs.
    /// False when it had already ended.
    pub fn end(&mut self, id: &Ident, reason: &str) -> bool {
        if self.ended.contains_key(id) {
            return false;
        }
        self.ended.insert(id.clone(), reason.to_owned());
        if self.running().is_some_and(|e| e.id() == id) {
            self.running = None;
        }
        true
    }

    /// Restores experiments ended earlier (by this process before a restart,
    /// or by the region's previous owner): they never run again.
    pub fn restore_ended(&mut self, ended: impl IntoIterator<Item = (Ident, String)>) {
        self.ended.extend(ended);
        if self
            .running()
            .is_some_and(|e| self.ended.contains_key(e.id()))
        {
            self.running = None;
        }
    }

    /// Each running arm's volatility so far: the mean absolute change of a
    /// cell's multiplier per tick, with the design's unit (a switchback's
    /// windows, counting the ticks the arm was in force; a user split's
    /// minutes) as the interval's unit (`None` before its first cell-tick).
    pub fn volatility(&self) -> Vec<(Ident, Option<Estimate>)> {
        self.running.as_ref().map_or_else(Vec::new, |r| {
            r.arms
                .iter()
                .map(|a| (a.arm.clone(), ratio(&a.moves)))
                .collect()
        })
    }

    /// Starts, keeps or stops arms for `now`: the live definition that was
    /// not ended runs; a changed definition of the running id restarts it.
    pub fn follow(
        &mut self,
        now: Timestamp,
        surge: SurgeConfig,
        caps: Caps,
        published: &BTreeMap<Cell, Multiplier>,
    ) -> ArmsChange {
        let live = self
            .definitions
            .iter()
            .find(|e| e.is_live(now) && !self.ended.contains_key(e.id()));
        let same = match (&self.running, live) {
            (Some(r), Some(l)) => r.experiment == *l,
            (None, None) => true,
            (None, Some(l)) => self.refused.as_ref() == Some(l),
            _ => false,
        };
        if same {
            return ArmsChange::Unchanged;
        }
        let stopped = self.running.take().map(|r| r.experiment.id().clone());
        let Some(live) = live.cloned() else {
            return stopped.map_or(ArmsChange::Unchanged, ArmsChange::Stopped);
        };
        let mut arms = Vec::with_capacity(live.arms().len());
        for a in live.arms() {
            let engine = a
                .policy
                .build()
                .map_err(|e| e.to_string())
                .and_then(|p| SurgeEngine::new(p, surge).map_err(|e| e.to_string()));
            let mut engine = match engine {
                Ok(e) => e,
                Err(why) => {
                    let change =
                        ArmsChange::Refused(live.id().clone(), format!("{}: {why}", a.name));
                    self.refused = Some(live.clone());
                    return change;
                }
            };
            for (cell, m) in published {
                engine.restore(*cell, *m, caps);
            }
            arms.push(ArmEngine {
                arm: a.name.clone(),
                version: a.version(),
                engine,
                last: published.iter().map(|(c, m)| (*c, *m)).collect(),
                moves: Units::new(),
            });
        }
        let id = live.id().clone();
        self.running = Some(Running {
            experiment: live,
            arms,
        });
        ArmsChange::Started(id)
    }

    /// The running arms whose policy steers by feedback (controllers):
    /// the experiment and those arms.
    pub fn steered(&self) -> Option<(&Experiment, Vec<Ident>)> {
        let r = self.running.as_ref()?;
        let arms: Vec<Ident> = r
            .experiment
            .arms()
            .iter()
            .filter(|a| a.policy.name() == "controller")
            .map(|a| a.name.clone())
            .collect();
        (!arms.is_empty()).then_some((&r.experiment, arms))
    }

    /// Each running arm's controller threshold (`None` for other policies).
    pub fn thresholds(&self) -> Vec<(Ident, Option<f64>)> {
        self.running.as_ref().map_or_else(Vec::new, |r| {
            r.arms
                .iter()
                .map(|a| (a.arm.clone(), a.engine.policy().threshold()))
                .collect()
        })
    }

    /// An arm's recent outcomes, shown to its policy at the next tick (once).
    pub fn observe(&mut self, arm: &Ident, f: Feedback) {
        self.feedback.insert(arm.clone(), f);
    }

    /// Each running arm's multipliers for this tick's inputs at `now`.
    pub fn tick(&mut self, inputs: &[CellInput], now: Timestamp) -> Vec<ArmGrid> {
        let Some(running) = &mut self.running else {
            return Vec::new();
        };
        let e = &running.experiment;
        let experiment = e.id().clone();
        // Which arm riders see now, and the unit this tick belongs to.
        let (in_force, unit) = match e.split() {
            Split::Switchback { .. } => (
                e.assign(now, None).map(|a| a.arm.name.clone()),
                e.window_of(now),
            ),
            Split::User => (None, now.0.saturating_sub(e.start().0) / 60_000),
        };
        running
            .arms
            .iter_mut()
            .map(|a| {
                let feedback = self.feedback.remove(&a.arm);
                let cells: Vec<(Cell, Multiplier)> = a
                    .engine
                    .update_with(inputs, feedback.as_ref())
                    .into_iter()
                    .map(|s| (s.cell, s.multiplier))
                    .collect();
                // Both sorted by cell (the engine's results are).
                let mut moved = 0u64;
                for (cell, m) in &cells {
                    let before = a
                        .last
                        .binary_search_by_key(cell, |(c, _)| *c)
                        .map_or(Multiplier::ONE, |i| a.last[i].1);
                    moved += u64::from(before.tenths().abs_diff(m.tenths()));
                }
                let counted = in_force.as_ref().is_none_or(|arm| *arm == a.arm);
                if counted && !cells.is_empty() {
                    add(&mut a.moves, unit, cells.len() as f64, moved as f64 / 10.0);
                }
                a.last.clone_from(&cells);
                ArmGrid::new(experiment.clone(), a.arm.clone(), a.version.clone(), cells)
            })
            .collect()
    }
}
