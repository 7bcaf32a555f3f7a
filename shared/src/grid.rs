//! The surge grid: what the origin pushes and the edge prices from.
//!
//! A grid is one region's multipliers at one instant, stamped with a
//! monotonic `generation`. Pushes can arrive late, twice, or out of order
//! (retries, several origin replicas); [`GridSlot::offer`] keeps the newest
//! generation whatever the arrival order.
//!
//! When the origin goes quiet the grid ages. [`Staleness::decay`] keeps
//! quotes flowing: the multiplier holds while fresh, then falls linearly to
//! 1.0, and the caller is told which of these it got.

use std::borrow::Borrow;

use crate::geo::{Cell, Level};
use crate::quote::Ident;
use crate::surge::{Multiplier, Trend};
use crate::time::{Millis, Timestamp};

/// The wire format version this build writes. Version 2 added each cell's
/// forecast (`expected_demand`, `expected_supply`); version 3 the arm grids
/// of a running experiment (`arms`); older pushes are still read
/// ([`GRID_FORMATS_READ`]).
pub const GRID_FORMAT: u32 = 3;

/// The wire format versions this build reads.
pub const GRID_FORMATS_READ: std::ops::RangeInclusive<u32> = 1..=GRID_FORMAT;

/// Most cells one grid may carry (a metro area at level 13 is ~5,000).
pub const MAX_GRID_CELLS: usize = 50_000;

/// One priced cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridCell {
    /// The cell.
    pub cell: Cell,
    /// Its published multiplier.
    pub multiplier: Multiplier,
    /// Available drivers.
    pub supply: u32,
    /// Demand units.
    pub demand: u32,
    /// Direction of travel.
    pub trend: Trend,
    /// What the origin expects 15 minutes ahead, once the cell has history.
    pub forecast: Option<CellForecast>,
}

/// A cell's expected demand (units per 5-minute bucket) and available
/// drivers 15 minutes ahead ([`crate::forecast`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellForecast {
    /// Expected demand units in the bucket.
    pub demand: f32,
    /// Expected available drivers.
    pub supply: f32,
}

/// One arm's multipliers in a running experiment ([`crate::experiment`]):
/// computed by the arm's policy from the same market as the grid, at the
/// same instant. A quote assigned to the arm is priced from these; the
/// grid's other fields (supply, demand, forecast) are the market's and
/// shared by every arm.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmGrid {
    /// The experiment.
    pub experiment: Ident,
    /// The arm.
    pub arm: Ident,
    /// The version of the arm's policy that computed it
    /// ([`crate::experiment::Arm::version`]).
    pub policy: Ident,
    /// The multipliers by cell, sorted by cell; a cell without one has none.
    multipliers: Vec<(Cell, Multiplier)>,
}

impl ArmGrid {
    /// An arm's multipliers (sorted here; a repeated cell keeps its first).
    pub fn new(
        experiment: Ident,
        arm: Ident,
        policy: Ident,
        mut multipliers: Vec<(Cell, Multiplier)>,
    ) -> Self {
        multipliers.sort_by_key(|(c, _)| *c);
        multipliers.dedup_by_key(|(c, _)| *c);
        Self {
            experiment,
            arm,
            policy,
            multipliers,
        }
    }

    /// The multipliers, sorted by cell.
    pub fn multipliers(&self) -> &[(Cell, Multiplier)] {
        &self.multipliers
    }

    /// The arm's multiplier of a cell already at the grid's level.
    pub fn lookup(&self, cell: Cell) -> Option<Multiplier> {
        self.multipliers
            .binary_search_by_key(&cell, |(c, _)| *c)
            .ok()
            .map(|i| self.multipliers[i].1)
    }
}

/// A validated grid: cells unique, at the grid's level, sorted by id.
#[derive(Debug, Clone, PartialEq)]
pub struct SurgeGrid {
    region: Ident,
    level: Level,
    generation: u64,
    computed_at: Timestamp,
    cells: Vec<GridCell>,
    lawful_cap: Option<Multiplier>,
    arms: Vec<ArmGrid>,
}

/// Why a grid was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidGrid {
    /// A format version this build does not read.
    #[error("grid format {0} is not supported (expected {GRID_FORMAT})")]
    Format(u32),
    /// Generation 0 is reserved for "no grid".
    #[error("generation must be at least 1")]
    Generation,
    /// More cells than [`MAX_GRID_CELLS`].
    #[error("grid has {0} cells; at most {MAX_GRID_CELLS} are accepted")]
    TooManyCells(usize),
    /// A cell not at the grid's level.
    #[error("cell {cell} is at level {found}, the grid is at level {expected}")]
    WrongLevel {
        /// The cell token.
        cell: String,
        /// Its level.
        found: u8,
        /// The grid's level.
        expected: u8,
    },
    /// The same cell twice.
    #[error("cell {0} appears twice")]
    DuplicateCell(String),
}

impl SurgeGrid {
    /// Validates and builds a grid; sorts cells by id.
    pub fn new(
        region: Ident,
        level: Level,
        generation: u64,
        computed_at: Timestamp,
        mut cells: Vec<GridCell>,
    ) -> Result<Self, InvalidGrid> {
        if generation == 0 {
            return Err(InvalidGrid::Generation);
        }
        if cells.len() > MAX_GRID_CELLS {
            return Err(InvalidGrid::TooManyCells(cells.len()));
        }
        if let Some(c) = cells.iter().find(|c| c.cell.level() != level) {
            return Err(InvalidGrid::WrongLevel {
                cell: c.cell.token(),
                found: c.cell.level().get(),
                expected: level.get(),
            });
        }
        cells.sort_unstable_by_key(|c| c.cell);
        if let Some(w) = cells.windows(2).find(|w| w[0].cell == w[1].cell) {
            return Err(InvalidGrid::DuplicateCell(w[0].cell.token()));
        }
        Ok(Self {
            region,
            level,
            generation,
            computed_at,
            cells,
            lawful_cap: None,
            arms: Vec::new(),
        })
    }

    /// The grid with the arm grids of a running experiment. Refused when
    /// an arm has a cell at another level.
    pub fn with_arms(mut self, arms: Vec<ArmGrid>) -> Result<Self, InvalidGrid> {
        for a in &arms {
            if let Some((c, _)) = a.multipliers.iter().find(|(c, _)| c.level() != self.level) {
                return Err(InvalidGrid::WrongLevel {
                    cell: c.token(),
                    found: c.level().get(),
                    expected: self.level.get(),
                });
            }
        }
        self.arms = arms;
        Ok(self)
    }

    /// The arm grids of a running experiment (none outside one).
    pub fn arms(&self) -> &[ArmGrid] {
        &self.arms
    }

    /// The grid of an experiment's arm, if this grid carries it.
    pub fn arm(&self, experiment: &Ident, arm: &Ident) -> Option<&ArmGrid> {
        self.arms
            .iter()
            .find(|a| &a.experiment == experiment && &a.arm == arm)
    }

    /// The grid with the region's lawful emergency cap
    /// ([`crate::emergency`]), as the origin computed it from its history.
    pub fn with_lawful_cap(mut self, cap: Option<Multiplier>) -> Self {
        self.set_lawful_cap(cap);
        self
    }

    /// Sets the region's lawful emergency cap.
    pub fn set_lawful_cap(&mut self, cap: Option<Multiplier>) {
        self.lawful_cap = cap;
    }

    /// The region's lawful emergency cap, if its history has one.
    pub fn lawful_cap(&self) -> Option<Multiplier> {
        self.lawful_cap
    }

    /// The region.
    pub fn region(&self) -> &Ident {
        &self.region
    }

    /// The cell level of every cell.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Monotonic generation (≥ 1).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the origin computed it.
    pub fn computed_at(&self) -> Timestamp {
        self.computed_at
    }

    /// Cells, sorted by id.
    pub fn cells(&self) -> &[GridCell] {
        &self.cells
    }

    /// The entry of the cell containing `cell` (any level at or below the
    /// grid's), if the grid has one. Cells without an entry have no surge.
    pub fn lookup(&self, cell: Cell) -> Option<&GridCell> {
        let cell = cell.parent(self.level);
        self.cells
            .binary_search_by_key(&cell, |c| c.cell)
            .ok()
            .map(|i| &self.cells[i])
    }
}

/// The newest-generation-wins rule, the one place it is written: a grid of
/// generation `candidate` replaces the held one only if it is strictly
/// newer (an equal generation is a duplicate). Every holder of grids — the
/// slot below, the edge's isolate cache and zone object, the origin's push
/// queue — asks this.
pub fn supersedes(candidate: u64, held: Option<u64>) -> bool {
    held.is_none_or(|h| candidate > h)
}

/// What [`GridSlot::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The grid replaced an older one (or the empty slot).
    Applied {
        /// The generation it replaced, if any.
        previous: Option<u64>,
    },
    /// Ignored: the slot holds this generation or a newer one.
    Stale {
        /// The generation kept.
        current: u64,
    },
}

/// Holds the newest grid of a region: the edge's isolate cache (as
/// `GridSlot<Rc<SurgeGrid>>`, shared by the requests of an isolate) and
/// the zone object hold their grids in one.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSlot<G = SurgeGrid>(Option<G>);

impl<G> Default for GridSlot<G> {
    fn default() -> Self {
        Self(None)
    }
}

impl<G: Borrow<SurgeGrid>> GridSlot<G> {
    /// An empty slot.
    pub fn new() -> Self {
        Self(None)
    }

    /// Offers a grid: kept only if its generation is newer than the held
    /// one. Equal generations are duplicates and ignored.
    pub fn offer(&mut self, grid: G) -> Offer {
        let held = self.0.as_ref().map(|g| g.borrow().generation);
        if !supersedes(grid.borrow().generation, held) {
            return Offer::Stale {
                current: held.unwrap_or(0),
            };
        }
        self.0 = Some(grid);
        Offer::Applied { previous: held }
    }

    /// The held grid.
    pub fn get(&self) -> Option<&G> {
        self.0.as_ref()
    }

    /// The held generation, 0 if none.
    pub fn generation(&self) -> u64 {
        self.0.as_ref().map_or(0, |g| g.borrow().generation)
    }
}

/// How a multiplier's age was treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within the fresh limit: used as published.
    Fresh,
    /// Past the fresh limit: decaying toward 1.0.
    Stale,
    /// No grid, or fully decayed: 1.0.
    Default,
}

impl Freshness {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
            Freshness::Default => "default",
        }
    }
}

/// How long a grid is trusted, and how fast it is then forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// Used as published up to this age.
    pub fresh_for: Millis,
    /// Then decays linearly to 1.0 over this span.
    pub decay_over: Millis,
}

impl Default for Staleness {
    fn default() -> Self {
        Self {
            fresh_for: Millis::from_secs(30),
            decay_over: Millis::from_secs(300),
        }
    }
}

impl Staleness {
    /// The multiplier to price with, given the published one and the grid's
    /// age. Never above the published value, never below 1.0.
    pub fn decay(&self, published: Multiplier, age: Millis) -> (Multiplier, Freshness) {
        if age <= self.fresh_for {
            return (published, Freshness::Fresh);
        }
        let past = age.0 - self.fresh_for.0;
        if past >= self.decay_over.0 || published == Multiplier::ONE {
            return (Multiplier::ONE, Freshness::Default);
        }
        let surplus = u64::from(published.tenths() - Multiplier::ONE.tenths());
        let left = self.decay_over.0 - past;
        // Round down: a stale price never rounds up toward surge.
        let tenths = Multiplier::ONE.tenths() as u64 + surplus * left / self.decay_over.0;
        let m = Multiplier::from_tenths(tenths as u16).unwrap_or(Multiplier::ONE);
        (m, Freshness::Stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_strictly_newer_generation_supersedes() {
        assert!(supersedes(1, None));
        assert!(supersedes(8, Some(7)));
        assert!(!supersedes(7, Some(7)));
        assert!(!supersedes(6, Some(7)));
    }
    use crate::geo::{LatLng, DEFAULT_LEVEL};

    fn grid(generation: u64) -> SurgeGrid {
        let cell = Cell::at(LatLng::new(1.0, 1.0).expect("ll"), DEFAULT_LEVEL);
        SurgeGrid::new(
            Ident::new("r").expect("id"),
            DEFAULT_LEVEL,
            generation,
            Timestamp(generation * 1_000),
            vec![GridCell {
                cell,
                multiplier: Multiplier::from_tenths(15).expect("m"),
                supply: 1,
                demand: 3,
                trend: Trend::Stable,
                forecast: None,
            }],
        )
        .expect("grid")
    }

    #[test]
    fn newest_generation_wins() {
        let mut slot = GridSlot::new();
        assert_eq!(slot.offer(grid(5)), Offer::Applied { previous: None });
        assert_eq!(slot.offer(grid(3)), Offer::Stale { current: 5 });
        assert_eq!(slot.offer(grid(5)), Offer::Stale { current: 5 });
        assert_eq!(slot.offer(grid(7)), Offer::Applied { previous: Some(5) });
        assert_eq!(slot.generation(), 7);
    }

    #[test]
    fn validation() {
        let g = grid(1);
        let c = g.cells()[0];
        let r = Ident::new("r").expect("id");
        assert_eq!(
            SurgeGrid::new(r.clone(), DEFAULT_LEVEL, 0, Timestamp(0), vec![]),
            Err(InvalidGrid::Generation)
        );
        assert!(matches!(
            SurgeGrid::new(r.clone(), DEFAULT_LEVEL, 1, Timestamp(0), vec![c, c]),
            Err(InvalidGrid::DuplicateCell(_))
        ));
        let coarse = Level::new(10).expect("level");
        assert!(matches!(
            SurgeGrid::new(r, coarse, 1, Timestamp(0), vec![c]),
            Err(InvalidGrid::WrongLevel { .. })
        ));
    }

    #[test]
    fn lookup_finds_the_cell_of_a_finer_cell() {
        let g = grid(1);
        let leaf = Cell::at(
            LatLng::new(1.0, 1.0).expect("ll"),
            Level::new(30).expect("l"),
        );
        assert_eq!(g.lookup(leaf).map(|c| c.demand), Some(3));
        let far = Cell::at(LatLng::new(-1.0, -1.0).expect("ll"), DEFAULT_LEVEL);
        assert!(g.lookup(far).is_none());
    }

    #[test]
    fn decay_holds_then_falls_to_one() {
        let s = Staleness {
            fresh_for: Millis(1_000),
            decay_over: Millis(10_000),
        };
        let m = Multiplier::from_tenths(30).expect("m");
        assert_eq!(s.decay(m, Millis(1_000)), (m, Freshness::Fresh));
        let (half, f) = s.decay(m, Millis(6_000));
        assert_eq!((half.tenths(), f), (20, Freshness::Stale));
        assert_eq!(
            s.decay(m, Millis(11_000)),
            (Multiplier::ONE, Freshness::Default)
        );
    }
}
